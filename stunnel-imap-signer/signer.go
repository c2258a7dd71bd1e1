// Package signer is stunnel-imap-signer: one long-running, jailed process
// per service that holds the private keys and gives each proxy that
// connects the certificate chain and one signature, the key process's
// protocol (package keyproc) once per accepted connection.
//
// It never makes a socket: it is handed a listening unix socket
// (setuidgid-chroot -l, mode 0600, root's) and accepts on it. Only root
// can connect, and each connection is made for one client connection by
// that connection's setuidgid-chroot -s before it drops: a proxy,
// chrooted, under a uid of its own and behind a seccomp filter that
// refuses socket and connect, holds exactly one channel and so gets at
// most one signature.
//
// It reads its keys from descriptors opened by root (setuidgid-chroot
// -o) and keeps a duplicate of each to watch: a file rewritten in place
// is read again through it and served from the next connection on; a
// file replaced (renamed over, removed: the old one has no link left)
// cannot be opened again from the jail, so the signer stops accepting,
// lets the sessions in progress finish, and exits for supervise to
// start it again with the new one. setuidgid-chroot -s waits for the
// new listener, so proxies see a short delay, not a failure.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/internal/certfile"
	"imap-tls/internal/keyproto"
	"imap-tls/internal/nodump"
	"imap-tls/internal/seccomp"
	"imap-tls/log"
)

// Synopsis is stunnel-imap-signer's usage, after the program name.
const Synopsis = "-L fd -P fd [ -P fd ... ] [ -c max ] [ -i secs ]"

const (
	// defaultMax bounds the proxies served at once (-c): one goroutine
	// and one descriptor each, a few kB. Beyond it a proxy is refused
	// (its connection ends with a log line) and the signer logs it.
	defaultMax = 4096
	// drainWait is how long a signer whose file was replaced waits for
	// the sessions in progress before it exits anyway.
	drainWait = 2 * time.Second
	// refusedEvery bounds the "limit reached" warnings to one a second.
	refusedEvery = time.Second
)

// watched is one -P source: its duplicate descriptor and what fstat said
// when it was last read.
type watched struct {
	fd   int
	name string
	st   unix.Stat_t
}

// changed compares two fstat results on the fields a rewrite moves.
func changed(a, b *unix.Stat_t) bool {
	return a.Mtim != b.Mtim || a.Ctim != b.Ctim || a.Size != b.Size || a.Ino != b.Ino
}

// Signer is the running service.
type Signer struct {
	keys  atomic.Pointer[keyproto.Keys]
	files []*watched
	ln    net.Listener
	log   *log.Logger
	max   int64

	active   atomic.Int64
	sessions sync.WaitGroup
	mu       sync.Mutex
	lastWarn time.Time
	refused  int
}

// Run is stunnel-imap-signer: args are its options.
func Run(args []string, l *log.Logger) error {
	var keyFDs []int
	lfd := -1
	max := int64(defaultMax)
	interval := time.Second
	fs := flag.NewFlagSet("stunnel-imap-signer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("P", "", func(v string) error {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 0 {
			return errors.New("bad descriptor " + v)
		}
		keyFDs = append(keyFDs, fd)
		return nil
	})
	fs.Func("L", "", func(v string) error {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 0 {
			return errors.New("bad descriptor " + v)
		}
		lfd = fd
		return nil
	})
	fs.Func("c", "", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return errors.New("-c wants a number of at least 1")
		}
		max = n
		return nil
	})
	fs.Func("i", "", func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0.01 || f > 3600 {
			return errors.New("-i wants seconds from 0.01 to 3600")
		}
		interval = time.Duration(f * float64(time.Second))
		return nil
	})
	if err := fs.Parse(args); err != nil {
		msg := log.Reason(err)
		if errors.Is(err, flag.ErrHelp) {
			msg = ""
		}
		return &log.UsageError{Synopsis: Synopsis, Msg: msg}
	}
	switch {
	case fs.NArg() != 0:
		return &log.UsageError{Synopsis: Synopsis, Msg: "unexpected argument " + strconv.Quote(fs.Arg(0))}
	case lfd < 0:
		return &log.UsageError{Synopsis: Synopsis, Msg: "no -L: the listening socket's descriptor is needed"}
	case len(keyFDs) == 0:
		return &log.UsageError{Synopsis: Synopsis, Msg: "no -P: no certificate given"}
	}
	if err := nodump.Set(); err != nil {
		return log.Temp(err, "harden the signer")
	}
	s := &Signer{log: l, max: max}
	var ks keyproto.Keys
	for _, fd := range keyFDs {
		w, c, err := open(fd)
		if err != nil {
			return err
		}
		s.files = append(s.files, w)
		ks = append(ks, keyproto.Key{Cert: *c})
	}
	s.keys.Store(&ks)
	f := os.NewFile(uintptr(lfd), "listener")
	if f == nil {
		return log.Temp(errors.New("bad file descriptor"), "use descriptor %d to listen", lfd)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return log.Temp(err, "use descriptor %d to listen", lfd)
	}
	s.ln = ln
	// LOCK-DOWN POINT: the keys are loaded, the listener is open; from
	// here the signer can accept, and open, make or connect nothing.
	if err := seccomp.InstallListener(); err != nil {
		return log.Temp(err, "lock the signer down")
	}
	seccomp.Probe(l)
	l.Info("ready: %d certificate(s), at most %d proxies at once", len(ks), max)
	go s.watch(interval)
	return s.serve()
}

// open keeps a duplicate of fd to watch, then loads the PEM from fd
// through the one loader (which closes fd).
func open(fd int) (*watched, *tls.Certificate, error) {
	name := "descriptor " + strconv.Itoa(fd)
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, log.Temp(err, "read certificate from %s", name)
	}
	w := &watched{fd: d, name: name}
	if err := unix.Fstat(d, &w.st); err != nil {
		return nil, nil, log.Temp(err, "read certificate from %s", name)
	}
	c, err := certfile.Descriptor(fd)
	if err != nil {
		return nil, nil, err
	}
	return w, c, nil
}

// serve accepts until the listener is closed, then waits for the
// sessions in progress (at most drainWait).
func (s *Signer) serve() error {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			// EMFILE and friends: the proxies wait in the backlog.
			s.log.Warning("unable to accept a proxy: %s", log.Reason(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if s.active.Add(1) > s.max {
			s.active.Add(-1)
			conn.Close()
			s.limitReached()
			continue
		}
		s.sessions.Add(1)
		go s.session(conn)
	}
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainWait):
		s.log.Info("%d session(s) still open after %v: exiting anyway", s.active.Load(), drainWait)
	}
	return nil
}

// session is one proxy: the key process's protocol, exactly once.
func (s *Signer) session(conn net.Conn) {
	defer s.sessions.Done()
	defer s.active.Add(-1)
	defer conn.Close()
	if err := keyproto.Serve(conn, conn, *s.keys.Load()); err != nil {
		s.log.Warning("refused a proxy: %s", log.Reason(err))
	}
}

// limitReached logs, at most once a second, that proxies were refused.
func (s *Signer) limitReached() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused++
	if time.Since(s.lastWarn) < refusedEvery {
		return
	}
	s.log.Warning("%d proxies at once, the limit (-c): refused %d", s.max, s.refused)
	s.lastWarn, s.refused = time.Now(), 0
}

// watch checks the certificate files every interval: rewritten in place,
// they are read again; replaced, the signer stops accepting and exits.
func (s *Signer) watch(interval time.Duration) {
	for range time.Tick(interval) {
		if s.check() {
			return
		}
	}
}

// check is one round of watch; true once the signer is stopping.
func (s *Signer) check() bool {
	sts := make([]unix.Stat_t, len(s.files))
	reread := false
	for i, w := range s.files {
		if err := unix.Fstat(w.fd, &sts[i]); err != nil {
			s.log.Warning("unable to check certificate %s: %s", w.name, log.Reason(err))
			return false
		}
		if sts[i].Nlink == 0 {
			s.log.Info("certificate %s was replaced on disk: exiting, to be started again with the new one", w.name)
			s.ln.Close()
			return true
		}
		if changed(&sts[i], &w.st) {
			reread = true
		}
	}
	if !reread {
		return false
	}
	// What fstat said before the read is what is remembered: a write
	// still going on moves it again, and the next round reads again.
	for i, w := range s.files {
		w.st = sts[i]
	}
	ks := make(keyproto.Keys, 0, len(s.files))
	for _, w := range s.files {
		c, err := certfile.Read(io.NewSectionReader(preader(w.fd), 0, certfile.MaxPEM+1), w.name)
		if err != nil {
			// Half written, perhaps: the next change tries again; the
			// old keys are served meanwhile.
			s.log.Warning("certificate %s changed and does not load, still serving the old one: %s", w.name, log.Reason(err))
			return false
		}
		ks = append(ks, keyproto.Key{Cert: *c})
	}
	s.keys.Store(&ks)
	s.log.Info("certificates read again: %d", len(ks))
	return false
}

// preader reads a descriptor at an offset (pread), leaving its position
// and its life alone: an os.File would close it when collected.
type preader int

func (fd preader) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(fd), p, off)
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
