// Command imap-tls-conf lays out a ready daemontools service directory for
// the imap-tls pipeline, in the djbdns *-conf tradition:
//
//	imap-tls-conf [ -m mode ] acct logacct dir [ ip [ port ] ]
//	imap-tls-conf -m mode,mode... acct logacct dir [ ip ]
//
// The second form makes a site: one directory, one certificate, one
// jail, one signer, and a front per mode on the mode's standard port,
// run by an svscan of its own (service/site).
//
// The files are the repository's service/ folder (package service), run
// files and env/ defaults, written byte for byte; only what differs
// between sites (the accounts, the address, the port, the mode, the
// server's command for POP3, env/PATH) goes into env/. It builds the
// whole tree in a temporary directory next to dir, every file written
// with renameio and given its owner and mode, and then renames the tree
// to dir in one step (refusing to replace anything), so that svscan and
// supervise never see a half-made service.
package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"imap-tls/internal/opt"
	"imap-tls/internal/suite"
	"imap-tls/log"
	"imap-tls/service"
)

const synopsis = "[ -m mode[,mode...] ] acct logacct dir [ ip [ port ] ]"

// pop3Server is env/IMAPD for a POP3 mode: service/env/IMAPD's default
// with Dovecot's POP3 listener (its port in service/proxy-port.nft too).
const pop3Server = service.POP3Server

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
	mode          suite.Mode
	binDir        string       // where our own executables are, for env/PATH
	fronts        []suite.Mode // a site's modes (-m with more than one); nil: one service
}

// run parses args, checks them and makes the service directory, printing
// the next steps to out.
func run(args []string, out io.Writer) error {
	var modes []suite.Mode
	o := opt.New(synopsis)
	o.Func('m', func(v string) (err error) {
		modes, err = parseModes(v)
		return err
	})
	args, err := o.Parse(args)
	if err != nil {
		return err
	}
	if len(args) < 3 || len(args) > 5 {
		return o.Usage("")
	}
	if len(modes) > 1 && len(args) > 4 {
		return o.Usage("a site of several modes takes no port: each front listens on its mode's (change it in its env/PORT)")
	}
	c, err := parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(modes) > 1:
		c.fronts = modes
	case len(modes) == 1:
		c.mode = modes[0]
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
	if c.fronts != nil {
		fmt.Fprint(out, siteSteps(c))
	} else {
		fmt.Fprint(out, nextSteps(c))
	}
	return nil
}

// parseModes reads -m's value: one mode, or several separated by
// commas for a site, each once and no two on one standard port (imap
// and imap- both want 143).
func parseModes(v string) ([]suite.Mode, error) {
	var modes []suite.Mode
	for _, name := range strings.Split(v, ",") {
		m, ok := suite.ModeNamed(name)
		if !ok {
			if !strings.Contains(v, ",") {
				return nil, errors.New("not " + suite.ModeList())
			}
			return nil, fmt.Errorf("%q is not %s", name, suite.ModeList())
		}
		for _, o := range modes {
			if o.Port == m.Port {
				return nil, fmt.Errorf("%s and %s both listen on %d: a site has one front per port", o.Name, m.Name, m.Port)
			}
		}
		modes = append(modes, m)
	}
	return modes, nil
}

// parse checks the arguments: the accounts exist and are not root, the
// address and port are valid, and dir does not exist yet.
func parse(args []string) (*config, error) {
	c := &config{ip: service.Default("IP")}
	var err error
	if c.port, err = parsePort(service.Default("PORT")); err != nil {
		return nil, err
	}
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
	c.mode = suite.ModeForPort(c.port)
	return c, nil
}

// serverCommand is env/IMAPD: the system Dovecot's login service for
// the protocol (service/README.md says why).
func (c *config) serverCommand() string { return server(c.mode) }

// server is env/IMAPD for mode m: the haproxy listener of Dovecot's
// login service for its protocol, one address that each connection's
// setuidgid-chroot connects to (-c 3:ADDRESS).
func server(m suite.Mode) string {
	if m.Protocol == "pop3" {
		return pop3Server
	}
	return service.Default("IMAPD")
}

// safeName is what an account name may be: one line of env/, and an
// argument of setuidgid-chroot and multilog's setuidgid.
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

// site is what differs between installations: env/ files whose value
// replaces service/env's default.
func (c *config) site() map[string]string {
	return map[string]string{
		"ACCOUNT":    c.acct.name,
		"LOGACCOUNT": c.logacct.name,
		"IP":         c.ip,
		"PORT":       strconv.Itoa(c.port),
		"MODE":       c.mode.Name,
		"IMAPD":      c.serverCommand(),
		"PATH":       c.binDir + ":" + service.Default("PATH"),
	}
}

// root is a directory of root's; logDir one of multilog's account.
func root(path string, mode os.FileMode) entry { return entry{path: path, dir: true, mode: mode} }

func (c *config) logDir(path string) entry {
	return entry{path: path, dir: true, mode: 0750, uid: c.logacct.uid, gid: c.logacct.gid}
}

// tree lists the service directory, parents before children: the
// directories, then service/'s files as they are, with the site's values
// in env/ (run last: supervise starts the service when run appears).
func tree(c *config) []entry {
	if c.fronts != nil {
		return siteTree(c)
	}
	entries := []entry{
		root("env", 0755),
		// The jail: empty, root's, not writable by acct or any uid of
		// the range.
		root("jail", 0755),
		// The key: root's alone, opened by setuidgid-chroot -o for the
		// signer or the key process. imap-tls-conf writes no key.
		root("ssl", 0700),
		root("log", 0755),
		c.logDir("log/main"),
		// Root's: the signer's socket appears here, 0600; nothing else may.
		root("signer", 0755),
		root("signer/log", 0755),
		c.logDir("signer/log/main"),
	}
	site := c.site()
	for _, f := range service.Files() {
		data := f.Data
		if name, ok := strings.CutPrefix(f.Path, "env/"); ok {
			if v, ok := site[name]; ok {
				data = v + "\n"
			}
		}
		entries = append(entries, entry{path: f.Path, mode: f.Mode, data: data})
	}
	return entries
}

// siteSigner is env/SIGNER of a site: the signer's socket as a front
// (service/MODE) reaches it.
const siteSigner = "../signer/socket"

// siteTree lists a site, parents before children: the site's env/
// (service/site's defaults, with its values), jail/ and ssl/; then in
// service/ the signer and a front per mode, each with its log, a front
// with its own env/ (MODE, PORT, IMAPD); the site's run last.
func siteTree(c *config) []entry {
	entries := []entry{
		root("env", 0755),
		root("jail", 0755),
		root("ssl", 0700),
		// svscan's directory: the fronts and the signer, nothing else.
		root("service", 0755),
		root("service/signer", 0755),
		root("service/signer/log", 0755),
		c.logDir("service/signer/log/main"),
	}
	for _, m := range c.fronts {
		d := "service/" + m.Name
		entries = append(entries, root(d, 0755), root(d+"/env", 0755), root(d+"/log", 0755), c.logDir(d+"/log/main"),
			entry{path: d + "/env/MODE", mode: 0644, data: m.Name + "\n"},
			entry{path: d + "/env/PORT", mode: 0644, data: strconv.Itoa(m.Port) + "\n"},
			entry{path: d + "/env/IMAPD", mode: 0644, data: server(m) + "\n"})
	}
	site := c.site()
	site["SIGNER"] = siteSigner
	for _, f := range service.SiteFiles() {
		data := f.Data
		if name, ok := strings.CutPrefix(f.Path, "env/"); ok {
			if v, ok := site[name]; ok {
				data = v + "\n"
			}
		}
		if rest, ok := strings.CutPrefix(f.Path, service.Front+"/"); ok {
			for _, m := range c.fronts {
				entries = append(entries, entry{path: "service/" + m.Name + "/" + rest, mode: f.Mode, data: data})
			}
			continue
		}
		entries = append(entries, entry{path: f.Path, mode: f.Mode, data: data})
	}
	return entries
}

// build builds the tree in a temporary directory next to c.dir, then
// renames it into place; on any failure it removes what it made.
func build(c *config) (err error) {
	entries := tree(c)
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
	names := make([]string, len(suite.Modes))
	for i, m := range suite.Modes {
		names[i] = m.Name
	}
	return fmt.Sprintf(`imap-tls-conf: made %[1]s: mode %[9]s: %[2]s on %[3]s:%[4]d, a uid of its own for each connection from %[8]s (env/UIDRANGE; empty: as %[5]s, env/ACCOUNT), logs by %[6]s (env/LOGACCOUNT)
next:
1. put the certificate chain and its key, in one PEM file, in this order:
   the certificate, its intermediates, the private key (unencrypted);
   from certbot: cat fullchain.pem privkey.pem; then
     install -o root -g root -m 400 chain-and-key.pem %[1]s/ssl/stunnel.pem
   (renewals: service/certbot-deploy-hook, see service/README.md)
2. %[1]s/env/IMAPD names the server (now: %[7]s, Dovecot's haproxy
   listener, see service/README.md): an address, or a stdio server's command
3. check it: imap-tls-check %[1]s
4. start it and its signer: ln -s %[1]s /etc/service/; ln -s %[1]s/signer /etc/service/%[11]s-signer
   (or in /service/, where svscan looks)
then: svstat %[1]s %[1]s/signer; logs in %[1]s/log/main/current and %[1]s/signer/log/main/current
the mode is %[9]s: to change it, write one of %[10]s to %[1]s/env/MODE, then svc -t %[1]s
   (or make the directory with imap-tls-conf -m MODE)
`, c.dir, c.mode.Text, c.ip, c.port, c.acct.name, c.logacct.name, c.serverCommand(), service.Default("UIDRANGE"), c.mode.Name, strings.Join(names, " "), filepath.Base(c.dir))
}

// siteSteps is nextSteps for a site: the fronts and their ports, the
// one link, and how to restart, move or stop a front on its own.
func siteSteps(c *config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "imap-tls-conf: made %s: a site of %d fronts on %s, one certificate, one signer, a uid of its own for each connection from %s (env/UIDRANGE; empty: as %s, env/ACCOUNT), logs by %s (env/LOGACCOUNT)\n",
		c.dir, len(c.fronts), c.ip, service.Default("UIDRANGE"), c.acct.name, c.logacct.name)
	for _, m := range c.fronts {
		fmt.Fprintf(&b, "  %s/service/%s: mode %s: %s on port %d, server %s\n", c.dir, m.Name, m.Name, m.Text, m.Port, server(m))
	}
	fmt.Fprintf(&b, `next:
1. put the certificate chain and its key, in one PEM file, in this order:
   the certificate, its intermediates, the private key (unencrypted);
   from certbot: cat fullchain.pem privkey.pem; then
     install -o root -g root -m 400 chain-and-key.pem %[1]s/ssl/stunnel.pem
   (renewals: service/certbot-deploy-hook %[1]s, see service/README.md)
2. the servers are Dovecot's haproxy listeners (each front's env/IMAPD;
   Dovecot's side and the firewall rule: service/README.md)
3. start it all, the fronts and the signer, with one link:
     ln -s %[1]s /etc/service/
   (or in /service/, where svscan looks)
then: svstat /etc/service/%[2]s %[1]s/service/*; logs in %[1]s/service/MODE/log/main/current
restart one front (after changing its env/ or the site's): svc -t %[1]s/service/MODE
   (a port: echo PORT >%[1]s/service/MODE/env/PORT, then svc -t %[1]s/service/MODE)
stop it all, nothing left running: svc -d /etc/service/%[2]s (start: svc -u)
`, c.dir, filepath.Base(c.dir))
	return b.String()
}
