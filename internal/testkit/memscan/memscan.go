// Package memscan looks for a private key in another process's memory,
// through /proc/PID/maps and /proc/PID/mem, as root: the test that the
// network-facing proxy never holds the key, and its control, that the
// key process does. For tests only: it lives in internal/testkit, and
// only _test.go files import it.
package memscan

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Secrets returns the secret integers of a private key, big-endian:
// RSA's primes and private exponent, ECDSA's scalar, Ed25519's seed.
func Secrets(priv crypto.PrivateKey) (map[string][]byte, error) {
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		return map[string][]byte{"p": p.Primes[0].Bytes(), "q": p.Primes[1].Bytes(), "d": p.D.Bytes()}, nil
	case *ecdsa.PrivateKey:
		b, err := p.Bytes()
		if err != nil {
			return nil, err
		}
		return map[string][]byte{"d": b}, nil
	case ed25519.PrivateKey:
		return map[string][]byte{"seed": p.Seed()}, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", priv)
}

// SecretsPEM is Secrets for the key in a PEM (chain and key, as
// stunnel-imap reads it).
func SecretsPEM(data []byte) (map[string][]byte, error) {
	c, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, err
	}
	return Secrets(c.PrivateKey)
}

// Needles cuts 24 bytes from the middle of each secret, in big-endian
// order ("NAME/be") and reversed ("NAME/le": Go's big.Int and bigmod
// keep little-endian words).
func Needles(secrets map[string][]byte) map[string][]byte {
	n := map[string][]byte{}
	for name, b := range secrets {
		if len(b) < 24 {
			n[name+"/be"] = b
			continue
		}
		m := len(b) / 2
		n[name+"/be"] = b[m-12 : m+12]
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		n[name+"/le"] = r[m-12 : m+12]
	}
	return n
}

// Scan reads every readable mapping of pid and returns the needles it
// found and the number of bytes it read.
func Scan(pid int, needles map[string][]byte) (map[string]bool, int64, error) {
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, 0, err
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, 0, err
	}
	defer mem.Close()
	found := map[string]bool{}
	var total int64
	const chunk, overlap = 1 << 20, 64
	buf := make([]byte, chunk+overlap)
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' || (len(f) >= 6 && strings.HasPrefix(f[5], "[v")) {
			continue // unreadable, or [vvar], [vsyscall]
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for off := start; off < end; off += chunk {
			n := uint64(len(buf))
			if off+n > end {
				n = end - off
			}
			got, _ := mem.ReadAt(buf[:n], int64(off))
			total += int64(got)
			for name, needle := range needles {
				if bytes.Contains(buf[:got], needle) {
					found[name] = true
				}
			}
		}
	}
	return found, total, sc.Err()
}

// Holds reports which secrets (by name, either byte order) Scan found.
func Holds(found map[string]bool, secrets map[string][]byte) []string {
	var held []string
	for s := range secrets {
		if found[s+"/be"] || found[s+"/le"] {
			held = append(held, s)
		}
	}
	return held
}
