// Package firewall is the nftables rule that keeps the server's PROXY
// port to root. Dovecot's inet_listener with haproxy = yes trusts a
// PROXY header by the connection's source address alone
// (haproxy_trusted_networks): any local account that can connect to it
// can send a header naming any client address, dodge the auth penalty,
// fail2ban and every per-address rule, or frame another address. The
// only legitimate client of that port is the chain's setuidgid-chroot,
// which connects it as root before it drops (-c 3:ADDRESS), or the
// server program makesock starts (a socat), which tcpserver runs as
// root; so the rule rejects every other uid's connection to it:
//
//	add table inet imaptls
//	add chain inet imaptls proxyport_10143 { type filter hook output priority filter; policy accept; }
//	flush chain inet imaptls proxyport_10143
//	add rule inet imaptls proxyport_10143 oifname "lo" tcp dport 10143 meta skuid != 0 counter reject with tcp reset
//
// One chain per server address, in one table of the suite's own: each
// service loads its own (imap-tls-server -H, at every start, in one
// nft -f - transaction), two services with one server load the same
// chain, and loading it again changes nothing (add is a no-op for what
// exists, the flush empties the chain before its one rule goes back).
// A loopback server's chain matches the port on lo, whatever local
// address the connection names (the host's own addresses go through lo
// too); another address's matches that address and port, on any
// interface. service/proxy-port.nft is this package's text for the
// default servers, so that a boot-time copy needs no second spelling.
//
// imap-tls-server loads it (Load), imap-tls-check proves it (its own
// connect as an unprivileged uid); both find the server's addresses
// with Servers.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"imap-tls/internal/check"
	"imap-tls/log"
)

// Table is the suite's nftables table (family inet: IPv4 and IPv6).
const Table = "imaptls"

// Package is the Debian package that has nft.
const Package = "nftables"

// ErrUnix: the server is a unix socket; its file mode guards it, no
// rule is needed (or possible: nftables sees no unix sockets).
var ErrUnix = errors.New("the server is a unix socket: its file mode guards it, no firewall rule is needed")

// Servers returns the TCP addresses the chain connects to for the
// server side, as imap-tls-server takes it: network and address from
// check.ServerAddress (network "tcp": address is the server), or the
// command line imapd. Of a program, only socat's TCP addresses
// (TCP:host:port, TCP4:, TCP6:, TCP-CONNECT:..., options after a comma
// left out) are read, with a numeric host; anything else is not
// guessed: an error says why. A unix socket (network "unix", socat's
// UNIX-CONNECT:) returns ErrUnix.
func Servers(network, address string, imapd []string) ([]netip.AddrPort, error) {
	switch network {
	case "unix":
		return nil, ErrUnix
	case "tcp":
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return nil, fmt.Errorf("server address %s: %v", address, err)
		}
		return []netip.AddrPort{ap}, nil
	}
	if len(imapd) == 0 || filepath.Base(imapd[0]) != "socat" {
		return nil, errors.New("the server is a program whose port its command line does not say (only an address, or socat's TCP:host:port, does)")
	}
	var out []netip.AddrPort
	unix := false
	for _, w := range imapd[1:] {
		kind, rest, ok := strings.Cut(w, ":")
		if !ok {
			continue
		}
		switch strings.ToUpper(kind) {
		case "UNIX-CONNECT", "UNIX-CLIENT", "UNIX":
			unix = true
		case "TCP", "TCP4", "TCP6", "TCP-CONNECT", "TCP4-CONNECT", "TCP6-CONNECT":
			hostPort, _, _ := strings.Cut(rest, ",")
			ap, err := netip.ParseAddrPort(hostPort)
			if err != nil || ap.Port() == 0 {
				return nil, fmt.Errorf("socat's address %s names no numeric IPv4:port or [IPv6]:port (a host name is not guessed)", w)
			}
			out = append(out, ap)
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case unix:
		return nil, ErrUnix
	}
	return nil, errors.New("socat's command line names no TCP:host:port")
}

// chain is the chain's name and its rule's match for one server.
func chain(ap netip.AddrPort) (name, match string) {
	port := fmt.Sprint(ap.Port())
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return "proxyport_" + port, `oifname "lo" tcp dport ` + port
	}
	family := "ip"
	if a.Is6() {
		family = "ip6"
	}
	name = "proxyport_" + strings.NewReplacer(".", "_", ":", "_").Replace(a.String()) + "_" + port
	return name, family + " daddr " + a.String() + " tcp dport " + port
}

// Rules is the nft -f script for servers: one chain each, in the order
// given, each once.
func Rules(servers []netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table inet %s\n", Table)
	var seen []string
	for _, ap := range servers {
		name, match := chain(ap)
		if slices.Contains(seen, name) {
			continue
		}
		seen = append(seen, name)
		fmt.Fprintf(&b, "add chain inet %s %s { type filter hook output priority filter; policy accept; }\n", Table, name)
		fmt.Fprintf(&b, "flush chain inet %s %s\n", Table, name)
		fmt.Fprintf(&b, "add rule inet %s %s %s meta skuid != 0 counter reject with tcp reset\n", Table, name, match)
	}
	return b.String()
}

// Names is servers as a message names them: "127.0.0.1:10143, ...".
func Names(servers []netip.AddrPort) string {
	var s []string
	for _, ap := range servers {
		s = append(s, ap.String())
	}
	return strings.Join(s, ", ")
}

// Load loads Rules(servers) with nft, found in path, in one
// transaction (nft -f -). Its errors: nft not found (111, naming the
// Debian package), or nft's own reason (111: not root, no nf_tables in
// the kernel, ...).
func Load(servers []netip.AddrPort, path string) error {
	what := "load the firewall rule that keeps " + Names(servers) + " to root"
	nft, err := check.LookPath("nft", path)
	if err != nil {
		return log.Temp(nil, "%s: nft not found in $PATH (Debian package %s)", what, Package)
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(Rules(servers))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		why := strings.Join(strings.Fields(out.String()), " ")
		if why == "" {
			why = log.Reason(err)
		}
		return log.Temp(nil, "%s: nft: %s", what, why)
	}
	return nil
}
