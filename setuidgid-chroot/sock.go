package main

import (
	"errors"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/internal/sockaddr"
	"imap-tls/log"
)

// The kinds of descriptor a -o, -c, -s or -l puts on its fd.
const (
	kindOpen    = 'o' // a file, read-only
	kindServer  = 'c' // a stream socket connected to a server's address
	kindConnect = 's' // a unix stream socket connected to path: the signer
	kindListen  = 'l' // a unix stream socket bound to path and listening
)

// connectWait bounds how long -s waits for a listener that is not there
// (the socket file missing, or nobody listening: a signer being restarted
// by supervise takes a few milliseconds); connectStep is the pause between
// tries.
const (
	connectWait = 2 * time.Second
	connectStep = 10 * time.Millisecond
)

// listenBacklog is -l's listen(2) backlog: the kernel caps it at
// net.core.somaxconn.
const listenBacklog = 4096

// connectUnix returns a new close-on-exec descriptor connected to the
// unix stream socket at path. It runs while privileged: a socket that
// only root may connect to (mode 0600, root's) is reachable here and
// nowhere after the drop.
func connectUnix(path string) (int, error) {
	a := sockaddr.Unix(path)
	deadline := time.Now().Add(connectWait)
	for {
		// A full backlog Dial itself tries again, up to the deadline.
		fd, err := sockaddr.Dial(a, time.Until(deadline))
		// Missing or refused: a listener that is restarting. Anything
		// else (permission, not a socket) will not mend by waiting.
		if err == nil || (err != unix.ENOENT && err != unix.ECONNREFUSED) || !time.Now().Before(deadline) {
			return fd, err
		}
		// Not time.Sleep: its first timer starts the runtime's netpoller,
		// whose epoll and eventfd descriptors then take the lowest free
		// numbers, the very fd -s is to fill ("descriptor in use by
		// setuidgid-chroot itself" on every retried connect).
		sockaddr.Pause(connectStep)
	}
}

// unreachable is -s's failure, as the operator needs it (-s is how each
// connection's proxy reaches the signer): the socket by its absolute
// path, the reason, what to check when nothing listens there, and the
// client whose connection it ends (tcpserver's TCPREMOTEIP and
// TCPREMOTEPORT, when set):
//
//	unable to reach the signer at /etc/imap-tls/signer/socket: connection refused (is the signer service linked and up?); remote=192.0.2.7:4711
func unreachable(err error, socket string, getenv func(string) (string, bool)) error {
	why := log.Reason(err)
	if err == unix.ECONNREFUSED || err == unix.ENOENT {
		why += " (is the signer service linked and up?)"
	}
	why += sockaddr.RemoteSuffix(getenv)
	return log.Temp(errors.New(why), "reach the signer at %s", absPath(socket))
}

// signerDown is -s's failure: a warning that names the socket, the
// reason and the client; then down.
func signerDown(o openSpec, err error) {
	log.New("setuidgid-chroot").Warning("%s", unreachable(err, o.path, os.LookupEnv).Error())
	noClient := func(string) (string, bool) { return "", false }
	down(o, unreachable(err, o.path, noClient).Error())
}

// serverDown is -c's failure, in makesock -c's words: a warning that
// names the address, the reason and the client ("unable to connect to
// 127.0.0.1:10143: connection refused; remote=192.0.2.7:4711"); then
// down. No retry: a server that refuses is down (supervise restarts
// its own in a second; the next connection finds it).
func serverDown(o openSpec, err error) {
	why := log.Temp(err, "connect to %s", o.addr.Text).Error()
	log.New("setuidgid-chroot").Warning("%s%s", why, sockaddr.RemoteSuffix(os.LookupEnv))
	down(o, why)
}

// down leaves o's descriptor closed (one inherited on that number would
// pass for the socket; one of this process's own is closed by the exec)
// and sets $FDn_ERROR (n: o's fd, sockaddr.ErrorVar) to why, for prog to
// tell its client. Everything else goes on as before: the jail, the drop,
// the exec.
func down(o openSpec, why string) {
	if flags, e := unix.FcntlInt(uintptr(o.fd), unix.F_GETFD, 0); e == nil && flags&unix.FD_CLOEXEC == 0 {
		unix.Close(o.fd)
	}
	os.Setenv(sockaddr.ErrorVar(o.fd), why)
}

// absPath is p from the working directory (-s runs before any chroot),
// or p itself when that cannot be known.
func absPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	wd, err := unix.Getwd()
	if err != nil {
		return p
	}
	return path.Clean(wd + "/" + p)
}

// listenUnix binds a new close-on-exec unix stream socket to path, mode
// 0600 (the umask is set for the bind alone), and listens on it. A socket
// file left at path by an earlier run is removed first; any other kind
// of file there is left alone and refused.
func listenUnix(path string) (int, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return -1, errors.New("a file that is not a socket is in the way")
		}
		if err := unix.Unlink(path); err != nil {
			return -1, err
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	old := unix.Umask(0o177)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	unix.Umask(old)
	if err == nil {
		err = unix.Listen(fd, listenBacklog)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
