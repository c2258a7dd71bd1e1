// End-to-end tests of the service: directories made by imap-tls-conf, run
// by the real svscan, supervise, multilog, softlimit and tcpserver, with a
// real Dovecot behind (its login server, through socat) and real clients
// in front: Python's imaplib, openssl s_client, curl and mbsync.
package tests

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

const (
	serviceAcct    = "imaptls"
	serviceLogAcct = "imaptlslog"
)

// svscanTree is a running svscan over a directory of services.
type svscanTree struct {
	Root     string // the directory svscan scans
	CA       string // the CA clients trust
	dovecot  *dovecot
	cmd      *exec.Cmd
	out      *lockedBuffer
	services []*service
}

// service is one service directory in the tree.
type service struct {
	Dir  string
	Port int
	Mode string // env/MODE
}

// serviceSpec describes a service to make.
type serviceSpec struct {
	Name        string
	Mode        string // imap, imap- or imaps
	Concurrency int    // 0: imap-tls-conf's default
	KeyProc     bool   // env/SIGNER empty: a key process per connection, not the signer
}

// startServices makes one service directory per spec with imap-tls-conf
// (on a free loopback port, with the test certificate and Dovecot's login
// backend), starts svscan on them, and waits until every one listens.
// Everything is stopped when the test ends, and the test fails if a
// process is left behind.
func startServices(t *testing.T, specs ...serviceSpec) *svscanTree {
	t.Helper()
	needRoot(t)
	need(t, "svscan", "supervise", "svc", "svok", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver", "socat")
	ensureAccount(t, serviceAcct)
	ensureAccount(t, serviceLogAcct)
	conf := bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "stunnel-imap-signer"} {
		if filepath.Dir(bin(t, p)) != filepath.Dir(conf) {
			t.Fatalf("%s is not next to imap-tls-conf", p)
		}
	}
	dc := startDovecot(t)
	// Traversable by everyone down to the service directories, as /etc
	// is: so that what keeps acct from the key is the service's own modes.
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pem, ca := writeCert(t, top)
	key, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	tr := &svscanTree{Root: filepath.Join(top, "service"), CA: ca, dovecot: dc, out: &lockedBuffer{}}
	if err := os.Mkdir(tr.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		s := &service{Dir: filepath.Join(tr.Root, sp.Name), Port: freePort(t), Mode: sp.Mode}
		out, err := exec.Command(conf, serviceAcct, serviceLogAcct, s.Dir, "127.0.0.1", strconv.Itoa(s.Port)).CombinedOutput()
		if err != nil {
			t.Fatalf("imap-tls-conf: %v: %s", err, out)
		}
		s.writeEnv(t, "MODE", sp.Mode)
		// Dovecot's login server through socat: env/IMAPD is split at
		// spaces, and the test paths have none
		s.writeEnv(t, "IMAPD", strings.Join(dc.LoginCmd(), " "))
		s.writeEnv(t, "PROXYHEADER", "") // a unix socket: no PROXY header (the haproxy port: proxy_e2e_test.go, the demo)
		if sp.Concurrency != 0 {
			s.writeEnv(t, "CONCURRENCY", strconv.Itoa(sp.Concurrency))
		}
		if err := os.WriteFile(filepath.Join(s.Dir, "ssl", "stunnel.pem"), key, 0o400); err != nil {
			t.Fatal(err)
		}
		if sp.KeyProc {
			s.writeEnv(t, "SIGNER", "")
		}
		// The signer is a service of its own, linked beside its service
		// as the next steps of imap-tls-conf say.
		if err := os.Symlink(filepath.Join(s.Dir, "signer"), filepath.Join(tr.Root, sp.Name+"-signer")); err != nil {
			t.Fatal(err)
		}
		tr.services = append(tr.services, s)
	}
	tr.cmd = exec.Command("svscan", tr.Root)
	tr.cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
	tr.cmd.Stdout, tr.cmd.Stderr = tr.out, tr.out
	tr.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tr.cmd.WaitDelay = time.Second // supervise and the rest hold its output
	if err := tr.cmd.Start(); err != nil {
		t.Fatalf("unable to start svscan: %v", err)
	}
	t.Cleanup(func() { tr.stop(t) })
	for _, s := range tr.services {
		s.waitUp(t)
	}
	return tr
}

// waitUp waits until the service listens on its port. A port that was
// free a moment ago can be taken meanwhile (another test's listener, or
// any client's ephemeral port: the ranges overlap); then it moves the
// service to another free port, the way an administrator would: a new
// env/PORT and svc -t.
func (s *service) waitUp(t *testing.T) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		deadline := time.Now().Add(20 * time.Second)
		for !listening(s.Port) && time.Now().Before(deadline) {
			if attempt < 3 && s.bindFailed(t) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if listening(s.Port) {
			return
		}
		if attempt >= 3 || !s.bindFailed(t) {
			t.Fatalf("%s: not listening on port %d after 20 s; log:\n%s", s.Dir, s.Port, strings.Join(s.logLines(t), "\n"))
		}
		t.Logf("%s: port %d was taken meanwhile; moving to another", s.Dir, s.Port)
		s.Port = freePort(t)
		s.writeEnv(t, "PORT", strconv.Itoa(s.Port))
		s.svc(t, "-t")
	}
}

// bindFailed reports whether the last line of the log is tcpserver's
// failure to bind.
func (s *service) bindFailed(t *testing.T) bool {
	lines := s.logLines(t)
	return len(lines) > 0 && strings.Contains(lines[len(lines)-1], "tcpserver: fatal: unable to bind")
}

// stop takes the tree down in the daemontools order: svscan first (or it
// would start a new supervise for a service whose supervise just left),
// then svc -dx each service and its logger; then it fails the test if any
// process of the tree is left.
func (tr *svscanTree) stop(t *testing.T) {
	pgid := tr.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { tr.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("svscan %d did not exit on SIGTERM", pgid)
	}
	for _, s := range tr.services {
		exec.Command("svc", "-dx", s.Dir, filepath.Join(s.Dir, "signer")).Run()
	}
	for _, s := range tr.services {
		exec.Command("svc", "-dx", filepath.Join(s.Dir, "log"), filepath.Join(s.Dir, "signer", "log")).Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(processGroup(pgid, false)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := processGroup(pgid, false); len(left) > 0 {
		syscall.Kill(-pgid, syscall.SIGKILL)
		t.Errorf("processes left after svc -dx: %s", describe(left))
	}
}

// descendants lists every live descendant of pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range allPids() {
		if st := procStat(p); len(st) > 1 {
			pp, _ := strconv.Atoi(st[1])
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

func (s *service) writeEnv(t *testing.T, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir, "env", name), []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *service) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// svc runs svc with flags on the service.
func (s *service) svc(t *testing.T, flags string) {
	t.Helper()
	if out, err := exec.Command("svc", flags, s.Dir).CombinedOutput(); err != nil {
		t.Fatalf("svc %s %s: %v %s", flags, s.Dir, err, out)
	}
}

// pid is the pid of the service's process (tcpserver) from svstat's
// status file, or 0 when down.
func (s *service) pid(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("svstat", s.Dir).CombinedOutput()
	if err != nil {
		t.Fatalf("svstat %s: %v %s", s.Dir, err, out)
	}
	m := regexp.MustCompile(`: up \(pid (\d+)\)`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid
}

// waitListening waits until port is (or is no longer) listening.
func (s *service) waitListening(t *testing.T, port int, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for listening(port) != want {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "log", "main", "current"))
			t.Fatalf("%s: port %d listening=%v after 20 s, want %v; log:\n%s", s.Dir, port, !want, want, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLines returns the lines of log/main/current.
func (s *service) logLines(t *testing.T) []string {
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

// connLine is stunnel-imap's line for one connection, with its fields.
var connLine = regexp.MustCompile(`stunnel-imap: info: remote=127\.0\.0\.1:\d+ mode=\S+ starttls=(yes|no) tls=\S+ cipher=\S+ .*auth=(yes|no) in=\d+ out=\d+ warnings=\d+ duration=\S+ end=\S+`)

// connLines counts stunnel-imap's one-per-connection info lines.
func (s *service) connLines(t *testing.T) int {
	n := 0
	for _, l := range s.logLines(t) {
		if connLine.MatchString(l) {
			n++
		}
	}
	return n
}

// waitConnLines waits until the log holds at least n connection lines.
func (s *service) waitConnLines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.connLines(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection lines in the log after 20 s, want %d:\n%s", s.connLines(t), n, strings.Join(s.logLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// session is a short IMAP session through the service with the Go TLS
// client: (STARTTLS,) LOGIN, SELECT, LOGOUT. It returns the number of
// messages SELECT reported.
func (s *service) session(t *testing.T, ca string) int {
	t.Helper()
	c := s.login(t, ca)
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

// login connects, does TLS as the mode says, and logs in as alice.
func (s *service) login(t *testing.T, ca string) *imapClient {
	t.Helper()
	c := dialIMAP(t, s.Addr())
	cfg := clientTLS(t, ca, "localhost")
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

// testMessage is a message with a unique Message-ID, CRLF line ends, a
// long line and 8-bit text, as clients append it.
func testMessage(id string) []byte {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\n")
	b.WriteString("To: Bob <bob@example.org>\r\n")
	b.WriteString("Subject: through imap-tls " + id + "\r\n")
	b.WriteString("Date: Thu, 26 Nov 2026 23:00:00 +0000\r\n")
	b.WriteString("Message-ID: <" + id + "@imap-tls.test>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString("Grüße aus dem Tunnel.\r\n")
	b.WriteString(strings.Repeat("0123456789", 90) + "\r\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "line %d of the body, some padding to make it longer than one TLS record\r\n", i)
	}
	return []byte(b.String())
}

const pythonClient = `
import imaplib, re, ssl, sys
mode, port, ca, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msg = open(path, 'rb').read()
ctx = ssl.create_default_context(cafile=ca)
if mode == 'imaps':
    c = imaplib.IMAP4_SSL('localhost', port, ssl_context=ctx)
else:
    c = imaplib.IMAP4('localhost', port)
    c.starttls(ctx)
c.login('alice', 'secret')
typ, data = c.select('INBOX')
assert typ == 'OK', data
typ, data = c.append('INBOX', None, None, msg)
assert typ == 'OK', data
uid = re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1).decode()
typ, data = c.uid('FETCH', uid, '(BODY.PEEK[])')
assert typ == 'OK', data
body = data[0][1]
c.logout()
sys.stdout.write('same' if body == msg else 'differ: %r' % body[:300])
`

// runClient runs the client argv with stdin, bounded by timeout (see
// runBounded), and returns its stdout; it fails the test, naming the
// client name, when the client fails.
func runClient(t *testing.T, name string, timeout time.Duration, stdin []byte, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := runBounded(t, cmd, timeout)
	if err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", name, err, out, errb.String())
	}
	return string(out)
}

func (tr *svscanTree) python(t *testing.T, s *service) {
	dir := t.TempDir()
	msg := testMessage("python-" + s.Mode + "-" + strconv.Itoa(s.Port))
	path := filepath.Join(dir, "msg")
	os.WriteFile(path, msg, 0o644)
	out := runClient(t, "python3", 60*time.Second, nil, "/usr/bin/python3", "-c", pythonClient, s.Mode, strconv.Itoa(s.Port), tr.CA, path)
	if out != "same" {
		t.Fatalf("python3 imaplib: %s", out)
	}
}

// openssl drives openssl s_client with a pipelined session: LOGIN,
// APPEND (LITERAL+), SELECT (which sees the new message last), FETCH of
// the last message, LOGOUT.
func (tr *svscanTree) openssl(t *testing.T, s *service) {
	msg := testMessage("openssl-" + s.Mode + "-" + strconv.Itoa(s.Port))
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
	out := runClient(t, "openssl s_client", 60*time.Second, in.Bytes(), append([]string{"openssl"}, args...)...)
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

// curl appends with -T, finds the UID with a custom UID SEARCH, and
// fetches the message by UID: three connections.
func (tr *svscanTree) curl(t *testing.T, s *service) {
	id := "curl-" + s.Mode + "-" + strconv.Itoa(s.Port)
	msg := testMessage(id)
	path := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(path, msg, 0o644)
	url := "imap://alice:secret@localhost:" + strconv.Itoa(s.Port) + "/INBOX"
	opts := []string{"curl", "-sS", "--ssl-reqd", "--cacert", tr.CA}
	if s.Mode == "imaps" {
		url = "imaps" + url[4:]
	}
	runClient(t, "curl append", 60*time.Second, nil, append(opts, "-T", path, url)...)
	out := runClient(t, "curl search", 60*time.Second, nil, append(opts, "-X", "UID SEARCH HEADER Message-ID <"+id+"@imap-tls.test>", url)...)
	m := regexp.MustCompile(`\* SEARCH (\d+)\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("curl search: %q", out)
	}
	body := runClient(t, "curl fetch", 60*time.Second, nil, append(opts, url+";UID="+m[1])...)
	if body != string(msg) {
		t.Fatalf("curl fetched %d bytes, not the %d appended:\n%.300s", len(body), len(msg), body)
	}
}

// mbsync pushes a new local message to the server and pulls everything
// into a fresh local Maildir, where the message must arrive unchanged
// (Maildir holds LF line ends; mbsync turns them into CRLF and back).
func (tr *svscanTree) mbsync(t *testing.T, s *service) {
	id := "mbsync-" + s.Mode + "-" + strconv.Itoa(s.Port)
	msg := bytes.ReplaceAll(testMessage(id), []byte("\r\n"), []byte("\n"))
	dir := t.TempDir()
	tls := "STARTTLS"
	if s.Mode == "imaps" {
		tls = "IMAPS"
	}
	sync := func(local string) {
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
Sync Pull Push New
SyncState *
`, s.Port, tls, tr.CA, local, local)), 0o600)
		cmd := []string{"mbsync", "-q", "-c", conf, "inbox"}
		runClient(t, "mbsync", 90*time.Second, nil, cmd...)
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
	// mbsync adds a header of its own, X-TUID, to a message it pushes (to
	// find it again); without it the message must be the same bytes.
	tuid := regexp.MustCompile(`(?m)^X-TUID: [A-Za-z0-9+/]+\n`)
	if len(tuid.FindAll(found, -1)) != 1 {
		t.Fatalf("mbsync: no X-TUID header, or more than one:\n%.400s", found)
	}
	if got := tuid.ReplaceAll(found, nil); !bytes.Equal(got, msg) {
		t.Fatalf("mbsync: the message came back as %d bytes, not the %d pushed:\n%.400s", len(got), len(msg), got)
	}
}

// TestServiceClients: four real clients through the STARTTLS and the
// implicit-TLS service, each appending a message and fetching it back
// byte-identical; then the logs: tai64n-stamped, one line per connection
// with stunnel-imap's fields, no password.
func TestServiceClients(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	need(t, "/usr/bin/python3", "openssl", "curl", "mbsync")
	tr := startServices(t, serviceSpec{Name: "starttls", Mode: "imap"}, serviceSpec{Name: "implicit", Mode: "imaps"})
	for _, s := range tr.services {
		s := s
		t.Run(s.Mode, func(t *testing.T) {
			t.Run("python", func(t *testing.T) { tr.python(t, s) })
			t.Run("openssl", func(t *testing.T) { tr.openssl(t, s) })
			t.Run("curl", func(t *testing.T) { tr.curl(t, s) })
			t.Run("mbsync", func(t *testing.T) { tr.mbsync(t, s) })
		})
	}
	for _, s := range tr.services {
		// One more connection, known by its client port: exactly one
		// line names it.
		c := s.login(t, tr.CA)
		port := c.conn.LocalAddr().(*net.TCPAddr).Port
		c.Cmd("b", "LOGOUT")
		c.Close()
		mine := regexp.MustCompile(`stunnel-imap: info: remote=127\.0\.0\.1:` + strconv.Itoa(port) + ` `)
		count := func() (n int) {
			for _, l := range s.logLines(t) {
				if mine.MatchString(l) {
					if !connLine.MatchString(l) {
						t.Errorf("%s: the connection's line lacks fields: %q", s.Mode, l)
					}
					n++
				}
			}
			return n
		}
		deadline := time.Now().Add(20 * time.Second)
		for count() == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		if n := count(); n != 1 {
			t.Errorf("%s: %d log lines for the connection from port %d, want 1", s.Mode, n, port)
		}
		if n := s.connLines(t); n < 8 {
			t.Errorf("%s: %d connection lines after at least 8 connections", s.Mode, n)
		}
		lines := s.logLines(t)
		stamp := regexp.MustCompile(`^@4000[0-9a-f]{20} `)
		for _, l := range lines {
			if !stamp.MatchString(l) {
				t.Errorf("%s: a log line without a tai64n stamp: %q", s.Mode, l)
			}
		}
		all, _ := exec.Command("sh", "-c", "cat "+filepath.Join(s.Dir, "log", "main")+"/*").Output()
		if bytes.Contains(all, []byte("secret")) {
			t.Errorf("%s: the password is in the log", s.Mode)
		}
		for _, l := range lines {
			if connLine.MatchString(l) {
				t.Logf("%s: a connection's log line: %s", s.Mode, l)
				break
			}
		}
	}
}

// TestServiceJail looks from outside at a live connection's proxy and key
// process while the client has STARTTLS answered but no handshake done
// (the key process lives until the handshake's one signature): each
// jailed under a uid of its own from env/UIDRANGE. Then it kills a
// connection's processes mid-session and checks the service goes on
// serving, and with env/UIDRANGE empty, that both run as acct.
func TestServiceJail(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	// The key process per connection (env/SIGNER empty); the signer,
	// the default, is TestServiceSigner's.
	tr := startServices(t, serviceSpec{Name: "starttls", Mode: "imap", KeyProc: true})
	s := tr.services[0]
	u, err := user.Lookup(serviceAcct)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Dir, "env", "UIDRANGE")); string(b) != jailRange+"\n" {
		t.Fatalf("env/UIDRANGE is %q, want %q", b, jailRange)
	}
	tcpserver := s.pid(t)
	if tcpserver == 0 {
		t.Fatal("the service is not up")
	}
	jail := filepath.Join(s.Dir, "jail")
	procs := func() []int { return descendants(tcpserver) }
	c, port := startTLSPending(t, s.Addr())
	other, otherPort := startTLSPending(t, s.Addr())
	mine, theirs := findConn(t, procs, port, true), findConn(t, procs, otherPort, true)
	uids := map[int]bool{}
	for _, pid := range []int{mine.proxy, mine.key, theirs.proxy, theirs.key} {
		what := "proxy"
		if pid == mine.key || pid == theirs.key {
			what = "key process"
		}
		uids[checkJailed(t, what, pid, jail)] = true
		// env/GOMAXPROCS reaches every Go program of the connection.
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), []byte("\x00GOMAXPROCS=1\x00")) {
			t.Errorf("%s %d: environment lacks GOMAXPROCS=1 (%v)", what, pid, err)
		}
	}
	if len(uids) != 4 {
		t.Errorf("two connections' proxies and key processes: %d different uids, want 4", len(uids))
	}
	other.Close()

	// The key file is readable neither by acct nor by a uid of the range,
	// from anywhere; env/PORT is (the control).
	pem := filepath.Join(s.Dir, "ssl", "stunnel.pem")
	port0 := filepath.Join(s.Dir, "env", "PORT")
	sgc := bin(t, "setuidgid-chroot")
	for _, as := range [][]string{{"setuidgid", serviceAcct}, {sgc, "-r", jailRange}} {
		if out, err := exec.Command(as[0], append(as[1:], "cat", pem)...).CombinedOutput(); err == nil {
			t.Errorf("%s can read %s: %.40s", as, pem, out)
		}
		if out, err := exec.Command(as[0], append(as[1:], "cat", port0)...).CombinedOutput(); err != nil {
			t.Fatalf("%s cannot read env/PORT, so the key check above proves nothing: %v %s", as, err, out)
		}
		if out, err := exec.Command(as[0], append(as[1:], "ls", "-A", jail)...).CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("%s: the jail is not empty, or not readable: %v %s", as, err, out)
		}
		if out, err := exec.Command(as[0], append(as[1:], "touch", filepath.Join(jail, "x"))...).CombinedOutput(); err == nil {
			t.Errorf("%s can write into the jail: %s", as, out)
		}
	}

	// The handshake: the key process signs once and exits; the proxy
	// carries the session, still jailed.
	c.TLS(clientTLS(t, tr.CA, "localhost"))
	waitGone(t, mine.key, "key process after the handshake")
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	checkJailed(t, "proxy in session", mine.proxy, jail)
	if _, tagged := c.Cmd("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("SELECT: %q", tagged)
	}

	// kill every process of this connection mid-session
	conn := descendants(tcpserver)
	for _, pid := range conn {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := c.Rest(); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Logf("the killed session ended with %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(descendants(tcpserver)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := descendants(tcpserver); len(left) > 0 {
		t.Errorf("left after the kill: %s", describe(left))
	}
	if n := s.session(t, tr.CA); n < 3 {
		t.Errorf("after the kill: SELECT found %d messages, want at least 3", n)
	}
	if got := s.pid(t); got != tcpserver {
		t.Errorf("tcpserver changed from %d to %d: the kill took the service down", tcpserver, got)
	}

	// env/UIDRANGE empty: both processes run as acct, still jailed.
	s.writeEnv(t, "UIDRANGE", "")
	s.restart(t)
	tcpserver = s.pid(t)
	c, port = startTLSPending(t, s.Addr())
	fixed := findConn(t, procs, port, true)
	checkJailedAs(t, "proxy as "+serviceAcct, fixed.proxy, jail, u.Uid, u.Gid)
	checkJailedAs(t, "key process as "+serviceAcct, fixed.key, jail, u.Uid, u.Gid)
	c.TLS(clientTLS(t, tr.CA, "localhost"))
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN as %s: %q", serviceAcct, tagged)
	}
	c.Cmd("z", "LOGOUT")
	c.Close()
}

// TestServiceControl: svc -d stops accepting, svc -u resumes, svc -t
// restarts, a new env/PORT with svc -t moves the service, and a memory
// limit too small for a Go program is seen to fail (so the default one
// is known to be a real limit the pipeline lives under).
func TestServiceControl(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	tr := startServices(t, serviceSpec{Name: "starttls", Mode: "imap"})
	s := tr.services[0]
	s.session(t, tr.CA)
	first := s.pid(t)

	s.svc(t, "-d")
	s.waitListening(t, s.Port, false)
	if c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("svc -d: %s still accepts", s.Addr())
	}
	s.svc(t, "-u")
	s.waitUp(t)
	s.session(t, tr.CA)
	second := s.pid(t)
	if second == first || second == 0 {
		t.Errorf("svc -d, -u: pid %d then %d", first, second)
	}

	s.restart(t)
	if s.pid(t) == second {
		t.Fatalf("svc -t: tcpserver %d still running", second)
	}
	s.session(t, tr.CA)

	old := s.Port
	s.Port = freePort(t)
	s.writeEnv(t, "PORT", strconv.Itoa(s.Port))
	s.svc(t, "-t")
	s.waitUp(t)
	s.waitListening(t, old, false)
	s.session(t, tr.CA)

	// Under a limit of 100 MB (softlimit -m) a Go program cannot start:
	// imap-tls-server, the first one, runs under it too, so the service
	// does not start at all (no tcpserver, nothing listens), and the Go
	// runtime's complaint is in the log. Back to the default, it works
	// again.
	def, _ := os.ReadFile(filepath.Join(s.Dir, "env", "MEMLIMIT"))
	s.writeEnv(t, "MEMLIMIT", "100000000")
	s.svc(t, "-t")
	s.waitListening(t, s.Port, false)
	if c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second); err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if rest, _ := io.ReadAll(c); strings.HasPrefix(string(rest), "* OK") {
			t.Errorf("under softlimit -m 100000000 the pipeline still greeted: %q", rest)
		}
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(strings.Join(s.logLines(t), "\n"), "fatal error") {
		if time.Now().After(deadline) {
			t.Fatalf("under softlimit -m 100000000: no Go runtime fatal error in the log:\n%s", strings.Join(s.logLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.writeEnv(t, "MEMLIMIT", strings.TrimSpace(string(def)))
	s.restart(t)
	s.session(t, tr.CA)

	// env/MODE imap-: STARTTLS offered, plaintext LOGIN relayed.
	s.writeEnv(t, "MODE", "imap-")
	s.restart(t)
	c := dialIMAP(t, s.Addr())
	if g := c.Line(); !strings.Contains(g, "STARTTLS") {
		t.Errorf("MODE imap-: greeting %q does not offer STARTTLS", g)
	}
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Errorf("MODE imap-: plaintext LOGIN: %q", tagged)
	}
	c.Close()
	s.session(t, tr.CA) // with STARTTLS too

	// env/MODE imaps: TLS from the first byte on the same port.
	s.writeEnv(t, "MODE", "imaps")
	s.restart(t)
	s.Mode = "imaps"
	s.session(t, tr.CA)
}

// restart is svc -t, waiting for the new tcpserver to listen.
func (s *service) restart(t *testing.T) {
	t.Helper()
	pid := s.pid(t)
	s.svc(t, "-t")
	deadline := time.Now().Add(20 * time.Second)
	for p := s.pid(t); p == pid || p == 0 || !listening(s.Port); p = s.pid(t) {
		if time.Now().After(deadline) {
			t.Fatalf("svc -t: no new tcpserver listening after 20 s; log:\n%s", strings.Join(s.logLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServiceConcurrency: with CONCURRENCY 3, three sessions held open
// and ten more started: the ten wait (tcpserver -c) with no proxy
// started for them, and are all served when the three leave.
func TestServiceConcurrency(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	const concurrency = 3
	tr := startServices(t, serviceSpec{Name: "starttls", Mode: "imap", Concurrency: concurrency})
	s := tr.services[0]
	tcpserver := s.pid(t)
	jail := filepath.Join(s.Dir, "jail")
	proxies := func() int { // stunnel-imap, jailed (not stunnel-imap-key)
		n := 0
		for _, pid := range descendants(tcpserver) {
			// a setuidgid-chroot between its chroot and its exec is in
			// the jail too: only the exec'd proxy counts
			if argv := argvOf(pid); len(argv) < 2 || filepath.Base(argv[0]) != "stunnel-imap" {
				continue
			}
			if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); root == jail {
				n++
			}
		}
		return n
	}
	var held []*imapClient
	for i := 0; i < concurrency; i++ {
		held = append(held, s.login(t, tr.CA))
	}
	if n := proxies(); n != concurrency {
		t.Fatalf("%d proxies for %d sessions", n, concurrency)
	}
	// The limit reached is in the log, tcpserver's own line (log/run
	// keeps it, and drops tcpserver's per-connection lines).
	limit := fmt.Sprintf("tcpserver: status: %d/%d", concurrency, concurrency)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(strings.Join(s.logLines(t), "\n"), limit) {
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", limit, strings.Join(s.logLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, l := range s.logLines(t) {
		if strings.Contains(l, "tcpserver: pid ") || strings.Contains(l, "tcpserver: status: 1/") {
			t.Errorf("log/run kept a per-connection line of tcpserver's: %s", l)
		}
	}

	const extra = 10
	cfg := clientTLS(t, tr.CA, "localhost")
	var wg sync.WaitGroup
	var mu sync.Mutex
	greeted := 0
	errs := make(chan string, extra)
	for i := 0; i < extra; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", s.Addr(), 10*time.Second)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
			r := bufio.NewReader(c)
			g, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(g, "* OK") {
				errs <- fmt.Sprintf("greeting %q: %v", g, err)
				return
			}
			mu.Lock()
			greeted++
			mu.Unlock()
			ic := &imapClient{t: t, conn: c, r: r}
			if _, tagged := ic.cmdNoFatal("s", "STARTTLS"); !strings.HasPrefix(tagged, "s OK") {
				errs <- "STARTTLS: " + tagged
				return
			}
			tc := tls.Client(c, cfg)
			if err := tc.Handshake(); err != nil {
				errs <- "handshake: " + err.Error()
				return
			}
			ic.conn, ic.r = tc, bufio.NewReader(tc)
			for _, cmd := range []string{"LOGIN alice secret", "SELECT INBOX", "LOGOUT"} {
				if _, tagged := ic.cmdNoFatal("a", cmd); !strings.HasPrefix(tagged, "a OK") {
					errs <- cmd + ": " + tagged
					return
				}
			}
		}()
	}
	// While the three are held, the ten are accepted by the kernel only:
	// no proxy runs for them and none is greeted.
	time.Sleep(time.Second)
	mu.Lock()
	g := greeted
	mu.Unlock()
	if g != 0 || proxies() != concurrency {
		t.Errorf("with %d sessions held: %d extra clients greeted, %d proxies; want 0 and %d", concurrency, g, proxies(), concurrency)
	}
	for _, c := range held {
		c.Cmd("z", "LOGOUT")
		c.Close()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	maxSeen := 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			maxSeen = max(maxSeen, proxies())
		}
	}
	close(errs)
	for e := range errs {
		t.Errorf("an extra client failed: %s", e)
	}
	if greeted != extra {
		t.Errorf("%d of %d extra clients served", greeted, extra)
	}
	if maxSeen > concurrency {
		t.Errorf("%d proxies at once, more than CONCURRENCY %d", maxSeen, concurrency)
	}
	t.Logf("%d extra clients served, at most %d proxies at once", greeted, maxSeen)
}

// cmdNoFatal is Cmd for goroutines: errors come back as the tagged text.
func (c *imapClient) cmdNoFatal(tag, command string) ([]string, string) {
	if _, err := c.conn.Write([]byte(tag + " " + command + "\r\n")); err != nil {
		return nil, err.Error()
	}
	var untagged []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return untagged, fmt.Sprintf("%q: %v", l, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// TestServiceDemo runs imap-tls-conf/demo.sh twice on free ports: in its check
// mode (start everything, pass three real clients, stop), and as a user
// would, in the foreground, serving a client until Ctrl-C (SIGINT to its
// process group). Both times nothing may be left running or on disk.
func TestServiceDemo(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	needRoot(t)
	need(t, "svscan", "tcpserver", "dovecot", "socat", "openssl", "curl", "python3", "setsid", "pgrep")
	conf := bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "stunnel-imap-signer"} {
		bin(t, p)
	}
	demo := func(t *testing.T, env ...string) (*exec.Cmd, *lockedBuffer, chan error, int, int) {
		ports := map[int]bool{}
		for len(ports) < 4 {
			ports[freePort(t)] = true
		}
		var ps []int
		for p := range ports {
			ps = append(ps, p)
		}
		p1, p2 := ps[0], ps[1]
		cmd := exec.Command("sh", filepath.Join(repoRoot(t), "imap-tls-conf", "demo.sh"))
		cmd.Env = append(os.Environ(), "IMAPTLS_BIN="+filepath.Dir(conf),
			"DEMO_STARTTLS_PORT="+strconv.Itoa(p1), "DEMO_IMPLICIT_PORT="+strconv.Itoa(p2),
			"DEMO_POP3_PORT="+strconv.Itoa(ps[2]), "DEMO_POP3S_PORT="+strconv.Itoa(ps[3]))
		cmd.Env = append(cmd.Env, env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a terminal's foreground group of its own
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		// A signal ignored by this process would stay ignored in the demo
		// (go test run in the background ignores SIGINT), and a shell
		// cannot trap it then: catching it here for the moment makes the
		// demo start with the default disposition, as from a terminal.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT)
		err := cmd.Start()
		signal.Stop(sigs)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			select {
			case <-done:
			default:
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		})
		return cmd, out, done, p1, p2
	}
	wait := func(t *testing.T, done chan error, out *lockedBuffer) error {
		select {
		case err := <-done:
			return err
		case <-time.After(120 * time.Second): // a hang guard
			t.Fatalf("demo.sh still running after 120 s:\n%s", out.String())
			return nil
		}
	}
	nothingLeft := func(t *testing.T, out string, ports ...int) {
		if !strings.Contains(out, "nothing left running") {
			t.Errorf("demo.sh did not say it stopped everything:\n%s", out)
		}
		m := regexp.MustCompile(`tree: (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("demo.sh did not say where its tree is:\n%s", out)
		}
		if _, err := os.Stat(m[1]); err == nil {
			t.Errorf("demo.sh left %s behind", m[1])
		}
		var left []int
		for _, pid := range allPids() {
			cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			if strings.Contains(cmdline(pid), m[1]) || strings.HasPrefix(cwd, m[1]) {
				left = append(left, pid)
			}
		}
		if len(left) > 0 {
			t.Errorf("demo.sh left processes running: %s", describe(left))
		}
		for _, p := range ports {
			if listening(p) {
				t.Errorf("port %d still listening after the demo", p)
			}
		}
	}

	t.Run("check", func(t *testing.T) {
		_, out, done, p1, p2 := demo(t, "DEMO_CHECK=1")
		if err := wait(t, done, out); err != nil {
			t.Fatalf("demo.sh: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "all checks passed") {
			t.Errorf("demo.sh:\n%s", out.String())
		}
		nothingLeft(t, out.String(), p1, p2)
		t.Logf("demo.sh:\n%s", out.String())
	})

	t.Run("ctrl-c", func(t *testing.T) {
		cmd, out, done, p1, _ := demo(t)
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "Ctrl-C stops everything") {
			select {
			case err := <-done:
				t.Fatalf("demo.sh exited: %v\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("demo.sh not ready after 60 s:\n%s", out.String())
			}
		}
		// the printed curl command, as a user would paste it
		m := regexp.MustCompile(`(?m)^  (curl --ssl-reqd --cacert \S+ 'imap://alice:secret@127\.0\.0\.1:\d+/INBOX;MAILINDEX=1')$`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no curl command in:\n%s", out.String())
		}
		got := runClient(t, "curl", 60*time.Second, nil, "sh", "-c", m[1])
		if !strings.Contains(got, "Subject: seed message 1") {
			t.Errorf("%s: %q", m[1], got)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		err := wait(t, done, out)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("demo.sh after Ctrl-C: %v, want exit 130", err)
		}
		nothingLeft(t, out.String(), p1)
	})
}

// TestServiceChain: the run file imap-tls-conf writes runs
// imap-tls-server, and the chain that starts is the one on the pages;
// with a softlimit in env/PATH that adds imap-tls-server's -x (print the
// chain instead of running it), the real run file, envdir and
// imap-tls-server (with setuidgid-chroot's real range check) print it.
// A setting that would fail every connection stops the start instead,
// with one line: env/MODE implicit (now imaps), a uid range
// setuidgid-chroot refuses, no ssl/stunnel.pem.
func TestServiceChain(t *testing.T) {
	t.Parallel() // independent: own directories
	needRoot(t)
	need(t, "envdir")
	ensureAccount(t, serviceAcct)
	ensureAccount(t, serviceLogAcct)
	conf := bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key"} {
		bin(t, p)
	}
	dir := filepath.Join(t.TempDir(), "svc")
	if out, err := exec.Command(conf, serviceAcct, serviceLogAcct, dir).CombinedOutput(); err != nil {
		t.Fatalf("imap-tls-conf: %v: %s", err, out)
	}
	// The chain with a key process per connection (env/SIGNER empty),
	// which checks the key at start; the signer's is TestServiceSigner's.
	(&service{Dir: dir}).writeEnv(t, "SIGNER", "")
	fake := t.TempDir()
	os.WriteFile(filepath.Join(fake, "softlimit"), []byte("#!/bin/sh\nshift 2\nprog=$1\nshift\nexec \"$prog\" -x \"$@\"\n"), 0o755)
	path, err := os.ReadFile(filepath.Join(dir, "env", "PATH"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "env", "PATH"), []byte(fake+":"+string(path)), 0o644)
	runFile := func() (string, int) {
		t.Helper()
		cmd := exec.Command("sh", "./run")
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
		out, err := runBounded(t, cmd, 30*time.Second)
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("sh ./run: %v", err)
		}
		return string(out), 0
	}

	// Without the key: refused, nothing started.
	if out, code := runFile(); code != 111 || out != "imap-tls-server: fatal: unable to read certificate file ./ssl/stunnel.pem: file does not exist\n" {
		t.Errorf("without ssl/stunnel.pem: exit %d %q, want 111 naming it", code, out)
	}
	// with its intermediate, as a real chain: no warning at start
	key := testkit.NewCert(t, testkit.CertOptions{Intermediate: true}).PEM
	if err := os.WriteFile(filepath.Join(dir, "ssl", "stunnel.pem"), key, 0o400); err != nil {
		t.Fatal(err)
	}
	want := func(mode, ids string) string {
		return strings.Join(strings.Fields(`
tcpserver -R -H -l 0 -c 500 -v 0.0.0.0 143
makesock
  makesock -d 4
    setuidgid-chroot -/ ./jail `+ids+`
      stunnel-imap -n `+mode+` -F 3 -K 4 -H
  -makesock_connect_to
    setuidgid-chroot -/ ./jail `+ids+` -o 3:./ssl/stunnel.pem
      stunnel-imap-key -P 3
-makesock_connect_to
  socat -lf /dev/null -t 5 STDIO,shut-down TCP:127.0.0.1:10143`), "\n") + "\n"
	}
	for _, mode := range []string{"imap", "imap-", "imaps"} {
		s := &service{Dir: dir}
		s.writeEnv(t, "MODE", mode)
		if out, code := runFile(); code != 0 || out != want(mode, "-r "+jailRange) {
			t.Errorf("MODE %s: exit %d\n got %q\nwant %q", mode, code, out, want(mode, "-r "+jailRange))
		}
	}
	s := &service{Dir: dir}
	s.writeEnv(t, "UIDRANGE", "")
	if out, code := runFile(); code != 0 || out != want("imaps", "-u "+serviceAcct) {
		t.Errorf("UIDRANGE empty: exit %d\n got %q\nwant %q", code, out, want("imaps", "-u "+serviceAcct))
	}
	for _, c := range []struct {
		env, value string
		code       int
		msg        string
	}{
		{"MODE", "implicit", 100, "imap-tls-server: fatal: mode implicit is now called imaps: write imaps (in env/MODE for a service)\n"},
		{"MODE", "", 100, "imap-tls-server: fatal: mode \"\" is not imap, imap-, imaps, pop3, pop3- or pop3s\n"},
		{"UIDRANGE", "1:2:3", 100, "imap-tls-server: fatal: uid range \"1:2:3\" is not base:count\n"},
		{"UIDRANGE", "1 -u root:5", 100, "imap-tls-server: fatal: uid range \"1 -u root:5\" is not base:count\n"},
		{"UIDRANGE", "1:1", 100, "imap-tls-server: fatal: setuidgid-chroot refuses -r 1:1\n"},
		{"CONCURRENCY", "many", 100, "imap-tls-server: fatal: -c \"many\": not a number of at least 1\n"},
	} {
		s.writeEnv(t, "MODE", "imap")
		s.writeEnv(t, "UIDRANGE", jailRange)
		s.writeEnv(t, "CONCURRENCY", "40")
		s.writeEnv(t, c.env, c.value)
		out, code := runFile()
		// setuidgid-chroot's own line comes first when it refuses, the
		// usage line after a bad option
		if code != c.code || !strings.Contains(out, c.msg) || strings.Contains(out, "tcpserver") {
			t.Errorf("%s %q: exit %d %q, want %d ending %q", c.env, c.value, code, out, c.code, c.msg)
		}
	}
}

// TestServiceConfRefuses runs the real binary on bad arguments: a clear
// message and exit 100, nothing made.
func TestServiceConfRefuses(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	needRoot(t)
	ensureAccount(t, serviceAcct)
	ensureAccount(t, serviceLogAcct)
	conf := bin(t, "imap-tls-conf")
	dir := t.TempDir()
	svcDir := filepath.Join(dir, "svc")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "imap-tls-conf: usage: imap-tls-conf [ -m mode ] acct logacct dir [ ip [ port ] ]\n"},
		{[]string{"root", serviceLogAcct, svcDir}, "imap-tls-conf: fatal: acct root is root"},
		{[]string{serviceAcct, "nosuchaccount", svcDir}, "imap-tls-conf: fatal: logacct nosuchaccount does not exist"},
		{[]string{serviceAcct, serviceLogAcct, dir}, "imap-tls-conf: fatal: " + dir + " exists"},
		{[]string{serviceAcct, serviceLogAcct, svcDir, "127.0.0.256"}, "is not an IPv4 or IPv6 address"},
		{[]string{serviceAcct, serviceLogAcct, svcDir, "127.0.0.1", "99999"}, "is not a number from 1 to 65535"},
	} {
		out, err := exec.Command(conf, c.args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 100 || !strings.Contains(string(out), c.want) {
			t.Errorf("imap-tls-conf %q: %v %q, want exit 100 and %q", c.args, err, out, c.want)
		}
	}
	if _, err := os.Stat(svcDir); err == nil {
		t.Errorf("a refused imap-tls-conf made %s", svcDir)
	}
}
