package imap

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"strings"
	"testing"

	"imap-tls/stunnel-imap/line"
)

func TestLiteral(t *testing.T) {
	cases := []struct {
		line    string
		ok      bool
		size    int64
		nonSync bool
	}{
		{"a LOGIN {5}\r\n", true, 5, false},
		{"a LOGIN {5+}\r\n", true, 5, true},
		{"a APPEND x ~{12}\n", true, 12, false},
		{"a LOGIN {0}\r\n", true, 0, false},
		{"a LOGIN {007}\r\n", true, 7, false},
		{"a LOGIN {99999999999999999999999}\r\n", true, math.MaxInt64, false},
		{"a LOGIN {}\r\n", false, 0, false},
		{"a LOGIN {+}\r\n", false, 0, false},
		{"a LOGIN {5} \r\n", false, 0, false},
		{"a LOGIN {5\r\n", false, 0, false},
		{"a LOGIN 5}\r\n", false, 0, false},
		{"a LOGIN {-5}\r\n", false, 0, false},
		{"a LOGIN {5++}\r\n", false, 0, false},
		{"}", false, 0, false},
		{"", false, 0, false},
	}
	for _, tc := range cases {
		lit, ok := Literal([]byte(tc.line))
		if ok != tc.ok || lit.Size != tc.size || lit.NonSync != tc.nonSync {
			t.Errorf("Literal(%q) = %+v %v, want size %d nonsync %v ok %v", tc.line, lit, ok, tc.size, tc.nonSync, tc.ok)
		}
		if ok && tc.line[lit.Start] != '{' {
			t.Errorf("Literal(%q).Start = %d", tc.line, lit.Start)
		}
	}
	lit, _ := Literal([]byte("a LOGIN {5+}\r\n"))
	if got := string(ToSync([]byte("a LOGIN {5+}\r\n"), lit)); got != "a LOGIN {5}\r\n" {
		t.Errorf("ToSync = %q", got)
	}
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		line, tag, name, args string
		ok                    bool
	}{
		{"a STARTTLS\r\n", "a", "STARTTLS", "", true},
		{"a starttls\n", "a", "STARTTLS", "", true},
		{"a STARTTLS \r\n", "a", "STARTTLS", " ", true},
		{"A001 login alice secret\r\n", "A001", "LOGIN", " alice secret", true},
		{"a] NOOP\r\n", "a]", "NOOP", "", true},
		{"+ NOOP\r\n", "", "", "", false},
		{"* NOOP\r\n", "", "", "", false},
		{"a{1} NOOP\r\n", "", "", "", false},
		{"a\r\n", "", "", "", false},
		{" a NOOP\r\n", "", "", "", false},
		{"a  NOOP\r\n", "", "", "", false},
		{"a \"NOOP\"\r\n", "", "", "", false},
		{"\r\n", "", "", "", false},
	}
	for _, tc := range cases {
		tag, name, args, ok := ParseCommand([]byte(tc.line))
		if tag != tc.tag || name != tc.name || string(args) != tc.args || ok != tc.ok {
			t.Errorf("ParseCommand(%q) = %q %q %q %v", tc.line, tag, name, args, ok)
		}
	}
}

func TestParseResponse(t *testing.T) {
	cases := []struct {
		line string
		want Response
	}{
		{"* OK ready\r\n", Response{Kind: Untagged, Name: "OK"}},
		{"* preauth hi\r\n", Response{Kind: Untagged, Name: "PREAUTH"}},
		{"* CAPABILITY IMAP4rev1\r\n", Response{Kind: Untagged, Name: "CAPABILITY"}},
		{"* 3 EXISTS\r\n", Response{Kind: Untagged, Name: "3"}},
		{"+ go ahead\r\n", Response{Kind: Continuation}},
		{"+\r\n", Response{Kind: Continuation}},
		{"a1 OK done\r\n", Response{Kind: Tagged, Tag: "a1", Name: "OK"}},
		{"a1 no\r\n", Response{Kind: Tagged, Tag: "a1", Name: "NO"}},
		{"garbage\r\n", Response{}},
		{"a(b OK\r\n", Response{}},
	}
	for _, tc := range cases {
		if got := ParseResponse([]byte(tc.line)); got != tc.want {
			t.Errorf("ParseResponse(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func TestReadResponse(t *testing.T) {
	in := "* 1 FETCH (BODY[] {5}\r\nhe\r\no BODY[1] {3}\r\nabc)\r\na OK done\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	raw, first, err := ReadResponse(r, 1024, 1024)
	if want := "* 1 FETCH (BODY[] {5}\r\nhe\r\no BODY[1] {3}\r\nabc)\r\n"; string(raw) != want || err != nil || first != len("* 1 FETCH (BODY[] {5}\r\n") {
		t.Errorf("ReadResponse = %q %d %v", raw, first, err)
	}
	raw, _, err = ReadResponse(r, 1024, 1024)
	if string(raw) != "a OK done\r\n" || err != nil {
		t.Errorf("second = %q %v", raw, err)
	}
	r = bufio.NewReader(strings.NewReader("* 1 FETCH (BODY[] {5000}\r\n"))
	if _, _, err := ReadResponse(r, 1024, 1024); err != line.ErrTooLong {
		t.Errorf("big literal: %v", err)
	}
}

func TestRewrite(t *testing.T) {
	required := Rule{StartTLS: true, LoginDisabled: true}
	optional := Rule{StartTLS: true}
	private := Rule{}
	cases := []struct {
		line string
		rule Rule
		want string
	}{
		{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN ID] hi\r\n", required, "* OK [CAPABILITY IMAP4rev1 ID STARTTLS LOGINDISABLED] hi\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN ID] hi\r\n", optional, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN ID STARTTLS] hi\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] hi\r\n", private, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 starttls STARTTLS] hi\r\n", optional, "* OK [CAPABILITY IMAP4rev1 starttls] hi\r\n"},
		{"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n", required, "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"},
		{"* capability IMAP4rev1 STARTTLS\n", private, "* capability IMAP4rev1\n"},
		{"a OK [CAPABILITY IMAP4rev1 STARTTLS] logged in\r\n", private, "a OK [CAPABILITY IMAP4rev1] logged in\r\n"},
		{"* PREAUTH [CAPABILITY IMAP4rev2 LOGINDISABLED] x\r\n", private, "* PREAUTH [CAPABILITY IMAP4rev2] x\r\n"},
		{"* OK [CAPABILITY] x\r\n", required, "* OK [CAPABILITY STARTTLS LOGINDISABLED] x\r\n"},
		{"* OK [CAPABILITYX foo] x\r\n", required, "* OK [CAPABILITYX foo] x\r\n"},
		{"* OK [ALERT] CAPABILITY AUTH=PLAIN\r\n", required, "* OK [ALERT] CAPABILITY AUTH=PLAIN\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n", required, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"},
		{"* 1 FETCH (CAPABILITY)\r\n", required, "* 1 FETCH (CAPABILITY)\r\n"},
		{"* SEARCH CAPABILITY\r\n", required, "* SEARCH CAPABILITY\r\n"},
		{"* ok [capability IMAP4rev1 AUTH=PLAIN] hi\r\n", required, "* ok [capability IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n"},
		{"a Bad [CAPABILITY IMAP4rev1 STARTTLS] no\r\n", private, "a Bad [CAPABILITY IMAP4rev1] no\r\n"},
		{"* OKAY [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", required, "* OKAY [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"},
		{"* O [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", required, "* O [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"},
	}
	for _, tc := range cases {
		if got := string(Rewrite([]byte(tc.line), tc.rule)); got != tc.want {
			t.Errorf("Rewrite(%q, %+v) = %q, want %q", tc.line, tc.rule, got, tc.want)
		}
	}
}

// ---- fuzz targets: their seeds run in every go test ----

// readCommands splits a client stream into commands the way the proxy
// does, assuming the server takes every literal: one command is its
// first line, then for each announced literal the literal and the next
// line.
func readCommands(r *bufio.Reader) ([][]byte, error) {
	var cmds [][]byte
	for {
		var cmd []byte
		l, err := line.Read(r, line.Max)
		if err != nil {
			return cmds, err
		}
		cmd = append(cmd, l...)
		for {
			lit, ok := Literal(l)
			if !ok {
				break
			}
			if lit.Size > MaxLiteral {
				return cmds, line.ErrTooLong
			}
			b, err := ReadLiteral(r, lit.Size)
			cmd = append(cmd, b...)
			if err != nil {
				return cmds, err
			}
			if l, err = line.Read(r, line.Max); err != nil {
				return cmds, err
			}
			cmd = append(cmd, l...)
		}
		cmds = append(cmds, cmd)
	}
}

func FuzzCommandReader(f *testing.F) {
	for _, seed := range []string{
		"a STARTTLS\r\nb LOGIN alice secret\r\n",
		"a LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
		"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\nb NOOP\n",
		"a NOOP {10}\r\na STARTTLS\r\n",
		"a APPEND INBOX ~{3}\r\n\x00\x01\x02\r\n",
		"a NOOP \"b STARTTLS\"\r\n",
		"a NOOP {99999999999}\r\n",
		"\r\n\n\r",
		"a NOOP {3}\r\nab",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cmds, err := readCommands(bufio.NewReaderSize(bytes.NewReader(in), 64))
		if err == nil {
			t.Fatal("no error at the end of input")
		}
		// Commands are consecutive, whole, and every one starts a line.
		var all []byte
		for _, c := range cmds {
			if len(c) == 0 || c[len(c)-1] != '\n' {
				t.Fatalf("command %q does not end a line", c)
			}
			all = append(all, c...)
		}
		if !bytes.HasPrefix(in, all) {
			t.Fatalf("commands %q are not a prefix of the input", cmds)
		}
		for _, c := range cmds {
			tag, name, _, ok := ParseCommand(c)
			if ok && (tag == "" || name == "" || strings.ContainsAny(tag, " \r\n+") || strings.ContainsAny(name, " \r\n")) {
				t.Fatalf("ParseCommand(%q) = %q %q", c, tag, name)
			}
		}
		if err == io.EOF && len(all) == len(in) {
			return
		}
	})
}

func FuzzResponseReader(f *testing.F) {
	for _, seed := range []string{
		"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\na OK done\r\n",
		"* 1 FETCH (BODY[] {5}\r\nhello)\r\n+ go\r\n",
		"* PREAUTH hi\n* BYE bye\n",
		"* 1 FETCH (BODY[] {3}\r\nab",
		"* 1 FETCH (BODY[] {999999}\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 32)
		var all []byte
		for {
			raw, first, err := ReadResponse(r, 4096, 8192)
			if err != nil {
				if err == line.ErrTooLong {
					return
				}
				all = append(all, raw...)
				break
			}
			if first <= 0 || first > len(raw) || raw[first-1] != '\n' || raw[len(raw)-1] != '\n' {
				t.Fatalf("response %q, first %d", raw, first)
			}
			resp := ParseResponse(raw[:first])
			if resp.Kind == Tagged && resp.Tag == "" {
				t.Fatalf("tagged response without a tag: %q", raw)
			}
			all = append(all, raw...)
		}
		if !bytes.Equal(all, in) {
			t.Fatalf("responses %q lose bytes of %q", all, in)
		}
	})
}

func FuzzRewrite(f *testing.F) {
	for _, seed := range []string{
		"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
		"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\n",
		"a OK [CAPABILITY IMAP4rev1 starttls] in\n",
		"* OK [CAPABILITY] x\r\n",
		"* BYE [CAPABILITY AUTH=X\r\n",
		"* OK [CAPABILITY  a  b ] \r\n",
	} {
		f.Add([]byte(seed), true, true)
		f.Add([]byte(seed), true, false)
		f.Add([]byte(seed), false, false)
	}
	f.Fuzz(func(t *testing.T, line []byte, startTLS, loginDisabled bool) {
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1] // one line, as the proxy passes it
		}
		rule := Rule{StartTLS: startTLS, LoginDisabled: loginDisabled && startTLS}
		out := Rewrite(line, rule)
		if !bytes.Equal(Ending(out), Ending(line)) {
			t.Fatalf("line ending changed: %q -> %q", line, out)
		}
		if bytes.Count(out, []byte("\n")) != bytes.Count(line, []byte("\n")) {
			t.Fatalf("line count changed: %q -> %q", line, out)
		}
		// Idempotent: rewriting twice changes nothing more.
		if again := Rewrite(out, rule); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", line, out, again)
		}
		start, end := capList(Trim(out))
		if start < 0 {
			if !bytes.Equal(out, line) {
				t.Fatalf("a line without a capability list changed: %q -> %q", line, out)
			}
			return
		}
		caps := map[string]bool{}
		for _, c := range bytes.Fields(Trim(out)[start:end]) {
			caps[upper(c)] = true
		}
		if caps["STARTTLS"] != startTLS {
			t.Fatalf("%q with %+v: STARTTLS %v", out, rule, caps["STARTTLS"])
		}
		if !startTLS && caps["LOGINDISABLED"] {
			t.Fatalf("%q: LOGINDISABLED after TLS", out)
		}
		if rule.LoginDisabled {
			if !caps["LOGINDISABLED"] {
				t.Fatalf("%q: no LOGINDISABLED", out)
			}
			for c := range caps {
				if strings.HasPrefix(c, "AUTH=") {
					t.Fatalf("%q: %s advertised before TLS", out, c)
				}
			}
		}
	})
}
