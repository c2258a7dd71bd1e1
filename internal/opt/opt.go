// Package opt is the one way every imap-tls program reads its options,
// in the spirit of djb's subgetopt: single-letter options, before the
// operands (a chained child's argv, say), "--" to end them, a value
// either attached (-d4) or in the next argument (-d 4), flags clustered
// (-vH). Every program gets the same messages for the same mistakes:
//
//	prog: fatal: unknown option -x
//	prog: fatal: missing value after -d
//	prog: fatal: bad value for -d: "x" (not a descriptor number)
//	prog: usage: prog SYNOPSIS
//
// and -h (where a program does not define it) prints the usage line
// alone. All of them exit 100, through log.UsageError.
package opt

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"imap-tls/log"
)

// Set is one program's options.
type Set struct {
	synopsis string
	opts     map[byte]func(string) error // takes a value
	flags    map[byte]func() error       // takes none
}

// New starts the options of a program whose usage line is synopsis
// (without the program's name: "[ -w ] prog1 ...").
func New(synopsis string) *Set {
	return &Set{synopsis: synopsis, opts: map[byte]func(string) error{}, flags: map[byte]func() error{}}
}

// Usage is a usage error with msg (empty: the usage line alone).
func (s *Set) Usage(msg string) error { return &log.UsageError{Synopsis: s.synopsis, Msg: msg} }

// Usagef is Usage with a formatted message.
func (s *Set) Usagef(format string, args ...any) error {
	return s.Usage(fmt.Sprintf(format, args...))
}

// Flag is -c with no value: it sets *p.
func (s *Set) Flag(c byte, p *bool) { s.flags[c] = func() error { *p = true; return nil } }

// FlagFunc is -c with no value: it calls f, whose error becomes "bad
// use of -c: err".
func (s *Set) FlagFunc(c byte, f func() error) { s.flags[c] = f }

// Func is -c value: f parses the value; its error's text says why the
// value is bad ("not a descriptor number").
func (s *Set) Func(c byte, f func(string) error) { s.opts[c] = f }

// String is -c value, any non-empty string, into *p.
func (s *Set) String(c byte, p *string) { s.Func(c, String(p)) }

// Seconds is -c secs, a positive number of seconds (fractions allowed),
// into *p.
func (s *Set) Seconds(c byte, p *time.Duration) { s.Func(c, Seconds(p)) }

// FD is -c fd, a descriptor number no lower than min, into *p.
func (s *Set) FD(c byte, min int, p *int) { s.Func(c, FD(min, p)) }

// Number is -c n, a whole number from min to max, into *p.
func (s *Set) Number(c byte, min, max int, p *int) { s.Func(c, Number(min, max, p)) }

// Parse reads the options at the front of args and returns the operands
// after them. Options end at "--" (dropped), at "-" or at the first
// argument that does not start with '-'.
func (s *Set) Parse(args []string) ([]string, error) {
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			return args[1:], nil
		}
		if len(a) < 2 || a[0] != '-' {
			return args, nil
		}
		args = args[1:]
		for i := 1; i < len(a); i++ {
			c := a[i]
			if f, ok := s.flags[c]; ok {
				if err := f(); err != nil {
					return nil, s.Usagef("bad use of -%c: %s", c, err.Error())
				}
				continue
			}
			f, ok := s.opts[c]
			if !ok {
				if c == 'h' || a == "--help" {
					return nil, s.Usage("")
				}
				return nil, s.Usage("unknown option " + printable(c))
			}
			v := a[i+1:]
			if v == "" {
				if len(args) == 0 {
					return nil, s.Usagef("missing value after -%c", c)
				}
				v, args = args[0], args[1:]
			}
			if err := f(v); err != nil {
				return nil, s.Usagef("bad value for -%c: %s (%s)", c, strconv.Quote(v), err.Error())
			}
			break
		}
	}
	return args, nil
}

// printable names an option character for a message: "-x", or its
// quoted form for a byte that is not a letter, digit or sign.
func printable(c byte) string {
	if c > ' ' && c < 0x7f {
		return "-" + string(rune(c))
	}
	return "-" + strconv.QuoteToASCII(string(rune(c)))
}

// String parses a non-empty value.
func String(p *string) func(string) error {
	return func(v string) error {
		if v == "" {
			return errors.New("empty")
		}
		*p = v
		return nil
	}
}

// Seconds parses a positive number of seconds, at most 10,000,000.
func Seconds(p *time.Duration) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || f > 1e7 {
			return errors.New("not a positive number of seconds")
		}
		*p = time.Duration(f * float64(time.Second))
		return nil
	}
}

// MaxFD bounds a descriptor number: Linux's default fs.nr_open is 1<<20.
const MaxFD = 1<<20 - 1

// FD parses a descriptor number from min to MaxFD.
func FD(min int, p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > MaxFD {
			return errors.New("not a descriptor number from " + strconv.Itoa(min) + " to " + strconv.Itoa(MaxFD))
		}
		*p = n
		return nil
	}
}

// Number parses a whole number from min to max.
func Number(min, max int, p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return errors.New("not a number from " + strconv.Itoa(min) + " to " + strconv.Itoa(max))
		}
		*p = n
		return nil
	}
}
