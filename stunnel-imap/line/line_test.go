package line

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("a NOOP\r\nb NOOP\nc"+strings.Repeat("x", 100)+"\n"), 16)
	for _, want := range []string{"a NOOP\r\n", "b NOOP\n"} {
		if got, err := Read(r, 64); string(got) != want || err != nil {
			t.Errorf("Read = %q %v, want %q", got, err, want)
		}
	}
	if _, err := Read(r, 64); err != ErrTooLong {
		t.Errorf("long line: %v, want ErrTooLong", err)
	}
	r = bufio.NewReader(strings.NewReader("partial"))
	if got, err := Read(r, 64); string(got) != "partial" || err != io.EOF {
		t.Errorf("partial: %q %v", got, err)
	}
}

func TestTrimEnding(t *testing.T) {
	for _, tc := range []struct{ in, text, end string }{
		{"a\r\n", "a", "\r\n"}, {"a\n", "a", "\n"}, {"a", "a", ""}, {"\r\n", "", "\r\n"}, {"a\r", "a\r", ""}, {"", "", ""},
	} {
		if got := string(Trim([]byte(tc.in))); got != tc.text {
			t.Errorf("Trim(%q) = %q, want %q", tc.in, got, tc.text)
		}
		if got := string(Ending([]byte(tc.in))); got != tc.end {
			t.Errorf("Ending(%q) = %q, want %q", tc.in, got, tc.end)
		}
	}
}
