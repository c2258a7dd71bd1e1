package harness

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// TestPortNeverTwice: ports handed out to concurrent callers are all
// different, and each is bindable on 127.0.0.1 when handed out.
func TestPortNeverTwice(t *testing.T) {
	const n = 300
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := Port(t)
			mu.Lock()
			seen[p]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != n {
		for p, c := range seen {
			if c > 1 {
				t.Errorf("port %d handed out %d times", p, c)
			}
		}
		t.Fatalf("%d different ports for %d calls", len(seen), n)
	}
	for p := range seen {
		if p <= 0 || p > 65535 {
			t.Errorf("port %d", p)
		}
	}
}

// TestPortSkipsHeld: a port another listener holds, on 127.0.0.1 or on
// ::1, is refused by bindBoth, so Port passes over it.
func TestPortSkipsHeld(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Logf("%s: %v (skipped)", host, err)
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		if got, err := bindBoth(port); err == nil {
			t.Errorf("port %d held on %s: bindBoth gave %d, want an error", port, host, got)
		}
		l.Close()
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(Port(t)))
	if err != nil {
		t.Fatalf("a port from Port is not free: %v", err)
	}
	l.Close()
}
