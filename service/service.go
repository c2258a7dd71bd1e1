// Package service is the daemontools service directory of imap-tls as
// the files beside this one ship it: run, log/run, signer/run,
// signer/log/run and env/, one default per file. They are static:
// whatever differs between installations (the accounts, the address,
// the port, the mode, where the programs are) is read from env/ at run
// time. imap-tls-conf writes these files byte for byte, and only its
// per-site values into env/. What each file is, and each default's
// reason: README.md beside this file.
//
// A site (imap-tls-conf -m MODE,MODE...) is made of the files of site/:
// its run file runs an svscan of its own over the fronts (one per mode,
// site/service/front/ written as service/MODE/) and the signer, which
// read the site's env/ (the same defaults, but for FrontSettings) and
// then their own.
package service

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed run log/run signer/run signer/log/run env site
var files embed.FS

// POP3Server is env/IMAPD for a POP3 mode: env/IMAPD's default with
// Dovecot's POP3 haproxy listener (proxy-port.nft guards both ports).
const POP3Server = "127.0.0.1:10110"

// FrontSettings are the settings of a site that each front has in its
// own env/, not in the site's: its mode, its port, its server.
var FrontSettings = []string{"MODE", "PORT", "IMAPD"}

// Front is the directory of SiteFiles that imap-tls-conf writes once for
// each mode, as service/MODE.
const Front = "service/front"

// File is one file of the service directory.
type File struct {
	Path string      // relative to the service directory: "run", "env/PORT"
	Mode fs.FileMode // 0755 for a run file, 0644 for a setting
	Data string
}

// runFiles are the executable files, in the order to write them: run,
// which supervise starts as soon as it appears, last. go:embed keeps no
// file modes, hence the list.
var runFiles = []string{"log/run", "signer/log/run", "signer/run", "run"}

// Files returns the service directory's files: env/ first, in the order
// of the names, then the run files, run last.
func Files() []File {
	var out []File
	names, err := fs.ReadDir(files, "env")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	for _, n := range names {
		out = append(out, File{"env/" + n.Name(), 0644, read("env/" + n.Name())})
	}
	for _, p := range runFiles {
		out = append(out, File{p, 0755, read(p)})
	}
	return out
}

// siteRunFiles are a site's executable files, in the order to write
// them: the site's own run file last.
var siteRunFiles = []string{
	"service/signer/log/run", "service/signer/run",
	Front + "/log/run", Front + "/run",
	"run",
}

// SiteFiles returns a site's files, paths relative to the site: env/
// (every default but FrontSettings), then the run files, the site's run
// last. A front's files are under Front.
func SiteFiles() []File {
	var out []File
	for _, f := range Files() {
		name, ok := strings.CutPrefix(f.Path, "env/")
		if ok && !slices.Contains(FrontSettings, name) {
			out = append(out, f)
		}
	}
	for _, p := range siteRunFiles {
		out = append(out, File{p, 0755, read("site/" + p)})
	}
	return out
}

// Default is env/name's value as shipped, its first line (as envdir
// reads it). A name env/ does not hold is a mistake in the caller: it
// panics.
func Default(name string) string {
	b, err := files.ReadFile("env/" + name)
	if err != nil {
		panic("service: no env/" + name)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

func read(path string) string {
	b, err := files.ReadFile(path)
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	return string(b)
}
