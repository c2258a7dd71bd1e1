// Command mdman writes a program's man page from its README.md page, so
// that every fact is spelled once; `sh redo.do install` runs it for every
// program of the suite. What it reads and writes, its options and exit
// codes: README.md beside this file.
package main

import (
	"errors"
	"os"
	"regexp"
	"strings"

	"imap-tls/internal/opt"
	"imap-tls/log"
)

const synopsis = "[ -d date ] [ -r name:section ]... name section page.md"

func main() {
	l := log.New("mdman")
	l.Exit(run(os.Args[1:]))
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	sectionRE = regexp.MustCompile(`^[1-9][a-z]*$`)
	dateRE    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

func run(args []string) error {
	s := opt.New(synopsis)
	var date string
	var refs []ref
	s.Func('d', func(v string) error {
		if !dateRE.MatchString(v) {
			return errors.New("not a date YYYY-MM-DD")
		}
		date = v
		return nil
	})
	s.Func('r', func(v string) error {
		name, sec, ok := strings.Cut(v, ":")
		if !ok || !nameRE.MatchString(name) || !sectionRE.MatchString(sec) {
			return errors.New("not name:section")
		}
		refs = append(refs, ref{name, sec})
		return nil
	})
	operands, err := s.Parse(args)
	if err != nil {
		return err
	}
	if len(operands) != 3 {
		return s.Usage("")
	}
	name, section, file := operands[0], operands[1], operands[2]
	if !nameRE.MatchString(name) {
		return s.Usagef("bad name %q", name)
	}
	if !sectionRE.MatchString(section) {
		return s.Usagef("bad section %q", section)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return log.Temp(err, "read %s", file)
	}
	out, err := Page(string(src), Meta{Name: name, Section: section, Date: date, Refs: refs})
	if err != nil {
		return log.Config(nil, "%s: %v", file, err)
	}
	if _, err := os.Stdout.WriteString(out); err != nil {
		return log.Temp(err, "write the man page of %s", name)
	}
	return nil
}

// Meta is what the page itself does not say: where its man page goes.
type Meta struct {
	Name, Section string
	Date          string // YYYY-MM-DD, or none
	Refs          []ref  // the suite's pages, for SEE ALSO and links
}

type ref struct{ name, section string }

func (m Meta) sectionOf(name string) (string, bool) {
	for _, r := range m.Refs {
		if r.name == name {
			return r.section, true
		}
	}
	return "", false
}
