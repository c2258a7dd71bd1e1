package harness

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// RepoRoot is the folder that holds go.mod (the tests run in tests/).
func RepoRoot(t testing.TB) string { return testkit.RepoRoot(t) }

// Bin returns the absolute path of a program of the suite
// (testkit.Bin: $IMAPTLS_BIN/name, or built once per test process) or of
// a test tool (fakeimapd, loadgen: always built, testkit.Build).
func Bin(t testing.TB, name string) string {
	t.Helper()
	switch name {
	case "fakeimapd", "loadgen":
		return testkit.Build(t, "imap-tls/tests/"+name)
	}
	return testkit.Bin(t, name)
}

// debianPackage names the Debian package that provides a command.
var debianPackage = map[string]string{
	"tcpserver": "ucspi-tcp", "tcpclient": "ucspi-tcp",
	"svscan": "daemontools", "supervise": "daemontools", "svc": "daemontools",
	"svok": "daemontools", "multilog": "daemontools", "softlimit": "daemontools",
	"envdir": "daemontools", "setuidgid": "daemontools", "envuidgid": "daemontools",
	"dovecot": "dovecot-imapd", "doveadm": "dovecot-core",
	"/usr/lib/dovecot/imap": "dovecot-imapd", "/usr/lib/dovecot/imap-login": "dovecot-imapd",
	"socat": "socat", "mbsync": "isync", "curl": "curl", "openssl": "openssl",
	"python3": "python3", "/usr/bin/python3": "python3",
	"stunnel4": "stunnel4", "stunnel": "stunnel4", "tlswrapper": "tlswrapper",
	"useradd": "passwd",
}

// Need fails the test, naming the Debian package to install, when one
// of the commands (a name looked up in $PATH, or an absolute path) is
// missing.
func Need(t testing.TB, commands ...string) {
	t.Helper()
	var missing []string
	for _, c := range commands {
		var err error
		if filepath.IsAbs(c) {
			_, err = os.Stat(c)
		} else {
			_, err = exec.LookPath(c)
		}
		if err != nil {
			pkg := debianPackage[c]
			if pkg == "" {
				pkg = "the package that provides " + c
			}
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", c, pkg))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing: %s", strings.Join(missing, ", "))
	}
}

// NeedRoot skips the test when not running as root: the pipeline
// chroots and changes uid.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not running as root: the pipeline needs chroot and setuid (run as root, e.g. sh redo.do test)")
	}
}

var accountMu sync.Mutex

// EnsureAccount creates the system account name (no home, no shell)
// when it does not exist yet.
func EnsureAccount(t testing.TB, name string) {
	t.Helper()
	accountMu.Lock()
	defer accountMu.Unlock()
	if exec.Command("id", "-u", name).Run() == nil {
		return
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil && exec.Command("id", "-u", name).Run() != nil {
		t.Fatalf("unable to create account %s: %v: %s", name, err, out)
	}
}

// WriteCert makes a test CA and a server certificate signed by it for
// names (DNS names or IP addresses; default "localhost" and 127.0.0.1),
// ECDSA P-256 (testkit.NewCert). It writes dir/server.pem (certificate
// chain, then the PKCS#8 private key; mode 0400, as a real key file) and
// dir/server-ca.crt (the CA certificate clients trust; mode 0644), and
// returns both paths.
func WriteCert(t testing.TB, dir string, names ...string) (pemPath, caPath string) {
	t.Helper()
	return testkit.NewCert(t, testkit.CertOptions{Names: names}).Write(t, dir, "server")
}

// ClientTLS returns a client configuration that trusts the CA in caPath
// and expects the server name serverName.
func ClientTLS(t testing.TB, caPath, serverName string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatalf("unable to read %s: %v", caPath, err)
	}
	return testkit.ClientConfig(t, b, serverName)
}

// RunBounded runs cmd and returns its stdout, killing it after limit (a
// hang guard) and failing the test with what it wrote so far (its stderr
// too, when cmd.Stderr is a buffer).
func RunBounded(t *testing.T, cmd *exec.Cmd, limit time.Duration) ([]byte, error) {
	t.Helper()
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(stdout.String()), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		stderr := ""
		if s, ok := cmd.Stderr.(fmt.Stringer); ok {
			stderr = "\nstderr:\n" + s.String()
		}
		t.Fatalf("%s did not finish within %v (hang guard); stdout so far:\n%s%s", cmd.Path, limit, stdout.String(), stderr)
		return nil, nil
	}
}

// LockedBuffer is testkit's buffer, safe for concurrent writers.
type LockedBuffer = testkit.LockedBuffer

// ExitCode runs cmd under RunBounded's hang guard (60 s) and returns its
// output and exit status; it fails the test when cmd cannot run.
func ExitCode(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var e bytes.Buffer
	cmd.Stderr = &e
	out, err := RunBounded(t, cmd, 60*time.Second)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("unable to run %s: %v", cmd.Path, err)
	}
	return string(out), e.String(), code
}
