package tests

// The shipped fail2ban jail (service/fail2ban/imap-tls.local) with the
// shipped filter (service/fail2ban/imap-tls.conf): its log paths over
// the layouts of a site, and a real ban by Debian's fail2ban-server in a
// private network namespace, on the log the real services wrote.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// f2bConf lays out a private fail2ban configuration directory: Debian's
// actions, filters, paths and jail.conf (its jails all disabled; no
// jail.d/defaults-debian.conf, whose sshd jail would stop the server
// where no sshd log exists), the shipped filter in filter.d/, the
// shipped jail in jail.d/ with its paths under /etc moved under root,
// and a fail2ban.conf whose socket, pid file and log are in the
// directory and whose database is in memory. It returns the directory.
func f2bConf(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fail2ban")
	if err := os.MkdirAll(filepath.Join(dir, "jail.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-r", "/etc/fail2ban/action.d", "/etc/fail2ban/filter.d", "/etc/fail2ban/jail.conf"}
	paths, _ := filepath.Glob("/etc/fail2ban/paths-*.conf")
	args = append(append(args, paths...), dir)
	if out, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	repo := filepath.Join(harness.RepoRoot(t), "service", "fail2ban")
	filter, err := os.ReadFile(filepath.Join(repo, "imap-tls.conf"))
	if err != nil {
		t.Fatal(err)
	}
	jail, err := os.ReadFile(filepath.Join(repo, "imap-tls.local"))
	if err != nil {
		t.Fatal(err)
	}
	// The log paths, and only they, move under root.
	logpath := regexp.MustCompile(`(?m)^(logpath\s*=\s*|\s+)/etc/imap-tls`)
	if n := len(logpath.FindAll(jail, -1)); n != 2 {
		t.Fatalf("the jail's logpath has %d globs under /etc/imap-tls, want 2:\n%s", n, jail)
	}
	jail = logpath.ReplaceAll(jail, []byte("${1}"+root+"/etc/imap-tls"))
	main := "[Definition]\nloglevel = INFO\nlogtarget = " + dir + "/fail2ban.log\nsyslogsocket = auto\n" +
		"socket = " + dir + "/fail2ban.sock\npidfile = " + dir + "/fail2ban.pid\nallowipv6 = auto\ndbfile = :memory:\ndbpurgeage = 1d\n"
	for name, data := range map[string][]byte{
		"filter.d/imap-tls.conf": filter,
		"jail.d/imap-tls.local":  jail,
		"fail2ban.conf":          []byte(main),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFail2banJailLogpath: the jail, read by Debian's fail2ban-client
// (its -d dump, no server), enables imap-tls with the shipped filter,
// nftables-multiport on 143, 993, 110 and 995, loopback ignored, and
// finds the log of every front whatever the layout: a site (a log per
// front, SITE/service/MODE/log/main/current) and service directories of
// one mode each (DIR/log/main/current, as /etc/imap-tls-993); no other
// file.
func TestFail2banJailLogpath(t *testing.T) {
	harness.Need(t, "fail2ban-client")
	root := t.TempDir()
	want := []string{
		"etc/imap-tls/service/imap/log/main/current",
		"etc/imap-tls/service/imaps/log/main/current",
		"etc/imap-tls/service/pop3/log/main/current",
		"etc/imap-tls/service/pop3s/log/main/current",
		"etc/imap-tls/service/signer/log/main/current", // read, never a match of the filter
		"etc/imap-tls-993/log/main/current",
		"etc/imap-tls-pop3s/log/main/current",
	}
	other := []string{
		"etc/imap-tls/service/imap/log/main/@400000006752b3e00c1e2a34.s", // multilog's old files: read while they were current
		"etc/imap-tls/service/imap/env/PORT",
		"etc/imap-tls-993/signer/log/main/current", // the signer of one mode's directory: never a match
		"etc/dovecot/log/main/current",
	}
	for _, f := range append(append([]string{}, want...), other...) {
		p := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := f2bConf(t, root)
	out, err := exec.Command("fail2ban-client", "-c", conf, "-d").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-client -d: %v\n%s", err, out)
	}
	dump := string(out)
	var got []string
	for _, m := range regexp.MustCompile(`\['set', 'imap-tls', 'addlogpath', '([^']*)', 'head'\]`).FindAllStringSubmatch(dump, -1) {
		got = append(got, strings.TrimPrefix(m[1], root+"/"))
	}
	if strings.Join(sorted(got), "\n") != strings.Join(sorted(want), "\n") {
		t.Errorf("log paths:\n%s\nwant:\n%s", strings.Join(sorted(got), "\n"), strings.Join(sorted(want), "\n"))
	}
	for _, w := range []string{
		"['add', 'imap-tls', 'auto']",
		"['set', 'imap-tls', 'maxretry', 5]",
		"['set', 'imap-tls', 'findtime', '10m']",
		"['set', 'imap-tls', 'bantime', '1h']",
		"['set', 'imap-tls', 'addignoreip', '127.0.0.1/8', '::1']",
		"['set', 'imap-tls', 'addaction', 'nftables-multiport']",
		"['port', '143,993,110,995']",
		"stunnel-imap: info: remote=",
		"['start', 'imap-tls']",
	} {
		if !strings.Contains(dump, w) {
			t.Errorf("no %s in fail2ban-client -d:\n%s", w, dump)
		}
	}
	if strings.Count(dump, "['add', ") != 1 {
		t.Errorf("a jail other than imap-tls is enabled:\n%s", dump)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// TestFail2banBan: a real ban, everything in a network namespace of its
// own (nothing on the host's firewall). A site of two fronts made by
// imap-tls-conf (-m imap,imaps) and run by svscan there through one
// link, STARTTLS on 143 and implicit TLS on 993, each logged by multilog
// as in production, in front of a private Dovecot that refuses wrong
// passwords; Debian's fail2ban-server runs there
// with the shipped jail and filter (only the log paths moved under the
// test's directory). Clients come from addresses of their own on lo:
// 127.0.0.1 fails five times and is ignored (ignoreip); 192.0.2.5 fails
// four times on both fronts (wrong passwords, a plaintext LOGIN) and is
// not banned yet, then once more and is banned: it can no longer
// connect to either port, while 192.0.2.6 and 127.0.0.1 still log in;
// fail2ban-client unban lets it in again.
func TestFail2banBan(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "fail2ban-server", "fail2ban-client", "nft", "curl", "socat")
	hostTables, _ := exec.Command("nft", "list", "tables").CombinedOutput()
	n := startNetNS(t, "192.0.2.1/32", "192.0.2.5/32", "192.0.2.6/32")
	dc := harness.StartDovecot(t) // on the host: the fronts reach it through its unix socket
	root := t.TempDir()
	// multilog runs as the log account: the path down to the site must
	// be traversable, as /etc is
	for _, d := range []string{filepath.Dir(root), root, filepath.Join(root, "etc")} {
		os.MkdirAll(d, 0o755)
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	site := filepath.Join(root, "etc", "imap-tls")
	pem, ca := harness.WriteCert(t, t.TempDir(), "192.0.2.1", "127.0.0.1")
	// Dovecot's login service on its unix socket (no PROXY header: the
	// client's address is not what this test is about)
	startSite(t, n, pem, site, []string{"imap", "imaps"}, map[string]string{"PROXYHEADER": ""}, map[string]string{"IMAPD": dc.Socket})

	conf := f2bConf(t, root)
	var f2bOut harness.LockedBuffer
	srv := n.Command("fail2ban-server", "-f", "-x", "-c", conf, "start")
	srv.Stdout, srv.Stderr = &f2bOut, &f2bOut
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	srv.WaitDelay = time.Second
	if err := srv.Start(); err != nil {
		t.Fatalf("unable to start fail2ban-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		exec.Command("fail2ban-client", "-c", conf, "stop").Run()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Errorf("fail2ban-server did not stop: %s", f2bOut.String())
			syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	f2bLog := func() string {
		b, _ := os.ReadFile(filepath.Join(conf, "fail2ban.log"))
		return f2bOut.String() + string(b)
	}
	status := func() string {
		out, _ := exec.Command("fail2ban-client", "-c", conf, "status", "imap-tls").CombinedOutput()
		return string(out)
	}
	field := func(st, name string) string {
		m := regexp.MustCompile(`(?m)` + regexp.QuoteMeta(name) + `:\s*(.*)$`).FindStringSubmatch(st)
		if m == nil {
			return "?"
		}
		return strings.TrimSpace(m[1])
	}
	waitStatus := func(what string, ok func(st string) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := status()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("fail2ban: %s not seen after 30 s; status:\n%s\nlog:\n%s", what, st, f2bLog())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitStatus("the jail up", func(st string) bool { return strings.Contains(st, "Status for the jail: imap-tls") })

	// The clients, in the namespace, each from its own address.
	curl := func(src, url, pass string) (string, int) {
		out, errOut, code := n.Run(t, "curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", ca,
			"--interface", src, "-u", "alice:"+pass, url)
		return out + errOut, code
	}
	const imap, imaps = "imap://192.0.2.1:143/", "imaps://192.0.2.1:993/"
	wrong := func(src, url string) {
		t.Helper()
		if out, code := curl(src, url, "wrong"); code != 67 { // CURLE_LOGIN_DENIED
			t.Fatalf("curl from %s to %s with a wrong password: exit %d, want 67 (login denied): %s", src, url, code, out)
		}
	}
	good := func(src, url string) {
		t.Helper()
		if out, code := curl(src, url, "secret"); code != 0 || !strings.Contains(out, "INBOX") {
			t.Errorf("curl from %s to %s: exit %d, want a login and the mailbox list: %s", src, url, code, out)
		}
	}
	refused := func(src, url string) {
		t.Helper()
		if out, code := curl(src, url, "secret"); code != 7 { // CURLE_COULDNT_CONNECT
			t.Errorf("curl from %s to %s: exit %d, want 7 (refused by the ban): %s", src, url, code, out)
		}
	}
	plaintext := func(src, host string) {
		t.Helper()
		c := n.Command("socat", "-T", "10", "STDIO", "TCP:"+host+":143,bind="+src)
		c.Stdin = strings.NewReader("a LOGIN alice secret\r\nb LOGOUT\r\n")
		out, err := harness.RunBounded(t, c, 30*time.Second)
		if err != nil || !strings.Contains(string(out), "a NO [PRIVACYREQUIRED]") {
			t.Fatalf("plaintext LOGIN from %s: %v: %q; log:\n%s", src, err, out, strings.Join((&harness.Service{Dir: filepath.Join(site, "service", "imap")}).LogLines(t), "\n"))
		}
	}
	lines := func(re string) int {
		rx := regexp.MustCompile(re)
		n := 0
		for _, d := range []string{filepath.Join(site, "service", "imap"), filepath.Join(site, "service", "imaps")} {
			s := &harness.Service{Dir: d}
			for _, l := range s.LogLines(t) {
				if rx.MatchString(l) {
					n++
				}
			}
		}
		return n
	}
	waitLines := func(re string, want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for lines(re) < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d log lines matching %q after 30 s, want %d", lines(re), re, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Loopback: ignored, however often it fails.
	for i := 0; i < 5; i++ {
		plaintext("127.0.0.1", "127.0.0.1")
	}
	// 192.0.2.5: four matches on the two fronts, one per connection.
	wrong("192.0.2.5", imap)
	wrong("192.0.2.5", imaps)
	wrong("192.0.2.5", imap)
	plaintext("192.0.2.5", "192.0.2.1")
	waitLines(`stunnel-imap: info: remote=192\.0\.2\.5:\d+ .* authfail=1 `, 3)
	waitLines(`stunnel-imap: warning: client sent LOGIN before STARTTLS: refused; remote=192\.0\.2\.5:\d+$`, 1)
	st := waitStatus("four failures", func(st string) bool { return field(st, "Total failed") == "4" })
	if field(st, "Currently banned") != "0" {
		t.Fatalf("banned after four failures (maxretry is 5):\n%s\nlog:\n%s", st, f2bLog())
	}
	if !strings.Contains(f2bLog(), "Ignore 127.0.0.1") {
		t.Errorf("fail2ban's log does not say 127.0.0.1 was ignored:\n%s", f2bLog())
	}
	// The fifth: banned.
	wrong("192.0.2.5", imaps)
	st = waitStatus("192.0.2.5 banned", func(st string) bool { return strings.Contains(field(st, "Banned IP list"), "192.0.2.5") })
	if field(st, "Banned IP list") != "192.0.2.5" || field(st, "Total failed") != "5" {
		t.Errorf("after the fifth failure, status:\n%s", st)
	}
	set, errOut, code := n.Run(t, "nft", "list", "set", "inet", "f2b-table", "addr-set-imap-tls")
	if code != 0 || !strings.Contains(set, "192.0.2.5") {
		t.Errorf("nft list set in the namespace: exit %d: %s%s", code, set, errOut)
	}
	refused("192.0.2.5", imap)
	refused("192.0.2.5", imaps)
	good("192.0.2.6", imap)
	good("192.0.2.6", imaps)
	good("127.0.0.1", "imap://127.0.0.1:143/")

	// Unban: in again.
	if out, err := exec.Command("fail2ban-client", "-c", conf, "unban", "192.0.2.5").CombinedOutput(); err != nil {
		t.Fatalf("fail2ban-client unban: %v: %s", err, out)
	}
	st = status()
	if field(st, "Currently banned") != "0" {
		t.Errorf("after unban, status:\n%s", st)
	}
	good("192.0.2.5", imap)
	good("192.0.2.5", imaps)

	// Nothing reached the host's firewall.
	if after, _ := exec.Command("nft", "list", "tables").CombinedOutput(); string(after) != string(hostTables) {
		t.Errorf("the host's nftables tables changed:\nbefore:\n%s\nafter:\n%s", hostTables, after)
	}
}
