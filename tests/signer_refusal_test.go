// End-to-end test of one truth about being up (issue 19 item 4): a
// service made by imap-tls-conf under the real svscan whose certificate
// is refused while it runs (replaced by an expired one, or expiring
// while served). The signer's run file checks the file before it starts
// the signer; refused, it says so once, naming the file, and asks
// supervise not to start it again (svc -o): svstat says down,
// imap-tls-check says the signer is not running and why, and a client
// is told, until the file is fixed and svc -u brings it back.
package tests

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"
	"imap-tls/tests/harness"
)

// TestSignerRefusal: the certificate replaced by an expired one, then a
// good one and svc -u, then one that expires while the signer serves it.
func TestSignerRefusal(t *testing.T) {
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "front", Mode: "imap"})
	s := tr.Services[0]
	signerDir := filepath.Join(s.Dir, "signer")
	signerLog := filepath.Join(signerDir, "log", "main", "current")
	pem := filepath.Join(s.Dir, "ssl", "stunnel.pem")
	good, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	// replace installs data as a renewal does: a new file renamed over.
	replace := func(t *testing.T, data []byte) {
		t.Helper()
		if err := os.WriteFile(pem+".new", data, 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(pem+".new", pem); err != nil {
			t.Fatal(err)
		}
	}
	svstat := func() string {
		out, _ := exec.Command("svstat", signerDir).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	// waitDown waits until svstat says the signer is down, and that it
	// stays down (supervise does not start it again).
	down := regexp.MustCompile(`^` + regexp.QuoteMeta(signerDir) + `: down (\d+) seconds, normally up$`)
	waitDown := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !down.MatchString(svstat()) {
			if time.Now().After(deadline) {
				t.Fatalf("svstat after 20 s: %q, want down", svstat())
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		if m := down.FindStringSubmatch(svstat()); m == nil || m[1] == "0" || m[1] == "1" {
			t.Errorf("svstat 3 s later: %q, want down for 2 seconds or more", svstat())
		}
	}
	// refusals counts the signer log's lines that say the certificate
	// is refused.
	refusals := func() []string {
		b, _ := os.ReadFile(signerLog)
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "fatal:") {
				out = append(out, l)
			}
		}
		return out
	}
	// told: a client of the front while the signer is down reads
	// * BYE [UNAVAILABLE] (setuidgid-chroot -s passes the failure on as
	// FD4_ERROR, stunnel-imap tells the client), never an end of file.
	told := func(t *testing.T) {
		t.Helper()
		c := harness.DialIMAP(t, s.Addr())
		got, err := io.ReadAll(c.Reader)
		if err != nil {
			t.Fatalf("client: %v after %q", err, got)
		}
		if !bytes.HasPrefix(got, []byte("* BYE [UNAVAILABLE] ")) {
			t.Errorf("the client read %q, want * BYE [UNAVAILABLE] ...", got)
		}
	}

	t.Run("replaced by an expired one", func(t *testing.T) {
		expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-48 * time.Hour)})
		day := expired.Leaf.NotAfter.UTC().Format(time.DateOnly)
		replace(t, expired.PEM)
		line := waitLog(t, signerLog, ` run: fatal: `)
		want := "run: fatal: unable to start the signer: certificate ../ssl/stunnel.pem expired on " + day + ": down until the file is fixed and svc -u " + signerDir
		if !strings.HasSuffix(line, want) {
			t.Errorf("the log: %q, want ...%q", line, want)
		}
		waitDown(t)
		// One refusal, not one a second: the signer left for the
		// replaced file (an info line), its run refused the new one.
		if r := refusals(); len(r) != 1 {
			t.Errorf("%d refusal lines, want 1:\n%s", len(r), strings.Join(r, "\n"))
		}
		out, code := liveCheck(t, s.Dir)
		t.Logf("svstat: %s\nthe signer's log:\n%s\nimap-tls-check, exit %d:\n%s", svstat(), must(os.ReadFile(signerLog)), code, out)
		for _, want := range []string{
			"error: signer/: down ",
			"error: env/SIGNER: the signer is not running (./signer/socket: connection refused)",
			"ssl/stunnel.pem expired on " + day,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("imap-tls-check lacks %q:\n%s", want, out)
			}
		}
		if code == 0 {
			t.Errorf("imap-tls-check: exit 0:\n%s", out)
		}
		told(t)
		if r := refusals(); len(r) != 1 {
			t.Errorf("%d refusal lines at the end, want 1:\n%s", len(r), strings.Join(r, "\n"))
		}
	})

	t.Run("fixed, then svc -u", func(t *testing.T) {
		replace(t, good)
		if out, err := exec.Command("svc", "-u", signerDir).CombinedOutput(); err != nil {
			t.Fatalf("svc -u: %v %s", err, out)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(svstat(), ": up (pid ") || !strings.Contains(string(must(os.ReadFile(signerLog))), "stunnel-imap-signer: info: ready") {
			if time.Now().After(deadline) {
				t.Fatalf("svstat after 20 s: %q", svstat())
			}
			time.Sleep(100 * time.Millisecond)
		}
		s.Session(t, tr.CA)
		out, _ := liveCheck(t, s.Dir)
		if !strings.Contains(out, "ok: env/SIGNER: the signer answers on ./signer/socket\n") {
			t.Errorf("imap-tls-check after svc -u:\n%s", out)
		}
	})

	// The renewal's way back: certbot's deploy hook installs a good
	// certificate over a refused one and brings the signer up, with no
	// svc -u by hand.
	t.Run("refused, then the deploy hook", func(t *testing.T) {
		expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-48 * time.Hour)})
		replace(t, expired.PEM)
		waitDown(t)
		renewed := testkit.NewCert(t, testkit.CertOptions{})
		lineage := t.TempDir()
		os.WriteFile(filepath.Join(lineage, "fullchain.pem"), renewed.ChainPEM, 0o644)
		os.WriteFile(filepath.Join(lineage, "privkey.pem"), renewed.KeyPEM, 0o600)
		hook, err := filepath.Abs(filepath.Join("..", "service", "certbot-deploy-hook"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", hook, s.Dir)
		cmd.Env = append(os.Environ(), "RENEWED_LINEAGE="+lineage)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("certbot-deploy-hook: %v: %s", err, out)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(svstat(), ": up (pid ") {
			if time.Now().After(deadline) {
				t.Fatalf("svstat 20 s after the deploy hook: %q, want up", svstat())
			}
			time.Sleep(100 * time.Millisecond)
		}
		ca := filepath.Join(t.TempDir(), "ca.crt")
		os.WriteFile(ca, renewed.CAPEM, 0o644)
		deadline = time.Now().Add(20 * time.Second)
		for {
			c := harness.DialIMAP(t, s.Addr())
			greeting := c.Line()
			c.Close()
			if strings.HasPrefix(greeting, "* OK") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("greeting 20 s after the deploy hook: %q", greeting)
			}
			time.Sleep(200 * time.Millisecond)
		}
		s.Session(t, ca)
	})

	t.Run("expires while served", func(t *testing.T) {
		soon := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(6 * time.Second)})
		day := soon.Leaf.NotAfter.UTC().Format(time.DateOnly)
		before := len(refusals())
		replace(t, soon.PEM)
		// The signer takes it (exits for the replaced file, started
		// again), serves it, and refuses it the second it expires.
		line := waitLog(t, signerLog, `stunnel-imap-signer: fatal: `)
		want := "stunnel-imap-signer: fatal: certificate ../ssl/stunnel.pem expired on " + day
		if !strings.HasSuffix(line, want) {
			t.Errorf("the log: %q, want ...%q", line, want)
		}
		waitDown(t)
		t.Logf("the signer's log:\n%s", must(os.ReadFile(signerLog)))
		r := refusals()[before:]
		if len(r) != 2 || !strings.Contains(r[1], "run: fatal: unable to start the signer: certificate ../ssl/stunnel.pem expired on "+day) {
			t.Errorf("refusal lines: want the signer's and its run file's, once each:\n%s", strings.Join(r, "\n"))
		}
		told(t)
		// Every line of the signer's log in the suite's grammar, the run
		// file's own among them.
		grammar := regexp.MustCompile(`^@[0-9a-f]{24} [a-z0-9-]+: (info|warning|fatal): `)
		for _, l := range strings.Split(strings.TrimSpace(string(must(os.ReadFile(signerLog)))), "\n") {
			if !grammar.MatchString(l) {
				t.Errorf("the signer's log: a line in another grammar: %q", l)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
