package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"
	"imap-tls/tests/harness"
)

// TestCheckSite: imap-tls-check DIR on a site made by `imap-tls-conf -m
// imap,imaps,pop3,pop3s`, linked once into the directory of the real
// svscan (test ports on 127.0.0.1, a private Dovecot's haproxy
// listeners behind, env/PROXYHEADER yes), as README's production block
// runs it on /etc/imap-tls:
//
//   - healthy: exit 0; what the fronts share once (the signer, its
//     socket), each front under its name bound by its own tcpserver and
//     greeting through the chain; the firewall once per server address;
//   - one front's port held by another process: that front's line
//     names the holder, the others stay ok, exit 100;
//   - the signer held down by an expired certificate: its run file's
//     `run: fatal:` line quoted in place of a bare svc -u, exit not 0;
//   - Dovecot stopped: each front's client is told (* BYE, -ERR) in
//     place of the greeting, an error with the log's reason=, exit 111.
func TestCheckSite(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "svscan", "supervise", "svc", "svok", "svstat", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver", "nft",
		"/usr/lib/dovecot/pop3-login")
	harness.EnsureAccount(t, harness.ServiceAcct)
	harness.EnsureAccount(t, harness.ServiceLogAcct)
	dc := harness.StartDovecot(t)
	haproxyPort := func(proto string) string {
		b, err := os.ReadFile(filepath.Join(dc.Dir, proto+"-haproxy.port"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	site := filepath.Join(top, "imap-tls")
	if out, err := exec.Command(harness.Bin(t, "imap-tls-conf"), "-m", "imap,imaps,pop3,pop3s", harness.ServiceAcct, harness.ServiceLogAcct, site, "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("imap-tls-conf: %v: %s", err, out)
	}
	pemPath, _ := harness.WriteCert(t, top)
	good, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	pem := filepath.Join(site, "ssl", "stunnel.pem")
	install := func(b []byte) {
		t.Helper()
		os.Remove(pem)
		if err := os.WriteFile(pem, b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	install(good)
	modes := []string{"imap", "imaps", "pop3", "pop3s"}
	fronts := map[string]*harness.Service{}
	for _, m := range modes {
		s := &harness.Service{Dir: filepath.Join(site, "service", m), Port: harness.Port(t), Mode: m}
		s.WriteEnv(t, "PORT", strconv.Itoa(s.Port))
		s.WriteEnv(t, "IMAPD", "127.0.0.1:"+haproxyPort(m[:4]))
		fronts[m] = s
	}
	root := filepath.Join(top, "service")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "imap-tls")
	if err := os.Symlink(site, link); err != nil {
		t.Fatal(err)
	}
	svscan := exec.Command("svscan", root)
	svscan.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
	svOut := &harness.LockedBuffer{}
	svscan.Stdout, svscan.Stderr = svOut, svOut
	svscan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	svscan.WaitDelay = time.Second
	if err := svscan.Start(); err != nil {
		t.Fatalf("unable to start svscan: %v", err)
	}
	pgid := svscan.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pgid, syscall.SIGTERM)
		svscan.Wait()
		exec.Command("svc", "-dx", link).Run()
		deadline := time.Now().Add(20 * time.Second)
		for len(harness.ProcessGroup(pgid, false)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if left := harness.ProcessGroup(pgid, false); len(left) > 0 {
			t.Errorf("processes left after svc -dx of the site: %s", harness.Describe(left))
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	for _, m := range modes {
		fronts[m].WaitUp(t)
	}
	signerDir := filepath.Join(site, "service", "signer")
	signerLog := filepath.Join(signerDir, "log", "main", "current")
	readies := func() int {
		b, _ := os.ReadFile(signerLog)
		return strings.Count(string(b), "stunnel-imap-signer: info: ready")
	}
	waitReady := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); readies() < n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(signerLog)
				t.Fatalf("the site's signer is not ready after 20 s; log:\n%s", b)
			}
		}
	}
	waitReady(1)
	grammar := regexp.MustCompile(`^(ok|warning|error): (\S+: )?\S+: `)
	check := func(t *testing.T) (string, int) {
		t.Helper()
		out, code := liveCheck(t, site)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !grammar.MatchString(l) && !strings.HasPrefix(l, "imap-tls-check: fatal: ") {
				t.Errorf("a line out of the grammar: %q", l)
			}
		}
		return out, code
	}
	greeted := func(m string) string {
		if m == "imaps" || m == "pop3s" {
			return "ok: " + m + ": front: " + fronts[m].Addr() + " greeted after a TLS handshake through the chain: "
		}
		return "ok: " + m + ": front: " + fronts[m].Addr() + " greeted through the chain: "
	}

	t.Run("healthy", func(t *testing.T) {
		out, code := check(t)
		if code != 0 || strings.Contains(out, "error:") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		want := []string{
			"ok: svstat: up (pid ",
			"ok: service/signer/: up (pid ",
			"ok: service/signer/log/: up (pid ",
			"ok: env/SIGNER: the signer answers on ../signer/socket\n",
			"ok: env/SIGNERMEMLIMIT: ",
			"ok: firewall: uid 65534 refused at 127.0.0.1:" + haproxyPort("imap") + " ",
			"ok: firewall: uid 65534 refused at 127.0.0.1:" + haproxyPort("pop3") + " ",
		}
		for _, m := range modes {
			want = append(want,
				"ok: "+m+": env/MODE: "+m+": ",
				"ok: "+m+": svstat: up (pid ",
				"ok: "+m+": log/: up (pid ",
				"ok: "+m+": env/PORT: "+fronts[m].Addr()+" is bound by this service's tcpserver (pid "+strconv.Itoa(fronts[m].Pid(t))+")\n",
				"ok: "+m+": env/IMAPD: greeted after a PROXY v2 header (env/PROXYHEADER yes): ",
				greeted(m))
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("lacks %q:\n%s", w, out)
			}
		}
		// What the fronts share, once: no site-wide line per front.
		for _, once := range []string{"env/SIGNER: ", "jail/: ", "env/ACCOUNT: ", "service/signer/: ", "ssl/stunnel.pem: root's", "env/CONCURRENCY: "} {
			if n := strings.Count(out, once); n != 1 {
				t.Errorf("%q %d times, want once:\n%s", once, n, out)
			}
		}
		if n := strings.Count(out, ": firewall: "); n != 2 {
			t.Errorf("%d firewall lines, want 2 (one per server address):\n%s", n, out)
		}
	})

	t.Run("port held", func(t *testing.T) {
		s := fronts["imap"]
		s.Svc(t, "-d")
		s.WaitListening(t, s.Port, false)
		ln, err := net.Listen("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			ln.Close()
			s.WaitUp(t)
		}()
		comm, _ := os.ReadFile("/proc/self/comm")
		holder := strings.TrimSpace(string(comm)) + " pid " + strconv.Itoa(os.Getpid())
		skip := len(s.LogLines(t))
		s.Svc(t, "-u")
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			lines := s.LogLines(t)
			if len(lines) > skip && strings.Contains(strings.Join(lines[skip:], "\n"), "unable to bind "+s.Addr()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no bind failure in the log after 20 s:\n%s", strings.Join(lines, "\n"))
			}
		}
		out, code := check(t)
		want := "error: imap: env/PORT: " + s.Addr() + " is held by " + holder + ": stop it, or give this service another env/PORT\n"
		if code != 100 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want 100 and %q:\n%s", code, want, out)
		}
		for _, m := range []string{"imaps", "pop3", "pop3s"} {
			if !strings.Contains(out, greeted(m)) {
				t.Errorf("lacks %q:\n%s", greeted(m), out)
			}
		}
		if strings.Contains(out, "error: imaps: ") || strings.Contains(out, "error: pop3: ") || strings.Contains(out, "error: pop3s: ") {
			t.Errorf("an error named by another front:\n%s", out)
		}
	})

	t.Run("signer refused", func(t *testing.T) {
		expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-48 * time.Hour)})
		day := expired.Leaf.NotAfter.UTC().Format(time.DateOnly)
		before := readies()
		install(expired.PEM)
		exec.Command("svc", "-t", signerDir).Run()
		line := waitLog(t, signerLog, ` run: fatal: `)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if pid, _ := svstatPid(signerDir); pid == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the signer still up after 20 s; log:\n%s", must(os.ReadFile(signerLog)))
			}
		}
		real, _ := filepath.EvalSymlinks(signerDir)
		refusal := line[strings.Index(line, "run: fatal: "):]
		if !strings.Contains(refusal, "expired on "+day) || !strings.HasSuffix(refusal, "svc -u "+real) {
			t.Errorf("the signer's log: %q", line)
		}
		out, code := check(t)
		for _, w := range []string{
			"error: service/signer/: down ",
			", normally up: its log says: " + refusal + "\n",
			"error: env/SIGNER: the signer is not running (../signer/socket: ",
			"its run file refused to start it (service/signer/ above: fix the file, then svc -u ",
			"ssl/stunnel.pem expired on " + day,
		} {
			if !strings.Contains(out, w) {
				t.Errorf("lacks %q:\n%s", w, out)
			}
		}
		if code == 0 {
			t.Errorf("exit 0:\n%s", out)
		}
		// The way back, as the line says.
		install(good)
		if out, err := exec.Command("svc", "-u", signerDir).CombinedOutput(); err != nil {
			t.Fatalf("svc -u: %v %s", err, out)
		}
		waitReady(before + 1)
		if out, code := check(t); code != 0 || !strings.Contains(out, "ok: env/SIGNER: the signer answers on ../signer/socket\n") {
			t.Errorf("after the fix and svc -u: exit %d:\n%s", code, out)
		}
	})

	t.Run("dovecot stopped", func(t *testing.T) {
		if out, err := exec.Command("sh", dc.Script, "stop", dc.Dir).CombinedOutput(); err != nil {
			t.Fatalf("unable to stop Dovecot: %v %s", err, out)
		}
		for deadline := time.Now().Add(20 * time.Second); harness.Listening(atoiT(t, haproxyPort("imap"))); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("Dovecot still listens after 20 s")
			}
		}
		out, code := check(t)
		told := map[string]string{"imap": `"* BYE [UNAVAILABLE] `, "imaps": `"* BYE [UNAVAILABLE] `, "pop3": `"-ERR [SYS/TEMP] `, "pop3s": `"-ERR [SYS/TEMP] `}
		for _, m := range modes {
			rx := regexp.MustCompile(`(?m)^error: ` + m + `: front: ` + regexp.QuoteMeta(fronts[m].Addr()) + `: the client is told ` + regexp.QuoteMeta(told[m]) + `.* in place of the greeting: .*; the log says: reason=".+" end=server-error$`)
			if !rx.MatchString(out) {
				t.Errorf("%s: no line matching %s:\n%s\nits log:\n%s", m, rx, out, strings.Join(fronts[m].LogLines(t), "\n"))
			}
			if strings.Contains(out, greeted(m)) {
				t.Errorf("%s: greeted through the chain with Dovecot stopped:\n%s", m, out)
			}
		}
		if code != 111 {
			t.Errorf("exit %d, want 111:\n%s", code, out)
		}
	})
}

func atoiT(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
