package main

import (
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"

	"imap-tls/internal/opt"
	"imap-tls/internal/sockaddr"
	"imap-tls/log"
)

const sep = separator

func TestParseArgs(t *testing.T) {
	for _, tt := range []struct {
		args         []string
		fd           int
		wait         bool
		prog1, prog2 []string
	}{
		{[]string{"a", sep, "b"}, 3, false, []string{"a"}, []string{"b"}},
		{[]string{"-w", "a", "x", sep, "b", "y"}, 3, true, []string{"a", "x"}, []string{"b", "y"}},
		{[]string{"-d", "7", "a", sep, "b"}, 7, false, []string{"a"}, []string{"b"}},
		{[]string{"-d9", "-w", "a", sep, "b"}, 9, true, []string{"a"}, []string{"b"}},
		{[]string{"-wd", "9", "a", sep, "b"}, 9, true, []string{"a"}, []string{"b"}},
		{[]string{"-w", "-d", "3", "a", sep, "b"}, 3, true, []string{"a"}, []string{"b"}},
		// prog1's own options stay prog1's: options end at prog1.
		{[]string{"stunnel-imap", "-n", "imap", "-F", "3", sep, "imapd", "-x"}, 3, false,
			[]string{"stunnel-imap", "-n", "imap", "-F", "3"}, []string{"imapd", "-x"}},
		// -- ends options, so prog1 may start with a dash.
		{[]string{"--", "-odd", sep, "b"}, 3, false, []string{"-odd"}, []string{"b"}},
		{[]string{"-d", "4", "--", "-w", sep, "b"}, 4, false, []string{"-w"}, []string{"b"}},
		// The last separator splits; earlier ones belong to prog1 (a
		// nested makesock, which must inherit the first socket).
		{[]string{"makesock", "-d", "4", "a", sep, "c", sep, "d"}, 3, false,
			[]string{"makesock", "-d", "4", "a", sep, "c"}, []string{"d"}},
		{[]string{"-d", "1048575", "a", sep, "b"}, opt.MaxFD, false, []string{"a"}, []string{"b"}},
	} {
		c, err := parseArgs(tt.args)
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tt.args, err)
			continue
		}
		if c.fd != tt.fd || c.wait != tt.wait || !slices.Equal(c.prog1, tt.prog1) || !slices.Equal(c.prog2, tt.prog2) {
			t.Errorf("parseArgs(%q) = fd %d wait %v prog1 %q prog2 %q, want fd %d wait %v prog1 %q prog2 %q",
				tt.args, c.fd, c.wait, c.prog1, c.prog2, tt.fd, tt.wait, tt.prog1, tt.prog2)
		}
	}
}

func TestParseArgsUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{nil, "missing -makesock_connect_to (or -c address)"},
		{[]string{"a", "b"}, "missing -makesock_connect_to (or -c address)"},
		{[]string{"-w", "a"}, "missing -makesock_connect_to (or -c address)"},
		{[]string{sep, "b"}, "missing prog1 before -makesock_connect_to"},
		{[]string{"-w", sep, "b"}, "missing prog1 before -makesock_connect_to"},
		{[]string{"a", sep}, "missing prog2 after -makesock_connect_to"},
		{[]string{sep}, "missing prog1 before -makesock_connect_to"},
		{[]string{"", sep, "b"}, "empty prog1"},
		{[]string{"a", sep, ""}, "empty prog2"},
		{[]string{"-d", "0", "a", sep, "b"}, `bad value for -d: "0" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "1", "a", sep, "b"}, `bad value for -d: "1" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "2", "a", sep, "b"}, `bad value for -d: "2" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "-1", "a", sep, "b"}, `bad value for -d: "-1" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "x", "a", sep, "b"}, `bad value for -d: "x" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "1048576", "a", sep, "b"}, `bad value for -d: "1048576" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "", "a", sep, "b"}, `bad value for -d: "" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d=9", "a", sep, "b"}, `bad value for -d: "=9" (not a descriptor number from 3 to 1048575)`},
		// The options are read first: a bad one is named even without a separator.
		{[]string{"-d"}, "missing value after -d"},
		{[]string{"-z", "cat"}, "unknown option -z"},
		{[]string{"-w", "cat"}, "missing -makesock_connect_to (or -c address)"},
		{[]string{"-d", sep, "b"}, "missing value after -d"},
		{[]string{"-x", "a", sep, "b"}, "unknown option -x"},
		{[]string{"--wait", "a", sep, "b"}, "unknown option --"},
		{[]string{"-w=maybe", "a", sep, "b"}, "unknown option -="},
		// The connect form.
		{[]string{"-c"}, "missing value after -c"},
		{[]string{"-c", "127.0.0.1:143"}, "missing prog1 after -c address"},
		{[]string{"-c", "/run/imap", ""}, "empty prog1"},
		{[]string{"-c", "/run/imap", sep, "b"}, "-c takes no -makesock_connect_to: the server is the address"},
		{[]string{"-w", "-c", "/run/imap", "a"}, "-w has no use with -c: there is no second program to wait for"},
		{[]string{"-c", "/run/imap", "-w", "a"}, "-w has no use with -c: there is no second program to wait for"},
		{[]string{"-c", "localhost:143", "a"}, `bad value for -c: "localhost:143" (` + sockaddr.ErrAddress.Error() + ")"},
		{[]string{"-c", "127.0.0.1:0", "a"}, `bad value for -c: "127.0.0.1:0" (port "0" is not a number from 1 to 65535)`},
		{[]string{"-c", "[::1]:imap", "a"}, `bad value for -c: "[::1]:imap" (port "imap" is not a number from 1 to 65535)`},
		{[]string{"-c", "/" + strings.Repeat("x", 107), "a"}, `bad value for -c: "/` + strings.Repeat("x", 107) + `" (a unix socket path has at most 107 bytes)`},
		{[]string{"-h", "a", sep, "b"}, ""},
	} {
		_, err := parseArgs(tt.args)
		var u *log.UsageError
		if !errors.As(err, &u) {
			t.Errorf("parseArgs(%q) = %v, want a usage error", tt.args, err)
			continue
		}
		if u.Msg != tt.msg || u.Synopsis != synopsis {
			t.Errorf("parseArgs(%q): msg %q synopsis %q, want %q and %q", tt.args, u.Msg, u.Synopsis, tt.msg, synopsis)
		}
	}
}

func TestParseArgsConnect(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		fd    int
		addr  string
		prog1 []string
	}{
		{[]string{"-c", "/run/dovecot/imap", "a", "x"}, 3, "/run/dovecot/imap", []string{"a", "x"}},
		{[]string{"-d", "5", "-c", "127.0.0.1:10143", "a"}, 5, "127.0.0.1:10143", []string{"a"}},
		{[]string{"-c[::1]:143", "--", "-odd"}, 3, "[::1]:143", []string{"-odd"}},
		// prog1's own options and separators stay prog1's: a nested
		// makesock in the socketpair form.
		{[]string{"-c", "./s", "makesock", "-d", "4", "p", "-F", "3", sep, "k", "-w"}, 3, "./s",
			[]string{"makesock", "-d", "4", "p", "-F", "3", sep, "k", "-w"}},
	} {
		c, err := parseArgs(tt.args)
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tt.args, err)
			continue
		}
		if c.connect == nil || c.connect.Text != tt.addr || c.fd != tt.fd || c.wait || !slices.Equal(c.prog1, tt.prog1) || c.prog2 != nil {
			t.Errorf("parseArgs(%q) = %+v, want fd %d -c %s prog1 %q", tt.args, c, tt.fd, tt.addr, tt.prog1)
		}
	}
}

// TestParseAddress: what -c accepts, and that every IP form it accepts
// means what net/netip says it means (makesock does not import netip:
// its init costs every connection).
func TestStatusOf(t *testing.T) {
	for _, tt := range []struct {
		ws   syscall.WaitStatus
		want int
	}{
		{0, 0},
		{5 << 8, 5},
		{255 << 8, 255},
		{syscall.WaitStatus(syscall.SIGKILL), 137},
		{syscall.WaitStatus(syscall.SIGTERM), 143},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, 139}, // core dumped
	} {
		if got := statusOf(tt.ws); got != tt.want {
			t.Errorf("statusOf(%#x) = %d, want %d", uint32(tt.ws), got, tt.want)
		}
	}
}

func TestProg1Files(t *testing.T) {
	none := ^uintptr(0)
	for _, tt := range []struct {
		fd, end1  int
		inherited []int
		want      []uintptr
	}{
		{3, 9, nil, []uintptr{0, 1, 2, 9}},
		{3, 3, []int{5}, []uintptr{0, 1, 2, 3}},
		{6, 3, []int{4, 6, 8}, []uintptr{0, 1, 2, none, 4, none, 3}},
	} {
		got := prog1Files(tt.fd, tt.end1, &descriptors{inherited: tt.inherited})
		if !slices.Equal(got, tt.want) {
			t.Errorf("prog1Files(%d, %d, %v) = %v, want %v", tt.fd, tt.end1, tt.inherited, got, tt.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	if p, err := lookPath("sh"); err != nil || p == "" {
		t.Errorf("lookPath(sh) = %q, %v", p, err)
	}
	if _, err := lookPath("makesock-no-such-program"); err != syscall.ENOENT {
		t.Errorf("lookPath(missing) error = %v, want ENOENT", err)
	}
	if _, err := lookPath("/nonexistent/prog"); log.Reason(err) != "file does not exist" {
		t.Errorf("lookPath(/nonexistent/prog) reason = %q", log.Reason(err))
	}
	if _, err := lookPath("/etc/passwd"); err == nil {
		t.Errorf("lookPath(/etc/passwd) succeeded on a file that is not executable")
	}
}
