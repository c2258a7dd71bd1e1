package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	ServiceAcct    = "imaptls"
	ServiceLogAcct = "imaptlslog"
)

// SvscanTree is a running svscan over a directory of services.
type SvscanTree struct {
	Root     string // the directory svscan scans
	CA       string // the CA clients trust
	Dovecot  *Dovecot
	Cmd      *exec.Cmd
	Out      *LockedBuffer
	Services []*Service
}

// Service is one service directory in the tree.
type Service struct {
	Dir  string
	Port int
	Mode string // env/MODE
}

// ServiceSpec describes a service to make.
type ServiceSpec struct {
	Name        string
	Mode        string // imap, imap- or imaps
	Concurrency int    // 0: imap-tls-conf's default
	KeyProc     bool   // env/SIGNER empty: a key process per connection, not the signer
}

// StartServices makes one service directory per spec with imap-tls-conf
// (on a free loopback port, with the test certificate and Dovecot's login
// backend), starts svscan on them, and waits until every one listens.
// Everything is stopped when the test ends, and the test fails if a
// process is left behind.
func StartServices(t *testing.T, specs ...ServiceSpec) *SvscanTree {
	t.Helper()
	NeedRoot(t)
	Need(t, "svscan", "supervise", "svc", "svok", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver", "socat")
	EnsureAccount(t, ServiceAcct)
	EnsureAccount(t, ServiceLogAcct)
	conf := ConfBin(t)
	dc := StartDovecot(t)
	// Traversable by everyone down to the service directories, as /etc
	// is: so that what keeps acct from the key is the service's own modes.
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pem, ca := WriteCert(t, top)
	key, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	tr := &SvscanTree{Root: filepath.Join(top, "service"), CA: ca, Dovecot: dc, Out: &LockedBuffer{}}
	if err := os.Mkdir(tr.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		s := &Service{Dir: filepath.Join(tr.Root, sp.Name), Port: Port(t), Mode: sp.Mode}
		out, err := exec.Command(conf, ServiceAcct, ServiceLogAcct, s.Dir, "127.0.0.1", strconv.Itoa(s.Port)).CombinedOutput()
		if err != nil {
			t.Fatalf("imap-tls-conf: %v: %s", err, out)
		}
		s.WriteEnv(t, "MODE", sp.Mode)
		// Dovecot's login server through socat: env/IMAPD is split at
		// spaces, and the test paths have none
		s.WriteEnv(t, "IMAPD", strings.Join(dc.LoginCmd(), " "))
		s.WriteEnv(t, "PROXYHEADER", "") // a unix socket: no PROXY header (the haproxy port: proxy_e2e_test.go, the demo)
		if sp.Concurrency != 0 {
			s.WriteEnv(t, "CONCURRENCY", strconv.Itoa(sp.Concurrency))
		}
		if err := os.WriteFile(filepath.Join(s.Dir, "ssl", "stunnel.pem"), key, 0o400); err != nil {
			t.Fatal(err)
		}
		if sp.KeyProc {
			s.WriteEnv(t, "SIGNER", "")
		}
		// The signer is a service of its own, linked beside its service
		// as the next steps of imap-tls-conf say.
		if err := os.Symlink(filepath.Join(s.Dir, "signer"), filepath.Join(tr.Root, sp.Name+"-signer")); err != nil {
			t.Fatal(err)
		}
		tr.Services = append(tr.Services, s)
	}
	tr.Cmd = exec.Command("svscan", tr.Root)
	RunSvscan(t, tr.Cmd, tr.Out)
	t.Cleanup(func() { tr.Stop(t) })
	for _, s := range tr.Services {
		s.WaitUp(t)
	}
	return tr
}

// WaitUp waits until the service listens on its port. A port that was
// free a moment ago can be taken meanwhile (another test's listener, or
// any client's ephemeral port: the ranges overlap); then it moves the
// service to another free port, the way an administrator would: a new
// env/PORT and svc -t.
func (s *Service) WaitUp(t *testing.T) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		deadline := time.Now().Add(20 * time.Second)
		for !Listening(s.Port) && time.Now().Before(deadline) {
			if attempt < 3 && s.bindFailed(t) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if Listening(s.Port) {
			return
		}
		if attempt >= 3 || !s.bindFailed(t) {
			t.Fatalf("%s: not listening on port %d after 20 s; log:\n%s", s.Dir, s.Port, strings.Join(s.LogLines(t), "\n"))
		}
		t.Logf("%s: port %d was taken meanwhile; moving to another", s.Dir, s.Port)
		s.Port = Port(t)
		s.WriteEnv(t, "PORT", strconv.Itoa(s.Port))
		s.Svc(t, "-t")
	}
}

// bindFailed reports whether the last line of the log is a failure to
// bind: imap-tls-server's own try before it execs tcpserver ("unable
// to bind 127.0.0.1:143: address already used (held by ...)"), or
// tcpserver's.
func (s *Service) bindFailed(t *testing.T) bool {
	lines := s.LogLines(t)
	if len(lines) == 0 {
		return false
	}
	last := lines[len(lines)-1]
	return strings.Contains(last, "imap-tls-server: fatal: unable to bind ") || strings.Contains(last, "tcpserver: fatal: unable to bind")
}

// Stop takes the tree down in the daemontools order: svscan first (or it
// would start a new supervise for a service whose supervise just left),
// then svc -dx each service and its logger; then it fails the test if any
// process of the tree is left.
func (tr *SvscanTree) Stop(t *testing.T) {
	pgid := tr.Cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { tr.Cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("svscan %d did not exit on SIGTERM", pgid)
	}
	for _, s := range tr.Services {
		exec.Command("svc", "-dx", s.Dir, filepath.Join(s.Dir, "signer")).Run()
	}
	for _, s := range tr.Services {
		exec.Command("svc", "-dx", filepath.Join(s.Dir, "log"), filepath.Join(s.Dir, "signer", "log")).Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(ProcessGroup(pgid, false)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := ProcessGroup(pgid, false); len(left) > 0 {
		syscall.Kill(-pgid, syscall.SIGKILL)
		t.Errorf("processes left after svc -dx: %s", Describe(left))
	}
}

func (s *Service) WriteEnv(t *testing.T, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir, "env", name), []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *Service) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Svc runs svc with flags on the service.
func (s *Service) Svc(t *testing.T, flags string) {
	t.Helper()
	if out, err := exec.Command("svc", flags, s.Dir).CombinedOutput(); err != nil {
		t.Fatalf("svc %s %s: %v %s", flags, s.Dir, err, out)
	}
}

// Pid is the pid of the service's process (tcpserver) from svstat, or
// 0 when down.
func (s *Service) Pid(t *testing.T) int {
	t.Helper()
	pid, err := svstat(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// svstat is the pid svstat reports for the service directory dir, 0
// when the service is down.
func svstat(dir string) (int, error) {
	out, err := exec.Command("svstat", dir).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("svstat %s: %v %s", dir, err, out)
	}
	m := regexp.MustCompile(`: up \(pid (\d+)\)`).FindSubmatch(out)
	if m == nil {
		return 0, nil
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid, nil
}

// WaitListening waits until port is (or is no longer) Listening.
func (s *Service) WaitListening(t *testing.T, port int, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for Listening(port) != want {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "log", "main", "current"))
			t.Fatalf("%s: port %d listening=%v after 20 s, want %v; log:\n%s", s.Dir, port, !want, want, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogLines returns the lines of log/main/current.
func (s *Service) LogLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "log", "main", "current"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// ConnLine is stunnel-imap's line for one connection, with its fields.
var ConnLine = regexp.MustCompile(`stunnel-imap: info: remote=127\.0\.0\.1:\d+ mode=\S+ starttls=(yes|no) tls=\S+ cipher=\S+ .*auth=(yes|no) in=\d+ out=\d+ warnings=\d+ duration=\S+ (?:reason=".*" )?end=\S+`)

// WaitLog waits (20 s) for a line of the service's log matching re,
// after its first skip lines, and returns it; it fails the test with
// the log.
func (s *Service) WaitLog(t *testing.T, skip int, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines := s.LogLines(t)
		for _, l := range lines[min(skip, len(lines)):] {
			if rx.MatchString(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q in %s's log:\n%s", re, filepath.Base(s.Dir), strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ConnLines counts stunnel-imap's one-per-connection info lines.
func (s *Service) ConnLines(t *testing.T) int {
	n := 0
	for _, l := range s.LogLines(t) {
		if ConnLine.MatchString(l) {
			n++
		}
	}
	return n
}

// WaitConnLines waits until the log holds at least n connection lines.
func (s *Service) WaitConnLines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.ConnLines(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection lines in the log after 20 s, want %d:\n%s", s.ConnLines(t), n, strings.Join(s.LogLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Session is a short IMAP session through the service with the Go TLS
// client: (STARTTLS,) LOGIN, SELECT, LOGOUT. It returns the number of
// messages SELECT reported.
func (s *Service) Session(t *testing.T, ca string) int {
	t.Helper()
	c := s.Login(t, ca)
	defer c.Close()
	untagged, tagged := c.Cmd("b", "SELECT INBOX")
	if !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("SELECT: %q", tagged)
	}
	c.Cmd("c", "LOGOUT")
	for _, l := range untagged {
		if m := regexp.MustCompile(`^\* (\d+) EXISTS`).FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("SELECT without EXISTS: %q", untagged)
	return 0
}

// Login connects, does TLS as the mode says, and logs in as alice.
func (s *Service) Login(t *testing.T, ca string) *IMAPClient {
	t.Helper()
	c := DialIMAP(t, s.Addr())
	cfg := ClientTLS(t, ca, "localhost")
	if s.Mode == "imaps" {
		c.TLS(cfg)
		if g := c.Line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting: %q", g)
		}
	} else {
		if g := c.Line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting: %q", g)
		}
		c.StartTLS("s", cfg)
	}
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	return c
}

func (tr *SvscanTree) Python(t *testing.T, s *Service) {
	dir := t.TempDir()
	msg := NewMessage("python-" + s.Mode + "-" + strconv.Itoa(s.Port))
	path := filepath.Join(dir, "msg")
	os.WriteFile(path, msg, 0o644)
	out := RunClient(t, "python3", 60*time.Second, nil, "/usr/bin/python3", "-c", pythonClient, s.Mode, strconv.Itoa(s.Port), tr.CA, path)
	if out != "same" {
		t.Fatalf("python3 imaplib: %s", out)
	}
}

// OpenSSL drives openssl s_client with a pipelined session: LOGIN,
// APPEND (LITERAL+), SELECT (which sees the new message last), FETCH of
// the last message, LOGOUT.
func (tr *SvscanTree) OpenSSL(t *testing.T, s *Service) {
	msg := NewMessage("openssl-" + s.Mode + "-" + strconv.Itoa(s.Port))
	var in bytes.Buffer
	in.WriteString("a LOGIN alice secret\r\n")
	fmt.Fprintf(&in, "b APPEND INBOX {%d+}\r\n", len(msg))
	in.Write(msg)
	in.WriteString("\r\nc SELECT INBOX\r\ne FETCH * (BODY.PEEK[])\r\nf LOGOUT\r\n")
	args := []string{"s_client", "-quiet", "-ign_eof", "-connect", s.Addr(), "-CAfile", tr.CA,
		"-verify_return_error", "-verify_hostname", "localhost", "-servername", "localhost"}
	if s.Mode != "imaps" {
		args = append(args, "-starttls", "imap")
	}
	out := RunClient(t, "openssl s_client", 60*time.Second, in.Bytes(), append([]string{"openssl"}, args...)...)
	for _, want := range []string{"\r\na OK", "\r\nb OK", "\r\nc OK", "\r\ne OK", "\r\nf OK"} {
		if !strings.Contains(out, want) {
			t.Fatalf("openssl s_client: no %q in:\n%s", want[2:], out)
		}
	}
	m := regexp.MustCompile(`\* \d+ FETCH \(BODY\[\] \{(\d+)\}\r\n`).FindStringSubmatchIndex(out)
	if m == nil {
		t.Fatalf("openssl s_client: no FETCH literal in:\n%s", out)
	}
	n, _ := strconv.Atoi(out[m[2]:m[3]])
	if body := out[m[1]:min(len(out), m[1]+n)]; body != string(msg) {
		t.Fatalf("openssl s_client: fetched %d bytes, not the %d appended:\n%.300s", len(body), len(msg), body)
	}
}

// Curl appends with -T, finds the UID with a custom UID SEARCH, and
// fetches the message by UID: three connections.
func (tr *SvscanTree) Curl(t *testing.T, s *Service) {
	id := "curl-" + s.Mode + "-" + strconv.Itoa(s.Port)
	msg := NewMessage(id)
	path := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(path, msg, 0o644)
	url := "imap://alice:secret@localhost:" + strconv.Itoa(s.Port) + "/INBOX"
	opts := []string{"curl", "-sS", "--ssl-reqd", "--cacert", tr.CA}
	if s.Mode == "imaps" {
		url = "imaps" + url[4:]
	}
	RunClient(t, "curl append", 60*time.Second, nil, append(opts, "-T", path, url)...)
	out := RunClient(t, "curl search", 60*time.Second, nil, append(opts, "-X", "UID SEARCH HEADER Message-ID <"+id+"@imap-tls.test>", url)...)
	m := regexp.MustCompile(`\* SEARCH (\d+)\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("curl search: %q", out)
	}
	body := RunClient(t, "curl fetch", 60*time.Second, nil, append(opts, url+";UID="+m[1])...)
	if body != string(msg) {
		t.Fatalf("curl fetched %d bytes, not the %d appended:\n%.300s", len(body), len(msg), body)
	}
}

// Mbsync pushes a new local message to the server and pulls everything
// into a fresh local Maildir, where the message must arrive unchanged
// (Maildir holds LF line ends; mbsync turns them into CRLF and back).
func (tr *SvscanTree) Mbsync(t *testing.T, s *Service) {
	id := "mbsync-" + s.Mode + "-" + strconv.Itoa(s.Port)
	msg := bytes.ReplaceAll(NewMessage(id), []byte("\r\n"), []byte("\n"))
	dir := t.TempDir()
	sync := func(local string) {
		conf := MbsyncConf(s, tr.CA, local, "Pull Push New")
		cmd := []string{"mbsync", "-q", "-c", conf, "inbox"}
		RunClient(t, "mbsync", 90*time.Second, nil, cmd...)
	}
	first := filepath.Join(dir, "one")
	os.MkdirAll(filepath.Join(first, "INBOX", "new"), 0o700)
	os.WriteFile(filepath.Join(first, "INBOX", "new", "1.mbsync-test.imaptls"), msg, 0o600)
	sync(first)
	second := filepath.Join(dir, "two")
	sync(second)
	var found []byte
	files, _ := filepath.Glob(filepath.Join(second, "INBOX", "*", "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("<"+id+"@imap-tls.test>")) {
			found = b
		}
	}
	if len(files) < 4 {
		t.Fatalf("mbsync pulled %d messages, want the 3 seeds and ours at least", len(files))
	}
	// Mbsync adds a header of its own, X-TUID, to a message it pushes (to
	// find it again); without it the message must be the same bytes.
	tuid := regexp.MustCompile(`(?m)^X-TUID: [A-Za-z0-9+/]+\n`)
	if len(tuid.FindAll(found, -1)) != 1 {
		t.Fatalf("mbsync: no X-TUID header, or more than one:\n%.400s", found)
	}
	if got := tuid.ReplaceAll(found, nil); !bytes.Equal(got, msg) {
		t.Fatalf("mbsync: the message came back as %d bytes, not the %d pushed:\n%.400s", len(got), len(msg), got)
	}
}

// MbsyncConf makes local a Maildir (INBOX's cur, new and tmp) and
// writes local/mbsyncrc for alice on the service's port (SSLType
// STARTTLS, IMAPS for imaps), trusting ca, one channel "inbox" with
// Sync sync; it returns the file's path.
func MbsyncConf(s *Service, ca, local, sync string) string {
	ssl := "STARTTLS"
	if s.Mode == "imaps" {
		ssl = "IMAPS"
	}
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(local, "INBOX", d), 0o700)
	}
	conf := filepath.Join(local, "mbsyncrc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`IMAPAccount remote
Host localhost
Port %d
User alice
Pass secret
SSLType %s
CertificateFile %s

IMAPStore remote
Account remote

MaildirStore local
Path %s/
Inbox %s/INBOX

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Sync %s
SyncState *
`, s.Port, ssl, ca, local, local, sync)), 0o600)
	return conf
}

// Restart is svc -t, waiting for the new tcpserver to listen.
func (s *Service) Restart(t *testing.T) {
	t.Helper()
	pid := s.Pid(t)
	s.Svc(t, "-t")
	deadline := time.Now().Add(20 * time.Second)
	for p := s.Pid(t); p == pid || p == 0 || !Listening(s.Port); p = s.Pid(t) {
		if time.Now().After(deadline) {
			t.Fatalf("svc -t: no new tcpserver listening after 20 s; log:\n%s", strings.Join(s.LogLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SignerService is a signer under supervise.
type SignerService struct {
	Dir    string // the service directory: run, supervise/
	Socket string
	PEM    string
	CA     string
	Jail   string
	Out    *LockedBuffer
	cmd    *exec.Cmd
}

// StartSigner makes a service directory for the signer of a fresh
// certificate, starts supervise on it and waits for the signer's ready
// line. Cleanup: svc -dx, then supervise is waited for.
func StartSigner(t *testing.T) *SignerService {
	t.Helper()
	NeedRoot(t)
	Need(t, "supervise", "svc", "svstat")
	top := t.TempDir()
	os.Chmod(top, 0o755)
	s := &SignerService{Dir: filepath.Join(top, "signer"), Jail: filepath.Join(top, "jail"), Out: &LockedBuffer{}}
	s.Socket = filepath.Join(s.Dir, "socket")
	for _, d := range []string{s.Dir, s.Jail} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ssl := filepath.Join(top, "ssl")
	os.Mkdir(ssl, 0o700)
	s.PEM, s.CA = WriteCert(t, ssl)
	bindir := filepath.Dir(Bin(t, "stunnel-imap-signer"))
	if filepath.Dir(Bin(t, "setuidgid-chroot")) != bindir {
		t.Fatal("setuidgid-chroot is not next to stunnel-imap-signer")
	}
	run := fmt.Sprintf("#!/bin/sh\nexec 2>&1\nPATH=%s:$PATH GOMAXPROCS=1 exec setuidgid-chroot -/ %s -r %s -o 3:%s -l 4:./socket stunnel-imap-signer -P 3 -L 4\n",
		bindir, s.Jail, JailRange, s.PEM)
	if err := os.WriteFile(filepath.Join(s.Dir, "run"), []byte(run), 0o755); err != nil {
		t.Fatal(err)
	}
	s.cmd = Supervise(t, s.Dir, s.Out)
	s.WaitReady(t, 1)
	return s
}

// Supervise runs the real supervise on the service directory dir (its
// run file written by the caller), in a process group of its own, with
// its output (the run file's, after exec 2>&1) in out. When the test
// ends: svc -dx, then supervise is waited for (10 s, or the test fails),
// and whatever is left of its group is killed.
func Supervise(t testing.TB, dir string, out *LockedBuffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("supervise", dir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("unable to start supervise: %v", err)
	}
	t.Cleanup(func() {
		exec.Command("svc", "-dx", dir).Run()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("supervise %s did not exit on svc -dx", dir)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd
}

// WaitReady waits for the n-th ready line of the signer's log.
func (s *SignerService) WaitReady(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(s.Out.String(), "stunnel-imap-signer: info: ready") < n {
		if time.Now().After(deadline) {
			t.Fatalf("the signer is not ready (%d) after 20 s: %s", n, s.Out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the signer's pid from svstat, 0 when it is down (or when
// svstat fails: supervise is not up yet).
func (s *SignerService) Pid(t *testing.T) int {
	pid, _ := svstat(s.Dir)
	return pid
}

// NewPID waits until supervise runs a signer other than old, and it is
// ready.
func (s *SignerService) NewPID(t *testing.T, old int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p := s.Pid(t); p != 0 && p != old && Alive(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new signer after 20 s: %s", s.Out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
