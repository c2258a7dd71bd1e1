// Memory: a client cannot push a proxy past its bound (issue 19 item
// 5). Through the real chain, under the limits the service ships
// (env/MEMLIMIT, env/SIGNERMEMLIMIT: softlimit -d, and GOMEMLIMIT from
// imap-tls-server -M), a client sends the largest things the proxy
// accepts before login (lines of line.Max, literals of imap.MaxLiteral,
// thousands of pipelined commands), one byte more of each, and floods
// both ways after login; the proxy's resident size stays below what
// the limit leaves it, each session works or ends with its documented
// end= value, and no Go runtime says "out of memory". The signer holds
// its most proxies at once under its own limit.
package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"imap-tls/internal/check"
	"imap-tls/service"
	"imap-tls/tests/harness"
)

func TestMemory(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "mem", Mode: "imap"})
	s := tr.Services[0]
	memLimit := envValue(t, s.Dir, "MEMLIMIT")
	if memLimit != service.Default("MEMLIMIT") {
		t.Fatalf("env/MEMLIMIT %s, want the shipped default %s", memLimit, service.Default("MEMLIMIT"))
	}
	limit, _ := strconv.ParseInt(memLimit, 10, 64)
	// What a proxy may really use: the limit above what a Go program
	// maps at start and never touches (GOMEMLIMIT, the same number).
	headroom := limit - check.MinMemLimit
	cfg := harness.ClientTLS(t, tr.CA, "localhost")

	// session: a client after STARTTLS, and its proxy, measured.
	type session struct {
		c    *harness.IMAPClient
		pid  int
		peak *peakRSS
	}
	// start connects; tls: STARTTLS first.
	start := func(t *testing.T, tls bool) *session {
		t.Helper()
		before := descendants(s.Pid(t), "stunnel-imap")
		c := harness.DialIMAP(t, s.Addr())
		c.Conn.SetDeadline(time.Now().Add(120 * time.Second))
		if g := c.Line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting: %q", g)
		}
		pid := newDescendant(t, s.Pid(t), "stunnel-imap", before)
		// The bound the proxy runs under, and the collector's.
		if got := procLimit(t, pid, "Max data size"); got != memLimit {
			t.Errorf("the proxy's data limit is %s, want env/MEMLIMIT %s", got, memLimit)
		}
		if got := procEnv(t, pid, "GOMEMLIMIT"); got != check.GoMemLimit(memLimit) {
			t.Errorf("the proxy's GOMEMLIMIT is %q, want %s", got, check.GoMemLimit(memLimit))
		}
		if tls {
			c.StartTLS("s", cfg)
		}
		return &session{c: c, pid: pid, peak: watchRSS(pid)}
	}
	// done: the proxy's peak, checked against what the limit leaves it.
	done := func(t *testing.T, ss *session, what string) {
		t.Helper()
		rss, pss := ss.peak.stop()
		t.Logf("%s: the proxy's peak: rss %d kB, pss %d kB (the limit leaves %d kB)", what, rss>>10, pss>>10, headroom>>10)
		if rss == 0 || rss >= headroom || pss >= headroom {
			t.Errorf("%s: the proxy's peak rss %d, pss %d bytes; want below %d (env/MEMLIMIT %s less check.MinMemLimit)", what, rss, pss, headroom, memLimit)
		}
	}
	ends := map[string]int{} // end= values the log must show, at least this many each

	t.Run("lines", func(t *testing.T) {
		// Lines of line.Max bytes (CRLF included), the longest the
		// proxy takes before login: LOGIN before STARTTLS, which the
		// proxy reads whole and refuses itself (Dovecot's login
		// process would end the session at the first: it has a shorter
		// limit of its own), a hundred times.
		ss := start(t, false)
		long := "LOGIN " + strings.Repeat("x", 64<<10-len("l000 LOGIN \r\n")) + "\r\n"
		answered := 0
		for ; answered < 100; answered++ {
			tag := fmt.Sprintf("l%03d", answered)
			if _, err := io.WriteString(ss.c.Conn, tag+" "+long); err != nil {
				break
			}
			if !untilTagged(ss.c, tag) {
				break
			}
		}
		if answered != 100 {
			t.Errorf("%d of 100 lines of 64 KiB answered", answered)
		}
		done(t, ss, fmt.Sprintf("lines of 64 KiB (%d answered)", answered))
		ss.c.Close()

		// One byte more: the proxy ends it, with a BYE.
		ss = start(t, true)
		ss.c.Send("m NOOP " + strings.Repeat("x", 64<<10-len("m NOOP \r\n")+1) + "\r\n")
		if rest := ss.c.RestClosed(); !strings.Contains(rest, "* BYE Command line too long") {
			t.Errorf("a line of 64 KiB + 1: %q, want * BYE Command line too long", clip(rest))
		}
		done(t, ss, "a line over 64 KiB")
		ends["line-too-long"]++
	})

	t.Run("literals", func(t *testing.T) {
		// Literals of imap.MaxLiteral bytes, the largest the proxy
		// takes before login, one after the other: LOGIN before
		// STARTTLS with non-synchronizing literals (RFC 7888), which the
		// proxy refuses, then reads whole and drops (Dovecot's login
		// process refuses a literal this large at once).
		ss := start(t, false)
		user := strings.Repeat("u", 64<<10)
		taken := 0
		for ; taken < 100; taken++ {
			tag := fmt.Sprintf("n%02d", taken)
			if _, err := io.WriteString(ss.c.Conn, tag+" LOGIN {65536+}\r\n"+user+" {6+}\r\nsecret\r\n"); err != nil {
				break
			}
			if !untilTagged(ss.c, tag) {
				break
			}
		}
		if taken != 100 {
			t.Errorf("%d of 100 commands with a literal of 64 KiB answered", taken)
		}
		// And the session goes on: STARTTLS, then a login.
		ss.c.StartTLS("s", cfg)
		if _, tagged := ss.c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
			t.Errorf("LOGIN after the literals: %q", tagged)
		}
		done(t, ss, fmt.Sprintf("literals of 64 KiB (%d answered)", taken))
		ss.c.Close()

		// One byte more: the proxy ends it, with a BYE.
		ss = start(t, true)
		ss.c.Send("o LOGIN {65537}\r\n")
		if rest := ss.c.RestClosed(); !strings.Contains(rest, "* BYE Literal too large") {
			t.Errorf("a literal of 64 KiB + 1: %q, want * BYE Literal too large", clip(rest))
		}
		done(t, ss, "a literal over 64 KiB")
		ends["literal-too-large"]++
	})

	t.Run("commands", func(t *testing.T) {
		// Thousands of commands in one write before login: the proxy
		// reads one at a time (the rest wait in the kernel), and every
		// one is answered.
		ss := start(t, true)
		var b strings.Builder
		const n = 3000
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "p%d CAPABILITY\r\n", i)
		}
		go io.WriteString(ss.c.Conn, b.String())
		for i := 0; i < n; i++ {
			if !untilTagged(ss.c, "p"+strconv.Itoa(i)) {
				t.Fatalf("command %d of %d: no answer", i, n)
			}
		}
		if _, tagged := ss.c.Cmd("q", "LOGIN alice secret"); !strings.HasPrefix(tagged, "q OK") {
			t.Fatalf("LOGIN after %d commands: %q", n, tagged)
		}
		ss.c.Cmd("r", "LOGOUT")
		done(t, ss, fmt.Sprintf("%d pipelined commands", n))
		ss.c.Close()
	})

	t.Run("flood", func(t *testing.T) {
		// After login the relay copies both ways: 32 MB up (one APPEND),
		// the same 32 MB down (FETCH), and a stream of commands sent
		// without reading their answers until the end.
		ss := start(t, true)
		if _, tagged := ss.c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
			t.Fatalf("LOGIN: %q", tagged)
		}
		const size = 32 << 20
		ss.c.Send(fmt.Sprintf("b APPEND INBOX {%d}\r\n", size))
		if l := ss.c.Line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("APPEND: %q", l)
		}
		line := strings.Repeat("y", 998) + "\r\n"
		chunk := strings.Repeat(line, 64)
		for sent := 0; sent < size; {
			part := chunk[:min(len(chunk), size-sent)]
			io.WriteString(ss.c.Conn, part)
			sent += len(part)
		}
		ss.c.Send("\r\n")
		_, tagged := ss.c.Until("b")
		if !strings.HasPrefix(tagged, "b OK") {
			t.Fatalf("APPEND of %d bytes: %q", size, tagged)
		}
		untagged, tagged := ss.c.Cmd("c", "SELECT INBOX")
		if !strings.HasPrefix(tagged, "c OK") {
			t.Fatalf("SELECT: %q", tagged)
		}
		last := ""
		for _, l := range untagged {
			if m := regexp.MustCompile(`^\* (\d+) EXISTS`).FindStringSubmatch(l); m != nil {
				last = m[1]
			}
		}
		ss.c.Send("d FETCH " + last + " BODY.PEEK[]\r\n")
		got := 0
		for {
			l := ss.c.Line()
			if m := regexp.MustCompile(`\{(\d+)\}$`).FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[1])
				k, err := io.CopyN(io.Discard, ss.c.Reader, int64(n))
				if err != nil {
					t.Fatalf("FETCH: %d of %d bytes: %v", k, n, err)
				}
				got += int(k)
				continue
			}
			if strings.HasPrefix(l, "d ") {
				if !strings.HasPrefix(l, "d OK") {
					t.Fatalf("FETCH: %q", l)
				}
				break
			}
		}
		if got != size {
			t.Errorf("FETCH gave %d bytes, want %d", got, size)
		}
		// Commands in a stream, written in one go while the answers
		// are read.
		const n = 20000
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "e%d NOOP\r\n", i)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.WriteString(ss.c.Conn, b.String())
		}()
		if !untilTagged(ss.c, "e"+strconv.Itoa(n-1)) {
			t.Errorf("the last of %d NOOPs: no answer", n)
		}
		wg.Wait()
		ss.c.Cmd("f", "LOGOUT")
		done(t, ss, "32 MB each way and a stream of commands after login")
		ss.c.Close()
	})

	t.Run("signer", func(t *testing.T) {
		// The signer is one process for every proxy: with close to its
		// most channels held (stunnel-imap-signer -c, 4096), under its
		// own limit, a session still works, and nothing died.
		sigLimit := envValue(t, s.Dir, "SIGNERMEMLIMIT")
		if sigLimit != service.Default("SIGNERMEMLIMIT") {
			t.Fatalf("env/SIGNERMEMLIMIT %s, want the shipped default %s", sigLimit, service.Default("SIGNERMEMLIMIT"))
		}
		pid := svPid(t, filepath.Join(s.Dir, "signer"))
		if got := procLimit(t, pid, "Max data size"); got != sigLimit {
			t.Errorf("the signer's data limit is %s, want env/SIGNERMEMLIMIT %s", got, sigLimit)
		}
		if got := procEnv(t, pid, "GOMEMLIMIT"); got != check.GoMemLimit(sigLimit) {
			t.Errorf("the signer's GOMEMLIMIT is %q, want %s", got, check.GoMemLimit(sigLimit))
		}
		peak := watchRSS(pid)
		const held = 4000
		var conns []net.Conn
		for i := 0; i < held; i++ {
			c, err := net.Dial("unix", filepath.Join(s.Dir, "signer", "socket"))
			if err != nil {
				t.Fatalf("channel %d to the signer: %v", i, err)
			}
			conns = append(conns, c)
		}
		// Each channel's ready frame: the signer serves all of them.
		for i, c := range conns {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != nil {
				t.Fatalf("channel %d: no ready frame: %v", i, err)
			}
		}
		if n := s.Session(t, tr.CA); n < 0 {
			t.Fatal("no session")
		}
		rss, pss := peak.stop()
		sigHeadroom, _ := strconv.ParseInt(check.GoMemLimit(sigLimit), 10, 64)
		t.Logf("the signer with %d channels: peak rss %d kB, pss %d kB (the limit leaves %d kB)", held, rss>>10, pss>>10, sigHeadroom>>10)
		if rss >= sigHeadroom {
			t.Errorf("the signer's peak rss %d with %d channels; want below %d", rss, held, sigHeadroom)
		}
		for _, c := range conns {
			c.Close()
		}
		if svPid(t, filepath.Join(s.Dir, "signer")) != pid {
			t.Errorf("the signer restarted under %d channels", held)
		}
	})

	// The log: each session's line, the documented ends, and no Go
	// runtime that ran out of memory, in the front's log or the signer's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := strings.Join(s.LogLines(t), "\n")
		missing := ""
		for end, n := range ends {
			if strings.Count(log, " end="+end) < n {
				missing = end
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no end=%s in the log:\n%s", missing, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	signerLog, _ := os.ReadFile(filepath.Join(s.Dir, "signer", "log", "main", "current"))
	for name, text := range map[string]string{"log": strings.Join(s.LogLines(t), "\n"), "signer's log": string(signerLog)} {
		for _, bad := range []string{"out of memory", "fatal error:", "runtime: cannot"} {
			if strings.Contains(text, bad) {
				t.Errorf("the %s says %q:\n%s", name, bad, text)
			}
		}
	}
}

// untilTagged reads the client's lines to the one tagged tag; false at
// the end of the connection (the server or the proxy ended it).
func untilTagged(c *harness.IMAPClient, tag string) bool {
	for {
		l, err := c.Reader.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.HasPrefix(l, tag+" ") {
			return true
		}
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// envValue is the one line of the service directory's env/NAME.
func envValue(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "env", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// svPid is the pid svstat gives for a service directory.
func svPid(t *testing.T, dir string) int {
	t.Helper()
	pid, err := harness.SvstatPid(dir)
	if err != nil || pid == 0 {
		t.Fatalf("svstat %s: not up (%v)", dir, err)
	}
	return pid
}

// descendants are the live processes under pid (any depth,
// harness.Descendants) named comm.
func descendants(pid int, comm string) map[int]bool {
	out := map[int]bool{}
	for _, p := range harness.Descendants(pid) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/comm"); strings.TrimSpace(string(b)) == comm {
			out[p] = true
		}
	}
	return out
}

// newDescendant waits for a process named comm under pid that is not in
// before.
func newDescendant(t *testing.T, pid int, comm string, before map[int]bool) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for p := range descendants(pid, comm) {
			if !before[p] {
				return p
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no new %s under pid %d", comm, pid)
	return 0
}

// procLimit is a limit's soft value in /proc/PID/limits.
func procLimit(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			return strings.Fields(l[len(name):])[0]
		}
	}
	t.Fatalf("/proc/%d/limits: no %s", pid, name)
	return ""
}

// procEnv is a variable of /proc/PID/environ; "" if it has none.
func procEnv(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// peakRSS samples a process's resident and proportional sizes until
// stop; VmHWM, the kernel's own peak, is read last.
type peakRSS struct {
	pid      int
	quit     chan struct{}
	done     chan struct{}
	rss, pss int64
}

func watchRSS(pid int) *peakRSS {
	p := &peakRSS{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			p.sample()
			select {
			case <-p.quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *peakRSS) sample() {
	if v := procKB(fmt.Sprintf("/proc/%d/status", p.pid), "VmHWM:"); v > p.rss {
		p.rss = v
	}
	if v := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p.pid), "Pss:"); v > p.pss {
		p.pss = v
	}
}

// stop ends the sampling and returns the peaks, in bytes.
func (p *peakRSS) stop() (rss, pss int64) {
	close(p.quit)
	<-p.done
	p.sample()
	return p.rss, p.pss
}

// procKB is the "Name: N kB" field of a /proc file, in bytes; 0 if the
// process is gone.
func procKB(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}
