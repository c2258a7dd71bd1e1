package main

import (
	"bytes"
	_ "embed"
	"os"
	"text/template"
)

//go:embed signer-run.tmpl
var signerRunTemplate string

// defaultSigner is env/SIGNER: the signer's socket, as the run file
// passes it to imap-tls-server -s. Empty: a key process per connection
// (imap-tls-server -k ./ssl/stunnel.pem) instead of the signer.
const defaultSigner = "./signer/socket"

// signerEntries are the signer's service directory, signer/ (run,
// log/run, log/main), a service of its own for svscan, and env/SIGNER.
// Its log/run is a plain multilog: the service's own (the argument) keeps
// tcpserver's status lines, which the signer does not write.
func signerEntries(c *config, _ string) ([]entry, error) {
	var run bytes.Buffer
	vars := struct{ Acct, LogAcct string }{c.acct.name, c.logacct.name}
	if err := template.Must(template.New("signer/run").Parse(signerRunTemplate)).Execute(&run, vars); err != nil {
		return nil, err
	}
	root := func(path string, dir bool, mode os.FileMode, data string) entry {
		return entry{path: path, dir: dir, mode: mode, data: data}
	}
	return []entry{
		root("env/SIGNER", false, 0644, defaultSigner+"\n"),
		// Root's: the socket appears here, 0600; nothing else may.
		root("signer", true, 0755, ""),
		root("signer/log", true, 0755, ""),
		{path: "signer/log/main", dir: true, mode: 0750, uid: c.logacct.uid, gid: c.logacct.gid},
		root("signer/log/run", false, 0755, "#!/bin/sh\n# the signer's log, written by imap-tls-conf\nexec setuidgid "+c.logacct.name+" multilog t ./main\n"),
		root("signer/run", false, 0755, run.String()),
	}, nil
}
