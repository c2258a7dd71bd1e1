package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Site is a site made by `imap-tls-conf -m MODES` (one directory: a
// front per mode and one signer) in front of a private Dovecot, linked
// once into the directory of the real svscan as an administrator does
// (`ln -s /etc/imap-tls /etc/service/`), with test ports on 127.0.0.1.
type Site struct {
	Dir     string              // TOP/imap-tls, imap-tls-conf's DIR
	Top     string              // traversable by everyone, as /etc is
	Link    string              // TOP/service/imap-tls, once Start ran
	PEM, CA string              // the test certificate (WriteCert) and its CA
	Dovecot *Dovecot            // behind every front
	Modes   []string            // the fronts, in imap-tls-conf's -m order
	Fronts  map[string]*Service // SITE/service/MODE, each given a Port
	Svscan  *exec.Cmd           // once Start ran
	Out     *LockedBuffer       // svscan's output
}

// MakeSite starts a private Dovecot, makes the site with `imap-tls-conf
// -m MODES ACCOUNTS TOP/imap-tls 127.0.0.1`, installs the test
// certificate as its ssl/stunnel.pem and gives each front a free Port.
// Nothing of the site's env/ is written yet: Start does it.
func MakeSite(t *testing.T, modes ...string) *Site {
	t.Helper()
	s := &Site{Dovecot: StartDovecot(t), Top: t.TempDir(), Modes: modes, Fronts: map[string]*Service{}, Out: &LockedBuffer{}}
	for _, d := range []string{filepath.Dir(s.Top), s.Top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.Dir = filepath.Join(s.Top, "imap-tls")
	if out, err := exec.Command(Bin(t, "imap-tls-conf"), "-m", strings.Join(modes, ","), ServiceAcct, ServiceLogAcct, s.Dir, "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("imap-tls-conf: %v: %s", err, out)
	}
	s.PEM, s.CA = WriteCert(t, s.Top)
	key, err := os.ReadFile(s.PEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "ssl", "stunnel.pem"), key, 0o400); err != nil {
		t.Fatal(err)
	}
	for _, m := range modes {
		s.Fronts[m] = &Service{Dir: filepath.Join(s.Dir, "service", m), Port: Port(t), Mode: m}
	}
	return s
}

// HAProxyPort is the port of the private Dovecot's haproxy = yes
// listener for proto (imap or pop3).
func (s *Site) HAProxyPort(t *testing.T, proto string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dovecot.Dir, proto+"-haproxy.port"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Start writes each front's env/PORT (its Port) and env/IMAPD (the
// Dovecot haproxy listener of its protocol), links the site into
// TOP/service and runs the real svscan there; it returns once every
// front listens (WaitUp). When the test ends svscan is stopped first,
// then svc -dx of the link (the site's run file stops the rest), and
// the test fails if a process of the tree is left.
func (s *Site) Start(t *testing.T) {
	t.Helper()
	for _, m := range s.Modes {
		f := s.Fronts[m]
		f.WriteEnv(t, "PORT", strconv.Itoa(f.Port))
		f.WriteEnv(t, "IMAPD", "127.0.0.1:"+s.HAProxyPort(t, m[:4]))
	}
	root := filepath.Join(s.Top, "service")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Link = filepath.Join(root, "imap-tls")
	if err := os.Symlink(s.Dir, s.Link); err != nil {
		t.Fatal(err)
	}
	s.Svscan = exec.Command("svscan", root)
	RunSvscan(t, s.Svscan, s.Out)
	pgid := s.Svscan.Process.Pid
	t.Cleanup(func() {
		// svscan first, then the site (its run file stops what it started)
		syscall.Kill(pgid, syscall.SIGTERM)
		s.Svscan.Wait()
		exec.Command("svc", "-dx", s.Link).Run()
		deadline := time.Now().Add(20 * time.Second)
		for len(ProcessGroup(pgid, false)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if left := ProcessGroup(pgid, false); len(left) > 0 {
			t.Errorf("processes left after svc -dx of the site: %s", Describe(left))
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	for _, m := range s.Modes {
		s.Fronts[m].WaitUp(t)
	}
}

// RunSvscan starts cmd, svscan on a directory (perhaps in a network
// namespace), with a clean PATH, its output into out and a process
// group of its own (the pgid its tree's cleanup takes down); it fails
// the test if svscan does not start.
func RunSvscan(t testing.TB, cmd *exec.Cmd, out *LockedBuffer) {
	t.Helper()
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second // supervise and the rest hold its output
	if err := cmd.Start(); err != nil {
		t.Fatalf("unable to start svscan: %v", err)
	}
}

// SvstatPid is the pid svstat reports for the service directory dir, 0
// when the service is down.
func SvstatPid(dir string) (int, error) { return svstat(dir) }

// ConfBin is imap-tls-conf (Bin); it fails the test unless every
// program the run files it writes exec is next to it.
func ConfBin(t *testing.T) string {
	t.Helper()
	conf := Bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "stunnel-imap-signer"} {
		if filepath.Dir(Bin(t, p)) != filepath.Dir(conf) {
			t.Fatalf("%s is not next to imap-tls-conf", p)
		}
	}
	return conf
}

// SignerReadies counts the "ready" lines in the log of the signer
// service dir (dir/log/main/current): one per start.
func SignerReadies(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "log", "main", "current"))
	return strings.Count(string(b), "stunnel-imap-signer: info: ready")
}

// WaitSignerReady waits (20 s) until the signer service dir has logged
// ready n times (SignerReadies): a site's fronts listen before its
// signer may be ready, and a connection then finds no signer.
func WaitSignerReady(t *testing.T, dir string, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); SignerReadies(dir) < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "log", "main", "current"))
			t.Fatalf("the site's signer is not ready after 20 s; log:\n%s", b)
		}
	}
}
