package main

import (
	"errors"
	"os"
	"slices"

	"imap-tls/internal/firewall"
	"imap-tls/log"
)

// guard loads, with -H, the firewall rule that keeps the server's PROXY
// port to root (package internal/firewall), before the chain serves:
// the server believes the header's address from anyone who reaches the
// port, and only the chain, root's, may. It runs at a real start only,
// not for -x. A rule that cannot be loaded keeps the service down.
// A unix socket server needs none (its file mode guards it); a program
// whose port its command line does not say gets a warning, not a guess.
// PROXYFIREWALL=no in the environment (env/PROXYFIREWALL): no rule, a
// warning at each start (the port is guarded some other way).
func guard(args []string) error {
	o, err := parse(args)
	if err != nil || !slices.Contains(o.proxy, "-H") {
		return err
	}
	servers, err := firewall.Servers(o.network, o.address, o.imapd)
	switch {
	case errors.Is(err, firewall.ErrUnix):
		return nil
	case err != nil:
		logger.Warning("no firewall rule keeps the server's PROXY port to root: %s; any local account that reaches it can send a PROXY header of its own (make env/IMAPD the server's address)", err)
		return nil
	}
	switch v := os.Getenv("PROXYFIREWALL"); v {
	case "", "yes":
	case "no":
		logger.Warning("PROXYFIREWALL is no: no firewall rule keeps %s to root; any local account that reaches it can send a PROXY header of its own", firewall.Names(servers))
		return nil
	default:
		return log.Config(nil, "bad value for PROXYFIREWALL: %q (yes, no or empty)", v)
	}
	return firewall.Load(servers, os.Getenv("PATH"))
}
