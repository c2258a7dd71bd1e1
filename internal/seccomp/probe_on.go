//go:build jailprobe

package seccomp

import (
	"os"
	"strings"

	"imap-tls/log"
)

// ProbeBuilt is true in builds made with -tags jailprobe: test builds
// only, never a release.
const ProbeBuilt = true

// Probe, when $IMAPTLS_JAILPROBE is set, tries every forbidden action
// once and logs one line with each result, e.g.
//
//	stunnel-imap: info: jailprobe: execve=refused open=refused socket=refused fork=refused
//
// Call it right after Install. Release builds carry a Probe that does
// nothing (probe_off.go).
func Probe(l *log.Logger) {
	if os.Getenv("IMAPTLS_JAILPROBE") == "" {
		return
	}
	var b strings.Builder
	for i, a := range TryForbidden() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.Name + "=" + a.Result())
	}
	l.Info("jailprobe: %s", b.String())
}
