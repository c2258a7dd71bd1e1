// Package layout holds one test, of the module's shape: which packages
// may touch crypto, and which may import which. It replaces a folder
// convention ("only stunnel-imap's tree imports crypto") that nothing
// checked. It reads `go list -json ./...` (every package of the module
// with its direct imports and all its dependencies) and applies the
// rules below to what each package's non-test files import: a test file
// may import anything (tests make certificates and run TLS clients).
//
// To change a rule, change its table here, in the same commit as the
// code that needs it, and say why beside the entry.
package layout

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "imap-tls"

// cryptoAllowed are the packages whose own files may import crypto/*
// beyond the primitives: the TLS family (the proxy, the protocol between
// it and the key holder, the key holders, the one certificate loader),
// and the test support that makes certificates.
var cryptoAllowed = map[string]string{
	"stunnel-imap":                   "the proxy: TLS with the client (crypto/tls), the leaf's names for the log",
	"internal/keyproto":              "the key protocol and the proxy's Client: a crypto.Signer that verifies each signature",
	"internal/keyholder":             "the key holder's end: signs with the private key",
	"internal/certfile":              "the one certificate loader: parses chains and private keys",
	"stunnel-imap-key":               "the key process: holds the keys it loads",
	"stunnel-imap-signer":            "the signer: holds the keys it loads",
	"imap-tls-check":                 "a TLS client, unverified, that reads the greeting through a running implicit-TLS front (live.go); it holds no key",
	"internal/testkit":               "test support: makes certificates",
	"internal/testkit/memscan":       "test support: finds a private key's bytes in a process's memory",
	"internal/certfile/certfiletest": "test support: the loader's table of bad certificates",
	"internal/keyproto/keyprototest": "test support: keys and TLS handshakes for both ends of the protocol",
}

// cryptoPrograms are the programs that may link crypto beyond the
// primitives, through the packages above: the TLS family's programs,
// and the two that check a certificate file through the one loader
// (internal/check, internal/certfile) without serving TLS or signing.
// Everything under tests/ is test code, free of this rule and of the
// one above (no program may link it: testSupport).
var cryptoPrograms = map[string]string{
	"stunnel-imap":        "the proxy",
	"stunnel-imap-key":    "the key process",
	"stunnel-imap-signer": "the signer",
	"imap-tls-server":     "checks the certificate at start through internal/check and internal/certfile",
	"imap-tls-check":      "checks the certificate through internal/check and internal/certfile",
}

// primitive are the crypto packages that hold no key, parse no
// certificate and speak no TLS: a random number, a digest, a
// constant-time compare. Any package may import them.
var primitive = map[string]bool{
	"crypto/rand":   true,
	"crypto/sha256": true,
	"crypto/sha512": true,
	"crypto/subtle": true,
}

// testSupport are the packages only tests may link: no program (a
// package main outside tests/) may depend on them.
var testSupport = []string{
	"internal/testkit",
	"internal/testkit/memscan",
	"internal/certfile/certfiletest",
	"internal/keyproto/keyprototest",
	"tests",
}

// keyHolderCode is the code that signs with the private key; only the
// key holders' programs may link it (and tests).
const keyHolderCode = "internal/keyholder"

var keyHolders = map[string]bool{"stunnel-imap-key": true, "stunnel-imap-signer": true}

// keySide are the key holders and their end of the protocol: none of
// them may link the network-facing proxy's code.
var keySide = []string{"stunnel-imap-key", "stunnel-imap-signer", keyHolderCode}

type pkg struct {
	ImportPath string
	Name       string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// rel is a module package's path without the module's name ("." for
// the root); ok is false for a package outside the module.
func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func isCrypto(p string) bool { return p == "crypto" || strings.HasPrefix(p, "crypto/") }

var listed []byte

// goList returns every package of the module, by its path relative to
// the module; go list runs once per test process.
func goList(t *testing.T) map[string]*pkg {
	t.Helper()
	if listed == nil {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		cmd := exec.Command(goBin, "list", "-e", "-json=ImportPath,Name,Imports,Deps,Error", "./...")
		cmd.Dir = "../.." // go test runs in this folder: the module's root is two up
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if listed, err = cmd.Output(); err != nil {
			t.Fatalf("go list: %v: %s", err, stderr.String())
		}
	}
	out := listed
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list's output: %v", err)
		}
		r, ok := rel(p.ImportPath)
		if !ok {
			t.Fatalf("go list gave %s, outside the module", p.ImportPath)
		}
		if p.Error != nil {
			t.Errorf("%s does not load: %s", r, p.Error.Err)
		}
		pkgs[r] = &p
	}
	if len(pkgs) < 10 || pkgs["stunnel-imap"] == nil || pkgs["internal/keyproto"] == nil {
		t.Fatalf("go list found %d packages: not this module's layout", len(pkgs))
	}
	return pkgs
}

// programFolders are the top-level folders that hold a program (a
// package main at the folder's root), and tests/.
func programFolders(pkgs map[string]*pkg) map[string]bool {
	f := map[string]bool{"tests": true}
	for r, p := range pkgs {
		if p.Name == "main" && !strings.Contains(r, "/") && r != "." {
			f[r] = true
		}
	}
	return f
}

// programs are the packages main outside tests/: what ships.
func programs(pkgs map[string]*pkg) []string {
	var ps []string
	for r, p := range pkgs {
		if p.Name == "main" && !under(r, "tests") {
			ps = append(ps, r)
		}
	}
	sort.Strings(ps)
	return ps
}

// moduleDeps is what p depends on inside the module, relative paths.
func moduleDeps(p *pkg) []string {
	var ds []string
	for _, d := range p.Deps {
		if r, ok := rel(d); ok {
			ds = append(ds, r)
		}
	}
	return ds
}

func TestLayout(t *testing.T) {
	pkgs := goList(t)
	for _, v := range check(pkgs) {
		t.Error(v)
	}
}

// check returns one line for each broken rule.
func check(pkgs map[string]*pkg) []string {
	var bad []string
	folders := programFolders(pkgs)
	names := make([]string, 0, len(pkgs))
	for r := range pkgs {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		p := pkgs[r]
		// Only the TLS family (and test support) touches crypto.
		if _, ok := cryptoAllowed[r]; !ok && !under(r, "tests") {
			for _, i := range p.Imports {
				if isCrypto(i) && !primitive[i] {
					bad = append(bad, r+" imports "+i+": only the TLS family may (internal/layout's cryptoAllowed)")
				}
			}
		}
		deps := moduleDeps(p)
		for _, d := range deps {
			top, _, _ := strings.Cut(d, "/")
			switch {
			// Shared code depends on no program.
			case under(r, "internal") && folders[top]:
				bad = append(bad, r+" depends on "+d+": internal/ must not import a program's folder")
			// The signing code only in the key holders.
			case d == keyHolderCode && !keyHolders[r] && !under(r, "tests"):
				bad = append(bad, r+" depends on "+d+": only the key holders (stunnel-imap-key, stunnel-imap-signer) may link the key holder's code")
			}
		}
		// The key side never links the network-facing proxy.
		for _, k := range keySide {
			if r != k {
				continue
			}
			for _, d := range deps {
				if under(d, "stunnel-imap") {
					bad = append(bad, r+" depends on "+d+": the key side must not link the proxy's code")
				}
			}
		}
	}
	// What ships: no test support, and crypto only in the TLS family.
	for _, r := range programs(pkgs) {
		for _, d := range pkgs[r].Deps {
			if dr, ok := rel(d); ok {
				for _, ts := range testSupport {
					if under(dr, ts) {
						bad = append(bad, "program "+r+" links test support "+dr)
					}
				}
			}
			if _, ok := cryptoPrograms[r]; !ok && isCrypto(d) && !primitive[d] && !strings.HasPrefix(d, "crypto/internal/") {
				bad = append(bad, "program "+r+" links "+d+": only the TLS family's programs may")
			}
		}
	}
	return bad
}

// TestCheckCanFail: each rule, broken on purpose in a copy of the real
// layout, is reported; so a clean TestLayout means something.
func TestCheckCanFail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(map[string]*pkg)
		want   string
	}{
		{"makesock imports crypto/tls", func(m map[string]*pkg) {
			m["makesock"].Imports = append(m["makesock"].Imports, "crypto/tls")
		}, "makesock imports crypto/tls: only the TLS family may"},
		{"internal/suite imports crypto/ecdsa", func(m map[string]*pkg) {
			m["internal/suite"].Imports = append(m["internal/suite"].Imports, "crypto/ecdsa")
		}, "internal/suite imports crypto/ecdsa: only the TLS family may"},
		{"a primitive is anyone's", func(m map[string]*pkg) {
			m["makesock"].Imports = append(m["makesock"].Imports, "crypto/rand")
			m["makesock"].Deps = append(m["makesock"].Deps, "crypto/rand")
		}, ""},
		{"makesock links x509 through a package", func(m map[string]*pkg) {
			m["makesock"].Deps = append(m["makesock"].Deps, "crypto/x509")
		}, "program makesock links crypto/x509"},
		{"internal imports a program's folder", func(m map[string]*pkg) {
			m["internal/suite"].Deps = append(m["internal/suite"].Deps, module+"/stunnel-imap/imap")
		}, "internal/suite depends on stunnel-imap/imap: internal/ must not import a program's folder"},
		{"the proxy links the key holder", func(m map[string]*pkg) {
			m["stunnel-imap"].Deps = append(m["stunnel-imap"].Deps, module+"/internal/keyholder")
		}, "stunnel-imap depends on internal/keyholder: only the key holders"},
		{"the signer links the proxy", func(m map[string]*pkg) {
			m["stunnel-imap-signer"].Deps = append(m["stunnel-imap-signer"].Deps, module+"/stunnel-imap/line")
		}, "stunnel-imap-signer depends on stunnel-imap/line: the key side must not link the proxy's code"},
		{"a program links the test kit", func(m map[string]*pkg) {
			m["stunnel-imap-key"].Deps = append(m["stunnel-imap-key"].Deps, module+"/internal/testkit")
		}, "program stunnel-imap-key links test support internal/testkit"},
	} {
		pkgs := goList(t)
		if bad := check(pkgs); len(bad) != 0 {
			t.Fatalf("the real layout already breaks a rule: %v", bad)
		}
		tc.break_(pkgs)
		bad := check(pkgs)
		if tc.want == "" && len(bad) != 0 || tc.want != "" && (len(bad) != 1 || !strings.Contains(bad[0], tc.want)) {
			t.Errorf("%s: got %q, want one line with %q (none if empty)", tc.name, bad, tc.want)
		}
	}
}
