package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLiveSettings: the settings the live state depends on, in a
// service directory that no supervise runs: a memory limit under the
// floor, a concurrency above the signer's limit, a standard port of
// another mode, each refused or warned about with its fix; the signer
// and the service not running are warnings there (nothing is linked
// yet), and the port is free.
func TestLiveSettings(t *testing.T) {
	dir := serviceDir(t, map[string]string{"MEMLIMIT": "50", "CONCURRENCY": "5000", "MODE": "imaps", "PORT": "143", "ACCOUNT": "nobody", "LOGACCOUNT": "nobody"})
	out, code, _ := checkDir(t, dir)
	if code != 100 {
		t.Errorf("exit %d, want 100:\n%s", code, out)
	}
	for _, w := range []string{
		"error: env/MEMLIMIT: 50 is below what a Go program needs to start (80000000 bytes of data, softlimit -d): raise it\n",
		"error: env/CONCURRENCY: 5000 is above the signer's limit of 4096 proxies at once",
		"warning: env/PORT: 143 is the standard port of imap (IMAP, STARTTLS required), not of mode imaps (IMAP, implicit TLS, port 993): clients that connect to 143 expect a plaintext greeting and STARTTLS\n",
		"warning: svstat: supervise not running: link " + dir + " into /etc/service (svscan's directory) to run it; its live state is not checked\n",
		"warning: env/SIGNER: the signer is not running (./signer/socket: file does not exist): link " + filepath.Join(dir, "signer") + " into /etc/service (or svc -u it)\n",
		"ok: env/PORT: 127.0.0.1:143 is free\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	// Without the signer, any concurrency; the standard port, no warning.
	dir = serviceDir(t, map[string]string{"CONCURRENCY": "5000", "SIGNER": "", "ACCOUNT": "nobody", "LOGACCOUNT": "nobody"})
	out, code, _ = checkDir(t, dir)
	if code != 0 || strings.Contains(out, "env/CONCURRENCY: 5000 is above") || strings.Contains(out, "warning: env/PORT") {
		t.Errorf("no signer: exit %d:\n%s", code, out)
	}
}

// TestLivePortHeld: a listener of another program (this test) on the
// front's address is named, with its pid, and is an error.
func TestLivePortHeld(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dir := serviceDir(t, map[string]string{"PORT": port, "ACCOUNT": "nobody", "LOGACCOUNT": "nobody"})
	out, code, _ := checkDir(t, dir)
	want := "error: env/PORT: 127.0.0.1:" + port + " is held by "
	if code != 100 || !strings.Contains(out, want) || !strings.Contains(out, " pid "+strconv.Itoa(os.Getpid())+": stop it, or give this service another env/PORT\n") {
		t.Errorf("exit %d, want 100 and %q... pid %d:\n%s", code, want, os.Getpid(), out)
	}
}

func TestTai64n(t *testing.T) {
	// tai64nlocal's reading of @4000000069330f2b00000000, in UTC.
	got, err := tai64n("@4000000069330f2b0000000a")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(0x69330f2b-10, 10); !got.Equal(want) {
		t.Errorf("tai64n = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "@4000", "4000000069330f2b00000000x", "@4000000069330f2b0000000g"} {
		if _, err := tai64n(bad); err == nil {
			t.Errorf("tai64n(%q) accepted", bad)
		}
	}
}

// stamp is multilog's tai64n stamp for t.
func stamp(t time.Time) string {
	return "@" + strconv.FormatUint(1<<62+uint64(t.Unix()+10), 16) + "00000000"
}

// TestLogCounts: the last hour's connection lines, by end= value, the
// logins and the refused ones; older lines and other lines not counted.
func TestLogCounts(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	line := func(at time.Time, auth, end string) string {
		return stamp(at) + " stunnel-imap: info: remote=127.0.0.1:4711 mode=imap starttls=yes tls=1.3 cipher=TLS_AES_128_GCM_SHA256 sni=- auth=" + auth + " in=10 out=20 warnings=0 duration=0.1s end=" + end + "\n"
	}
	log := line(now.Add(-2*time.Hour), "yes", "client-logout") +
		line(now.Add(-30*time.Minute), "yes", "client-logout") +
		line(now.Add(-20*time.Minute), "no authfail=2", "client-eof") +
		stamp(now.Add(-10*time.Minute)) + " stunnel-imap: warning: client sent something; remote=127.0.0.1:4712\n" +
		line(now.Add(-time.Minute), "yes authfail=1", "client-logout")
	os.WriteFile(filepath.Join(dir, "current"), []byte(log), 0o644)
	got := logCounts(dir, now.Add(-time.Hour))
	want := map[string]int{"connections": 3, "logins": 2, "authfail": 3, "end=client-logout": 2, "end=client-eof": 1}
	if len(got) != len(want) {
		t.Errorf("logCounts = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("logCounts[%s] = %d, want %d (%v)", k, got[k], v, got)
		}
	}
}
