package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/check"
	"imap-tls/log"
)

// status is imap-tls-check -s DIR (issue 19 item 8): what the service
// is doing now, as a small table. DIR is a service directory, or a site
// (imap-tls-conf -m MODE,MODE...: its fronts under DIR/service/, each
// with the site's env/ under its own). For each front: svstat, its
// sessions in use against env/CONCURRENCY (the children of its
// tcpserver: one per connection, what tcpserver's own status line
// counts; log/run keeps that line only at the limit); the signer's
// svstat and socket; the certificate's days left; and from each
// front's log, the last hour's connections by how they ended (end=) and
// the refused logins (authfail=). It changes nothing; exit 0, or 111
// when DIR cannot be read.
func status(dir string, out io.Writer, timeout time.Duration) error {
	fronts, err := frontsOf(dir)
	if err != nil {
		return err
	}
	now := time.Now()
	since := now.Add(-time.Hour)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONT\tMODE\tADDRESS\tSTATE\tSESSIONS")
	signers := map[string]string{} // socket path: its env/SIGNER
	var order []string
	for _, f := range fronts {
		sv := svstatOf(f.dir)
		sessions := "-"
		if sv.pid != 0 {
			sessions = strconv.Itoa(len(children(sv.pid)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\n", f.name, f.env["MODE"], hostPort(f.env["IP"], atoi(f.env["PORT"])), sv.text, sessions, f.env["CONCURRENCY"])
		if s := f.env["SIGNER"]; s != "" {
			p := s
			if !filepath.IsAbs(p) {
				p = filepath.Join(f.dir, p)
			}
			p = filepath.Clean(p)
			if _, ok := signers[p]; !ok {
				signers[p] = s
				order = append(order, p)
			}
		}
	}
	tw.Flush()
	for _, p := range order {
		sv := svstatOf(filepath.Dir(p))
		fmt.Fprintf(out, "signer: %s; %s\n", sv.text, socketState(p, timeout))
	}
	pem := filepath.Join(dir, "ssl", "stunnel.pem")
	fmt.Fprintf(out, "certificate: ssl/stunnel.pem: %s\n", certDays(pem, now))

	fmt.Fprintf(out, "last hour (since %s):\n", since.UTC().Format("2006-01-02 15:04:05 UTC"))
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	counts := make([]map[string]int, len(fronts))
	rows := map[string]bool{}
	fmt.Fprint(tw, "\t")
	for i, f := range fronts {
		counts[i] = logCounts(filepath.Join(f.dir, "log", "main"), since)
		for k := range counts[i] {
			rows[k] = true
		}
		fmt.Fprintf(tw, "%s\t", f.name)
	}
	fmt.Fprintln(tw)
	for _, row := range rowOrder(rows) {
		fmt.Fprintf(tw, "%s\t", row)
		for i := range fronts {
			fmt.Fprintf(tw, "%d\t", counts[i][row])
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// rowOrder: connections, logins, authfail, then each end= value.
func rowOrder(rows map[string]bool) []string {
	out := []string{"connections", "logins", "authfail"}
	var ends []string
	for r := range rows {
		if strings.HasPrefix(r, "end=") {
			ends = append(ends, r)
		}
	}
	sort.Strings(ends)
	return append(out, ends...)
}

// frontDir is one front: its directory, its name in the table, and its
// environment as its run file's envdir makes it.
type frontDir struct {
	name, dir string
	env       map[string]string
}

// frontsOf: DIR itself when it is a service (env/MODE), or a site's
// fronts (DIR/service/*/ with a run file and a MODE, the site's env/
// under their own).
func frontsOf(dir string) ([]frontDir, error) {
	own, err := envdir(filepath.Join(dir, "env"))
	if err != nil {
		return nil, log.Temp(err, "read %s", filepath.Join(dir, "env"))
	}
	if own["MODE"] != "" {
		return []frontDir{{filepath.Base(filepath.Clean(dir)), dir, own}}, nil
	}
	ents, err := os.ReadDir(filepath.Join(dir, "service"))
	if err != nil {
		return nil, log.Config(nil, "%s is neither a service (no env/MODE) nor a site (no service/)", dir)
	}
	var out []frontDir
	for _, e := range ents {
		d := filepath.Join(dir, "service", e.Name())
		fe, err := envdir(filepath.Join(d, "env"))
		if err != nil || fe["MODE"] == "" {
			continue // the signer, or not a front
		}
		env := map[string]string{}
		for k, v := range own {
			env[k] = v
		}
		for k, v := range fe {
			env[k] = v
		}
		out = append(out, frontDir{e.Name(), d, env})
	}
	if len(out) == 0 {
		return nil, log.Config(nil, "%s/service holds no front (a directory with env/MODE)", dir)
	}
	return out, nil
}

// envdir reads a directory as envdir does: each file's first line; an
// empty file, an empty value.
func envdir(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		env[e.Name()] = strings.TrimRight(first, " \t")
	}
	return env, nil
}

// svstatOf is svstat's words for dir, and the pid when up.
func svstatOf(dir string) svState {
	st := svState{dir: dir}
	out, err := exec.Command("svstat", dir).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil && text == "" {
		text = "svstat: " + log.Reason(err)
	}
	st.text = strings.TrimPrefix(text, dir+": ")
	if m := svstatLine.FindStringSubmatch(text); m != nil && m[2] != "" {
		st.running, st.pid, st.seconds = true, atoi(m[2]), atoi(m[3])
	}
	if strings.Contains(st.text, "unable to chdir") || strings.Contains(st.text, "unable to open supervise/ok") || strings.Contains(st.text, "supervise not running") {
		st.text = "supervise not running"
	}
	return st
}

// children are the processes whose parent is pid: a tcpserver's one per
// connection.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err == nil && parentOf(p) == pid {
			out = append(out, p)
		}
	}
	return out
}

// socketState: the signer's socket answers (its ready frame), or why not.
func socketState(path string, timeout time.Duration) string {
	switch st, why := probeSigner(path, timeout); st {
	case signerAnswers:
		return "answers on " + path
	case signerAbsent:
		return "not running: " + path + ": " + why
	default:
		return path + ": " + why
	}
}

var daysText = regexp.MustCompile(`\((\d+ days left|expired \d+ days ago)\)`)

// certDays is the leaf's days left, from the suite's one loader's
// report (its first certificate's line).
func certDays(path string, now time.Time) string {
	findings, err := check.Cert(path, "ssl/stunnel.pem", certfile.WarnDays, now)
	for _, f := range findings {
		if strings.HasPrefix(f.Text, "certificate 1 ") {
			if m := daysText.FindStringSubmatch(f.Text); m != nil {
				if err != nil {
					return m[1] + " (refused: " + log.Clip(err.Error(), 200) + ")"
				}
				return m[1]
			}
		}
	}
	if err != nil {
		return log.Clip(err.Error(), 300)
	}
	return "no certificate found"
}

// connLine is stunnel-imap's one line per connection: what ended it,
// whether the login passed, and the server's refusals of one.
var (
	connLine = regexp.MustCompile(`stunnel-imap: info: remote=\S+ mode=\S+ .* auth=(yes|no)(?: authfail=(\d+))? .* end=(\S+)`)
)

// logCounts reads a multilog directory's files (current, and the
// rotated @*.s and @*.u whose last line may be within the hour) and
// counts the connection lines stamped at or after since.
func logCounts(dir string, since time.Time) map[string]int {
	counts := map[string]int{"connections": 0, "logins": 0, "authfail": 0}
	files, _ := filepath.Glob(filepath.Join(dir, "@*"))
	sort.Strings(files)
	files = append(files, filepath.Join(dir, "current"))
	for _, name := range files {
		if st, err := os.Stat(name); err != nil || st.ModTime().Before(since) {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 8192), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			stamp, rest, ok := strings.Cut(line, " ")
			t, err := tai64n(stamp)
			if !ok || err != nil || t.Before(since) {
				continue
			}
			m := connLine.FindStringSubmatch(rest)
			if m == nil {
				continue
			}
			counts["connections"]++
			if m[1] == "yes" {
				counts["logins"]++
			}
			counts["authfail"] += atoi(m[2])
			counts["end="+m[3]]++
		}
		f.Close()
	}
	return counts
}

// tai64n decodes multilog's timestamp, "@" and 24 hex digits: a TAI64
// label (2^62 + seconds of TAI) and nanoseconds. daemontools' TAI is
// UTC + 10 seconds (tai64nlocal subtracts them; leap seconds ignored).
func tai64n(s string) (time.Time, error) {
	if len(s) != 25 || s[0] != '@' {
		return time.Time{}, fmt.Errorf("not a tai64n stamp: %q", s)
	}
	b, err := hex.DecodeString(s[1:])
	if err != nil {
		return time.Time{}, err
	}
	var secs, nano uint64
	for _, x := range b[:8] {
		secs = secs<<8 | uint64(x)
	}
	for _, x := range b[8:] {
		nano = nano<<8 | uint64(x)
	}
	return time.Unix(int64(secs-(1<<62))-10, int64(nano)), nil
}
