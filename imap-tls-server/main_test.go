package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"imap-tls/internal/check"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// programs are the chain's programs with a key process per connection,
// the most it runs without -L.
var programs = check.Programs(check.Uses{KeyProcess: true})

// exit is the status and the message log.Exit would give err.
func exit(err error) (int, string) {
	var out bytes.Buffer
	status := -1
	log.NewTo("imap-tls-server", &out, func(c int) { status = c }).Exit(err)
	return status, out.String()
}

// fakePath makes a directory of stand-ins for the programs of the chain
// and makes it the whole $PATH: setuidgid-chroot records its arguments in
// DIR/calls and refuses a range 1:1 (exit 100) or 9:9 (exit 111), as the
// real one would refuse a bad range or fail; the others do nothing (the
// real chain runs in tests/). It returns the directory.
func fakePath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sgc := "#!/bin/sh\necho \"$*\" >>" + filepath.Join(dir, "calls") + "\n" +
		"case \"$*\" in *1:1*) echo 'setuidgid-chroot: fatal: bad range' >&2; exit 100 ;; *9:9*) exit 111 ;; esac\n"
	for _, p := range programs {
		script := "#!/bin/sh\nexit 0\n"
		if p == "setuidgid-chroot" {
			script = sgc
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir) // alone: the real tcpserver must not be found
	return dir
}

// serviceDir makes and enters a directory laid out as imap-tls-conf's
// (jail/, ssl/stunnel.pem, and ssl/mail.example.org.pem for SNI) and
// returns it. The certificates are good ones, with their intermediate:
// the start reads them with the suite's loader.
func serviceDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "jail"), 0o755)
	os.Mkdir(filepath.Join(dir, "ssl"), 0o700)
	testkit.NewCert(t, testkit.CertOptions{Intermediate: true}).Write(t, filepath.Join(dir, "ssl"), "stunnel")
	testkit.NewCert(t, testkit.CertOptions{Intermediate: true, Names: []string{"mail.example.org"}}).Write(t, filepath.Join(dir, "ssl"), "mail.example.org")
	t.Chdir(dir)
	return dir
}

// The chain for the run file's invocation, one program per line as the
// page shows it: the one place the chain is spelled is chain(), and this
// is what it must spell.
func TestChain(t *testing.T) {
	fake := fakePath(t)
	serviceDir(t)
	const imapd = "socat -t 5 STDIO,shut-down UNIX-CONNECT:/run/dovecot/imap-tls"
	for _, c := range []struct {
		args string
		want []string // one program and its arguments per line
	}{
		{"-n imap -c 40 -r 2000000000:4194304 -j ./jail -k ./ssl/stunnel.pem 0.0.0.0 143 " + imapd, []string{
			"tcpserver -R -H -l 0 -c 40 0.0.0.0 143",
			"makesock",
			"makesock -d 4",
			"setuidgid-chroot -/ ./jail -r 2000000000:4194304",
			"stunnel-imap -n imap -F 3 -K 4",
			"-makesock_connect_to",
			"setuidgid-chroot -/ ./jail -r 2000000000:4194304 -o 3:./ssl/stunnel.pem",
			"stunnel-imap-key -P 3:./ssl/stunnel.pem",
			"-makesock_connect_to " + imapd,
		}},
		// imaps, the fixed account, SNI files, proxy and tcpserver
		// options; -c defaults to 40, as tcpserver's own default.
		{"-n imaps -u imaptls -j ./jail -k ./ssl/stunnel.pem -k ./ssl/mail.example.org.pem -T 5 -t 0.5 -A 60 -q -V -b 100 -1 127.0.0.1 0 imapd -x", []string{
			"tcpserver -R -H -l 0 -c 40 -b 100 -1 -v 127.0.0.1 0",
			"makesock",
			"makesock -d 4",
			"setuidgid-chroot -/ ./jail -u imaptls",
			"stunnel-imap -n imaps -F 3 -K 4 -T 5 -t 0.5 -A 60 -q",
			"-makesock_connect_to",
			"setuidgid-chroot -/ ./jail -u imaptls -o 3:./ssl/stunnel.pem -o 5:./ssl/mail.example.org.pem",
			"stunnel-imap-key -P 3:./ssl/stunnel.pem -P 5:./ssl/mail.example.org.pem",
			"-makesock_connect_to imapd -x",
		}},
		{"-x -n imap- -r 5:6 -j ./jail -k ./ssl/stunnel.pem -v -- 0 143 imapd", []string{
			"tcpserver -R -H -l 0 -c 40 0 143",
			"makesock",
			"makesock -d 4",
			"setuidgid-chroot -/ ./jail -r 5:6",
			"stunnel-imap -n imap- -F 3 -K 4 -v",
			"-makesock_connect_to",
			"setuidgid-chroot -/ ./jail -r 5:6 -o 3:./ssl/stunnel.pem",
			"stunnel-imap-key -P 3:./ssl/stunnel.pem",
			"-makesock_connect_to imapd",
		}},
	} {
		os.Remove(filepath.Join(fake, "calls"))
		chain, print, err := run(strings.Fields(c.args))
		if err != nil {
			t.Errorf("%s: %v", c.args, err)
			continue
		}
		if want := strings.Fields(strings.Join(c.want, " ")); strings.Join(chain, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", c.args, chain, want)
		}
		if print != strings.HasPrefix(c.args, "-x") {
			t.Errorf("%s: print %v", c.args, print)
		}
		// The ids are checked once, at start, with setuidgid-chroot.
		ids := strings.Fields(c.want[3])[3:]
		if b, _ := os.ReadFile(filepath.Join(fake, "calls")); string(b) != strings.Join(ids, " ")+" true\n" {
			t.Errorf("%s: setuidgid-chroot ran with %q, want once with %q true", c.args, b, ids)
		}
	}
	var out bytes.Buffer
	if err := printChain(&out, []string{"tcpserver", "-c", "40", "socat", "STDIO,shut-down"}); err != nil || out.String() != "tcpserver\n-c\n40\nsocat\nSTDIO,shut-down\n" {
		t.Errorf("printChain: %v %q, want one argument per line", err, out.String())
	}
}

// Every bad option, bad value, missing file, missing program and refused
// range: its exit code and its one message, nothing run.
func TestRefusals(t *testing.T) {
	fake := fakePath(t)
	dir := serviceDir(t)
	os.WriteFile(filepath.Join(dir, "ssl", "empty.pem"), nil, 0o400)
	os.WriteFile(filepath.Join(dir, "notadir"), nil, 0o644)
	const ok = "-n imap -r 2000000000:4194304 -j ./jail -k ./ssl/stunnel.pem"
	const usage = "imap-tls-server: usage: imap-tls-server -n imap|imap-|imaps|pop3|pop3-|pop3s "
	for _, c := range []struct {
		args string
		code int
		msg  string
	}{
		{"", 100, "imap-tls-server: fatal: missing -n mode\n" + usage},
		{"-h", 100, usage},
		{"-Z " + ok + " 0 143 imapd", 100, "imap-tls-server: fatal: unknown option -Z\n" + usage},
		{"-r 1:2 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: missing -n mode\n"},
		{"-n imap -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: missing -u account or -r base:count\n"},
		{"-n imap -u imaptls -r 1:2 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: -u and -r together: one of them\n"},
		{"-n imap -r 1:2 -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: missing -j jail\n"},
		{"-n imap -r 1:2 -j ./jail 0 143 imapd", 100, "fatal: missing -k pemfile or -s socket\n"},
		{ok + " -v -q 0 143 imapd", 100, "fatal: -v and -q together: one of them\n"},
		{ok + " 0 143", 100, "fatal: missing ip, port or imapd\n"},
		{ok + " -c 0 0 143 imapd", 100, "fatal: bad value for -c: \"0\" (not a number of at least 1)\n"},
		{ok + " -c x 0 143 imapd", 100, "fatal: bad value for -c: \"x\" (not a number of at least 1)\n"},
		{ok + " -b -5 0 143 imapd", 100, "fatal: bad value for -b: \"-5\" (not a number of at least 1)\n"},
		{ok + " -T 0 0 143 imapd", 100, "fatal: bad value for -T: \"0\" (not a positive number of seconds)\n"},
		{ok + " -t x 0 143 imapd", 100, "fatal: bad value for -t: \"x\" (not a positive number of seconds)\n"},
		{ok + " -A -1 0 143 imapd", 100, "fatal: bad value for -A: \"-1\" (not a positive number of seconds)\n"},
		{ok + " -k", 100, "fatal: missing value after -k\n"},
		{ok + " 0 143 127.0.0.1:0", 100, "fatal: server address \"127.0.0.1:0\" is not IPv4:port or [IPv6]:port (numeric, a port from 1 to 65535)\n"},
		{ok + " 0 143 [fe80::1%eth0]:143", 100, "fatal: server address \"[fe80::1%eth0]:143\" is not IPv4:port"},
		{ok + " 0 143 [::1]", 100, "fatal: server address \"[::1]\" is not IPv4:port"},
		{ok + " 0 143 127.0.0.1:99999", 100, "fatal: server address \"127.0.0.1:99999\" is not IPv4:port"},
		{ok + " 0 143 ./" + strings.Repeat("s", 110), 100, "fatal: server socket path ./sss"},
		{"-n implicit -r 1:2 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "imap-tls-server: fatal: mode implicit is now called imaps: write imaps (in env/MODE for a service)\n"},
		{"-n tls -r 1:2 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: mode \"tls\" is not imap, imap-, imaps, pop3, pop3- or pop3s\n"},
		{"-n imap -r 1:2:3 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: uid range \"1:2:3\" is not base:count\n"},
		{"-n imap -r 2e9:5 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: uid range \"2e9:5\" is not base:count\n"},
		{"-n imap -u bad;name -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "fatal: account \"bad;name\" is not a valid account name\n"},
		{ok + " -- -1 143 imapd", 100, "fatal: ip \"-1\" is not an address (like 127.0.0.1, or 0 for all)\n"},
		{ok + " localhost 143 imapd", 100, "fatal: ip \"localhost\" is not an address (like 127.0.0.1, or 0 for all)\n"},
		{ok + " 0 65536 imapd", 100, "fatal: port \"65536\" is not a number from 0 to 65535\n"},
		{ok + " 0 imap imapd", 100, "fatal: port \"imap\" is not a number from 0 to 65535\n"},
		{"-n imap -r 2000000000:4194304 -j ./nojail -k ./ssl/stunnel.pem 0 143 imapd", 111, "imap-tls-server: fatal: unable to use jail ./nojail: file does not exist\n"},
		{"-n imap -r 2000000000:4194304 -j ./notadir -k ./ssl/stunnel.pem 0 143 imapd", 100, "imap-tls-server: fatal: jail ./notadir is not a directory\n"},
		{"-n imap -r 2000000000:4194304 -j ./jail -k ./ssl/nosuch.pem 0 143 imapd", 111, "imap-tls-server: fatal: unable to read certificate file ./ssl/nosuch.pem: file does not exist\n"},
		{ok + " -k ./ssl/nosuch.pem 0 143 imapd", 111, "imap-tls-server: fatal: unable to read certificate file ./ssl/nosuch.pem: file does not exist\n"},
		{ok + " -k ./ssl/empty.pem 0 143 imapd", 100, "imap-tls-server: fatal: certificate file ./ssl/empty.pem is empty: put the certificate chain and its key there\n"},
		{ok + " -k ./jail 0 143 imapd", 111, "imap-tls-server: fatal: unable to read certificate file ./jail: is a directory\n"},
		{"-n imap -r 1:1 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 100, "imap-tls-server: fatal: setuidgid-chroot refuses -r 1:1\n"},
		{"-n imap -r 9:9 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd", 111, "imap-tls-server: fatal: unable to check -r 9:9 with setuidgid-chroot: exit status 111\n"},
	} {
		os.Remove(filepath.Join(fake, "calls"))
		_, _, err := run(strings.Fields(c.args))
		code, msg := exit(err)
		if code != c.code || !strings.Contains(msg, c.msg) || strings.Count(msg, "fatal") > 1 {
			t.Errorf("%q: exit %d %q, want %d with %q", c.args, code, msg, c.code, c.msg)
		}
		// a refusal of the form is made before anything runs
		if _, err := os.Stat(filepath.Join(fake, "calls")); err == nil && c.code == 100 && !strings.Contains(c.msg, "refuses") {
			t.Errorf("%q: setuidgid-chroot ran before the refusal", c.args)
		}
	}
	// -h: the usage line alone.
	if _, msg := exit(func() error { _, _, err := run([]string{"-h"}); return err }()); strings.Contains(msg, "fatal") {
		t.Errorf("-h: %q, want the usage line alone", msg)
	}
	// A program of the chain missing from $PATH: 111, naming it.
	for _, p := range programs {
		os.Rename(filepath.Join(fake, p), filepath.Join(fake, p+".away"))
		_, _, err := run(strings.Fields(ok + " 0 143 imapd"))
		want := "imap-tls-server: fatal: unable to find " + p + " in $PATH: file does not exist\n"
		if code, msg := exit(err); code != 111 || msg != want {
			t.Errorf("without %s: exit %d %q, want 111 %q", p, code, msg, want)
		}
		os.Rename(filepath.Join(fake, p+".away"), filepath.Join(fake, p))
	}
}
