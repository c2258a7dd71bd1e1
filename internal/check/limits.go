package check

import (
	"strconv"

	"imap-tls/internal/suite"
	"imap-tls/log"
)

// MinMemLimit is the smallest data limit (softlimit -d, RLIMIT_DATA,
// bytes: env/MEMLIMIT, env/SIGNERMEMLIMIT) under which every Go program
// of the chain starts. The kernel counts every private writable mapping
// against it, touched or not, and a Go 1.26 program maps about 40 MB at
// start that it never touches (the heap arena index, 32 MB); one that
// links crypto/tls (stunnel-imap, the key holders, imap-tls-server) has
// 32 MB more, crypto/internal/fips140/drbg's buffer in its bss. Measured
// 2026-12-06 (linux 6.18): those start every time at 80 MB, 7 times in
// 10 at 76 MB, never at 74 MB ("out of memory allocating heap arena
// map"); a whole session through the chain works from about 76 MB. A
// session's own memory is small on top (service/README.md, Memory).
// imap-tls-check refuses less, and so do the run files (imap-tls-server
// -M) and imap-tls-server at start. Whoever changes the memory defaults
// changes this one number.
const MinMemLimit = 80_000_000

// MemLimit checks a data limit (env/MEMLIMIT, env/SIGNERMEMLIMIT): a
// number of bytes, at least MinMemLimit.
func MemLimit(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return log.Config(nil, "%q is not a number of bytes", v)
	}
	if n < MinMemLimit {
		return log.Config(nil, "%s is below what a Go program needs to start (%d bytes of data, softlimit -d): raise it", v, MinMemLimit)
	}
	return nil
}

// GoMemLimit is GOMEMLIMIT for a process under the data limit v (which
// passed MemLimit): what is left above MinMemLimit, the memory the
// program can really touch, so that the Go collector works harder before
// the bound rather than the program dying at it; at least 4 MB (a
// small Go program's own resident size), so that a limit at the floor
// does not make the collector run without end.
func GoMemLimit(v string) string {
	n, _ := strconv.ParseInt(v, 10, 64)
	return strconv.FormatInt(max(n-MinMemLimit, 4_000_000), 10)
}

// SignerLimit checks env/CONCURRENCY against the signer's limit (every
// connection of a front holds one channel to the signer during its
// handshake, and a site's fronts share one signer): at most
// suite.SignerMax, which the signer serves at once (stunnel-imap-signer
// -c's default); beyond it a connection's handshake is refused.
func SignerLimit(concurrency int) error {
	if concurrency > suite.SignerMax {
		return log.Config(nil, "%d is above the signer's limit of %d proxies at once (stunnel-imap-signer -c): a connection beyond it fails its handshake (write %d or less)", concurrency, suite.SignerMax, suite.SignerMax)
	}
	return nil
}
