package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func capture(t *testing.T, f func(l *Logger)) (string, int) {
	t.Helper()
	var buf bytes.Buffer
	code := -1
	l := NewTo("prog", &buf, func(c int) { code = c })
	f(l)
	return buf.String(), code
}

func TestLines(t *testing.T) {
	tests := []struct {
		name string
		f    func(l *Logger)
		out  string
		code int
	}{
		{"info", func(l *Logger) { l.Info("remote=%s", "127.0.0.1") }, "prog: info: remote=127.0.0.1\n", -1},
		{"warning", func(l *Logger) { l.Warning("client sent %d bytes", 3) }, "prog: warning: client sent 3 bytes\n", -1},
		{"fatal", func(l *Logger) { l.Exit(Temp(nil, "fork")) }, "prog: fatal: unable to fork\n", 111},
		{"usage", func(l *Logger) { l.Usage("[ -w ] child") }, "prog: usage: prog [ -w ] child\n", 100},
		{"newline forged", func(l *Logger) { l.Warning("bad name %q", "x\nprog: info: forged") }, "prog: warning: bad name \"x\\nprog: info: forged\"\n", -1},
		{"raw control bytes", func(l *Logger) { l.Info("%s", "a\nb\x00c\r") }, "prog: info: a\\nb\\x00c\\r\n", -1},
		{"delete and tab", func(l *Logger) { l.Info("%s", "a\x7fb\tc") }, "prog: info: a\\x7fb\\x09c\n", -1},
		{"lone carriage return", func(l *Logger) { l.Info("%s", "a\rprog: info: forged") }, "prog: info: a\\rprog: info: forged\n", -1},
		{"non-ascii kept", func(l *Logger) { l.Info("user=%s", "jürgen") }, "prog: info: user=jürgen\n", -1},
		{"exit nil", func(l *Logger) { l.Exit(nil) }, "", 0},
		{"exit temp", func(l *Logger) {
			l.Exit(Temp(&os.PathError{Op: "chroot", Path: "/x", Err: syscall.EACCES}, "chroot to %s", "/x"))
		}, "prog: fatal: unable to chroot to /x: permission denied\n", 111},
		{"exit enoent", func(l *Logger) {
			l.Exit(Temp(&os.PathError{Op: "open", Path: "p", Err: syscall.ENOENT}, "run %s", "p"))
		}, "prog: fatal: unable to run p: file does not exist\n", 111},
		{"exit perm", func(l *Logger) {
			l.Exit(Perm(errors.New("it is a script, and only a binary can run from a descriptor"), "run %s", "/x"))
		}, "prog: fatal: unable to run /x: it is a script, and only a binary can run from a descriptor\n", 100},
		{"exit perm errno", func(l *Logger) { l.Exit(Perm(syscall.E2BIG, "run %s", "p")) }, "prog: fatal: unable to run p: argument list too long\n", 100},
		{"exit config cause", func(l *Logger) { l.Exit(Config(errors.New("x"), "bad %s", "y")) }, "prog: fatal: bad y: x\n", 100},
		{"invalid utf-8", func(l *Logger) { l.Info("%s", "a\xffb\xc3") }, "prog: info: a\\xffb\\xc3\n", -1},
		{"invalid utf-8 and control", func(l *Logger) { l.Info("%s", "\x80\x1b") }, "prog: info: \\x80\\x1b\n", -1},
		{"exit config", func(l *Logger) { l.Exit(Config(nil, "account %s is root", "toor")) }, "prog: fatal: account toor is root\n", 100},
		{"exit usage", func(l *Logger) { l.Exit(&UsageError{Synopsis: "child", Msg: "unknown option -x"}) }, "prog: fatal: unknown option -x\nprog: usage: prog child\n", 100},
		{"exit wrapped usage", func(l *Logger) { l.Exit(fmt.Errorf("x: %w", &UsageError{Synopsis: "child"})) }, "prog: usage: prog child\n", 100},
		{"exit other", func(l *Logger) { l.Exit(errors.New("Broken pipe")) }, "prog: fatal: broken pipe\n", 111},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := capture(t, tt.f)
			if out != tt.out {
				t.Errorf("output %q, want %q", out, tt.out)
			}
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
		})
	}
}

func TestReason(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{syscall.EPERM, "operation not permitted"},
		{fmt.Errorf("wrap: %w", syscall.EBADF), "bad file descriptor"},
		{errors.New("TLS: x"), "TLS: x"}, // an initialism keeps its case
		{errors.New("Certificate expired"), "certificate expired"},
	} {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestErrorUnwrap(t *testing.T) {
	err := Temp(syscall.EAGAIN, "fork")
	if !errors.Is(err, syscall.EAGAIN) {
		t.Fatal("Temp does not unwrap to its cause")
	}
}
