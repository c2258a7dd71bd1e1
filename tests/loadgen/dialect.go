package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// dialect is what a session says after the greeting, in IMAP or POP3:
// the steps are the same (STARTTLS or STLS, login, fetch the message,
// log out), the words differ.
type dialect interface {
	greetingOK(line []byte) bool
	starttls(w io.Writer, r *bufio.Reader) error
	login(w io.Writer, r *bufio.Reader, user, pass string) error
	open(w io.Writer, r *bufio.Reader) error           // the mailbox, before the timed fetch
	fetch(w io.Writer, r *bufio.Reader) (int64, error) // bytes of the message
	noop(w io.Writer, r *bufio.Reader) error           // a held session still answers
	logout(w io.Writer, r *bufio.Reader) error
}

// imapDialect: STARTTLS, CAPABILITY and LOGIN, SELECT and FETCH 1
// BODY[], LOGOUT.
type imapDialect struct{}

func imapCmd(w io.Writer, r *bufio.Reader, tag, command string) (int64, error) {
	if _, err := io.WriteString(w, tag+" "+command+"\r\n"); err != nil {
		return 0, fmt.Errorf("write %s: %w", firstWord(command), err)
	}
	n, err := readTagged(r, tag)
	if err != nil {
		return n, fmt.Errorf("%s: %w", firstWord(command), err)
	}
	return n, nil
}

func (imapDialect) greetingOK(line []byte) bool { return bytes.HasPrefix(line, []byte("* OK")) }

func (imapDialect) starttls(w io.Writer, r *bufio.Reader) error {
	_, err := imapCmd(w, r, "a1", "STARTTLS")
	return err
}

func (imapDialect) login(w io.Writer, r *bufio.Reader, user, pass string) error {
	if _, err := imapCmd(w, r, "a2", "CAPABILITY"); err != nil {
		return err
	}
	_, err := imapCmd(w, r, "a3", "LOGIN "+user+" "+pass)
	return err
}

func (imapDialect) open(w io.Writer, r *bufio.Reader) error {
	_, err := imapCmd(w, r, "a4", "SELECT INBOX")
	return err
}

func (imapDialect) fetch(w io.Writer, r *bufio.Reader) (int64, error) {
	return imapCmd(w, r, "a5", "FETCH 1 BODY[]")
}

func (imapDialect) noop(w io.Writer, r *bufio.Reader) error {
	_, err := imapCmd(w, r, "a8", "NOOP")
	return err
}

func (imapDialect) logout(w io.Writer, r *bufio.Reader) error {
	_, err := imapCmd(w, r, "a9", "LOGOUT")
	return err
}

// pop3Dialect: STLS, CAPA, USER and PASS, RETR 1, QUIT.
type pop3Dialect struct{}

// pop3Cmd sends one command and reads its status line, which must be
// +OK; with multi, the lines after it up to the lone ".", whose bytes it
// counts.
func pop3Cmd(w io.Writer, r *bufio.Reader, command string, multi bool) (int64, error) {
	word := firstWord(command)
	if _, err := io.WriteString(w, command+"\r\n"); err != nil {
		return 0, fmt.Errorf("write %s: %w", word, err)
	}
	line, err := readLine(r)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", word, err)
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		return 0, fmt.Errorf("%s: server said %q", word, trim(line))
	}
	var n int64
	for multi {
		line, err := readLine(r)
		if err != nil {
			return n, fmt.Errorf("%s: %w", word, err)
		}
		if len(line) == 1 && line[0] == '.' {
			break
		}
		n += int64(len(line)) + 2
	}
	return n, nil
}

func (pop3Dialect) greetingOK(line []byte) bool { return bytes.HasPrefix(line, []byte("+OK")) }

func (pop3Dialect) starttls(w io.Writer, r *bufio.Reader) error {
	_, err := pop3Cmd(w, r, "STLS", false)
	return err
}

func (pop3Dialect) login(w io.Writer, r *bufio.Reader, user, pass string) error {
	if _, err := pop3Cmd(w, r, "CAPA", true); err != nil {
		return err
	}
	if _, err := pop3Cmd(w, r, "USER "+user, false); err != nil {
		return err
	}
	_, err := pop3Cmd(w, r, "PASS "+pass, false)
	return err
}

func (pop3Dialect) open(io.Writer, *bufio.Reader) error { return nil }

func (pop3Dialect) fetch(w io.Writer, r *bufio.Reader) (int64, error) {
	return pop3Cmd(w, r, "RETR 1", true)
}

func (pop3Dialect) noop(w io.Writer, r *bufio.Reader) error {
	_, err := pop3Cmd(w, r, "NOOP", false)
	return err
}

func (pop3Dialect) logout(w io.Writer, r *bufio.Reader) error {
	_, err := pop3Cmd(w, r, "QUIT", false)
	return err
}
