package seccomp

import "golang.org/x/sys/unix"

// ListenerProgram is Program for a process that serves a listening socket
// it was given (the signer, stunnel-imap-signer): accept and accept4 are
// allowed, and only they. It still opens no file, makes or connects no
// socket (socket, connect, bind and listen stay refused), starts no
// process.
func ListenerProgram() []unix.SockFilter {
	var rules []rule
	for _, r := range append(append([]rule(nil), common...), archRules...) {
		if r.nr != unix.SYS_ACCEPT && r.nr != unix.SYS_ACCEPT4 {
			rules = append(rules, r)
		}
	}
	return build(auditArch, x32Bit, rules)
}

// InstallListener is Install with ListenerProgram.
func InstallListener() error { return install(ListenerProgram()) }
