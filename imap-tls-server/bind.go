package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"imap-tls/internal/portholder"
	"imap-tls/log"
)

// bindable tries to bind the front's address itself, then closes it,
// before tcpserver is exec'd: tcpserver's own failure ("unable to bind:
// address already used") names no address and no holder, once a second
// under supervise. Go's listener sets SO_REUSEADDR, as tcpserver does:
// connections still open on the port from a previous tcpserver (svc -t)
// do not keep it from binding, a listener does. Port 0 (any free one,
// -1) is not looked at.
func bindable(ip, port string) error {
	if port == "0" {
		return nil
	}
	addr := listenAddress(ip, port)
	host := ip
	if ip == "0" {
		host = "" // every address, both families, as tcpserver's 0
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err == nil {
		ln.Close()
		return nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		p := 0
		fmt.Sscan(port, &p)
		ls, herr := portholder.Holding(ip, p)
		if herr == nil && len(ls) > 0 {
			return log.Temp(fmt.Errorf("address already used (held by %s)", portholder.Describe(ls)), "bind %s", addr)
		}
		return log.Temp(errors.New("address already used"), "bind %s", addr)
	}
	return log.Temp(err, "bind %s", addr)
}

// chainAddress finds tcpserver's ip and port in chain (options.chain):
// the two words before the first program it runs for a connection.
func chainAddress(chain []string) (ip, port string, ok bool) {
	for i := 3; i < len(chain); i++ {
		if chain[i] == "makesock" || chain[i] == "proxy-server" || chain[i] == "setuidgid-chroot" {
			return chain[i-2], chain[i-1], true
		}
	}
	return "", "", false
}

// listenAddress is ip:port as a message names it: [IPv6]:port, and
// *:port for 0 (every address).
func listenAddress(ip, port string) string {
	if ip == "0" {
		return "*:" + port
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + port
	}
	return ip + ":" + port
}
