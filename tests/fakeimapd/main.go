// Command fakeimapd is a small stdio IMAP responder: the backend of every
// system the benchmarks measure, so that the proxy, not the server,
// dominates. It speaks on fd 0/1 like an inetd-style imapd, accepts any
// LOGIN, holds one mailbox, INBOX, with one message whose size is set by
// -s and whose text is generated as it is sent, never stored.
//
//	fakeimapd [ -s size ] [ -pop3 ]
//
// It is not an IMAP server: it parses just enough of RFC 9051 (tags,
// atoms, quoted strings, literals) for what mail clients and the load
// generator send.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"imap-tls/log"
)

const synopsis = "[ -s size ] [ -pop3 ]"

const greeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"

func main() {
	l := log.New("fakeimapd")
	// Straight under tcpserver, fd 1 is a TCP socket without
	// TCP_NODELAY: the small last write of a FETCH (the literal's tail,
	// ")" and the tagged OK) would then wait behind Nagle for the delayed
	// ACK of the write before, 40 ms, and the plaintext baseline would
	// measure that. Go's own sockets set it; not a socket: no matter.
	syscall.SetsockoptInt(1, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	l.Exit(run(os.Args[1:], os.Stdin, os.Stdout))
}

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("fakeimapd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	size := fs.String("s", "4k", "size of the one message, bytes, with an optional k, M or G suffix (powers of 1024)")
	pop3 := fs.Bool("pop3", false, "speak POP3 instead of IMAP")
	if err := fs.Parse(args); err != nil {
		return &log.UsageError{Synopsis: synopsis, Msg: err.Error()}
	}
	if fs.NArg() != 0 {
		return &log.UsageError{Synopsis: synopsis, Msg: "unexpected argument " + fs.Arg(0)}
	}
	n, err := parseSize(*size)
	if err != nil {
		return log.Config(err, "bad message size %s", *size)
	}
	s := &session{
		r:    bufio.NewReaderSize(in, 16<<10),
		w:    bufio.NewWriterSize(out, 64<<10),
		size: n,
	}
	if *pop3 {
		return s.servePOP3()
	}
	return s.serve()
}

// parseSize reads "65536", "64k", "64M", "1G".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, errors.New("not a size in bytes")
	}
	return n * mult, nil
}

type session struct {
	r        *bufio.Reader
	w        *bufio.Writer
	size     int64
	loggedIn bool
	selected bool
}

// errLogout ends the session normally.
var errLogout = errors.New("logout")

func (s *session) serve() error {
	s.w.WriteString(greeting)
	for {
		// Flush only when the client has nothing more queued: a
		// pipelining client gets its answers in one write.
		if s.r.Buffered() == 0 {
			if err := s.w.Flush(); err != nil {
				return log.Temp(err, "write to client")
			}
		}
		line, err := s.readCommand()
		if err == io.EOF {
			return s.flush()
		}
		if err != nil {
			s.flush()
			return log.Temp(err, "read from client")
		}
		err = s.command(line)
		if err == errLogout {
			return s.flush()
		}
		if err != nil {
			return err
		}
	}
}

func (s *session) flush() error {
	if err := s.w.Flush(); err != nil {
		return log.Temp(err, "write to client")
	}
	return nil
}

const maxLine = 64 << 10

// readCommand returns one command with its literals inlined, without the
// final CRLF. A synchronizing literal {n} is answered with a continuation
// request (RFC 9051 section 4.3); {n+} is not.
func (s *session) readCommand() ([]byte, error) {
	var cmd []byte
	for {
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, errors.New("command line too long")
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		cmd = append(cmd, line...)
		if len(cmd) > maxLine {
			return nil, errors.New("command too long")
		}
		n, sync, ok := literalAtEnd(line)
		if !ok {
			return cmd, nil
		}
		if n > maxLine {
			return nil, errors.New("literal too long")
		}
		if sync {
			s.w.WriteString("+ ready\r\n")
			if err := s.w.Flush(); err != nil {
				return nil, err
			}
		}
		cmd = append(cmd, '\r', '\n')
		start := len(cmd)
		cmd = append(cmd, make([]byte, n)...)
		if _, err := io.ReadFull(s.r, cmd[start:]); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
	}
}

// literalAtEnd finds "{n}" or "{n+}" at the end of a line.
func literalAtEnd(line []byte) (n int, sync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	digits := line[i+1 : len(line)-1]
	sync = true
	if len(digits) > 0 && digits[len(digits)-1] == '+' {
		digits = digits[:len(digits)-1]
		sync = false
	}
	v, err := strconv.Atoi(string(digits))
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, sync, true
}

func (s *session) reply(tag []byte, status, text string) {
	s.w.Write(tag)
	s.w.WriteByte(' ')
	s.w.WriteString(status)
	s.w.WriteByte(' ')
	s.w.WriteString(text)
	s.w.WriteString("\r\n")
}

func (s *session) command(line []byte) error {
	tag, rest, _ := bytes.Cut(line, []byte{' '})
	if len(tag) == 0 || !isAtom(tag) {
		s.w.WriteString("* BAD missing tag\r\n")
		return nil
	}
	name, args, _ := bytes.Cut(rest, []byte{' '})
	uid := false
	if strings.EqualFold(string(name), "UID") {
		uid = true
		name, args, _ = bytes.Cut(args, []byte{' '})
	}
	switch strings.ToUpper(string(name)) {
	case "CAPABILITY":
		s.w.WriteString("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
		s.reply(tag, "OK", "CAPABILITY completed")
	case "NOOP":
		s.reply(tag, "OK", "NOOP completed")
	case "LOGOUT":
		s.w.WriteString("* BYE logging out\r\n")
		s.reply(tag, "OK", "LOGOUT completed")
		return errLogout
	case "LOGIN":
		if s.loggedIn {
			s.reply(tag, "BAD", "already logged in")
			return nil
		}
		if n := countArgs(args); n != 2 {
			s.reply(tag, "BAD", "LOGIN needs a user name and a password")
			return nil
		}
		s.loggedIn = true
		s.reply(tag, "OK", "[CAPABILITY IMAP4rev1] LOGIN completed")
	case "AUTHENTICATE":
		if s.loggedIn {
			s.reply(tag, "BAD", "already logged in")
			return nil
		}
		mech, initial, hasInitial := bytes.Cut(args, []byte{' '})
		if !strings.EqualFold(string(mech), "PLAIN") {
			s.reply(tag, "NO", "unsupported mechanism")
			return nil
		}
		if !hasInitial || len(initial) == 0 {
			s.w.WriteString("+ \r\n")
			if err := s.w.Flush(); err != nil {
				return log.Temp(err, "write to client")
			}
			resp, err := s.r.ReadSlice('\n')
			if err != nil {
				return log.Temp(err, "read from client")
			}
			if bytes.Equal(bytes.TrimRight(resp, "\r\n"), []byte("*")) {
				s.reply(tag, "BAD", "AUTHENTICATE cancelled")
				return nil
			}
		}
		s.loggedIn = true
		s.reply(tag, "OK", "AUTHENTICATE completed")
	case "SELECT", "EXAMINE":
		if !s.loggedIn {
			s.reply(tag, "NO", "not logged in")
			return nil
		}
		if !strings.EqualFold(strings.Trim(string(args), `"`), "INBOX") {
			s.selected = false
			s.reply(tag, "NO", "no such mailbox")
			return nil
		}
		s.selected = true
		s.w.WriteString("* 1 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen)\r\n" +
			"* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 2] predicted next UID\r\n")
		if strings.EqualFold(string(name), "EXAMINE") {
			s.reply(tag, "OK", "[READ-ONLY] EXAMINE completed")
		} else {
			s.reply(tag, "OK", "[READ-WRITE] SELECT completed")
		}
	case "FETCH":
		if !s.selected {
			s.reply(tag, "NO", "no mailbox selected")
			return nil
		}
		set, items, ok := bytes.Cut(args, []byte{' '})
		if !ok || len(items) == 0 {
			s.reply(tag, "BAD", "FETCH needs a sequence set and items")
			return nil
		}
		if hasOne(set) {
			if err := s.fetch(items, uid); err != nil {
				return err
			}
		}
		s.reply(tag, "OK", "FETCH completed")
	case "CLOSE", "UNSELECT":
		if !s.selected {
			s.reply(tag, "NO", "no mailbox selected")
			return nil
		}
		s.selected = false
		s.reply(tag, "OK", string(name)+" completed")
	default:
		s.reply(tag, "BAD", "unknown command")
	}
	return nil
}

// fetch answers for message 1: the whole message for BODY[], BODY.PEEK[]
// or RFC822, its size for RFC822.SIZE, and FLAGS.
func (s *session) fetch(items []byte, uid bool) error {
	up := strings.ToUpper(string(items))
	var parts []string
	if uid {
		parts = append(parts, "UID 1")
	}
	if strings.Contains(up, "FLAGS") {
		parts = append(parts, `FLAGS (\Seen)`)
	}
	if strings.Contains(up, "RFC822.SIZE") {
		parts = append(parts, "RFC822.SIZE "+strconv.FormatInt(s.size, 10))
	}
	body := ""
	switch {
	case strings.Contains(up, "BODY[]") || strings.Contains(up, "BODY.PEEK[]"):
		body = "BODY[]"
	case strings.Contains(strings.ReplaceAll(up, "RFC822.SIZE", ""), "RFC822"):
		body = "RFC822"
	}
	s.w.WriteString("* 1 FETCH (" + strings.Join(parts, " "))
	if body == "" {
		s.w.WriteString(")\r\n")
		return nil
	}
	if len(parts) > 0 {
		s.w.WriteByte(' ')
	}
	fmt.Fprintf(s.w, "%s {%d}\r\n", body, s.size)
	if err := s.writeMessage(); err != nil {
		return err
	}
	s.w.WriteString(")\r\n")
	return nil
}

// writeMessage sends the generated message: a header, then the same block
// of text lines again and again, cut at exactly s.size bytes.
func (s *session) writeMessage() error {
	left := s.size
	first := header
	for left > 0 {
		chunk := block
		if first != nil {
			chunk, first = first, nil
		}
		if int64(len(chunk)) > left {
			chunk = chunk[:left]
		}
		if _, err := s.w.Write(chunk); err != nil {
			return log.Temp(err, "write to client")
		}
		left -= int64(len(chunk))
	}
	return nil
}

var header = []byte("From: fakeimapd <fake@example.invalid>\r\n" +
	"To: bench <bench@example.invalid>\r\n" +
	"Subject: generated message\r\n" +
	"Date: Thu, 26 Nov 2026 00:00:00 +0000\r\n" +
	"Message-ID: <1@fakeimapd.invalid>\r\n" +
	"\r\n")

// block is 64 KiB of 64-byte text lines.
var block = func() []byte {
	const line = 64
	b := make([]byte, 0, 64<<10)
	for i := 0; len(b) < cap(b); i++ {
		l := fmt.Sprintf("%08d the quick brown fox jumps over the lazy dog 0123456789", i)
		l = l[:line-2]
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	return b
}()

// hasOne reports whether a sequence set such as "1", "1:*", "*" or "2,1"
// names message 1 of a one-message mailbox.
func hasOne(set []byte) bool {
	for _, r := range bytes.Split(set, []byte{','}) {
		lo, hi, isRange := bytes.Cut(r, []byte{':'})
		if !isRange {
			hi = lo
		}
		if seqLE(lo) && seqGE(hi) || seqLE(hi) && seqGE(lo) {
			return true
		}
	}
	return false
}

func seqLE(b []byte) bool { return string(b) == "1" || string(b) == "*" }
func seqGE(b []byte) bool {
	if string(b) == "*" {
		return true
	}
	n, err := strconv.Atoi(string(b))
	return err == nil && n >= 1
}

// countArgs counts atoms, quoted strings and literals.
func countArgs(b []byte) int {
	n := 0
	for i := 0; i < len(b); {
		switch b[i] {
		case ' ':
			i++
			continue
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case '{':
			j := bytes.Index(b[i:], []byte("}\r\n"))
			if j < 0 {
				return -1
			}
			v, _, ok := literalAtEnd(b[i : i+j+1])
			if !ok {
				return -1
			}
			i += j + 3 + v
		default:
			for i < len(b) && b[i] != ' ' {
				i++
			}
		}
		n++
	}
	return n
}

func isAtom(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]+`, c) >= 0 {
			return false
		}
	}
	return true
}
