package main

import (
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/internal/certfile"
	"imap-tls/internal/keyholder"
	"imap-tls/internal/nodump"
	"imap-tls/internal/opt"
	"imap-tls/internal/seccomp"
	"imap-tls/internal/suite"
	"imap-tls/log"
)

// synopsis is stunnel-imap-signer's usage, after the program name.
const synopsis = "-L fd -P fd[:name] [ -P fd[:name] ... ] [ -c max ] [ -i secs ]"

const (
	// defaultMax bounds the proxies served at once (-c): one goroutine
	// and one descriptor each, a few kB. Beyond it a proxy is refused
	// (its connection ends with a log line) and the signer logs it.
	// imap-tls-check holds env/CONCURRENCY to it.
	defaultMax = suite.SignerMax
	// drainWait is how long a signer whose file was replaced waits for
	// the sessions in progress before it exits anyway.
	drainWait = 2 * time.Second
	// refusedEvery bounds the "limit reached" warnings to one a second.
	refusedEvery = time.Second
	// refusedWait is how long a signer whose certificate is refused
	// waits, watching the file, before it exits for supervise to start
	// it again: one fatal line a minute while nothing changes, not one
	// a second; a new file is taken within a second (-i).
	refusedWait = time.Minute
)

// exitWait, when set, runs before the signer exits: run sets it when a
// certificate is refused (main's Logger calls it after the fatal line).
var exitWait func()

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
	keys  atomic.Pointer[keyholder.Keys]
	files []*watched
	ln    net.Listener
	log   *log.Logger
	max   int64

	active   atomic.Int64
	sessions sync.WaitGroup
	mu       sync.Mutex
	lastWarn time.Time
	refused  int
	// stop is why the signer stopped serving (a certificate the policy
	// now refuses), or nil: serve returns it, for the fatal line and
	// exit 100.
	stop error
}

// run is stunnel-imap-signer: args are its options.
func run(args []string, l *log.Logger) error {
	type source struct {
		fd   int
		name string
	}
	var keyFDs []source
	lfd := -1
	max := defaultMax
	interval := time.Second
	o := opt.New(synopsis)
	o.Func('P', func(v string) error {
		var k source
		if err := certfile.DescriptorOption(v, &k.fd, &k.name); err != nil {
			return err
		}
		keyFDs = append(keyFDs, k)
		return nil
	})
	o.FD('L', 0, &lfd)
	o.Number('c', 1, math.MaxInt32, &max)
	o.Func('i', func(v string) error {
		if err := opt.Seconds(&interval)(v); err != nil || interval < 10*time.Millisecond || interval > time.Hour {
			return errors.New("seconds from 0.01 to 3600")
		}
		return nil
	})
	rest, err := o.Parse(args)
	switch {
	case err != nil:
		return err
	case len(rest) != 0:
		return o.Usage("unexpected argument " + strconv.Quote(rest[0]))
	case lfd < 0:
		return o.Usage("no -L: the listening socket's descriptor is needed")
	case len(keyFDs) == 0:
		return o.Usage("no -P: no certificate given")
	}
	if err := nodump.Set(); err != nil {
		return log.Temp(err, "harden the signer")
	}
	s := &Signer{log: l, max: int64(max)}
	var ks keyholder.Keys
	for _, k := range keyFDs {
		w, c, err := open(k.fd, k.name)
		if err != nil {
			if w != nil {
				// Refused: proxies are refused at once, as when no signer
				// runs, and the fatal line comes at most once a minute.
				unix.Close(lfd)
				exitWait = func() { w.waitChange(interval, refusedWait) }
			}
			return err
		}
		s.files = append(s.files, w)
		ks = append(ks, keyholder.Key{Cert: *c})
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
// through the one loader (which closes fd). name is the file's name for
// the messages ("" for "descriptor N"). A PEM that does not load comes
// back with its watched duplicate.
func open(fd int, name string) (*watched, *tls.Certificate, error) {
	name = certfile.DescriptorName(fd, name)
	what := name
	if strings.HasPrefix(name, "descriptor ") {
		what = "from " + name
	}
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, log.Temp(err, "read certificate %s", what)
	}
	w := &watched{fd: d, name: name}
	if err := unix.Fstat(d, &w.st); err != nil {
		return nil, nil, log.Temp(err, "read certificate %s", what)
	}
	c, err := certfile.Descriptor(fd, name)
	if err != nil {
		return w, nil, err
	}
	return w, c, nil
}

// waitChange returns once the file w watches changes (rewritten in
// place, renamed over or removed) or can no longer be looked at, looking
// every interval, or after max.
func (w *watched) waitChange(interval, max time.Duration) {
	for end := time.Now().Add(max); time.Now().Before(end); {
		time.Sleep(min(interval, time.Until(end)))
		var st unix.Stat_t
		if unix.Fstat(w.fd, &st) != nil || st.Nlink == 0 || changed(&st, &w.st) {
			return
		}
	}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop
}

// session is one proxy: the key process's protocol, exactly once.
func (s *Signer) session(conn net.Conn) {
	defer s.sessions.Done()
	defer s.active.Add(-1)
	defer conn.Close()
	if err := keyholder.Serve(conn, conn, *s.keys.Load()); err != nil {
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
// they are read again; replaced, the signer stops accepting and exits;
// expired while served, the signer stops accepting and exits 100.
func (s *Signer) watch(interval time.Duration) {
	for range time.Tick(interval) {
		if s.check(time.Now()) {
			return
		}
	}
}

// check is one round of watch at now; true once the signer is stopping.
func (s *Signer) check(now time.Time) bool {
	// A certificate served is held to the policy's clock as it was at
	// start: one that expires while served is refused as it would be at
	// start, at once, so that the service is seen down (the run file
	// checks the file before it starts the signer again) rather than up
	// and giving every client a certificate it refuses.
	for i, k := range *s.keys.Load() {
		if err := certfile.Valid(k.Cert.Leaf, s.files[i].name, now); err != nil {
			s.mu.Lock()
			s.stop = err
			s.mu.Unlock()
			s.ln.Close()
			return true
		}
	}
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
	ks := make(keyholder.Keys, 0, len(s.files))
	for _, w := range s.files {
		c, err := certfile.Read(io.NewSectionReader(preader(w.fd), 0, certfile.MaxPEM+1), w.name)
		if err != nil {
			// Half written, perhaps: the next change tries again; the
			// old keys are served meanwhile.
			s.log.Warning("certificate %s changed and does not load, still serving the old one: %s", w.name, log.Reason(err))
			return false
		}
		ks = append(ks, keyholder.Key{Cert: *c})
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
