package pop3

import (
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line, name, args string
		ok               bool
	}{
		{"USER alice\r\n", "USER", "alice", true},
		{"pass secret words\r\n", "PASS", "secret words", true},
		{"stls\n", "STLS", "", true},
		{"STLS \r\n", "STLS", "", true},
		{"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "AUTH", "PLAIN AGFsaWNlAHNlY3JldA==", true},
		{"\r\n", "", "", false},
		{" USER x\r\n", "", "", false},
		{"US\x00ER x\r\n", "", "", false},
	} {
		name, args, ok := ParseCommand([]byte(tc.line))
		if name != tc.name || string(args) != tc.args || ok != tc.ok {
			t.Errorf("ParseCommand(%q) = %q %q %v, want %q %q %v", tc.line, name, args, ok, tc.name, tc.args, tc.ok)
		}
	}
}

func TestKind(t *testing.T) {
	for line, want := range map[string]byte{
		"+OK\r\n": OK, "+OK ready <1.2@x>\r\n": OK, "+ok\n": OK, "-ERR no\r\n": Err, "-ERR\r\n": Err,
		"+ \r\n": Continuation, "+\r\n": Continuation, "+ AGFsaWNl\r\n": Continuation,
		"+OKAY\r\n": 0, "-ERROR\r\n": 0, "* OK\r\n": 0, "\r\n": 0, ".\r\n": 0,
	} {
		if got := Kind([]byte(line)); got != want {
			t.Errorf("Kind(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestMultiLine(t *testing.T) {
	for _, tc := range []struct {
		name, args string
		want       bool
	}{
		{"CAPA", "", true}, {"AUTH", "", true}, {"AUTH", "PLAIN", false}, {"AUTH", "PLAIN AGFs", false},
		{"LIST", "", true}, {"LIST", "1", false}, {"UIDL", "", true}, {"TOP", "1 0", true}, {"RETR", "1", true},
		{"USER", "alice", false}, {"PASS", "x", false}, {"STAT", "", false}, {"LANG", "", true}, {"LANG", "en", false},
	} {
		if got := MultiLine(tc.name, []byte(tc.args)); got != tc.want {
			t.Errorf("MultiLine(%s %q) = %v", tc.name, tc.args, got)
		}
	}
}

func TestIsEnd(t *testing.T) {
	for line, want := range map[string]bool{".\r\n": true, ".\n": true, "..\r\n": false, ". \r\n": false, "\r\n": false, ".x\r\n": false} {
		if IsEnd([]byte(line)) != want {
			t.Errorf("IsEnd(%q) != %v", line, want)
		}
	}
}

func TestCapability(t *testing.T) {
	before := Rule{STLS: true, NoPlaintext: true}
	optional := Rule{STLS: true}
	after := Rule{}
	for _, tc := range []struct {
		line string
		rule Rule
		name string
		keep bool
	}{
		{"STLS\r\n", after, "STLS", false},
		{"stls\r\n", before, "STLS", true},
		{"USER\r\n", before, "USER", false},
		{"USER\r\n", optional, "USER", true},
		{"SASL PLAIN LOGIN\r\n", before, "SASL", false},
		{"SASL PLAIN LOGIN\r\n", after, "SASL", true},
		{"PIPELINING\r\n", before, "PIPELINING", true},
		{"..STLS\r\n", after, ".STLS", true}, // stuffed ".STLS" is not STLS
		{"TOP\r\n", before, "TOP", true},
	} {
		name, keep := Capability([]byte(tc.line), tc.rule)
		if name != tc.name || keep != tc.keep {
			t.Errorf("Capability(%q, %+v) = %q %v, want %q %v", tc.line, tc.rule, name, keep, tc.name, tc.keep)
		}
	}
}
