package suite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModes(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Modes {
		if seen[m.Name] {
			t.Errorf("mode %q twice", m.Name)
		}
		seen[m.Name] = true
		if got, ok := ModeNamed(m.Name); !ok || got != m {
			t.Errorf("ModeNamed(%q) = %v, %v", m.Name, got, ok)
		}
		if !strings.HasPrefix(m.Name, m.Protocol) {
			t.Errorf("mode %q: protocol %q is not its prefix", m.Name, m.Protocol)
		}
		if m.Secured != (m.Policy != Optional) {
			t.Errorf("mode %q: Secured %v with policy %v", m.Name, m.Secured, m.Policy)
		}
	}
	if _, ok := ModeNamed("implicit"); ok {
		t.Error("ModeNamed(implicit) found a mode")
	}
	if got, want := ModeList(), "imap, imap-, imaps, pop3, pop3- or pop3s"; got != want {
		t.Errorf("ModeList() = %q, want %q", got, want)
	}
	if got, want := ModeAlternatives(), "imap|imap-|imaps|pop3|pop3-|pop3s"; got != want {
		t.Errorf("ModeAlternatives() = %q, want %q", got, want)
	}
	for port, want := range map[int]string{143: "imap", 993: "imaps", 110: "pop3", 995: "pop3s", 1143: "imap"} {
		if got := ModeForPort(port).Name; got != want {
			t.Errorf("ModeForPort(%d) = %q, want %q", port, got, want)
		}
	}
}

// TestProgramsAreFolders: every program in the list is a folder with a
// main package and a page, and no program folder is missing from it.
func TestProgramsAreFolders(t *testing.T) {
	root := filepath.Join("..", "..")
	listed := map[string]bool{}
	for _, p := range Programs {
		listed[p] = true
		for _, f := range []string{"main.go", "README.md"} {
			if _, err := os.Stat(filepath.Join(root, p, f)); err != nil {
				t.Errorf("program %s: %v", p, err)
			}
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), "main.go")); err == nil && !listed[e.Name()] {
			t.Errorf("folder %s has a main.go but is not in Programs", e.Name())
		}
	}
}
