package opt

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"imap-tls/log"
)

func TestParse(t *testing.T) {
	type result struct {
		v, q    bool
		fd, n   int
		secs    time.Duration
		name    string
		rest    []string
		message string // the usage error's message; "-" for none
	}
	parse := func(args ...string) result {
		var r result
		s := New("[ -v ] [ -q ] [ -d fd ] [ -n num ] [ -T secs ] [ -s name ] child...")
		s.Flag('v', &r.v)
		s.Flag('q', &r.q)
		s.FD('d', 3, &r.fd)
		s.Number('n', 1, 10, &r.n)
		s.Seconds('T', &r.secs)
		s.String('s', &r.name)
		rest, err := s.Parse(args)
		r.rest = rest
		r.message = "-"
		var u *log.UsageError
		if errors.As(err, &u) {
			r.message = u.Msg
			if u.Synopsis == "" {
				t.Errorf("%q: usage error without a synopsis", args)
			}
		} else if err != nil {
			t.Errorf("%q: %v is not a usage error", args, err)
		}
		return r
	}
	for _, c := range []struct {
		args []string
		want result
	}{
		{[]string{"prog", "-v"}, result{rest: []string{"prog", "-v"}, message: "-"}},
		{[]string{"-v", "-d", "4", "prog"}, result{v: true, fd: 4, rest: []string{"prog"}, message: "-"}},
		{[]string{"-vq", "-d5", "--", "-prog"}, result{v: true, q: true, fd: 5, rest: []string{"-prog"}, message: "-"}},
		{[]string{"-vd", "6", "x"}, result{v: true, fd: 6, rest: []string{"x"}, message: "-"}},
		{[]string{"-T", "0.5", "-s", "a b", "-n10", "-"}, result{secs: 500 * time.Millisecond, name: "a b", n: 10, rest: []string{"-"}, message: "-"}},
		{[]string{}, result{rest: []string{}, message: "-"}},
		{[]string{"-x"}, result{message: "unknown option -x"}},
		{[]string{"-vx"}, result{v: true, message: "unknown option -x"}},
		{[]string{"-\x01"}, result{message: `unknown option -"\x01"`}},
		{[]string{"-h"}, result{message: ""}},
		{[]string{"--help"}, result{message: ""}},
		{[]string{"-d"}, result{message: "missing value after -d"}},
		{[]string{"-d", "2"}, result{message: `bad value for -d: "2" (not a descriptor number from 3 to 1048575)`}},
		{[]string{"-n", "11"}, result{message: `bad value for -n: "11" (not a number from 1 to 10)`}},
		{[]string{"-T", "0"}, result{message: `bad value for -T: "0" (not a positive number of seconds)`}},
		{[]string{"-T", "NaN"}, result{message: `bad value for -T: "NaN" (not a positive number of seconds)`}},
		{[]string{"-s", ""}, result{message: `bad value for -s: "" (empty)`}},
	} {
		got := parse(c.args...)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", c.args, got, c.want)
		}
	}
}

func TestFlagFunc(t *testing.T) {
	s := New("[ -v | -q ]")
	level := 0
	s.FlagFunc('v', func() error { level++; return nil })
	s.FlagFunc('q', func() error {
		if level > 0 {
			return errors.New("-q with -v")
		}
		level--
		return nil
	})
	if _, err := s.Parse([]string{"-vv"}); err != nil || level != 2 {
		t.Fatalf("-vv: level %d, %v", level, err)
	}
	_, err := s.Parse([]string{"-q"})
	var u *log.UsageError
	if !errors.As(err, &u) || u.Msg != "bad use of -q: -q with -v" {
		t.Fatalf("-q after -vv: %v", err)
	}
}
