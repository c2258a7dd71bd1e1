// Package portholder says who holds a TCP port: the listening sockets
// of /proc/net/tcp and /proc/net/tcp6 on that port, and the processes
// whose descriptors hold them (/proc/PID/fd links "socket:[INODE]").
// imap-tls-server names the holder when the front's address cannot be
// bound; imap-tls-check names it when something other than the
// service's tcpserver listens there. Linux only; another user's
// processes can be seen only by root (their /proc/PID/fd is closed to
// others).
package portholder

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Proc is one process that holds a socket.
type Proc struct {
	Pid  int
	Name string // /proc/PID/comm
}

// Listener is one listening socket and the processes that hold it.
type Listener struct {
	Addr  netip.AddrPort
	Inode uint64
	Procs []Proc
}

// procRoot is /proc; a test points it elsewhere.
var procRoot = "/proc"

// Holding returns the listening sockets that keep ip:port from being
// bound: on that port, at that address, or at either's wildcard (ip "0"
// is tcpserver's "every address"; an IPv6 wildcard covers IPv4 too, as
// a dual-stack socket does). Each comes with the processes holding it,
// where they can be seen.
func Holding(ip string, port int) ([]Listener, error) {
	var want netip.Addr // invalid: every address
	if ip != "0" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("ip %q is not an address", ip)
		}
		want = a.Unmap()
	}
	var out []Listener
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		ls, err := listening(filepath.Join(procRoot, f), port)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		for _, l := range ls {
			a := l.Addr.Addr().Unmap()
			if !want.IsValid() || a.IsUnspecified() || want.IsUnspecified() || a == want {
				out = append(out, l)
			}
		}
	}
	if len(out) > 0 {
		owners(out)
	}
	return out, nil
}

// listening reads one /proc/net/tcp{,6} file: the sockets in state
// LISTEN (0A) on port.
func listening(path string, port int) ([]Listener, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Listener
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" {
			continue
		}
		ap, ok := parseAddr(fs[1])
		if !ok || int(ap.Port()) != port {
			continue
		}
		ino, err := strconv.ParseUint(fs[9], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, Listener{Addr: ap, Inode: ino})
	}
	return out, sc.Err()
}

// parseAddr reads the kernel's "HEX:PORT": the address as 32-bit words
// in the host's byte order (little-endian on the machines this runs
// on), the port in hex.
func parseAddr(s string) (netip.AddrPort, bool) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return netip.AddrPort{}, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a, uint16(port)), true
}

// owners fills in each listener's processes from /proc/*/fd.
func owners(ls []Listener) {
	byInode := map[string]*Listener{}
	for i := range ls {
		byInode["socket:["+strconv.FormatUint(ls[i].Inode, 10)+"]"] = &ls[i]
	}
	ents, _ := os.ReadDir(procRoot)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join(procRoot, e.Name(), "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(procRoot, e.Name(), "fd", fd.Name()))
			l := byInode[link]
			if err != nil || l == nil || (len(l.Procs) > 0 && l.Procs[len(l.Procs)-1].Pid == pid) {
				continue
			}
			l.Procs = append(l.Procs, Proc{pid, comm(pid)})
		}
	}
	for i := range ls {
		sort.Slice(ls[i].Procs, func(a, b int) bool { return ls[i].Procs[a].Pid < ls[i].Procs[b].Pid })
	}
}

func comm(pid int) string {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// Procs are the processes of every listener in ls, each once, by pid.
func Procs(ls []Listener) []Proc {
	seen := map[int]bool{}
	var out []Proc
	for _, l := range ls {
		for _, p := range l.Procs {
			if !seen[p.Pid] {
				seen[p.Pid] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Pid < out[b].Pid })
	return out
}

// Describe names the holders for a message: "dovecot pid 812",
// "dovecot pid 812, imap-login pid 830", at most three and "and N
// more"; "a process this user cannot see (run as root to see which)"
// when the sockets are there and their processes are not visible.
func Describe(ls []Listener) string {
	ps := Procs(ls)
	if len(ps) == 0 {
		if os.Geteuid() == 0 {
			return "a socket no process holds any more"
		}
		return "a process this user cannot see (run as root to see which)"
	}
	var parts []string
	for i, p := range ps {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ps)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s pid %d", p.Name, p.Pid))
	}
	return strings.Join(parts, ", ")
}
