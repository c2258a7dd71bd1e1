// Command stunnel-imap is the IMAP STARTTLS proxy of imap-tls: the client
// on fd 0/1, the plaintext IMAP server on fd 3; it answers STARTTLS, does
// TLS, and relays. See README.md.
//
// The go:debug settings keep the Go runtime from looking for cgroup CPU
// limits at start and every second after: the proxy runs in an empty
// jail where there are none to find, and after the lock-down it may not
// open files at all.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"imap-tls/log"
	"imap-tls/stunnel-imap/certfile"
	"imap-tls/stunnel-imap/nodump"
	"imap-tls/stunnel-imap/seccomp"
)

const synopsis = "-n imap|imap-|imaps|pop3|pop3-|pop3s [ -F fd ] ( -p pemfile | -P fd | -d certdir | -K fd ) [ -T secs ] [ -t secs ] [ -A secs ] [ -v | -q ] [ -H ]"

func main() {
	l := log.New("stunnel-imap")
	l.Exit(run(l, os.Args[1:]))
}

// options are the parsed command line.
type options struct {
	mode             mode
	serverFD         int
	pemFile          string
	pemFD            int
	keyFD            int // -K: the key process's channel
	certDir          string
	handshakeTimeout time.Duration // -T
	commandTimeout   time.Duration // -t
	idleTimeout      time.Duration // -A
	verbosity        int           // -1 quiet, 0 normal, 1 verbose
	proxyHeader      bool          // -H: a PROXY v2 header first to the server
}

// seconds, descriptor and nonEmpty parse an option's value into p.
func seconds(p *time.Duration) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1e7 {
			return errors.New("not a positive number of seconds")
		}
		*p = time.Duration(f * float64(time.Second))
		return nil
	}
}

func descriptor(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errors.New("not a descriptor number")
		}
		*p = n
		return nil
	}
}

func nonEmpty(p *string, what string) func(string) error {
	return func(v string) error {
		if v == "" {
			return errors.New("empty " + what + " name")
		}
		*p = v
		return nil
	}
}

func parseArgs(args []string) (*options, error) {
	o := &options{
		serverFD:         3,
		pemFD:            -1,
		keyFD:            -1,
		handshakeTimeout: 30 * time.Second,
		commandTimeout:   180 * time.Second,
		idleTimeout:      31 * time.Minute,
	}
	fs := flag.NewFlagSet("stunnel-imap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var modeName string
	var verbose, quiet bool
	fs.StringVar(&modeName, "n", "", "")
	sources := 0 // how many of -p, -P, -d and -K were given
	source := func(set func(string) error) func(string) error {
		return func(v string) error {
			sources++
			return set(v)
		}
	}
	fs.Func("F", "", descriptor(&o.serverFD))
	fs.Func("p", "", source(nonEmpty(&o.pemFile, "file")))
	fs.Func("P", "", source(descriptor(&o.pemFD)))
	fs.Func("d", "", source(nonEmpty(&o.certDir, "directory")))
	fs.Func("K", "", source(descriptor(&o.keyFD)))
	fs.Func("T", "", seconds(&o.handshakeTimeout))
	fs.Func("t", "", seconds(&o.commandTimeout))
	fs.Func("A", "", seconds(&o.idleTimeout))
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&quiet, "q", false, "")
	fs.BoolVar(&o.proxyHeader, "H", false, "")
	if err := fs.Parse(args); err != nil {
		msg := log.Reason(err)
		if errors.Is(err, flag.ErrHelp) {
			msg = "" // asked for: the usage line alone
		}
		return nil, &log.UsageError{Synopsis: synopsis, Msg: msg}
	}
	if fs.NArg() > 0 {
		return nil, &log.UsageError{Synopsis: synopsis, Msg: "unexpected argument " + strconv.Quote(fs.Arg(0))}
	}
	if modeName == "" {
		return nil, &log.UsageError{Synopsis: synopsis, Msg: "no -n: name the mode: " + modeList()}
	}
	m, ok := modeNamed(modeName)
	if !ok {
		return nil, &log.UsageError{Synopsis: synopsis, Msg: "unknown mode " + strconv.Quote(modeName) + ": use " + modeList()}
	}
	o.mode = m
	if sources != 1 {
		return nil, &log.UsageError{Synopsis: synopsis, Msg: "exactly one of -p, -P, -d and -K is needed"}
	}
	if verbose && quiet {
		return nil, &log.UsageError{Synopsis: synopsis, Msg: "-v and -q exclude each other"}
	}
	if verbose {
		o.verbosity = 1
	}
	if quiet {
		o.verbosity = -1
	}
	return o, nil
}

func run(l *log.Logger, args []string) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}

	// Not dumpable, no core file: before any secret is in memory.
	if err := nodump.Set(); err != nil {
		return log.Temp(err, "harden the proxy")
	}
	// The key process is this process's child (the makesock before it
	// forked it, then exec'd into this): with SIGCHLD ignored the kernel
	// reaps it when it exits after the handshake, instead of leaving a
	// zombie for the life of the connection. The proxy starts no other
	// process (and after the lock-down cannot).
	signal.Ignore(syscall.SIGCHLD)

	// -H needs the addresses from the environment: checked before a
	// byte moves.
	var proxy *proxyAddrs
	if o.proxyHeader {
		if proxy, err = proxyAddrsFromEnv(os.Getenv); err != nil {
			return err
		}
	}

	// The expiry warning's days (env/CERT_WARN_DAYS): a bad value is a
	// bad configuration, refused before a byte reaches the client.
	warnDays, err := certfile.WarnDaysFrom(os.Getenv)
	if err != nil {
		return err
	}

	// The certificate first: a bad one ends the process (100) before a
	// byte reaches the client.
	src, err := openCertSource(o, l)
	if err != nil {
		return err
	}

	server, err := fileConn(o.serverFD)
	if err != nil {
		return log.Temp(err, "use descriptor %d for the server", o.serverFD)
	}
	client, err := clientConn()
	if err != nil {
		return log.Temp(err, "use descriptors 0 and 1 for the client")
	}

	cfg := &config{
		mode:             o.mode,
		tls:              tlsConfig(src, o.mode.alpn),
		handshakeTimeout: o.handshakeTimeout,
		commandTimeout:   o.commandTimeout,
		idleTimeout:      o.idleTimeout,
		log:              l,
		verbosity:        o.verbosity,
		certWarnDays:     warnDays,
		remote:           remoteAddr(),
		proxy:            proxy,
	}

	// LOCK-DOWN POINT: every descriptor is open, the TLS configuration is
	// ready, and nothing has been read from the network yet. From here
	// the process can open no file or socket and start no process
	// (package seccomp); this must not fail open. jailprobe builds then
	// try the forbidden calls and log the result.
	if err := seccomp.Install(); err != nil {
		return log.Temp(err, "lock down")
	}
	seccomp.Probe(l)

	if k, ok := src.(keySource); ok {
		cfg.ready = k.ready
	}
	return serve(cfg, client, server).fatal
}

func remoteAddr() string {
	ip, port := os.Getenv("TCPREMOTEIP"), os.Getenv("TCPREMOTEPORT")
	if ip == "" {
		return "unknown"
	}
	if port == "" {
		return ip
	}
	return net.JoinHostPort(ip, port)
}
