package main

import (
	"crypto/tls"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// fileConn makes a net.Conn of descriptor fd, which must be a socket, and
// closes fd itself (the conn holds a duplicate).
func fileConn(fd int) (net.Conn, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd))
	defer f.Close()
	return net.FileConn(f)
}

// clientConn is the client: under tcpserver fd 0 and fd 1 are the same
// TCP socket, used as one net.Conn (half-close by shutdown). Otherwise
// (pipes, a terminal, two different sockets) reads come from fd 0 and
// writes go to fd 1, and a half-close closes fd 1.
func clientConn() (net.Conn, error) {
	var s0, s1 syscall.Stat_t
	if err := syscall.Fstat(0, &s0); err != nil {
		return nil, err
	}
	if err := syscall.Fstat(1, &s1); err != nil {
		return nil, err
	}
	if s0.Mode&syscall.S_IFMT == syscall.S_IFSOCK && s0.Dev == s1.Dev && s0.Ino == s1.Ino {
		// fd 1 stays open: shutdown acts on the socket, not the descriptor.
		return fileConn(0)
	}
	// Duplicates, because the runtime turns EPIPE on fd 0/1/2 itself into
	// death by SIGPIPE; non-blocking, so that the poller honours deadlines.
	r, err := syscall.Dup(0)
	if err != nil {
		return nil, err
	}
	w, err := syscall.Dup(1)
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(r)
	syscall.CloseOnExec(w)
	syscall.SetNonblock(r, true)
	syscall.SetNonblock(w, true)
	return &pipeConn{r: os.NewFile(uintptr(r), "stdin"), w: os.NewFile(uintptr(w), "stdout")}, nil
}

// pipeConn is a net.Conn made of two files.
type pipeConn struct {
	r, w *os.File
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) Close() error {
	p.r.Close()
	return p.w.Close()
}

// CloseWrite closes fd 1 too: the reader sees end of file only when no
// descriptor of the pipe's writing end is left open.
func (p *pipeConn) CloseWrite() error {
	syscall.Close(1)
	return p.w.Close()
}
func (p *pipeConn) LocalAddr() net.Addr  { return pipeAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr { return pipeAddr{} }
func (p *pipeConn) SetDeadline(t time.Time) error {
	p.r.SetDeadline(t)
	p.w.SetDeadline(t)
	return nil
}
func (p *pipeConn) SetReadDeadline(t time.Time) error  { p.r.SetReadDeadline(t); return nil }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { p.w.SetWriteDeadline(t); return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// prefixConn reads pre before the connection itself: the bytes a client
// sent right after STARTTLS, already buffered, go to the handshake.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// closeWrite half-closes c: a TLS close_notify first, then a shutdown of
// the socket (or the pipe's writing end).
func closeWrite(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite() // close_notify
		c = tc.NetConn()
	}
	if p, ok := c.(*prefixConn); ok {
		c = p.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
