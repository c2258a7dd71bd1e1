package main

import (
	"bytes"
	"io"
	"strconv"

	"imap-tls/log"
)

// servePOP3 is fakeimapd -pop3: the same one message, over POP3 (RFC
// 1939): any USER and PASS, CAPA, STAT, LIST, UIDL, RETR 1, TOP 1 n,
// NOOP, QUIT; anything else -ERR.
func (s *session) servePOP3() error {
	s.w.WriteString("+OK fakeimapd ready\r\n")
	for {
		if s.r.Buffered() == 0 {
			if err := s.flush(); err != nil {
				return err
			}
		}
		line, err := s.r.ReadSlice('\n')
		if err == io.EOF {
			return s.flush()
		}
		if err != nil {
			s.flush()
			return log.Temp(err, "read from client")
		}
		word, arg, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte{' '})
		size := strconv.FormatInt(s.size+2, 10) // the message and the CRLF that ends its last line
		switch string(bytes.ToUpper(word)) {
		case "CAPA":
			s.w.WriteString("+OK\r\nUSER\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n")
		case "USER", "PASS", "NOOP":
			s.w.WriteString("+OK\r\n")
		case "STAT":
			s.w.WriteString("+OK 1 " + size + "\r\n")
		case "LIST":
			s.w.WriteString("+OK 1 messages\r\n1 " + size + "\r\n.\r\n")
		case "UIDL":
			s.w.WriteString("+OK\r\n1 fake1\r\n.\r\n")
		case "RETR", "TOP":
			if n, _, _ := bytes.Cut(arg, []byte{' '}); string(n) != "1" {
				s.w.WriteString("-ERR no such message\r\n")
				continue
			}
			s.w.WriteString("+OK " + size + " octets\r\n")
			// The generated lines never start with a dot: nothing to stuff.
			if err := s.writeMessage(); err != nil {
				return err
			}
			s.w.WriteString("\r\n.\r\n")
		case "QUIT":
			s.w.WriteString("+OK bye\r\n")
			return s.flush()
		default:
			s.w.WriteString("-ERR unknown command\r\n")
		}
	}
}
