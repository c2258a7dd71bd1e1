package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestServiceSigner: imap-tls-conf's directory as it is made, its signer
// linked beside it, under the real svscan: the signer's service runs
// stunnel-imap-signer jailed under a uid of the range with
// GOMAXPROCS=1, its log reaches signer/log/main/current, its socket is
// root's alone (the service's account cannot connect); a connection's
// proxy has no key process; a signer killed (svc -k) is started again
// by supervise and the next session is served.
func TestServiceSigner(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "starttls", Mode: "imap"})
	s := tr.Services[0]
	sig := &harness.SignerService{Dir: filepath.Join(s.Dir, "signer"), Socket: filepath.Join(s.Dir, "signer", "socket")}
	spid := sig.NewPID(t, 0)
	jail := filepath.Join(s.Dir, "jail")
	harness.CheckJailed(t, "signer", spid, jail)
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", spid)); err != nil || !bytes.Contains(append([]byte{0}, env...), []byte("\x00GOMAXPROCS=1\x00")) {
		t.Errorf("signer %d: environment lacks GOMAXPROCS=1 (%v)", spid, err)
	}
	st, err := os.Lstat(sig.Socket)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("signer socket: %v %v, want root's socket, mode 0600", st, err)
	}
	if out, err := exec.Command("setuidgid", harness.ServiceAcct, "socat", "-", "UNIX-CONNECT:"+sig.Socket).CombinedOutput(); err == nil {
		t.Errorf("%s can connect to the signer: %s", harness.ServiceAcct, out)
	}

	c, port := harness.StartTLSPending(t, s.Addr())
	conn := harness.FindConn(t, func() []int { return harness.Descendants(s.Pid(t)) }, port, false)
	harness.CheckJailed(t, "proxy", conn.Proxy, jail)
	if conn.Key != 0 {
		t.Errorf("a key process %d with the signer", conn.Key)
	}
	c.Close()
	if n := s.Session(t, tr.CA); n < 3 {
		t.Errorf("SELECT found %d messages, want at least 3", n)
	}

	exec.Command("svc", "-k", sig.Dir).Run()
	now := sig.NewPID(t, spid)
	if n := s.Session(t, tr.CA); n < 3 {
		t.Errorf("after svc -k of the signer: SELECT found %d messages, want at least 3", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(sig.Dir, "log", "main", "current"))
		if strings.Count(string(b), "stunnel-imap-signer: info: ready") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("signer/log/main/current lacks two ready lines: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("signer %d, after svc -k %d", spid, now)
}
