package tests

// The client is told (issue 19, items 2, 3 and 6): a session that
// cannot be served ends with * BYE [UNAVAILABLE] (IMAP) or -ERR
// [SYS/TEMP] (POP3), read here by Python's imaplib and poplib, and the
// log says why; a client that refuses the certificate after the
// handshake (mbsync, mpop) is named in the log. Run: go test ./tests/
// -run TestTold -v (as root).

import (
	"fmt"
	"net"
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

const (
	toldIMAP = "* BYE [UNAVAILABLE] Mail server unavailable, try again later"
	toldPOP3 = "-ERR [SYS/TEMP] Mail server unavailable, try again later"
)

// toldClient connects with Python's imaplib or poplib (proto imap or
// pop3; implicit TLS when mode ends in s, trusting ca) and prints the
// greeting, or the exception it raised.
const toldClient = `
import imaplib, poplib, ssl, sys
proto, mode, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
try:
    if proto == 'imap':
        c = imaplib.IMAP4_SSL('localhost', port, ssl_context=ctx, timeout=20) if mode.endswith('s') else imaplib.IMAP4('localhost', port, timeout=20)
        print('greeting ' + repr(c.welcome))
    else:
        c = poplib.POP3_SSL('localhost', port, context=ctx, timeout=20) if mode.endswith('s') else poplib.POP3('localhost', port, timeout=20)
        print('greeting ' + repr(c.getwelcome()))
except Exception as e:
    print(type(e).__name__ + ': ' + str(e))
`

// python runs toldClient and returns what it printed.
func python(t *testing.T, proto, mode string, port int, ca string) string {
	t.Helper()
	harness.Need(t, "python3")
	out := harness.RunClient(t, "python3 "+proto+"lib", 60*time.Second, nil, "python3", "-c", toldClient, proto, mode, strconv.Itoa(port), ca)
	return strings.TrimSpace(out)
}

// wantTold fails unless Python read the unavailable line (imaplib
// raises error with the BYE, poplib error_proto with the -ERR).
func wantTold(t *testing.T, what, got, line string) {
	t.Helper()
	if !strings.Contains(got, line) {
		t.Errorf("%s: python read %q, want %q", what, got, line)
	}
}

// waitSigner waits (20 s) until the service's signer answers on its
// socket: StartServices waits for the fronts only, and svscan may start
// the signer's service seconds later.
func waitSigner(t *testing.T, s *harness.Service) {
	t.Helper()
	socket := filepath.Join(s.Dir, "signer", "socket")
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "signer", "log", "main", "current"))
			t.Fatalf("the signer does not answer at %s: %v; its log:\n%s", socket, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestToldServerDown: services made by imap-tls-conf under svscan, with
// the server side broken as an administrator meets it: a wrong port in
// env/IMAPD, then Dovecot stopped, with the server as one address (the
// default chain: the proxy's setuidgid-chroot -c 3:ADDRESS connects it,
// as root before the drop) and behind socat (a program on makesock's
// socketpair). imaplib reads the BYE (in TLS on the imaps port, in place
// of the greeting on the STARTTLS one); setuidgid-chroot's warning names
// the address, the reason and the client, and the proxy's line says
// end=server-error (or server-eof) with the same reason.
func TestToldServerDown(t *testing.T) {
	tr := harness.StartServices(t,
		harness.ServiceSpec{Name: "imap", Mode: "imap"},
		harness.ServiceSpec{Name: "imaps", Mode: "imaps"})
	dc := tr.Dovecot
	// Up, for a start: a greeting through each.
	for _, s := range tr.Services {
		waitSigner(t, s)
		if got := python(t, "imap", s.Mode, s.Port, tr.CA); !strings.HasPrefix(got, "greeting b'* OK") {
			t.Fatalf("%s with Dovecot up: %q", s.Mode, got)
		}
	}

	// A wrong port in env/IMAPD: nothing listens there.
	wrong := harness.Port(t)
	for _, s := range tr.Services {
		s.WriteEnv(t, "IMAPD", "127.0.0.1:"+strconv.Itoa(wrong))
		s.Restart(t)
		skip := len(s.LogLines(t))
		wantTold(t, s.Mode+" wrong port", python(t, "imap", s.Mode, s.Port, tr.CA), toldIMAP)
		why := regexp.QuoteMeta(fmt.Sprintf("unable to connect to 127.0.0.1:%d: connection refused", wrong))
		s.WaitLog(t, skip, `^@[0-9a-f]{24} setuidgid-chroot: warning: `+why+`; remote=127\.0\.0\.1:\d+$`)
		s.WaitLog(t, skip, `stunnel-imap: info: remote=127\.0\.0\.1:\d+ mode=`+s.Mode+` .* reason="`+why+`" end=server-error$`)
	}

	// Dovecot stopped.
	if out, err := exec.Command("sh", dc.Script, "stop", dc.Dir).CombinedOutput(); err != nil {
		t.Fatalf("unable to stop Dovecot: %v: %s", err, out)
	}
	// One address, Dovecot's socket: setuidgid-chroot -c connects it.
	for _, s := range tr.Services {
		s.WriteEnv(t, "IMAPD", dc.Socket)
		s.Restart(t)
		skip := len(s.LogLines(t))
		wantTold(t, s.Mode+" Dovecot stopped", python(t, "imap", s.Mode, s.Port, tr.CA), toldIMAP)
		why := `unable to connect to ` + regexp.QuoteMeta(dc.Socket) + `: (connection refused|file does not exist)`
		s.WaitLog(t, skip, `^@[0-9a-f]{24} setuidgid-chroot: warning: `+why+`; remote=127\.0\.0\.1:\d+$`)
		s.WaitLog(t, skip, `stunnel-imap: info: .* mode=`+s.Mode+` .* reason="`+why+`" end=server-error$`)
	}
	// Behind socat: the proxy learns only that the server side closed
	// (socat's exit status is nobody's to read: makesock exec'd on).
	for _, s := range tr.Services {
		s.WriteEnv(t, "IMAPD", strings.Join(dc.LoginCmd(), " "))
		s.Restart(t)
		skip := len(s.LogLines(t))
		wantTold(t, s.Mode+" Dovecot stopped, socat", python(t, "imap", s.Mode, s.Port, tr.CA), toldIMAP)
		s.WaitLog(t, skip, `stunnel-imap: info: .* mode=`+s.Mode+` .* reason="(server closed the connection before its greeting|unable to read from the server before its greeting: [^"]*)" end=server-(eof|error)$`)
	}
}

// TestToldSignerDown: the signer's service down (svc -d): a STARTTLS
// client reads the BYE in place of the greeting; an implicit-TLS client
// gets a TLS internal_error alert (no handshake is possible without the
// key holder, so nothing can be said in TLS, and plaintext would be
// garbage to it). setuidgid-chroot warns naming the socket, the proxy's
// line has the reason and end=key-process-failed.
func TestToldSignerDown(t *testing.T) {
	tr := harness.StartServices(t,
		harness.ServiceSpec{Name: "imap", Mode: "imap"},
		harness.ServiceSpec{Name: "imaps", Mode: "imaps"})
	for _, s := range tr.Services {
		waitSigner(t, s)
		signer := filepath.Join(s.Dir, "signer")
		if out, err := exec.Command("svc", "-d", signer).CombinedOutput(); err != nil {
			t.Fatalf("svc -d %s: %v: %s", signer, err, out)
		}
		socket := filepath.Join(signer, "socket")
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.Dial("unix", socket)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("the signer still answers at %s after svc -d", socket)
			}
			time.Sleep(50 * time.Millisecond)
		}
		skip := len(s.LogLines(t))
		got := python(t, "imap", s.Mode, s.Port, tr.CA)
		if s.Mode == "imaps" {
			if !strings.Contains(got, "ALERT_INTERNAL_ERROR") {
				t.Errorf("imaps with the signer down: python read %q, want the internal_error alert", got)
			}
		} else {
			wantTold(t, "imap with the signer down", got, toldIMAP)
		}
		reach := `unable to reach the signer at \S+/signer/socket: (connection refused|file does not exist) \(is the signer service linked and up\?\)`
		s.WaitLog(t, skip, `setuidgid-chroot: warning: `+reach+`; remote=127\.0\.0\.1:\d+$`)
		s.WaitLog(t, skip, `stunnel-imap: info: .* mode=`+s.Mode+` .* reason="`+reach+`" end=key-process-failed$`)
		exec.Command("svc", "-u", signer).Run()
	}
}

// TestToldPOP3: POP3 and POP3S with nothing at the server's address:
// poplib reads -ERR [SYS/TEMP] in place of the greeting (STLS mode) or
// as the greeting in TLS (pop3s).
func TestToldPOP3(t *testing.T) {
	wrong := harness.Port(t)
	for _, mode := range []string{"pop3", "pop3s"} {
		t.Run(mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: []string{"127.0.0.1:" + strconv.Itoa(wrong)}})
			wantTold(t, mode, python(t, "pop3", mode, p.Port, p.CA), toldPOP3)
			why := regexp.QuoteMeta(fmt.Sprintf("unable to connect to 127.0.0.1:%d: connection refused", wrong))
			p.WaitLog(t, `^stunnel-imap: info: .* mode=`+mode+` .* reason="`+why+`" end=server-error$`, 20*time.Second)
		})
	}
}

// rejected is the warning for a client that closed after the handshake
// without a command.
const rejected = `stunnel-imap: warning: client closed after the tls handshake without a command: it probably rejected the certificate \(expired/untrusted/wrong name\?\); served the certificate for localhost,127\.0\.0\.1, valid until \d{4}-\d\d-\d\d; sni=localhost; remote=127\.0\.0\.1:\d+$`

// otherCA is the CA file of a certificate authority the service's
// certificate does not come from.
func otherCA(t *testing.T) string {
	_, ca := harness.WriteCert(t, t.TempDir())
	return ca
}

// TestToldRejectedMbsync: real mbsync, given another CA, completes the
// handshake, checks the certificate, and closes without a byte: the log
// names the probable rejection, the certificate, its expiry and the SNI.
func TestToldRejectedMbsync(t *testing.T) {
	harness.Need(t, "mbsync")
	tr := harness.StartServices(t,
		harness.ServiceSpec{Name: "imap", Mode: "imap"},
		harness.ServiceSpec{Name: "imaps", Mode: "imaps"})
	ca := otherCA(t)
	for _, s := range tr.Services {
		waitSigner(t, s)
		conf := harness.MbsyncConf(s, ca, t.TempDir(), "Pull")
		skip := len(s.LogLines(t))
		cmd := exec.Command("mbsync", "-c", conf, "inbox")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := harness.RunBounded(t, cmd, 60*time.Second)
		if err == nil {
			t.Fatalf("mbsync with another CA succeeded: %s", out)
		}
		t.Logf("mbsync (%s): %v: %s%s", s.Mode, err, out, stderr.String())
		line := s.WaitLog(t, skip, rejected)
		t.Logf("%s: %s", s.Mode, line)
		s.WaitLog(t, skip, `stunnel-imap: info: .* mode=`+s.Mode+` .* sni=localhost auth=no in=\d+ out=\d+ warnings=1 .* end=client-(eof|error)$`)
	}
}

// TestToldRejectedMpop: real mpop, given another CA (tls_trust_file),
// on a POP3 STLS port and a POP3S port: the same warning.
func TestToldRejectedMpop(t *testing.T) {
	harness.Need(t, "mpop")
	d := startPOP3Dovecot(t)
	ca := otherCA(t)
	for _, mode := range []string{"pop3", "pop3s"} {
		t.Run(mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: d.POP3LoginCmd()})
			dir := t.TempDir()
			starttls := "on"
			if mode == "pop3s" {
				starttls = "off"
			}
			rc := filepath.Join(dir, "mpoprc")
			os.WriteFile(rc, []byte(fmt.Sprintf(`account default
host localhost
port %d
timeout 20
tls on
tls_starttls %s
tls_trust_file %s
auth user
user alice
password secret
delivery maildir %s
`, p.Port, starttls, ca, dir)), 0o600)
			cmd := exec.Command("mpop", "-C", rc, "-a")
			cmd.Env = append(os.Environ(), "HOME="+dir)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := harness.RunBounded(t, cmd, 60*time.Second)
			if err == nil {
				t.Fatalf("mpop with another CA succeeded: %s", out)
			}
			t.Logf("mpop (%s): %v: %s%s", mode, err, out, stderr.String())
			line := p.WaitLog(t, `^`+rejected, 20*time.Second)
			t.Logf("%s: %s", mode, line)
		})
	}
}
