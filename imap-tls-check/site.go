package main

import (
	"os"
	"path/filepath"
	"time"
)

// isSite: dir is a site (imap-tls-conf -m MODE,MODE...): no env/MODE of
// its own, and a service/ directory that holds its fronts and signer.
func isSite(dir string) bool {
	own, err := envdir(filepath.Join(dir, "env"))
	if err != nil || own["MODE"] != "" {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, "service"))
	return err == nil && st.IsDir()
}

// checkSite checks a site: first what its fronts share, once, named as
// a service's lines are (env/ but MODE, PORT and IMAPD, the accounts,
// jail/, ssl/stunnel.pem, the memory limits tried, svstat of the site's
// own run (its svscan), the signer's service, log and socket); then
// each front (DIR/service/MODE, which reads the site's env/ under its
// own, as envdir ../../env envdir ./env gives it), its lines prefixed
// with its name ("imaps: env/PORT: ..."): its own settings, the server
// side, the port against the mode, svstat of it and its log, its
// address, the greeting through it; last the firewall rule, once for
// each server address the fronts name.
func checkSite(r *report, dir string, timeout time.Duration) {
	r.seen = map[string]bool{}
	site := &checker{r: r, dir: dir, site: dir, timeout: timeout}
	site.env()
	site.accounts()
	site.jail()
	site.cert()
	site.memStarts("MEMLIMIT", "stunnel-imap")
	if site.env_["SIGNER"] != "" {
		site.memStarts("SIGNERMEMLIMIT", "stunnel-imap-signer")
	}
	site.siteDown = !site.svstat("svstat", dir).running
	fronts, err := frontsOf(dir)
	if err != nil {
		r.bad("service/", "holds no front (a directory with env/MODE): imap-tls-conf -m MODE,MODE... writes one for each mode")
		return
	}
	// The signer each front names (env/SIGNER, from the front's
	// directory: ../signer/socket), once each.
	running := false
	for _, f := range fronts {
		if svstatOf(f.dir).running {
			running = true
		}
	}
	signers := map[string]bool{}
	for _, f := range fronts {
		sock := f.env["SIGNER"]
		if sock == "" {
			continue
		}
		p := sock
		if !filepath.IsAbs(p) {
			p = filepath.Join(f.dir, p)
		}
		if p = filepath.Clean(p); !signers[p] {
			signers[p] = true
			site.signer(sock, f.dir, running)
		}
	}
	var checkers []*checker
	for _, f := range fronts {
		r.prefix = f.name + ": "
		c := &checker{r: r, dir: f.dir, site: dir, frontName: f.name, timeout: timeout, siteDown: site.siteDown}
		checkers = append(checkers, c)
		c.env()
		c.server()
		c.portAgrees()
		c.memStarts("MEMLIMIT", "stunnel-imap") // a front's own env/MEMLIMIT only
		st := c.svstat("svstat", f.dir)
		if st.running {
			c.svstat("log/", c.path("log"))
		}
		if c.listens(st) {
			c.front()
		}
	}
	// The rule guards the server's address, whichever fronts name it:
	// its lines once (r.seen).
	r.prefix = ""
	for _, c := range checkers {
		c.firewall()
	}
}
