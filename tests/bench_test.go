// The benchmarks' tools, checked without measuring anything: fakeimapd
// answers like an IMAP server, loadgen refuses bad input and drives one
// short round against each system kind that is installed, pss.sh finds
// the processes that serve a connection, and bench.sh writes its report.
// No figure is asserted: the machine is shared and timing is noise here.
package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

func TestBenchFakeimapd(t *testing.T) {
	fake := harness.Bin(t, "fakeimapd")
	script := "a CAPABILITY\r\n" +
		"b SELECT INBOX\r\n" +
		"c LOGIN alice {6}\r\nsecret\r\n" +
		"d SELECT INBOX\r\n" +
		"e FETCH 1 BODY[]\r\n" +
		"f FETCH 2 BODY[]\r\n" +
		"g BOGUS\r\n" +
		"h NOOP\r\n" +
		"i LOGOUT\r\n" +
		"j NOOP\r\n" // after LOGOUT: never answered
	cmd := exec.Command(fake, "-s", "1000")
	cmd.Stdin = strings.NewReader(script)
	out, errOut, code := harness.ExitCode(t, cmd)
	if code != 0 || errOut != "" {
		t.Fatalf("fakeimapd exited %d: %s", code, errOut)
	}
	r := bufio.NewReader(strings.NewReader(out))
	line := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("output ends early (%v): %q", err, out)
		}
		if !strings.HasSuffix(l, "\r\n") {
			t.Fatalf("line without CRLF: %q", l)
		}
		return strings.TrimSuffix(l, "\r\n")
	}
	expect := func(want string) {
		t.Helper()
		if got := line(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	expect("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready")
	expect("* CAPABILITY IMAP4rev1 AUTH=PLAIN")
	expect("a OK CAPABILITY completed")
	expect("b NO not logged in")
	expect("+ ready")
	expect("c OK [CAPABILITY IMAP4rev1] LOGIN completed")
	expect("* 1 EXISTS")
	for l := line(); !strings.HasPrefix(l, "d "); l = line() {
	}
	expect("* 1 FETCH (BODY[] {1000}")
	body := make([]byte, 1000)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("message shorter than 1000 bytes: %v", err)
	}
	if !bytes.HasPrefix(body, []byte("From: ")) || !bytes.Contains(body, []byte("\r\n\r\n")) {
		t.Errorf("message is not header, blank line, body: %q", body[:100])
	}
	expect(")")
	expect("e OK FETCH completed")
	expect("f OK FETCH completed") // no message 2: nothing untagged
	expect("g BAD unknown command")
	expect("h OK NOOP completed")
	expect("* BYE logging out")
	expect("i OK LOGOUT completed")
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Errorf("output after LOGOUT: %q", rest)
	}

	for _, args := range [][]string{{"-x"}, {"-s", "12q"}, {"-s", "-1"}, {"extra"}} {
		cmd := exec.Command(fake, args...)
		cmd.Stdin = strings.NewReader("")
		_, errOut, code := harness.ExitCode(t, cmd)
		if code != 100 || !strings.Contains(errOut, "fakeimapd: usage: fakeimapd") && !strings.Contains(errOut, "fakeimapd: fatal: bad message size") {
			t.Errorf("fakeimapd %v: exit %d, %q; want 100 and a usage or fatal line", args, code, errOut)
		}
	}
}

func TestBenchLoadgenRefuses(t *testing.T) {
	lg := harness.Bin(t, "loadgen")
	for _, args := range [][]string{
		{},
		{"-a", "127.0.0.1:1", "-m", "smtp"},
		{"-a", "nocolon"},
		{"-a", "127.0.0.1:1", "-d", "1s", "-n", "3"},
		{"-a", "127.0.0.1:1", "-c", "0"},
		{"-a", "127.0.0.1:1", "-hold", "1", "-holdat", "greeting"},
		// SELECT is IMAP's: a POP3 session has no mailbox to open
		{"-a", "127.0.0.1:1", "-pop3", "-hold", "1", "-holdat", "select"},
	} {
		_, errOut, code := harness.ExitCode(t, exec.Command(lg, args...))
		if code != 100 || !strings.Contains(errOut, "loadgen: usage: loadgen -a host:port") {
			t.Errorf("loadgen %v: exit %d, %q; want 100 and the usage line", args, code, errOut)
		}
	}
	// Nothing listens: every session fails, and that is a temporary
	// failure, with the results still printed.
	port := harness.Port(t)
	out, errOut, code := harness.ExitCode(t, exec.Command(lg, "-a", fmt.Sprintf("127.0.0.1:%d", port), "-m", "plain", "-n", "2"))
	if code != 111 || !strings.Contains(errOut, "loadgen: fatal: 2 of 2 sessions failed") ||
		!strings.Contains(out, "result rounds=1 mode=plain c=1 sessions=0 errors=2") {
		t.Errorf("against a closed port: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// benchServer runs argv, a tcpserver -1 on port 0 or imap-tls-server -1,
// which becomes one, as bench.sh does, with env added to the
// environment, and returns the address and tcpserver's pid.
func benchServer(t *testing.T, env []string, argv ...string) (addr string, pid int) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr harness.LockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unable to start tcpserver: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("tcpserver's stderr: %s", stderr.String())
		}
	})
	port := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		port <- strings.TrimSpace(l)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-port:
		if _, err := strconv.Atoi(p); err != nil {
			t.Fatalf("tcpserver did not print its port: %q, %s", p, stderr.String())
		}
		return "127.0.0.1:" + p, cmd.Process.Pid
	case <-time.After(30 * time.Second):
		t.Fatalf("tcpserver did not start: %s", stderr.String())
	}
	return "", 0
}

// benchField returns key's value in a key=value line.
func benchField(t *testing.T, line, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(key) + `=(\S*)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no %s= in %q", key, line)
	}
	return m[1]
}

func benchResult(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "result ") {
			return l
		}
	}
	t.Fatalf("no result line in %q", out)
	return ""
}

// benchProcs runs pss.sh on tcpserver's pid until the serving processes
// number want (-1: any) and the zombies wantZombies, and returns its last line, its process count
// and its zombie count. Processes start and end asynchronously to the
// client (a held implicit session is held as soon as it is connected, a
// key process exits after it has signed): the loop is a hang guard, not
// a timing check.
func benchProcs(t *testing.T, pid, want, wantZombies int) (line string, procs, zombies int) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("sh", filepath.Join(harness.RepoRoot(t), "tests/bench/pss.sh"), strconv.Itoa(pid), "fakeimapd").Output()
		if err != nil {
			t.Fatalf("pss.sh: %v", err)
		}
		line = strings.TrimSpace(string(out))
		procs, _ = strconv.Atoi(benchField(t, line, "procs"))
		zombies, _ = strconv.Atoi(benchField(t, line, "zombies"))
		if (want < 0 || procs == want) && zombies == wantZombies || time.Now().After(end) {
			return line, procs, zombies
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchHold holds one session at the given point, and returns the
// holding loadgen (killed at cleanup).
func benchHold(t *testing.T, lg, addr, mode, at string) {
	t.Helper()
	hold := exec.Command(lg, "-a", addr, "-m", mode, "-hold", "1", "-holdat", at, "-holdfor", "30s")
	stdout, _ := hold.StdoutPipe()
	var stderr harness.LockedBuffer
	hold.Stderr = &stderr
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Process.Kill(); hold.Wait() })
	held, _ := bufio.NewReader(stdout).ReadString('\n')
	if held != "held=1\n" {
		t.Fatalf("loadgen -hold 1 -holdat %s printed %q: %s", at, held, stderr.String())
	}
}

// TestBenchRound runs one short round of every system kind bench.sh
// measures and that is installed, with the tools bench.sh uses: a few
// sessions, one bulk FETCH, sessions held before the handshake and
// after LOGIN, and the processes that serve a held session.
func TestBenchRound(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "tcpserver", "openssl")
	fake := harness.Bin(t, "fakeimapd")
	lg := harness.Bin(t, "loadgen")
	dir := t.TempDir()
	pem, _ := harness.WriteCert(t, dir)
	jail := filepath.Join(dir, "jail")
	if err := os.Mkdir(jail, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := func(protocol string) string {
		tmpl, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "tests/bench/stunnel.conf.in"))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("@PEM@", pem, "@FAKEIMAPD@", fake, "@SIZE@", "1M", "@PROTOCOL@", protocol).Replace(string(tmpl))
		p := filepath.Join(dir, fmt.Sprintf("stunnel-%d.conf", len(protocol)))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	backend := []string{fake, "-s", "1M"}
	tcpserver := func(prog ...string) []string {
		return append([]string{"tcpserver", "-1", "-R", "-H", "-l", "0", "127.0.0.1", "0"}, prog...)
	}
	// The run file's way: imap-tls-server (with -1, port 0), the rest of
	// the chain found through $PATH.
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key"} {
		harness.Bin(t, p)
	}
	path := []string{"PATH=" + filepath.Dir(harness.Bin(t, "imap-tls-server")) + ":" + os.Getenv("PATH")}
	front := func(mode string) []string {
		args := []string{harness.Bin(t, "imap-tls-server"), "-1", "-n", mode, "-r", "2000000000:4194304", "-j", jail, "-k", pem, "127.0.0.1", "0"}
		return append(args, backend...)
	}
	type kind struct {
		name, mode string
		pkg        string          // the Debian package it needs, if any
		prog       func() []string // the server's command line
		// Serving processes, the backend excluded: before the
		// handshake (-1: not checked) and held after LOGIN; zombies
		// after LOGIN.
		hsProcs, procs, zombies int
	}
	kinds := []kind{
		{"plain", "plain", "", func() []string { return tcpserver(backend...) }, 0, 0, 0},
		{"stunnel-starttls", "starttls", "stunnel4", func() []string { return tcpserver("stunnel4", conf("protocol = imap")) }, 1, 1, 0},
		{"stunnel-implicit", "implicit", "stunnel4", func() []string { return tcpserver("stunnel4", conf("")) }, -1, 1, 0},
		{"tlswrapper", "implicit", "tlswrapper", func() []string { return tcpserver(append([]string{"tlswrapper", "-f", pem}, backend...)...) }, -1, 2, 0},
		// The run file's chain: the proxy and the key process before
		// the handshake; after it the key process has signed and
		// exited, and the kernel has reaped it (the proxy ignores
		// SIGCHLD): no zombie.
		{"chain-starttls", "starttls", "", func() []string { return front("imap") }, 2, 1, 0},
		{"chain-implicit", "implicit", "", func() []string { return front("imaps") }, 2, 1, 0},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			if k.pkg != "" {
				if _, err := exec.LookPath(k.pkg); err != nil {
					t.Skipf("%s is not installed (apt-get install %s): not measured by bench.sh either", k.pkg, k.pkg)
				}
			}
			addr, pid := benchServer(t, path, k.prog()...)
			out, errOut, code := harness.ExitCode(t, exec.Command(lg, "-a", addr, "-m", k.mode, "-c", "2", "-n", "3"))
			r := benchResult(t, out)
			if code != 0 || benchField(t, r, "sessions") != "3" || benchField(t, r, "errors") != "0" {
				t.Fatalf("sessions: exit %d, %q, %s", code, r, errOut)
			}
			if p50, _ := strconv.ParseFloat(benchField(t, r, "p50_ms"), 64); p50 <= 0 {
				t.Errorf("p50_ms is not positive: %q", r)
			}
			out, errOut, code = harness.ExitCode(t, exec.Command(lg, "-a", addr, "-m", k.mode, "-n", "1", "-fetch"))
			r = benchResult(t, out)
			if code != 0 || benchField(t, r, "bytes") != strconv.Itoa(1<<20) {
				t.Fatalf("bulk FETCH of 1 MiB: exit %d, %q, %s", code, r, errOut)
			}

			// Sessions held before the handshake go on to LOGOUT
			// once released.
			out, errOut, code = harness.ExitCode(t, exec.Command(lg, "-a", addr, "-m", k.mode, "-hold", "2", "-holdat", "handshake", "-holdfor", "100ms"))
			if code != 0 || out != "held=2\n" {
				t.Fatalf("loadgen -hold 2 -holdat handshake: exit %d, %q, %s", code, out, errOut)
			}

			check := func(at string, want, wantZombies int) {
				t.Helper()
				line, procs, zombies := benchProcs(t, pid, want, wantZombies)
				if want >= 0 && procs != want || zombies != wantZombies {
					t.Errorf("pss.sh, a session held at %s: %q, want procs=%d zombies=%d", at, line, want, wantZombies)
				}
				kb, _ := strconv.Atoi(benchField(t, line, "pss_kb"))
				if procs > 0 && kb <= 0 || procs == 0 && kb != 0 {
					t.Errorf("pss.sh: %q: pss_kb does not fit %d processes", line, procs)
				}
				if strings.Contains(benchField(t, line, "comms"), "fakeimapd") {
					t.Errorf("pss.sh counted the backend: %q", line)
				}
			}
			// Wait for the sessions above to be gone, then hold one.
			benchProcs(t, pid, 0, 0)
			if k.hsProcs >= 0 {
				benchHold(t, lg, addr, k.mode, "handshake")
				check("handshake", k.hsProcs, 0)
			}
			benchHold(t, lg, addr, k.mode, "login")
			// The session held before the handshake is still there.
			if k.hsProcs >= 0 {
				check("handshake and one at login", k.hsProcs+k.procs, k.zombies)
			} else {
				check("login", k.procs, k.zombies)
			}
		})
	}
}

// TestBenchScript runs bench.sh itself in its quick mode on two systems,
// and on two of issue 20's (tests/bench/dovecot-tls.sh: Dovecot's own
// STARTTLS and imap-tls in front of the same Dovecot), and checks the
// report it writes.
func TestBenchScript(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "tcpserver", "openssl", "go", "dovecot", "doveadm", "socat", "python3")
	binDir := filepath.Dir(harness.Bin(t, "imap-tls-server"))
	for _, p := range []string{"makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "stunnel-imap-signer"} {
		harness.Bin(t, p)
	}
	harness.EnsureAccount(t, "imaptls")
	report := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	cmd := exec.Command("sh", filepath.Join(harness.RepoRoot(t), "tests/bench/bench.sh"))
	cmd.Env = append(os.Environ(), "BENCH_QUICK=1", "BENCH_OUT="+report, "BENCH_SYSTEMS=plain chain-starttls dovecot-starttls tls-dovecot-starttls"+benchAddrSystems(t), "IMAPTLS_BIN="+binDir)
	_, errOut, code := harness.ExitCode(t, cmd)
	if code != 0 {
		t.Fatalf("bench.sh exited %d: %s", code, errOut)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("bench.sh wrote no report: %v", err)
	}
	md := string(b)
	for _, want := range []string{
		"| plaintext: tcpserver → fakeimapd | 0 / 0 |",
		// The run file's chain with the signer: the proxy alone, in
		// handshake and held (the signer is no child of tcpserver's).
		"| **imap-tls, STARTTLS** (`-n imap`) | 1 / 1 |",
		"| stunnel-imap | stunnel-imap |",
		"### Ratios to the plaintext baseline",
		"plain (plain): tcpserver -1 -R -H -l 0 -c 200 -b 100 127.0.0.1 0 $W/fakeimapd -s 1M\n",
		// the run file's way, and the chain it execs
		"chain-starttls (starttls): imap-tls-server -1 -c 200 -b 100 -n imap -r 2000000000:4194304 -j $W/jail -s $W/signer/socket 127.0.0.1 0 $W/fakeimapd -s 1M\n",
		"\ntcpserver -R -H -l 0 -c 200 -b 100 -1 127.0.0.1 0 makesock setuidgid-chroot -/ $W/jail -r 2000000000:4194304 -s 4:$W/signer/socket stunnel-imap -n imap -F 3 -K 4 -makesock_connect_to $W/fakeimapd -s 1M\n",
		"| **the run file's chain**, STARTTLS (from imap-tls-server -x; the signer answers) | `makesock setuidgid-chroot -/ $W/jail -r 2000000000:4194304 -s 4:$W/signer/socket stunnel-imap -n imap -F 3 -K 4 -makesock_connect_to $W/fakeimapd` |",
		"| the chain with a key process per connection (-k, env/SIGNER empty), STARTTLS | `makesock makesock -d 4 setuidgid-chroot -/ $W/jail -r 2000000000:4194304 stunnel-imap -n imap -F 3 -K 4 -makesock_connect_to setuidgid-chroot -/ $W/jail -r 2000000000:4194304 -o 3:$W/ssl/localhost.pem stunnel-imap-key -P 3:$W/ssl/localhost.pem -makesock_connect_to $W/fakeimapd` |",
		"## Start-up cost of each link, on its own",
		"## The machine",
		"## How to reproduce",
		// issue 20: the same Dovecot (ssl = required) with its own
		// STARTTLS and behind imap-tls's default chain: the proxy's
		// setuidgid-chroot connects its haproxy = yes listener (-c
		// 3:ADDRESS) and the signer, with a PROXY header (-H); no makesock
		"## imap-tls in front of Dovecot, against Dovecot's own TLS (issue 20)",
		"\ntls-dovecot-starttls: tcpserver -R -H -l 0 -c 200 -b 100 -1 127.0.0.1 0 setuidgid-chroot -/ $W/jail -r 2000000000:4194304 -c 3:127.0.0.1:$HAPROXYPORT -s 4:$W/signer/socket stunnel-imap -n imap -F 3 -K 4 -H\n",
		"\nssl = required\n",
		"\n| c=8 sessions/s, STARTTLS | ",
		"\n| memory per held session (INBOX selected), STARTTLS | ",
		"### CPU per session by program",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// A held session (logged in, INBOX selected) is the proxy and
	// Dovecot's imap process through imap-tls (imap-login hands the
	// plaintext connection over and exits), imap-login (which keeps the
	// TLS) and imap with Dovecot's own; every session succeeded, and
	// each figure is there.
	num := `[0-9]+\.[0-9]+`
	for _, row := range []string{
		`\| Dovecot's own TLS, STARTTLS \| (` + num + ` \| ){4}(` + num + `|—) \| (` + num + `) \| imap,imap-login \| 0 \|\n`,
		`\| \*\*imap-tls \+ Dovecot, STARTTLS\*\* \| (` + num + ` \| ){4}(` + num + `|—) \| (` + num + `) \| imap,stunnel-imap \| 0 \|\n`,
	} {
		m := regexp.MustCompile(row).FindStringSubmatch(md)
		if m == nil {
			t.Errorf("report lacks a row like %s:\n%s", row, md)
		} else if pss, _ := strconv.ParseFloat(m[3], 64); pss <= 0 {
			t.Errorf("PSS per held session is not positive: %q", m[0])
		}
	}
	// the targets are judged, one way or the other, on measured figures
	for _, target := range []string{"at least 0.9×: ", "at most +1 ms: ", "at most 1.1×: "} {
		if !regexp.MustCompile(regexp.QuoteMeta(target) + `(met|\*\*not met\*\*) \|`).MatchString(md) {
			t.Errorf("report does not judge the target %q:\n%s", target, md)
		}
	}
	// how quiet the machine was: uptime before and after, and the
	// run's length, filled in
	if !regexp.MustCompile(`How quiet the machine was: load \(uptime\) before the run: .*load average: .*; after it: .*load average: `).MatchString(md) ||
		!strings.Contains(md, "\n- the run took ") || strings.Contains(md, "@LOAD_AFTER@") || strings.Contains(md, "@ELAPSED@") {
		t.Errorf("report does not say the load before and after the run, or how long it took:\n%s", md)
	}
	// the chain without its key process is gone from the figures (the
	// analysis after "How to reproduce" tells its history)
	head := md[:max(0, strings.Index(md, "## How to reproduce"))]
	for _, gone := range []string{"without key process", "issue 6", "stunnel-imap -S"} {
		if strings.Contains(head, gone) {
			t.Errorf("the report still has %q:\n%s", gone, md)
		}
	}
	if strings.Contains(md, "| stunnel 5, implicit TLS |") {
		t.Errorf("BENCH_SYSTEMS ignored: stunnel measured:\n%s", md)
	}
	benchCheckAddrRows(t, md)

	cmd = exec.Command("sh", filepath.Join(harness.RepoRoot(t), "tests/bench/bench.sh"))
	cmd.Env = append(os.Environ(), "BENCH_QUICK=1", "BENCH_OUT="+report+".2", "BENCH_SYSTEMS=nosuch", "IMAPTLS_BIN="+binDir)
	_, errOut, code = harness.ExitCode(t, cmd)
	if code != 111 || !strings.Contains(errOut, "bench: fatal: no system to measure") {
		t.Errorf("BENCH_SYSTEMS=nosuch: exit %d, %q", code, errOut)
	}
}

// TestBenchReportFailedSystem feeds report.awk a run in which systems
// could not be measured (bench.sh's "failed=yes" lines): their rows are
// dashes, and no target is called met on their missing figures.
func TestBenchReportFailedSystem(t *testing.T) {
	md := benchReport(t, "plain mode=plain rate1=900 rate8=3000 p50_1=1 mbps=900 pss1=1000 pssn=500 cpu=1.0\n"+
		"stunnel-starttls mode=starttls rate1=100 rate8=100 p50_1=12 mbps=100 pss1=9000 pssn=9000 cpu=5\n"+
		"stunnel-implicit mode=implicit rate1=100 rate8=100 p50_1=12 mbps=100 pss1=9000 pssn=9000 cpu=5\n"+
		"chain-starttls mode=starttls failed=yes\n")
	for _, want := range []string{
		"| **imap-tls, STARTTLS** (`-n imap`) | — | — | — | — | — | — | — | — | — | — | — |",
		// Not "0 failed sessions": it was not measured at all.
		"| **imap-tls, STARTTLS** (`-n imap`) | — | — | — | — | — | — | — |  |  |",
		"| stunnel 5, STARTTLS (`protocol = imap`) | — | — | — | — | 5.00 | 4.00 | 0 |  |  |",
		"## Targets (issues 5 and 20)\n\nIssue 5's, on the rows with fakeimapd as a program per connection:\n\nNot evaluated: ",
		"with `connect =` and tlswrapper (stdio: it can only exec a program):\n\nNot evaluated: ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "met:") || strings.Contains(md, "missed:") {
		t.Errorf("a target judged on a system that was not measured:\n%s", md)
	}
}

// benchAddrSystems: issue 20's rows, the server at one address (a
// backend tcpserver in front of fakeimapd, started once), for
// BENCH_SYSTEMS: imap-tls's default chain and stunnel 5 with connect =,
// and tlswrapper, the stdio reference of the issue-20 target (it can only
// exec a program); those of stunnel 5 and tlswrapper if installed.
func benchAddrSystems(t *testing.T) string {
	s := " chain-addr-starttls chain-addr-implicit"
	if _, err := exec.LookPath("stunnel4"); err == nil {
		s += " stunnel-connect-starttls stunnel-connect-implicit"
	}
	if _, err := exec.LookPath("tlswrapper"); err == nil {
		s += " tlswrapper"
	}
	return s
}

// benchCheckAddrRows: bench.sh's report of benchAddrSystems' rows. Each
// has every figure and no failed session; a held session is the proxy
// (or stunnel) alone, the backend's tree outside its PSS; the CPU column
// takes no plaintext baseline off; imap-tls's chain is the shipped
// default's (setuidgid-chroot -c 3:ADDRESS, no makesock), connecting the
// backend the report names; and issue 20's target is judged.
func benchCheckAddrRows(t *testing.T, md string) {
	t.Helper()
	num := `[0-9]+\.[0-9]+`
	type row struct {
		name, pkg, comm string
	}
	rows := []row{
		{"**imap-tls, STARTTLS, server at an address (the default chain)**", "", "stunnel-imap"},
		{"**imap-tls, implicit TLS, server at an address (the default chain)**", "", "stunnel-imap"},
		{"stunnel 5, STARTTLS (`protocol = imap`), `connect =`", "stunnel4", "stunnel4"},
		{"stunnel 5, implicit TLS, `connect =`", "stunnel4", "stunnel4"},
	}
	for _, r := range rows {
		if r.pkg != "" {
			if _, err := exec.LookPath(r.pkg); err != nil {
				continue
			}
		}
		name := regexp.QuoteMeta(r.name)
		results := `\n\| ` + name + ` \| 1 / 1 \| (` + num + ` \| ){6}[0-9]+ \| (` + num + ` \| ){2}` + num + ` \|\n`
		if !regexp.MustCompile(results).MatchString(md) {
			t.Errorf("report lacks a results row like %s:\n%s", results, md)
		}
		// greeting and handshake at c=1 and c=8, CPU (if perf
		// works), no baseline taken off, no failed session.
		cpu := `\n\| ` + name + ` \| (` + num + ` \| ){4}(` + num + `|—) \| — \| 0 \| ` + r.comm + ` \| ` + r.comm + ` \|\n`
		if !regexp.MustCompile(cpu).MatchString(md) {
			t.Errorf("report lacks a CPU row like %s:\n%s", cpu, md)
		}
	}
	// The backend, started once, is the server operand of the default
	// chain, which connects it from the proxy's setuidgid-chroot.
	m := regexp.MustCompile(`\nthe backend of the rows with the server at an address, (127\.0\.0\.1:[0-9]+): tcpserver -1 -R -H -l 0 -c 200 -b 100 127\.0\.0\.1 0 \$W/fakeimapd -s 1M\n`).FindStringSubmatch(md)
	if m == nil {
		t.Fatalf("report does not name the backend of the rows at an address:\n%s", md)
	}
	addr := m[1]
	for _, want := range []string{
		"\nchain-addr-starttls (starttls): imap-tls-server -1 -c 200 -b 100 -n imap -r 2000000000:4194304 -j $W/jail -s $W/signer/socket 127.0.0.1 0 " + addr + "\n",
		"\nchain-addr-implicit (implicit): imap-tls-server -1 -c 200 -b 100 -n imaps -r 2000000000:4194304 -j $W/jail -s $W/signer/socket 127.0.0.1 0 " + addr + "\n",
		"\ntcpserver -R -H -l 0 -c 200 -b 100 -1 127.0.0.1 0 setuidgid-chroot -/ $W/jail -r 2000000000:4194304 -c 3:" + addr + " -s 4:$W/signer/socket stunnel-imap -n imap -F 3 -K 4\n",
		"separate process tree,\noutside these rows' server-side CPU and PSS: their CPU column compares among them, not with the stdio rows.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if _, err := exec.LookPath("stunnel4"); err == nil {
		if !regexp.MustCompile(`\nstunnel-connect-implicit \(implicit\): tcpserver -1 -R -H -l 0 -c 200 -b 100 127\.0\.0\.1 0 \S*stunnel4 \$W/stunnel-connect-implicit\.conf\n`).MatchString(md) {
			t.Errorf("report lacks stunnel 5's connect = row in the systems as run:\n%s", md)
		}
		if _, err := exec.LookPath("tlswrapper"); err == nil {
			target := `\n- (met:|\*\*missed:\*\*) ` + regexp.QuoteMeta("issue 20: the shipped service (STARTTLS, default chain) at c=8 at least 1.5× stunnel 5 implicit (`connect =`) and at least 1.5× tlswrapper: ") +
				num + "/s vs " + num + "/s, [0-9.]+×; vs " + num + `/s, [0-9.]+×( \((met|missed) against stunnel 5, (met|missed) against tlswrapper\))?\n`
			if !regexp.MustCompile(target).MatchString(md) {
				t.Errorf("report does not judge issue 20's target (%s):\n%s", target, md)
			}
		}
	}
}

// TestBenchReportAtAddress feeds report.awk issue 20's rows, the server
// at an address: their ratios go to stunnel 5 with connect =, their CPU
// takes no plaintext baseline off (the backend is outside it), and the
// target is judged on the shipped service against stunnel 5 implicit
// (connect =) and tlswrapper, saying which side missed.
func TestBenchReportAtAddress(t *testing.T) {
	base := "plain mode=plain rate1=900 rate8=3000 p50_1=1 mbps=900 pss1=1000 pssn=500 cpu=1.0\n" +
		"stunnel-implicit mode=implicit rate1=100 rate8=100 p50_1=12 mbps=100 pss1=9000 pssn=9000 cpu=5\n" +
		"tlswrapper mode=implicit rate1=100 rate8=160 p50_1=12 mbps=100 pss1=900 pssn=900 cpu=5\n" +
		"stunnel-connect-implicit mode=implicit rate1=100 rate8=200 p50_1=12 mbps=100 pss1=9000 pssn=9000 cpu=4\n" +
		"stunnel-connect-starttls mode=starttls rate1=5 rate8=25 p50_1=200 mbps=100 pss1=9000 pssn=9000 cpu=4\n"
	for _, c := range []struct{ rate8, want string }{
		{"300", "- met: issue 20: the shipped service (STARTTLS, default chain) at c=8 at least 1.5× stunnel 5 implicit (`connect =`) and at least 1.5× tlswrapper: 300/s vs 200/s, 1.50×; vs 160/s, 1.88×\n"},
		{"290", "- **missed:** issue 20: the shipped service (STARTTLS, default chain) at c=8 at least 1.5× stunnel 5 implicit (`connect =`) and at least 1.5× tlswrapper: 290/s vs 200/s, 1.45×; vs 160/s, 1.81× (missed against stunnel 5, met against tlswrapper)\n"},
		{"200", "- **missed:** issue 20: the shipped service (STARTTLS, default chain) at c=8 at least 1.5× stunnel 5 implicit (`connect =`) and at least 1.5× tlswrapper: 200/s vs 200/s, 1.00×; vs 160/s, 1.25×\n"},
	} {
		md := benchReport(t, base+"chain-addr-starttls mode=starttls rate1=100 rate8="+c.rate8+" p50_1=6 mbps=100 pss1=900 pssn=900 cpu=2\n")
		for _, want := range []string{
			c.want,
			// the CPU table: 2 ms, no baseline off, against stunnel 5's 4
			"| **imap-tls, STARTTLS, server at an address (the default chain)** | — | — | — | — | 2.00 | — | 0 |  |  |",
			"| stunnel 5, implicit TLS, `connect =` | — | — | — | — | 4.00 | — | 0 |  |  |",
			"| tlswrapper, implicit TLS | — | — | — | — | 5.00 | 4.00 | 0 |  |  |",
			// ratios to stunnel 5 with connect = in the same mode
			"| **imap-tls, STARTTLS, server at an address (the default chain)** | 20× | 0.03× | ",
			// and to the plaintext baseline, without the CPU (stunnel
			// 5 with connect = has no ratio to a peer)
			"\n| stunnel 5, implicit TLS, `connect =` | 0.11× | 12× | 0.07× | — | 0.11× | — | — | — | — |\n",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("rate8=%s: report lacks %q:\n%s", c.rate8, want, md)
			}
		}
	}
}

// benchReport runs report.awk on results (bench.sh's lines) and returns
// the report.
func benchReport(t *testing.T, results string) string {
	t.Helper()
	harness.Need(t, "awk")
	f := filepath.Join(t.TempDir(), "results")
	if err := os.WriteFile(f, []byte(results), 0644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("awk", "-v", "rounds=1", "-v", "secs=1", "-v", "size=1M", "-v", "hold=2",
		"-f", filepath.Join(harness.RepoRoot(t), "tests/bench/lib.awk"),
		"-f", filepath.Join(harness.RepoRoot(t), "tests/bench/report.awk"), f).CombinedOutput()
	if err != nil {
		t.Fatalf("report.awk: %v %s", err, out)
	}
	return string(out)
}

// TestBenchFakeimapdBadInput: a client that vanishes mid-literal or
// mid-AUTHENTICATE, a line that never ends, a literal beyond the limit:
// each ends the session with exit 111 and one fatal line.
func TestBenchFakeimapdBadInput(t *testing.T) {
	fake := harness.Bin(t, "fakeimapd")
	for _, c := range []struct{ in, reason string }{
		{"a LOGIN alice {6}\r\nsec", "unexpected EOF"},
		{"a AUTHENTICATE PLAIN\r\n", "EOF"},
		{strings.Repeat("x", 20000), "command line too long"},
		{"a LOGIN alice {99999}\r\n", "literal too long"},
	} {
		cmd := exec.Command(fake)
		cmd.Stdin = strings.NewReader(c.in)
		out, errOut, code := harness.ExitCode(t, cmd)
		if code != 111 || errOut != "fakeimapd: fatal: unable to read from client: "+c.reason+"\n" {
			t.Errorf("input %.40q: exit %d, %q; want 111 and the reason %q", c.in, code, errOut, c.reason)
		}
		if !strings.HasPrefix(out, "* OK ") {
			t.Errorf("input %.40q: no greeting first: %q", c.in, out)
		}
	}
}

// TestBenchLoadgenBadServer: a server that greets with BYE, and one that
// accepts and never greets (a dead backend): every session fails, within
// -T for the silent one, and loadgen exits 111 naming the first failure.
func TestBenchLoadgenBadServer(t *testing.T) {
	lg := harness.Bin(t, "loadgen")
	for _, c := range []struct {
		greeting, reason string
	}{
		{"* BYE go away\r\n", `greeting is not OK: "* BYE go away"`},
		{"", "read greeting: "},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			// A silent server's connections stay open, until the
			// listener is closed.
			var held []net.Conn
			defer func() {
				for _, conn := range held {
					conn.Close()
				}
			}()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				if c.greeting == "" {
					held = append(held, conn)
					continue
				}
				conn.Write([]byte(c.greeting))
				conn.Close()
			}
		}()
		start := time.Now()
		out, errOut, code := harness.ExitCode(t, exec.Command(lg, "-a", ln.Addr().String(), "-m", "plain", "-n", "2", "-T", "1s"))
		ln.Close()
		if code != 111 || !strings.Contains(errOut, "loadgen: warning: 2 sessions failed, the first: "+c.reason) ||
			!strings.Contains(out, "sessions=0 errors=2") {
			t.Errorf("greeting %q: exit %d, stdout %q, stderr %q", c.greeting, code, out, errOut)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("greeting %q: loadgen took %v with -T 1s", c.greeting, d)
		}
	}
}
