package log

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// oneLine is a whole message escaped, as a line holds it uncut.
func oneLine(s string) string {
	var b strings.Builder
	writeEscaped(&b, s, escapedLen(s))
	return b.String()
}

// writes records every Write call on its own.
type writes []string

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, string(p))
	return len(p), nil
}

// logged logs msg as a warning of prog and returns the one Write it made.
func logged(t *testing.T, prog, msg string) string {
	t.Helper()
	var w writes
	NewTo(prog, &w, func(int) {}).Warning("%s", msg)
	if len(w) != 1 {
		t.Fatalf("%d writes for one line", len(w))
	}
	return w[0]
}

var markerRE = regexp.MustCompile(`\.\.\. \[cut ([0-9]+) bytes\]\n$`)

// split checks the shape of a line that was cut and returns the kept part
// of the message and the number the marker gives.
func split(t *testing.T, prog, line string) (kept string, cut int) {
	t.Helper()
	if len(line) > MaxLine {
		t.Fatalf("line of %d bytes, more than %d", len(line), MaxLine)
	}
	head := prog + ": warning: "
	if !strings.HasPrefix(line, head) {
		t.Fatalf("line %.60q lacks the prefix %q", line, head)
	}
	m := markerRE.FindStringSubmatchIndex(line)
	if m == nil {
		t.Fatalf("line ends %q: no cut marker", line[max(0, len(line)-40):])
	}
	cut, _ = strconv.Atoi(line[m[2]:m[3]])
	return line[len(head):m[0]], cut
}

// units returns the offsets in escaped at which a cut may fall: the
// boundaries between whole escape sequences and whole characters of msg.
func units(msg string) map[int]bool {
	b := map[int]bool{0: true}
	n := 0
	for i := 0; i < len(msg); {
		esc, size := escape(msg[i:])
		if esc != "" {
			n += len(esc)
		} else {
			n += size
		}
		i += size
		b[n] = true
	}
	return b
}

// checkCut: the kept part is a prefix of the escaped message ending on a
// unit boundary, the marker counts exactly what was left out, the line is
// as long as it could be, and it is valid UTF-8.
func checkCut(t *testing.T, prog, msg, line string) {
	t.Helper()
	kept, cut := split(t, prog, line)
	full := oneLine(msg)
	if !strings.HasPrefix(full, kept) {
		t.Fatalf("kept part is not a prefix of the escaped message:\nkept ...%q\nfull ...%q", tail(kept), full[max(0, len(kept)-20):min(len(full), len(kept)+20)])
	}
	if len(kept)+cut != len(full) {
		t.Errorf("kept %d + cut %d != %d escaped bytes", len(kept), cut, len(full))
	}
	if !units(msg)[len(kept)] {
		t.Errorf("cut inside an escape sequence or a character: kept ends %q, next %q", tail(kept), full[len(kept):min(len(full), len(kept)+4)])
	}
	// Nothing wasted: the next unit would not have fitted (4 bytes at
	// most: \x1b, or a 4-byte character; the marker's number may be a
	// digit shorter than reserved).
	if len(line) < MaxLine-4-1 {
		t.Errorf("line of %d bytes: cut more than needed", len(line))
	}
	if !utf8.ValidString(line) {
		t.Errorf("line is not valid UTF-8 near its end: %q", tail(line))
	}
}

func tail(s string) string { return s[max(0, len(s)-20):] }

// TestLineBound: a 1 MB message gives one line of at most 4096 bytes,
// one Write, ending with the marker that counts the rest.
func TestLineBound(t *testing.T) {
	msg := strings.Repeat("a", 1<<20)
	line := logged(t, "stunnel-imap", msg)
	checkCut(t, "stunnel-imap", msg, line)
	if len(line) != MaxLine {
		t.Errorf("line of %d bytes, want exactly %d for plain text", len(line), MaxLine)
	}
	marker := "... [cut 1044527 bytes]" // 1<<20 - (4096 - 23 - 23 - 1)
	want := "stunnel-imap: warning: " + strings.Repeat("a", MaxLine-len("stunnel-imap: warning: ")-len(marker)-1) + marker + "\n"
	if line != want {
		t.Errorf("line ends %q, want %q", tail(line), tail(want))
	}
	// Every kind of line is bounded, not only warnings.
	for _, f := range []func(l *Logger){
		func(l *Logger) { l.Info("%s", msg) },
		func(l *Logger) { l.Usage(msg) },
		func(l *Logger) { l.Exit(Temp(fmt.Errorf("%s", msg), "read %s", msg)) },
		func(l *Logger) { l.Exit(Config(nil, "%s", msg)) },
		func(l *Logger) { l.Exit(&UsageError{Synopsis: msg, Msg: msg}) },
	} {
		var w writes
		f(NewTo("prog", &w, func(int) {}))
		for _, line := range w {
			if len(line) > MaxLine || !markerRE.MatchString(line) || strings.Count(line, "\n") != 1 {
				t.Errorf("line of %d bytes ending %q", len(line), tail(line))
			}
		}
	}
}

// TestLineAtLimit: a line of exactly 4096 bytes is written whole; one
// byte more and it is cut.
func TestLineAtLimit(t *testing.T) {
	head := len("prog: warning: ")
	exact := strings.Repeat("x", MaxLine-head-1)
	if line := logged(t, "prog", exact); len(line) != MaxLine || line != "prog: warning: "+exact+"\n" {
		t.Errorf("exact fit: %d bytes, ends %q", len(line), tail(line))
	}
	over := exact + "y"
	line := logged(t, "prog", over)
	checkCut(t, "prog", over, line)
	// Room is kept for a marker with as many digits as the whole
	// message's length (4 here), and the marker is two digits shorter.
	if _, cut := split(t, "prog", line); cut != len("... [cut 4073 bytes]")+1 || len(line) != MaxLine-2 {
		t.Errorf("one byte over: cut %d, line %d bytes; want 21 and %d", cut, len(line), MaxLine-2)
	}
	// With escapes: the escaped length counts, not the raw one.
	exactEsc := strings.Repeat("x", MaxLine-head-1-4) + "\x01"
	if line := logged(t, "prog", exactEsc); len(line) != MaxLine || !strings.HasSuffix(line, `\x01`+"\n") {
		t.Errorf("exact fit with an escape: %d bytes, ends %q", len(line), tail(line))
	}
	overEsc := strings.Repeat("x", MaxLine-head-1-3) + "\x01"
	checkCut(t, "prog", overEsc, logged(t, "prog", overEsc))
}

// TestCutNearEscapes: wherever a control byte or an invalid byte falls
// around the cut, the escape sequence is kept whole or left out whole.
func TestCutNearEscapes(t *testing.T) {
	room := MaxLine - len("prog: warning: ") - 1
	for _, special := range []string{"\x1b", "\n", "\r\n", "\x00\x7f", "\xff", "\x1b[2J"} {
		for k := room - 40; k <= room; k++ {
			msg := strings.Repeat("a", k) + strings.Repeat(special, 8) + strings.Repeat("b", 100)
			checkCut(t, "prog", msg, logged(t, "prog", msg))
		}
	}
}

// TestCutNearRunes: a character of two, three or four bytes is never
// split.
func TestCutNearRunes(t *testing.T) {
	room := MaxLine - len("prog: warning: ") - 1
	for _, r := range []string{"ü", "€", "😀", "ü\x1b😀"} {
		for k := room - 40; k <= room; k++ {
			msg := strings.Repeat("a", k) + strings.Repeat(r, 40)
			checkCut(t, "prog", msg, logged(t, "prog", msg))
		}
		// A message of nothing but that character.
		msg := strings.Repeat(r, 3000)
		checkCut(t, "prog", msg, logged(t, "prog", msg))
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"", 10, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc...(4 bytes)"},
		{strings.Repeat("a", 60000), 3, "aaa...(60000 bytes)"},
		{"abc", 0, "...(3 bytes)"},
		{"abc", -5, "...(3 bytes)"},
		{"aü", 2, "a...(3 bytes)"},                          // ü is 2 bytes: not split
		{"a€b", 3, "a...(5 bytes)"},                         // € is 3 bytes
		{"a😀b", 4, "a...(6 bytes)"},                         // 😀 is 4 bytes
		{"a😀b", 5, "a😀...(6 bytes)"},                        // whole
		{"\xff\xfe\xfd\xfc\xfb", 2, "\xff\xfe...(5 bytes)"}, // not UTF-8: cut as bytes
		{"a\x80\x80\x80\x80b", 3, "a\x80\x80...(6 bytes)"},  // stray continuation bytes
		{"a\nb\nc", 3, "a\nb...(5 bytes)"},                  // escaping is the line's job
		{"imap.example.test", 255, "imap.example.test"},     // a normal server name
		{strings.Repeat("x", 256), 255, strings.Repeat("x", 255) + "...(256 bytes)"},
	} {
		if got := Clip(tc.s, tc.max); got != tc.want {
			t.Errorf("Clip(%.20q, %d) = %.40q, want %.40q", tc.s, tc.max, got, tc.want)
		}
	}
	// A clipped value keeps its line short and whole.
	line := logged(t, "prog", "sni="+Clip(strings.Repeat("\x01", 60000), 64)+" end")
	if len(line) > 400 || !strings.HasSuffix(line, "...(60000 bytes) end\n") {
		t.Errorf("line of %d bytes ending %q", len(line), tail(line))
	}
}

// FuzzLine: whatever the message, the line is at most MaxLine bytes,
// valid UTF-8, one newline at its end and no other control byte, and
// either the whole escaped message or a prefix of it cut at a unit
// boundary with the right count.
func FuzzLine(f *testing.F) {
	f.Add("plain", 0)
	f.Add("a\nb\x1bc\xff", 4000)
	f.Add("ü€😀", 4070)
	f.Add("\x00", 5000)
	f.Fuzz(func(t *testing.T, s string, pad int) {
		if pad < 0 || pad > 10000 {
			return
		}
		msg := strings.Repeat("p", pad) + s
		line := formatLine("prog", "warning", msg)
		if len(line) > MaxLine || !utf8.ValidString(line) || strings.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("line of %d bytes, valid %v: ends %q", len(line), utf8.ValidString(line), tail(line))
		}
		for i := 0; i < len(line)-1; i++ {
			if line[i] < 0x20 || line[i] == 0x7f {
				t.Fatalf("control byte %#x at %d", line[i], i)
			}
		}
		if line == "prog: warning: "+oneLine(msg)+"\n" {
			return
		}
		checkCut(t, "prog", msg, line)
	})
}
