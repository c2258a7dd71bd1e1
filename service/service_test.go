package service

import (
	"cmp"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"imap-tls/internal/firewall"
)

// beside are the files an operator installs next to the service
// directory, not in it: in this folder, not embedded.
var beside = []string{"certbot-deploy-hook", "dovecot/99-imap-tls.conf", "fail2ban/imap-tls.conf", "fail2ban/imap-tls.local", "proxy-port.nft"}

// gitMode is a file's mode as git keeps it: executable or not.
func gitMode(m fs.FileMode) fs.FileMode {
	if m&0111 != 0 {
		return 0755
	}
	return 0644
}

// TestFilesAreTheFolder: Files() is this folder's service files byte for
// byte, with their modes; every other file here is a Go file, the page,
// or one of those installed beside; nothing is listed twice.
func TestFilesAreTheFolder(t *testing.T) {
	got := map[string]File{}
	for _, f := range Files() {
		if _, dup := got[f.Path]; dup {
			t.Errorf("%s twice", f.Path)
		}
		got[f.Path] = f
	}
	if fs := Files(); fs[len(fs)-1].Path != "run" {
		t.Errorf("the last file is %s, want run (supervise starts it as it appears)", fs[len(fs)-1].Path)
	}
	// A site's run files are site/'s, at their paths in the site.
	for _, f := range SiteFiles() {
		if f.Mode == 0755 {
			if _, dup := got["site/"+f.Path]; dup {
				t.Errorf("site/%s twice", f.Path)
			}
			got["site/"+f.Path] = File{"site/" + f.Path, f.Mode, f.Data}
		}
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, ".go") || path == "README.md" || slices.Contains(beside, path) {
			return nil
		}
		seen[path] = true
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, ok := got[path]
		switch {
		case !ok:
			t.Errorf("%s is in the folder, not in Files()", path)
		case f.Data != string(b):
			t.Errorf("%s: embedded %q, the folder holds %q", path, f.Data, b)
		case f.Mode != gitMode(fi.Mode().Perm()):
			t.Errorf("%s: mode %o in Files(), %o in the folder", path, f.Mode, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range got {
		if !seen[p] {
			t.Errorf("%s is in Files() or SiteFiles(), not in the folder", p)
		}
	}
	for _, p := range beside {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("installed beside: %v", err)
		}
	}
}

// TestEnv: each setting is one line (envdir reads the first line only: a
// second would be ignored without a word), every variable a run file
// reads has its default here, and Default gives the line.
func TestEnv(t *testing.T) {
	env := map[string]bool{}
	for _, f := range Files() {
		name, ok := strings.CutPrefix(f.Path, "env/")
		if !ok {
			continue
		}
		env[name] = true
		if strings.Count(f.Data, "\n") != 1 || !strings.HasSuffix(f.Data, "\n") {
			t.Errorf("%s = %q: want one line", f.Path, f.Data)
		}
		if Default(name)+"\n" != f.Data {
			t.Errorf("Default(%s) = %q, file %q", name, Default(name), f.Data)
		}
	}
	for _, name := range []string{"ACCOUNT", "LOGACCOUNT", "MODE", "IP", "PORT", "CONCURRENCY", "MEMLIMIT", "UIDRANGE",
		"GOMAXPROCS", "IMAPD", "PROXYHEADER", "PROXYFROM", "SIGNER", "CERT_WARN_DAYS", "PATH", "LOGSIZE", "LOGCOUNT"} {
		if !env[name] {
			t.Errorf("env/%s missing", name)
		}
	}
	variable := regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)`)
	for _, f := range append(Files(), SiteFiles()...) {
		if f.Mode != 0755 {
			continue
		}
		for _, m := range variable.FindAllStringSubmatch(f.Data, -1) {
			if !env[m[1]] {
				t.Errorf("%s reads $%s, which env/ does not hold", f.Path, m[1])
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Default of a name env/ does not hold did not panic")
		}
	}()
	Default("NOSUCH")
}

// TestRunFiles: POSIX sh that parses; a service's run file sends its
// errors to its log (exec 2>&1) and execs envdir; a log's run file does
// not (its errors would feed its own input); the accounts come from env/,
// never written into a run file. The same for a site's run files, but
// for the site's own, which runs svscan, not an account's program.
func TestRunFiles(t *testing.T) {
	var all []File
	for _, f := range Files() {
		all = append(all, f)
	}
	for _, f := range SiteFiles() {
		all = append(all, File{"site/" + f.Path, f.Mode, f.Data})
	}
	for _, f := range all {
		if f.Mode != 0755 {
			continue
		}
		if !strings.HasPrefix(f.Data, "#!/bin/sh\n") {
			t.Errorf("%s does not start with #!/bin/sh", f.Path)
		}
		if out, err := exec.Command("sh", "-n", f.Path).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v %s", f.Path, err, out)
		}
		isLog := strings.HasSuffix(f.Path, "log/run")
		var commands []string // the file's own, up to the script it hands to sh -c
		for _, l := range strings.Split(f.Data, "\n") {
			if strings.HasPrefix(l, "exec ") {
				commands = append(commands, l)
			}
			if strings.HasSuffix(l, "'") {
				break
			}
		}
		if len(commands) == 0 || !strings.HasPrefix(commands[len(commands)-1], "exec envdir ") {
			t.Errorf("%s does not exec envdir: %q", f.Path, commands)
		}
		if has := commands[0] == "exec 2>&1"; has == isLog {
			t.Errorf("%s: starts with exec 2>&1: %v, want %v", f.Path, has, !isLog)
		}
		account := `-u "$ACCOUNT"`
		if isLog {
			// every log keeps env/LOGCOUNT files of env/LOGSIZE bytes
			account = `setuidgid "$LOGACCOUNT" multilog t s"$LOGSIZE" n"$LOGCOUNT" `
		}
		if f.Path == "site/run" {
			account = "svscan ./service &"
		}
		if !strings.Contains(f.Data, account) {
			t.Errorf("%s lacks %s", f.Path, account)
		}
		if strings.Contains(f.Data, "{{") || strings.Contains(f.Data, "imaptls") {
			t.Errorf("%s holds a template or an account name", f.Path)
		}
	}
}

// TestFirewallNamesTheDefaultPorts: the default servers are one address
// each on loopback (setuidgid-chroot -c connects to it: no socat), and the nftables
// rule guards exactly them (imap-tls-conf writes POP3Server for POP3):
// its lines, comments aside, are what the service loads for them
// (internal/firewall, imap-tls-server -H), spelled once.
func TestFirewallNamesTheDefaultPorts(t *testing.T) {
	rule, err := os.ReadFile("proxy-port.nft")
	if err != nil {
		t.Fatal(err)
	}
	var servers []netip.AddrPort
	for _, server := range []string{Default("IMAPD"), POP3Server} {
		ap, err := netip.ParseAddrPort(server)
		if err != nil || !ap.Addr().IsLoopback() || strings.Contains(server, " ") {
			t.Errorf("default server %q: not one loopback address (%v)", server, err)
			continue
		}
		servers = append(servers, ap)
	}
	var lines []string
	for _, l := range strings.SplitAfter(string(rule), "\n") {
		if l != "\n" && l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if got, want := strings.Join(lines, ""), firewall.Rules(servers); got != want {
		t.Errorf("proxy-port.nft's rules are not what the service loads for the default servers %v:\n%s\nwant:\n%s", servers, got, want)
	}
}

// TestSiteFiles: a site's env/ is every default but the front's own
// settings; each run file reads the site's env/ from where it lies (a
// path up to the site's root: ../../env from service/MODE), and a front
// and its log then their own env/; the site's run file stops svscan
// first, then the services, then their logs.
func TestSiteFiles(t *testing.T) {
	env := map[string]bool{}
	for _, f := range SiteFiles() {
		if name, ok := strings.CutPrefix(f.Path, "env/"); ok {
			env[name] = true
			if slices.Contains(FrontSettings, name) {
				t.Errorf("the site's env/ holds %s, a front's own setting", name)
			}
			continue
		}
		up := strings.Repeat("../", strings.Count(f.Path, "/"))
		envdir := "exec envdir " + cmp.Or(up, "./") + "env "
		if strings.HasPrefix(f.Path, Front+"/") {
			envdir += "envdir " + strings.Repeat("../", strings.Count(strings.TrimPrefix(f.Path, Front+"/"), "/")) + "env "
			envdir = strings.Replace(envdir, "envdir env ", "envdir ./env ", 1)
		}
		if !strings.Contains(f.Data, "\n"+envdir+"sh -") {
			t.Errorf("%s does not read the site's settings as %q:\n%s", f.Path, envdir, f.Data)
		}
		for _, p := range regexp.MustCompile(`\.\./[^ ]*(?:jail|ssl/stunnel\.pem)`).FindAllString(f.Data, -1) {
			if !strings.HasPrefix(p, up) || strings.Count(p, "../") != strings.Count(up, "../") {
				t.Errorf("%s names %s, not the site's (%s)", f.Path, p, up)
			}
		}
	}
	for _, f := range Files() {
		name, ok := strings.CutPrefix(f.Path, "env/")
		if ok && !env[name] && !slices.Contains(FrontSettings, name) {
			t.Errorf("the site's env/ lacks %s", name)
		}
	}
	for _, name := range FrontSettings {
		Default(name) // a default each, for the fronts
	}
	if last := SiteFiles()[len(SiteFiles())-1]; last.Path != "run" {
		t.Errorf("the last file is %s, want the site's run", last.Path)
	}
	site := read("site/run")
	order := []string{"svscan ./service &", `kill -TERM "$svscan"`, `wait "$svscan"`, "svc -dx ./service/*/\n",
		"waitgone ./service/*/\n", "svc -dx ./service/*/log/\n", "waitgone ./service/*/log/\n", "exit 0", "trap stop TERM"}
	at := 0
	for _, s := range order {
		i := strings.Index(site[at:], s)
		if i < 0 {
			t.Errorf("site/run: no %q after byte %d (want, in order: %q)", s, at, order)
			break
		}
		at += i + len(s)
	}
}

// lineBytes is a connection's line in the log as multilog keeps it: the
// longest of stunnel-imap's info lines measured (service/README.md), with
// its TAI64N label.
const lineBytes = 320

// TestLogRetention: env/LOGSIZE and env/LOGCOUNT are values multilog
// takes, and keep at least 14 days at 10 connections a minute: right
// after a rotation multilog holds LOGCOUNT-1 old files, each at least
// LOGSIZE-2000 bytes (it ends a file at a line end within 2000 bytes of
// the size), and an empty current.
func TestLogRetention(t *testing.T) {
	size, err1 := strconv.Atoi(Default("LOGSIZE"))
	count, err2 := strconv.Atoi(Default("LOGCOUNT"))
	if err1 != nil || err2 != nil || size < 4096 || size > 16777215 || count < 2 {
		t.Fatalf("env/LOGSIZE %q env/LOGCOUNT %q: multilog takes s4096 to s16777215 and n2 or more", Default("LOGSIZE"), Default("LOGCOUNT"))
	}
	kept := (count - 1) * (size - 2000) / lineBytes
	if want := 14 * 24 * 60 * 10; kept < want {
		t.Errorf("env/LOGSIZE %d env/LOGCOUNT %d keep %d lines of %d bytes, want %d (14 days at 10 a minute)", size, count, kept, lineBytes, want)
	}
}
