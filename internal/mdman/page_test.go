package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"imap-tls/internal/suite"
)

var meta = Meta{Name: "prog", Section: "8", Refs: []ref{{"prog", "8"}, {"other", "1"}}}

func page(t *testing.T, src string) string {
	t.Helper()
	out, err := Page(src, meta)
	if err != nil {
		t.Fatalf("Page: %v", err)
	}
	return out
}

func contains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in:\n%s", w, out)
		}
	}
}

const minimal = "# prog\n\nDoes one thing.\n\n## Interface\n\n    prog [ -x ] child\n\n"

func TestSkeleton(t *testing.T) {
	out := page(t, minimal+"It does it.\n\n## Exit codes\n\n100 usage.\n\n## Example\n\n    prog true\n")
	contains(t, out,
		".TH \"PROG\" 8 \"\" imap-tls\n",
		".SH NAME\nprog \\- Does one thing.\n",
		".SH SYNOPSIS\n.PP\n.in +4n\n.ti -4n\n\\fBprog\\fR [ \\-x ] child\n.in\n",
		".SH DESCRIPTION\n.PP\nIt does it.\n",
		".SH \"EXIT STATUS\"\n",
		".SH \"EXAMPLES\"\n.PP\n.RS 4\n.nf\nprog true\n.fi\n.RE\n",
		".SH SEE ALSO\n.BR other (1)\n",
	)
	if strings.Contains(out, "'\\\" t") {
		t.Error("tbl asked for without a table")
	}
	meta := meta
	meta.Date = "2026-12-05"
	out, _ = Page(minimal, meta)
	contains(t, out, `.TH "PROG" 8 "2026-12-05" imap-tls`)
}

func TestRefused(t *testing.T) {
	for src, want := range map[string]string{
		"Does one thing.\n":                    "no title",
		"# other\n\nDoes.\n":                   `titled "other"`,
		"# prog\n\n## Interface\n":             "no summary",
		"# prog\n\nDoes.\n\n## Options\n":      "## Interface must be the first",
		"# prog\n\nDoes.\n\n## Interface\n\nx": "must start with an indented block",
	} {
		if _, err := Page(src, meta); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}

func TestInline(t *testing.T) {
	out := page(t, minimal+"A `-d fd` and **strong `x`** and *em* and a_b_c and 2 * 3 * 4.\n"+
		"A [other](../other/README.md), [its options](../other/README.md#options),\n"+
		"[a file](proxy.nft), [a place](#notes) and \\*not em\\*.\n"+
		".starts with a dot\n'and an apostrophe\nback\\slash \\e, µs and 2 × 3.\n"+
		"A wrapped `code\nspan` and ``a `tick` inside``.\n")
	contains(t, out,
		`A \fB\-d fd\fR and \fBstrong \fBx\fB\fR and \fIem\fR and a_b_c and 2 * 3 * 4.`,
		`A \fBother\fR(1), its options,`,
		`a file, a place and *not em*.`,
		"\n\\&.starts with a dot\n\\&'and an apostrophe\n",
		`back\eslash \ee, \[u00B5]s and 2 \[u00D7] 3.`,
		`A wrapped \fBcode span\fR and \fBa `+"`tick`"+` inside\fR.`,
	)
}

func TestLists(t *testing.T) {
	out := page(t, minimal+`In this order:

1. First, wrapped
   onto a second line.
2. Second, with a block:

       code in an item

   and a paragraph after it,
   - a nested bullet
   - another
3. Third.

- a bullet with a lazy
continuation line

After the lists.
`)
	contains(t, out,
		".IP 1. 4\nFirst, wrapped\nonto a second line.\n",
		".IP 2. 4\nSecond, with a block:\n.RS 4\n.PP\n.RS 4\n.nf\ncode in an item\n.fi\n.RE\n.PP\nand a paragraph after it,\n.IP \\(bu 2\na nested bullet\n.IP \\(bu 2\nanother\n.RE\n",
		".IP 3. 4\nThird.\n",
		".IP \\(bu 2\na bullet with a lazy\ncontinuation line\n.PP\nAfter the lists.\n",
	)
	// a wrapped line that starts with a number is text, not a list
	out = page(t, minimal+"See RFC\n3501. It says so.\n")
	contains(t, out, ".PP\nSee RFC\n3501. It says so.\n")
}

func TestTables(t *testing.T) {
	out := page(t, minimal+"| file | mode |\n|---|---|\n| `run` | 0755 |\n| env/ | 0644 |\n")
	contains(t, out, "'\\\" t\n", ".TS\ntab(\t);\nlb lb\nl l.\n\\&file\t\\&mode\n_\n\\&\\fBrun\\fR\t\\&0755\n\\&env/\t\\&0644\n.TE\n")
	wide := "| failure | exit | message |\n|---|---|---|\n" +
		"| a key that does not match the certificate it came with | 100 | `unable to load certificate /x: private key does not match` |\n" +
		"| a pipe `a|b` in code | | escaped \\| pipe |\n"
	out = page(t, minimal+wide)
	contains(t, out,
		".PP\n\\fBfailure | exit | message\\fR\n",
		".TP\na key that does not match the certificate it came with\nexit: 100\n.br\nmessage: \\fBunable to load certificate /\\:x: private key does not match\\fR\n",
		".TP\na pipe \\fBa|b\\fR in code\nmessage: escaped | pipe\n",
	)
}

// TestGroff: what Page makes of every page of the suite renders without
// a warning (where groff is installed), and every program of the suite
// has a page to make it from.
func TestGroff(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("no groff: rendering not checked (apt-get install groff-base)")
	}
	var refs []ref
	for _, p := range suite.Programs {
		refs = append(refs, ref{p, "8"})
	}
	for _, p := range suite.Programs {
		src, err := os.ReadFile(filepath.Join("..", "..", p, "README.md"))
		if err != nil {
			t.Errorf("program %s has no page: %v", p, err)
			continue
		}
		out, err := Page(string(src), Meta{Name: p, Section: "8", Refs: refs})
		if err != nil {
			t.Errorf("%s/README.md: %v", p, err)
			continue
		}
		if groff == "" {
			continue
		}
		cmd := exec.Command(groff, "-t", "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%s: groff: %v\n%s", p, err, stderr.String())
		}
	}
}
