package harness

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The allocator's state, one per test process: every port handed out,
// and where the next search starts.
var ports struct {
	sync.Mutex
	given  map[int]bool
	next   int // the next candidate in [lo, hi)
	lo, hi int // the range searched; 0, 0: the kernel's choice (bind to :0)
}

// Port returns a TCP port for a test's listener: one never handed out
// before in this test process, free on 127.0.0.1 and on ::1 when it was
// checked (both bound for a moment, so no other process held it).
//
// Ports come from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768 and up by default), from a start
// that differs between test processes: a client's outgoing connection,
// which takes its local port from the ephemeral range, never takes a
// port handed out here in the moment between Port and the listener's
// bind. When the ephemeral range leaves no room below it, the kernel
// picks (bind to port 0), and only the in-process guarantee holds.
// A listener can still lose the race to another process; StartServer
// and Service.WaitUp take another port then.
func Port(t testing.TB) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
		ports.lo, ports.hi = portRange()
		if ports.hi > ports.lo {
			// a start of its own per test process, so that two test
			// processes do not walk the same ports in step
			n := ports.hi - ports.lo
			ports.next = ports.lo + (os.Getpid()*7919+int(time.Now().UnixNano()/1000))%n
		}
	}
	var lastErr error
	for attempt := 0; attempt < 1000; attempt++ {
		candidate := 0
		if ports.hi > ports.lo {
			candidate = ports.next
			ports.next++
			if ports.next >= ports.hi {
				ports.next = ports.lo
			}
			if ports.given[candidate] {
				continue
			}
		}
		port, err := bindBoth(candidate)
		if err != nil {
			lastErr = err
			continue
		}
		if ports.given[port] {
			continue // the kernel's choice, handed out before
		}
		ports.given[port] = true
		return port
	}
	t.Fatalf("unable to find a free port after 1000 attempts: %v", lastErr)
	return 0
}

// portRange is the range Port searches: from 20000 up to the start of
// the kernel's ephemeral range (0, 0 when that leaves fewer than 1000
// ports).
func portRange() (lo, hi int) {
	lo, hi = 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				hi = n
			}
		}
	}
	if hi-lo < 1000 {
		return 0, 0
	}
	return lo, hi
}

// bindBoth binds port (0: the kernel's choice) on 127.0.0.1, then the
// same port on ::1 (unless the machine has no IPv6 loopback), closes
// both and returns the port.
func bindBoth(port int) (int, error) {
	l4, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	defer l4.Close()
	port = l4.Addr().(*net.TCPAddr).Port
	l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	switch {
	case err == nil:
		l6.Close()
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
		// no IPv6 loopback here: 127.0.0.1 is all there is
	default:
		return 0, err
	}
	return port, nil
}
