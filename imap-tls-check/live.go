package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"imap-tls/internal/check"
	"imap-tls/internal/keyproto"
	"imap-tls/internal/portholder"
	"imap-tls/internal/suite"
	"imap-tls/log"
)

// live checks the running service, beside its files (issue 19 item 1):
// the port against the mode, the memory limit against a real start,
// svstat of the service, its log, its signer and the signer's log, the
// signer answering on its socket, the front's address bound by this
// service's tcpserver (or free, or held by something named), and the
// server's greeting through the front. What a supervised service lacks
// now is an error of exit 111; a port held by another program, 100.
func (c *checker) live() {
	c.portAgrees()
	c.memStarts("MEMLIMIT", "stunnel-imap")
	front := c.svstat("svstat", c.dir)
	if front.running {
		c.svstat("log/", c.path("log"))
	}
	if sock := c.env_["SIGNER"]; sock != "" {
		c.memStarts("SIGNERMEMLIMIT", "stunnel-imap-signer")
		c.signer(sock, c.dir, front.running)
	}
	if c.listens(front) {
		c.front()
	}
}

// portAgrees: a standard port serves its own mode (993 with imap is a
// client's TLS handshake answered by a plaintext greeting).
func (c *checker) portAgrees() {
	port, err := strconv.Atoi(c.env_["PORT"])
	m, ok := suite.ModeNamed(c.mode)
	if err != nil || !ok || port == m.Port {
		return
	}
	for _, std := range suite.Modes {
		if std.Port == port {
			c.r.warn("env/PORT", "%d is the standard port of %s (%s), not of mode %s (%s, port %d): clients that connect to %d expect %s", port, std.Name, std.Text, m.Name, m.Text, m.Port, port, policyText(std))
			return
		}
	}
}

func policyText(m suite.Mode) string {
	if m.Policy == suite.Implicit {
		return "TLS from the first byte"
	}
	return "a plaintext greeting and " + m.StartTLS
}

// memStarts runs a program under env/NAME as its run file does
// (softlimit -d), when the value passed check.MemLimit: the Go runtime's
// reservations move between versions, and a limit above the floor can
// still be one the runtime will not start under. MEMLIMIT: stunnel-imap,
// one of the chain; SIGNERMEMLIMIT: stunnel-imap-signer.
func (c *checker) memStarts(name, program string) {
	v := c.env_[name]
	if !c.want(name) || check.MemLimit(v) != nil {
		return
	}
	softlimit, err1 := check.LookPath("softlimit", c.env_["PATH"])
	prog, err2 := check.LookPath(program, c.env_["PATH"])
	if err1 != nil || err2 != nil {
		return // reported with env/PATH
	}
	cmd := exec.Command(softlimit, "-d", v, prog, "-h")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := check.ExitCode(err)
	// 100 is the program's usage: it started. A Go runtime that cannot
	// reserve its memory exits 2, or dies on a signal (-1).
	if err != nil && (code == 2 || code == -1) {
		first, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
		c.r.bad("env/"+name, "%s: %s does not start under softlimit -d %s (%s): raise it", v, program, v, log.Clip(first, 200))
	}
}

// svState is what svstat says of one service directory.
type svState struct {
	dir     string
	running bool // a supervise runs for it
	pid     int  // up: its process
	seconds int  // in that state for
	text    string
}

var svstatLine = regexp.MustCompile(`^[^:]*: (up \(pid (\d+)\) (\d+) seconds|down (\d+) seconds|supervise not running|unable to .*)`)

// svstat runs daemontools' svstat on dir and reports it under what: an
// error when supervise runs and the service is not up, a warning when
// no supervise runs (not linked yet).
func (c *checker) svstat(what, dir string) svState {
	st := svState{dir: dir}
	prog, err := check.LookPath("svstat", c.env_["PATH"])
	if err != nil {
		if prog, err = exec.LookPath("svstat"); err != nil {
			c.r.warn(what, "svstat not found: the live state is not checked")
			return st
		}
	}
	out, _ := exec.Command(prog, dir).CombinedOutput()
	text := strings.TrimSpace(string(out))
	st.text = strings.TrimPrefix(text, dir+": ")
	m := svstatLine.FindStringSubmatch(text)
	switch {
	case m == nil || strings.HasPrefix(m[1], "unable") || m[1] == "supervise not running":
		c.r.warn(what, "supervise not running: %s; its live state is not checked", c.linkFix(dir))
	case m[2] != "":
		st.running, st.pid, st.seconds = true, atoi(m[2]), atoi(m[3])
		c.r.ok(what, "%s", st.text)
	default:
		st.running, st.seconds = true, atoi(m[4])
		if refusal := runRefusal(dir); refusal != "" {
			// Held down by its own run file (signer/run's svc -o): svc -u
			// alone fails again until the file is fixed.
			c.r.failed(what, "%s: its log says: %s", st.text, refusal)
		} else {
			c.r.failed(what, "%s: svc -u %s", st.text, c.abs(dir))
		}
	}
	return st
}

// runRefusal is the last line of dir's log when it is its run file's
// refusal to start (` run: fatal: `, as signer/run writes it for a
// certificate it refuses, with the way back), its timestamp removed;
// else "".
func runRefusal(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "log", "main", "current"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(" "+last, " run: fatal: ") {
		return ""
	}
	if _, rest, ok := strings.Cut(last, " "); ok && strings.HasPrefix(last, "@") {
		last = rest
	}
	return log.Clip(last, 600)
}

// linkFix says how a service directory comes to run under supervise:
// linked into svscan's directory; within a site (its fronts, its
// signer), by the site's own svscan, once the site is linked.
func (c *checker) linkFix(dir string) string {
	if c.site == "" || filepath.Clean(dir) == filepath.Clean(c.site) {
		return "link " + c.abs(dir) + " into /etc/service (svscan's directory) to run it"
	}
	if c.siteDown {
		return "the site is not running (svstat above)"
	}
	return "the site's svscan runs it: link " + c.abs(c.site) + " into /etc/service (or svc -u it)"
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// shown is dir as the report names it: relative to the service
// directory, or the directory itself.
func (c *checker) shown(dir string) string {
	if r, err := filepath.Rel(c.dir, dir); err == nil && r != "." {
		return r
	}
	return c.dir
}

func (c *checker) abs(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}

// signer: the signer's service (the socket's directory), its log, and
// the socket, connected to as a proxy's setuidgid-chroot does: the
// signer's first frame (ready) read, then the channel closed before any
// request, which the signer ends quietly (keyproto.Gone: no log line).
// sock is env/SIGNER, relative to base (where the chain runs: the
// service directory, or a site's front).
func (c *checker) signer(sock, base string, frontRunning bool) {
	const what = "env/SIGNER"
	path := sock
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	dir := filepath.Dir(path)
	st := c.svstat(c.shown(dir)+"/", dir)
	if st.running {
		c.svstat(c.shown(dir)+"/log/", filepath.Join(dir, "log"))
	}
	notRunning := func(why string) {
		fix := "link " + c.abs(dir) + " into /etc/service (or svc -u it)"
		if c.site != "" {
			fix = c.linkFix(dir)
		}
		switch {
		case st.running && st.pid == 0 && runRefusal(dir) != "":
			fix = "its run file refused to start it (" + c.shown(dir) + "/ above: fix the file, then svc -u " + c.abs(dir) + ")"
		case st.running && st.pid == 0:
			fix = "svc -u " + c.abs(dir)
		case st.running:
			fix = "its log says: " + lastLine(filepath.Join(dir, "log", "main", "current"), "stunnel-imap-signer: ", " run: fatal: ")
		}
		if !frontRunning && !st.running {
			c.r.warn(what, "the signer is not running (%s: %s): %s", sock, why, fix)
			return
		}
		c.r.failed(what, "the signer is not running (%s: %s): %s", sock, why, fix)
	}
	switch st, why := probeSigner(path, c.timeout); st {
	case signerAnswers:
		c.r.ok(what, "the signer answers on %s", sock)
	case signerAbsent:
		notRunning(why)
	case signerNotSocket:
		c.r.bad(what, "%s is not a socket: env/SIGNER names the signer's socket (./signer/socket)", sock)
	case signerForbidden:
		c.r.warn(what, "unable to connect to %s: %s (the socket is root's: run imap-tls-check as root)", sock, why)
	default:
		c.r.failed(what, "%s accepts but does not answer: %s; its log says: %s", sock, why, lastLine(filepath.Join(dir, "log", "main", "current"), "stunnel-imap-signer: ", " run: fatal: "))
	}
}

// What probeSigner found.
const (
	signerAnswers   = iota
	signerAbsent    // no socket, or nothing accepts on it
	signerNotSocket // a file that is not a socket
	signerForbidden // not root: the socket is root's
	signerMute      // accepts, but no ready frame
)

// probeSigner connects to the signer's socket at path as a proxy's
// setuidgid-chroot does, reads the signer's first frame (ready), and
// closes the channel before any request: the signer ends such a
// session quietly (keyproto.Gone: end of file between frames), so a
// check logs nothing there. why says what went wrong.
func probeSigner(path string, timeout time.Duration) (state int, why string) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return signerAbsent, log.Reason(err)
	case fi.Mode()&os.ModeSocket == 0:
		return signerNotSocket, "not a socket"
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return signerForbidden, log.Reason(err)
		}
		return signerAbsent, log.Reason(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	var buf [keyproto.MaxFrame]byte
	rep, err := keyproto.ReadReply(conn, &buf)
	switch {
	case err != nil:
		return signerMute, log.Reason(err)
	case rep.Type != keyproto.TypeReady:
		return signerMute, fmt.Sprintf("its first frame is %q, not ready", rep.Type)
	}
	return signerAnswers, ""
}

// listens checks the front's address: bound by this service's
// tcpserver (svstat's pid, or a process it started), free, or held by
// something else, named. It reports whether the service listens there.
func (c *checker) listens(front svState) bool {
	ip, port := c.env_["IP"], atoi(c.env_["PORT"])
	if check.IP(ip) != nil || port < 1 || port > 65535 {
		return false
	}
	what := "env/PORT"
	addr := hostPort(ip, port)
	var others []portholder.Listener
	ours := 0
	// A service just started (svc -t, a restart after a failure) may
	// not listen yet: while svstat says up and nothing holds the
	// address, look again for up to -t's time, with svstat's new pid.
	for deadline := time.Now().Add(c.timeout); ; {
		ls, err := portholder.Holding(ip, port)
		if err != nil {
			c.r.failed(what, "unable to read the listening sockets: %s", log.Reason(err))
			return false
		}
		others, ours = nil, 0
		for _, l := range ls {
			mine := false
			for _, p := range l.Procs {
				if front.pid != 0 && (p.Pid == front.pid || parentOf(p.Pid) == front.pid) {
					mine = true
				}
			}
			if mine {
				ours++
			} else {
				others = append(others, l)
			}
		}
		if len(ls) > 0 || front.pid == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
		if now := svstatOf(front.dir); now.pid != 0 {
			front.pid = now.pid
		}
	}
	switch {
	case len(others) > 0:
		c.r.bad(what, "%s is held by %s: %s", addr, portholder.Describe(others), holderFix(portholder.Procs(others), port))
		return false
	case ours > 0:
		c.r.ok(what, "%s is bound by this service's tcpserver (pid %d)", addr, front.pid)
		return true
	case front.pid != 0:
		c.r.failed(what, "nothing listens on %s, though svstat says up: the log says: %s", addr, lastLine(c.path("log/main/current"), "fatal: "))
	default:
		c.r.ok(what, "%s is free", addr)
	}
	return false
}

// holderFix says what to do about a program holding the front's port.
func holderFix(ps []portholder.Proc, port int) string {
	for _, p := range ps {
		if strings.HasPrefix(p.Name, "dovecot") || strings.HasPrefix(p.Name, "imap-login") || strings.HasPrefix(p.Name, "pop3-login") {
			listener := "the inet_listener on port " + strconv.Itoa(port)
			for _, m := range suite.Modes {
				if m.Port == port {
					listener = "Dovecot's " + m.Name + " listener"
					break
				}
			}
			return "set port = 0 on " + listener + " (a conf.d drop-in), then doveadm reload"
		}
	}
	return "stop it, or give this service another env/PORT"
}

// hostPort is ip:port as the report names it; 0 is every address.
func hostPort(ip string, port int) string {
	if ip == "0" {
		return "*:" + strconv.Itoa(port)
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// dialAddress is where a client on this machine reaches the front.
func dialAddress(ip string, port int) string {
	switch ip {
	case "0", "0.0.0.0":
		ip = "127.0.0.1"
	case "::":
		ip = "::1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// parentOf is a process's parent pid from /proc, 0 if unknown.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	return atoi(f[1])
}

// front connects to the front as a client does and reads the greeting
// through the whole chain: plaintext for the STARTTLS modes, after a
// TLS handshake (not verified: the certificate is reported on its own)
// for the implicit ones; then it logs out, so that the session's line
// in the log is an ordinary one.
func (c *checker) front() {
	const what = "front"
	m, ok := suite.ModeNamed(c.mode)
	if !ok {
		return
	}
	addr := dialAddress(c.env_["IP"], atoi(c.env_["PORT"]))
	var mark int64 // the log's end before this session: its reason= is after it
	if fi, err := os.Stat(c.path("log/main/current")); err == nil {
		mark = fi.Size()
	}
	raw, err := net.DialTimeout("tcp", addr, c.timeout)
	if err != nil {
		c.r.failed(what, "unable to connect to %s: %s", addr, log.Reason(err))
		return
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(c.timeout))
	var conn net.Conn = raw
	how := "greeted"
	if m.Policy == suite.Implicit {
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{m.ALPN}})
		if err := tc.Handshake(); err != nil {
			c.r.failed(what, "%s: no TLS handshake: %s; the log says: %s", addr, log.Reason(err), c.lastSessionLine())
			return
		}
		conn, how = tc, "greeted after a TLS handshake"
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 4096)).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	good := strings.HasPrefix(line, "* OK") || strings.HasPrefix(line, "* PREAUTH")
	bye := "a LOGOUT\r\n"
	if m.Protocol == "pop3" {
		good, bye = strings.HasPrefix(line, "+OK"), "QUIT\r\n"
	}
	switch {
	case line == "":
		why := "end of file"
		if err != nil && err != io.EOF {
			why = log.Reason(err)
		}
		c.r.failed(what, "%s: no greeting through the chain (%s); the log says: %s", addr, why, c.lastSessionLine())
	case strings.HasPrefix(line, "* BYE") || strings.HasPrefix(line, "-ERR"):
		// stunnel-imap's word in place of the greeting (* BYE
		// [UNAVAILABLE], -ERR [SYS/TEMP]): the server side or the signer
		// cannot be reached; its log line, written when it closes, says
		// why (reason=); it waits for this end to close first.
		io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
		conn.Close()
		c.r.failed(what, "%s: the client is told %q in place of the greeting: the proxy cannot reach the server or the signer; the log says: %s", addr, log.Clip(line, 200), c.lastReason(mark))
	case !good:
		c.r.failed(what, "%s greeted through the chain with %q", addr, log.Clip(line, 200))
	default:
		conn.Write([]byte(bye))
		io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
		c.r.ok(what, "%s %s through the chain: %s", addr, how, log.Clip(line, 200))
	}
}

// lastSessionLine is the log's last line that says why a connection
// failed: a fatal or warning line, else the last line.
func (c *checker) lastSessionLine() string {
	time.Sleep(100 * time.Millisecond) // the chain's last words reach multilog
	return lastLine(c.path("log/main/current"), ": fatal: ", ": warning: ")
}

// reasonField is a log line's reason= (Go-quoted) and its end=.
var reasonField = regexp.MustCompile(`reason="(?:[^"\\]|\\.)*"(?: end=\S+)?`)

// lastReason is the front log's last reason= (with its end=) after
// mark (the log's size before the session; all of it when multilog has
// started a new file since), once the session's line is there (up to
// two seconds); else its last fatal or warning line.
func (c *checker) lastReason(mark int64) string {
	path := c.path("log/main/current")
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			if int64(len(b)) >= mark {
				b = b[mark:]
			}
			if all := reasonField.FindAllString(string(b), -1); len(all) > 0 {
				return log.Clip(all[len(all)-1], 600)
			}
		}
		if time.Now().After(deadline) {
			return lastLine(path, ": fatal: ", ": warning: ")
		}
	}
}

// lastLine is the last line of a multilog file that holds one of subs
// (the last line at all when none does), its timestamp removed.
func lastLine(path string, subs ...string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%s: %s)", path, log.Reason(err))
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	found := ""
	for i := len(lines) - 1; i >= 0 && found == ""; i-- {
		for _, s := range subs {
			if strings.Contains(lines[i], s) {
				found = lines[i]
				break
			}
		}
	}
	if found == "" {
		found = lines[len(lines)-1]
	}
	if _, rest, ok := strings.Cut(found, " "); ok && strings.HasPrefix(found, "@") {
		found = rest
	}
	if found == "" {
		return "(nothing yet)"
	}
	return log.Clip(found, 600)
}
