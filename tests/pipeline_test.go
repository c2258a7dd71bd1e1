package tests

// The first two programs of the pipeline under a real tcpserver:
//
//	tcpserver -H -R -l 0 127.0.0.1 PORT
//	makesock
//	  setuidgid-chroot -u imaptls -/ EMPTYJAIL
//	    relay                  (static test program: network fd 0/1 <-> fd 3)
//	-makesock_connect_to
//	  sh prog2.sh              (echoes $TCPREMOTEIP, then every line it gets)

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// pipelineRelaySource is the jailed program: it says who and where it is
// on the network, then relays the network (fd 0/1) to fd 3 and back;
// end-of-file from the client becomes a half-close of fd 3, and
// end-of-file on fd 3 ends the connection.
const pipelineRelaySource = `package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

func main() {
	in, out, peer := os.NewFile(0, "net-in"), os.NewFile(1, "net-out"), os.NewFile(3, "fd3")
	var names []string
	root := ""
	ents, err := os.ReadDir("/")
	for _, e := range ents {
		names = append(names, e.Name())
	}
	root = "[" + strings.Join(names, ",") + "]"
	if err != nil {
		root = "error"
	}
	nnp, _, _ := syscall.RawSyscall(syscall.SYS_PRCTL, 39, 0, 0) // PR_GET_NO_NEW_PRIVS
	fmt.Fprintf(out, "relay uid=%d euid=%d gid=%d egid=%d nnp=%d root=%s pid=%d\r\n",
		syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid(), nnp, root, os.Getpid())
	go func() {
		io.Copy(peer, in)
		syscall.Shutdown(3, syscall.SHUT_WR)
	}()
	io.Copy(out, peer)
	os.Exit(0)
}
`

const pipelineProg2 = `#!/bin/sh
echo "prog2 TCPREMOTEIP=$TCPREMOTEIP TCPREMOTEPORT=$TCPREMOTEPORT"
while IFS= read -r line; do echo "prog2 got: $line"; done
echo "prog2 eof"
`

var (
	pipelineRelayOnce sync.Once
	pipelineRelayPath string
	pipelineRelayErr  error
)

// pipelineRelay builds the relay once per test process, static, into its
// own directory (it has its own go.mod: it is not part of the module).
func pipelineRelay(t *testing.T) string {
	t.Helper()
	pipelineRelayOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imaptls-relay-")
		if err != nil {
			pipelineRelayErr = err
			return
		}
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module relay\n\ngo 1.26\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(pipelineRelaySource), 0o644)
		cmd := exec.Command("go", "build", "-trimpath", "-o", "relay", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pipelineRelayErr = fmt.Errorf("go build relay: %v: %s", err, out)
			return
		}
		pipelineRelayPath = filepath.Join(dir, "relay")
	})
	if pipelineRelayErr != nil {
		t.Fatal(pipelineRelayErr)
	}
	return pipelineRelayPath
}

// pipelineParts returns what both pipeline tests chain: makesock,
// setuidgid-chroot, the relay, an empty jail (mode 0755) and prog2.sh.
func pipelineParts(t *testing.T) (makesock, sgc, relay, jail, prog2 string) {
	t.Helper()
	makesock, sgc, relay = harness.Bin(t, "makesock"), harness.Bin(t, "setuidgid-chroot"), pipelineRelay(t)
	jail = t.TempDir()
	if err := os.Chmod(jail, 0o755); err != nil {
		t.Fatal(err)
	}
	prog2 = filepath.Join(t.TempDir(), "prog2.sh")
	if err := os.WriteFile(prog2, []byte(pipelineProg2), 0o755); err != nil {
		t.Fatal(err)
	}
	return makesock, sgc, relay, jail, prog2
}

// pipelineStart runs tcpserver with prog after its address on a free
// loopback port, and returns it as a harness pipeline (for Stderr and
// WaitNoChildren) once it listens.
func pipelineStart(t *testing.T, prog ...string) *harness.Pipeline {
	t.Helper()
	return harness.StartTcpserver(t, &harness.Pipeline{}, false, nil, prog)
}

func TestPipelineMakesockSetuidgidChroot(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "tcpserver", "sh")
	harness.EnsureAccount(t, "imaptls")
	u, err := user.Lookup("imaptls")
	if err != nil {
		t.Fatalf("account imaptls: %v", err)
	}
	makesock, sgc, relay, jail, prog2 := pipelineParts(t)
	p := pipelineStart(t, makesock, sgc, "-u", "imaptls", "-/", jail, relay, "-makesock_connect_to", "sh", prog2)

	c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
	if err != nil {
		t.Fatalf("unable to connect: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	r := bufio.NewReader(c)
	line := func() string {
		t.Helper()
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading from the pipeline: %v (got %q); stderr: %s", err, s, p.Stderr())
		}
		return strings.TrimRight(s, "\r\n")
	}

	// The jailed program: imaptls's ids, no_new_privs, an empty root.
	want := fmt.Sprintf("relay uid=%s euid=%s gid=%s egid=%s nnp=1 root=[] pid=", u.Uid, u.Uid, u.Gid, u.Gid)
	if got := line(); !strings.HasPrefix(got, want) {
		t.Errorf("relay said %q, want %q...", got, want)
	}
	// prog2 through fd 3, with tcpserver's environment.
	clientPort := c.LocalAddr().(*net.TCPAddr).Port
	want = fmt.Sprintf("prog2 TCPREMOTEIP=127.0.0.1 TCPREMOTEPORT=%d", clientPort)
	if got := line(); got != want {
		t.Errorf("prog2 said %q, want %q", got, want)
	}

	// Bytes both ways: many lines written while the echoes are read.
	const n = 2000
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(c)
		for i := range n {
			fmt.Fprintf(w, "line %d %s\n", i, strings.Repeat("x", i%200))
		}
		if err := w.Flush(); err != nil {
			errc <- err
			return
		}
		errc <- c.(*net.TCPConn).CloseWrite() // end-of-file towards prog2
	}()
	for i := range n {
		want := fmt.Sprintf("prog2 got: line %d %s", i, strings.Repeat("x", i%200))
		if got := line(); got != want {
			t.Fatalf("echo %d: %q, want %q", i, got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing to the pipeline: %v", err)
	}
	// The client's end-of-file reached prog2, and prog2's exit ends the
	// connection.
	if got := line(); got != "prog2 eof" {
		t.Errorf("after the client's end-of-file: %q, want prog2 eof", got)
	}
	if rest, err := r.ReadString('\n'); rest != "" || err == nil {
		t.Errorf("after prog2 ended: %q, %v; want end-of-file", rest, err)
	}
	p.WaitNoChildren(t, 10*time.Second)
	if s := p.Stderr(); strings.Contains(s, "fatal") {
		t.Errorf("the pipeline complained: %s", s)
	}
}

// TestPipelinePerConnectionUID: with -r, two live connections run their
// jailed programs under two uids, each base + its own pid.
func TestPipelinePerConnectionUID(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "tcpserver", "sh")
	makesock, sgc, relay, jail, prog2 := pipelineParts(t)
	const base = 2000000000
	p := pipelineStart(t, makesock, sgc, "-r", fmt.Sprintf("%d:4194304", base), "-/", jail, relay, "-makesock_connect_to", "sh", prog2)
	uids := map[int]bool{}
	var conns []net.Conn
	for i := range 2 {
		c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
		if err != nil {
			t.Fatalf("unable to connect: %v", err)
		}
		defer c.Close()
		conns = append(conns, c)                        // both stay open while the second is checked
		c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
		r := bufio.NewReader(c)
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("connection %d: %v (got %q); stderr: %s", i, err, s, p.Stderr())
		}
		var uid, euid, gid, egid, nnp, pid int
		var root string
		if _, err := fmt.Sscanf(strings.TrimRight(s, "\r\n"), "relay uid=%d euid=%d gid=%d egid=%d nnp=%d root=%s pid=%d", &uid, &euid, &gid, &egid, &nnp, &root, &pid); err != nil {
			t.Fatalf("connection %d: relay said %q: %v", i, s, err)
		}
		if uid != base+pid || euid != uid || gid != uid || egid != uid || nnp != 1 || root != "[]" {
			t.Errorf("connection %d: relay said %q, want uid = gid = %d + pid %d", i, s, base, pid)
		}
		uids[uid] = true
	}
	if len(uids) != 2 {
		t.Errorf("two live connections share a uid: %v", uids)
	}
	for _, c := range conns {
		c.Close()
	}
	p.WaitNoChildren(t, 10*time.Second)
}
