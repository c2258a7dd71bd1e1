package main

import (
	"os"
	"regexp"
	"testing"
)

// TestEndsDocumented: the end= values are the log's contract, so the
// page's table and the set in end.go name the same values, each once,
// and running is never one of them.
func TestEndsDocumented(t *testing.T) {
	page, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^ *\\| `([a-z-]+)` \\|").FindAllSubmatch(page, -1) {
		documented[string(m[1])]++
	}
	inCode := map[string]bool{}
	for e := running + 1; e < endingCount; e++ {
		name := e.String()
		if name == "" || inCode[name] {
			t.Errorf("ending %d has the name %q, empty or twice", int(e), name)
		}
		inCode[name] = true
		if documented[name] != 1 {
			t.Errorf("end=%s is in the page's table %d times, want once", name, documented[name])
		}
	}
	for name := range documented {
		if !inCode[name] {
			t.Errorf("the page's table has end=%s, which end.go does not", name)
		}
	}
	if documented[running.String()] != 0 {
		t.Errorf("the page documents %q, the value of a session not ended", running)
	}
}
