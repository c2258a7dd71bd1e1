package tests

// The shipped Dovecot drop-in (service/dovecot/99-imap-tls.conf) in the
// system's Dovecot configuration layout: a copy of /etc/dovecot in a
// temporary directory (the system's files are only read, the system's
// Dovecot is neither started nor told anything).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// dropIn is the shipped drop-in's path in the repository.
func dropIn(t *testing.T) string {
	return filepath.Join(harness.RepoRoot(t), "service", "dovecot", "99-imap-tls.conf")
}

// copyEtcDovecot copies /etc/dovecot (Debian's dovecot.conf, conf.d/,
// the snakeoil certificate) into a new temporary directory and returns
// the copy's dovecot.conf.
func copyEtcDovecot(t *testing.T) string {
	t.Helper()
	harness.Need(t, "doveconf", "/etc/dovecot/dovecot.conf")
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "/etc/dovecot", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp -a /etc/dovecot: %v: %s", err, out)
	}
	return filepath.Join(dir, "dovecot", "dovecot.conf")
}

// doveconfAll is `doveconf -c conf -a`, every setting in effect
// (defaults included), as "block/block/name" -> value: e.g.
// "service imap-login/inet_listener imap/port" -> "143".
func doveconfAll(t *testing.T, conf string) map[string]string {
	t.Helper()
	out, err := exec.Command("doveconf", "-c", conf, "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("doveconf -c %s -a: %v\n%s", conf, err, out)
	}
	m := map[string]string{}
	var stack []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasSuffix(l, "{"):
			stack = append(stack, strings.TrimSpace(strings.TrimSuffix(l, "{")))
		case l == "}":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			if k, v, ok := strings.Cut(l, "="); ok {
				m[strings.Join(append(append([]string{}, stack...), strings.TrimSpace(k)), "/")] = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// inetListeners are the TCP listeners of conf that listen (port not 0),
// each as "service/listener address port haproxy=yes|no".
func inetListeners(all map[string]string) []string {
	rx := regexp.MustCompile(`^service ([^/]+)/inet_listener ([^/]+)/port$`)
	var out []string
	for k, port := range all {
		m := rx.FindStringSubmatch(k)
		if m == nil || port == "0" {
			continue
		}
		pre := "service " + m[1] + "/inet_listener " + m[2] + "/"
		out = append(out, fmt.Sprintf("%s/%s %s %s haproxy=%s", m[1], m[2], all[pre+"address"], port, all[pre+"haproxy"]))
	}
	return sorted(out)
}

// checkDropInSettings fails unless all (doveconf -a) is what the drop-in
// claims: of the IMAP and POP3 login services only the two haproxy
// listeners on loopback listen, nothing anywhere on 143, 993, 110 or
// 995, the header trusted from loopback only, and a header timeout
// longer than stunnel-imap's 30 s handshake.
func checkDropInSettings(t *testing.T, all map[string]string) {
	t.Helper()
	var login []string
	for _, l := range inetListeners(all) {
		if strings.HasPrefix(l, "imap-login/") || strings.HasPrefix(l, "pop3-login/") {
			login = append(login, l)
		}
		if regexp.MustCompile(` (143|993|110|995) `).MatchString(l) {
			t.Errorf("a listener on a port of the fronts: %s", l)
		}
	}
	want := []string{
		"imap-login/imap-tls 127.0.0.1 10143 haproxy=yes",
		"pop3-login/pop3-tls 127.0.0.1 10110 haproxy=yes",
	}
	if strings.Join(login, "\n") != strings.Join(want, "\n") {
		t.Errorf("login listeners:\n%s\nwant:\n%s", strings.Join(login, "\n"), strings.Join(want, "\n"))
	}
	for k, v := range map[string]string{
		"haproxy_trusted_networks": "127.0.0.1 ::1",
		"haproxy_timeout":          "35 secs",
	} {
		if all[k] != v {
			t.Errorf("%s = %q, want %q", k, all[k], v)
		}
	}
}

// TestDovecotDropInConfig: Debian's configuration (a copy of
// /etc/dovecot) listens on 143, 993, 110 and 995 by itself; with the
// drop-in in conf.d/ it parses, and the settings in effect are the
// drop-in's: only 127.0.0.1:10143 and 127.0.0.1:10110 with haproxy,
// header from loopback only, 35 s for it. Debian's
// disable_plaintext_auth (yes) is left as it is.
func TestDovecotDropInConfig(t *testing.T) {
	conf := copyEtcDovecot(t)
	before := inetListeners(doveconfAll(t, conf))
	for _, w := range []string{
		"imap-login/imap  143 haproxy=no", "imap-login/imaps  993 haproxy=no",
		"pop3-login/pop3  110 haproxy=no", "pop3-login/pop3s  995 haproxy=no",
	} {
		if !harness.Has(before, w) {
			t.Errorf("Debian's configuration without the drop-in: no %q in:\n%s", w, strings.Join(before, "\n"))
		}
	}
	if out, err := exec.Command("install", "-m", "644", dropIn(t), filepath.Join(filepath.Dir(conf), "conf.d")+"/").CombinedOutput(); err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	all := doveconfAll(t, conf)
	checkDropInSettings(t, all)
	if all["disable_plaintext_auth"] != "yes" {
		t.Errorf("disable_plaintext_auth = %q, want Debian's yes", all["disable_plaintext_auth"])
	}
	// doveconf -n (what differs from the defaults) names the drop-in's
	// settings too: nothing of it was dropped as unknown.
	out, err := exec.Command("doveconf", "-c", conf, "-n").CombinedOutput()
	if err != nil || strings.Contains(string(out), "Unknown setting") {
		t.Fatalf("doveconf -n: %v\n%s", err, out)
	}
}

// TestDovecotDropInServes: Debian's configuration (a copy, with only
// what a private instance needs in its local.conf: paths in the test's
// directory, a passwd-file user, Maildir) runs in a network namespace
// of its own, listening on 143, 993, 110 and 995; the drop-in goes in
// by the documented one-liner (install, doveadm reload), after which
// Dovecot listens only on 127.0.0.1:10143 and 127.0.0.1:10110. A site
// made by imap-tls-conf -m imap,imaps,pop3,pop3s with its defaults
// (env/IMAPD those ports, PROXYHEADER yes, the signer) serves 143, 993,
// 110 and 995 there: curl logs in on each from 192.0.2.5 under Debian's
// disable_plaintext_auth = yes, and Dovecot logs rip=192.0.2.5 and
// secured for IMAP and POP3. A header without the TLS flag gets
// LOGINDISABLED and its LOGIN refused: the flag is what lets the
// sessions log in.
func TestDovecotDropInServes(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "dovecot", "doveadm", "curl", "socat", "/usr/lib/dovecot/pop3-login")
	conf := copyEtcDovecot(t)
	etc := filepath.Dir(conf)
	dir := filepath.Dir(etc)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil { // the mail account reaches DIR/home
			t.Fatal(err)
		}
	}
	const mailAcct = "imaptlsmail" // tests/daemon.sh's
	harness.EnsureAccount(t, mailAcct)
	uid, gid := idOf(t, "-u", mailAcct), idOf(t, "-g", mailAcct)
	// Debian's passdb (PAM, system users) off in the copy: a test user
	// from a passwd-file instead, in local.conf.
	auth := filepath.Join(etc, "conf.d", "10-auth.conf")
	b, err := os.ReadFile(auth)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n!include auth-system.conf.ext\n") {
		t.Fatalf("%s: no !include auth-system.conf.ext", auth)
	}
	os.WriteFile(auth, []byte(strings.Replace(string(b), "\n!include auth-system.conf.ext\n", "\n#!include auth-system.conf.ext\n", 1)), 0o644)
	local := fmt.Sprintf(`# the test's private instance: paths, a user, Maildir
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
instance_name = imaptls-dropin-%[4]d
mail_location = maildir:~/Maildir
first_valid_uid = %[2]s
last_valid_uid = %[2]s
first_valid_gid = %[3]s
auth_verbose = yes
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[2]s gid=%[3]s home=%[1]s/home/%%u
}
`, dir, uid, gid, os.Getpid())
	if err := os.WriteFile(filepath.Join(etc, "local.conf"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"run", "state", "home"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	home := filepath.Join(dir, "home", "alice")
	os.Mkdir(home, 0o700)
	if out, err := exec.Command("chown", uid+":"+gid, home).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("alice:{PLAIN}secret\n"), 0o640)
	if out, err := exec.Command("chown", "root:dovecot", passwd).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}

	n := startNetNS(t, "192.0.2.1/32", "192.0.2.5/32")
	doveLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log")); return string(b) }
	// Its output to a file: the daemon keeps it open.
	start := n.Command("dovecot", "-c", conf)
	startLog, err := os.Create(filepath.Join(dir, "start.log"))
	if err != nil {
		t.Fatal(err)
	}
	start.Stdout, start.Stderr = startLog, startLog
	err = start.Run()
	startLog.Close()
	if err != nil {
		out, _ := os.ReadFile(startLog.Name())
		t.Fatalf("dovecot -c %s: %v: %s\n%s", conf, err, out, doveLog())
	}
	t.Cleanup(func() {
		pid, _ := os.ReadFile(filepath.Join(dir, "run", "master.pid"))
		exec.Command("doveadm", "-c", conf, "stop").Run()
		p, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
		for deadline := time.Now().Add(10 * time.Second); p > 0 && harness.Alive(p) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	})
	waitListeners := func(what string, want []string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := n.Listeners()
			if strings.Join(got, " ") == strings.Join(want, " ") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: listening on %v, want %v\n%s", what, got, want, doveLog())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Debian's listen = *, ::
	waitListeners("Debian's Dovecot", []string{"0.0.0.0:110", "0.0.0.0:143", "0.0.0.0:993", "0.0.0.0:995", "[::]:110", "[::]:143", "[::]:993", "[::]:995"})

	// The documented one-liner, with the copy's paths.
	oneLiner := "install -m 644 " + dropIn(t) + " " + filepath.Join(etc, "conf.d") + "/ && doveadm -c " + conf + " reload"
	if out, err := exec.Command("sh", "-c", oneLiner).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", oneLiner, err, out)
	}
	waitListeners("after the drop-in and doveadm reload", []string{"127.0.0.1:10110", "127.0.0.1:10143"})
	checkDropInSettings(t, doveconfAll(t, conf))

	pem, ca := harness.WriteCert(t, t.TempDir(), "192.0.2.1")
	startSite(t, n, pem, filepath.Join(dir, "imap-tls"), []string{"imap", "imaps", "pop3", "pop3s"}, nil, nil)
	for _, url := range []string{"imap://192.0.2.1:143/", "imaps://192.0.2.1:993/", "pop3://192.0.2.1:110/", "pop3s://192.0.2.1:995/"} {
		out, errOut, code := n.Run(t, "curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", ca,
			"--interface", "192.0.2.5", "-u", "alice:secret", url)
		if code != 0 || strings.HasPrefix(url, "imap") && !strings.Contains(out, "INBOX") {
			t.Errorf("curl %s: exit %d: %s%s", url, code, out, errOut)
		}
	}
	for _, proto := range []string{"imap", "pop3"} {
		re := proto + `-login: Info: Login: user=<alice>, method=PLAIN, rip=192\.0\.2\.5, lip=192\.0\.2\.1, .*secured`
		if count := len(regexp.MustCompile(re).FindAllString(doveLog(), -1)); count != 2 {
			t.Errorf("%d lines matching %q in Dovecot's log, want 2 (STARTTLS and implicit TLS):\n%s", count, re, doveLog())
		}
	}
	// A PROXY header without the TLS flag (v1 has none), from root (the
	// only one the firewall rule lets through): no login.
	// Dovecot may greet "* OK Waiting for authentication process to
	// respond.." while its auth process (re)starts, and then says
	// nothing more within socat's 5 s: that connection proves nothing,
	// so it is tried again, for up to 30 s.
	var out []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		c := n.Command("socat", "-T", "5", "STDIO", "TCP:127.0.0.1:10143")
		c.Stdin = strings.NewReader("PROXY TCP4 192.0.2.9 192.0.2.1 40000 143\r\na LOGIN alice secret\r\nb LOGOUT\r\n")
		out, err = harness.RunBounded(t, c, 30*time.Second)
		if !strings.Contains(string(out), "Waiting for authentication process") || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || !strings.Contains(string(out), " LOGINDISABLED]") || !strings.Contains(string(out), "\r\na NO [PRIVACYREQUIRED] ") {
		t.Errorf("a header without the TLS flag: %v: %q, want LOGINDISABLED and LOGIN refused", err, out)
	}
}

// idOf is `id FLAG account`.
func idOf(t *testing.T, flag, account string) string {
	t.Helper()
	out, err := exec.Command("id", flag, account).Output()
	if err != nil {
		t.Fatalf("id %s %s: %v", flag, account, err)
	}
	return strings.TrimSpace(string(out))
}
