package check

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"imap-tls/log"
)

// maxSocketPath is the longest unix socket path connect(2) takes:
// sun_path's 108 bytes, less the terminating NUL.
const maxSocketPath = 107

// tcpForm is what a word must look like to be meant as a TCP address:
// a bracket (IPv6), or digits and dots then a colon.
var tcpForm = regexp.MustCompile(`^(\[|[0-9.]+:)`)

// ServerAddress reads the server operands (imap-tls-server's imapd...,
// env/IMAPD split at spaces). When they are one word that is an address,
// it returns the network ("unix" or "tcp") and the address: the chain
// then connects to it itself (the proxy's setuidgid-chroot -c
// 3:ADDRESS, as root before the drop), and no program runs for the
// server side. Otherwise network is "": a program, started for every
// connection on makesock's socketpair.
//
// An address is numeric, IPv4:port or [IPv6]:port (no zone, a port from
// 1 to 65535), or a unix socket path starting with '/' or '.'. A path
// that exists and is not a socket is a program (/usr/lib/dovecot/imap);
// one that does not exist yet is a socket whose server is not up (see
// SocketState). A word shaped like a TCP address that is not a good one
// is refused (100) rather than run as a program. A relative path is
// looked at from dir, where the chain runs ("": the current directory).
func ServerAddress(dir string, argv []string) (network, address string, err error) {
	if len(argv) != 1 {
		return "", "", nil
	}
	w := argv[0]
	switch {
	case tcpForm.MatchString(w):
		ap, err := netip.ParseAddrPort(w)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return "", "", errorf("server address %q is not IPv4:port or [IPv6]:port (numeric, a port from 1 to 65535)", w)
		}
		return "tcp", w, nil
	case strings.HasPrefix(w, "/") || strings.HasPrefix(w, "."):
		p := w
		if dir != "" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		switch {
		case err == nil && st.Mode()&os.ModeSocket == 0:
			return "", "", nil // a program
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return "", "", nil // not ours to look at: run as a program, as always
		}
		if len(w) > maxSocketPath {
			return "", "", errorf("server socket path %s is longer than %d bytes", w, maxSocketPath)
		}
		return "unix", w, nil
	}
	return "", "", nil
}

// SocketState says what is not yet right with a unix server socket at
// path ("" when it is a socket): a start warns with it (the server may
// simply not be up yet), imap-tls-check too.
//
// A path that does not exist is read as a socket, so that a server that
// comes up after the service needs no restart; but /usr/lib/dovecot/imapd
// mistyped is as likely as a socket: a name without "sock" in it gets
// the other reading too, so that whoever meant a program reads that it
// is not there.
func SocketState(path string) string {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		w := "server socket " + path + " does not exist yet: is the server up? (every connection fails until it is)"
		if !strings.Contains(filepath.Base(path), "sock") {
			w += "; if " + path + " is meant as a program: no such file"
		}
		return w
	case err != nil:
		return "server socket " + path + ": " + log.Reason(err)
	case st.Mode()&os.ModeSocket == 0:
		return "server socket " + path + " is not a socket"
	}
	return ""
}
