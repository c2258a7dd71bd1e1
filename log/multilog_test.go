package log

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The multilog test re-executes the test binary as writer processes: with
// LOG_TEST_WRITER=ID set, TestMain writes that writer's lines through
// New (stderr) and exits.
func TestMain(m *testing.M) {
	if id := os.Getenv("LOG_TEST_WRITER"); id != "" {
		n, _ := strconv.Atoi(id)
		writeLines(n)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	writers          = 12
	linesPerWriter   = 150
	multilogSizeFile = 16777215 // multilog's largest s: no rotation in this test
)

// lineSizes are the message lengths a writer cycles through: short, near
// the limit on both sides, and far beyond it.
var lineSizes = []int{10, 200, 3000, 4000, 4060, 4070, 4080, 5000, 9000, 20000, 70000}

// message is writer w's n-th message: its identity, then its letter
// (a for writer 0, b for 1, ...) with a newline every 97 bytes (escaped
// in the log as \n), up to size bytes, then " end".
func message(w, n int) string {
	size := lineSizes[n%len(lineSizes)]
	var b strings.Builder
	fmt.Fprintf(&b, "w=%d n=%d ", w, n)
	letter := byte('a' + w)
	for i := b.Len(); i < size-4; i++ {
		if i%97 == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(letter)
		}
	}
	b.WriteString(" end")
	return b.String()
}

func writeLines(w int) {
	l := New("logtest")
	for n := 0; n < linesPerWriter; n++ {
		if n%2 == 0 {
			l.Info("%s", message(w, n))
		} else {
			l.Warning("%s", message(w, n))
		}
	}
}

// multilog's line: a TAI64N stamp, then ours; the body is the writer's
// letter and escaped newlines, then " end" or the cut marker.
var multilogLine = regexp.MustCompile(`^@[0-9a-f]{24} logtest: (info|warning): w=([0-9]+) n=([0-9]+) ((?:[a-z]|\\n)*)(?: end|\.\.\. \[cut ([0-9]+) bytes\])$`)

// TestMultilogNoSplice: many processes write long lines (some far over
// 4096 bytes) through one pipe into the real multilog at once; every line
// of multilog's output is one whole message of one writer (its stamp,
// our prefix, one writer's identity and letter only, and the message's
// end or the cut marker with the right count), and every message is
// there exactly once.
func TestMultilogNoSplice(t *testing.T) {
	multilog, err := exec.LookPath("multilog")
	if err != nil {
		t.Fatal("multilog not found: install the Debian package daemontools")
	}
	dir := filepath.Join(t.TempDir(), "log")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ml := exec.Command(multilog, "t", "s"+strconv.Itoa(multilogSizeFile), "n100", dir)
	ml.Stdin = r
	ml.Stderr = os.Stderr
	if err := ml.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	guard := time.AfterFunc(2*time.Minute, func() { ml.Process.Kill() }) // hang guard
	defer guard.Stop()

	var procs []*exec.Cmd
	for i := 0; i < writers; i++ {
		c := exec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), "LOG_TEST_WRITER="+strconv.Itoa(i))
		c.Stderr = w // the pipe itself, shared: no copying goroutine
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, c)
	}
	w.Close()
	for _, c := range procs {
		if err := c.Wait(); err != nil {
			t.Errorf("writer: %v", err)
		}
	}
	if err := ml.Wait(); err != nil {
		t.Fatalf("multilog: %v", err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "@*"))
	files = append(files, filepath.Join(dir, "current"))
	seen := map[[2]int]int{}
	lines, cut := 0, 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines++
			line := sc.Text()
			m := multilogLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d does not parse: %.200q ... %q", lines, line, line[max(0, len(line)-60):])
				continue
			}
			wr, _ := strconv.Atoi(m[2])
			n, _ := strconv.Atoi(m[3])
			if wr >= writers || n >= linesPerWriter {
				t.Errorf("line %d: no such message w=%d n=%d", lines, wr, n)
				continue
			}
			seen[[2]int{wr, n}]++
			letter := string(rune('a' + wr))
			if body := strings.ReplaceAll(m[4], `\n`, ""); strings.Trim(body, letter) != "" {
				t.Errorf("line %d (w=%d n=%d) holds another writer's bytes: %q", lines, wr, n, strings.Trim(body, letter))
			}
			// Our part of the line (multilog's stamp is 26 bytes) plus
			// the newline fits PIPE_BUF.
			if len(line)-26+1 > MaxLine {
				t.Errorf("line %d: %d bytes from us", lines, len(line)-26+1)
			}
			full := oneLine(message(wr, n))
			kind := "info"
			if n%2 == 1 {
				kind = "warning"
			}
			fits := len("logtest: ")+len(kind)+2+len(full)+1 <= MaxLine
			switch {
			case fits && m[5] != "":
				t.Errorf("line %d (w=%d n=%d): cut, but the message fits", lines, wr, n)
			case fits && line[26:] != "logtest: "+kind+": "+full:
				t.Errorf("line %d (w=%d n=%d): not the message as written", lines, wr, n)
			case !fits:
				cut++
				c, err := strconv.Atoi(m[5])
				if m[5] == "" || err != nil {
					t.Errorf("line %d (w=%d n=%d): %d bytes of message, not cut", lines, wr, n, len(full))
					break
				}
				kept := line[len("@")+24+1+len("logtest: ")+len(kind)+2 : len(line)-len(cutMarker(c))]
				if !strings.HasPrefix(full, kept) || len(kept)+c != len(full) {
					t.Errorf("line %d (w=%d n=%d): kept %d bytes and cut %d of %d", lines, wr, n, len(kept), c, len(full))
				}
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fh.Close()
	}
	if lines != writers*linesPerWriter {
		t.Errorf("%d lines, want %d", lines, writers*linesPerWriter)
	}
	for wr := 0; wr < writers; wr++ {
		for n := 0; n < linesPerWriter; n++ {
			if c := seen[[2]int{wr, n}]; c != 1 {
				t.Errorf("message w=%d n=%d seen %d times", wr, n, c)
			}
		}
	}
	if cut == 0 {
		t.Error("no line was long enough to be cut: the test proves nothing")
	}
	t.Logf("%d lines from %d processes, %d cut", lines, writers, cut)
}
