package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// kind is what a block of Markdown is.
type kind int

const (
	para kind = iota
	code
	table
	list
	heading
)

type block struct {
	kind    kind
	level   int        // heading: the number of #
	text    string     // heading
	lines   []string   // para, code
	rows    [][]string // table: the header row first
	ordered bool       // list
	items   [][]block  // list: each item's blocks
}

var (
	headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$`)
	markerRE  = regexp.MustCompile(`^( {0,3})([-*+]|[0-9]{1,9}[.)])( +|$)`)
	ruleRE    = regexp.MustCompile(`^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$`)
	sepRE     = regexp.MustCompile(`^ *:?-+:? *$`)
)

func blank(l string) bool { return strings.TrimSpace(l) == "" }

// indent is the width of l's leading white space, a tab to the next
// multiple of 4.
func indent(l string) int {
	n := 0
	for _, c := range l {
		switch c {
		case ' ':
			n++
		case '\t':
			n += 4 - n%4
		default:
			return n
		}
	}
	return n
}

// dedent takes up to n columns of leading white space off l.
func dedent(l string, n int) string {
	col := 0
	for i, c := range l {
		if col >= n {
			return l[i:]
		}
		switch c {
		case ' ':
			col++
		case '\t':
			next := col + 4 - col%4
			if next > n {
				return strings.Repeat(" ", next-n) + l[i+1:]
			}
			col = next
		default:
			return l[i:]
		}
	}
	return ""
}

func fence(l string) string {
	t := strings.TrimLeft(l, " ")
	if indent(l) > 3 {
		return ""
	}
	for _, f := range []string{"```", "~~~"} {
		if strings.HasPrefix(t, f) {
			return f
		}
	}
	return ""
}

func isTable(l string) bool { return indent(l) < 4 && strings.HasPrefix(strings.TrimSpace(l), "|") }

// interrupts: l ends a paragraph without a blank line before it. A
// numbered line does only when it starts at 1, so that a wrapped line
// starting "3501. " stays text.
func interrupts(l string) bool {
	if headingRE.MatchString(l) || fence(l) != "" || isTable(l) || ruleRE.MatchString(l) {
		return true
	}
	m := markerRE.FindStringSubmatch(l)
	if m == nil || m[3] == "" {
		return false
	}
	return !isDigit(m[2][0]) || strings.TrimLeft(m[2], "0") == "1."
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parse reads lines into blocks.
func parse(lines []string) []block {
	var out []block
	for i := 0; i < len(lines); {
		l := lines[i]
		switch {
		case blank(l) || ruleRE.MatchString(l):
			i++
		case fence(l) != "":
			f, ind := fence(l), indent(l)
			var body []string
			i++
			for i < len(lines) && !strings.HasPrefix(strings.TrimLeft(lines[i], " "), f) {
				body = append(body, dedent(lines[i], ind))
				i++
			}
			i++ // the closing fence
			out = append(out, block{kind: code, lines: body})
		case indent(l) >= 4:
			var body []string
			for i < len(lines) && (blank(lines[i]) || indent(lines[i]) >= 4) {
				body = append(body, lines[i])
				i++
			}
			out = append(out, block{kind: code, lines: trimCode(body)})
		case headingRE.MatchString(l):
			m := headingRE.FindStringSubmatch(l)
			out = append(out, block{kind: heading, level: len(m[1]), text: strings.TrimSpace(m[2])})
			i++
		case isTable(l):
			var rows []string
			for i < len(lines) && isTable(lines[i]) {
				rows = append(rows, lines[i])
				i++
			}
			out = append(out, tableBlock(rows))
		case markerRE.MatchString(l) && markerRE.FindStringSubmatch(l)[3] != "":
			var b block
			b, i = parseList(lines, i)
			out = append(out, b)
		default:
			body := []string{strings.TrimSpace(l)}
			for i++; i < len(lines) && !blank(lines[i]) && !interrupts(lines[i]); i++ {
				body = append(body, strings.TrimSpace(lines[i]))
			}
			out = append(out, block{kind: para, lines: body})
		}
	}
	return out
}

// trimCode drops a code block's blank lines at its ends and its common
// indentation.
func trimCode(body []string) []string {
	for len(body) > 0 && blank(body[len(body)-1]) {
		body = body[:len(body)-1]
	}
	for len(body) > 0 && blank(body[0]) {
		body = body[1:]
	}
	min := -1
	for _, l := range body {
		if !blank(l) && (min < 0 || indent(l) < min) {
			min = indent(l)
		}
	}
	out := make([]string, len(body))
	for i, l := range body {
		out[i] = strings.TrimRight(dedent(l, min), " \t")
	}
	return out
}

// parseList reads the list that starts at lines[i]; it returns the list
// and the index of the first line after it.
func parseList(lines []string, i int) (block, int) {
	first := markerRE.FindStringSubmatch(lines[i])
	b := block{kind: list, ordered: isDigit(first[2][0])}
	for {
		m := markerRE.FindStringSubmatch(lines[i])
		c := len(m[0])
		if len(m[3]) > 4 { // the item starts with an indented block
			c = len(m[1]) + len(m[2]) + 1
		}
		item := []string{lines[i][c:]}
		j := i + 1
		for j < len(lines) {
			l := lines[j]
			if blank(l) {
				k := j
				for k < len(lines) && blank(lines[k]) {
					k++
				}
				if k == len(lines) || indent(lines[k]) < c {
					break
				}
				for ; j < k; j++ {
					item = append(item, "")
				}
				continue
			}
			if indent(l) >= c {
				item = append(item, dedent(l, c))
				j++
				continue
			}
			if interrupts(l) || markerRE.MatchString(l) && markerRE.FindStringSubmatch(l)[3] != "" {
				break
			}
			// a lazy continuation line, or one indented less than the
			// item's text: it belongs to the paragraph before it
			if blank(item[len(item)-1]) {
				break
			}
			item = append(item, strings.TrimSpace(l))
			j++
		}
		b.items = append(b.items, parse(item))
		// the next item of the same list, after blank lines or not
		k := j
		for k < len(lines) && blank(lines[k]) {
			k++
		}
		if k == len(lines) {
			return b, k
		}
		n := markerRE.FindStringSubmatch(lines[k])
		if n == nil || n[3] == "" || isDigit(n[2][0]) != b.ordered || !b.ordered && n[2] != first[2] || len(n[1]) >= c {
			return b, j
		}
		i = k
	}
}

func tableBlock(lines []string) block {
	b := block{kind: table}
	for _, l := range lines {
		cells := splitRow(strings.TrimSpace(l))
		sep := true
		for _, c := range cells {
			if !sepRE.MatchString(c) {
				sep = false
			}
		}
		if sep && len(b.rows) == 1 {
			continue
		}
		b.rows = append(b.rows, cells)
	}
	return b
}

// splitRow splits "| a | `b|c` | d\|e |" at the pipes outside code spans
// and escapes.
func splitRow(l string) []string {
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case c == '\\' && i+1 < len(l):
			cur.WriteByte(c)
			cur.WriteByte(l[i+1])
			i++
		case c == '`':
			n := runOf(l[i:], '`')
			if end := closing(l, i+n, n); end >= 0 {
				cur.WriteString(l[i : end+n])
				i = end + n - 1
			} else {
				cur.WriteString(l[i : i+n])
				i += n - 1
			}
		case c == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	cells = append(cells, strings.TrimSpace(cur.String()))
	if len(cells) > 0 && cells[0] == "" && strings.HasPrefix(l, "|") {
		cells = cells[1:]
	}
	if len(cells) > 0 && cells[len(cells)-1] == "" && strings.HasSuffix(l, "|") && !strings.HasSuffix(l, `\|`) {
		cells = cells[:len(cells)-1]
	}
	return cells
}

// runOf is the number of c at the start of s.
func runOf(s string, c byte) int {
	n := 0
	for n < len(s) && s[n] == c {
		n++
	}
	return n
}

// closing finds, from i, a run of exactly n backticks; -1 if none.
func closing(s string, i, n int) int {
	for i < len(s) {
		if s[i] != '`' {
			i++
			continue
		}
		m := runOf(s[i:], '`')
		if m == n {
			return i
		}
		i += m
	}
	return -1
}

// section names: the page's own words, in the capitals and the words
// man pages use.
var sectionNames = map[string]string{
	"options":               "OPTIONS",
	"exit codes":            "EXIT STATUS",
	"exit status":           "EXIT STATUS",
	"environment":           "ENVIRONMENT",
	"environment variables": "ENVIRONMENT",
	"notes":                 "NOTES",
	"example":               "EXAMPLES",
	"examples":              "EXAMPLES",
	"files":                 "FILES",
	"see also":              "SEE ALSO",
}

// Page turns a program's README.md into its man page.
func Page(src string, m Meta) (string, error) {
	src = strings.ReplaceAll(src, "\r\n", "\n")
	blocks := parse(strings.Split(src, "\n"))
	if len(blocks) == 0 || blocks[0].kind != heading || blocks[0].level != 1 {
		return "", errors.New("no title: the page must start with # " + m.Name)
	}
	if blocks[0].text != m.Name {
		return "", fmt.Errorf("the page is titled %q, not %q", blocks[0].text, m.Name)
	}
	blocks = blocks[1:]
	if len(blocks) == 0 || blocks[0].kind != para {
		return "", errors.New("no summary: a paragraph must follow the title")
	}
	summary := blocks[0]
	blocks = blocks[1:]
	var intro []block // the summary's further paragraphs, if any
	for len(blocks) > 0 && !(blocks[0].kind == heading && blocks[0].level == 2) {
		intro = append(intro, blocks[0])
		blocks = blocks[1:]
	}
	if len(blocks) == 0 || !strings.EqualFold(blocks[0].text, "interface") {
		return "", errors.New("no synopsis: ## Interface must be the first section")
	}
	blocks = blocks[1:]
	var syn []block
	for len(blocks) > 0 && blocks[0].kind == code {
		syn = append(syn, blocks[0])
		blocks = blocks[1:]
	}
	if len(syn) == 0 {
		return "", errors.New("no synopsis: ## Interface must start with an indented block")
	}

	w := &writer{meta: m}
	if hasTable(blocks) || hasTable(intro) {
		w.raw(`'\" t`)
	}
	w.raw(`.\" Made by internal/mdman from ` + m.Name + `/README.md: edit that page, not this file.`)
	th := ".TH " + quote(strings.ToUpper(m.Name)) + " " + m.Section + " " + quote(m.Date) + " imap-tls"
	w.raw(th)
	// left-aligned, no hyphenation: the text is full of names and
	// options that a hyphen or wide spaces would disguise
	w.raw(".nh")
	w.raw(".ad l")
	w.raw(".SH NAME")
	w.text(esc(m.Name, true) + ` \- ` + w.inline(strings.Join(summary.lines, " "), "R"))
	w.raw(".SH SYNOPSIS")
	for _, b := range syn {
		w.synopsis(b.lines)
	}
	w.raw(".SH DESCRIPTION")
	w.blocks(intro)
	w.blocks(blocks)
	var see []string
	for _, r := range m.Refs {
		if r.name != m.Name {
			see = append(see, ".BR "+esc(r.name, true)+" ("+r.section+")")
		}
	}
	if len(see) > 0 {
		w.raw(".SH SEE ALSO")
		for i, s := range see {
			if i < len(see)-1 {
				s += " ,"
			}
			w.raw(s)
		}
	}
	return w.b.String(), nil
}

func hasTable(bs []block) bool {
	for _, b := range bs {
		if b.kind == table {
			return true
		}
		for _, it := range b.items {
			if hasTable(it) {
				return true
			}
		}
	}
	return false
}

// writer writes roff.
type writer struct {
	meta Meta
	b    strings.Builder
}

// raw writes a request or a line made already.
func (w *writer) raw(l string) { w.b.WriteString(l + "\n") }

// text writes a line of converted text; one that starts with a dot or an
// apostrophe would be a request: \& makes it text.
func (w *writer) text(l string) {
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
		l = `\&` + l
	}
	w.raw(l)
}

// synopsis: each line at the left margin starts a command, with a
// hanging indent for the lines it wraps to; no word is hyphenated (.nh).
func (w *writer) synopsis(lines []string) {
	open := false
	for _, l := range lines {
		if blank(l) {
			continue
		}
		if indent(l) == 0 {
			if open {
				w.raw(".in")
			}
			w.raw(".PP")
			w.raw(".in +4n")
			w.raw(".ti -4n")
			open = true
		}
		var words []string
		for i, f := range strings.Fields(l) {
			if i == 0 && indent(l) == 0 && f == w.meta.Name {
				words = append(words, `\fB`+esc(f, true)+`\fR`)
				continue
			}
			words = append(words, esc(f, true))
		}
		w.text(strings.Join(words, " "))
	}
	if open {
		w.raw(".in")
	}
}

func (w *writer) blocks(bs []block) {
	for _, b := range bs {
		switch b.kind {
		case heading:
			t := w.inline(b.text, "R")
			if b.level <= 2 {
				if n, ok := sectionNames[strings.ToLower(b.text)]; ok {
					t = n
				} else {
					t = strings.ToUpper(t)
				}
				w.raw(".SH " + quote(t))
			} else {
				w.raw(".SS " + quote(t))
			}
		case para:
			w.raw(".PP")
			w.para(b.lines)
		case code:
			w.raw(".PP")
			w.raw(".RS 4")
			w.raw(".nf")
			for _, l := range b.lines {
				w.text(esc(l, true))
			}
			w.raw(".fi")
			w.raw(".RE")
		case table:
			w.table(b.rows)
		case list:
			for n, it := range b.items {
				tag, width := `\(bu`, "2"
				if b.ordered {
					tag, width = fmt.Sprintf("%d.", n+1), "4"
				}
				w.raw(".IP " + tag + " " + width)
				rest := it
				if len(it) > 0 && it[0].kind == para {
					w.para(it[0].lines)
					rest = it[1:]
				}
				if len(rest) > 0 {
					w.raw(".RS " + width)
					w.blocks(rest)
					w.raw(".RE")
				}
			}
		}
	}
}

// para writes a paragraph's text: converted as a whole (a code span may
// wrap), then line by line.
func (w *writer) para(lines []string) {
	for _, l := range strings.Split(w.inline(strings.Join(lines, "\n"), "R"), "\n") {
		w.text(strings.TrimSpace(l))
	}
}

// tableWidth is the widest a table may be to be set as a table: the
// page's 78 columns less its indents, nested lists included. A wider one
// is set as a list, which a terminal shows whole.
const tableWidth = 60

// table writes a narrow table with tbl, its first row (the header) in
// bold; a wide one as a list: a paragraph per row, the first cell as its
// tag, the others after their column's name.
func (w *writer) table(rows [][]string) {
	if len(rows) == 0 {
		return
	}
	cols := 0
	for _, r := range rows {
		cols = max(cols, len(r))
	}
	widths := make([]int, cols)
	for _, r := range rows {
		for c, cell := range r {
			widths[c] = max(widths[c], visible(cell))
		}
	}
	total := 3 * (cols - 1)
	for _, n := range widths {
		total += n
	}
	cell := func(r []string, c int) string {
		if c < len(r) {
			return r[c]
		}
		return ""
	}
	if total <= tableWidth {
		w.raw(".PP")
		w.raw(".TS")
		w.raw("tab(\t);")
		w.raw(strings.TrimSpace(strings.Repeat("lb ", cols)))
		w.raw(strings.TrimSpace(strings.Repeat("l ", cols)) + ".")
		for i, r := range rows {
			font := "R"
			if i == 0 {
				font = "B"
			}
			var cells []string
			for c := 0; c < cols; c++ {
				cells = append(cells, `\&`+w.inline(cell(r, c), font))
			}
			w.raw(strings.Join(cells, "\t"))
			if i == 0 && len(rows) > 1 {
				w.raw("_")
			}
		}
		w.raw(".TE")
		return
	}
	header := rows[0]
	var names []string
	for _, h := range header {
		if h != "" {
			names = append(names, w.inline(h, "B"))
		}
	}
	w.raw(".PP")
	w.text(`\fB` + strings.Join(names, " | ") + `\fR`)
	for _, r := range rows[1:] {
		w.raw(".TP")
		w.text(w.inline(cell(r, 0), "R"))
		first := true
		for c := 1; c < cols; c++ {
			v := cell(r, c)
			if v == "" {
				continue
			}
			if !first {
				w.raw(".br")
			}
			first = false
			if h := cell(header, c); h != "" {
				w.text(w.inline(h, "R") + ": " + w.inline(v, "R"))
			} else {
				w.text(w.inline(v, "R"))
			}
		}
	}
}

// visible is about how many columns a cell's text takes on a terminal.
func visible(s string) int {
	n := 0
	for i := 0; i < len(s); {
		switch {
		case s[i] == '`' || strings.HasPrefix(s[i:], "**"):
			i++
		case s[i] == '[':
			if text, _, m := link(s[i:]); m > 0 {
				n += visible(text)
				i += m
				continue
			}
			n++
			i++
		default:
			_, size := utf8.DecodeRuneInString(s[i:])
			n++
			i += size
		}
	}
	return n
}

// inline converts Markdown's inline marks to roff escapes; font is the
// font around (R, or B in a table's header) that a mark returns to.
func (w *writer) inline(s, font string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && strings.IndexByte("\\`*_{}[]()#+-.!|<>", s[i+1]) >= 0:
			b.WriteString(esc(s[i+1:i+2], false))
			i += 2
		case c == '`':
			n := runOf(s[i:], '`')
			end := closing(s, i+n, n)
			if end < 0 {
				b.WriteString(strings.Repeat("`", n))
				i += n
				continue
			}
			body := strings.ReplaceAll(s[i+n:end], "\n", " ")
			if len(body) > 2 && body[0] == ' ' && body[len(body)-1] == ' ' {
				body = body[1 : len(body)-1]
			}
			b.WriteString(`\fB` + breakable(esc(body, true)) + `\f` + font)
			i = end + n
		case c == '*' && strings.HasPrefix(s[i:], "**"):
			end := strings.Index(s[i+2:], "**")
			if end <= 0 || s[i+2] == ' ' {
				b.WriteString("**")
				i += 2
				continue
			}
			b.WriteString(`\fB` + w.inline(s[i+2:i+2+end], "B") + `\f` + font)
			i += 2 + end + 2
		case (c == '*' || c == '_') && opens(s, i):
			end := closes(s, i+1, c)
			if end < 0 {
				b.WriteString(esc(s[i:i+1], false))
				i++
				continue
			}
			b.WriteString(`\fI` + w.inline(s[i+1:end], "I") + `\f` + font)
			i = end + 1
		case c == '[':
			text, url, n := link(s[i:])
			if n == 0 {
				b.WriteString("[")
				i++
				continue
			}
			b.WriteString(w.link(text, url, font))
			i += n
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			b.WriteString(esc(string(r), false))
			i += size
		}
	}
	return b.String()
}

// opens: the * or _ at s[i] opens an emphasis: after the start, a space
// or an opening bracket, before a letter.
func opens(s string, i int) bool {
	if i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == '\n' || s[i+1] == s[i] {
		return false
	}
	return i == 0 || strings.IndexByte(" \n([\"'", s[i-1]) >= 0
}

// closes finds the c that closes an emphasis opened before from: after
// a letter, before the end, a space or punctuation.
func closes(s string, from int, c byte) int {
	for j := from + 1; j < len(s); j++ {
		if s[j] != c || s[j-1] == ' ' || s[j-1] == '\n' {
			continue
		}
		if j+1 == len(s) || strings.IndexByte(" \n.,;:!?)]\"'", s[j+1]) >= 0 {
			return j
		}
	}
	return -1
}

// link reads "[text](url)" at the start of s: its text, its url and its
// length; n is 0 when s does not start with a link.
func link(s string) (text, url string, n int) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				if i+1 >= len(s) || s[i+1] != '(' {
					return "", "", 0
				}
				end := strings.IndexByte(s[i+2:], ')')
				if end < 0 {
					return "", "", 0
				}
				return s[1:i], strings.TrimSpace(s[i+2 : i+2+end]), i + 2 + end + 1
			}
		case '`':
			m := runOf(s[i:], '`')
			if e := closing(s, i+m, m); e >= 0 {
				i = e + m - 1
			}
		}
	}
	return "", "", 0
}

// pageLink matches a link to one of the suite's pages: ../name/README.md.
var pageLink = regexp.MustCompile(`^\.\./([a-z0-9._-]+)/README\.md(?:#.*)?$`)

// link is a link's text; a link to a page of the suite named by its path
// or by the program's name becomes the man page's "name(section)".
func (w *writer) link(text, url, font string) string {
	if m := pageLink.FindStringSubmatch(url); m != nil {
		if sec, ok := w.meta.sectionOf(m[1]); ok && (text == m[1] || text == url) {
			return `\fB` + esc(m[1], true) + `\f` + font + "(" + sec + ")"
		}
	}
	return w.inline(text, font)
}

// esc makes text safe for roff: a backslash is \e, a character outside
// ASCII its \[uXXXX] name (so that no input encoding is assumed), and in
// literal text (code) a hyphen is \-, the minus that options are spelled
// with.
func esc(s string, literal bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-' && literal:
			b.WriteString(`\-`)
		case r == '\t':
			b.WriteString("        ")
		case r == '\n':
			b.WriteRune(r) // a paragraph's line ends; code has none
		case r < ' ' || r == 0x7f:
			// a control character has no place in a page
		case r > 0x7f:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// breakable lets a line break after a slash, a colon or a comma of a
// code span, never elsewhere inside a word: long paths and lists then
// fit a terminal's line.
func breakable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if strings.IndexByte("/:,", s[i]) >= 0 && i+1 < len(s) && s[i+1] != ' ' && (i == 0 || s[i-1] != '\\') {
			b.WriteString(`\:`)
		}
	}
	return b.String()
}

// quote is a macro argument in double quotes.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\(dq`) + `"` }
