package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestSite: a site made by `imap-tls-conf -m imap,imaps,pop3,pop3s`,
// linked once into the directory of the real svscan, as an administrator
// does (`ln -s /etc/imap-tls /etc/service/`), with test ports on
// 127.0.0.1 instead of 143, 993, 110 and 995 (each front's env/PORT) and
// a private Dovecot behind, reached as the site's default server is: one
// address, Dovecot's haproxy listener (env/IMAPD), which the proxy's
// setuidgid-chroot connects as root (-c 3:ADDRESS), with a PROXY header
// (env/PROXYHEADER yes).
//
//   - the one link brings up all four fronts and the signer, and each
//     serves a login to a real client (Python's imaplib, poplib), with
//     the client's address in Dovecot's log (rip=); a held session is
//     one process, stunnel-imap, tcpserver's own child (setuidgid-chroot
//     exec'd it): no socat, no key process; and what tcpserver runs for
//     each connection (its argv) is setuidgid-chroot -c 3:IMAPD -s
//     4:../signer/socket stunnel-imap ...: no makesock at all;
//   - every log keeps env/LOGCOUNT files of env/LOGSIZE bytes;
//   - svc -t of one front restarts only it: the other fronts', the
//     signer's and the logs' pids stay the same;
//   - svc -d of the link leaves no process of the site: none with its
//     directory (or one below) as cwd in /proc, but the link's own
//     supervise; svc -u brings it all back.
func TestSite(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	harness.NeedRoot(t)
	harness.Need(t, "svscan", "supervise", "svc", "svok", "svstat", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver",
		"/usr/lib/dovecot/pop3-login")
	harness.EnsureAccount(t, harness.ServiceAcct)
	harness.EnsureAccount(t, harness.ServiceLogAcct)
	harness.ConfBin(t)
	st := harness.MakeSite(t, "imap", "imaps", "pop3", "pop3s")
	site, fronts, modes, dc, ca := st.Dir, st.Fronts, st.Modes, st.Dovecot, st.CA
	for _, m := range modes {
		imapd, err := os.ReadFile(filepath.Join(fronts[m].Dir, "env", "IMAPD"))
		if want := "127.0.0.1:10" + map[string]string{"imap": "143", "pop3": "110"}[m[:4]] + "\n"; err != nil || string(imapd) != want {
			t.Errorf("%s/env/IMAPD = %q, want the default %q", m, imapd, want)
		}
	}
	// The one link, in the directory the real svscan scans.
	st.Start(t)
	link, out, pgid := st.Link, st.Out, st.Svscan.Process.Pid
	signer := filepath.Join(site, "service", "signer")
	logs := func() string {
		var all []string
		for _, m := range modes {
			all = append(all, m+": "+strings.Join(fronts[m].LogLines(t), "\n"))
		}
		b, _ := os.ReadFile(filepath.Join(signer, "log", "main", "current"))
		return strings.Join(all, "\n") + "\nsigner: " + string(b) + "\nsvscan: " + out.String()
	}

	// Every front serves a login, to the real clients.
	tr := &harness.SvscanTree{CA: ca, Dovecot: dc}
	serve := func() {
		t.Helper()
		for _, m := range []string{"imap", "imaps"} {
			tr.Python(t, fronts[m])
		}
		for m, how := range map[string]string{"pop3": "stls", "pop3s": "implicit"} {
			r := harness.RunPoplib(t, fronts[m].Port, ca, how, logs)
			if !strings.HasPrefix(r.Pass, "+OK") || r.Count < 3 || !strings.HasPrefix(r.Quit, "+OK") {
				t.Errorf("poplib on %s: %+v", m, r)
			}
		}
	}
	serve()
	for _, m := range modes {
		fronts[m].WaitConnLines(t, 1)
	}
	harness.WaitDovecotLog(t, dc, `imap-login: Info: Login: user=<alice>.*rip=127\.0\.0\.1`)
	harness.WaitDovecotLog(t, dc, `pop3-login: Info: Login: user=<alice>.*rip=127\.0\.0\.1`)
	// The longest connection line, with its label: the arithmetic of
	// env/LOGSIZE and env/LOGCOUNT in service/README.md.
	longest := 0
	for _, m := range modes {
		for _, l := range fronts[m].LogLines(t) {
			if harness.ConnLine.MatchString(l) {
				longest = max(longest, len(l)+1)
			}
		}
	}
	t.Logf("the longest connection line in the logs: %d bytes with its newline", longest)

	// A held session: the proxy's setuidgid-chroot connected Dovecot and
	// the signer and exec'd stunnel-imap, tcpserver's child; nothing else
	// runs for it (no socat, no key process). Every process under
	// tcpserver is such a proxy (an earlier session may still be
	// ending).
	c := fronts["imaps"].Login(t, ca)
	tcpserver := fronts["imaps"].Pid(t)
	conn := harness.FindConn(t, func() []int { return harness.Descendants(tcpserver) }, harness.LocalPort(c), false)
	var chain []string
	bad := conn.Key != 0
	for _, p := range harness.Descendants(tcpserver) {
		st := harness.ProcStat(p)
		if len(st) < 2 {
			continue // gone meanwhile
		}
		chain = append(chain, st[1]+" "+harness.Cmdline(p))
		if argv := harness.ArgvOf(p); len(argv) == 0 || filepath.Base(argv[0]) != "stunnel-imap" || st[1] != strconv.Itoa(tcpserver) {
			bad = true
		}
	}
	if st := harness.ProcStat(conn.Proxy); len(st) < 2 || st[1] != strconv.Itoa(tcpserver) {
		bad = true
	}
	if joined := strings.Join(chain, "\n"); bad || strings.Contains(joined, "makesock") || strings.Contains(joined, "socat") {
		t.Errorf("a session's processes under tcpserver %d (parent, argv): want stunnel-imap alone, tcpserver's child, no makesock, no socat:\n%s", tcpserver, joined)
	}
	// A makesock that exec'd on would leave no process behind: what
	// tcpserver runs for each connection is in its own argv, and starts
	// with the setuidgid-chroot that connects Dovecot (-c 3:IMAPD) and
	// the signer; no makesock anywhere in it.
	imapd, _ := os.ReadFile(filepath.Join(fronts["imaps"].Dir, "env", "IMAPD"))
	targv := harness.ArgvOf(tcpserver)
	perConn := []string{}
	for i, a := range targv {
		if a == "setuidgid-chroot" || a == "makesock" || a == "proxy-server" {
			perConn = targv[i:]
			break
		}
	}
	if len(perConn) == 0 || perConn[0] != "setuidgid-chroot" || slices.Contains(targv, "makesock") ||
		!strings.Contains(" "+strings.Join(perConn, " ")+" ", " -c 3:"+strings.TrimSpace(string(imapd))+" -s 4:../signer/socket stunnel-imap -n imaps -F 3 -K 4 ") {
		t.Errorf("tcpserver %d runs for each connection %q (its argv %q), want setuidgid-chroot ... -c 3:%s -s 4:../signer/socket stunnel-imap ..., no makesock",
			tcpserver, perConn, targv, strings.TrimSpace(string(imapd)))
	}
	c.Cmd("z", "LOGOUT")
	c.Close()

	// Every log keeps env/LOGCOUNT files of env/LOGSIZE bytes.
	for _, d := range []string{fronts["imap"].Dir, fronts["pop3s"].Dir, signer} {
		pid, err := harness.SvstatPid(filepath.Join(d, "log"))
		if err != nil || pid == 0 {
			t.Fatalf("%s/log: not up (%v)", d, err)
		}
		if argv := harness.ArgvOf(pid); len(argv) < 4 || argv[0] != "multilog" || argv[1] != "t" || argv[2] != "s16777215" || argv[3] != "n5" {
			t.Errorf("%s/log runs %q, want multilog t s16777215 n5 ...", d, argv)
		}
	}

	// svc -t of one front restarts it alone.
	pids := map[string]int{}
	for _, d := range append(siteDirs(site, modes), signer) {
		pid, err := harness.SvstatPid(d)
		if err != nil || pid == 0 {
			t.Fatalf("%s: not up (%v)", d, err)
		}
		pids[d] = pid
	}
	fronts["imaps"].Restart(t)
	for d, pid := range pids {
		now, _ := harness.SvstatPid(d)
		if d == fronts["imaps"].Dir {
			if now == pid {
				t.Errorf("svc -t %s: still pid %d", d, pid)
			}
			continue
		}
		if now != pid {
			t.Errorf("svc -t of imaps changed %s: pid %d, now %d", d, pid, now)
		}
	}
	tr.Python(t, fronts["imaps"])

	// svc -d of the link: nothing of the site left, but the link's own
	// supervise (its parent the svscan of /etc/service).
	if out, err := exec.Command("svc", "-d", link).CombinedOutput(); err != nil {
		t.Fatalf("svc -d %s: %v %s", link, err, out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if pid, err := harness.SvstatPid(link); err == nil && pid == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("svc -d %s: still up after 30 s:\n%s", link, logs())
		}
	}
	if left := siteProcesses(site, pgid); len(left) > 0 {
		t.Errorf("svc -d of the site left: %s", strings.Join(left, "; "))
	}
	for _, m := range modes {
		if harness.Listening(fronts[m].Port) {
			t.Errorf("%s: port %d still listening after svc -d", m, fronts[m].Port)
		}
	}

	// svc -u brings it all back.
	if out, err := exec.Command("svc", "-u", link).CombinedOutput(); err != nil {
		t.Fatalf("svc -u %s: %v %s", link, err, out)
	}
	for _, m := range modes {
		fronts[m].WaitListening(t, fronts[m].Port, true)
	}
	serve()
}

// siteDirs are the services a site's svscan runs (its fronts) and
// their logs.
func siteDirs(site string, modes []string) []string {
	var dirs []string
	for _, m := range modes {
		d := filepath.Join(site, "service", m)
		dirs = append(dirs, d, filepath.Join(d, "log"))
	}
	return append(dirs, filepath.Join(site, "service", "signer", "log"))
}

// siteProcesses are the live processes whose working directory is site
// or below it (/proc/PID/cwd), but the supervise of the link, which
// svscan of pgid runs in site itself: each as "pid comm cwd".
func siteProcesses(site string, pgid int) []string {
	real, err := filepath.EvalSymlinks(site)
	if err != nil {
		real = site
	}
	var left []string
	for _, pid := range harness.AllPids() {
		cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		if err != nil || (cwd != real && !strings.HasPrefix(cwd, real+"/")) {
			continue
		}
		st := harness.ProcStat(pid)
		if len(st) < 2 {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		name := strings.TrimSpace(string(comm))
		if cwd == real && name == "supervise" && st[1] == strconv.Itoa(pgid) {
			continue
		}
		left = append(left, strconv.Itoa(pid)+" "+name+" "+cwd+" ("+harness.Cmdline(pid)+")")
	}
	slices.Sort(left)
	return left
}
