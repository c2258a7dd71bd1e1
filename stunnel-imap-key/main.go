// Command stunnel-imap-key is the key process of imap-tls: it holds the
// private key for one connection, in a jail and under a uid of its own,
// with no socket but its channel to stunnel-imap -K on fd 0/1, and signs
// once for one TLS handshake. See README.md.
//
// All of it is package keyproc, in stunnel-imap's tree: only that tree
// imports crypto/*. This is its name in the log and in ps.
//
// The go:debug settings keep the Go runtime from looking for cgroup CPU
// limits at start and every second after: the key process runs in an
// empty jail where there are none to find, and after the lock-down it
// may not open files at all.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"

	"imap-tls/internal/keyproto"
	"imap-tls/log"
)

func main() {
	l := log.New("stunnel-imap-key")
	l.Exit(keyproto.Run(os.Args[1:], l))
}
