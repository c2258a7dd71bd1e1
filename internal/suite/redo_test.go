package suite

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestRedoPrograms: redo.do (shell, which cannot import this package)
// builds and installs the programs of its own $programs list; it must
// name exactly Programs, so that what is built, installed and given a
// man page is the suite.
func TestRedoPrograms(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "redo.do"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^programs='([^']*)'$`).FindAllSubmatch(src, -1)
	if len(m) != 1 {
		t.Fatalf("redo.do: %d lines programs='...', want one", len(m))
	}
	var names []string
	for _, p := range strings.Fields(string(m[0][1])) {
		dir, name, ok := strings.Cut(p, ":")
		if !ok {
			name = dir
		}
		if dir != name {
			t.Errorf("redo.do builds %s from folder %s: a program's folder is its name", name, dir)
		}
		names = append(names, name)
	}
	want := slices.Clone(Programs)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("redo.do's programs %v, suite.Programs %v", names, want)
	}
}
