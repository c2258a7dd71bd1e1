package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"imap-tls/log"
	"imap-tls/service"
)

// Two unprivileged accounts that every Debian system has.
const (
	acct    = "daemon"
	logacct = "nobody"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not running as root: imap-tls-conf chowns files to other accounts")
	}
}

func ids(t *testing.T, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("account %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// exit is the status and the message log.Exit would give err.
func exit(err error) (int, string) {
	var out bytes.Buffer
	status := -1
	log.NewTo("imap-tls-conf", &out, func(c int) { status = c }).Exit(err)
	return status, out.String()
}

func TestMakesTheTree(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "imap-tls")
	var out bytes.Buffer
	if err := run([]string{acct, logacct, dir, "127.0.0.1", "1143"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	luid, lgid := ids(t, logacct)
	want := []struct {
		path     string
		mode     os.FileMode
		uid, gid int
		dir      bool
	}{
		{".", 0755, 0, 0, true},
		{"run", 0755, 0, 0, false},
		{"env", 0755, 0, 0, true},
		{"jail", 0755, 0, 0, true},
		{"ssl", 0700, 0, 0, true},
		{"log", 0755, 0, 0, true},
		{"log/run", 0755, 0, 0, false},
		{"log/main", 0750, luid, lgid, true},
		{"env/ACCOUNT", 0644, 0, 0, false},
		{"env/LOGACCOUNT", 0644, 0, 0, false},
		{"env/IP", 0644, 0, 0, false},
		{"env/PORT", 0644, 0, 0, false},
		{"env/MODE", 0644, 0, 0, false},
		{"env/CONCURRENCY", 0644, 0, 0, false},
		{"env/MEMLIMIT", 0644, 0, 0, false},
		{"env/SIGNERMEMLIMIT", 0644, 0, 0, false},
		{"env/UIDRANGE", 0644, 0, 0, false},
		{"env/GOMAXPROCS", 0644, 0, 0, false},
		{"env/IMAPD", 0644, 0, 0, false},
		{"env/PROXYHEADER", 0644, 0, 0, false},
		{"env/PROXYFROM", 0644, 0, 0, false},
		{"env/CERT_WARN_DAYS", 0644, 0, 0, false},
		{"env/PATH", 0644, 0, 0, false},
		{"env/SIGNER", 0644, 0, 0, false},
		{"env/LOGSIZE", 0644, 0, 0, false},
		{"env/LOGCOUNT", 0644, 0, 0, false},
		{"signer", 0755, 0, 0, true},
		{"signer/run", 0755, 0, 0, false},
		{"signer/log", 0755, 0, 0, true},
		{"signer/log/run", 0755, 0, 0, false},
		{"signer/log/main", 0750, luid, lgid, true},
	}
	for _, w := range want {
		fi, err := os.Lstat(filepath.Join(dir, w.path))
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.IsDir() != w.dir || fi.Mode().Perm() != w.mode || int(st.Uid) != w.uid || int(st.Gid) != w.gid {
			t.Errorf("%s: dir=%v mode=%o owner=%d:%d, want dir=%v mode=%o owner=%d:%d",
				w.path, fi.IsDir(), fi.Mode().Perm(), st.Uid, st.Gid, w.dir, w.mode, w.uid, w.gid)
		}
	}
	// Nothing else: every file in env/ is in the table above, no key
	// written, the jail empty, no temporary leftovers.
	listed := map[string]bool{}
	for _, w := range want {
		listed[w.path] = true
	}
	envEnts, _ := os.ReadDir(filepath.Join(dir, "env"))
	for _, e := range envEnts {
		if !listed["env/"+e.Name()] {
			t.Errorf("env/%s is not in the table of modes and owners", e.Name())
		}
	}
	for _, d := range []string{"jail", "ssl", "log/main"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
			t.Errorf("%s is not empty: %v", d, ents)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 1 {
		t.Errorf("the parent holds %v, want only the service directory", ents)
	}
	envs := map[string]string{"ACCOUNT": acct, "LOGACCOUNT": logacct, "IP": "127.0.0.1", "PORT": "1143", "MODE": "imap", "CONCURRENCY": "500", "MEMLIMIT": "100000000", "UIDRANGE": "2000000000:4194304", "GOMAXPROCS": "1"}
	for k, v := range envs {
		b, _ := os.ReadFile(filepath.Join(dir, "env", k))
		if string(b) != v+"\n" {
			t.Errorf("env/%s = %q, want %q", k, b, v+"\n")
		}
	}
	// env/PATH starts with the directory of the running executable.
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	b, _ := os.ReadFile(filepath.Join(dir, "env/PATH"))
	if !strings.HasPrefix(string(b), filepath.Dir(exe)+":") || !strings.Contains(string(b), ":/usr/bin:") {
		t.Errorf("env/PATH = %q, want %s first and /usr/bin in it", b, filepath.Dir(exe))
	}
	runFile, _ := os.ReadFile(filepath.Join(dir, "run"))
	for _, s := range []string{"exec 2>&1\n", "exec envdir ./env ", "softlimit -d \"$MEMLIMIT\"",
		"set -- -u \"$ACCOUNT\"\n", "set -- -r \"$UIDRANGE\"\n",
		"set -- \"$@\" -s \"$SIGNER\" -C ./ssl/stunnel.pem\n", "set -- \"$@\" -k ./ssl/stunnel.pem\n",
		"imap-tls-server -V -n \"$MODE\" -c \"$CONCURRENCY\" \"$@\" -j ./jail \"$IP\" \"$PORT\" $IMAPD\n"} {
		if !strings.Contains(string(runFile), s) {
			t.Errorf("run lacks %q:\n%s", s, runFile)
		}
	}
	logRun, _ := os.ReadFile(filepath.Join(dir, "log/run"))
	if !strings.Contains(string(logRun), "exec setuidgid \"$LOGACCOUNT\" multilog t s\"$LOGSIZE\" n\"$LOGCOUNT\" \"-* tcpserver: *\" \"+* tcpserver: fatal: *\" \"+* tcpserver: warning: *\" \"+* tcpserver: status: $CONCURRENCY/$CONCURRENCY\" ./main\n") {
		t.Errorf("log/run:\n%s", logRun)
	}
	for _, f := range []string{"run", "log/run"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v %s", f, err, out)
		}
	}
	for _, s := range []string{"STARTTLS required on 127.0.0.1:1143", dir + "/ssl/stunnel.pem", "ln -s " + dir, "env/IMAPD"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("next steps lack %q:\n%s", s, out.String())
		}
	}
}

// The run file hands env/ to imap-tls-server, which checks it and
// spells the chain: what the run file itself decides is the account or
// the uid range (env/UIDRANGE empty or not), and that it quotes every
// setting but env/IMAPD (a command line, split at spaces).
func TestRunFile(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "svc")
	if err := run([]string{acct, logacct, dir}, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	// A PATH of a stand-in softlimit that prints its argv, each argument
	// in <>, so that a split or a join shows: the run
	// file's own logic is what is under test here; imap-tls-server's
	// checks and chain are tested in imap-tls-server/, the real
	// programs in tests/.
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "softlimit"), []byte("#!/bin/sh\nprintf '<%s>' softlimit \"$@\"; echo\n"), 0755); err != nil {
		t.Fatal(err)
	}
	// imap-tls-server -M NAME, before softlimit: GOMEMLIMIT's value.
	if err := os.WriteFile(filepath.Join(fake, "imap-tls-server"), []byte("#!/bin/sh\necho 20000000\n"), 0755); err != nil {
		t.Fatal(err)
	}
	// signer/run's check before the signer (stunnel-imap-key -c: a
	// stand-in that wants exactly that file, quiet when it is fine;
	// $REFUSE makes it warn, then refuse as the policy does) and its
	// svc -o on a refusal (a stand-in that prints its argv).
	if err := os.WriteFile(filepath.Join(fake, "stunnel-imap-key"), []byte("#!/bin/sh\ntest \"$*\" = \"-c -p ../ssl/stunnel.pem\" || { echo \"stunnel-imap-key: fatal: called with $*\" >&2; exit 111; }\n"+
		"test -z \"$REFUSE\" || { echo \"stunnel-imap-key: warning: $3: certificate for x expires ...\" >&2; echo \"stunnel-imap-key: fatal: certificate $3 expired on 2026-12-01\" >&2; exit 100; }\n"), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "svc"), []byte("#!/bin/sh\nprintf '<%s>' svc \"$@\"; echo\n"), 0755); err != nil {
		t.Fatal(err)
	}
	// envdir is the real one, so the env/ files are read as supervise would.
	envdir, err := exec.LookPath("envdir")
	if err != nil {
		t.Fatal("envdir not found: apt-get install daemontools")
	}
	os.WriteFile(filepath.Join(dir, "env/PATH"), []byte(fake+":"+filepath.Dir(envdir)+":/usr/bin:/bin\n"), 0644)
	runIt := func() string {
		cmd := exec.Command("sh", "./run")
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + filepath.Dir(envdir) + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sh ./run: %v %s", err, out)
		}
		return string(out)
	}
	front := func(mode string, ids ...string) string {
		args := []string{"softlimit", "-d", "100000000", "imap-tls-server", "-V", "-n", mode, "-c", "500"}
		args = append(args, ids...)
		if len(ids) < 3 { // the default: the signer
			args = append(args, "-s", "./signer/socket", "-C", "./ssl/stunnel.pem")
		}
		args = append(args, "-H") // env/PROXYHEADER yes
		// env/IMAPD: one address, Dovecot's haproxy listener (no socat)
		args = append(args, "-j", "./jail", "0.0.0.0", "143", "127.0.0.1:10143")
		return "<" + strings.Join(args, "><") + ">\n"
	}
	for _, mode := range []string{"imap", "imap-", "imaps", "implicit"} {
		os.WriteFile(filepath.Join(dir, "env/MODE"), []byte(mode+"\n"), 0644)
		if got, want := runIt(), front(mode, "-r", "2000000000:4194304"); got != want {
			t.Errorf("MODE=%s:\n got %q\nwant %q", mode, got, want)
		}
	}
	// A range with a space stays one argument: imap-tls-server refuses it.
	os.WriteFile(filepath.Join(dir, "env/UIDRANGE"), []byte("1 -u root:5\n"), 0644)
	if got, want := runIt(), front("implicit", "-r", "1 -u root:5"); got != want {
		t.Errorf("UIDRANGE with a space:\n got %q\nwant %q", got, want)
	}
	// An empty env/UIDRANGE (envdir removes the variable): the fixed
	// account.
	os.WriteFile(filepath.Join(dir, "env/UIDRANGE"), nil, 0644)
	if got, want := runIt(), front("implicit", "-u", acct); got != want {
		t.Errorf("UIDRANGE empty:\n got %q\nwant %q", got, want)
	}
	// An empty env/SIGNER: a key process for each connection.
	os.WriteFile(filepath.Join(dir, "env/SIGNER"), nil, 0644)
	if got, want := runIt(), front("implicit", "-u", acct, "-k", "./ssl/stunnel.pem"); got != want {
		t.Errorf("SIGNER empty:\n got %q\nwant %q", got, want)
	}
	os.WriteFile(filepath.Join(dir, "env/SIGNER"), []byte(service.Default("SIGNER")+"\n"), 0644)
	// No env/MODE at all (a file removed by hand): an empty -n, which
	// imap-tls-server refuses.
	os.Remove(filepath.Join(dir, "env/MODE"))
	if got, want := runIt(), front("", "-u", acct); got != want {
		t.Errorf("no env/MODE:\n got %q\nwant %q", got, want)
	}

	// The other run files take their accounts from the same env/: the
	// signer's (env/UIDRANGE still empty) env/ACCOUNT, both logs
	// env/LOGACCOUNT, through a stand-in setuidgid.
	if err := os.WriteFile(filepath.Join(fake, "setuidgid"), []byte("#!/bin/sh\nprintf '<%s>' setuidgid \"$@\"; echo\n"), 0755); err != nil {
		t.Fatal(err)
	}
	runIn := func(sub, file string) string {
		cmd := exec.Command("sh", file)
		cmd.Dir = filepath.Join(dir, sub)
		cmd.Env = []string{"PATH=" + filepath.Dir(envdir) + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sh %s/%s: %v %s", sub, file, err, out)
		}
		return string(out)
	}
	// env/LOGSIZE and env/LOGCOUNT: multilog's s and n, before ./main
	logLine := func(args ...string) string {
		return "<setuidgid><" + logacct + "><multilog><t><s16777215><n5><" + strings.Join(args, "><") + ">\n"
	}
	for _, c := range []struct{ sub, file, want string }{
		{"signer", "run", "<softlimit><-d><200000000><setuidgid-chroot><-/><../jail><-u><" + acct + "><-o><3:../ssl/stunnel.pem><-l><4:./socket><stunnel-imap-signer><-P><3:../ssl/stunnel.pem><-L><4>\n"},
		{"log", "run", logLine("-* tcpserver: *", "+* tcpserver: fatal: *", "+* tcpserver: warning: *", "+* tcpserver: status: 500/500", "./main")},
		{"signer/log", "run", logLine("./main")},
	} {
		if got := runIn(c.sub, c.file); got != c.want {
			t.Errorf("%s/%s:\n got %q\nwant %q", c.sub, c.file, got, c.want)
		}
	}
	os.WriteFile(filepath.Join(dir, "env/UIDRANGE"), []byte("2000000000:4194304\n"), 0644)
	if got, want := runIn("signer", "run"), "<softlimit><-d><200000000><setuidgid-chroot><-/><../jail><-r><2000000000:4194304><-o>"; !strings.HasPrefix(got, want) {
		t.Errorf("signer/run with env/UIDRANGE:\n got %q\nwant %q...", got, want)
	}
	// A certificate the check refuses: one line naming the file and the
	// way back, svc -o on the signer's own directory, exit 100; the
	// signer is not started.
	cmd := exec.Command("sh", "run")
	cmd.Dir = filepath.Join(dir, "signer")
	cmd.Env = []string{"PATH=" + filepath.Dir(envdir) + ":/usr/bin:/bin", "REFUSE=1"}
	out, err := cmd.CombinedOutput()
	want := "<svc><-o><.>\n"
	line := "run: fatal: unable to start the signer: certificate ../ssl/stunnel.pem expired on 2026-12-01: down until the file is fixed and svc -u " + filepath.Join(dir, "signer") + "\n"
	if code := cmd.ProcessState.ExitCode(); code != 100 || string(out) != line+want {
		t.Errorf("signer/run, the certificate refused: exit %d (%v), want 100;\n got %q\nwant %q", code, err, out, line+want)
	}
}

func TestImapsOn993(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "svc")
	var out bytes.Buffer
	// "--" ends the options, as in every program of the suite.
	if err := run([]string{"--", acct, logacct, dir, "0", "993"}, &out); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"MODE": "imaps", "PORT": "993", "IP": "0"} {
		b, _ := os.ReadFile(filepath.Join(dir, "env", k))
		if string(b) != v+"\n" {
			t.Errorf("env/%s = %q, want %q", k, b, v)
		}
	}
	if !strings.Contains(out.String(), "implicit TLS on 0:993") {
		t.Errorf("output: %s", out.String())
	}
}

func TestRefusals(t *testing.T) {
	needRoot(t)
	parent := t.TempDir()
	existing := filepath.Join(parent, "existing")
	os.Mkdir(existing, 0755)
	dangling := filepath.Join(parent, "dangling")
	os.Symlink("/nonexistent", dangling)
	dir := filepath.Join(parent, "new")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, 100, "usage: imap-tls-conf [ -m mode[,mode...] ] acct logacct dir [ ip [ port ] ]"},
		{[]string{acct, logacct}, 100, "usage:"},
		{[]string{acct, logacct, dir, "1.2.3.4", "143", "x"}, 100, "usage:"},
		{[]string{"-v", acct, logacct, dir}, 100, "fatal: unknown option -v"},
		{[]string{"-m"}, 100, "fatal: missing value after -m"},
		{[]string{"-m", "implicit", acct, logacct, dir}, 100, `fatal: bad value for -m: "implicit" (not imap, imap-, imaps, pop3, pop3- or pop3s)`},
		{[]string{"--", "-v", logacct, dir}, 100, `fatal: acct "-v" is not a valid account name`},
		{[]string{"--", acct, logacct}, 100, "usage:"},
		{[]string{"root", logacct, dir}, 100, "fatal: acct root is root"},
		{[]string{acct, "root", dir}, 100, "fatal: logacct root is root"},
		{[]string{"no-such-account-x", logacct, dir}, 100, "fatal: acct no-such-account-x does not exist"},
		{[]string{acct, "no-such-account-y", dir}, 100, "fatal: logacct no-such-account-y does not exist"},
		{[]string{"bad;name", logacct, dir}, 100, "is not a valid account name"},
		{[]string{acct, acct, dir}, 100, "must be different accounts"},
		{[]string{acct, logacct, existing}, 100, "exists: imap-tls-conf makes a new directory"},
		{[]string{acct, logacct, dangling}, 100, "exists"},
		{[]string{acct, logacct, ""}, 100, "dir must not be empty"},
		{[]string{acct, logacct, dir, "::"}, 100, `ip "::": write 0 for every address`},
		{[]string{acct, logacct, dir, "fe80::1%eth0"}, 100, "is not an IPv4 or IPv6 address"},
		{[]string{acct, logacct, dir, "1.2.3"}, 100, "is not an IPv4 or IPv6 address"},
		{[]string{acct, logacct, dir, "localhost"}, 100, "is not an IPv4 or IPv6 address"},
		{[]string{acct, logacct, dir, "127.0.0.1", "0"}, 100, `port "0" is not a number from 1 to 65535`},
		{[]string{acct, logacct, dir, "127.0.0.1", "65536"}, 100, "is not a number"},
		{[]string{acct, logacct, dir, "127.0.0.1", "+143"}, 100, "is not a number"},
		{[]string{acct, logacct, dir, "127.0.0.1", "imap"}, 100, "is not a number"},
		{[]string{acct, logacct, filepath.Join(parent, "missing", "svc")}, 111, "fatal: unable to create a directory in " + parent + "/missing: file does not exist"},
	} {
		err := run(c.args, new(bytes.Buffer))
		if got, msg := exit(err); got != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%q: exit %d %q, want %d with %q", c.args, got, msg, c.code, c.msg)
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Errorf("a refused run made %s", dir)
	}
	if ents, _ := os.ReadDir(existing); len(ents) != 0 {
		t.Errorf("the existing directory was changed: %v", ents)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 2 {
		t.Errorf("leftovers in %s: %v", parent, ents)
	}
}

// A directory that appears between the check and the rename is not
// replaced, even when empty (rename(2) alone would replace it).
func TestRenameNoReplace(t *testing.T) {
	parent := t.TempDir()
	src := filepath.Join(parent, "src")
	dst := filepath.Join(parent, "dst")
	os.Mkdir(src, 0755)
	os.WriteFile(filepath.Join(src, "run"), []byte("x"), 0644)
	os.Mkdir(dst, 0755)
	if err := renameNoReplace(src, dst); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("renameNoReplace onto an empty directory: %v, want EEXIST", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "run")); err == nil {
		t.Fatal("the empty directory was replaced")
	}
	os.Remove(dst)
	if err := renameNoReplace(src, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "run")); err != nil {
		t.Fatal(err)
	}
}

// A real system failure half-way (a file system out of inodes) exits 111
// and leaves nothing behind.
func TestFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	mnt := t.TempDir()
	// Room for the temporary directory and a few entries, not for all.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=8,mode=0755", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v %s): not running with CAP_SYS_ADMIN", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	dir := filepath.Join(mnt, "svc")
	err := run([]string{acct, logacct, dir}, new(bytes.Buffer))
	if code, msg := exit(err); code != 111 || !strings.Contains(msg, "no space left on device") {
		t.Fatalf("exit %d %q, want 111 with no space left on device", code, msg)
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}
