package tests

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"imap-tls/internal/testkit"

	"imap-tls/tests/harness"
)

// TestServiceLogFlood: many connections at once, each trying to flood or
// splice the log, through a service imap-tls-conf made, under svscan,
// with every program's stderr in one pipe to multilog. Every line of
// multilog's output parses (no line spliced into another), none is over
// 4096 bytes, a client's 2,000 refused commands leave one warning and a
// count, and a 60 KB server name or a 32,000-suite ClientHello leaves a
// bounded line.
func TestServiceLogFlood(t *testing.T) {
	const (
		floods  = 20   // connections sending refused commands
		refused = 2000 // refused commands each
		snis    = 10   // connections with a 60 KB server name
		hellos  = 10   // connections with a 32,000-suite ClientHello
	)
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "imap", Mode: "imap", Concurrency: 100})
	s := tr.Services[0]
	var wg sync.WaitGroup
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		r := bufio.NewReader(c)
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Errorf("greeting %q %v", l, err)
		}
		return c, r
	}
	starttls := func(c net.Conn, r *bufio.Reader) bool {
		io.WriteString(c, "a STARTTLS\r\n")
		l, err := r.ReadString('\n')
		return err == nil && strings.HasPrefix(l, "a OK")
	}
	for i := 0; i < floods; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := dial()
			if c == nil {
				return
			}
			defer c.Close()
			go func() {
				var b strings.Builder
				for j := 0; j < refused; j++ {
					b.WriteString("a LOGIN alice secret\r\n")
				}
				io.WriteString(c, b.String()+"b LOGOUT\r\n")
			}()
			io.Copy(io.Discard, r)
		}()
	}
	for i := 0; i < snis; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := dial()
			if c == nil || !starttls(c, r) {
				t.Error("STARTTLS failed")
				return
			}
			tc := tls.Client(c, &tls.Config{ServerName: strings.Repeat("x", 60000), InsecureSkipVerify: true})
			tc.Handshake()
			tc.Close()
		}()
	}
	for i := 0; i < hellos; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := dial()
			if c == nil || !starttls(c, r) {
				t.Error("STARTTLS failed")
				return
			}
			suites := make([]uint16, 32000)
			for j := range suites {
				suites[j] = 0x0a00 + uint16(j%0x500)
			}
			c.Write(testkit.ClientHello(suites))
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
	wg.Wait()
	s.WaitConnLines(t, floods+snis+hellos)

	ours := regexp.MustCompile(`^@[0-9a-f]{24} [a-z0-9-]+: (info|warning|fatal|usage): \S`)
	socat := regexp.MustCompile(`^@[0-9a-f]{24} \d{4}/\d\d/\d\d \d\d:\d\d:\d\d socat\[\d+\] [EWNID] `)
	var warnings, counted int
	for _, l := range s.LogLines(t) {
		if len(l)+1 > 4096+26 { // multilog's tai64n stamp and space come on top
			t.Errorf("a log line of %d bytes: %.200q...", len(l)+1, l)
		}
		if !ours.MatchString(l) && !socat.MatchString(l) {
			t.Errorf("a log line that does not parse (spliced?): %.300q", l)
		}
		if strings.Contains(l, "warning: client sent LOGIN before STARTTLS: refused") {
			warnings++
		}
		if strings.Contains(l, " warnings=2000 ") {
			counted++
		}
		if strings.Count(l, "stunnel-imap") > 1 {
			t.Errorf("two lines in one: %.300q", l)
		}
	}
	if warnings != floods || counted != floods {
		t.Errorf("%d refusal warnings and %d lines counting 2000, want %d of each (one per flooding connection)", warnings, counted, floods)
	}
	if n := len(s.LogLines(t)); n > 4*(floods+snis+hellos) {
		t.Errorf("%d log lines for %d connections", n, floods+snis+hellos)
	}
}
