// Package nodump keeps a process's memory out of core files and out of
// other processes' reach: the first thing stunnel-imap, stunnel-imap-key
// and stunnel-imap-signer do, before any secret is in memory.
package nodump

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Set makes the process undumpable (no core file, /proc/PID/mem and
// ptrace closed to anyone but root) and sets RLIMIT_CORE to 0, soft and
// hard.
func Set() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set dumpable to 0: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("set core size limit to 0: %w", err)
	}
	return nil
}
