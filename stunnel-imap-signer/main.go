// Command stunnel-imap-signer is the signer of imap-tls: one long-running
// process per service, in a jail and under a uid of its own, with no
// socket but the listening one it is handed, that holds the private keys
// and gives each proxy that connects one certificate chain and one
// signature. See README.md.
//
// All of it is package signer, in stunnel-imap's tree: only that tree
// imports crypto/*. This is its name in the log and in ps.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"

	"imap-tls/log"
)

func main() {
	l := log.New("stunnel-imap-signer")
	l.Exit(Run(os.Args[1:], l))
}
