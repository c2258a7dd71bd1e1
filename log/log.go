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
//
// # Fatal errors: one way to build them
//
// A program's run function returns its fatal error, and main hands it to
// Logger.Exit. The error is built by one of three constructors, never by
// hand (no "unable to" spelled at a call site, no &Error{} literal):
//
//	log.Temp(err, "chroot to %s", dir)  // 111: "unable to chroot to /x: permission denied"
//	log.Perm(err, "load certificate %s", p) // 100: "unable to load certificate p: reason"
//	log.Config(nil, "account %s is root", a) // 100: a statement about the configuration
//
// Temp and Perm take the verb and the object only; "unable to" and the
// reason (Reason(err): the errno text alone for a system call) are added.
// Temp is for what may work on a retry (a system call failed, a file
// could not be read); Perm for what will fail again until an
// administrator changes something (a script where a binary must run, a
// certificate that does not parse). Config states what is wrong with the
// configuration in its own words; with a non-nil err, ": reason" follows.
// A usage error is a *UsageError.
//
// # Every line is bounded
//
// Every line is at most MaxLine (4096) bytes, the program prefix and the
// newline included, and is written with one Write: a pipe write up to
// PIPE_BUF (4096 on Linux) is atomic, so the lines of many processes
// sharing one pipe to multilog are never spliced into each other, however
// long a message a client provokes. A longer message is cut so that the
// whole line fits, and the cut is marked at the end of the line:
//
//	prog: warning: unable to complete tls handshake: tls: ...... [cut 151234 bytes]
//
// that is, "... [cut N bytes]", where N counts the bytes of the escaped
// message that were left out. A cut never splits an escape sequence
// (\x1b, \n) nor a UTF-8 character. To keep one client-chosen value short
// inside a line that says more (a server name, a command name), wrap it
// in Clip.
//
// Control bytes are escaped, so that no client text can forge a line:
// "\n", "\r", and "\xNN" for the other bytes below 0x20, for DEL (0x7f)
// and for bytes that are not valid UTF-8.
package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"
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

// MaxLine is the longest line a Logger writes, newline included:
// PIPE_BUF, the largest pipe write that is atomic.
const MaxLine = 4096

// line writes "prog: kind: msg\n" in one Write, at most MaxLine bytes,
// so that lines from concurrent processes sharing a pipe never interleave.
func (l *Logger) line(kind, msg string) {
	io.WriteString(l.w, formatLine(l.prog, kind, msg))
}

// formatLine is "prog: kind: " and msg escaped (see escape), cut with
// the marker "... [cut N bytes]" when the line would pass MaxLine.
func formatLine(prog, kind, msg string) string {
	head := len(prog) + len(kind) + 4
	var b strings.Builder
	if head+len(msg)+1 <= MaxLine && isPrintable(msg) { // the common case: one pass
		b.Grow(head + len(msg) + 1)
		writeHead(&b, prog, kind)
		b.WriteString(msg)
		b.WriteByte('\n')
		return b.String()
	}
	full := escapedLen(msg)
	if head+full+1 <= MaxLine {
		b.Grow(head + full + 1)
		writeHead(&b, prog, kind)
		writeEscaped(&b, msg, full)
		b.WriteByte('\n')
		return b.String()
	}
	// The marker's number is at most full, so room for that many digits
	// is enough; the line may then end a few bytes short of MaxLine.
	keep := MaxLine - 1 - head - len(cutMarker(full))
	if keep < 0 {
		keep = 0 // a prefix longer than a line: never in this suite
	}
	b.Grow(MaxLine)
	writeHead(&b, prog, kind)
	kept := writeEscaped(&b, msg, keep)
	b.WriteString(cutMarker(full - kept))
	b.WriteByte('\n')
	return b.String()
}

func writeHead(b *strings.Builder, prog, kind string) {
	b.WriteString(prog)
	b.WriteString(": ")
	b.WriteString(kind)
	b.WriteString(": ")
}

// cutMarker ends a line whose message lost n bytes.
func cutMarker(n int) string { return "... [cut " + strconv.Itoa(n) + " bytes]" }

// Info logs "prog: info: ...".
func (l *Logger) Info(format string, args ...any) { l.line("info", fmt.Sprintf(format, args...)) }

// Warning logs "prog: warning: ...".
func (l *Logger) Warning(format string, args ...any) { l.line("warning", fmt.Sprintf(format, args...)) }

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
// "unable to VERB OBJ: reason". Code is ExitUsage or ExitTemp. Build it
// with Temp, Perm or Config, not as a literal.
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

// Perm returns an *Error with code 100 and the message
// "unable to " + fmt.Sprintf(format, args...), with err as its cause: a
// failure that will recur until the configuration changes ("unable to run
// x: it is a script, ...").
func Perm(err error, format string, args ...any) error {
	return &Error{Code: ExitUsage, Msg: "unable to " + fmt.Sprintf(format, args...), Err: err}
}

// Config returns an *Error with code 100 for a bad configuration, stated
// in its own words ("account toor is root"), never starting with "unable
// to" (that is Perm), with err, when not nil, as its cause.
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

// Clip bounds one client-chosen value inside a line (a server name, a
// command name, a peer's error text): s itself when it is at most max
// bytes long, otherwise its longest prefix of at most max bytes that
// ends on a UTF-8 character boundary, then "...(N bytes)" with N the
// length of s. The result is thus at most max+len("...(N bytes)")
// bytes. Clip does not escape: the line does, and an escaped control
// byte takes four bytes. A max below 0 counts as 0.
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max < 0 {
		max = 0
	}
	// Cut at max, or earlier at the start of a valid character that
	// would be split (UTF-8 characters are at most four bytes).
	k := max
	for j := k; j >= 0 && j > k-utf8.UTFMax; j-- {
		if utf8.RuneStart(s[j]) {
			if r, n := utf8.DecodeRuneInString(s[j:]); (r != utf8.RuneError || n > 1) && j+n > k {
				k = j
			}
			break
		}
	}
	return s[:k] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

// escape keeps a message on one line, so that a hostile byte string (a
// server name, a client's command) can never forge a second log line:
// "\n", "\r", and "\xNN" for any other control byte, DEL, and each byte
// that is not valid UTF-8. It returns how s's first character (or
// invalid byte) is written:
// as itself (esc == "") or as an escape sequence, and its length in s.
func escape(s string) (esc string, size int) {
	c := s[0]
	switch {
	case c == '\n':
		return `\n`, 1
	case c == '\r':
		return `\r`, 1
	case c < 0x20 || c == 0x7f:
		return `\x` + hex[c>>4:c>>4+1] + hex[c&15:c&15+1], 1
	case c < utf8.RuneSelf:
		return "", 1
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n == 1 {
		return `\x` + hex[c>>4:c>>4+1] + hex[c&15:c&15+1], 1
	}
	return "", n
}

const hex = "0123456789abcdef"

// escapedLen is the length of s once escaped.
func escapedLen(s string) int {
	if isPrintable(s) {
		return len(s)
	}
	n := 0
	for i := 0; i < len(s); {
		esc, size := escape(s[i:])
		if esc != "" {
			n += len(esc)
		} else {
			n += size
		}
		i += size
	}
	return n
}

// writeEscaped writes s escaped to b, whole characters and whole escape
// sequences only, as long as they fit in limit bytes, and returns how
// many bytes it wrote.
func writeEscaped(b *strings.Builder, s string, limit int) int {
	if isPrintable(s) && len(s) <= limit {
		b.WriteString(s)
		return len(s)
	}
	n := 0
	for i := 0; i < len(s); {
		esc, size := escape(s[i:])
		w := size
		if esc != "" {
			w = len(esc)
		}
		if n+w > limit {
			break
		}
		if esc != "" {
			b.WriteString(esc)
		} else {
			b.WriteString(s[i : i+size])
		}
		n += w
		i += size
	}
	return n
}

// isPrintable reports whether s is valid UTF-8 and holds no control byte
// (CR and LF included), so that it may be written as it is.
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}
