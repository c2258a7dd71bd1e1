// Command loadgen is the benchmarks' IMAP client: it runs sessions the way
// a mail client does (connect, greeting, STARTTLS and handshake or the
// implicit handshake, CAPABILITY, LOGIN, LOGOUT) against one address, at a
// given concurrency, and prints machine-readable results.
//
//	loadgen -a host:port [ -m starttls|implicit|plain ] [ -c conc ]
//	        [ -d duration | -n count ] [ -r rounds ] [ -fetch ]
//	        [ -hold n [ -holdfor duration ] [ -holdat login|select|handshake ] ]
//	        [ -T timeout ]
//
// Every session comes from its own loopback source address (127.0.x.y,
// taken in turn from a random starting point): back-to-back sessions from
// one address would otherwise meet the server's TIME_WAIT entries.
//
// Output, one line per round and a last line with the medians over the
// rounds, key=value separated by spaces:
//
//	round=1 mode=starttls c=8 sessions=412 errors=0 secs=3.00 rate=137.3 p50_ms=55.1 p99_ms=96.0 greet_p50_ms=4.2 tls_p50_ms=3.1
//	result mode=starttls c=8 rounds=3 sessions=1230 errors=0 rate=137.3 p50_ms=55.1 ...
//
// With -fetch each session also selects INBOX and fetches message 1 whole
// (BODY[]); bytes= is the literal's total and mbps= the bytes per second
// (in 10^6) of the FETCH commands, from the command to its tagged OK,
// summed over the sessions. With -hold n, n sessions are opened to after
// LOGIN (-c at a time), "held=n" is printed, and they are kept for
// -holdfor; then each sends a NOOP, which must be answered, and LOGOUT,
// and "answered=n" is printed once all have. With -holdat select they
// also select INBOX before they are held (IMAP only: a mail client's
// idle session, whose server has opened the mailbox). With -holdat
// handshake they are held just before
// the TLS handshake instead (after the greeting in STARTTLS and plain
// mode, once connected in implicit mode), where every process a
// connection starts is still there, then run to LOGOUT once released.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"imap-tls/log"
)

const synopsis = "-a host:port [ -m starttls|implicit|plain ] [ -pop3 ] [ -c conc ] [ -d duration | -n count ] [ -r rounds ] [ -fetch ] [ -hold n [ -holdfor duration ] [ -holdat login|select|handshake ] ] [ -T timeout ]"

func main() {
	l := log.New("loadgen")
	l.Exit(run(os.Args[1:], os.Stdout, l))
}

type config struct {
	addr     string
	mode     string
	pop3     bool
	conc     int
	dur      time.Duration
	count    int
	rounds   int
	fetch    bool
	hold     int
	holdFor  time.Duration
	holdAt   string
	timeout  time.Duration
	user     string
	pass     string
	spread   bool
	tls      *tls.Config
	warnings *log.Logger
}

func run(args []string, out io.Writer, l *log.Logger) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c config
	fs.StringVar(&c.addr, "a", "", "server address host:port")
	fs.StringVar(&c.mode, "m", "starttls", "starttls, implicit or plain")
	fs.BoolVar(&c.pop3, "pop3", false, "speak POP3 (STLS, USER/PASS, RETR 1, QUIT) instead of IMAP")
	fs.IntVar(&c.conc, "c", 1, "concurrent sessions")
	fs.DurationVar(&c.dur, "d", 0, "length of a round (default 3s unless -n)")
	fs.IntVar(&c.count, "n", 0, "sessions per round instead of a duration")
	fs.IntVar(&c.rounds, "r", 1, "rounds; the result line holds the medians")
	fs.BoolVar(&c.fetch, "fetch", false, "SELECT INBOX and FETCH 1 BODY[] in each session")
	fs.IntVar(&c.hold, "hold", 0, "open this many sessions, print held=N, keep them -holdfor, then NOOP (after login) and LOGOUT on each, answered=N")
	fs.DurationVar(&c.holdFor, "holdfor", 5*time.Second, "how long -hold keeps its sessions")
	fs.StringVar(&c.holdAt, "holdat", "login", "where -hold keeps its sessions: after login, after SELECT INBOX, or before the handshake")
	fs.DurationVar(&c.timeout, "T", 30*time.Second, "deadline of one session (a hang guard)")
	fs.StringVar(&c.user, "u", "bench", "LOGIN user name")
	fs.StringVar(&c.pass, "p", "secret", "LOGIN password")
	fs.BoolVar(&c.spread, "spread", true, "take each session's source address from 127.0.0.0/16")
	if err := fs.Parse(args); err != nil {
		return &log.UsageError{Synopsis: synopsis, Msg: err.Error()}
	}
	switch {
	case fs.NArg() != 0:
		return &log.UsageError{Synopsis: synopsis, Msg: "unexpected argument " + fs.Arg(0)}
	case c.addr == "":
		return &log.UsageError{Synopsis: synopsis, Msg: "no address: -a host:port"}
	case c.mode != "starttls" && c.mode != "implicit" && c.mode != "plain":
		return &log.UsageError{Synopsis: synopsis, Msg: "unknown mode " + c.mode}
	case c.holdAt != "login" && c.holdAt != "select" && c.holdAt != "handshake":
		return &log.UsageError{Synopsis: synopsis, Msg: "unknown hold point " + c.holdAt}
	case c.holdAt == "select" && c.pop3:
		return &log.UsageError{Synopsis: synopsis, Msg: "-holdat select is IMAP only"}
	case c.conc < 1 || c.rounds < 1 || c.count < 0 || c.dur < 0 || c.hold < 0 || c.timeout <= 0:
		return &log.UsageError{Synopsis: synopsis, Msg: "counts and durations must be positive"}
	case c.dur > 0 && c.count > 0:
		return &log.UsageError{Synopsis: synopsis, Msg: "-d and -n exclude each other"}
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return &log.UsageError{Synopsis: synopsis, Msg: "bad address " + c.addr}
	}
	if c.dur == 0 && c.count == 0 {
		c.dur = 3 * time.Second
	}
	c.tls = &tls.Config{
		// The peers use throwaway self-signed certificates: the
		// handshake's cost is measured, not the certificate's trust.
		InsecureSkipVerify: true,
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS12,
	}
	c.warnings = l
	src.next.Store(rand.Uint32())

	if c.hold > 0 {
		return hold(&c, out)
	}
	var results []roundResult
	for i := 1; i <= c.rounds; i++ {
		r := round(&c)
		results = append(results, r)
		fmt.Fprintf(out, "round=%d %s\n", i, r.format(&c))
	}
	m := median(results)
	fmt.Fprintf(out, "result rounds=%d %s\n", c.rounds, m.format(&c))
	if m.sessions == 0 || m.errors > 0 {
		return &log.Error{Code: log.ExitTemp, Msg: fmt.Sprintf("%d of %d sessions failed", m.errors, m.errors+m.sessions)}
	}
	return nil
}

// src hands out loopback source addresses 127.0.x.y, y in 2..254.
var src struct{ next atomic.Uint32 }

func sourceAddr() *net.TCPAddr {
	i := src.next.Add(1) % (256 * 253)
	return &net.TCPAddr{IP: net.IPv4(127, 0, byte(i/253), byte(i%253+2))}
}

// timing is what one session measured.
type timing struct {
	total, greet, handshake, fetch time.Duration
	bytes                          int64
}

type roundResult struct {
	sessions, errors int
	secs             float64
	rate             float64
	p50, p99         float64 // ms
	greetP50, tlsP50 float64 // ms
	bytes            int64
	mbps             float64
}

func (r roundResult) format(c *config) string {
	s := fmt.Sprintf("mode=%s c=%d sessions=%d errors=%d secs=%.2f rate=%.1f p50_ms=%.2f p99_ms=%.2f greet_p50_ms=%.2f tls_p50_ms=%.2f",
		c.mode, c.conc, r.sessions, r.errors, r.secs, r.rate, r.p50, r.p99, r.greetP50, r.tlsP50)
	if c.fetch {
		s += fmt.Sprintf(" bytes=%d mbps=%.1f", r.bytes, r.mbps)
	}
	return s
}

func round(c *config) roundResult {
	var (
		mu       sync.Mutex
		timings  []timing
		errs     int
		firstErr error
		left     atomic.Int64
		wg       sync.WaitGroup
	)
	left.Store(int64(c.count))
	start := time.Now()
	end := start.Add(c.dur)
	for w := 0; w < c.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []timing
			var myErrs int
			var myFirst error
			for {
				if c.count > 0 {
					if left.Add(-1) < 0 {
						break
					}
				} else if !time.Now().Before(end) {
					break
				}
				t, err := session(c, nil)
				if err != nil {
					myErrs++
					if myFirst == nil {
						myFirst = err
					}
					continue
				}
				mine = append(mine, t)
			}
			mu.Lock()
			timings = append(timings, mine...)
			errs += myErrs
			if firstErr == nil {
				firstErr = myFirst
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if firstErr != nil {
		c.warnings.Warning("%d sessions failed, the first: %s", errs, log.Reason(firstErr))
	}
	r := roundResult{sessions: len(timings), errors: errs, secs: secs}
	if secs > 0 {
		r.rate = float64(len(timings)) / secs
	}
	pick := func(f func(timing) time.Duration, q float64) float64 {
		if len(timings) == 0 {
			return 0
		}
		v := make([]time.Duration, len(timings))
		for i, t := range timings {
			v[i] = f(t)
		}
		slices.Sort(v)
		return ms(v[quantileIndex(len(v), q)])
	}
	r.p50 = pick(func(t timing) time.Duration { return t.total }, 0.50)
	r.p99 = pick(func(t timing) time.Duration { return t.total }, 0.99)
	r.greetP50 = pick(func(t timing) time.Duration { return t.greet }, 0.50)
	r.tlsP50 = pick(func(t timing) time.Duration { return t.handshake }, 0.50)
	var fetchTime time.Duration
	for _, t := range timings {
		r.bytes += t.bytes
		fetchTime += t.fetch
	}
	if fetchTime > 0 {
		r.mbps = float64(r.bytes) / fetchTime.Seconds() / 1e6
	}
	return r
}

// quantileIndex is the nearest-rank index of quantile q in n sorted values.
func quantileIndex(n int, q float64) int {
	i := int(float64(n)*q+0.999999) - 1
	return max(0, min(n-1, i))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median takes, figure by figure, the median over the rounds; sessions
// and errors are summed.
func median(rs []roundResult) roundResult {
	var m roundResult
	f := func(get func(roundResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	for _, r := range rs {
		m.sessions += r.sessions
		m.errors += r.errors
		m.bytes += r.bytes
		m.secs += r.secs
	}
	m.rate = f(func(r roundResult) float64 { return r.rate })
	m.p50 = f(func(r roundResult) float64 { return r.p50 })
	m.p99 = f(func(r roundResult) float64 { return r.p99 })
	m.greetP50 = f(func(r roundResult) float64 { return r.greetP50 })
	m.tlsP50 = f(func(r roundResult) float64 { return r.tlsP50 })
	m.mbps = f(func(r roundResult) float64 { return r.mbps })
	return m
}

// hold opens c.hold sessions, announces them, keeps them, then logs out.
func hold(c *config, out io.Writer) error {
	held := make(chan error, c.hold)
	release := make(chan struct{})
	done := make(chan error, c.hold)
	// Open them -c at a time: a burst of SYNs beyond the server's listen
	// backlog would be refused.
	opening := make(chan struct{}, c.conc)
	for i := 0; i < c.hold; i++ {
		opening <- struct{}{}
		go func() {
			_, err := session(c, &holder{held: held, release: release, opening: opening})
			done <- err
		}()
	}
	for i := 0; i < c.hold; i++ {
		if err := <-held; err != nil {
			close(release)
			return log.Temp(err, "hold session")
		}
	}
	fmt.Fprintf(out, "held=%d\n", c.hold)
	if f, ok := out.(*os.File); ok {
		f.Sync()
	}
	time.Sleep(c.holdFor)
	close(release)
	for i := 0; i < c.hold; i++ {
		if err := <-done; err != nil {
			return log.Temp(err, "log out a held session")
		}
	}
	if c.holdAt != "handshake" {
		fmt.Fprintf(out, "answered=%d\n", c.hold) // NOOP, then LOGOUT, on every one
	}
	return nil
}

// holder pauses a session after LOGIN (or after SELECT INBOX), or before
// the handshake.
type holder struct {
	held    chan<- error
	release <-chan struct{}
	opening <-chan struct{} // a slot to free once LOGIN is done or failed
}

// session runs one session; h, when not nil, is told once LOGIN is done
// (or the handshake is due, with -holdat handshake), or once the session
// has failed, and the session waits for its release.
func session(c *config, h *holder) (t timing, err error) {
	announced := false
	pause := func(at string) {
		if h == nil || at != c.holdAt {
			return
		}
		announced = true
		<-h.opening
		h.held <- nil
		<-h.release
	}
	if h != nil {
		defer func() {
			if !announced {
				if err == nil {
					err = errors.New("session ended before LOGIN")
				}
				<-h.opening
				h.held <- err
			}
		}()
	}
	start := time.Now()
	deadline := start.Add(c.timeout)
	if h != nil {
		deadline = deadline.Add(c.holdFor)
	}
	d := net.Dialer{Deadline: deadline}
	if c.spread {
		if host, _, _ := net.SplitHostPort(c.addr); strings.HasPrefix(host, "127.") {
			d.LocalAddr = sourceAddr()
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	raw, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return t, err
	}
	defer raw.Close()
	raw.SetDeadline(deadline)
	var conn net.Conn = raw
	// handshake puts TLS on raw, timed, for implicit TLS and after STARTTLS.
	handshake := func() error {
		hs := time.Now()
		tc := tls.Client(raw, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		t.handshake = time.Since(hs)
		conn = tc
		return nil
	}
	if c.mode == "implicit" {
		pause("handshake")
		if err := handshake(); err != nil {
			return t, err
		}
	}
	r := bufio.NewReaderSize(conn, 32<<10)
	var p dialect = imapDialect{}
	if c.pop3 {
		p = pop3Dialect{}
	}
	line, err := readLine(r)
	if err != nil {
		return t, fmt.Errorf("read greeting: %w", err)
	}
	if !p.greetingOK(line) {
		return t, fmt.Errorf("greeting is not OK: %q", trim(line))
	}
	t.greet = time.Since(start)
	if c.mode != "implicit" {
		pause("handshake")
	}
	if c.mode == "starttls" {
		if err := p.starttls(conn, r); err != nil {
			return t, err
		}
		if r.Buffered() > 0 {
			return t, errors.New("STARTTLS: server sent data after its answer (RFC 9051 section 6.2.1, RFC 2595 section 4)")
		}
		if err := handshake(); err != nil {
			return t, err
		}
		r.Reset(conn)
	}
	if err := p.login(conn, r, c.user, c.pass); err != nil {
		return t, err
	}
	if c.fetch || h != nil && c.holdAt == "select" {
		if err := p.open(conn, r); err != nil {
			return t, err
		}
	}
	if c.fetch {
		fs := time.Now()
		n, err := p.fetch(conn, r)
		if err != nil {
			return t, err
		}
		t.fetch = time.Since(fs)
		t.bytes = n
		if n == 0 {
			return t, errors.New("fetch: no message")
		}
	}
	pause("login")
	pause("select")
	if h != nil && c.holdAt != "handshake" {
		// Held all that time: the session must still answer.
		if err := p.noop(conn, r); err != nil {
			return t, fmt.Errorf("after the hold: %w", err)
		}
	}
	if err := p.logout(conn, r); err != nil {
		return t, err
	}
	t.total = time.Since(start)
	return t, nil
}

// readLine reads one line, without its CRLF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("response line too long")
	}
	if err == io.EOF {
		if len(line) > 0 {
			err = io.ErrUnexpectedEOF
		} else {
			err = errors.New("connection closed by server")
		}
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readTagged reads responses up to the one tagged tag, which must be OK;
// literals in untagged responses are read and discarded, and their total
// size is returned.
func readTagged(r *bufio.Reader, tag string) (int64, error) {
	var literals int64
	for {
		line, err := readLine(r)
		if err != nil {
			return literals, err
		}
		for {
			n, ok := literalSize(line)
			if !ok {
				break
			}
			if _, err := r.Discard(int(n)); err != nil {
				return literals, fmt.Errorf("read literal: %w", err)
			}
			literals += n
			if line, err = readLine(r); err != nil {
				return literals, err
			}
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			status := line[len(tag)+1:]
			if !bytes.HasPrefix(status, []byte("OK")) {
				return literals, fmt.Errorf("server said %q", trim(status))
			}
			return literals, nil
		}
		if bytes.HasPrefix(line, []byte("* BYE")) && tag != "a9" {
			return literals, fmt.Errorf("server said %q", trim(line))
		}
	}
}

// literalSize finds "{n}" at the end of a response line.
func literalSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line[i+1:len(line)-1]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

func trim(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}
