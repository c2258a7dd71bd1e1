// Package harness is what the end-to-end tests of tests/ run on: the
// suite's programs as static binaries, real daemons started and stopped
// by the test that needs them, and real clients. Every helper fails the
// test with a clear message instead of returning an error, and whatever
// it starts is stopped when the test ends (t.Cleanup).
//
// Programs and the machine (harness.go, proc.go, port.go):
//
//   - Bin: a program of the suite ($IMAPTLS_BIN/name, or built once per
//     test process by internal/testkit) or a test tool (fakeimapd,
//     loadgen); RepoRoot.
//   - Need, NeedRoot: fail naming the Debian package to install; skip
//     unless root. EnsureAccount creates a system account.
//   - Port: a TCP port never handed out before in this test process,
//     free on 127.0.0.1 and ::1, below the kernel's ephemeral range.
//   - WriteCert, ClientTLS: a test CA and server certificate; a client
//     configuration that trusts it.
//   - RunBounded, ExitCode, RunClient: run a command under a hang guard.
//   - Listening, ProcessGroup, Descendants, ProcStat, ArgvOf, Alive,
//     WaitGone, Describe: processes and listeners from /proc.
//
// The pipeline under tcpserver (pipeline.go, log.go, jail.go):
//
//   - StartPipeline(t, PipelineOpts): imap-tls-server and the chain it
//     execs, on a Port, every program's stderr captured; StartTcpserver
//     and StartServer for a part of the chain. A Pipeline's methods wait
//     for log lines (WaitLog, SessionEnd) and for its processes
//     (Children, WaitNoChildren, FindConn, EndStatus).
//   - LogFields, CheckSessionLog, ClientPortFromLog: stunnel-imap's one
//     line per connection.
//   - StartJail (the run file's chain with a uid range), CheckJailed,
//     StartTLSPending, KeyScan: what a jailed process may hold and do.
//
// Daemons (daemon.go, dovecot.go, courier.go), one start/stop shape: a
// script of tests/ (dovecot.sh, courier.sh, which share daemon.sh) lays
// out a directory of its own under /tmp, `start DIR` and `stop DIR`, and
// its login servers run as makesock's second program. StartDovecot and
// StartCourier return a Daemon (LoginCmd, POP3LoginCmd, their Raw*
// recordings, Raw, Maildir): alice (password secret, three messages) and
// bob (password hunter2).
//
// Service trees under the real svscan (svscan.go): StartServices makes
// service directories with imap-tls-conf in front of a private Dovecot
// and runs svscan on them; a Service's methods read its log (LogLines,
// WaitLog: a line after the first skip), write env/,
// run svc and real clients (SvscanTree.Python, OpenSSL, Curl, Mbsync;
// MbsyncConf writes mbsync's file for a service).
// StartSigner runs one signer under supervise. RunSvscan starts an
// svscan command (perhaps in a network namespace) the one way: clean
// PATH, its own process group; SvstatPid reads svstat; ConfBin is
// imap-tls-conf, failing unless the suite's programs are next to it.
//
// A site under the real svscan (site.go): MakeSite makes one with
// `imap-tls-conf -m MODES` in front of a private Dovecot, a free port
// per front and the test certificate; Site.Start writes each front's
// env/PORT and env/IMAPD (Dovecot's haproxy listener, HAProxyPort),
// links the site once into svscan's directory and waits for the fronts.
// WaitSignerReady waits for a signer service's nth "ready" log line
// (SignerReadies counts them).
//
// Clients (client.go): IMAPClient (DialIMAP, DialFrom: raw bytes in,
// lines out, STARTTLS and TLS), Login, SClient (openssl s_client),
// RunPython (imaplib), RunPoplib (poplib), NewMessage (a message to
// append).
//
// The demo, tests/demo.sh (what `sh redo.do demo` runs), uses the same
// scripts: dovecot.sh or courier.sh behind a service tree.
package harness
