// Package service is the daemontools service directory of imap-tls as
// the files beside this one ship it: run, log/run, signer/run,
// signer/log/run and env/, one default per file. They are static:
// whatever differs between installations (the accounts, the address,
// the port, the mode, where the programs are) is read from env/ at run
// time. imap-tls-conf writes these files byte for byte, and only its
// per-site values into env/. What each file is, and each default's
// reason: README.md beside this file.
package service

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed run log/run signer/run signer/log/run env
var files embed.FS

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
