package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"imap-tls/log"
)

// TestChainAddress: a server given as one address (a unix socket path,
// IPv4:port, [IPv6]:port) is connected to by the proxy's
// setuidgid-chroot, as root before its drop (-c 3:ADDRESS), which puts
// the connection on fd 3 for the proxy: no socketpair, no program, no
// -makesock_connect_to and no makesock for the server. With a key
// process per connection, makesock -d 4 still starts it, and fd 3 is
// the proxy's setuidgid-chroot's to fill. A path that is a program, or
// more than one word, keeps the program form; a socket that does not
// exist yet is a warning.
func TestChainAddress(t *testing.T) {
	fakePath(t)
	dir := serviceDir(t)
	ln, err := net.Listen("unix", filepath.Join(dir, "imap.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.WriteFile(filepath.Join(dir, "imapd"), []byte("#!/bin/sh\n"), 0o755)
	const key = "-n imap -r 5:6 -j ./jail -k ./ssl/stunnel.pem -H 0.0.0.0 143 "
	const signer = "-n pop3s -r 5:6 -j ./jail -s ./signer/socket -C ./ssl/stunnel.pem 0.0.0.0 995 "
	keySide := func(server, mode string, extra ...string) []string {
		return []string{
			"makesock -d 4",
			"setuidgid-chroot -/ ./jail -r 5:6 " + server,
			"stunnel-imap -n " + mode + " -F 3 -K 4 " + strings.Join(extra, " "),
			"-makesock_connect_to",
			"setuidgid-chroot -/ ./jail -r 5:6 -o 3:./ssl/stunnel.pem",
			"stunnel-imap-key -P 3:./ssl/stunnel.pem",
		}
	}
	signerSide := func(server string) []string {
		return []string{
			"setuidgid-chroot -/ ./jail -r 5:6 " + server + " -s 4:./signer/socket",
			"stunnel-imap -n pop3s -F 3 -K 4",
		}
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	front := func(port string) []string { return []string{"tcpserver -R -H -l 0 -c 40 0.0.0.0 " + port} }
	for _, c := range []struct {
		args string
		want []string
		warn string
	}{
		{key + "./imap.sock", cat(front("143"), keySide("-c 3:./imap.sock", "imap", "-H")), ""},
		{key + dir + "/imap.sock", cat(front("143"), keySide("-c 3:"+dir+"/imap.sock", "imap", "-H")), ""},
		{key + "127.0.0.1:10143", cat(front("143"), keySide("-c 3:127.0.0.1:10143", "imap", "-H")), ""},
		{key + "[::1]:10143", cat(front("143"), keySide("-c 3:[::1]:10143", "imap", "-H")), ""},
		{signer + "./imap.sock", cat(front("995"), signerSide("-c 3:./imap.sock")), ""},
		{signer + "[::ffff:127.0.0.1]:10995", cat(front("995"), signerSide("-c 3:[::ffff:127.0.0.1]:10995")), ""},
		{signer + "./not-yet.sock", cat(front("995"), signerSide("-c 3:./not-yet.sock")),
			"imap-tls-server: warning: server socket ./not-yet.sock does not exist yet: is the server up? (every connection fails until it is)\n"},
		// programs, as always
		{key + "./imapd", cat(front("143"), []string{"makesock"}, keySide("", "imap", "-H"), []string{"-makesock_connect_to ./imapd"}), ""},
		{signer + "./imapd", cat(front("995"), []string{"makesock"}, signerSide(""), []string{"-makesock_connect_to ./imapd"}), ""},
		{signer + "socat STDIO UNIX-CONNECT:./imap.sock", cat(front("995"), []string{"makesock"}, signerSide(""), []string{"-makesock_connect_to socat STDIO UNIX-CONNECT:./imap.sock"}), ""},
		{signer + "./imap.sock -x", cat(front("995"), []string{"makesock"}, signerSide(""), []string{"-makesock_connect_to ./imap.sock -x"}), ""},
	} {
		var out bytes.Buffer
		logger = log.NewTo("imap-tls-server", &out, func(int) {})
		chain, _, err := run(strings.Fields(c.args))
		logger = log.New("imap-tls-server")
		if err != nil {
			t.Errorf("%s: %v", c.args, err)
			continue
		}
		if want := strings.Fields(strings.Join(c.want, " ")); strings.Join(chain, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", c.args, chain, want)
		}
		if out.String() != c.warn {
			t.Errorf("%s: logged %q, want %q", c.args, out.String(), c.warn)
		}
	}
}
