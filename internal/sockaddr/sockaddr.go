// Package sockaddr reads a server's socket address as the suite spells
// it (a unix socket path, IPv4:port or [IPv6]:port, numeric only) and
// connects to it with bare system calls, within a time bound: the
// connect of setuidgid-chroot -c fd:address (the default chain) and of
// makesock -c, the
// step that puts the IMAP or POP3 server on the proxy's fd 3.
//
// Bare system calls, not the net package: net would start the runtime's
// poller, whose descriptors take the lowest free numbers (the very fd
// the socket must go on), and its start costs every connection.
package sockaddr

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Timeout bounds the connect. A server that is down answers at
// once (RST on loopback, ENOENT or ECONNREFUSED for a unix socket): the
// timeout bites only when packets vanish (a firewall that drops, a host
// that is gone) or a unix listener's backlog stays full. 5 s lets a lost
// SYN be sent again twice (Linux retransmits it 1 s and 3 s after the
// first) and still leaves the client, who waits for a greeting, its
// answer (a BYE) well within any client's own timeout.
const Timeout = 5 * time.Second

// Unix is the unix socket at path, as it is: relative or absolute,
// without Parse's "/ or ." rule (setuidgid-chroot -s takes any path).
func Unix(path string) *Address {
	return &Address{Text: path, Family: unix.AF_UNIX, SA: &unix.SockaddrUnix{Name: path}}
}

// Address is where a connect goes.
type Address struct {
	Text   string // as given, for messages
	Family int    // AF_UNIX, AF_INET, AF_INET6
	SA     unix.Sockaddr
}

// maxUnixPath is sun_path's room, its terminating NUL excluded.
const maxUnixPath = 107

var ErrAddress = errors.New("not a unix socket path (starting with / or .), IPv4:port or [IPv6]:port")

// Parse reads an address: a unix socket path (it starts with '/'
// or '.'), a numeric IPv4:port or [IPv6]:port. No name is looked up: a
// DNS lookup per connection would stall every connection when DNS does.
func Parse(s string) (*Address, error) {
	a := &Address{Text: s}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		switch {
		case strings.IndexByte(s, 0) >= 0:
			return nil, ErrAddress
		case len(s) > maxUnixPath:
			return nil, errors.New("a unix socket path has at most " + strconv.Itoa(maxUnixPath) + " bytes")
		}
		a.Family, a.SA = unix.AF_UNIX, &unix.SockaddrUnix{Name: s}
		return a, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, ErrAddress
	}
	host, p := s[:i], s[i+1:]
	port, ok := parsePort(p)
	if !ok {
		if _, _, ok6 := parseHost(host); ok6 {
			return nil, errors.New("port " + strconv.Quote(p) + " is not a number from 1 to 65535")
		}
		return nil, ErrAddress
	}
	ip, v6, ok := parseHost(host)
	if !ok {
		return nil, ErrAddress
	}
	if v6 {
		a.Family, a.SA = unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: ip}
	} else {
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip[12:])
		a.Family, a.SA = unix.AF_INET, sa
	}
	return a, nil
}

// parseHost reads "[IPv6]" or an IPv4 address; an IPv4 address comes
// back in the last 4 bytes.
func parseHost(s string) (ip [16]byte, v6, ok bool) {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		ip, ok = parseIPv6(s[1 : len(s)-1])
		return ip, true, ok
	}
	v4, ok := parseIPv4(s)
	copy(ip[12:], v4[:])
	return ip, false, ok
}

// parsePort reads 1 to 65535 in decimal digits.
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n >= 1 && n <= 65535
}

// parseIPv4 reads a dotted quad, four decimal numbers up to 255 without
// leading zeros (as net/netip: 010 could mean 8 or 10).
func parseIPv4(s string) (ip [4]byte, ok bool) {
	for i := 0; i < 4; i++ {
		if i > 0 {
			if len(s) == 0 || s[0] != '.' {
				return ip, false
			}
			s = s[1:]
		}
		n, k := 0, 0
		for k < len(s) && k < 4 && s[k] >= '0' && s[k] <= '9' {
			n = n*10 + int(s[k]-'0')
			k++
		}
		if k == 0 || k > 3 || n > 255 || (k > 1 && s[0] == '0') {
			return ip, false
		}
		ip[i] = byte(n)
		s = s[k:]
	}
	return ip, len(s) == 0
}

// parseIPv6 reads RFC 4291's text forms: eight groups of 1 to 4 hex
// digits, one "::" for a run of zero groups, a dotted quad as the last
// 32 bits. No zone: a link-local server is not what this is for.
func parseIPv6(s string) (ip [16]byte, ok bool) {
	ellipsis := -1 // where "::" stands, in bytes
	j := 0         // bytes filled
	if strings.HasPrefix(s, "::") {
		ellipsis, s = 0, s[2:]
		if s == "" {
			return ip, true
		}
	}
	for j < 16 {
		n, k := 0, 0
		for k < len(s) && k < 5 && isHex(s[k]) {
			n = n<<4 | hexVal(s[k])
			k++
		}
		if k == 0 || k > 4 {
			return ip, false
		}
		if k < len(s) && s[k] == '.' { // the dotted quad at the end
			if (ellipsis < 0 && j != 12) || j > 12 {
				return ip, false
			}
			v4, ok := parseIPv4(s)
			if !ok {
				return ip, false
			}
			copy(ip[j:], v4[:])
			j, s = j+4, ""
			break
		}
		ip[j], ip[j+1] = byte(n>>8), byte(n)
		j += 2
		s = s[k:]
		if s == "" {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return ip, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return ip, false
			}
			ellipsis, s = j, s[1:]
			if s == "" {
				break
			}
		}
	}
	if s != "" {
		return ip, false
	}
	if j < 16 {
		if ellipsis < 0 {
			return ip, false
		}
		n := 16 - j
		copy(ip[ellipsis+n:], ip[ellipsis:j])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return ip, false // "::" stands for at least one group
	}
	return ip, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}

// Dial connects to a, within timeout, and returns a blocking,
// close-on-exec descriptor (blocking, as a socketpair's end is: prog1
// decides). Raw system calls only: the net package would start the
// runtime's poller, whose descriptors take the lowest free numbers, the
// very fd the socket must go on; and it costs every connection its
// start-up.
func Dial(a *Address, timeout time.Duration) (int, error) {
	fd, err := unix.Socket(a.Family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	if err := connectWithin(fd, a.SA, time.Now().Add(timeout)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, 0); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// connectWithin is a non-blocking connect, waited for until deadline;
// the deadline passed is ETIMEDOUT ("connection timed out").
func connectWithin(fd int, sa unix.Sockaddr, deadline time.Time) error {
	for {
		switch err := unix.Connect(fd, sa); err {
		case nil:
			return nil
		case unix.EAGAIN:
			// A unix socket whose listener's backlog is full: no
			// poll says when there is room, so try again shortly.
			if !time.Now().Before(deadline) {
				return unix.ETIMEDOUT
			}
			Pause(10 * time.Millisecond)
		case unix.EINPROGRESS, unix.EINTR, unix.EALREADY:
			return waitConnected(fd, deadline) // TCP's handshake runs
		default:
			return err
		}
	}
}

// waitConnected polls fd until the connect is done or deadline passes.
func waitConnected(fd int, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int((left+time.Millisecond-1)/time.Millisecond))
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return err
		}
		e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if e != 0 {
			return unix.Errno(e)
		}
		return nil
	}
}

// Pause sleeps without a runtime timer (time.Sleep's first timer starts
// the poller, see Dial).
func Pause(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// TCP says whether a is an IPv4 or IPv6 address, not a unix socket.
func (a *Address) TCP() bool { return a.Family != unix.AF_UNIX }

// ErrorVar is the variable that tells the next program that the socket
// meant for its descriptor fd is not there, and why: FD3_ERROR for fd 3.
// Its value is the failure's text ("unable to connect to
// 127.0.0.1:10143: connection refused"), and fd is then closed. One name
// for every program that opens a socket for the next one
// (setuidgid-chroot -c and -s, makesock -c), so that the program that reads it (stunnel-imap:
// -F's server, -K's key holder) needs to know only its own descriptors,
// not who opened them; it then tells the client (* BYE [UNAVAILABLE],
// -ERR [SYS/TEMP]) instead of leaving it a bare end of file.
func ErrorVar(fd int) string { return "FD" + strconv.Itoa(fd) + "_ERROR" }

// RemoteSuffix is "; remote=IP:PORT" from tcpserver's TCPREMOTEIP and
// TCPREMOTEPORT, as a warning about a connection ends; "" without them.
func RemoteSuffix(getenv func(string) (string, bool)) string {
	ip, ok := getenv("TCPREMOTEIP")
	if !ok || ip == "" {
		return ""
	}
	port, _ := getenv("TCPREMOTEPORT")
	if strings.IndexByte(ip, ':') >= 0 {
		ip = "[" + ip + "]"
	}
	return "; remote=" + ip + ":" + port
}
