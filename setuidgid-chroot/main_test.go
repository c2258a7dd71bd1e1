package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"imap-tls/internal/sockaddr"
	"imap-tls/log"
)

func mustAddr(s string) *sockaddr.Address {
	a, err := sockaddr.Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

func TestParseArgs(t *testing.T) {
	good := []struct {
		args []string
		want config
	}{
		{[]string{"-u", "imaptls", "prog"}, config{account: "imaptls", argv: []string{"prog"}}},
		{[]string{"-/", "ssl", "-u", "imaptls", "prog", "-u", "x"}, config{root: "ssl", account: "imaptls", argv: []string{"prog", "-u", "x"}}},
		{[]string{"-U", "--", "-prog"}, config{env: true, argv: []string{"-prog"}}},
		{[]string{"-r", "2000000000:4194304", "-o", "3:key.pem", "-o", "7:cert.pem", "prog", "a"},
			config{rng: &idRange{2000000000, 4194304}, opens: []openSpec{{fd: 3, path: "key.pem", kind: 'o'}, {fd: 7, path: "cert.pem", kind: 'o'}}, argv: []string{"prog", "a"}}},
		{[]string{"-o", "4:a:b", "-u", "u", "p"}, config{account: "u", opens: []openSpec{{fd: 4, path: "a:b", kind: 'o'}}, argv: []string{"p"}}},
		{[]string{"-u", "u", "-o", "3:k.pem", "-s", "4:sock", "-l", "5:l.sock", "p"},
			config{account: "u", opens: []openSpec{{fd: 3, path: "k.pem", kind: 'o'}, {fd: 4, path: "sock", kind: 's'}, {fd: 5, path: "l.sock", kind: 'l'}}, argv: []string{"p"}}},
		{[]string{"-u", "u", "-c", "3:127.0.0.1:10143", "-c", "6:[::1]:143", "-c", "7:/run/imap", "-s", "4:./sock", "p"},
			config{account: "u", opens: []openSpec{
				{fd: 3, path: "127.0.0.1:10143", kind: 'c', addr: mustAddr("127.0.0.1:10143")},
				{fd: 6, path: "[::1]:143", kind: 'c', addr: mustAddr("[::1]:143")},
				{fd: 7, path: "/run/imap", kind: 'c', addr: mustAddr("/run/imap")},
				{fd: 4, path: "./sock", kind: 's'}}, argv: []string{"p"}}},
	}
	for _, g := range good {
		c, err := parseArgs(g.args)
		if err != nil {
			t.Errorf("parseArgs(%q): %v", g.args, err)
			continue
		}
		if !reflect.DeepEqual(*c, g.want) {
			t.Errorf("parseArgs(%q) = %+v, want %+v", g.args, *c, g.want)
		}
	}
	bad := []struct {
		args []string
		msg  string
	}{
		{nil, "one of -u, -U or -r"},
		{[]string{"prog"}, "one of -u, -U or -r"},
		{[]string{"-u", "a"}, "no program"},
		{[]string{"-u", "a", "--"}, "no program"},
		{[]string{"-u", "a", "-U", "p"}, "exclude"},
		{[]string{"-U", "-r", "1:2", "p"}, "exclude"},
		{[]string{"-u", "", "p"}, `bad value for -u: "" (empty)`},
		{[]string{"-/", "", "-U", "p"}, `bad value for -/: "" (empty)`},
		{[]string{"-x", "-U", "p"}, "unknown option -x"},
		{[]string{"-U", "-o", "2:/f", "p"}, `bad value for -o: "2:/f" (fd 2 is not a descriptor number from 3 to 1048575: 0, 1 and 2 are the connection and the log)`},
		{[]string{"-U", "-o", "0:/f", "p"}, "fd 0 is not a descriptor number from 3"},
		{[]string{"-U", "-o", "-3:/f", "p"}, `bad value for -o: "-3:/f" (fd -3 is not a descriptor number from 3 to 1048575)`},
		{[]string{"-U", "-o", "x:/f", "p"}, "fd x is not a descriptor number"},
		{[]string{"-U", "-o", "1048576:/f", "p"}, "fd 1048576 is not a descriptor number"},
		{[]string{"-U", "-o"}, "missing value after -o"},
		{[]string{"-U", "-o", "3", "p"}, `bad value for -o: "3" (not fd:path)`},
		{[]string{"-U", "-o", "3:", "p"}, "(not fd:path)"},
		{[]string{"-U", "-o", "3:a", "-o", "3:b", "p"}, "twice"},
		{[]string{"-U", "-s", "3:a", "-l", "3:b", "p"}, "twice"},
		{[]string{"-U", "-s", "2:a", "p"}, `bad value for -s: "2:a" (fd 2 is not`},
		{[]string{"-U", "-c", "3:localhost:143", "p"}, `bad value for -c: "3:localhost:143" (` + sockaddr.ErrAddress.Error() + ")"},
		{[]string{"-U", "-c", "3:127.0.0.1:0", "p"}, `bad value for -c: "3:127.0.0.1:0" (port "0" is not a number from 1 to 65535)`},
		{[]string{"-U", "-c", "3:signer/socket", "p"}, `bad value for -c: "3:signer/socket" (not a unix socket path (starting with / or .)`},
		{[]string{"-U", "-c", "3:/a", "-s", "3:/b", "p"}, "-o, -c, -s and -l name fd 3 twice"},
		{[]string{"-r", "5", "p"}, `bad value for -r: "5" (not base:count)`},
		{[]string{"-r", "a:5", "p"}, `bad value for -r: "a:5" (not base:count, two decimal numbers)`},
		{[]string{"-r", "+1:5", "p"}, "two decimal numbers"},
		{[]string{"-r", "1:", "p"}, "two decimal numbers"},
		{[]string{"-h"}, ""},
	}
	for _, b := range bad {
		_, err := parseArgs(b.args)
		var u *log.UsageError
		if !errors.As(err, &u) {
			t.Errorf("parseArgs(%q) = %v, want a usage error", b.args, err)
			continue
		}
		if u.Synopsis != synopsis {
			t.Errorf("parseArgs(%q): synopsis %q", b.args, u.Synopsis)
		}
		if !strings.Contains(u.Msg, b.msg) {
			t.Errorf("parseArgs(%q): message %q, want it to hold %q", b.args, u.Msg, b.msg)
		}
	}
}

const passwd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

# a comment
+nis::::::
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
imaptls:x:994:993::/home/imaptls:/usr/sbin/nologin
rootgroup:x:1000:0::/:/bin/sh
`

const group = `root:x:0:
daemon:x:1:
imaptls:x:993:
mail:x:8:imaptls,alice
`

func TestParsePasswd(t *testing.T) {
	e, err := parseDB([]byte(passwd), "/etc/passwd", 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(e) != 5 {
		t.Fatalf("%d entries, want 5: %+v", len(e), e)
	}
	tg, ok := accountTarget(e, "imaptls")
	if !ok || !reflect.DeepEqual(tg, target{uid: 994, gid: 993, groups: []uint32{993}}) {
		t.Errorf("imaptls: %+v %v", tg, ok)
	}
	if _, ok := accountTarget(e, "imap"); ok {
		t.Errorf("a prefix of a name matched")
	}
	if _, ok := accountTarget(e, "+nis"); ok {
		t.Errorf("a NIS compat line matched")
	}
	tg, _ = accountTarget(e, "root")
	if err := tg.refuseRoot("account root"); err == nil || !strings.Contains(err.Error(), "uid 0") {
		t.Errorf("root not refused: %v", err)
	}
	tg, _ = accountTarget(e, "rootgroup")
	if err := tg.refuseRoot("account rootgroup"); err == nil || !strings.Contains(err.Error(), "gid 0") {
		t.Errorf("gid 0 not refused: %v", err)
	}
	for _, bad := range []string{
		"a:x:1:1::/\n",                    // 6 fields
		"a:x:1:1::/:/bin/sh:extra\n",      // 8 fields
		"a:x:one:1::/:/bin/sh\n",          // uid not a number
		"a:x:1:-1::/:/bin/sh\n",           // negative gid
		"a:x:4294967295:1::/:/bin/sh\n",   // (uid_t)-1
		"a:x:4294967296:1::/:/bin/sh\n",   // too large
		":x:1:1::/:/bin/sh\n",             // no name
		"ok:x:1:1::/:/bin/sh\nbroken:x\n", // a later line
	} {
		if _, err := parseDB([]byte(bad), "/etc/passwd", 7); err == nil || !strings.Contains(err.Error(), "/etc/passwd") {
			t.Errorf("parseDB(%q) = %v, want an error naming the file", bad, err)
		}
	}
}

func TestParseGroup(t *testing.T) {
	e, err := parseDB([]byte(group), "/etc/group", 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{{name: "root", id: 0}, {name: "daemon", id: 1}, {name: "imaptls", id: 993}, {name: "mail", id: 8}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("got %+v, want %+v", e, want)
	}
	if _, err := parseDB([]byte("g:x:1\n"), "/etc/group", 4); err == nil {
		t.Errorf("3-field group line accepted")
	}
}

func TestEnvTarget(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	good := []struct {
		env  func(string) (string, bool)
		want target
	}{
		{env("UID", "994", "GID", "993"), target{994, 993, []uint32{993}}},
		{env("UID", "994", "GID", "993", "GIDLIST", ""), target{994, 993, []uint32{}}},
		{env("UID", "994", "GID", "993", "GIDLIST", "993,8,12"), target{994, 993, []uint32{993, 8, 12}}},
	}
	for _, g := range good {
		got, err := envTarget(g.env)
		if err != nil || !reflect.DeepEqual(got, g.want) {
			t.Errorf("envTarget = %+v, %v; want %+v", got, err, g.want)
		}
	}
	bad := []struct {
		env func(string) (string, bool)
		msg string
	}{
		{env(), "$UID is not set"},
		{env("UID", "994"), "$GID is not set"},
		{env("UID", "", "GID", "1"), "$UID"},
		{env("UID", "x", "GID", "1"), "$UID"},
		{env("UID", "1", "GID", "-1"), "$GID"},
		{env("UID", "1", "GID", "1", "GIDLIST", "1,,2"), "$GIDLIST"},
		{env("UID", "1", "GID", "1", "GIDLIST", "1,x"), "$GIDLIST"},
	}
	for _, b := range bad {
		if _, err := envTarget(b.env); err == nil || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("envTarget: %v, want an error holding %q", err, b.msg)
		}
	}
	tg, _ := envTarget(env("UID", "5", "GID", "5", "GIDLIST", "5,0"))
	if err := tg.refuseRoot("$UID/$GID"); err == nil || !strings.Contains(err.Error(), "group 0") {
		t.Errorf("group 0 in $GIDLIST not refused: %v", err)
	}
	tg, _ = envTarget(env("UID", "0", "GID", "5"))
	if err := tg.refuseRoot("$UID/$GID"); err == nil {
		t.Errorf("$UID 0 not refused")
	}
}

func TestRange(t *testing.T) {
	pw, _ := parseDB([]byte(passwd), "/etc/passwd", 7)
	gr, _ := parseDB([]byte(group), "/etc/group", 4)
	good := []idRange{
		{2000000000, 4194304},
		{70000, 32768},
		{4294967295 - 4194304, 4194304}, // ends exactly at 4294967294
	}
	for _, r := range good {
		if err := r.check(32768, pw, gr); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []struct {
		r      idRange
		pidMax uint64
		msg    string
	}{
		{idRange{0, 4194304}, 32768, "start at 1"},
		{idRange{2000000000, 32767}, 32768, "below kernel.pid_max"},
		{idRange{2000000000, 100000}, 4194304, "below kernel.pid_max"},
		{idRange{4294967295 - 4194303, 4194304}, 32768, "goes past"},
		{idRange{1, 1 << 40}, 32768, "goes past"},
		{idRange{1 << 40, 32768}, 32768, "goes past"},
		{idRange{60000, 32768}, 32768, "uid 65534"},
		{idRange{65535, 32768}, 32768, "uid 65535"},
		{idRange{900, 32768}, 32768, "uid 994 of account imaptls"},
		{idRange{2, 900}, 900, "gid 8 of group mail"},
	}
	for _, b := range bad {
		if err := b.r.check(b.pidMax, pw, gr); err == nil || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%+v with pid_max %d: %v, want an error holding %q", b.r, b.pidMax, err, b.msg)
		}
	}
	r := idRange{2000000000, 4194304}
	tg, err := r.target(4711)
	if err != nil || !reflect.DeepEqual(tg, target{2000004711, 2000004711, []uint32{2000004711}}) {
		t.Errorf("target(4711) = %+v, %v", tg, err)
	}
	if _, err := r.target(4194304); err == nil {
		t.Errorf("a pid outside the count was accepted")
	}
}

func TestFindProg(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Mkdir(a, 0o755)
	os.Mkdir(b, 0o755)
	os.WriteFile(filepath.Join(a, "prog"), nil, 0o644) // not executable: skipped
	os.WriteFile(filepath.Join(b, "prog"), nil, 0o755)
	os.Mkdir(filepath.Join(a, "dirprog"), 0o755) // a directory: skipped
	if p, err := findProg("prog", a+":"+b); err != nil || p != filepath.Join(b, "prog") {
		t.Errorf("findProg(prog) = %q, %v", p, err)
	}
	if p, err := findProg("./x/y", a); err != nil || p != "./x/y" {
		t.Errorf("a name with a slash was searched: %q, %v", p, err)
	}
	if _, err := findProg("nosuch", a+":"+b); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("findProg(nosuch) = %v, want file does not exist", err)
	}
	if _, err := findProg("dirprog", a); err == nil {
		t.Errorf("a directory was found as a program")
	}
}

// TestExecFDNul: an argument with a NUL byte cannot be passed to
// execveat; execFD says so, exit 100, before any system call. (The
// environment cannot hold one: setenv refuses it.)
func TestExecFDNul(t *testing.T) {
	err := execFD(-1, []string{"prog", "a\x00b"}, unix.Gettid())
	var e *log.Error
	if !errors.As(err, &e) || e.Code != log.ExitUsage || err.Error() != "unable to run prog: argument or environment holds a NUL byte" {
		t.Errorf("execFD: %v, want exit 100 and unable to run prog: argument or environment holds a NUL byte", err)
	}
}

// TestExecFDThread: execFD refuses to exec from any thread but the one
// that dropped the credentials (the tripwire behind init's lock), exit
// 111, before the exec.
func TestExecFDThread(t *testing.T) {
	err := execFD(-1, []string{"prog"}, unix.Gettid()+1)
	var e *log.Error
	if !errors.As(err, &e) || e.Code != log.ExitTemp || err.Error() != "unable to run prog: not on the thread that dropped privileges" {
		t.Errorf("execFD: %v, want exit 111 and unable to run prog: not on the thread that dropped privileges", err)
	}
}
