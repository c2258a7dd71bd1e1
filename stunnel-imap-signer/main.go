// Command stunnel-imap-signer is the signer of imap-tls: one long-running,
// jailed process per service that holds the private keys and gives each
// proxy that connects the certificate chain and one signature, one
// session of the key protocol (internal/keyproto, its key holder's end
// internal/keyholder) per accepted connection. See README.md.
//
// It never makes a socket: it is handed a listening unix socket
// (setuidgid-chroot -l, mode 0600, root's) and accepts on it. Only root
// can connect, and each connection is made for one client connection by
// that connection's setuidgid-chroot -s before it drops: a proxy,
// chrooted, under a uid of its own and behind a seccomp filter that
// refuses socket and connect, holds exactly one channel and so gets at
// most one signature.
//
// It reads its keys from descriptors opened by root (setuidgid-chroot
// -o) and keeps a duplicate of each to watch: a file rewritten in place
// is read again through it and served from the next connection on; a
// file replaced (renamed over, removed: the old one has no link left)
// cannot be opened again from the jail, so the signer stops accepting,
// lets the sessions in progress finish, and exits for supervise to
// start it again with the new one. setuidgid-chroot -s waits for the
// new listener, so proxies see a short delay, not a failure.
//
// main.go is the program's entry; signer.go its options, its accept
// loop and its watch of the certificate files. This is its name in the
// log and in ps.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"

	"imap-tls/log"
)

func main() {
	l := log.NewTo("stunnel-imap-signer", os.Stderr, func(code int) {
		if exitWait != nil {
			exitWait() // a refused certificate: the fatal line is out
		}
		os.Exit(code)
	})
	l.Exit(run(os.Args[1:], l))
}
