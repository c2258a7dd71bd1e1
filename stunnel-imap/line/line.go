// Package line is the reading of text lines that every protocol part of
// stunnel-imap shares before login (IMAP now, POP3 next), in the spirit
// of net/textproto: one bounded line, its ending, its trimmed text. A
// protocol package builds its own readers (IMAP literals, POP3's
// dot-ended blocks) on these.
package line

import (
	"bufio"
	"errors"
)

// Max bounds one line a client may send before login: one IMAP line up
// to a literal announcement or the end of the command, one POP3 command.
const Max = 64 << 10

// ErrTooLong is returned for a line (or a response, or a literal) over
// its limit.
var ErrTooLong = errors.New("line too long")

// Read reads one line through its LF. The protocols end lines with CRLF;
// a bare LF ends a line here too, because common servers accept it and
// the proxy must never see fewer line boundaries than the server. A line
// over max bytes is ErrTooLong; at end of input the partial line is
// returned with the reader's error (io.EOF).
func Read(r *bufio.Reader, max int) ([]byte, error) {
	return Append(nil, r, max)
}

// Append is Read appending to dst: the line is dst[len(dst):].
func Append(dst []byte, r *bufio.Reader, max int) ([]byte, error) {
	n := len(dst)
	for {
		frag, err := r.ReadSlice('\n')
		if len(dst)-n+len(frag) > max {
			return dst[:n], ErrTooLong
		}
		dst = append(dst, frag...)
		if err != bufio.ErrBufferFull {
			return dst, err
		}
	}
}

// Trim returns line without its line ending (LF or CRLF).
func Trim(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	return line
}

// Ending returns line's line ending: "\r\n", "\n" or "".
func Ending(line []byte) []byte {
	return line[len(Trim(line)):]
}
