// Command imap-tls-server is the front of the imap-tls chain, in the
// spirit of s6-networking's s6-tlsserver: it checks its options and the
// files and accounts they name, once per service start, then execs
// tcpserver with the whole per-connection chain:
//
//	tcpserver -R -H -l 0 -c N IP PORT
//	makesock
//	  makesock -d 4
//	    setuidgid-chroot -/ JAIL IDS
//	      stunnel-imap -n MODE -F 3 -K 4 [proxy options]
//	  -makesock_connect_to
//	    setuidgid-chroot -/ JAIL IDS -o 3:PEM [-o 5:PEM2 ...]
//	      stunnel-imap-key -P 3 [-P 5 ...]
//	-makesock_connect_to IMAPD...
//
// With -s socket instead of -k, the keys are the signer's (a service of
// its own, stunnel-imap-signer), and each connection's proxy reaches it
// through socket, connected by its setuidgid-chroot while still root:
//
//	tcpserver -R -H -l 0 -c N IP PORT
//	makesock
//	  setuidgid-chroot -/ JAIL IDS -s 4:SOCKET
//	    stunnel-imap -n MODE -F 3 -K 4 [proxy options]
//	-makesock_connect_to IMAPD...
//
// The chain is spelled here and nowhere else: the run file imap-tls-conf
// writes, the end-to-end tests and the benchmarks all run this program.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"imap-tls/log"
)

const synopsis = "-n imap|imap-|imaps|pop3|pop3-|pop3s [ -c concurrency ] [ -b backlog ] [ -1 ] ( -u account | -r base:count ) -j jail ( -k pemfile [ -k pemfile ... ] | -s socket [ -C pemfile ... ] ) [ -T secs ] [ -t secs ] [ -A secs ] [ -v | -q ] [ -H ] [ -L source[,source...] ] [ -V ] [ -x ] ip port imapd..."

// The programs of the chain, found through $PATH at start.
var programs = []string{"tcpserver", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key"}

// maxPEMs bounds -k: each file is a descriptor of the key process
// (3, 5, 6, ...), under the usual limit of 1024.
const maxPEMs = 1000

func main() {
	l := log.New("imap-tls-server")
	chain, print, err := run(os.Args[1:])
	if err == nil && print {
		err = printChain(os.Stdout, chain)
	} else if err == nil {
		err = execChain(chain)
	}
	l.Exit(err)
}

// options are imap-tls-server's, checked.
type options struct {
	mode        string
	concurrency string
	backlog     string
	printPort   bool     // tcpserver -1
	ids         []string // setuidgid-chroot -u account or -r base:count
	jail        string
	pems        []string
	signer      string   // -s: the signer's socket, instead of a key process per connection
	signerPems  []string // -C: the signer's files, checked at start as -k's are
	proxy       []string // stunnel-imap's -T -t -A -v -q, in the order given
	verbose     bool     // tcpserver -v
	print       bool     // -x
	balancers   string   // -L: proxy-server -a, the load balancers that send a PROXY header
	ip, port    string
	imapd       []string
}

func usage(msg string) error { return &log.UsageError{Synopsis: synopsis, Msg: msg} }

// run parses and checks args, checks what they name, and returns the
// chain to exec (argv, tcpserver first) and whether -x asked to print it
// instead.
func run(args []string) (chain []string, print bool, err error) {
	o, err := parse(args)
	if err != nil {
		return nil, false, err
	}
	if err := check(o); err != nil {
		return nil, false, err
	}
	return o.chain(), o.print, nil
}

// parse reads the options and arguments and checks their form.
func parse(args []string) (*options, error) {
	o := &options{concurrency: "40"}
	fs := flag.NewFlagSet("imap-tls-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var mode, account, uidRange string
	var modeSet, quiet, verbose bool
	fs.Func("n", "", func(v string) error { mode, modeSet = v, true; return nil })
	fs.Func("c", "", number(&o.concurrency, 1))
	fs.Func("b", "", number(&o.backlog, 1))
	fs.BoolVar(&o.printPort, "1", false, "")
	fs.StringVar(&account, "u", "", "")
	fs.StringVar(&uidRange, "r", "", "")
	fs.StringVar(&o.jail, "j", "", "")
	fs.StringVar(&o.signer, "s", "", "")
	fs.Func("k", "", func(v string) error {
		if v == "" {
			return errors.New("empty pemfile")
		}
		o.pems = append(o.pems, v)
		return nil
	})
	fs.Func("C", "", func(v string) error {
		if v == "" {
			return errors.New("empty pemfile")
		}
		o.signerPems = append(o.signerPems, v)
		return nil
	})
	for _, name := range []string{"T", "t", "A"} {
		fs.Func(name, "", func(v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 || f > 1e7 {
				return errors.New("not a positive number of seconds")
			}
			o.proxy = append(o.proxy, "-"+name, v)
			return nil
		})
	}
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&quiet, "q", false, "")
	fs.BoolVar(&o.verbose, "V", false, "")
	fs.BoolVar(&o.print, "x", false, "")
	// -H: stunnel-imap -H, a PROXY v2 header to the IMAP server.
	fs.BoolFunc("H", "", func(string) error { o.proxy = append(o.proxy, "-H"); return nil })
	fs.Func("L", "", func(v string) error {
		if err := checkSources(v); err != nil {
			return err
		}
		o.balancers = v
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, usage("")
		}
		return nil, usage(flagMessage(err))
	}
	rest := fs.Args()
	switch {
	case !modeSet:
		return nil, usage("missing -n mode")
	case account == "" && uidRange == "":
		return nil, usage("missing -u account or -r base:count")
	case account != "" && uidRange != "":
		return nil, usage("-u and -r together: one of them")
	case o.jail == "":
		return nil, usage("missing -j jail")
	case len(o.pems) == 0 && o.signer == "":
		return nil, usage("missing -k pemfile or -s socket")
	case len(o.pems) > 0 && o.signer != "":
		return nil, usage("-k and -s together: with -s the signer holds the keys")
	case len(o.signerPems) > 0 && o.signer == "":
		return nil, usage("-C without -s: -C names the signer's files, -k the key process's")
	case verbose && quiet:
		return nil, usage("-v and -q together: one of them")
	case len(rest) < 3:
		return nil, usage("missing ip, port or imapd")
	}
	if verbose {
		o.proxy = append(o.proxy, "-v")
	}
	if quiet {
		o.proxy = append(o.proxy, "-q")
	}
	switch mode {
	case "imap", "imap-", "imaps", "pop3", "pop3-", "pop3s":
		o.mode = mode
	case "implicit":
		return nil, log.Config(nil, "mode implicit is now called imaps: write imaps (in env/MODE for a service)")
	default:
		return nil, log.Config(nil, "mode %q is not imap, imap-, imaps, pop3, pop3- or pop3s", mode)
	}
	if account != "" {
		if !accountName.MatchString(account) {
			return nil, log.Config(nil, "account %q is not a valid account name", account)
		}
		o.ids = []string{"-u", account}
	} else {
		if !uidRangeForm.MatchString(uidRange) {
			return nil, log.Config(nil, "uid range %q is not base:count", uidRange)
		}
		o.ids = []string{"-r", uidRange}
	}
	if len(o.pems) > maxPEMs {
		return nil, log.Config(nil, "%d pemfiles: at most %d", len(o.pems), maxPEMs)
	}
	o.ip, o.port, o.imapd = rest[0], rest[1], rest[2:]
	if o.ip == "" || strings.HasPrefix(o.ip, "-") {
		return nil, log.Config(nil, "ip %q is not an address", o.ip)
	}
	if p, err := strconv.Atoi(o.port); err != nil || p < 0 || p > 65535 || strings.TrimLeft(o.port, "0123456789") != "" {
		return nil, log.Config(nil, "port %q is not a number from 0 to 65535", o.port)
	}
	if o.imapd[0] == "" {
		return nil, log.Config(nil, "empty imapd")
	}
	return o, nil
}

var (
	accountName  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	uidRangeForm = regexp.MustCompile(`^[0-9]+:[0-9]+$`)
)

// number is a flag.Func that keeps v when it is a decimal number of at
// least least.
func number(p *string, least int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < least || strings.TrimLeft(v, "0123456789") != "" {
			return fmt.Errorf("not a number of at least %d", least)
		}
		*p = v
		return nil
	}
}

// flagMessage turns the flag package's error into our grammar:
// `invalid value "x" for flag -c: not ...` becomes `-c "x": not ...`,
// `flag provided but not defined: -Z` becomes `unknown option -Z`.
func flagMessage(err error) string {
	s := err.Error()
	if m := regexp.MustCompile(`^invalid value "(.*)" for flag -(\S+): (.*)$`).FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("-%s %q: %s", m[2], m[1], m[3])
	}
	if name, ok := strings.CutPrefix(s, "flag provided but not defined: "); ok {
		return "unknown option " + name
	}
	if name, ok := strings.CutPrefix(s, "flag needs an argument: "); ok {
		return "option " + name + " needs an argument"
	}
	return strings.TrimPrefix(s, "flag ")
}

// check looks at what the options name, in the order the chain would
// trip over it: the programs, the jail, the certificate files, the
// account or uid range. Everything it finds wrong here would otherwise
// fail every connection, one by one, in the log.
func check(o *options) error {
	progs := programs
	if o.balancers != "" {
		progs = append(progs[:len(progs):len(progs)], "proxy-server")
	}
	for _, p := range progs {
		if p == "stunnel-imap-key" && o.signer != "" {
			continue // the signer is a service of its own
		}
		if _, err := exec.LookPath(p); err != nil {
			return log.Temp(pathReason(err), "find %s in $PATH", p)
		}
	}
	st, err := os.Stat(o.jail)
	if err != nil {
		return log.Temp(err, "use jail %s", o.jail)
	}
	if !st.IsDir() {
		return log.Config(nil, "jail %s is not a directory", o.jail)
	}
	// With -s the signer loads its own files at its start; -C names them
	// so that this service, too, refuses to come up on a certificate the
	// signer would refuse (issue 13: one policy, every path).
	pems := append(o.pems[:len(o.pems):len(o.pems)], o.signerPems...)
	for _, p := range pems {
		if err := readable(p); err != nil {
			return err
		}
	}
	if len(pems) > 0 {
		if err := checkCerts(pems); err != nil {
			return err
		}
	}
	// The account or the range, as setuidgid-chroot will take it for
	// each connection: the range against pid_max, /etc/passwd and
	// /etc/group; the account exists and is not root.
	cmd := exec.Command("setuidgid-chroot", append(o.ids, "true")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == log.ExitUsage {
			return log.Config(nil, "setuidgid-chroot refuses %s %s", o.ids[0], o.ids[1])
		}
		return log.Temp(err, "check %s %s with setuidgid-chroot", o.ids[0], o.ids[1])
	}
	return nil
}

// checkCerts has the certificates checked as the key process of every
// connection will load them, by the suite's one loader: `stunnel-imap-key
// -c -p pemfile ...` (this program does no crypto). A service whose key
// process would refuse them (expired, not valid yet, an encrypted key, a
// key that does not match, ...) does not come up as if serving: exit 100,
// after stunnel-imap-key's own line saying why. Its report (stdout) is
// not kept; its warnings (a certificate that expires within
// CERT_WARN_DAYS) go to stderr, the service's log, at each start.
func checkCerts(pems []string) error {
	args := []string{"-c"}
	for _, p := range pems {
		args = append(args, "-p", p)
	}
	cmd := exec.Command("stunnel-imap-key", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == log.ExitUsage {
			return log.Config(nil, "stunnel-imap-key refuses the certificate: not starting")
		}
		return log.Temp(err, "check the certificate with stunnel-imap-key")
	}
	return nil
}

// pathReason is exec.LookPath's error without the name it repeats; not
// found in $PATH is "file does not exist".
func pathReason(err error) error {
	if errors.Is(err, exec.ErrNotFound) {
		return syscall.ENOENT
	}
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

// readable checks that the certificate file p can be opened and is not
// empty. Only one byte is read: the file holds the private key, which
// this program has no business reading (the key process loads it).
func readable(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return log.Temp(err, "read certificate file %s", p)
	}
	defer f.Close()
	var b [1]byte
	if n, err := f.Read(b[:]); n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return log.Config(nil, "certificate file %s is empty: put the certificate chain and its key there", p)
		}
		return log.Temp(err, "read certificate file %s", p)
	}
	return nil
}

// chain is the argv to exec: tcpserver and everything it runs for each
// connection, one program per element group as in the package comment.
func (o *options) chain() []string {
	c := []string{"tcpserver", "-R", "-H", "-l", "0", "-c", o.concurrency}
	if o.backlog != "" {
		c = append(c, "-b", o.backlog)
	}
	if o.printPort {
		c = append(c, "-1")
	}
	if o.verbose {
		c = append(c, "-v")
	}
	c = append(c, o.ip, o.port)
	if o.balancers != "" {
		c = append(c, "proxy-server", "-a", o.balancers)
	}
	c = append(c, "makesock")
	if o.signer != "" {
		return o.signerChain(c)
	}
	c = append(c, "makesock", "-d", "4")
	c = append(c, "setuidgid-chroot", "-/", o.jail)
	c = append(c, o.ids...)
	c = append(c, "stunnel-imap", "-n", o.mode, "-F", "3", "-K", "4")
	c = append(c, o.proxy...)
	c = append(c, "-makesock_connect_to")
	c = append(c, "setuidgid-chroot", "-/", o.jail)
	c = append(c, o.ids...)
	key := []string{"stunnel-imap-key"}
	for i, p := range o.pems {
		fd := 3
		if i > 0 {
			fd = 4 + i // then 5, 6, ...: 4 stays free, as the pages have always shown it
		}
		c = append(c, "-o", strconv.Itoa(fd)+":"+p)
		key = append(key, "-P", strconv.Itoa(fd))
	}
	c = append(c, key...)
	c = append(c, "-makesock_connect_to")
	return append(c, o.imapd...)
}

// printChain writes the chain for -x, one argument per line.
func printChain(w io.Writer, chain []string) error {
	if _, err := io.WriteString(w, strings.Join(chain, "\n")+"\n"); err != nil {
		return log.Temp(err, "write the chain")
	}
	return nil
}

// execChain replaces this process with tcpserver.
func execChain(chain []string) error {
	path, err := exec.LookPath(chain[0])
	if err != nil {
		return log.Temp(pathReason(err), "find %s in $PATH", chain[0])
	}
	err = syscall.Exec(path, chain, tlsEnv(chain, os.Environ()))
	return log.Temp(err, "run %s", path)
}

// checkSources checks -L as proxy-server -a will take it: addresses and
// prefixes, comma-separated.
func checkSources(v string) error {
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
