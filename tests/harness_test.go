// The shared harness of the end-to-end tests: the programs of the suite
// as static binaries, a private Dovecot, test certificates, and the whole
// pipeline under a real tcpserver. Every helper fails the test with a
// clear message instead of returning an error.
//
// No TestMain lives here (other files of the package may define one):
// binaries come from internal/testkit (built on the fly into
// /tmp/imap-tls-testkit-PID unless $IMAPTLS_BIN holds them).
package tests

import ()
