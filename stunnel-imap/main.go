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
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/nodump"
	"imap-tls/internal/opt"
	"imap-tls/internal/seccomp"
	"imap-tls/internal/suite"
	"imap-tls/log"
)

var synopsis = "-n " + suite.ModeAlternatives() + " [ -F fd ] ( -p pemfile | -P fd | -d certdir | -K fd ) [ -T secs ] [ -t secs ] [ -A secs ] [ -v | -q ] [ -H ]"

func main() {
	growStack(false)
	l := log.New("stunnel-imap")
	l.Exit(run(l, os.Args[1:]))
}

// mainStack is what the main goroutine's stack is grown to before
// anything else runs (growStack).
const mainStack = 16 << 10

// growStack grows the main goroutine's stack once, here, where it holds
// two frames, to the 16 KiB the TLS handshake needs: otherwise the
// runtime doubles it (8, then 16 KiB) some twenty frames deep inside the
// handshake, copying the stack and adjusting every frame each time, and
// carves a fresh span for each size (tests/bench/startcost.md,
// "stunnel-imap per session"). Its frame is the size it asks for; the
// array is never touched (the branch is never taken), so no page of it
// is.
//
//go:noinline
func growStack(touch bool) {
	if touch {
		var frame [mainStack / 2]byte
		runtime.KeepAlive(&frame)
	}
}

// options are the parsed command line.
type options struct {
	mode             suite.Mode
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

func parseArgs(args []string) (*options, error) {
	o := &options{
		serverFD:         3,
		pemFD:            -1,
		keyFD:            -1,
		handshakeTimeout: 30 * time.Second,
		commandTimeout:   180 * time.Second,
		idleTimeout:      31 * time.Minute,
	}
	set := opt.New(synopsis)
	var modeName string
	var verbose, quiet bool
	set.String('n', &modeName)
	sources := 0 // how many of -p, -P, -d and -K were given
	source := func(set func(string) error) func(string) error {
		return func(v string) error {
			sources++
			return set(v)
		}
	}
	set.FD('F', 0, &o.serverFD)
	set.Func('p', source(opt.String(&o.pemFile)))
	set.Func('P', source(opt.FD(0, &o.pemFD)))
	set.Func('d', source(opt.String(&o.certDir)))
	set.Func('K', source(opt.FD(0, &o.keyFD)))
	set.Seconds('T', &o.handshakeTimeout)
	set.Seconds('t', &o.commandTimeout)
	set.Seconds('A', &o.idleTimeout)
	set.Flag('v', &verbose)
	set.Flag('q', &quiet)
	set.Flag('H', &o.proxyHeader)
	operands, err := set.Parse(args)
	if err != nil {
		return nil, err
	}
	if len(operands) > 0 {
		return nil, set.Usage("unexpected argument " + strconv.Quote(operands[0]))
	}
	if modeName == "" {
		return nil, set.Usage("no -n: name the mode: " + suite.ModeList())
	}
	m, ok := suite.ModeNamed(modeName)
	if !ok {
		return nil, set.Usage("unknown mode " + strconv.Quote(modeName) + ": use " + suite.ModeList())
	}
	o.mode = m
	if sources != 1 {
		return nil, set.Usage("exactly one of -p, -P, -d and -K is needed")
	}
	if verbose && quiet {
		return nil, set.Usage("-v and -q exclude each other")
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

	// What the programs before this one could not connect (down.go):
	// the server or the key holder (setuidgid-chroot -c and -s).
	// Its descriptor is then closed, or the runtime's own: never touched.
	down := downFromEnv(os.Getenv, o.serverFD, o.keyFD)

	// The certificate first: a bad one ends the process (100) before a
	// byte reaches the client.
	var src certSource
	if down.keyHolder != "" {
		src = downSource{down.keyHolder}
	} else if src, err = openCertSource(o); err != nil {
		return err
	}

	var server net.Conn
	if down.server != "" {
		server = goneConn()
	} else if server, err = fileConn(o.serverFD); err != nil {
		return log.Temp(err, "use descriptor %d for the server", o.serverFD)
	}
	client, err := clientConn()
	if err != nil {
		return log.Temp(err, "use descriptors 0 and 1 for the client")
	}

	cfg := &config{
		mode:             o.mode,
		tls:              tlsConfig(src, o.mode.ALPN),
		handshakeTimeout: o.handshakeTimeout,
		commandTimeout:   o.commandTimeout,
		idleTimeout:      o.idleTimeout,
		log:              l,
		verbosity:        o.verbosity,
		certWarnDays:     warnDays,
		remote:           remoteAddr(),
		proxy:            proxy,
		down:             down,
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
