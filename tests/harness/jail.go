package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit/memscan"
)

// JailRange is the run file's default env/UIDRANGE.
const (
	JailRange = "2000000000:4194304"
	JailBase  = 2000000000
)

// StartJail starts the run file's pipeline (key process, uid range) with
// Dovecot's login server as the backend unless o names another.
func StartJail(t *testing.T, dc *Dovecot, o PipelineOpts) *Pipeline {
	t.Helper()
	o.UIDRange = JailRange
	if o.Backend == nil {
		o.Backend = dc.LoginCmd()
	}
	return StartPipeline(t, o)
}

// ConnProcs are the processes of one live connection.
type ConnProcs struct{ Proxy, Key int }

// FindConn is Pipeline.FindConn among the processes candidates lists.
func FindConn(t *testing.T, candidates func() []int, port int, wantKey bool) ConnProcs {
	t.Helper()
	env := "TCPREMOTEPORT=" + strconv.Itoa(port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var c ConnProcs
		for _, pid := range candidates() {
			argv := ArgvOf(pid)
			if len(argv) < 2 || !hasEnv(pid, env) {
				continue
			}
			switch filepath.Base(argv[0]) {
			case "stunnel-imap-key":
				c.Key = pid
			case "stunnel-imap":
				if slices.Contains(argv, "-K") {
					c.Proxy = pid
				}
			}
		}
		if c.Proxy != 0 && (c.Key != 0 || !wantKey) {
			if c.Key != 0 {
				if st := ProcStat(c.Key); len(st) < 2 || st[1] != strconv.Itoa(c.Proxy) {
					t.Fatalf("key process %d is not the child of proxy %d: %v", c.Key, c.Proxy, st)
				}
			}
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection from port %d: proxy %d, key process %d after 20 s; processes: %s",
				port, c.Proxy, c.Key, Describe(candidates()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("unable to read %s: %v", path, err)
	}
	f := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			f[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return f
}

// CheckJailed checks one jailed process from outside and returns its
// uid: uid = gid = base + pid (real, effective, saved, filesystem), no
// group but that gid, no capability, no_new_privs, the seccomp filter on
// every thread, no core limit, not dumpable (its /proc files are root's),
// root and working directory the jail.
func CheckJailed(t *testing.T, what string, pid int, jail string) int {
	t.Helper()
	id := strconv.Itoa(JailBase + pid)
	return CheckJailedAs(t, what, pid, jail, id, id)
}

// CheckJailedAs is CheckJailed for a process that must run as uid and
// gid (a fixed account: setuidgid-chroot -u).
func CheckJailedAs(t *testing.T, what string, pid int, jail, uid, gid string) int {
	t.Helper()
	const noCaps = "0000000000000000"
	want := map[string]string{
		"Uid": strings.Repeat(uid+" ", 3) + uid, "Gid": strings.Repeat(gid+" ", 3) + gid, "Groups": gid, "NoNewPrivs": "1", "Seccomp": "2",
		"CapInh": noCaps, "CapPrm": noCaps, "CapEff": noCaps, "CapBnd": noCaps, "CapAmb": noCaps,
	}
	f := statusOf(t, fmt.Sprintf("/proc/%d/status", pid))
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s %d: /proc/%d/status %s: %q, want %q", what, pid, pid, k, f[k], v)
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if len(tasks) == 0 {
		t.Errorf("%s %d: no threads in /proc", what, pid)
	}
	for _, task := range tasks {
		if tf := statusOf(t, task); tf["Seccomp"] != "2" || tf["NoNewPrivs"] != "1" {
			t.Errorf("%s %d: %s: Seccomp %q NoNewPrivs %q", what, pid, task, tf["Seccomp"], tf["NoNewPrivs"])
		}
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	m := regexp.MustCompile(`(?m)^Max core file size\s+(\S+)\s+(\S+)`).FindStringSubmatch(string(limits))
	if m == nil || m[1] != "0" || m[2] != "0" {
		t.Errorf("%s %d: core limit %q, want 0 0", what, pid, m)
	}
	for _, l := range []string{"root", "cwd"} {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l)); err != nil || got != jail {
			t.Errorf("%s %d: /proc/%d/%s is %q (%v), want the jail %s", what, pid, pid, l, got, err, jail)
		}
	}
	// An undumpable process's /proc files belong to root, not to it.
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/status", pid), &st); err != nil || st.Uid != 0 {
		t.Errorf("%s %d: /proc/%d/status owned by %d (%v): the process is dumpable", what, pid, pid, st.Uid, err)
	}
	t.Logf("%s %d: Uid %s Groups %s NoNewPrivs %s Seccomp %s CapBnd %s, %d threads, root %s",
		what, pid, f["Uid"], f["Groups"], f["NoNewPrivs"], f["Seccomp"], f["CapBnd"], len(tasks), jail)
	real, _ := strconv.Atoi(strings.Fields(f["Uid"] + " 0")[0])
	return real
}

// StartTLSPending connects, reads the greeting and has STARTTLS answered,
// but sends no ClientHello yet: the key process waits for the server
// name. It returns the client and its local port.
func StartTLSPending(t *testing.T, addr string) (*IMAPClient, int) {
	t.Helper()
	c := DialIMAP(t, addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	if _, tagged := c.Cmd("s", "STARTTLS"); !strings.HasPrefix(tagged, "s OK") {
		t.Fatalf("STARTTLS: %q", tagged)
	}
	return c, LocalPort(c)
}

func LocalPort(c *IMAPClient) int { return c.Conn.LocalAddr().(*net.TCPAddr).Port }

// KeyScan is the private key of a PEM, ready for memscan.
type KeyScan struct {
	Name    string
	Secrets map[string][]byte
	needles map[string][]byte
}

func LoadKeyScan(t *testing.T, name, pem string) KeyScan {
	t.Helper()
	b, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	s, err := memscan.SecretsPEM(b)
	if err != nil {
		t.Fatalf("%s: %v", pem, err)
	}
	return KeyScan{name, s, memscan.Needles(s)}
}

// Held returns which parts of the key pid's memory holds.
func (k KeyScan) Held(t *testing.T, pid int) []string {
	t.Helper()
	found, n, err := memscan.Scan(pid, k.needles)
	if err != nil {
		t.Fatalf("unable to scan the memory of %d: %v", pid, err)
	}
	if n < 1<<20 {
		t.Fatalf("read only %d bytes of %d's memory: the scan proves nothing", n, pid)
	}
	return memscan.Holds(found, k.Secrets)
}
