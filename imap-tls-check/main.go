// Command imap-tls-check says what is right and what is wrong with a
// service directory made by imap-tls-conf, in the manner of nginx -t and
// postfix check: one finding a line on stdout, "ok: WHAT: ...",
// "warning: WHAT: ..." or "error: WHAT: ...", then exit 0 (no error),
// 100 (an error in the configuration) or 111 (something could not be
// checked, or the server side failed now). It changes nothing. The
// certificate is inspected by stunnel-imap-key -c: this program does no
// crypto. See README.md.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"imap-tls/internal/proxyproto"
	"imap-tls/log"
)

const synopsis = "[ -t secs ] dir"

func main() {
	l := log.New("imap-tls-check")
	l.Exit(run(os.Args[1:], os.Stdout))
}

// report collects the findings and their worst kind.
type report struct {
	w      io.Writer
	errors int // configuration errors: exit 100
	temp   int // could not check, or failed now: exit 111
}

func (r *report) ok(what, format string, args ...any) { r.line("ok", what, format, args...) }
func (r *report) warn(what, format string, args ...any) {
	r.line("warning", what, format, args...)
}
func (r *report) bad(what, format string, args ...any) {
	r.errors++
	r.line("error", what, format, args...)
}
func (r *report) failed(what, format string, args ...any) {
	r.temp++
	r.line("error", what, format, args...)
}

// line writes one finding, on one line, bounded as every log line is.
func (r *report) line(kind, what, format string, args ...any) {
	msg := strings.NewReplacer("\n", " ", "\r", " ").Replace(fmt.Sprintf(format, args...))
	fmt.Fprintf(r.w, "%s: %s: %s\n", kind, what, log.Clip(msg, log.MaxLine-100))
}

func run(args []string, out io.Writer) error {
	timeout := 5 * time.Second
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		if args[0] == "--" {
			args = args[1:]
			break
		}
		if args[0] != "-t" || len(args) < 2 {
			if args[0] == "-t" {
				return &log.UsageError{Synopsis: synopsis, Msg: "option -t needs an argument"}
			}
			return &log.UsageError{Synopsis: synopsis, Msg: "unknown option " + args[0]}
		}
		f, err := strconv.ParseFloat(args[1], 64)
		if err != nil || f <= 0 || f > 3600 {
			return &log.UsageError{Synopsis: synopsis, Msg: fmt.Sprintf("-t %q: not a number of seconds from 0 to 3600", args[1])}
		}
		timeout, args = time.Duration(f*float64(time.Second)), args[2:]
	}
	if len(args) != 1 || args[0] == "" {
		return &log.UsageError{Synopsis: synopsis}
	}
	dir := args[0]
	if st, err := os.Stat(filepath.Join(dir, "run")); err != nil || !st.Mode().IsRegular() {
		if err == nil {
			err = errors.New("not a file")
		}
		return log.Temp(err, "read %s", filepath.Join(dir, "run"))
	}
	r := &report{w: out}
	c := &checker{r: r, dir: dir, timeout: timeout}
	c.env()
	c.accounts()
	c.jail()
	c.cert()
	c.server()
	switch {
	case r.errors > 0:
		return log.Config(nil, "%d %s in %s", r.errors, plural(r.errors, "error"), dir)
	case r.temp > 0:
		return &log.Error{Code: log.ExitTemp, Msg: fmt.Sprintf("%d %s could not be checked or failed now in %s", r.temp, plural(r.temp, "thing"), dir)}
	}
	return nil
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

type checker struct {
	r       *report
	dir     string
	timeout time.Duration
	env_    map[string]string // env/, first lines, as envdir reads them
	mode    string
}

func (c *checker) path(p string) string { return filepath.Join(c.dir, p) }

// env reads env/ as envdir does (the first line of each file, an empty
// file removing the variable) and checks each setting.
func (c *checker) env() {
	c.env_ = map[string]string{}
	ents, err := os.ReadDir(c.path("env"))
	if err != nil {
		c.r.failed("env/", "unable to read: %s", log.Reason(err))
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(c.path("env/" + e.Name()))
		if err != nil {
			c.r.failed("env/"+e.Name(), "unable to read: %s", log.Reason(err))
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		first = strings.TrimRight(first, " \t")
		if len(b) > 0 {
			c.env_[e.Name()] = first
		}
	}
	get := func(name string) (string, bool) { v, ok := c.env_[name]; return v, ok }
	required := func(name string) (string, bool) {
		v, ok := get(name)
		if !ok || v == "" {
			c.r.bad("env/"+name, "missing or empty: imap-tls-conf writes it")
			return "", false
		}
		return v, true
	}
	if v, ok := required("IP"); ok {
		if a, err := netip.ParseAddr(v); v != "0" && (err != nil || !a.IsValid()) {
			c.r.bad("env/IP", "%q is not an address (like 127.0.0.1, or 0 for all)", v)
		} else {
			c.r.ok("env/IP", "%s", v)
		}
	}
	if v, ok := required("PORT"); ok {
		if p, err := strconv.Atoi(v); err != nil || p < 1 || p > 65535 || strings.TrimLeft(v, "0123456789") != "" {
			c.r.bad("env/PORT", "%q is not a number from 1 to 65535", v)
		} else {
			c.r.ok("env/PORT", "%s", v)
		}
	}
	if v, ok := required("MODE"); ok {
		if what, known := modes[v]; known {
			c.mode = v
			c.r.ok("env/MODE", "%s: %s", v, what)
		} else {
			c.r.bad("env/MODE", "%q is not one of imap, imap-, imaps, pop3, pop3-, pop3s", v)
		}
	}
	if v, ok := required("CONCURRENCY"); ok {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			c.r.bad("env/CONCURRENCY", "%q is not a number of at least 1", v)
		} else {
			c.r.ok("env/CONCURRENCY", "%s", v)
		}
	}
	if v, ok := required("MEMLIMIT"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 1 {
			c.r.bad("env/MEMLIMIT", "%q is not a number of bytes", v)
		} else if n < 1300000000 {
			c.r.warn("env/MEMLIMIT", "%s: a Go program does not start under softlimit -m below about 1.25 GB (test it: softlimit -m %s makesock true -makesock_connect_to true)", v, v)
		} else {
			c.r.ok("env/MEMLIMIT", "%s", v)
		}
	}
	if v, ok := get("UIDRANGE"); ok && v != "" {
		if !regexp.MustCompile(`^[0-9]+:[0-9]+$`).MatchString(v) {
			c.r.bad("env/UIDRANGE", "%q is not base:count", v)
		}
	} else {
		c.r.warn("env/UIDRANGE", "empty: every connection's proxy and key process run as one account (a compromised proxy could signal another connection's)")
	}
	if v, ok := get("CERT_WARN_DAYS"); ok {
		if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 3650 || strings.TrimLeft(v, "0123456789") != "" {
			c.r.bad("env/CERT_WARN_DAYS", "%q is not a number of days from 0 to 3650", v)
		} else {
			c.r.ok("env/CERT_WARN_DAYS", "%s: a certificate that expires within %s days is warned about at start and on each connection", v, v)
		}
	}
	if v, ok := required("IMAPD"); ok {
		c.r.ok("env/IMAPD", "%s", v)
	}
	if v, ok := required("PATH"); ok {
		var missing []string
		for _, p := range []string{"imap-tls-server", "tcpserver", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "softlimit", "envdir"} {
			if _, err := lookPath(p, v); err != nil {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			c.r.bad("env/PATH", "%s not found in %s", strings.Join(missing, ", "), v)
		} else {
			c.r.ok("env/PATH", "every program of the chain found in %s", v)
		}
	}
}

var modes = map[string]string{
	"imap":  "IMAP, STARTTLS required",
	"imap-": "IMAP, STARTTLS offered, plaintext allowed",
	"imaps": "IMAP, implicit TLS",
	"pop3":  "POP3, STLS required",
	"pop3-": "POP3, STLS offered, plaintext allowed",
	"pop3s": "POP3, implicit TLS",
}

func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// program finds one of the suite's programs through env/PATH.
func (c *checker) program(name string) string {
	if p, err := lookPath(name, c.env_["PATH"]); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// environ is the service's environment: this one's, with env/ on top.
func (c *checker) environ() []string {
	env := os.Environ()
	for k, v := range c.env_ {
		env = append(env, k+"="+v)
	}
	return env
}

// accounts checks the run file's account, the log's account, and the
// uid range with setuidgid-chroot, as imap-tls-server does at start.
func (c *checker) accounts() {
	run, _ := os.ReadFile(c.path("run"))
	if m := regexp.MustCompile(`set -- -u ([A-Za-z0-9_][A-Za-z0-9._-]*)`).FindSubmatch(run); m != nil {
		c.account("run", string(m[1]))
	} else {
		c.r.warn("run", "no account (set -- -u ACCOUNT) found: not the run file imap-tls-conf writes")
	}
	logRun, _ := os.ReadFile(c.path("log/run"))
	if m := regexp.MustCompile(`setuidgid ([A-Za-z0-9_][A-Za-z0-9._-]*)`).FindSubmatch(logRun); m != nil {
		c.account("log/run", string(m[1]))
	} else {
		c.r.warn("log/run", "no account (setuidgid ACCOUNT) found")
	}
	if v := c.env_["UIDRANGE"]; v != "" && regexp.MustCompile(`^[0-9]+:[0-9]+$`).MatchString(v) {
		cmd := exec.Command(c.program("setuidgid-chroot"), "-r", v, "true")
		out, err := cmd.CombinedOutput()
		switch {
		case err == nil:
			c.r.ok("env/UIDRANGE", "%s: free of accounts and groups, and covers kernel.pid_max", v)
		case exitCode(err) == log.ExitUsage:
			c.r.bad("env/UIDRANGE", "%s refused: %s", v, strings.TrimSpace(string(out)))
		default:
			c.r.failed("env/UIDRANGE", "unable to check %s with setuidgid-chroot: %s %s", v, log.Reason(err), strings.TrimSpace(string(out)))
		}
	}
}

func (c *checker) account(what, name string) {
	u, err := user.Lookup(name)
	if err != nil {
		c.r.bad(what, "account %s does not exist: useradd --system --no-create-home --shell /usr/sbin/nologin %s", name, name)
		return
	}
	if u.Uid == "0" || u.Gid == "0" {
		c.r.bad(what, "account %s is root (uid %s gid %s): use an unprivileged account", name, u.Uid, u.Gid)
		return
	}
	c.r.ok(what, "account %s (uid %s gid %s)", name, u.Uid, u.Gid)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// jail: a directory, root's, writable by no one else, empty.
func (c *checker) jail() {
	st, err := os.Stat(c.path("jail"))
	if err != nil {
		c.r.bad("jail/", "%s", log.Reason(err))
		return
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		c.r.bad("jail/", "not a directory")
		return
	case sys != nil && sys.Uid != 0:
		c.r.bad("jail/", "owned by uid %d, not root: chown root:root %s", sys.Uid, c.path("jail"))
	case st.Mode().Perm()&0o022 != 0:
		c.r.bad("jail/", "writable by others (mode %04o): chmod 755 %s", st.Mode().Perm(), c.path("jail"))
	}
	ents, err := os.ReadDir(c.path("jail"))
	if err != nil {
		c.r.failed("jail/", "unable to read: %s", log.Reason(err))
		return
	}
	if len(ents) > 0 {
		c.r.bad("jail/", "not empty (%s, ...): the proxy's whole world must be empty", ents[0].Name())
		return
	}
	if sys != nil && sys.Uid == 0 && st.Mode().Perm()&0o022 == 0 {
		c.r.ok("jail/", "empty, root's, writable by no one else")
	}
}

// cert: ssl/ root's alone; ssl/stunnel.pem there, root's, readable by
// no one else; then stunnel-imap-key -c's report, line by line.
func (c *checker) cert() {
	const name = "ssl/stunnel.pem"
	if st, err := os.Stat(c.path("ssl")); err == nil {
		if sys, _ := st.Sys().(*syscall.Stat_t); sys != nil && (sys.Uid != 0 || st.Mode().Perm()&0o077 != 0) {
			c.r.bad("ssl/", "must be root's alone (uid %d, mode %04o): chown root:root %s; chmod 700 %s", sys.Uid, st.Mode().Perm(), c.path("ssl"), c.path("ssl"))
		}
	}
	st, err := os.Stat(c.path(name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.r.bad(name, "missing: put the certificate, its intermediates and the private key there (install -o root -g root -m 400 chain-and-key.pem %s)", c.path(name))
		} else {
			c.r.failed(name, "%s", log.Reason(err))
		}
		return
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	good := true
	if sys != nil && sys.Uid != 0 {
		c.r.bad(name, "owned by uid %d, not root: chown root:root %s", sys.Uid, c.path(name))
		good = false
	}
	if st.Mode().Perm()&0o077 != 0 {
		c.r.bad(name, "readable or writable by others (mode %04o): chmod 400 %s", st.Mode().Perm(), c.path(name))
		good = false
	}
	if good {
		c.r.ok(name, "root's, mode %04o", st.Mode().Perm())
	}
	cmd := exec.Command(c.program("stunnel-imap-key"), "-c", "-p", name)
	cmd.Dir = c.dir
	cmd.Env = c.environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), ": ")
		text := strings.TrimPrefix(rest, name+": ")
		switch kind {
		case "ok":
			c.r.ok(name, "%s", text)
		case "warning":
			c.r.warn(name, "%s", text)
		case "error":
			c.r.line("error", name, "%s", text)
		}
	}
	switch code := exitCode(err); {
	case err == nil:
	case code == log.ExitUsage:
		c.r.errors++
	case code == log.ExitTemp:
		c.r.temp++
	default:
		c.r.failed(name, "unable to run stunnel-imap-key -c: %s %s", log.Reason(err), strings.TrimSpace(stderr.String()))
	}
}

// server starts env/IMAPD as a connection would (the plaintext session
// on its stdin and stdout) and reads its greeting.
func (c *checker) server() {
	const what = "env/IMAPD"
	argv := strings.Fields(c.env_["IMAPD"])
	if len(argv) == 0 || c.mode == "" {
		return
	}
	// socat's own log is thrown away in the service (-lf /dev/null: it is
	// in another grammar); here it says why the server side fails.
	shown := argv
	if filepath.Base(argv[0]) == "socat" {
		shown = nil
		for i := 0; i < len(argv); i++ {
			if argv[i] == "-lf" && i+1 < len(argv) {
				i++
				continue
			}
			shown = append(shown, argv[i])
		}
	}
	path, err := lookPath(shown[0], c.env_["PATH"])
	if err != nil && !strings.Contains(shown[0], "/") {
		c.r.bad(what, "%s not found in env/PATH", shown[0])
		return
	}
	if path == "" {
		path = shown[0]
	}
	cmd := exec.Command(path, shown[1:]...)
	cmd.Args[0] = shown[0]
	cmd.Dir = c.dir
	cmd.Env = append(c.environ(), "TCPREMOTEIP=127.0.0.1", "TCPREMOTEPORT=0", "TCPLOCALIP=127.0.0.1", "TCPLOCALPORT="+c.env_["PORT"], "PROTO=TCP")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.r.bad(what, "unable to start %s: %s", shown[0], log.Reason(err))
		return
	}
	// env/PROXYHEADER yes: every connection's first bytes to the server
	// are stunnel-imap -H's PROXY v2 header, and a server that takes one
	// (Dovecot's inet_listener with haproxy = yes) greets only after it.
	// A LOCAL header, as a load balancer's health check sends: it proves
	// the listener takes a header from here without naming a client.
	proxied := c.env_["PROXYHEADER"] == "yes"
	if proxied {
		hdr, _ := proxyproto.AppendV2(nil, proxyproto.Header{Version: 2, Local: true})
		go stdin.Write(hdr)
	}
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(io.LimitReader(stdout, 4096)).ReadString('\n')
		got <- strings.TrimRight(line, "\r\n")
	}()
	var greeting string
	timedOut := false
	select {
	case greeting = <-got:
	case <-time.After(c.timeout):
		timedOut = true
	}
	stdin.Close()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	why := strings.TrimSpace(stderr.String())
	if why != "" {
		why = ": " + why
	}
	// The PROXY hint only where a server answered the connection: a
	// refused one has nothing listening, whatever the header.
	if proxied && (timedOut || greeting == "") && !strings.Contains(why, "Connection refused") {
		why += " (env/PROXYHEADER yes: a PROXY header was sent first; does the server take one from this address? Dovecot: haproxy = yes on its inet_listener, haproxy_trusted_networks; a server that takes none: env/PROXYHEADER empty)"
	}
	pop3 := strings.HasPrefix(c.mode, "pop3")
	switch {
	case timedOut:
		c.r.failed(what, "%s sent no greeting within %s%s", shown[0], c.timeout, why)
	case greeting == "":
		c.r.failed(what, "%s ended without a greeting%s", shown[0], why)
	case pop3 && strings.HasPrefix(greeting, "+OK"), !pop3 && (strings.HasPrefix(greeting, "* OK") || strings.HasPrefix(greeting, "* PREAUTH")):
		if !pop3 && strings.HasPrefix(greeting, "* PREAUTH") && c.mode != "imaps" {
			c.r.bad(what, "greets with PREAUTH: the proxy refuses that on a STARTTLS port (mode %s)", c.mode)
			return
		}
		if proxied {
			c.r.ok(what, "greeted after a PROXY v2 header (env/PROXYHEADER yes): %s", log.Clip(greeting, 200))
			return
		}
		c.r.ok(what, "started and greeted: %s", log.Clip(greeting, 200))
	default:
		c.r.failed(what, "greeted with %q, not a %s greeting", log.Clip(greeting, 200), map[bool]string{true: "POP3", false: "IMAP"}[pop3])
	}
}
