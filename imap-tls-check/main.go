// Command imap-tls-check says what is right and what is wrong with a
// service directory made by imap-tls-conf, in the manner of nginx -t and
// postfix check: one finding a line on stdout, "ok: WHAT: ...",
// "warning: WHAT: ..." or "error: WHAT: ...", then exit 0 (no error),
// 100 (an error in the configuration) or 111 (something could not be
// checked, or the server side failed now). It changes nothing. Its
// checks are imap-tls-server's at start (package internal/check), made
// on env/'s settings; the certificate is read by the suite's one loader
// (internal/certfile), as the key holders read it. See README.md.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/check"
	"imap-tls/internal/opt"
	"imap-tls/internal/proxyproto"
	"imap-tls/log"
	"imap-tls/service"
)

const synopsis = "[ -s ] [ -t secs ] dir"

func main() {
	l := log.New("imap-tls-check")
	l.Exit(run(os.Args[1:], os.Stdout))
}

// report collects the findings and their worst kind.
type report struct {
	w      io.Writer
	errors int // configuration errors: exit 100
	temp   int // could not check, or failed now: exit 111
	// A site (site.go): prefix names the front a line is about
	// ("imaps: "); seen holds the lines written, so that a finding the
	// fronts share (the firewall of one server address) is written,
	// and counted, once.
	prefix string
	seen   map[string]bool
}

func (r *report) ok(what, format string, args ...any) { r.line("ok", what, format, args...) }
func (r *report) warn(what, format string, args ...any) {
	r.line("warning", what, format, args...)
}
func (r *report) bad(what, format string, args ...any) {
	if r.line("error", what, format, args...) {
		r.errors++
	}
}
func (r *report) failed(what, format string, args ...any) {
	if r.line("error", what, format, args...) {
		r.temp++
	}
}

// verdict reports a check's error as its code says: an error in the
// configuration (100), or something that could not be checked (111).
func (r *report) verdict(what string, err error) {
	if isTemp(err) {
		r.failed(what, "%s", err)
		return
	}
	r.bad(what, "%s", err)
}

// isTemp: err is a *log.Error of exit 111.
func isTemp(err error) bool {
	var e *log.Error
	return errors.As(err, &e) && e.Code == log.ExitTemp
}

// line writes one finding, on one line, bounded as every log line is;
// false when a site's report has written that line already.
func (r *report) line(kind, what, format string, args ...any) bool {
	msg := strings.NewReplacer("\n", " ", "\r", " ").Replace(fmt.Sprintf(format, args...))
	text := fmt.Sprintf("%s: %s%s: %s\n", kind, r.prefix, what, log.Clip(msg, log.MaxLine-100))
	if r.seen != nil {
		if r.seen[text] {
			return false
		}
		r.seen[text] = true
	}
	fmt.Fprint(r.w, text)
	return true
}

func run(args []string, out io.Writer) error {
	timeout := 5 * time.Second
	statusView := false
	s := opt.New(synopsis)
	s.Flag('s', &statusView) // status.go
	s.Func('t', func(v string) error {
		var d time.Duration
		if err := opt.Seconds(&d)(v); err != nil || d > time.Hour {
			return errors.New("not a number of seconds from 0 to 3600")
		}
		timeout = d
		return nil
	})
	args, err := s.Parse(args)
	if err != nil {
		return err
	}
	if len(args) != 1 || args[0] == "" {
		return s.Usage("")
	}
	dir := args[0]
	if st, err := os.Stat(filepath.Join(dir, "run")); err != nil || !st.Mode().IsRegular() {
		if err == nil {
			err = errors.New("not a file")
		}
		return log.Temp(err, "read %s", filepath.Join(dir, "run"))
	}
	if statusView {
		return status(dir, out, timeout)
	}
	r := &report{w: out}
	if isSite(dir) {
		checkSite(r, dir, timeout) // site.go
	} else {
		c := &checker{r: r, dir: dir, timeout: timeout}
		c.env()
		c.accounts()
		c.jail()
		c.cert()
		c.server()
		c.live()     // live.go
		c.firewall() // firewall.go
	}
	switch {
	case r.errors > 0:
		return log.Config(nil, "%d %s in %s", r.errors, plural(r.errors, "error"), dir)
	case r.temp > 0:
		return log.Temp(nil, "check %d %s in %s, or %s failed now", r.temp, plural(r.temp, "thing"), dir, map[bool]string{true: "it", false: "they"}[r.temp == 1])
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
	dir     string // the service directory: where the chain runs
	timeout time.Duration
	env_    map[string]string // env/, first lines, as envdir reads them
	files   map[string]bool   // env/'s files, empty ones too
	mode    string
	pop3    bool
	// A site (site.go): site is its directory. The site's own checker
	// has dir == site and checks the shared settings; a front's has
	// front (its name) and dir == site/service/front, reads the site's
	// env/ under its own, and checks its own settings (own).
	site, frontName string
	own             map[string]bool
	siteDown        bool // no supervise runs the site's run: nor its fronts
}

func (c *checker) path(p string) string { return filepath.Join(c.dir, p) }

// want: whether this checker reports the setting name. A service: all
// of them. A site: the shared ones, once; a front: its own (MODE, PORT,
// IMAPD, and any other its env/ sets over the site's).
func (c *checker) want(name string) bool {
	front := slices.Contains(service.FrontSettings, name)
	switch {
	case c.frontName != "":
		return front || c.own[name]
	case c.site != "":
		return !front
	}
	return true
}

// getenv is the service's environment as envdir makes it: env/ over
// this process's own.
func (c *checker) getenv(name string) string {
	if v, ok := c.env_[name]; ok || c.files[name] {
		return v
	}
	return os.Getenv(name)
}

// env reads env/ as envdir does (the first line of each file, an empty
// file removing the variable) and checks each setting with the checks
// imap-tls-server makes at start (package internal/check).
func (c *checker) env() {
	c.env_ = map[string]string{}
	c.files = map[string]bool{}
	c.own = map[string]bool{}
	layers := []string{c.path("env")}
	if c.frontName != "" {
		// envdir ../../env envdir ./env: the site's, then the front's
		// own over it (the site's is reported once, before the fronts).
		layers = []string{filepath.Join(c.site, "env"), c.path("env")}
	}
	for i, dir := range layers {
		own := i == len(layers)-1
		ents, err := os.ReadDir(dir)
		if err != nil {
			if own {
				c.r.failed("env/", "unable to read: %s", log.Reason(err))
				return
			}
			continue
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				if own {
					c.r.failed("env/"+e.Name(), "unable to read: %s", log.Reason(err))
				}
				continue
			}
			c.files[e.Name()] = true
			c.own[e.Name()] = own
			first, _, _ := strings.Cut(string(b), "\n")
			first = strings.TrimRight(first, " \t")
			if len(b) > 0 {
				c.env_[e.Name()] = first
			} else {
				delete(c.env_, e.Name())
			}
		}
	}
	get := func(name string) (string, bool) {
		if !c.want(name) {
			return "", false
		}
		v, ok := c.env_[name]
		return v, ok
	}
	required := func(name string) (string, bool) {
		v, ok := get(name)
		if !c.want(name) {
			return "", false
		}
		if !ok || v == "" {
			c.r.bad("env/"+name, "missing or empty: imap-tls-conf writes it")
			return "", false
		}
		return v, true
	}
	if v, ok := required("IP"); ok {
		if err := check.IP(v); err != nil {
			c.r.verdict("env/IP", err)
		} else {
			c.r.ok("env/IP", "%s", v)
		}
	}
	if v, ok := required("PORT"); ok {
		if err := check.Port(v); err != nil {
			c.r.verdict("env/PORT", err)
		} else if v == "0" {
			c.r.bad("env/PORT", "0: a service listens on a port of its own, from 1 to 65535")
		} else {
			c.r.ok("env/PORT", "%s", v)
		}
	}
	if v, ok := required("MODE"); ok {
		if m, err := check.Mode(v); err != nil {
			c.r.verdict("env/MODE", err)
		} else {
			c.mode, c.pop3 = m.Name, m.Protocol == "pop3"
			c.r.ok("env/MODE", "%s: %s", v, m.Text)
		}
	}
	if v, ok := required("CONCURRENCY"); ok {
		if err := check.AtLeastOne(v); err != nil {
			c.r.bad("env/CONCURRENCY", "%q is %s", v, err)
		} else if n, _ := strconv.Atoi(v); c.env_["SIGNER"] != "" && check.SignerLimit(n) != nil {
			c.r.bad("env/CONCURRENCY", "%s", check.SignerLimit(n))
		} else {
			c.r.ok("env/CONCURRENCY", "%s", v)
		}
	}
	if v, ok := required("MEMLIMIT"); ok {
		if err := check.MemLimit(v); err != nil {
			c.r.bad("env/MEMLIMIT", "%s", err)
		} else {
			c.r.ok("env/MEMLIMIT", "%s", v)
		}
	}
	// The signer's data limit (signer/run's softlimit -d), where a
	// signer serves this service.
	if c.env_["SIGNER"] != "" {
		if v, ok := required("SIGNERMEMLIMIT"); ok {
			if err := check.MemLimit(v); err != nil {
				c.r.bad("env/SIGNERMEMLIMIT", "%s", err)
			} else {
				c.r.ok("env/SIGNERMEMLIMIT", "%s", v)
			}
		}
	}
	if v, ok := get("UIDRANGE"); ok && v != "" {
		if err := check.UIDRange(v); err != nil {
			c.r.verdict("env/UIDRANGE", err)
		}
	} else if c.want("UIDRANGE") {
		c.r.warn("env/UIDRANGE", "empty: every connection's proxy and key process run as one account (a compromised proxy could signal another connection's)")
	}
	if v, ok := get("CERT_WARN_DAYS"); ok {
		if _, err := certfile.WarnDaysFrom(c.getenv); err != nil {
			c.r.verdict("env/CERT_WARN_DAYS", err)
		} else {
			c.r.ok("env/CERT_WARN_DAYS", "%s: a certificate that expires within %s days is warned about at start and on each connection", v, v)
		}
	}
	if v, ok := get("PROXYFROM"); ok && v != "" {
		if err := check.Sources(v); err != nil {
			c.r.bad("env/PROXYFROM", "%s", err)
		} else {
			c.r.ok("env/PROXYFROM", "%s: proxy-server takes the client's address from these load balancers' PROXY header", v)
		}
	}
	if v, ok := required("IMAPD"); ok {
		if _, _, err := check.ServerAddress(c.dir, strings.Fields(v)); err != nil {
			c.r.verdict("env/IMAPD", err)
		} else {
			c.r.ok("env/IMAPD", "%s", v)
		}
	}
	if v, ok := required("PATH"); ok {
		uses := check.Uses{Service: true, KeyProcess: c.env_["SIGNER"] == "", Balancers: c.env_["PROXYFROM"] != ""}
		if missing := check.Missing(check.Programs(uses), v); len(missing) > 0 {
			c.r.bad("env/PATH", "%s not found in %s", strings.Join(missing, ", "), v)
		} else {
			c.r.ok("env/PATH", "every program of the chain found in %s", v)
		}
	}
}

// program finds one of the suite's programs through env/PATH.
func (c *checker) program(name string) string {
	if p, err := check.LookPath(name, c.env_["PATH"]); err == nil {
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

// accounts checks the service's account (env/ACCOUNT: the proxy's and
// the key process's with env/UIDRANGE empty, and the signer's), the
// log's (env/LOGACCOUNT), and the uid range with setuidgid-chroot, as
// imap-tls-server does at start.
func (c *checker) accounts() {
	for _, a := range []struct{ name, what string }{
		{"ACCOUNT", "the account of the signer, and of every connection's proxy with env/UIDRANGE empty"},
		{"LOGACCOUNT", "the account multilog runs as"},
	} {
		if v := c.env_[a.name]; v != "" {
			c.account("env/"+a.name, v)
		} else {
			c.r.bad("env/"+a.name, "missing or empty: %s (imap-tls-conf writes it)", a.what)
		}
	}
	if v := c.env_["UIDRANGE"]; v != "" && check.UIDRange(v) == nil {
		var out strings.Builder
		switch err := check.IDs(c.program("setuidgid-chroot"), []string{"-r", v}, &out); {
		case err == nil:
			c.r.ok("env/UIDRANGE", "%s: free of accounts and groups, and covers kernel.pid_max", v)
		default:
			c.r.verdict("env/UIDRANGE", fmt.Errorf("%w (%s)", err, strings.TrimSpace(out.String())))
		}
	}
}

func (c *checker) account(what, name string) {
	if text, err := check.User(name); err != nil {
		c.r.verdict(what, err)
	} else {
		c.r.ok(what, "%s", text)
	}
}

// jail: a directory, root's, writable by no one else, empty.
func (c *checker) jail() {
	jail := c.path("jail")
	if err := check.Jail(jail); err != nil {
		c.r.verdict("jail/", err)
		return
	}
	if err := check.JailSafe(jail); err != nil {
		c.r.verdict("jail/", err)
		return
	}
	c.r.ok("jail/", "empty, root's, writable by no one else")
}

// cert: ssl/ root's alone; ssl/stunnel.pem there, root's, readable by
// no one else; then the report of the suite's one certificate loader,
// line by line, and its verdict, as every key holder will give it.
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
	if err := check.KeyFileSafe(c.path(name)); err != nil {
		c.r.verdict(name, err)
	} else {
		c.r.ok(name, "root's, mode %04o", st.Mode().Perm())
	}
	days, err := certfile.WarnDaysFrom(c.getenv)
	if err != nil {
		days = certfile.WarnDays // env/CERT_WARN_DAYS is reported on its own
	}
	findings, err := check.Cert(c.path(name), name, days, time.Now())
	for _, f := range findings {
		switch f.Kind {
		case "ok":
			c.r.ok(name, "%s", f.Text)
		case "warning":
			c.r.warn(name, "%s", f.Text)
		case "error":
			c.r.line("error", name, "%s", f.Text)
		}
	}
	switch {
	case err == nil:
	case len(findings) == 0:
		c.r.verdict(name, err)
	case isTemp(err):
		c.r.temp++
	default:
		c.r.errors++
	}
}

// server reaches the server side as a connection would: it connects to
// env/IMAPD when it is one address (as setuidgid-chroot -c does), or starts it
// (the plaintext session on its stdin and stdout); then it reads the
// greeting.
func (c *checker) server() {
	const what = "env/IMAPD"
	argv := strings.Fields(c.env_["IMAPD"])
	if len(argv) == 0 || c.mode == "" {
		return
	}
	network, address, err := check.ServerAddress(c.dir, argv)
	if err != nil {
		return // reported with env/
	}
	var conn io.ReadWriteCloser
	var stop func() (why string)
	shown := argv
	if network != "" {
		conn, stop = c.connect(what, network, address)
		shown = []string{address}
	} else {
		// socat's own log is thrown away in the service (-lf /dev/null: it
		// is in another grammar); here it says why the server side fails.
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
		conn, stop = c.start(what, shown)
	}
	if conn == nil {
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
		go conn.Write(hdr)
	}
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(io.LimitReader(conn, 4096)).ReadString('\n')
		got <- strings.TrimRight(line, "\r\n")
	}()
	var greeting string
	timedOut := false
	select {
	case greeting = <-got:
	case <-time.After(c.timeout):
		timedOut = true
	}
	why := stop()
	if why != "" {
		why = ": " + why
	}
	// The PROXY hint only where a server answered the connection: a
	// refused one has nothing listening, whatever the header.
	if proxied && (timedOut || greeting == "") && !strings.Contains(why, "Connection refused") {
		why += " (env/PROXYHEADER yes: a PROXY header was sent first; does the server take one from this address? Dovecot: haproxy = yes on its inet_listener, haproxy_trusted_networks; a server that takes none: env/PROXYHEADER empty)"
	}
	started := "started"
	if network != "" {
		started = "connected"
	}
	switch {
	case timedOut:
		c.r.failed(what, "%s sent no greeting within %s%s", shown[0], c.timeout, why)
	case greeting == "":
		c.r.failed(what, "%s ended without a greeting%s", shown[0], why)
	case c.pop3 && strings.HasPrefix(greeting, "+OK"), !c.pop3 && (strings.HasPrefix(greeting, "* OK") || strings.HasPrefix(greeting, "* PREAUTH")):
		if !c.pop3 && strings.HasPrefix(greeting, "* PREAUTH") && c.mode != "imaps" {
			c.r.bad(what, "greets with PREAUTH: the proxy refuses that on a STARTTLS port (mode %s)", c.mode)
			return
		}
		if proxied {
			c.r.ok(what, "greeted after a PROXY v2 header (env/PROXYHEADER yes): %s", log.Clip(greeting, 200))
			return
		}
		c.r.ok(what, "%s and greeted: %s", started, log.Clip(greeting, 200))
	default:
		c.r.failed(what, "greeted with %q, not a %s greeting", log.Clip(greeting, 200), map[bool]string{true: "POP3", false: "IMAP"}[c.pop3])
	}
}

// connect connects to the server's address, a relative unix path from
// the service directory (where the chain runs). stop closes the
// connection.
func (c *checker) connect(what, network, address string) (io.ReadWriteCloser, func() string) {
	path := address
	if network == "unix" {
		if !filepath.IsAbs(path) {
			path = c.path(path)
		}
		if w := check.SocketState(path); w != "" {
			c.r.failed(what, "%s", strings.Replace(w, path, address, 1))
			return nil, nil
		}
	}
	conn, err := net.DialTimeout(network, path, c.timeout)
	if err != nil {
		c.r.failed(what, "unable to connect to %s: %s", address, log.Reason(err))
		return nil, nil
	}
	conn.SetDeadline(time.Now().Add(c.timeout + time.Second))
	return conn, func() string { conn.Close(); return "" }
}

// start starts the server program argv as makesock would (its stdin and
// stdout the session, the ucspi variables set). stop ends it and returns
// what it said on stderr.
func (c *checker) start(what string, argv []string) (io.ReadWriteCloser, func() string) {
	path, err := check.LookPath(argv[0], c.env_["PATH"])
	if err != nil && !strings.Contains(argv[0], "/") {
		c.r.bad(what, "%s not found in env/PATH", argv[0])
		return nil, nil
	}
	if path == "" {
		path = argv[0]
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = c.dir
	cmd.Env = append(c.environ(), "TCPREMOTEIP=127.0.0.1", "TCPREMOTEPORT=0", "TCPLOCALIP=127.0.0.1", "TCPLOCALPORT="+c.env_["PORT"], "PROTO=TCP")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.r.bad(what, "unable to start %s: %s", argv[0], log.Reason(err))
		return nil, nil
	}
	stop := func() string {
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
		return strings.TrimSpace(stderr.String())
	}
	return pipes{stdout, stdin}, stop
}

// pipes is a program's stdout and stdin as one connection.
type pipes struct {
	io.Reader
	io.WriteCloser
}
