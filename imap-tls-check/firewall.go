package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"imap-tls/internal/check"
	"imap-tls/internal/firewall"
	"imap-tls/log"
)

// nobody is the uid and gid the proof connects as: no account of the
// service, no group, what any local account could be.
const nobody = 65534

// firewall proves, with env/PROXYHEADER yes, that only root reaches the
// server's PROXY port: the rule imap-tls-server -H loads at start
// (internal/firewall). For each TCP address the server is reached at,
// root connects (the chain's own way in), then uid 65534 tries, through
// makesock -c as that uid: refused is right; connected means any local
// account can send the server a PROXY header of its own.
func (c *checker) firewall() {
	const what = "firewall"
	argv := strings.Fields(c.env_["IMAPD"])
	if c.env_["PROXYHEADER"] != "yes" || len(argv) == 0 {
		return
	}
	network, address, err := check.ServerAddress(c.dir, argv)
	if err != nil {
		return // reported with env/
	}
	servers, err := firewall.Servers(network, address, argv)
	switch {
	case errors.Is(err, firewall.ErrUnix):
		c.r.ok(what, "%s", err)
		return
	case err != nil:
		c.r.warn(what, "no rule keeps the server's PROXY port to root: %s; any local account that reaches it can send a PROXY header of its own (make env/IMAPD the server's address)", err)
		return
	}
	if uid := os.Geteuid(); uid != 0 {
		c.r.warn(what, "not proven: imap-tls-check runs as uid %d; as root it connects to %s as uid %d, which the rule must refuse", uid, firewall.Names(servers), nobody)
		return
	}
	makesock := c.program("makesock")
	for _, ap := range servers {
		addr := ap.String()
		conn, err := net.DialTimeout("tcp", addr, c.timeout)
		if err != nil {
			c.r.warn(what, "not proven for %s: root cannot connect either: %s", addr, log.Reason(err))
			continue
		}
		conn.Close()
		refused, err := c.connectAs(makesock, addr)
		switch {
		case err != nil:
			c.r.failed(what, "not proven for %s: unable to connect as uid %d: %s", addr, nobody, err)
		case refused == "":
			c.r.bad(what, "a local account can reach the server's PROXY port %s: the firewall rule is not loaded (imap-tls-server -H loads it at start: svc -t this service, as root)", addr)
		default:
			c.r.ok(what, "uid %d refused at %s (%s), root connects: only root reaches the server's PROXY port", nobody, addr, refused)
		}
	}
}

// connectAs connects to addr as uid and gid nobody, with no groups,
// through makesock -c (whose FD3_ERROR says why a connect failed):
// it returns that reason, "" when the connection was made.
func (c *checker) connectAs(makesock, addr string) (string, error) {
	cmd := exec.Command(makesock, "-c", addr, "/bin/sh", "-c", `printf '%s' "$FD3_ERROR"`)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if why := strings.TrimSpace(stderr.String()); why != "" {
			return "", fmt.Errorf("%s", why)
		}
		return "", errors.New(log.Reason(err))
	}
	return strings.TrimPrefix(stdout.String(), "unable to connect to "+addr+": "), nil
}
