// Package log is the one message grammar and exit-code convention that
// every imap-tls program shares, in the daemontools tradition:
//
//	prog: fatal: unable to chroot to /x: permission denied
//	prog: warning: client sent STARTTLS with arguments
//	prog: info: remote=127.0.0.1:4711 mode=imap starttls=yes ...
//	prog: usage: prog [ options ] child...
//
// Lowercase, no trailing period, one line each, stderr only, no
// timestamps (multilog adds them). Exit codes: 100 for a usage error or a
// bad configuration, 111 for a temporary or system failure.
package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Exit codes shared by every program.
const (
	ExitUsage = 100 // usage error or bad configuration: retrying will not help
	ExitTemp  = 111 // temporary or system failure: cannot fork, exec, read
)

// Logger writes the shared grammar for one program. The zero value is not
// usable; make one with New.
type Logger struct {
	prog string
	w    io.Writer
	exit func(int)
}

// New returns a Logger for prog that writes to stderr and exits with
// os.Exit.
func New(prog string) *Logger {
	return &Logger{prog: prog, w: os.Stderr, exit: os.Exit}
}

// NewTo returns a Logger that writes to w and calls exit instead of
// os.Exit: for tests, and for programs that must log elsewhere.
func NewTo(prog string, w io.Writer, exit func(int)) *Logger {
	return &Logger{prog: prog, w: w, exit: exit}
}

// line writes "prog: kind: msg\n" in one Write, so that lines from
// concurrent processes sharing a pipe never interleave (a pipe write up
// to PIPE_BUF is atomic).
func (l *Logger) line(kind, msg string) {
	var b strings.Builder
	b.Grow(len(l.prog) + len(kind) + len(msg) + 5)
	b.WriteString(l.prog)
	b.WriteString(": ")
	b.WriteString(kind)
	b.WriteString(": ")
	b.WriteString(oneLine(msg))
	b.WriteByte('\n')
	io.WriteString(l.w, b.String())
}

// Info logs "prog: info: ...".
func (l *Logger) Info(format string, args ...any) { l.line("info", fmt.Sprintf(format, args...)) }

// Warning logs "prog: warning: ...".
func (l *Logger) Warning(format string, args ...any) { l.line("warning", fmt.Sprintf(format, args...)) }

// Fatal logs "prog: fatal: ..." and exits with code.
func (l *Logger) Fatal(code int, format string, args ...any) {
	l.line("fatal", fmt.Sprintf(format, args...))
	l.exit(code)
}

// Usage logs "prog: usage: prog synopsis" and exits 100.
func (l *Logger) Usage(synopsis string) {
	l.line("usage", l.prog+" "+synopsis)
	l.exit(ExitUsage)
}

// Exit maps the error returned by a program's run function to its message
// and exit code: nil exits 0, a *UsageError prints the usage line and exits
// 100, an *Error prints its fatal line and exits with its code, and any
// other error is a fatal temporary failure (111).
func (l *Logger) Exit(err error) {
	if err == nil {
		l.exit(0)
		return
	}
	var u *UsageError
	if errors.As(err, &u) {
		if u.Msg != "" {
			l.line("fatal", u.Msg)
		}
		l.Usage(u.Synopsis)
		return
	}
	var e *Error
	if errors.As(err, &e) {
		l.line("fatal", e.Error())
		l.exit(e.Code)
		return
	}
	l.line("fatal", Reason(err))
	l.exit(ExitTemp)
}

// Error is a fatal error with its exit code, in the grammar's shape:
// "unable to VERB OBJ: reason". Code is ExitUsage or ExitTemp.
type Error struct {
	Code int
	Msg  string // "unable to chroot to /x"
	Err  error  // the cause; its Reason is appended
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + Reason(e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temp returns an *Error with code 111 and the message
// "unable to " + fmt.Sprintf(format, args...), with err as its cause.
func Temp(err error, format string, args ...any) error {
	return &Error{Code: ExitTemp, Msg: "unable to " + fmt.Sprintf(format, args...), Err: err}
}

// Config returns an *Error with code 100 for a bad configuration: the
// message is used as given ("certificate has expired"), with err, when
// not nil, as its cause.
func Config(err error, format string, args ...any) error {
	return &Error{Code: ExitUsage, Msg: fmt.Sprintf(format, args...), Err: err}
}

// UsageError asks Exit to print an optional fatal line, then the usage
// synopsis, and exit 100.
type UsageError struct {
	Synopsis string // without the program name: "[ -w ] prog1 ... -makesock_connect_to prog2 ..."
	Msg      string // optional: "unknown option -x"
}

func (u *UsageError) Error() string {
	if u.Msg != "" {
		return u.Msg
	}
	return "usage: " + u.Synopsis
}

// Reason returns the shortest useful text for err: for a system call error
// the errno text alone ("permission denied", "file does not exist"), since
// the caller has already named the verb and the object; otherwise the
// error's own text, lowercased at its start.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if errno == syscall.ENOENT {
			return "file does not exist" // djb's wording
		}
		return errno.Error()
	}
	s := err.Error()
	if s != "" && s[0] >= 'A' && s[0] <= 'Z' && (len(s) == 1 || s[1] < 'A' || s[1] > 'Z') {
		s = strings.ToLower(s[:1]) + s[1:]
	}
	return s
}

// oneLine keeps a message on one line, so that a hostile byte string (a
// server name, a client's command) can never forge a second log line.
func oneLine(s string) string {
	if isPrintable(s) { // the common case: one pass, no copy
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isPrintable reports whether s holds no control byte (CR and LF
// included), so that oneLine may return it as it is.
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
