// Command proxy-server reads one PROXY protocol header (v1 or v2) from a
// load balancer on fd 0, sets the ucspi-tcp environment from it, and
// execs the rest of the chain; in the spirit of s6-networking's
// proxy-server. See README.md.
package main

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/internal/opt"
	"imap-tls/internal/proxyproto"
	"imap-tls/log"
)

const synopsis = "-a source[,source...] [ -a ... ] [ -t secs ] [ -v ] child..."

func main() {
	l := log.New("proxy-server")
	l.Exit(run(l, os.Args[1:], os.Environ()))
}

type options struct {
	sources []netip.Prefix
	timeout time.Duration
	verbose bool
	child   []string
}

// maxTimeout bounds -t: a header that takes longer is no balancer's.
const maxTimeout = time.Hour

func parse(args []string) (*options, error) {
	o := &options{timeout: 5 * time.Second}
	set := opt.New(synopsis)
	set.Func('a', func(v string) error {
		for _, s := range strings.Split(v, ",") {
			p, err := parseSource(s)
			if err != nil && s != v {
				return errors.New(strconv.Quote(s) + " is " + err.Error())
			}
			if err != nil {
				return err
			}
			o.sources = append(o.sources, p)
		}
		return nil
	})
	set.Func('t', func(v string) error {
		if err := opt.Seconds(&o.timeout)(v); err != nil {
			return err
		}
		if o.timeout > maxTimeout {
			return errors.New("more than 3600 seconds")
		}
		return nil
	})
	set.Flag('v', &o.verbose)
	child, err := set.Parse(args)
	if err != nil {
		return nil, err
	}
	o.child = child
	switch {
	case len(o.sources) == 0:
		return nil, set.Usage("missing -a: name the load balancers' addresses")
	case len(o.child) == 0 || o.child[0] == "":
		return nil, set.Usage("missing child")
	}
	return o, nil
}

var errNotSource = errors.New("not an address or a prefix")

// parseSource takes an address (a host) or a prefix (10.0.0.0/8,
// 2001:db8::/32).
func parseSource(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, errNotSource
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errNotSource
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// trusted reports whether a is in one of the prefixes (an IPv4 address
// also in its IPv6-mapped form, as an IPv6 listener reports it).
func trusted(a netip.Addr, list []netip.Prefix) bool {
	for _, p := range list {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// outcome is what became of the header.
type outcome int

const (
	proxied outcome = iota // a PROXY header: the environment changes
	local                  // LOCAL or UNKNOWN: the connection's own addresses stand
	quiet                  // nothing came, or a health check: end, no line
)

func run(l *log.Logger, args []string, env []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	getenv := func(k string) string {
		k += "="
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k); ok {
				return v
			}
		}
		return ""
	}
	peer := peerAddr(getenv)
	if !trusted(peer.Addr(), o.sources) {
		l.Warning("remote=%s untrusted source: closed", peer)
		return nil
	}
	deadline := time.Now().Add(o.timeout)
	h, err := readHeader(fdReader(0, deadline), fdPeek(0))
	switch {
	case errors.Is(err, io.EOF) && h.Version == 0:
		return nil // closed before its first byte: a port probe, a check
	case err != nil:
		l.Warning("remote=%s %s: closed", peer, headerError(err))
		return nil
	}
	what := proxied
	if h.Local {
		what = local
	}
	// HAProxy's health checks, every second per server: with
	// send-proxy-v2 a LOCAL header, with send-proxy a TCP4 line that
	// names the balancer's own connection; then close. Such a
	// connection starts nothing and logs nothing. (Only these wait for
	// the close: a client's header names the client.)
	if (h.Local || h.Src.Addr().Unmap() == peer.Addr().Unmap()) && closedSoon(0, 100*time.Millisecond) {
		what = quiet
	}
	switch what {
	case quiet:
		if o.verbose {
			l.Info("remote=%s local header, then closed: a health check", peer)
		}
		return nil
	case proxied:
		env = setEnv(env, h)
	}
	if o.verbose {
		l.Info("remote=%s via=%s header v%d", remoteOf(h, peer), peer, h.Version)
	}
	return execChild(o.child, env)
}

// peerAddr is the balancer's address: tcpserver's TCPREMOTEIP and
// TCPREMOTEPORT, else the socket's peer.
func peerAddr(getenv func(string) string) netip.AddrPort {
	if ip, err := netip.ParseAddr(getenv("TCPREMOTEIP")); err == nil {
		port, _ := strconv.ParseUint(getenv("TCPREMOTEPORT"), 10, 16)
		return netip.AddrPortFrom(ip.WithZone(""), uint16(port))
	}
	if sa, err := unix.Getpeername(0); err == nil {
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		}
	}
	return netip.AddrPort{}
}

func remoteOf(h proxyproto.Header, peer netip.AddrPort) netip.AddrPort {
	if h.Local {
		return peer
	}
	src, _ := addrs(h)
	return netip.AddrPortFrom(src, h.Src.Port())
}

// addrs are the header's client and server addresses as the chain is to
// name them. An IPv4-mapped pair (a balancer on a dual-stack IPv6
// socket: ::ffff:192.0.2.99 to ::ffff:198.51.100.1) becomes plain IPv4,
// so that the proxy's log, the environment and the PROXY header the
// proxy sends on (IPv4 then: stunnel-imap -H) all say 192.0.2.99. A
// mapped address beside a real IPv6 one stays mapped: the header sent
// on must be IPv6 then (both addresses of a header have one family), so
// the server (Dovecot's rip=) can only name it ::ffff:192.0.2.99, and
// the proxy's remote= (TCPREMOTEIP as set here) says the same.
func addrs(h proxyproto.Header) (src, dst netip.Addr) {
	src, dst = h.Src.Addr(), h.Dst.Addr()
	if src.Unmap().Is4() && dst.Unmap().Is4() {
		return src.Unmap(), dst.Unmap()
	}
	return src, dst
}

// errTimeout: the header did not come in time.
var errTimeout = errors.New("timeout")

func headerError(err error) string {
	switch {
	case errors.Is(err, errTimeout):
		return "no whole PROXY header in time"
	case errors.Is(err, io.EOF):
		return "connection closed in the PROXY header"
	case errors.Is(err, proxyproto.ErrSignature):
		return "no PROXY header"
	case errors.Is(err, proxyproto.ErrTooLong):
		return "PROXY header too long"
	case errors.Is(err, proxyproto.ErrFamily):
		return "PROXY header not for TCP"
	case errors.Is(err, proxyproto.ErrMalformed):
		return "malformed PROXY header"
	}
	return "unable to read the PROXY header: " + log.Clip(log.Reason(err), 200)
}

// readHeader reads exactly one header through read, asking it for no
// more bytes than proxyproto.Need says the header still needs: the
// client's first bytes, maybe in the same segment, stay in the socket
// for the next program. Version is 0 when not a byte came.
//
// peek, when not nil, copies into its argument what has arrived and not
// been read yet, without taking it (fdPeek: MSG_PEEK on a socket). Then
// as much of the header as has arrived is asked for at once (reach):
// one read for a header that came in one segment, as a balancer sends
// it, instead of a poll and a read for each byte of a v1 line, or three
// for v2.
func readHeader(read func([]byte) (int, error), peek func([]byte) int) (proxyproto.Header, error) {
	var b, arrived []byte
	for {
		n, err := proxyproto.Need(b)
		if err != nil {
			return proxyproto.Header{Version: 1}, err
		}
		if n == len(b) {
			h, err := proxyproto.Parse(b)
			if err != nil {
				h.Version = 1
			}
			return h, err
		}
		if peek != nil {
			if arrived == nil {
				arrived = make([]byte, proxyproto.MaxV2)
			}
			n = reach(b, n, arrived[:peek(arrived)])
		}
		buf := make([]byte, n-len(b))
		k, err := read(buf)
		if k > len(buf) {
			panic("read more than asked")
		}
		b = append(b, buf[:k]...)
		if err != nil {
			if len(b) > 0 {
				return proxyproto.Header{Version: 1}, err
			}
			return proxyproto.Header{}, err
		}
	}
}

// reach is how many bytes of the header can be asked for now: b has
// been read, Need asks for n in all, next has arrived after b. Need is
// asked again of each longer prefix it would have asked for in turn, as
// long as next holds it, so that the reads take exactly what a read of
// n bytes at a time would take, and never a byte past the header's end
// (nor past where Need finds it bad).
func reach(b []byte, n int, next []byte) int {
	c := append(b[:len(b):len(b)], next...)
	for n <= len(c) {
		m, err := proxyproto.Need(c[:n])
		if err != nil || m == n {
			break
		}
		n = m
	}
	return n
}

// fdPeek copies into b what has arrived on socket fd and is not read yet,
// without taking it, and says how much; 0 when nothing has, and for
// anything but a socket (a pipe, a file: read as it comes).
func fdPeek(fd int) func([]byte) int {
	return func(b []byte) int {
		for {
			n, _, err := unix.Recvfrom(fd, b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n < 0 {
				return 0
			}
			return n
		}
	}
}

// fdReader reads from fd with poll(2) under deadline; end of file is
// io.EOF.
func fdReader(fd int, deadline time.Time) func([]byte) (int, error) {
	return func(b []byte) (int, error) {
		for {
			ms := time.Until(deadline).Milliseconds()
			if ms <= 0 {
				return 0, errTimeout
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, int(ms))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return 0, err
			}
			if n == 0 {
				return 0, errTimeout
			}
			k, err := unix.Read(fd, b)
			switch {
			case err == unix.EINTR || err == unix.EAGAIN:
				continue
			case err != nil:
				return 0, err
			case k == 0:
				return 0, io.EOF
			}
			return k, nil
		}
	}
}

// closedSoon reports whether the peer closes fd within d without
// sending a byte (a health check's LOCAL header, then FIN or RST).
func closedSoon(fd int, d time.Duration) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(pfd, int(d.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return false
		}
		break
	}
	if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
		return true
	}
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n == 0 && err == nil || err == unix.ECONNRESET
}

// setEnv sets the ucspi-tcp variables from a PROXY header: the client's
// address and port, the address and port it connected to, and PROTO
// (TCP or TCP6, as ucspi-tcp-ipv6's tcpserver sets it). TCPREMOTEHOST
// and TCPREMOTEINFO, the balancer's, are removed.
func setEnv(env []string, h proxyproto.Header) []string {
	src, dst := addrs(h)
	proto := "TCP"
	if !src.Is4() {
		proto = "TCP6"
	}
	out := make([]string, 0, len(env)+5)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT", // set below
			"TCPREMOTEHOST", "TCPREMOTEINFO": // dropped: they were the balancer's
			continue
		}
		out = append(out, kv)
	}
	return append(out,
		"PROTO="+proto,
		"TCPREMOTEIP="+src.String(),
		"TCPREMOTEPORT="+strconv.Itoa(int(h.Src.Port())),
		"TCPLOCALIP="+dst.String(),
		"TCPLOCALPORT="+strconv.Itoa(int(h.Dst.Port())))
}

func execChild(child []string, env []string) error {
	path, err := exec.LookPath(child[0])
	if err != nil {
		var e *exec.Error
		if errors.As(err, &e) && errors.Is(e.Err, exec.ErrNotFound) {
			err = syscall.ENOENT
		}
		return log.Temp(err, "run %s", child[0])
	}
	err = syscall.Exec(path, child, env)
	return log.Temp(err, "run %s", path)
}
