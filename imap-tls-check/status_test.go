package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestStatusSite: -s on a site reads each front with the site's env/
// under its own, skips the signer, names one signer for all, and counts
// each front's log on its own; nothing supervised: no sessions, the
// signer not running.
func TestStatusSite(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, v string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("run", "#!/bin/sh\n")
	for k, v := range map[string]string{"IP": "127.0.0.1", "CONCURRENCY": "500", "SIGNER": "../signer/socket", "PORT": "143"} {
		write("env/"+k, v+"\n")
	}
	for _, f := range [][3]string{{"imap", "imap", "143"}, {"imaps", "imaps", "993"}} {
		write("service/"+f[0]+"/env/MODE", f[1]+"\n")
		write("service/"+f[0]+"/env/PORT", f[2]+"\n")
	}
	write("service/imaps/env/CONCURRENCY", "9\n")
	write("service/signer/run", "#!/bin/sh\n")
	now := time.Now()
	write("service/imaps/log/main/current", stamp(now.Add(-time.Minute))+" stunnel-imap: info: remote=127.0.0.1:1 mode=imaps starttls=no tls=1.3 cipher=X sni=- auth=yes in=1 out=1 warnings=0 duration=0.1s end=client-logout\n")
	var out bytes.Buffer
	if err := status(dir, &out, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^imap +imap +127\.0\.0\.1:143 +supervise not running +-/500$`,
		`(?m)^imaps +imaps +127\.0\.0\.1:993 +supervise not running +-/9$`,
		`(?m)^signer: supervise not running; not running: ` + regexp.QuoteMeta(filepath.Join(dir, "service", "signer", "socket")) + `: file does not exist$`,
		`(?m)^ +imap +imaps$`,
		`(?m)^ +connections +0 +1$`,
		`(?m)^ +end=client-logout +0 +1$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("lacks %s:\n%s", re, out.String())
		}
	}
	if n := regexp.MustCompile(`(?m)^signer:`).FindAllStringIndex(out.String(), -1); len(n) != 1 {
		t.Errorf("%d signer lines, want 1:\n%s", len(n), out.String())
	}
}
