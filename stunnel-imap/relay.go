package main

import (
	"io"
	"math"
	"net"
	"runtime"
	"sync/atomic"
	"time"
)

// This file is the session after login: both directions copied
// unparsed until both have ended, under the idle timeout -A.

const relayBuffer = 64 << 10

// direction is how one copying direction ended.
type direction struct {
	seq      int32 // 1 for the direction that ended first
	toServer bool
	err      error // nil at end of file
	write    bool  // the error was on the writing side
}

// relay copies both ways, unparsed, until both directions have ended.
// No read of either peer is running when it starts, so the readers'
// buffers hold exactly what came after the login: a login happens
// either on a server event in a phase where the client is not read
// (greeting, continuation, response; POP3's response and multi-line),
// or on the client event that completed the last client read; the part
// starts no read after it, and the core does not restart the server's.
func (s *session) relay() {
	s.raw.SetDeadline(time.Time{})
	s.server.SetDeadline(time.Time{})
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan direction, 2)
	var order atomic.Int32
	go func() { done <- pump(s.server, s.cr, &s.in, &last, &order, true) }()
	go func() { done <- pump(s.client, s.sr, &s.out, &last, &order, false) }()

	// The idle timer is a function the runtime calls when it fires, not
	// a goroutine that waits for it: checked, and put off again while
	// bytes still flow.
	var idled atomic.Bool
	var idle *time.Timer
	// Made stopped, then started once idle is set: the function may
	// reset it.
	idle = time.AfterFunc(time.Duration(math.MaxInt64), func() {
		since := time.Duration(time.Now().UnixNano() - last.Load())
		if since < s.cfg.idleTimeout {
			idle.Reset(s.cfg.idleTimeout - since)
			return
		}
		idled.Store(true)
		past := time.Now().Add(-time.Second)
		s.raw.SetDeadline(past)
		s.server.SetDeadline(past)
	})
	idle.Reset(s.cfg.idleTimeout)

	first := <-done
	if !first.toServer {
		// The server is done: the client gets the half-close (done by
		// pump on end of file) and a little time to close its side.
		if first.err != nil {
			closeWrite(s.client)
		}
		if !idled.Load() {
			s.raw.SetReadDeadline(time.Now().Add(s.cfg.grace))
		}
	} else if first.err != nil {
		closeWrite(s.server)
	}
	second := <-done
	idle.Stop()
	if second.seq < first.seq {
		first = second
	}

	switch {
	case idled.Load():
		s.warn("session idle for %s: closed", s.cfg.idleTimeout)
		s.raw.SetDeadline(time.Now().Add(s.cfg.linger))
		closeWrite(s.client)
		s.end = endIdleTimeout
	case first.toServer && first.err == nil:
		s.end = endClientEOF
	case !first.toServer && first.err == nil:
		s.end = endServerEOF
	case first.toServer == first.write:
		s.end = endServerError
	default:
		s.end = endClientError
	}
}

// pump copies src to dst with a large buffer and passes end of file on as
// a half-close.
func pump(dst net.Conn, src io.Reader, count, last *atomic.Int64, order *atomic.Int32, toServer bool) direction {
	growPumpStack(false)
	buf := make([]byte, relayBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return direction{seq: order.Add(1), toServer: toServer, err: werr, write: true}
			}
			count.Add(int64(n))
		}
		if err == io.EOF {
			d := direction{seq: order.Add(1), toServer: toServer}
			closeWrite(dst)
			return d
		}
		if err != nil {
			return direction{seq: order.Add(1), toServer: toServer, err: err}
		}
	}
}

// growPumpStack grows a pump's stack once, where it is shallow, to the
// 4 KiB a read or write through crypto/tls needs (see growStack).
//
//go:noinline
func growPumpStack(touch bool) {
	if touch {
		var frame [2 << 10]byte
		runtime.KeepAlive(&frame)
	}
}
