package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	st := harness.MakeSite(t, "imap", "imaps", "pop3", "pop3s")
	site, fronts, modes, dc := st.Dir, st.Fronts, st.Modes, st.Dovecot
	haproxyPort := func(proto string) string { return st.HAProxyPort(t, proto) }
	good, err := os.ReadFile(st.PEM)
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
	st.Start(t)
	signerDir := filepath.Join(site, "service", "signer")
	signerLog := filepath.Join(signerDir, "log", "main", "current")
	harness.WaitSignerReady(t, signerDir, 1)
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
		s.WaitLog(t, skip, regexp.QuoteMeta("unable to bind "+s.Addr()))
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
		before := harness.SignerReadies(signerDir)
		install(expired.PEM)
		exec.Command("svc", "-t", signerDir).Run()
		line := waitLog(t, signerLog, ` run: fatal: `)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if pid, _ := harness.SvstatPid(signerDir); pid == 0 {
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
		harness.WaitSignerReady(t, signerDir, before+1)
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
