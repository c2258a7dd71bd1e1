package service

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// beside are the files an operator installs next to the service
// directory, not in it: in this folder, not embedded.
var beside = []string{"certbot-deploy-hook", "fail2ban/imap-tls.conf", "proxy-port.nft"}

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
			t.Errorf("%s is in Files(), not in the folder", p)
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
		"GOMAXPROCS", "IMAPD", "PROXYHEADER", "PROXYFROM", "SIGNER", "CERT_WARN_DAYS", "PATH"} {
		if !env[name] {
			t.Errorf("env/%s missing", name)
		}
	}
	variable := regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)`)
	for _, f := range Files() {
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
// never written into a run file.
func TestRunFiles(t *testing.T) {
	for _, f := range Files() {
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
			account = `setuidgid "$LOGACCOUNT" multilog t `
		}
		if !strings.Contains(f.Data, account) {
			t.Errorf("%s lacks %s", f.Path, account)
		}
		if strings.Contains(f.Data, "{{") || strings.Contains(f.Data, "imaptls") {
			t.Errorf("%s holds a template or an account name", f.Path)
		}
	}
}

// TestFirewallNamesTheDefaultPorts: the nftables rule guards the ports
// env/IMAPD's defaults connect to (imap-tls-conf writes 10110 for POP3).
func TestFirewallNamesTheDefaultPorts(t *testing.T) {
	rule, err := os.ReadFile("proxy-port.nft")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(Default("IMAPD"), "TCP:127.0.0.1:10143") || !strings.Contains(string(rule), "tcp dport { 10143, 10110 }") {
		t.Errorf("env/IMAPD %q and proxy-port.nft disagree:\n%s", Default("IMAPD"), rule)
	}
}
