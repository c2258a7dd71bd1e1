// End-to-end tests of imap-tls-check's live state and status view
// (issue 19 items 1, 2 and 8): services made by imap-tls-conf under the
// real svscan, each broken on purpose as an administrator meets it;
// the log, imap-tls-check's lines and exit status asserted.
package tests

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// liveCheck runs imap-tls-check (with args) on the service's directory.
func liveCheck(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	out, stderr, code := harness.ExitCode(t, exec.Command(harness.Bin(t, "imap-tls-check"), append(args, dir)...))
	return out + stderr, code
}

// waitLog waits until the file's lines match re, and returns the line.
func waitLog(t *testing.T, path, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if rx.MatchString(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q in %s after 20 s:\n%s", re, path, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLive breaks two services under svscan one fault at a time (the
// table of issue 19) and reads what imap-tls-check says of each.
func TestLive(t *testing.T) {
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "front", Mode: "imap"}, harness.ServiceSpec{Name: "tls", Mode: "imaps"})
	s, tlsSvc := tr.Services[0], tr.Services[1]
	signerLog := filepath.Join(s.Dir, "signer", "log", "main", "current")

	t.Run("healthy", func(t *testing.T) {
		for _, svc := range tr.Services {
			out, code := liveCheck(t, svc.Dir)
			for _, want := range []string{
				"ok: svstat: up (pid ",
				"ok: log/: up (pid ",
				"ok: signer/: up (pid ",
				"ok: signer/log/: up (pid ",
				"ok: env/SIGNER: the signer answers on ./signer/socket\n",
				"ok: env/PORT: " + svc.Addr() + " is bound by this service's tcpserver (pid " + strconv.Itoa(svc.Pid(t)) + ")\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("%s: lacks %q:\n%s", svc.Mode, want, out)
				}
			}
			greeted := "ok: front: " + svc.Addr() + " greeted through the chain: * OK"
			if svc.Mode == "imaps" {
				greeted = "ok: front: " + svc.Addr() + " greeted after a TLS handshake through the chain: * OK"
			}
			if !strings.Contains(out, greeted) {
				t.Errorf("%s: lacks %q:\n%s", svc.Mode, greeted, out)
			}
			if strings.Contains(out, "error:") {
				t.Errorf("%s: exit %d, an error:\n%s", svc.Mode, code, out)
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if !regexp.MustCompile(`^(ok|warning|error): \S+: `).MatchString(l) {
					t.Errorf("%s: a line not in imap-tls-check's grammar: %q", svc.Mode, l)
				}
			}
		}
		// The checks' connections to the signer (ready read, then
		// closed) leave no line in its log.
		time.Sleep(200 * time.Millisecond)
		if b, _ := os.ReadFile(signerLog); strings.Contains(string(b), "warning") {
			t.Errorf("the signer logged the check's connection:\n%s", b)
		}
	})

	t.Run("port of another mode", func(t *testing.T) {
		tlsSvc.WriteEnv(t, "PORT", "143")
		defer tlsSvc.WriteEnv(t, "PORT", strconv.Itoa(tlsSvc.Port))
		out, _ := liveCheck(t, tlsSvc.Dir)
		want := "warning: env/PORT: 143 is the standard port of imap (IMAP, STARTTLS required), not of mode imaps (IMAP, implicit TLS, port 993): clients that connect to 143 expect a plaintext greeting and STARTTLS\n"
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	})

	t.Run("memory limit", func(t *testing.T) {
		s.WriteEnv(t, "MEMLIMIT", "50")
		defer func() {
			s.WriteEnv(t, "MEMLIMIT", "100000000")
			s.WaitUp(t)
		}()
		out, code := liveCheck(t, s.Dir)
		want := "error: env/MEMLIMIT: 50 is below what a Go program needs to start (80000000 bytes of data, softlimit -d): raise it\n"
		if code != 100 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want 100 and %q:\n%s", code, want, out)
		}
	})

	t.Run("port held", func(t *testing.T) {
		// Something else on the front's port: the service stopped, a
		// python socket listening there, the service started again.
		s.Svc(t, "-d")
		s.WaitListening(t, s.Port, false)
		py := exec.Command("python3", "-c", `import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(5)
print("listening", flush=True)
time.sleep(120)`, strconv.Itoa(s.Port))
		stdout, err := py.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := py.Start(); err != nil {
			t.Fatal(err)
		}
		pid := strconv.Itoa(py.Process.Pid)
		stopped := false
		stop := func() {
			if !stopped {
				py.Process.Kill()
				py.Wait()
				stopped = true
			}
		}
		defer stop()
		if l, _ := bufio.NewReader(stdout).ReadString('\n'); l != "listening\n" {
			t.Fatalf("python: %q", l)
		}
		s.Svc(t, "-u")
		line := waitLog(t, filepath.Join(s.Dir, "log", "main", "current"), `imap-tls-server: fatal: unable to bind `)
		want := "imap-tls-server: fatal: unable to bind " + s.Addr() + ": address already used (held by python3 pid " + pid + ")"
		if !strings.HasSuffix(line, want) {
			t.Errorf("the log: %q, want ...%q", line, want)
		}
		out, code := liveCheck(t, s.Dir)
		want = "error: env/PORT: " + s.Addr() + " is held by python3 pid " + pid + ": stop it, or give this service another env/PORT\n"
		if code != 100 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want 100 and %q:\n%s", code, want, out)
		}
		stop()
		s.WaitUp(t)
	})

	t.Run("signer not linked", func(t *testing.T) {
		// The signer's link removed and its supervise stopped, as on a
		// machine where only the front was linked into /etc/service.
		if err := os.Remove(filepath.Join(tr.Root, "front-signer")); err != nil {
			t.Fatal(err)
		}
		exec.Command("svc", "-dx", filepath.Join(s.Dir, "signer")).Run()
		deadline := time.Now().Add(20 * time.Second)
		for exec.Command("svok", filepath.Join(s.Dir, "signer")).Run() == nil {
			if time.Now().After(deadline) {
				t.Fatal("the signer's supervise still runs after 20 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		out, code := liveCheck(t, s.Dir)
		signerDir := filepath.Join(s.Dir, "signer")
		for _, want := range []string{
			"warning: signer/: supervise not running: link " + signerDir + " into /etc/service",
			"error: env/SIGNER: the signer is not running (./signer/socket: connection refused): link " + signerDir + " into /etc/service (or svc -u it)\n",
			"error: front: " + s.Addr(),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("lacks %q:\n%s", want, out)
			}
		}
		if code != 111 {
			t.Errorf("exit %d, want 111:\n%s", code, out)
		}
	})
}

// TestStatus: imap-tls-check -s after a few sessions: two that log in,
// one whose login is refused, one held open; the sessions in use
// against the limit, the signer, the certificate's days, and the last
// hour's counts.
func TestStatus(t *testing.T) {
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "front", Mode: "imap", Concurrency: 7})
	s := tr.Services[0]
	s.Session(t, tr.CA)
	s.Session(t, tr.CA)
	c := harness.DialIMAP(t, s.Addr())
	c.Line()
	c.StartTLS("s", harness.ClientTLS(t, tr.CA, "localhost"))
	if _, tagged := c.Cmd("a", "LOGIN alice wrong"); !strings.HasPrefix(tagged, "a NO") {
		t.Fatalf("LOGIN with a wrong password: %q", tagged)
	}
	c.Cmd("b", "LOGOUT")
	c.Close()
	held := s.Login(t, tr.CA)
	defer held.Close()
	s.WaitConnLines(t, 2) // harness.ConnLine: without authfail=
	waitLog(t, filepath.Join(s.Dir, "log", "main", "current"), `stunnel-imap: info: remote=.* auth=no authfail=1 .* end=`)

	out, code := liveCheck(t, s.Dir, "-s")
	if code != 0 {
		t.Errorf("exit %d:\n%s", code, out)
	}
	for _, re := range []string{
		`(?m)^FRONT +MODE +ADDRESS +STATE +SESSIONS$`,
		`(?m)^front +imap +` + regexp.QuoteMeta(s.Addr()) + ` +up \(pid ` + strconv.Itoa(s.Pid(t)) + `\) \d+ seconds +1/7$`,
		`(?m)^signer: up \(pid \d+\) \d+ seconds; answers on ` + regexp.QuoteMeta(filepath.Join(s.Dir, "signer", "socket")) + `$`,
		`(?m)^certificate: ssl/stunnel\.pem: \d+ days left$`,
		`(?m)^last hour \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\):$`,
		`(?m)^ +front$`,
		`(?m)^ *connections +3$`,
		`(?m)^ *logins +2$`,
		`(?m)^ *authfail +1$`,
		`(?m)^ *end=\S+ +\d+$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("lacks %s:\n%s", re, out)
		}
	}
}
