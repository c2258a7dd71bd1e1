package check

import (
	"strconv"

	"imap-tls/internal/suite"
	"imap-tls/log"
)

// MinMemLimit is the smallest env/MEMLIMIT (softlimit -m, bytes) under
// which a Go program of the chain starts. softlimit -m sets the data
// limit and the address space together, and the Go runtime (1.26)
// reserves about 900 MB of address space at start that it never touches
// (measured 2026-12-05: it fails at 600 MB). imap-tls-check refuses
// less, and so should the run files. Whoever changes the memory
// defaults changes this one number.
const MinMemLimit = 900_000_000

// MinDataLimit is the smallest data limit alone (softlimit -d) under
// which a Go program starts: about 60 MB (it fails at 40 MB).
const MinDataLimit = 60_000_000

// MemLimit checks env/MEMLIMIT: a number of bytes, at least MinMemLimit.
func MemLimit(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return log.Config(nil, "%q is not a number of bytes", v)
	}
	if n < MinMemLimit {
		return log.Config(nil, "%s is below %d bytes: softlimit -m sets the address space as well as the data limit, and a Go program reserves about %d MB of address space at start, so no program of the chain would start (write %d or more)", v, MinMemLimit, MinMemLimit/1_000_000, MinMemLimit)
	}
	return nil
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
