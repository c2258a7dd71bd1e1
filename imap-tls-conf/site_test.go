package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"imap-tls/service"
)

// TestSite: -m with several modes makes one site: the site's env/
// (service/env's defaults but a front's own settings, with the site's
// values and env/SIGNER ../signer/socket), jail/, ssl/, and in service/
// the signer and a front per mode, each front's env/ holding its mode,
// its standard port and its server (one address: Dovecot's haproxy
// listener for the protocol); every run file service/site's, byte for
// byte; the owners and modes of the single form; nothing else. The
// next steps name the one link and the restart of one front.
func TestSite(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "imap-tls")
	var out bytes.Buffer
	if err := run([]string{"-m", "imap,imaps,pop3,pop3s", acct, logacct, dir, "127.0.0.1"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	luid, lgid := ids(t, logacct)
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	type want struct {
		mode     os.FileMode
		uid, gid int
		data     *string // nil: a directory
	}
	files := map[string]want{}
	dirs := func(mode os.FileMode, uid, gid int, paths ...string) {
		for _, p := range paths {
			files[p] = want{mode, uid, gid, nil}
		}
	}
	file := func(path string, mode os.FileMode, data string) { files[path] = want{mode, 0, 0, &data} }
	dirs(0755, 0, 0, "env", "jail", "service", "service/signer", "service/signer/log")
	dirs(0700, 0, 0, "ssl")
	dirs(0750, luid, lgid, "service/signer/log/main")
	site := map[string]string{"ACCOUNT": acct, "LOGACCOUNT": logacct, "IP": "127.0.0.1", "SIGNER": "../signer/socket",
		"PATH": filepath.Dir(exe) + ":" + service.Default("PATH")}
	for _, f := range service.SiteFiles() {
		name, isEnv := strings.CutPrefix(f.Path, "env/")
		data := f.Data
		if v, ok := site[name]; isEnv && ok {
			data = v + "\n"
		}
		if rest, ok := strings.CutPrefix(f.Path, service.Front+"/"); ok {
			for _, m := range []string{"imap", "imaps", "pop3", "pop3s"} {
				file("service/"+m+"/"+rest, f.Mode, data)
			}
			continue
		}
		file(f.Path, f.Mode, data)
	}
	for _, f := range []struct{ mode, port, server string }{
		{"imap", "143", "127.0.0.1:10143"}, {"imaps", "993", "127.0.0.1:10143"},
		{"pop3", "110", "127.0.0.1:10110"}, {"pop3s", "995", "127.0.0.1:10110"},
	} {
		d := "service/" + f.mode
		dirs(0755, 0, 0, d, d+"/env", d+"/log")
		dirs(0750, luid, lgid, d+"/log/main")
		file(d+"/env/MODE", 0644, f.mode+"\n")
		file(d+"/env/PORT", 0644, f.port+"\n")
		file(d+"/env/IMAPD", 0644, f.server+"\n")
	}
	for _, name := range service.FrontSettings {
		if _, ok := files["env/"+name]; ok {
			t.Errorf("the site's env/%s: a front's own setting", name)
		}
	}
	if len(files) < 60 {
		t.Fatalf("%d paths expected: the table is wrong", len(files))
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		w, ok := files[rel]
		if !ok {
			t.Errorf("%s written, not expected", rel)
			return nil
		}
		delete(files, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.IsDir() != (w.data == nil) || fi.Mode().Perm() != w.mode || int(st.Uid) != w.uid || int(st.Gid) != w.gid {
			t.Errorf("%s: dir=%v mode=%o owner=%d:%d, want dir=%v mode=%o owner=%d:%d",
				rel, fi.IsDir(), fi.Mode().Perm(), st.Uid, st.Gid, w.data == nil, w.mode, w.uid, w.gid)
		}
		if w.data != nil {
			if b, _ := os.ReadFile(p); string(b) != *w.data {
				t.Errorf("%s = %q, want %q", rel, b, *w.data)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel := range files {
		t.Errorf("%s not written", rel)
	}
	for _, s := range []string{
		"made " + dir + ": a site of 4 fronts on 127.0.0.1",
		dir + "/service/imaps: mode imaps: IMAP, implicit TLS on port 993, server 127.0.0.1:10143",
		dir + "/service/pop3: mode pop3: POP3, STLS required on port 110, server 127.0.0.1:10110",
		"install -o root -g root -m 400 chain-and-key.pem " + dir + "/ssl/stunnel.pem",
		"ln -s " + dir + " /etc/service/\n",
		"svc -t " + dir + "/service/MODE",
		"svc -d /etc/service/imap-tls",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("next steps lack %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "/signer /etc/service") {
		t.Errorf("next steps link the signer on its own:\n%s", out.String())
	}
}

// TestSiteFront: a front's run file reads the site's env/, then its
// own (a setting there wins for this front alone), and names the
// site's jail, certificate and signer; its log reads both too.
func TestSiteFront(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "site")
	if err := run([]string{"-m", "imaps,pop3", acct, logacct, dir}, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	for _, p := range []string{"softlimit", "setuidgid"} {
		os.WriteFile(filepath.Join(fake, p), []byte("#!/bin/sh\nprintf '<%s>' "+p+" \"$@\"; echo\n"), 0755)
	}
	// imap-tls-server -M NAME, before softlimit: GOMEMLIMIT's value.
	os.WriteFile(filepath.Join(fake, "imap-tls-server"), []byte("#!/bin/sh\necho 20000000\n"), 0755)
	// the signer's run file checks the site's certificate first: fine.
	os.WriteFile(filepath.Join(fake, "stunnel-imap-key"), []byte("#!/bin/sh\ntest \"$*\" = \"-c -p ../../ssl/stunnel.pem\"\n"), 0755)
	envdir, err := exec.LookPath("envdir")
	if err != nil {
		t.Fatal("envdir not found: apt-get install daemontools")
	}
	os.WriteFile(filepath.Join(dir, "env/PATH"), []byte(fake+":"+filepath.Dir(envdir)+":/usr/bin:/bin\n"), 0644)
	runIn := func(sub string) string {
		t.Helper()
		cmd := exec.Command("sh", "./run")
		cmd.Dir = filepath.Join(dir, sub)
		cmd.Env = []string{"PATH=" + filepath.Dir(envdir) + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sh %s/run: %v %s", sub, err, out)
		}
		return string(out)
	}
	front := func(mode, port, server string, extra ...string) string {
		args := append([]string{"softlimit", "-d", "100000000", "imap-tls-server", "-V", "-n", mode, "-c", "500",
			"-r", "2000000000:4194304", "-s", "../signer/socket", "-C", "../../ssl/stunnel.pem", "-H"}, extra...)
		args = append(args, "-j", "../../jail", "0.0.0.0", port, server)
		return "<" + strings.Join(args, "><") + ">\n"
	}
	if got, want := runIn("service/imaps"), front("imaps", "993", "127.0.0.1:10143"); got != want {
		t.Errorf("service/imaps/run:\n got %q\nwant %q", got, want)
	}
	// a setting in the front's env/ wins over the site's, for it alone
	os.WriteFile(filepath.Join(dir, "service/pop3/env/PROXYFROM"), []byte("192.0.2.1\n"), 0644)
	os.WriteFile(filepath.Join(dir, "service/pop3/env/PORT"), []byte("1110\n"), 0644)
	if got, want := runIn("service/pop3"), front("pop3", "1110", "127.0.0.1:10110", "-L", "192.0.2.1"); got != want {
		t.Errorf("service/pop3/run with its own PROXYFROM and PORT:\n got %q\nwant %q", got, want)
	}
	if got, want := runIn("service/imaps"), front("imaps", "993", "127.0.0.1:10143"); got != want {
		t.Errorf("service/imaps/run after pop3's change:\n got %q\nwant %q", got, want)
	}
	// The site's settings reach every front: an empty env/SIGNER, a key
	// process per connection, from the site's certificate.
	os.WriteFile(filepath.Join(dir, "env/SIGNER"), nil, 0644)
	if got := runIn("service/imaps"); !strings.Contains(got, "<-r><2000000000:4194304><-k><../../ssl/stunnel.pem><-H>") {
		t.Errorf("service/imaps/run with env/SIGNER empty: %q", got)
	}
	for sub, want := range map[string]string{
		"service/signer":     "<softlimit><-d><200000000><setuidgid-chroot><-/><../../jail><-r><2000000000:4194304><-o><3:../../ssl/stunnel.pem><-l><4:./socket><stunnel-imap-signer><-P><3:../../ssl/stunnel.pem><-L><4>\n",
		"service/signer/log": "<setuidgid><" + logacct + "><multilog><t><s16777215><n5><./main>\n",
		"service/imaps/log":  "<setuidgid><" + logacct + "><multilog><t><s16777215><n5><-* tcpserver: *><+* tcpserver: fatal: *><+* tcpserver: warning: *><+* tcpserver: status: 500/500><./main>\n",
		"service/pop3/log":   "<setuidgid><" + logacct + "><multilog><t><s16777215><n5><-* tcpserver: *><+* tcpserver: fatal: *><+* tcpserver: warning: *><+* tcpserver: status: 40/40><./main>\n",
	} {
		if sub == "service/pop3/log" {
			os.WriteFile(filepath.Join(dir, "service/pop3/env/CONCURRENCY"), []byte("40\n"), 0644)
		}
		if got := runIn(sub); got != want {
			t.Errorf("%s/run:\n got %q\nwant %q", sub, got, want)
		}
	}
}

// TestSiteRefusals: a site takes no port, each mode once, one front per
// port, and only known modes.
func TestSiteRefusals(t *testing.T) {
	needRoot(t)
	parent := t.TempDir()
	dir := filepath.Join(parent, "site")
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-m", "imap,imaps", acct, logacct, dir, "0", "143"}, "fatal: a site of several modes takes no port: each front listens on its mode's (change it in its env/PORT)"},
		{[]string{"-m", "imap,imap", acct, logacct, dir}, `bad value for -m: "imap,imap" (imap and imap both listen on 143: a site has one front per port)`},
		{[]string{"-m", "imaps,pop3-,pop3", acct, logacct, dir}, `bad value for -m: "imaps,pop3-,pop3" (pop3- and pop3 both listen on 110: a site has one front per port)`},
		{[]string{"-m", "imap,implicit", acct, logacct, dir}, `bad value for -m: "imap,implicit" ("implicit" is not imap, imap-, imaps, pop3, pop3- or pop3s)`},
		{[]string{"-m", "imap,", acct, logacct, dir}, `bad value for -m: "imap," ("" is not`},
	} {
		err := run(c.args, new(bytes.Buffer))
		if code, msg := exit(err); code != 100 || !strings.Contains(msg, c.msg) {
			t.Errorf("%q: exit %d %q, want 100 with %q", c.args, code, msg, c.msg)
		}
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("a refused site left %v", ents)
	}
}
