//go:build !jailprobe

package seccomp

import "imap-tls/log"

// ProbeBuilt is false in release builds: Probe does nothing.
const ProbeBuilt = false

// Probe does nothing without the jailprobe build tag.
func Probe(*log.Logger) {}
