// Package check is what imap-tls-server checks once at start and
// imap-tls-check reports on, written once: the programs a chain runs,
// the mode, the account or uid range, the jail, the certificate files
// (through the suite's one loader, internal/certfile), the load
// balancers' addresses (-L, env/PROXYFROM), the listening address and
// port, and the server side's address when it is a socket.
//
// Each check returns nil or an error built by package log: Config (exit
// 100) for what is wrong with the configuration, Temp (111) for what
// could not be looked at. imap-tls-server stops at the first error, with
// that error's line and exit code; imap-tls-check reports every one, a
// line each, under the setting it concerns. What serves but weakens the
// isolation (a jail that is not root's or not empty, a key file others
// can read) is a separate check: imap-tls-server logs it as a warning at
// each start, imap-tls-check counts it as an error.
package check

import (
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

	"imap-tls/internal/certfile"
	"imap-tls/internal/suite"
	"imap-tls/log"
)

// Uses is what a service's chain runs; it decides the programs needed.
type Uses struct {
	KeyProcess bool // a key process per connection (-k), not the signer (-s)
	Balancers  bool // proxy-server after tcpserver (-L, env/PROXYFROM)
	// Service: the run files of a service directory, beyond the chain:
	// envdir, softlimit, imap-tls-server, and, unless KeyProcess, the
	// signer's service (stunnel-imap-signer); stunnel-imap-key always,
	// since service/certbot-deploy-hook checks a renewed certificate
	// with it (found through env/PATH).
	Service bool
}

// Programs lists the programs u runs, each found through $PATH: the
// outside ones (envdir and softlimit for a service, tcpserver) and those
// of suite.Programs the chain uses, in that list's order.
// imap-tls-conf and imap-tls-check are run by people, never by a service.
func Programs(u Uses) []string {
	var out []string
	if u.Service {
		out = append(out, "envdir", "softlimit")
	}
	out = append(out, "tcpserver")
	for _, p := range suite.Programs {
		switch p {
		case "stunnel-imap-key":
			if !u.KeyProcess && !u.Service {
				continue
			}
		case "stunnel-imap-signer":
			if !u.Service || u.KeyProcess {
				continue
			}
		case "proxy-server":
			if !u.Balancers {
				continue
			}
		case "imap-tls-server":
			if !u.Service {
				continue
			}
		case "imap-tls-conf", "imap-tls-check":
			continue
		}
		out = append(out, p)
	}
	return out
}

// LookPath finds name in path (a $PATH value) as execvp does: the first
// directory that holds an executable regular file of that name; an
// empty element is the current directory.
func LookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", syscall.ENOENT
}

// Missing returns the names that are not found in path.
func Missing(names []string, path string) []string {
	var out []string
	for _, n := range names {
		if _, err := LookPath(n, path); err != nil {
			out = append(out, n)
		}
	}
	return out
}

// Find is Missing as a start reports it: the first program missing from
// path, "unable to find NAME in $PATH: file does not exist" (111).
func Find(names []string, path string) error {
	if m := Missing(names, path); len(m) > 0 {
		return log.Temp(syscall.ENOENT, "find %s in $PATH", m[0])
	}
	return nil
}

// Mode finds the mode named name (stunnel-imap -n, env/MODE).
func Mode(name string) (suite.Mode, error) {
	if m, ok := suite.ModeNamed(name); ok {
		return m, nil
	}
	if name == "implicit" {
		return suite.Mode{}, log.Config(nil, "mode implicit is now called imaps: write imaps (in env/MODE for a service)")
	}
	return suite.Mode{}, log.Config(nil, "mode %q is not %s", name, suite.ModeList())
}

var (
	accountName  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	uidRangeForm = regexp.MustCompile(`^[0-9]+:[0-9]+$`)
)

// Account checks the form of an account name (setuidgid-chroot -u,
// env/ACCOUNT).
func Account(name string) error {
	if !accountName.MatchString(name) {
		return log.Config(nil, "account %q is not a valid account name", name)
	}
	return nil
}

// UIDRange checks the form of a uid range (setuidgid-chroot -r,
// env/UIDRANGE): base:count.
func UIDRange(v string) error {
	if !uidRangeForm.MatchString(v) {
		return log.Config(nil, "uid range %q is not base:count", v)
	}
	return nil
}

// IDs has setuidgid-chroot (prog, found through $PATH by the caller)
// take ids ("-u", account or "-r", base:count) as it will for every
// connection, and run true: the range against kernel.pid_max,
// /etc/passwd and /etc/group; the account exists and is not root. Its
// own lines go to out.
func IDs(prog string, ids []string, out io.Writer) error {
	cmd := exec.Command(prog, append(ids[:len(ids):len(ids)], "true")...)
	cmd.Args[0] = "setuidgid-chroot"
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		if ExitCode(err) == log.ExitUsage {
			return log.Config(nil, "setuidgid-chroot refuses %s", strings.Join(ids, " "))
		}
		return log.Temp(err, "check %s with setuidgid-chroot", strings.Join(ids, " "))
	}
	return nil
}

// ExitCode is a finished command's exit code, -1 when it did not exit.
func ExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Jail checks what every connection needs of the jail: a directory.
func Jail(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return log.Temp(err, "use jail %s", dir)
	}
	if !st.IsDir() {
		return log.Config(nil, "jail %s is not a directory", dir)
	}
	return nil
}

// JailSafe checks what the isolation needs of the jail: root's, writable
// by no one else, empty (the proxy's whole world).
func JailSafe(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return log.Temp(err, "use jail %s", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
		return log.Config(nil, "jail %s is owned by uid %d, not root: chown root:root %s", dir, sys.Uid, dir)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return log.Config(nil, "jail %s is writable by others (mode %04o): chmod 755 %s", dir, st.Mode().Perm(), dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return log.Temp(err, "read jail %s", dir)
	}
	if len(ents) > 0 {
		return log.Config(nil, "jail %s is not empty (%s, ...): the proxy's whole world must be empty", dir, ents[0].Name())
	}
	return nil
}

// Cert reads the certificate file at path through the suite's one
// loader, as every key holder will: the findings for a report (what the
// file holds, names, days left, warnings) and the verdict (nil, or the
// loader's 100, or 111 for a file that cannot be read). name is how
// messages call it. A missing file is "unable to read certificate file
// NAME: file does not exist" (111), an empty one a Config error.
func Cert(path, name string, warnDays int, now time.Time) ([]certfile.Finding, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, log.Temp(err, "read certificate file %s", name)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, log.Temp(err, "read certificate file %s", name)
	} else if st.IsDir() {
		return nil, log.Temp(syscall.EISDIR, "read certificate file %s", name)
	} else if st.Mode().IsRegular() && st.Size() == 0 {
		return nil, log.Config(nil, "certificate file %s is empty: put the certificate chain and its key there", name)
	}
	return certfile.Check(f, name, warnDays, now)
}

// Certs is Cert for a start: every file's verdict, the first error
// returned, each warning finding given to warn as "NAME: text". The
// warning period is CERT_WARN_DAYS from getenv.
func Certs(names []string, getenv func(string) string, warn func(string)) error {
	days, err := certfile.WarnDaysFrom(getenv)
	if err != nil {
		return err
	}
	for _, n := range names {
		findings, err := Cert(n, n, days, time.Now())
		for _, f := range findings {
			if f.Kind == "warning" {
				warn(n + ": " + f.Text)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// KeyFileSafe checks what the isolation needs of a file holding the
// private key: root's, readable and writable by no one else.
func KeyFileSafe(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return log.Temp(err, "read certificate file %s", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
		return log.Config(nil, "certificate file %s is owned by uid %d, not root: chown root:root %s", path, sys.Uid, path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return log.Config(nil, "certificate file %s is readable or writable by others (mode %04o): chmod 400 %s", path, st.Mode().Perm(), path)
	}
	return nil
}

// Sources checks a list of load balancers as proxy-server -a takes it
// (-L, env/PROXYFROM): addresses and prefixes, comma-separated. Its
// error says why, for a caller to frame.
func Sources(v string) error {
	for _, src := range strings.Split(v, ",") {
		var err error
		if strings.Contains(src, "/") {
			_, err = netip.ParsePrefix(src)
		} else {
			_, err = netip.ParseAddr(src)
		}
		if err != nil || strings.Contains(src, "%") {
			return fmt.Errorf("%q is not an address or a prefix", src)
		}
	}
	return nil
}

// IP checks the listening address (tcpserver's host, env/IP): an IPv4
// or IPv6 address, or 0 for all of them.
func IP(v string) error {
	if v == "0" {
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return log.Config(nil, "ip %q is not an address (like 127.0.0.1, or 0 for all)", v)
	}
	return nil
}

// Port checks the listening port (env/PORT): 0 (any free one, tcpserver
// -1 says which) to 65535.
func Port(v string) error {
	if p, err := strconv.Atoi(v); err != nil || p < 0 || p > 65535 || strings.TrimLeft(v, "0123456789") != "" {
		return log.Config(nil, "port %q is not a number from 0 to 65535", v)
	}
	return nil
}

// AtLeastOne parses a whole number of at least 1 (-c, -b,
// env/CONCURRENCY): its error says why, for a caller to frame.
func AtLeastOne(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n < 1 || strings.TrimLeft(v, "0123456789") != "" {
		return errors.New("not a number of at least 1")
	}
	return nil
}

// errorf is a Config error: a statement about the configuration.
func errorf(format string, args ...any) error { return log.Config(nil, format, args...) }

// User checks an account that a service runs as (env/ACCOUNT,
// env/LOGACCOUNT): a valid name, an account that exists, not root. Its
// text says which it is: "account imaptls (uid 998 gid 998)".
func User(name string) (string, error) {
	if err := Account(name); err != nil {
		return "", err
	}
	u, err := user.Lookup(name)
	if err != nil {
		return "", errorf("account %s does not exist: useradd --system --no-create-home --shell /usr/sbin/nologin %s", name, name)
	}
	if u.Uid == "0" || u.Gid == "0" {
		return "", errorf("account %s is root (uid %s gid %s): use an unprivileged account", name, u.Uid, u.Gid)
	}
	return "account " + name + " (uid " + u.Uid + " gid " + u.Gid + ")", nil
}
