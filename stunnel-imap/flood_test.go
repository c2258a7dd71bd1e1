package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// A client must not be able to flood the log: these check the lines one
// connection can make the proxy write, whatever it sends.

// logLines splits the captured log and fails on a line over PIPE_BUF.
func logLines(t *testing.T, h *harness) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(h.logs.String(), "\n"), "\n")
	for _, l := range lines {
		if len(l)+1 > 4096 {
			t.Errorf("a log line of %d bytes (over 4096): %.200q...", len(l)+1, l)
		}
	}
	return lines
}

// 50,000 refused commands on one connection leave one warning and a
// count, not 50,000 lines.
func TestFloodRefusedCommands(t *testing.T) {
	const n = 50000
	h := start(t, setup{mode: modeRequired})
	h.run([]step{s(serverGreeting), C(greetRequired)})
	go func() {
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			b.WriteString("a LOGIN alice secret\r\n")
		}
		h.client.SetWriteDeadline(time.Now().Add(guard))
		h.client.Write(b.Bytes())
		closeWrite(h.client)
	}()
	h.client.SetReadDeadline(time.Now().Add(guard))
	got, _ := io.ReadAll(h.client)
	if want := strings.Repeat("a"+privacy, n); string(got) != want {
		t.Errorf("the client got %d bytes, want %d refusals (%d bytes)", len(got), n, len(want))
	}
	sess := h.ended("client-eof", "warning: client sent LOGIN before STARTTLS: refused")
	lines := logLines(t, h)
	if len(lines) != 2 {
		t.Errorf("%d log lines, want the warning once and the session's line:\n%.2000s", len(lines), h.logs)
	}
	if sess.warnings.count != n || !strings.Contains(lines[len(lines)-1], " warnings=50000 ") {
		t.Errorf("warnings=%d, last line %q: want the count 50000 in it", sess.warnings.count, lines[len(lines)-1])
	}
}

// A 60 KB server name leaves no line over 4096 bytes, and the name is
// cut, not dropped.
func TestFloodLongSNI(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	name := strings.Repeat("a", 60000)
	tc := tls.Client(h.rawCli, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(guard))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake with a long server name: %v", err)
	}
	h.client = tc
	h.run([]step{s("* OK hi\r\n"), C("* OK hi\r\n"), clientHalfClose(), serverEnds()})
	h.ended("client-eof")
	lines := logLines(t, h)
	if !strings.Contains(lines[len(lines)-1], " sni=aaaa") {
		t.Errorf("the log line lost the server name: %.300q", lines[len(lines)-1])
	}
}

// A ClientHello with 32,000 cipher suites, none of them ours, leaves a
// bounded warning, not the 156 KB list crypto/tls puts in its error.
func TestFloodClientHelloSuites(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	suites := make([]uint16, 32000)
	for i := range suites {
		suites[i] = 0x0a00 + uint16(i%0x500) // none that crypto/tls implements
	}
	h.rawCli.SetWriteDeadline(time.Now().Add(guard))
	if _, err := h.rawCli.Write(testkit.ClientHello(suites)); err != nil {
		t.Fatalf("unable to send the ClientHello: %v", err)
	}
	h.run([]step{clientEnds()})
	h.ended("handshake-failed", "warning: unable to complete tls handshake: tls: no cipher suite supported by both client and server")
	logLines(t, h)
	if len(h.logs.String()) > 1024 {
		t.Errorf("%d bytes of log for one bad ClientHello, want under 1024:\n%.600s", len(h.logs.String()), h.logs)
	}

}
