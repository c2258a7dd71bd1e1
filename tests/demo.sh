#!/bin/sh
# demo.sh: the whole imap-tls pipeline under svscan, on a throwaway tree.
#
#   sh tests/demo.sh        (from the repository root, as root, after
#                           `sh redo.do` has built bin/; `sh redo.do
#                           demo` does both)
#
# It makes a temporary directory with two service directories (made by
# bin/imap-tls-conf), a self-signed certificate, and a private Dovecot
# (tests/dovecot.sh: user alice, password secret, three messages); runs
# svscan on 127.0.0.1:1143 (IMAP, STARTTLS required), 127.0.0.1:1993
# (IMAP, implicit TLS), 127.0.0.1:1110 (POP3, STLS required) and
# 127.0.0.1:1995 (POP3, implicit TLS) in the foreground; prints commands
# to try. Ctrl-C (or TERM) stops everything it started and removes the
# tree.
#
# Environment:
#   DEMO_CHECK=1        start, run three real clients once, stop; exit 0
#                       when all worked, 1 when one failed
#   DEMO_STARTTLS_PORT  default 1143
#   DEMO_IMPLICIT_PORT  default 1993
#   DEMO_POP3_PORT      default 1110
#   DEMO_POP3S_PORT     default 1995
#   DEMO_KEEP=1         keep the tree (logs) after stopping
#   DEMO_BACKEND        dovecot (the default) or courier: Courier's
#                       imaplogin and pop3login behind the services instead
#                       (tests/courier.sh: Debian's packages unpacked, never
#                       installed, fetched into /var/cache/imap-tls-test/courier
#                       the first time; user alice, password secret, three
#                       messages); the same client commands work
#   IMAPTLS_BIN         where the programs are (default: bin/)
#
# Exit codes: 0 done, 1 a check failed, 100 usage or missing pieces,
# 111 a setup step failed.

set -u
prog=demo.sh

say() { echo "$prog: $*" >&2; }
fatal() { echo "$prog: fatal: $1" >&2; exit "${2:-111}"; }

here=$(cd "$(dirname "$0")" && pwd -P) || fatal "unable to find the folder of demo.sh"
root=$(cd "$here/.." && pwd -P) || fatal "unable to find the repository root"
bin=${IMAPTLS_BIN:-$root/bin}
p1=${DEMO_STARTTLS_PORT:-1143}
p2=${DEMO_IMPLICIT_PORT:-1993}
p3=${DEMO_POP3_PORT:-1110}
p4=${DEMO_POP3S_PORT:-1995}
check=${DEMO_CHECK:-}
backend=${DEMO_BACKEND:-dovecot}
case $backend in
dovecot) server=Dovecot ;;
courier) server=Courier ;;
*) echo "$prog: usage: DEMO_BACKEND is dovecot or courier, not $backend" >&2; exit 100 ;;
esac

[ $# -eq 0 ] || { echo "$prog: usage: [ DEMO_CHECK=1 ] sh tests/demo.sh" >&2; exit 100; }
[ "$(id -u)" = 0 ] || fatal "the demo must run as root (it starts svscan and a private Dovecot, and chroots)" 100

# What must be there before anything starts.
missing=
for p in imap-tls-server makesock setuidgid-chroot stunnel-imap stunnel-imap-key stunnel-imap-signer imap-tls-conf; do
	[ -x "$bin/$p" ] || missing="$missing $p"
done
[ -z "$missing" ] || fatal "missing in $bin:$missing: build them first with: sh redo.do" 100
need() { # need command package
	command -v "$1" >/dev/null 2>&1 || pkgs="$pkgs $2"
}
pkgs=
for c in svscan supervise svc svok multilog softlimit envdir setuidgid; do need $c daemontools; done
need tcpserver ucspi-tcp
if [ "$backend" = dovecot ]; then
	need dovecot dovecot-imapd
	[ -x /usr/lib/dovecot/pop3-login ] || pkgs="$pkgs dovecot-pop3d"
	need doveadm dovecot-core
else
	need unshare util-linux
	need flock util-linux
	need apt-get apt
fi
need socat socat
need openssl openssl
need setsid util-linux
if [ -n "$check" ]; then
	need curl curl
	need python3 python3
fi
pkgs=$(for p in $pkgs; do echo "$p"; done | sort -u | tr '\n' ' ' | sed 's/ $//')
[ -z "$pkgs" ] || fatal "missing Debian packages: $pkgs: run: apt-get install $pkgs" 100

# up PORT: true when something answers an IMAP greeting there.
up() {
	printf '' | socat -T 2 STDIO TCP:127.0.0.1:"$1",connect-timeout=2 2>/dev/null | head -c 1 | grep -q .
}
listening() { socat -T 1 /dev/null TCP:127.0.0.1:"$1",connect-timeout=1 2>/dev/null; }
for p in "$p1" "$p2" "$p3" "$p4"; do
	listening "$p" && fatal "port 127.0.0.1:$p is in use: stop what listens there, or set DEMO_STARTTLS_PORT / DEMO_IMPLICIT_PORT / DEMO_POP3_PORT / DEMO_POP3S_PORT" 100
done

for a in imaptls imaptlslog imaptlsmail; do
	id "$a" >/dev/null 2>&1 && continue
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$a" ||
		fatal "unable to create account $a"
done

work=$(mktemp -d /tmp/imap-tls-demo.XXXXXX) || fatal "unable to create a temporary directory"
chmod 0755 "$work"
say "tree: $work"
svscan_pid=
stopped=

# stop: everything this script started, in order, then check nothing is
# left; safe to call twice.
stop() {
	[ -n "$stopped" ] && return
	stopped=1
	trap '' INT TERM HUP
	say "stopping"
	# svscan first, or it would start a new supervise for a service whose
	# supervise just left; then each service and its logger, the
	# daemontools way
	if [ -n "$svscan_pid" ]; then
		kill -TERM "$svscan_pid" 2>/dev/null
		wait "$svscan_pid" 2>/dev/null
	fi
	if [ -d "$work/service" ]; then
		for s in "$work"/service/*; do
			svc -dx "$s" 2>/dev/null
		done
		for s in "$work"/service/*; do
			svc -dx "$s/log" 2>/dev/null
		done
	fi
	if [ -n "$svscan_pid" ]; then
		# svscan led its own process group: what is left in it are live
		# connections, or a supervise still busy
		i=0
		while pgrep -g "$svscan_pid" >/dev/null 2>&1; do
			i=$((i + 1))
			[ $i -eq 30 ] && kill -TERM -- "-$svscan_pid" 2>/dev/null
			[ $i -eq 50 ] && kill -KILL -- "-$svscan_pid" 2>/dev/null
			[ $i -ge 70 ] && break
			sleep 0.1
		done
	fi
	[ -f "$work/dovecot/dovecot.conf" ] && sh "$here/dovecot.sh" stop "$work/dovecot"
	[ -d "$work/courier" ] && sh "$here/courier.sh" stop "$work/courier"
	left=
	[ -n "$svscan_pid" ] && left=$(pgrep -g "$svscan_pid" 2>/dev/null | tr '\n' ' ')
	[ -f "$work/dovecot/run/master.pid" ] && kill -0 "$(cat "$work/dovecot/run/master.pid")" 2>/dev/null &&
		left="$left dovecot"
	if [ -n "$left" ]; then
		say "warning: still running: $left"
	else
		say "stopped: nothing left running"
	fi
	if [ -n "${DEMO_KEEP:-}" ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM HUP
trap 'stop' EXIT

# The private Dovecot: alice/secret with three messages, on a unix socket;
# or Courier's login servers, with authdaemond and the same mail.
if [ "$backend" = dovecot ]; then
	sh "$here/dovecot.sh" start "$work/dovecot" || fatal "unable to start Dovecot"
else
	sh "$here/courier.sh" start "$work/courier" || fatal "unable to start Courier"
fi

# A self-signed certificate for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 ||
	fatal "unable to make a certificate with openssl"
chmod 0644 "$work/cert.pem"

# Two service directories from the same command: STARTTLS and implicit TLS.
mkdir "$work/service" || fatal "unable to create $work/service"
"$bin/imap-tls-conf" imaptls imaptlslog "$work/service/starttls" 127.0.0.1 "$p1" >/dev/null ||
	fatal "unable to make the STARTTLS service"
"$bin/imap-tls-conf" imaptls imaptlslog "$work/service/implicit" 127.0.0.1 "$p2" >/dev/null ||
	fatal "unable to make the implicit-TLS service"
echo imaps >"$work/service/implicit/env/MODE" # on 993 imap-tls-conf writes it itself
# And two for POP3: STLS required, and implicit TLS.
"$bin/imap-tls-conf" imaptls imaptlslog "$work/service/pop3" 127.0.0.1 "$p3" >/dev/null ||
	fatal "unable to make the POP3 service"
"$bin/imap-tls-conf" imaptls imaptlslog "$work/service/pop3s" 127.0.0.1 "$p4" >/dev/null ||
	fatal "unable to make the POP3 implicit-TLS service"
echo pop3 >"$work/service/pop3/env/MODE"
echo pop3s >"$work/service/pop3s/env/MODE"
for s in starttls implicit pop3 pop3s; do
	d=$work/service/$s
	proto=imap
	case $s in pop3*) proto=pop3 ;; esac
	# Dovecot's login service on its loopback port with haproxy = yes:
	# the proxy's PROXY header (env/PROXYHEADER yes) gives it the
	# client's address (rip= in its log). shut-down: pass Dovecot's end
	# of file on at once (socat's STDIO does not shut down a socket
	# otherwise, and waits -t seconds)
	[ "$backend" = dovecot ] &&
		echo "socat -t 5 STDIO,shut-down TCP:127.0.0.1:$(cat "$work/dovecot/$proto-haproxy.port")" >"$d/env/IMAPD"
	if [ "$backend" = courier ]; then
		# Courier's own stdio login servers, in their namespace (they
		# are not installed): imaplogin /usr/bin/imapd Maildir, or
		# courierpop3login courierpop3d Maildir
		login=imaplogin
		case $s in pop3*) login=pop3login ;; esac
		echo "sh $here/courier.sh $login $work/courier" >"$d/env/IMAPD"
		# the client's address reaches Courier as TCPREMOTEIP; a PROXY
		# header would reach it as a command
		echo no >"$d/env/PROXYHEADER"
	fi
	echo 10 >"$d/env/CONCURRENCY"
	cat "$work/cert.pem" "$work/key.pem" >"$d/ssl/stunnel.pem" && chmod 0400 "$d/ssl/stunnel.pem" ||
		fatal "unable to install $d/ssl/stunnel.pem"
	# the service's signer is a service of its own, beside it
	ln -s "$d/signer" "$work/service/$s-signer" || fatal "unable to link $d/signer"
done
rm -f "$work/key.pem"

# svscan in its own session and process group, so that stop() can find
# every process it left behind.
setsid svscan "$work/service" </dev/null >"$work/svscan.log" 2>&1 &
svscan_pid=$!

i=0
until up "$p1" && listening "$p2" && up "$p3" && listening "$p4"; do
	i=$((i + 1))
	if [ $i -ge 60 ]; then
		say "the services did not come up; their logs:"
		tail -n 5 "$work"/service/*/log/main/current >&2 2>/dev/null
		exit 111
	fi
	sleep 0.5
done

cafile=$work/cert.pem
s1=$work/service/starttls
s2=$work/service/implicit
s3=$work/service/pop3
s4=$work/service/pop3s

if [ -n "$check" ]; then
	failed=0
	ok() { say "ok: $*"; }
	bad() { say "FAILED: $*"; failed=1; }

	out=$(printf 'a LOGIN alice secret\nb SELECT INBOX\nc LOGOUT\n' |
		timeout 20 openssl s_client -quiet -crlf -ign_eof -starttls imap -connect "127.0.0.1:$p1" \
			-CAfile "$cafile" -verify_return_error -verify_hostname localhost 2>&1)
	if echo "$out" | grep -q '^\* 3 EXISTS' && echo "$out" | grep -q '^b OK'; then
		ok "openssl s_client -starttls imap on $p1"
	else
		bad "openssl s_client -starttls imap on $p1: $out"
	fi

	out=$(timeout 20 curl -sS --ssl-reqd --cacert "$cafile" "imap://alice:secret@127.0.0.1:$p1/INBOX;MAILINDEX=2" 2>&1)
	if echo "$out" | grep -q '^Subject: seed message 2'; then ok "curl --ssl-reqd imap:// on $p1"; else bad "curl imap:// on $p1: $out"; fi
	out=$(timeout 20 curl -sS --cacert "$cafile" "imaps://alice:secret@127.0.0.1:$p2/INBOX;MAILINDEX=3" 2>&1)
	if echo "$out" | grep -q '^Subject: seed message 3'; then ok "curl imaps:// on $p2"; else bad "curl imaps:// on $p2: $out"; fi

	out=$(timeout 20 python3 -c '
import imaplib, ssl, sys
ca, p1, p2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
c = imaplib.IMAP4("127.0.0.1", p1); c.starttls(ctx)
c.login("alice", "secret"); n = c.select("INBOX")[1][0].decode()
s = c.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode().strip(); c.logout()
d = imaplib.IMAP4_SSL("127.0.0.1", p2, ssl_context=ctx)
d.login("alice", "secret"); m = d.select("INBOX")[1][0].decode(); d.logout()
print(n, m, s)
' "$cafile" "$p1" "$p2" 2>&1)
	if [ "$out" = "3 3 Subject: seed message 1" ]; then ok "python3 imaplib on $p1 (starttls) and $p2 (IMAP4_SSL)"; else bad "python3 imaplib: $out"; fi

	out=$(timeout 20 python3 -c '
import poplib, ssl, sys
ca, p3, p4 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
c = poplib.POP3("127.0.0.1", p3); c.stls(ctx); c.user("alice"); c.pass_("secret")
n = c.stat()[0]; s = [l for l in c.top(1, 0)[1] if l.startswith(b"Subject:")][0].decode(); c.quit()
d = poplib.POP3_SSL("127.0.0.1", p4, context=ctx); d.user("alice"); d.pass_("secret"); m = d.stat()[0]; d.quit()
print(n, m, s)
' "$cafile" "$p3" "$p4" 2>&1)
	if [ "$out" = "3 3 Subject: seed message 1" ]; then ok "python3 poplib on $p3 (stls) and $p4 (POP3_SSL)"; else bad "python3 poplib: $out"; fi
	out=$(timeout 20 curl -sS --ssl-reqd --cacert "$cafile" "pop3://alice:secret@127.0.0.1:$p3/2" 2>&1)
	if echo "$out" | grep -q '^Subject: seed message 2'; then ok "curl --ssl-reqd pop3:// on $p3"; else bad "curl pop3:// on $p3: $out"; fi

	sleep 0.5
	n=$(cat "$s1/log/main/current" "$s2/log/main/current" "$s3/log/main/current" "$s4/log/main/current" 2>/dev/null | grep -c '^@4000')
	if [ "$n" -ge 8 ] && ! grep -q secret "$s1/log/main/current" "$s2/log/main/current" "$s3/log/main/current" "$s4/log/main/current"; then
		ok "logs: $n tai64n lines, no password"
	else
		bad "logs: $n lines (want at least 8), or a password in them"
	fi
	if [ "$backend" = dovecot ]; then
		# Dovecot's log: the client's address (rip=) from the PROXY
		# header, and secured, for IMAP and POP3 logins
		if grep -q 'imap-login: Info: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, .*secured' "$work/dovecot/dovecot.log" &&
			grep -q 'pop3-login: Info: Login: user=<alice>, method=.*, rip=127\.0\.0\.1, .*secured' "$work/dovecot/dovecot.log"; then
			ok "Dovecot's log: rip=127.0.0.1 and secured for IMAP and POP3 logins"
		else
			bad "Dovecot's log lacks rip= or secured: $(grep 'Login:' "$work/dovecot/dovecot.log" | tail -2)"
		fi
	fi
	if [ "$backend" = courier ]; then
		# Courier's own lines: the client's address, and TLS as the proxy says
		if grep -q 'INFO: LOGIN, user=alice, ip=\[127\.0\.0\.1\]' "$s1/log/main/current" &&
			grep -q 'user=alice, ip=\[127\.0\.0\.1\].*starttls=1' "$s1/log/main/current" &&
			grep -q 'user=alice, ip=\[127\.0\.0\.1\].*stls=1' "$s3/log/main/current"; then
			ok "Courier's log lines: the client's address, starttls=1 and stls=1"
		else
			bad "Courier's log lines lack the client's address or starttls=1 / stls=1"
		fi
	fi
	stop
	trap - EXIT
	[ $failed = 0 ] && say "all checks passed" || say "some checks failed"
	exit $failed
fi

cat <<EOF

imap-tls demo: running under svscan ($work/service)
  127.0.0.1:$p1  STARTTLS required   ($s1)
  127.0.0.1:$p2  implicit TLS        ($s2)
  127.0.0.1:$p3  POP3, STLS required ($s3)
  127.0.0.1:$p4  POP3, implicit TLS  ($s4)
  behind them: a private $server, user alice, password secret, 3 messages

Try, from another terminal:

  openssl s_client -crlf -starttls imap -connect 127.0.0.1:$p1 -CAfile $cafile
      then type:  a LOGIN alice secret
                  b SELECT INBOX
                  c FETCH 1 BODY[]
                  d LOGOUT
  openssl s_client -crlf -connect 127.0.0.1:$p2 -CAfile $cafile

  curl --ssl-reqd --cacert $cafile 'imap://alice:secret@127.0.0.1:$p1/INBOX;MAILINDEX=1'
  curl --ssl-reqd -k 'imap://alice:secret@127.0.0.1:$p1/INBOX'
  curl --cacert $cafile 'imaps://alice:secret@127.0.0.1:$p2/INBOX;MAILINDEX=2'

  python3 -c 'import imaplib,ssl; c=imaplib.IMAP4("127.0.0.1",$p1); c.starttls(ssl.create_default_context(cafile="$cafile")); c.login("alice","secret"); print(c.select("INBOX")); print(c.fetch("1","(BODY[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode()); c.logout()'

  POP3:
  openssl s_client -crlf -starttls pop3 -connect 127.0.0.1:$p3 -CAfile $cafile
      then type:  USER alice
                  PASS secret
                  STAT
                  QUIT
  curl --ssl-reqd --cacert $cafile 'pop3://alice:secret@127.0.0.1:$p3/1'
  curl --cacert $cafile 'pop3s://alice:secret@127.0.0.1:$p4/2'
  python3 -c 'import poplib,ssl; c=poplib.POP3("127.0.0.1",$p3); c.stls(ssl.create_default_context(cafile="$cafile")); c.user("alice"); c.pass_("secret"); print(c.stat()); c.quit()'

  Without STARTTLS the service refuses to log in:
  printf 'a LOGIN alice secret\\r\\nb LOGOUT\\r\\n' | socat - TCP:127.0.0.1:$p1

Logs (one line per connection, tai64n stamps):
  tail -F $s1/log/main/current | tai64nlocal
  tail -F $s2/log/main/current | tai64nlocal
  tail -F $s3/log/main/current $s4/log/main/current | tai64nlocal
Control: svstat $s1; svc -t $s1 (restart); edit $s1/env/PORT, then svc -t $s1

Ctrl-C stops everything (svscan, supervise, tcpserver, $server) and removes $work.
EOF

# Wait for Ctrl-C or TERM; wait returns early when a trapped signal comes.
while kill -0 "$svscan_pid" 2>/dev/null; do
	wait "$svscan_pid"
done
say "svscan exited"
exit 111
