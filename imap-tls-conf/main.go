// Command imap-tls-conf lays out a ready daemontools service directory for
// the imap-tls pipeline, in the djbdns *-conf tradition:
//
//	imap-tls-conf acct logacct dir [ ip [ port ] ]
//
// It builds the whole tree in a temporary directory next to dir, every
// file written with renameio and given its owner and mode, and then
// renames the tree to dir in one step (refusing to replace anything), so
// that svscan and supervise never see a half-made service.
package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"imap-tls/log"
)

const synopsis = "[ -m mode ] acct logacct dir [ ip [ port ] ]"

//go:embed run.tmpl
var runTemplate string

//go:embed log-run.tmpl
var logRunTemplate string

// Defaults for env/. UIDRANGE is setuidgid-chroot -r base:count for the
// proxy and the key process of each connection (uid = gid = base + pid):
// 4194304 is Linux's largest pid_max, so the range holds whatever pid_max
// is, and 2000000000 + 4194304 stays clear of every uid an installer
// hands out and of (uid_t)-1. Empty: both run as acct instead.
//
// GOMAXPROCS=1: each Go program of a connection (makesock,
// setuidgid-chroot, stunnel-imap, stunnel-imap-key) serves one
// connection and needs no parallel scheduler; with one P the runtime
// starts fewer threads, which saves about 0.4 ms of CPU per program and
// so 10 to 15 % of the session rate under load (measured here).
//
// CONCURRENCY=500: sessions held at once (tcpserver -c). Mail clients
// keep connections open (IDLE, a few folders each), so a site with a few
// dozen users holds a hundred or more. Measured here (tests/bench/
// sweep.sh, 1000 STARTTLS sessions held after LOGIN through the signer's
// chain): 0.88 MB of PSS per held session for the proxy, plus the
// signer's 9 MB for all: 500 cost about 0.45 GB, 1000 about 0.9 GB, the
// IMAP server's own processes not counted. At the limit tcpserver's
// status line N/N reaches the log (log/run keeps it) and the next
// client waits in the kernel's queue.
//
// MEMLIMIT is softlimit -m (address space, data,
// stack, locked memory): the Go runtime reserves address space up front,
// so a Go binary (resident size about 3 MB) does not start under about
// 720 MB, and, measured here with Go 1.26, not between about 1.16 and
// 1.25 GB either. 2 GB is well clear of both: a guard against a runaway
// process, not a budget.
const (
	defaultIP          = "0.0.0.0"
	defaultPort        = 143
	imapsPort          = 993
	pop3Port           = 110
	pop3sPort          = 995
	defaultWarnDays    = "14"
	defaultConcurrency = "500"
	defaultMemLimit    = "2000000000"
	defaultUIDRange    = "2000000000:4194304"
	defaultGOMAXPROCS  = "1"
	// The server: Dovecot's login service on a loopback port with
	// haproxy = yes, so that it learns the client's address from the
	// PROXY header stunnel-imap -H sends (env/PROXYHEADER yes); the
	// port must be firewalled from local accounts (proxy-port.nft).
	defaultIMAPD       = "socat -lf /dev/null -t 5 STDIO,shut-down TCP:127.0.0.1:10143"
	defaultPOP3D       = "socat -lf /dev/null -t 5 STDIO,shut-down TCP:127.0.0.1:10110"
	defaultProxyHeader = "yes"
	systemPath         = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
)

func main() {
	l := log.New("imap-tls-conf")
	l.Exit(run(os.Args[1:], os.Stdout))
}

// account is a looked-up system account.
type account struct {
	name     string
	uid, gid int
}

// config is everything the tree is made from.
type config struct {
	acct, logacct account
	dir           string // absolute
	ip            string
	port          int
	mode          string
	binDir        string // where our own executables are, for env/PATH
}

// run parses args, checks them and makes the service directory, printing
// the next steps to out.
func run(args []string, out io.Writer) error {
	mode := ""
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		if args[0] == "--" {
			args = args[1:]
			break
		}
		if args[0] != "-m" {
			return &log.UsageError{Synopsis: synopsis, Msg: "unknown option " + args[0]}
		}
		if len(args) < 2 {
			return &log.UsageError{Synopsis: synopsis, Msg: "option -m needs an argument"}
		}
		if !slices.Contains(modes, args[1]) {
			return &log.UsageError{Synopsis: synopsis, Msg: fmt.Sprintf("unknown mode %q: use %s", args[1], strings.Join(modes, ", "))}
		}
		mode, args = args[1], args[2:]
	}
	if len(args) < 3 || len(args) > 5 {
		return &log.UsageError{Synopsis: synopsis}
	}
	c, err := parse(args)
	if err != nil {
		return err
	}
	if mode != "" {
		c.mode = mode
	}
	exe, err := os.Executable()
	if err != nil {
		return log.Temp(err, "find my own executable")
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return log.Temp(err, "find my own executable")
	}
	c.binDir = filepath.Dir(exe)
	if err := build(c); err != nil {
		return err
	}
	fmt.Fprint(out, nextSteps(c))
	return nil
}

// parse checks the arguments: the accounts exist and are not root, the
// address and port are valid, and dir does not exist yet.
func parse(args []string) (*config, error) {
	c := &config{ip: defaultIP, port: defaultPort}
	var err error
	if c.acct, err = lookup(args[0], "acct"); err != nil {
		return nil, err
	}
	if c.logacct, err = lookup(args[1], "logacct"); err != nil {
		return nil, err
	}
	if c.acct.uid == c.logacct.uid {
		return nil, log.Config(nil, "acct %s and logacct %s must be different accounts", c.acct.name, c.logacct.name)
	}
	if args[2] == "" {
		return nil, log.Config(nil, "dir must not be empty")
	}
	if c.dir, err = filepath.Abs(args[2]); err != nil {
		return nil, log.Temp(err, "find the absolute path of %s", args[2])
	}
	if _, err := os.Lstat(c.dir); err == nil {
		return nil, log.Config(nil, "%s exists: imap-tls-conf makes a new directory and never changes an existing one", c.dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, log.Temp(err, "stat %s", c.dir)
	}
	if len(args) > 3 {
		if c.ip, err = parseIP(args[3]); err != nil {
			return nil, err
		}
	}
	if len(args) > 4 {
		if c.port, err = parsePort(args[4]); err != nil {
			return nil, err
		}
	}
	c.mode = portMode(c.port)
	return c, nil
}

// modes are env/MODE's values, stunnel-imap's -n, in the order -m's
// message lists them.
var modes = []string{"imap", "imap-", "imaps", "pop3", "pop3-", "pop3s"}

// portMode is a port's usual mode: 993 implicit TLS, 995 POP3 with
// implicit TLS, 110 POP3 with STLS required, any other IMAP with
// STARTTLS required.
func portMode(port int) string {
	switch port {
	case imapsPort:
		return "imaps"
	case pop3sPort:
		return "pop3s"
	case pop3Port:
		return "pop3"
	}
	return "imap"
}

// modeText says what a mode does, for the next steps.
func modeText(mode string) string {
	switch mode {
	case "imap":
		return "IMAP, STARTTLS required"
	case "imap-":
		return "IMAP, STARTTLS offered, plaintext allowed"
	case "imaps":
		return "IMAP, implicit TLS"
	case "pop3":
		return "POP3, STLS required"
	case "pop3-":
		return "POP3, STLS offered, plaintext allowed"
	}
	return "POP3, implicit TLS"
}

// serverCommand is env/IMAPD's default: the system Dovecot's login
// service for the protocol, through socat with its own log (timestamped,
// in another grammar, without the client's address) thrown away.
func (c *config) serverCommand() string {
	if strings.HasPrefix(c.mode, "pop3") {
		return defaultPOP3D
	}
	return defaultIMAPD
}

// safeName is what an account name may be to go into a run file unquoted.
var safeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

func lookup(name, what string) (account, error) {
	if !safeName.MatchString(name) {
		return account{}, log.Config(nil, "%s %q is not a valid account name", what, name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return account{}, log.Config(nil, "%s %s does not exist: create it first (useradd --system --no-create-home --shell /usr/sbin/nologin %s)", what, name, name)
		}
		return account{}, log.Temp(err, "look up account %s", name)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return account{}, log.Config(nil, "%s %s has a non-numeric uid or gid", what, name)
	}
	if uid == 0 || gid == 0 {
		return account{}, log.Config(nil, "%s %s is root (uid %d gid %d): use an unprivileged account", what, name, uid, gid)
	}
	return account{name: name, uid: uid, gid: gid}, nil
}

// parseIP accepts an IPv4 or IPv6 address, or 0 for every address of
// both families, as tcpserver does (ucspi-tcp-ipv6; it takes no "::").
func parseIP(s string) (string, error) {
	if s == "0" {
		return s, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return "", log.Config(nil, "ip %q is not an IPv4 or IPv6 address (like 127.0.0.1 or ::1, or 0 for all)", s)
	}
	if a.IsUnspecified() && a.Is6() {
		return "", log.Config(nil, "ip %q: write 0 for every address (IPv4 and IPv6)", s)
	}
	return a.String(), nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, log.Config(nil, "port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

// entry is one thing in the tree: a directory, or a file with contents.
type entry struct {
	path     string // relative to the service directory
	dir      bool
	mode     os.FileMode
	uid, gid int
	data     string
}

// tree lists the service directory, parents before children.
func tree(c *config) ([]entry, error) {
	var runFile, logRunFile bytes.Buffer
	vars := struct{ Acct, LogAcct string }{c.acct.name, c.logacct.name}
	if err := template.Must(template.New("run").Parse(runTemplate)).Execute(&runFile, vars); err != nil {
		return nil, err
	}
	if err := template.Must(template.New("log/run").Parse(logRunTemplate)).Execute(&logRunFile, vars); err != nil {
		return nil, err
	}
	root := func(path string, dir bool, mode os.FileMode, data string) entry {
		return entry{path: path, dir: dir, mode: mode, data: data}
	}
	signer, err := signerEntries(c, logRunFile.String())
	if err != nil {
		return nil, err
	}
	return append(append([]entry{
		root("env", true, 0755, ""),
		root("env/IP", false, 0644, c.ip+"\n"),
		root("env/PORT", false, 0644, strconv.Itoa(c.port)+"\n"),
		root("env/MODE", false, 0644, c.mode+"\n"),
		root("env/CONCURRENCY", false, 0644, defaultConcurrency+"\n"),
		root("env/MEMLIMIT", false, 0644, defaultMemLimit+"\n"),
		root("env/UIDRANGE", false, 0644, defaultUIDRange+"\n"),
		root("env/GOMAXPROCS", false, 0644, defaultGOMAXPROCS+"\n"),
		root("env/IMAPD", false, 0644, c.serverCommand()+"\n"),
		root("env/PROXYHEADER", false, 0644, defaultProxyHeader+"\n"),
		root("env/PROXYFROM", false, 0644, "\n"),
		root("env/CERT_WARN_DAYS", false, 0644, defaultWarnDays+"\n"),
		root("env/PATH", false, 0644, c.binDir+":"+systemPath+"\n"),
		// The jail: empty, root's, not writable by acct or any uid of
		// the range.
		root("jail", true, 0755, ""),
		// The key: root's alone, opened by setuidgid-chroot -o for the
		// key process. imap-tls-conf writes no key.
		root("ssl", true, 0700, ""),
		root("log", true, 0755, ""),
		{path: "log/main", dir: true, mode: 0750, uid: c.logacct.uid, gid: c.logacct.gid},
		root("log/run", false, 0755, logRunFile.String()),
	}, signer...),
		// run last: supervise starts the service when run appears.
		root("run", false, 0755, runFile.String()),
	), nil
}

// build builds the tree in a temporary directory next to c.dir, then
// renames it into place; on any failure it removes what it made.
func build(c *config) (err error) {
	entries, err := tree(c)
	if err != nil {
		return log.Temp(err, "expand the run templates")
	}
	parent := filepath.Dir(c.dir)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(c.dir)+".tmp")
	if err != nil {
		return log.Temp(err, "create a directory in %s", parent)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0755); err != nil {
		return log.Temp(err, "chmod %s", tmp)
	}
	for _, e := range entries {
		if err := write(tmp, e); err != nil {
			return err
		}
	}
	// Every directory's entries on disk before the tree gets its name.
	for _, e := range entries {
		if e.dir {
			if err := syncDir(filepath.Join(tmp, e.path)); err != nil {
				return err
			}
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := renameNoReplace(tmp, c.dir); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return log.Config(nil, "%s exists: imap-tls-conf makes a new directory and never changes an existing one", c.dir)
		}
		return log.Temp(err, "rename %s to %s", tmp, c.dir)
	}
	return syncDir(parent)
}

// write makes one entry inside tmp with its owner and mode; a file goes
// through renameio, so that even inside the private tree no reader can
// see it half-written.
func write(tmp string, e entry) error {
	path := filepath.Join(tmp, e.path)
	if e.dir {
		if err := os.Mkdir(path, e.mode); err != nil {
			return log.Temp(err, "create directory %s", path)
		}
		if err := os.Chmod(path, e.mode); err != nil { // beyond the umask
			return log.Temp(err, "chmod %s", path)
		}
		if err := os.Lchown(path, e.uid, e.gid); err != nil {
			return log.Temp(err, "chown %s", path)
		}
		return nil
	}
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(e.mode))
	if err != nil {
		return log.Temp(err, "create %s", path)
	}
	defer f.Cleanup()
	if _, err := f.WriteString(e.data); err != nil {
		return log.Temp(err, "write %s", path)
	}
	if err := f.Chown(e.uid, e.gid); err != nil {
		return log.Temp(err, "chown %s", path)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return log.Temp(err, "write %s", path)
	}
	return nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return log.Temp(err, "open %s", path)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return log.Temp(err, "sync %s", path)
	}
	return nil
}

// renameNoReplace renames old to new unless new exists: rename(2) alone
// would replace an existing empty directory.
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: check, then rename.
		if _, err := os.Lstat(new); err == nil {
			return unix.EEXIST
		}
		return os.Rename(old, new)
	}
	return err
}

func nextSteps(c *config) string {
	what := modeText(c.mode)
	return fmt.Sprintf(`imap-tls-conf: made %[1]s: mode %[9]s: %[2]s on %[3]s:%[4]d, a uid of its own for each connection from %[8]s (env/UIDRANGE; empty: as %[5]s), logs by %[6]s
next:
1. put the certificate chain and its key, in one PEM file, in this order:
   the certificate, its intermediates, the private key (unencrypted);
   from certbot: cat fullchain.pem privkey.pem; then
     install -o root -g root -m 400 chain-and-key.pem %[1]s/ssl/stunnel.pem
   (renewals: imap-tls-conf/certbot-deploy-hook, see imap-tls-conf/README.md)
2. point %[1]s/env/IMAPD at your stdio server (now: %[7]s)
3. check it: imap-tls-check %[1]s
4. start it and its signer: ln -s %[1]s /etc/service/; ln -s %[1]s/signer /etc/service/%[11]s-signer
   (or in /service/, where svscan looks)
then: svstat %[1]s %[1]s/signer; logs in %[1]s/log/main/current and %[1]s/signer/log/main/current
the mode is %[9]s: to change it, write one of %[10]s to %[1]s/env/MODE, then svc -t %[1]s
   (or make the directory with imap-tls-conf -m MODE)
`, c.dir, what, c.ip, c.port, c.acct.name, c.logacct.name, c.serverCommand(), defaultUIDRange, c.mode, strings.Join(modes, " "), filepath.Base(c.dir))
}
