package check

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"imap-tls/internal/suite"
	"imap-tls/log"
)

// TestPrograms: the programs each kind of chain runs, drawn from
// suite.Programs (the signer and proxy-server named there) and the
// outside ones; never the programs people run.
func TestPrograms(t *testing.T) {
	for _, c := range []struct {
		u    Uses
		want string
	}{
		{Uses{}, "tcpserver makesock setuidgid-chroot stunnel-imap"},
		{Uses{KeyProcess: true}, "tcpserver makesock setuidgid-chroot stunnel-imap stunnel-imap-key"},
		{Uses{Balancers: true}, "tcpserver makesock setuidgid-chroot stunnel-imap proxy-server"},
		{Uses{Service: true}, "envdir softlimit tcpserver makesock setuidgid-chroot stunnel-imap stunnel-imap-key stunnel-imap-signer imap-tls-server"},
		{Uses{Service: true, KeyProcess: true, Balancers: true}, "envdir softlimit tcpserver makesock setuidgid-chroot stunnel-imap stunnel-imap-key proxy-server imap-tls-server"},
	} {
		got := Programs(c.u)
		if strings.Join(got, " ") != c.want {
			t.Errorf("%+v: %q, want %q", c.u, got, c.want)
		}
		for _, p := range got {
			if !slices.Contains(suite.Programs, p) && !slices.Contains([]string{"tcpserver", "envdir", "softlimit"}, p) {
				t.Errorf("%s is neither the suite's nor an outside program", p)
			}
		}
	}
}

func TestFind(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "makesock"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(b, "tcpserver"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(b, "stunnel-imap"), []byte("not executable\n"), 0o644)
	os.Mkdir(filepath.Join(b, "setuidgid-chroot"), 0o755)
	path := a + ":" + b
	if p, err := LookPath("tcpserver", path); err != nil || p != filepath.Join(b, "tcpserver") {
		t.Errorf("LookPath tcpserver: %q %v", p, err)
	}
	if got := Missing([]string{"tcpserver", "makesock", "setuidgid-chroot", "stunnel-imap"}, path); strings.Join(got, " ") != "setuidgid-chroot stunnel-imap" {
		t.Errorf("Missing: %q", got)
	}
	err := Find([]string{"tcpserver", "makesock", "stunnel-imap"}, path)
	if e, ok := err.(*log.Error); !ok || e.Code != 111 || err.Error() != "unable to find stunnel-imap in $PATH: file does not exist" {
		t.Errorf("Find: %v", err)
	}
}

func TestMode(t *testing.T) {
	for _, m := range suite.Modes {
		if got, err := Mode(m.Name); err != nil || got != m {
			t.Errorf("Mode(%q): %v %v", m.Name, got, err)
		}
	}
	for name, want := range map[string]string{
		"implicit": "mode implicit is now called imaps: write imaps (in env/MODE for a service)",
		"":         `mode "" is not imap, imap-, imaps, pop3, pop3- or pop3s`,
		"IMAP":     `mode "IMAP" is not imap, imap-, imaps, pop3, pop3- or pop3s`,
	} {
		if _, err := Mode(name); err == nil || err.Error() != want || err.(*log.Error).Code != 100 {
			t.Errorf("Mode(%q): %v, want %q", name, err, want)
		}
	}
}

func TestForms(t *testing.T) {
	for _, ok := range []string{"imaptls", "_x", "a.b-c"} {
		if Account(ok) != nil {
			t.Errorf("Account(%q) refused", ok)
		}
	}
	for _, bad := range []string{"", "-u", "bad;name", "a b"} {
		if Account(bad) == nil {
			t.Errorf("Account(%q) taken", bad)
		}
	}
	if UIDRange("2000000000:4194304") != nil || UIDRange("1:2:3") == nil || UIDRange("2e9:5") == nil || UIDRange("") == nil {
		t.Error("UIDRange")
	}
	for _, ok := range []string{"0", "127.0.0.1", "::", "::1"} {
		if IP(ok) != nil {
			t.Errorf("IP(%q) refused", ok)
		}
	}
	for _, bad := range []string{"", "-1", "localhost", "1.2.3"} {
		if IP(bad) == nil {
			t.Errorf("IP(%q) taken", bad)
		}
	}
	if Port("0") != nil || Port("65535") != nil || Port("65536") == nil || Port("+1") == nil || Port("imap") == nil {
		t.Error("Port")
	}
	if AtLeastOne("1") != nil || AtLeastOne("0") == nil || AtLeastOne("+5") == nil || AtLeastOne("x") == nil {
		t.Error("AtLeastOne")
	}
	if Sources("10.0.0.0/8,::1") != nil {
		t.Error("Sources refused a good list")
	}
	for _, bad := range []string{"", "10.0.0.0/33", "fe80::1%eth0", "10.0.0.1,,", "host"} {
		if Sources(bad) == nil {
			t.Errorf("Sources(%q) taken", bad)
		}
	}
}

// TestJail: Jail is what a connection needs (a directory), JailSafe
// what the isolation needs (root's, writable by no one else, empty).
func TestJail(t *testing.T) {
	dir := t.TempDir()
	jail := filepath.Join(dir, "jail")
	if err := Jail(jail); err == nil || err.(*log.Error).Code != 111 || !strings.HasSuffix(err.Error(), "jail "+jail+": file does not exist") {
		t.Errorf("missing: %v", err)
	}
	os.WriteFile(jail, nil, 0o644)
	if err := Jail(jail); err == nil || err.Error() != "jail "+jail+" is not a directory" {
		t.Errorf("a file: %v", err)
	}
	os.Remove(jail)
	os.Mkdir(jail, 0o755)
	if err := Jail(jail); err != nil {
		t.Errorf("a directory: %v", err)
	}
	if os.Geteuid() != 0 {
		if err := JailSafe(jail); err == nil || !strings.Contains(err.Error(), "not root: chown root:root") {
			t.Errorf("not root's: %v", err)
		}
		t.Skip("the rest needs root (a jail of root's)")
	}
	if err := JailSafe(jail); err != nil {
		t.Errorf("a good jail: %v", err)
	}
	os.Chmod(jail, 0o775)
	if err := JailSafe(jail); err == nil || err.Error() != "jail "+jail+" is writable by others (mode 0775): chmod 755 "+jail {
		t.Errorf("group-writable: %v", err)
	}
	os.Chmod(jail, 0o755)
	os.WriteFile(filepath.Join(jail, "bin"), nil, 0o644)
	if err := JailSafe(jail); err == nil || err.Error() != "jail "+jail+" is not empty (bin, ...): the proxy's whole world must be empty" {
		t.Errorf("not empty: %v", err)
	}
	os.Chown(jail, 1, 1)
	if err := JailSafe(jail); err == nil || !strings.Contains(err.Error(), "owned by uid 1, not root") {
		t.Errorf("not root's: %v", err)
	}
}

// TestServerAddress: one word that is an address is connected to; a
// path that is a program, or more than one word, is run; a word shaped
// like a TCP address that is not a good one is refused.
func TestServerAddress(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ln, err := net.Listen("unix", "imap.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.WriteFile("imapd", []byte("#!/bin/sh\n"), 0o755)
	os.Mkdir("adir", 0o755)
	for _, c := range []struct {
		argv          string
		network, addr string
		bad           bool
	}{
		{"./imap.sock", "unix", "./imap.sock", false},
		{dir + "/imap.sock", "unix", dir + "/imap.sock", false},
		{"./later.sock", "unix", "./later.sock", false},
		{"/run/dovecot/imap-tls", "unix", "/run/dovecot/imap-tls", false},
		{"127.0.0.1:10143", "tcp", "127.0.0.1:10143", false},
		{"[::1]:10143", "tcp", "[::1]:10143", false},
		{"./imapd", "", "", false},
		{"./adir", "", "", false},
		{"/bin/sh", "", "", false},
		{"imapd", "", "", false},
		{"./imap.sock x", "", "", false},
		{"socat STDIO UNIX-CONNECT:./imap.sock", "", "", false},
		{"127.0.0.1:0", "", "", true},
		{"127.0.0.1:65536", "", "", true},
		{"127.0.0.1:imap", "", "", true},
		{"1.2.3:143", "", "", true},
		{"[::1]", "", "", true},
		{"[fe80::1%eth0]:143", "", "", true},
		{"./" + strings.Repeat("s", 106), "", "", true},
	} {
		network, addr, err := ServerAddress("", strings.Fields(c.argv))
		if network != c.network || addr != c.addr || (err != nil) != c.bad {
			t.Errorf("%q: %q %q %v", c.argv, network, addr, err)
		}
		if err != nil && err.(*log.Error).Code != 100 {
			t.Errorf("%q: %v, want a configuration error", c.argv, err)
		}
	}
	if w := SocketState("./imap.sock"); w != "" {
		t.Errorf("a socket: %q", w)
	}
	if w := SocketState("./later.sock"); w != "server socket ./later.sock does not exist yet: is the server up? (every connection fails until it is)" {
		t.Errorf("no socket: %q", w)
	}
	// Ambiguous: a program mistyped, or a socket not up yet: both said.
	if w := SocketState("/nonexistent/imapd"); w != "server socket /nonexistent/imapd does not exist yet: is the server up? (every connection fails until it is); if /nonexistent/imapd is meant as a program: no such file" {
		t.Errorf("no such file: %q", w)
	}
	if w := SocketState("./imapd"); w != "server socket ./imapd is not a socket" {
		t.Errorf("a file: %q", w)
	}
}

func TestIDs(t *testing.T) {
	dir := t.TempDir()
	sgc := filepath.Join(dir, "sgc")
	os.WriteFile(sgc, []byte("#!/bin/sh\ncase \"$*\" in *1:1*) echo refused; exit 100 ;; *9:9*) exit 111 ;; esac\necho \"$0 $*\"\n"), 0o755)
	var out strings.Builder
	if err := IDs(sgc, []string{"-r", "5:6"}, &out); err != nil || out.String() != sgc+" -r 5:6 true\n" {
		t.Errorf("good: %v %q", err, out.String())
	}
	if err := IDs(sgc, []string{"-r", "1:1"}, &out); err == nil || err.Error() != "setuidgid-chroot refuses -r 1:1" || err.(*log.Error).Code != 100 {
		t.Errorf("refused: %v", err)
	}
	if err := IDs(sgc, []string{"-u", "x9:9"}, &out); err == nil || err.Error() != "unable to check -u x9:9 with setuidgid-chroot: exit status 111" {
		t.Errorf("failed: %v", err)
	}
	if err := IDs(filepath.Join(dir, "none"), []string{"-r", "5:6"}, &out); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
