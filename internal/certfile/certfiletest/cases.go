// Package certfiletest is the table every certificate path is tested
// against: certfile's own tests, the proxy's (stunnel-imap -p, -P, -d)
// and the key process's (stunnel-imap-key), so that the same input is
// shown to give the same exit status and the same message on each path.
// It is imported by _test.go files only.
package certfiletest

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"

	"golang.org/x/sys/unix"
)

// Case is one certificate source and what loading it must give.
type Case struct {
	Name string
	// Option is the command-line option: "-p" (Arg is a file), "-P" (a
	// descriptor: the caller opens Arg on it, or, when Arg is "", passes
	// a descriptor that is not open), "-d" (Arg is a directory).
	Option, Arg string
	// Code is the exit status: 0 (loads), 100 or 111.
	Code int
	// Msg is the whole fatal message after "prog: fatal: ", with FD
	// standing for the descriptor's number (Message fills it in).
	Msg string
}

// Message returns c.Msg with FD replaced by fd.
func (c Case) Message(fd int) string {
	return strings.ReplaceAll(c.Msg, "FD", strconv.Itoa(fd))
}

// Descriptor returns the descriptor for a "-P" case: Arg opened
// (the loader closes it), or, when Arg is "", a number that is not open.
func (c Case) Descriptor(t testing.TB) int {
	t.Helper()
	if c.Arg == "" {
		for fd := 1000; ; fd++ {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == unix.EBADF {
				return fd
			}
		}
	}
	fd, err := unix.Open(c.Arg, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// Cases writes every case's files under a fresh temporary directory and
// returns the table: each failure of the policy (package certfile), and
// the sources that load.
func Cases(t testing.TB) []Case {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o400); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mkdir := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	good := newPEM(t, []string{"good.test"}, now.Add(-time.Hour), now.Add(24*time.Hour))
	other := newPEM(t, []string{"other.test"}, now.Add(-time.Hour), now.Add(24*time.Hour))
	expiry := now.Add(-48 * time.Hour)
	expired := newPEM(t, []string{"old.test"}, now.Add(-72*time.Hour), expiry)
	start := now.Add(48 * time.Hour)
	future := newPEM(t, []string{"new.test"}, start, now.Add(72*time.Hour))
	chain, key := split(good)
	_, otherKey := split(other)

	var cases []Case
	add := func(name, option, arg string, code int, msg string) {
		cases = append(cases, Case{Name: name, Option: option, Arg: arg, Code: code, Msg: msg})
	}
	loadMsg := func(path, why string) string { return "unable to load certificate " + path + ": " + why }

	// Loads.
	p := write("good.pem", good)
	add("good file", "-p", p, 0, "")
	add("good descriptor", "-P", p, 0, "")
	d := mkdir("gooddir")
	write("gooddir/default.pem", good)
	write("gooddir/other.pem", other)
	write("gooddir/.hidden.pem", []byte("not a pem"))
	write("gooddir/notes.txt", []byte("not a pem"))
	mkdir("gooddir/sub.pem")
	if err := unix.Mkfifo(filepath.Join(d, "fifo.pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("other.pem", filepath.Join(d, "link.pem")); err != nil {
		t.Fatal(err)
	}
	add("good directory, the rest ignored", "-d", d, 0, "")

	// Cannot be opened or read: 111.
	p = filepath.Join(dir, "missing.pem")
	add("missing file", "-p", p, 111, "unable to read certificate "+p+": file does not exist")
	p = mkdir("adir.pem")
	add("a directory as a file", "-p", p, 111, "unable to read certificate "+p+": is a directory")
	add("descriptor not open", "-P", "", 111, "unable to read certificate from descriptor FD: bad file descriptor")
	p = filepath.Join(dir, "nodir")
	add("missing directory", "-d", p, 111, "unable to read certificate "+p+"/default.pem: file does not exist")
	d = mkdir("nodefault")
	write("nodefault/a.pem", good)
	add("directory without default.pem", "-d", d, 111, "unable to read certificate "+d+"/default.pem: file does not exist")
	d = mkdir("dangling")
	write("dangling/default.pem", good)
	if err := os.Symlink("gone.pem", filepath.Join(d, "x.pem")); err != nil {
		t.Fatal(err)
	}
	add("dangling link in a directory", "-d", d, 111, "unable to read certificate "+d+"/x.pem: file does not exist")

	// Bad content: 100, on each kind of source.
	bad := []struct {
		name string
		data []byte
		msg  func(src string) string // src: a path or "from descriptor N"
	}{
		{"garbage", []byte("garbage\n"), func(s string) string { return loadMsg(s, "no PEM data") }},
		{"empty", nil, func(s string) string { return loadMsg(s, "no PEM data") }},
		{"certificate only", chain, func(s string) string { return loadMsg(s, "no private key") }},
		{"key only", key, func(s string) string { return loadMsg(s, "no certificate") }},
		{"truncated in the key", good[:len(good)-40], func(s string) string { return loadMsg(s, "no private key") }},
		{"truncated in the certificate", good[:len(chain)/2], func(s string) string { return loadMsg(s, "no PEM data") }},
		{"key does not match", cat(chain, otherKey), func(s string) string {
			return loadMsg(s, "private key does not match the certificate")
		}},
		{"two keys", cat(chain, key, otherKey), func(s string) string { return loadMsg(s, "more than one private key") }},
		{"bad key", cat(chain, pemBlock("PRIVATE KEY", nil, []byte("junk"))), func(s string) string {
			return loadMsg(s, "private key does not parse")
		}},
		{"bad certificate", cat(pemBlock("CERTIFICATE", nil, []byte("junk")), key), func(s string) string {
			return loadMsg(s, "x509: malformed certificate")
		}},
		{"unsupported key type", cat(chain, x25519(t)), func(s string) string {
			return loadMsg(s, "unsupported private key type *ecdh.PrivateKey")
		}},
		{"encrypted key (PKCS #8)", cat(chain, pemBlock("ENCRYPTED PRIVATE KEY", nil, []byte("sealed"))), func(s string) string {
			return "private key " + in(s) + " is encrypted: store it unencrypted (root-only, 0400)"
		}},
		{"encrypted key (Proc-Type)", cat(chain, pemBlock("EC PRIVATE KEY", map[string]string{
			"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}, []byte("sealed"))), func(s string) string {
			return "private key " + in(s) + " is encrypted: store it unencrypted (root-only, 0400)"
		}},
		{"over 1 MB", cat(bytes.Repeat([]byte("#"), 1<<20), good), func(s string) string {
			return loadMsg(s, "larger than 1048576 bytes")
		}},
		{"expired", expired, func(s string) string {
			return "certificate " + s + " expired on " + expiry.UTC().Format(time.DateOnly)
		}},
		{"not yet valid", future, func(s string) string {
			return "certificate " + s + " is not valid before " + start.UTC().Format(time.DateTime) + " UTC"
		}},
		{"chain of 9", cat(bytes.Repeat(chain, 9), key), func(s string) string {
			return loadMsg(s, "chain of 9 certificates: the limit is 8")
		}},
	}
	// A chain of 8 that does not fit the frame: the leaf, then 7 blocks
	// that nothing parses (only the leaf is parsed), 2300 bytes each.
	filler := pemBlock("CERTIFICATE", nil, bytes.Repeat([]byte{0x30}, 2300))
	der, _ := pem.Decode(chain)
	n := 1 + 2 + len(der.Bytes) + 7*(2+2300)
	bad = append(bad, struct {
		name string
		data []byte
		msg  func(string) string
	}{"chain over 16384 bytes", cat(chain, bytes.Repeat(filler, 7), key), func(s string) string {
		return loadMsg(s, fmt.Sprintf("certificate chain of %d bytes: the limit is 16384", n))
	}})
	for i, b := range bad {
		p := write(fmt.Sprintf("bad%02d.pem", i), b.data)
		add(b.name+" (file)", "-p", p, 100, b.msg(p))
		add(b.name+" (descriptor)", "-P", p, 100, b.msg("from descriptor FD"))
		d := mkdir(fmt.Sprintf("bad%02d", i))
		write(fmt.Sprintf("bad%02d/default.pem", i), good)
		write(fmt.Sprintf("bad%02d/b.pem", i), b.data)
		add(b.name+" (in a directory)", "-d", d, 100, b.msg(filepath.Join(d, "b.pem")))
	}
	d = mkdir("baddefault")
	write("baddefault/default.pem", expired)
	write("baddefault/a.pem", good)
	add("expired default.pem", "-d", d, 100, "certificate "+d+"/default.pem expired on "+expiry.UTC().Format(time.DateOnly))

	d = mkdir("many")
	write("many/default.pem", good)
	for i := 0; i < 4096; i++ {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("x%04d.txt", i)), nil, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	add("directory of more than 4096 files", "-d", d, 100, "more than 4096 files in "+d)
	return cases
}

// in phrases where a key is: "in /x", or "from descriptor N" as given.
func in(s string) string {
	if strings.HasPrefix(s, "from ") {
		return s
	}
	return "in " + s
}

// SNICase is a server name and the certificate served for it, by its
// common name.
type SNICase struct{ SNI, Want string }

// SNIDir writes a certificate directory and returns it with the names
// each path must serve from it: by the certificates' own names (DNS
// names, wildcards, any case), the first in file-name order, else
// default.pem; file names other than default.pem mean nothing.
func SNIDir(t testing.TB) (string, []SNICase) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for file, names := range map[string][]string{
		"default.pem":   {"default.test"},
		"a.pem":         {"a.test", "*.w.test"},
		"b.pem":         {"b.test", "a.test"},
		"mail.test.pem": {"m.test"},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), newPEM(t, names, now.Add(-time.Hour), now.Add(24*time.Hour)), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	// Outside the directory, and hidden: never served.
	os.WriteFile(filepath.Join(dir, "..", "secret.pem"), newPEM(t, []string{"secret.test"}, now.Add(-time.Hour), now.Add(24*time.Hour)), 0o400)
	os.WriteFile(filepath.Join(dir, ".hidden.pem"), newPEM(t, []string{"hidden.test"}, now.Add(-time.Hour), now.Add(24*time.Hour)), 0o400)
	return dir, []SNICase{
		{"", "default.test"},
		{"default.test", "default.test"},
		{"a.test", "a.test"}, // a.pem and b.pem cover it: a.pem is first
		{"A.Test", "a.test"},
		{"x.w.test", "a.test"},
		{"X.W.TEST", "a.test"},
		{"y.x.w.test", "default.test"}, // a wildcard is one label
		{"w.test", "default.test"},
		{"b.test", "b.test"},
		{"m.test", "m.test"},
		{"mail.test", "default.test"}, // a file's name is no name of its certificate
		{"c.test", "default.test"},
		{"secret.test", "default.test"},
		{"hidden.test", "default.test"},
		{"default", "default.test"},
		{"secret", "default.test"},
		{"..x", "default.test"},
		{"../secret", "default.test"},
		{"a/b", "default.test"},
	}
}

// newPEM is a self-signed P-256 certificate for names (testkit.NewCert),
// valid from notBefore to notAfter: the chain, then the key.
func newPEM(t testing.TB, names []string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	return testkit.NewCert(t, testkit.CertOptions{Names: names, NotBefore: notBefore, NotAfter: notAfter, SelfSigned: true}).PEM
}

// x25519 is an X25519 private key: one that cannot sign a handshake.
// The loader refuses its type before it compares it with the leaf.
func x25519(t testing.TB) []byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", nil, pk)
}

func pemBlock(typ string, h map[string]string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: h, Bytes: b})
}

// split cuts a PEM from newPEM into its chain and its key.
func split(p []byte) (chain, key []byte) {
	i := bytes.Index(p, []byte("-----BEGIN PRIVATE KEY"))
	return p[:i:i], p[i:]
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
