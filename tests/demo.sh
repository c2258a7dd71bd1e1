#!/bin/sh
# demo.sh: the whole imap-tls pipeline under svscan, on a throwaway tree.
#
#   sh tests/demo.sh        (from the repository root, as root, after
#                           `sh redo.do` has built bin/; `sh redo.do
#                           demo` does both)
#
# It makes a temporary directory with one site (made by bin/imap-tls-conf
# -m imap,imaps,pop3,pop3s: a front per mode, one signer, one
# certificate, self-signed here) linked into a directory that svscan
# scans, as a user links /etc/imap-tls into /etc/service, and a private
# Dovecot (tests/dovecot.sh: user alice, password secret, three
# messages) whose haproxy listeners are the fronts' env/IMAPD (an
# address: each connection's setuidgid-chroot connects to it as root,
# -c 3:ADDRESS, and execs stunnel-imap). It serves 127.0.0.1:1143
# (IMAP, STARTTLS required), 127.0.0.1:1993 (IMAP, implicit TLS),
# 127.0.0.1:1110 (POP3, STLS required) and 127.0.0.1:1995 (POP3,
# implicit TLS) in the foreground; prints commands to try. Each front
# loads, as it starts, the nftables rule that keeps Dovecot's PROXY port
# to root (table inet imaptls, chain proxyport_PORT); without nft the
# site's env/PROXYFIREWALL is no (and the demo says why). Ctrl-C (or
# TERM) stops everything it started, removes the chains it caused (and
# the table, when that leaves it empty) and the tree.
#
# Environment:
#   DEMO_CHECK=1        start, run the real clients once (openssl,
#                       curl, imaplib, poplib), check the fronts' logs,
#                       Dovecot's (rip=, secured), that no socat runs
#                       under the fronts during a session, and the
#                       firewall rule (another account is refused), stop;
#                       exit 0 when all worked, 1 when one failed
#   DEMO_STARTTLS_PORT  default 1143
#   DEMO_IMPLICIT_PORT  default 1993
#   DEMO_POP3_PORT      default 1110
#   DEMO_POP3S_PORT     default 1995
#   DEMO_KEEP=1         keep the tree (logs) after stopping
#   DEMO_BACKEND        dovecot (the default) or courier: Courier's
#                       imaplogin and pop3login behind the fronts instead
#                       (tests/courier.sh: Debian's packages unpacked, never
#                       installed, fetched into /var/cache/imap-tls-test/courier
#                       the first time; user alice, password secret, three
#                       messages; env/IMAPD courier.sh's command line,
#                       env/PROXYHEADER empty, no firewall rule); the
#                       same client commands work
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
# nft: the fronts load the firewall rule for Dovecot's PROXY ports with
# it; without it (or without nf_tables in the kernel) the demo runs
# without the rule, and says why.
nftwhy=
if [ "$backend" = dovecot ]; then
	if ! command -v nft >/dev/null 2>&1; then
		nftwhy="nftables not installed (no nft)"
	elif ! e=$(nft list tables 2>&1 >/dev/null); then
		nftwhy="nft cannot list the tables: $(echo "$e" | head -n 1)"
	fi
fi

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
site=$work/imap-tls
fwports= # Dovecot's PROXY ports whose chains the fronts load
fwbefore= # of those, the chains that were there before the demo

# unfirewall: delete the chains the fronts loaded for this demo (not one
# that was there before it), then the table when nothing is left in it;
# say what it did.
unfirewall() {
	[ -n "$fwports" ] || return 0
	gone=
	for hp in $fwports; do
		case " $fwbefore " in *" $hp "*)
			say "firewall: left chain inet imaptls proxyport_$hp: it was there before the demo"
			continue ;;
		esac
		nft list chain inet imaptls "proxyport_$hp" >/dev/null 2>&1 || continue
		if nft delete chain inet imaptls "proxyport_$hp"; then
			gone="$gone proxyport_$hp"
		else
			say "warning: unable to delete chain inet imaptls proxyport_$hp"
		fi
	done
	table=
	if nft list table inet imaptls >/dev/null 2>&1 && ! nft list table inet imaptls | grep -q '^[[:space:]]*chain '; then
		nft delete table inet imaptls && table=" and the table inet imaptls, empty now"
	fi
	[ -n "$gone$table" ] && say "firewall: removed the chains the demo caused:${gone:- none}$table"
	return 0
}

# stop: everything this script started, in order, then check nothing is
# left; safe to call twice.
stop() {
	[ -n "$stopped" ] && return
	stopped=1
	trap '' INT TERM HUP
	say "stopping"
	# svscan first, or it would start a new supervise for the site whose
	# supervise just left; then the site, the daemontools way: its run
	# file stops its own svscan, every front, the signer and their logs
	if [ -n "$svscan_pid" ]; then
		kill -TERM "$svscan_pid" 2>/dev/null
		wait "$svscan_pid" 2>/dev/null
	fi
	if [ -d "$work/service" ]; then
		svc -dx "$work/service/imap-tls" 2>/dev/null
	fi
	if [ -n "$svscan_pid" ]; then
		# svscan led its own process group: what is left in it are live
		# connections, or a supervise still busy
		i=0
		while pgrep -g "$svscan_pid" >/dev/null 2>&1; do
			i=$((i + 1))
			[ $i -eq 100 ] && kill -TERM -- "-$svscan_pid" 2>/dev/null
			[ $i -eq 120 ] && kill -KILL -- "-$svscan_pid" 2>/dev/null
			[ $i -ge 140 ] && break
			sleep 0.1
		done
	fi
	[ -f "$work/dovecot/dovecot.conf" ] && sh "$here/dovecot.sh" stop "$work/dovecot"
	[ -d "$work/courier" ] && sh "$here/courier.sh" stop "$work/courier"
	unfirewall
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

# One site, as a user makes it: a front per mode, one signer, one
# certificate; its fronts on the demo's ports.
"$bin/imap-tls-conf" -m imap,imaps,pop3,pop3s imaptls imaptlslog "$site" 127.0.0.1 >/dev/null ||
	fatal "unable to make the site $site"
s1=$site/service/imap
s2=$site/service/imaps
s3=$site/service/pop3
s4=$site/service/pop3s
echo "$p1" >"$s1/env/PORT" && echo "$p2" >"$s2/env/PORT" &&
	echo "$p3" >"$s3/env/PORT" && echo "$p4" >"$s4/env/PORT" ||
	fatal "unable to write the fronts' env/PORT"
echo 10 >"$site/env/CONCURRENCY" || fatal "unable to write $site/env/CONCURRENCY"
if [ "$backend" = dovecot ]; then
	# Dovecot's login services on their loopback ports with haproxy =
	# yes: each front's env/IMAPD is the address, which the proxy's
	# setuidgid-chroot connects to as root; the proxy's PROXY header
	# (env/PROXYHEADER yes, the site's default) gives Dovecot the
	# client's address (rip= in its log)
	imaphp=$(cat "$work/dovecot/imap-haproxy.port") && pop3hp=$(cat "$work/dovecot/pop3-haproxy.port") ||
		fatal "unable to read Dovecot's haproxy ports in $work/dovecot"
	for s in "$s1" "$s2"; do echo "127.0.0.1:$imaphp" >"$s/env/IMAPD" || fatal "unable to write $s/env/IMAPD"; done
	for s in "$s3" "$s4"; do echo "127.0.0.1:$pop3hp" >"$s/env/IMAPD" || fatal "unable to write $s/env/IMAPD"; done
	# Dovecot trusts a PROXY header by its source address alone: each
	# front, as it starts, loads the nftables rule that keeps the port to
	# root (the chain's setuidgid-chroot). Written here either way, so that a
	# PROXYFIREWALL in the demo's own environment does not decide it.
	if [ -z "$nftwhy" ]; then
		fwports="$imaphp $pop3hp"
		for hp in $fwports; do
			nft list chain inet imaptls "proxyport_$hp" >/dev/null 2>&1 && fwbefore="$fwbefore $hp"
		done
		echo yes >"$site/env/PROXYFIREWALL"
	else
		say "warning: $nftwhy: $site/env/PROXYFIREWALL is no: no firewall rule keeps Dovecot's PROXY ports ($imaphp, $pop3hp) to root (apt-get install nftables)"
		echo no >"$site/env/PROXYFIREWALL"
	fi || fatal "unable to write $site/env/PROXYFIREWALL"
else
	# Courier's own stdio login servers, in their namespace (they are
	# not installed): imaplogin /usr/bin/imapd Maildir, or
	# courierpop3login courierpop3d Maildir
	for s in "$s1" "$s2"; do echo "sh $here/courier.sh imaplogin $work/courier" >"$s/env/IMAPD" || fatal "unable to write $s/env/IMAPD"; done
	for s in "$s3" "$s4"; do echo "sh $here/courier.sh pop3login $work/courier" >"$s/env/IMAPD" || fatal "unable to write $s/env/IMAPD"; done
	# the client's address reaches Courier as TCPREMOTEIP; a PROXY
	# header would reach it as a command
	: >"$site/env/PROXYHEADER" || fatal "unable to write $site/env/PROXYHEADER"
fi
cat "$work/cert.pem" "$work/key.pem" >"$site/ssl/stunnel.pem" && chmod 0400 "$site/ssl/stunnel.pem" ||
	fatal "unable to install $site/ssl/stunnel.pem"
rm -f "$work/key.pem"

# Up, all of it, with one link, as into /etc/service; svscan in its own
# session and process group, so that stop() can find every process it
# left behind.
mkdir "$work/service" && ln -s "$site" "$work/service/imap-tls" ||
	fatal "unable to link $site into $work/service"
setsid svscan "$work/service" </dev/null >"$work/svscan.log" 2>&1 &
svscan_pid=$!

i=0
until up "$p1" && listening "$p2" && up "$p3" && listening "$p4"; do
	i=$((i + 1))
	if [ $i -ge 60 ]; then
		say "the services did not come up; their logs:"
		tail -n 5 "$work/svscan.log" "$site"/service/*/log/main/current >&2 2>/dev/null
		exit 111
	fi
	sleep 0.5
done

cafile=$work/cert.pem

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

	# Under the fronts, during a session: the chain's programs, and no
	# socat (env/IMAPD is an address: setuidgid-chroot connects to it
	# itself; or Courier's login program), and with Dovecot no makesock
	# either, neither running nor in what tcpserver runs for a
	# connection (its argv: a makesock exec'd on leaves no process).
	# svscan leads its own session.
	out=$(timeout 20 python3 -c '
import imaplib, poplib, ssl, subprocess, sys
ca, p1, p3, sid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
c = imaplib.IMAP4("127.0.0.1", p1); c.starttls(ctx); c.login("alice", "secret"); c.select("INBOX")
d = poplib.POP3("127.0.0.1", p3); d.stls(ctx); d.user("alice"); d.pass_("secret"); d.stat()
ps = subprocess.run(["ps", "-o", "comm=", "-s", sid], capture_output=True, text=True).stdout.split()
args = subprocess.run(["ps", "-o", "args=", "-s", sid], capture_output=True, text=True).stdout.splitlines()
c.logout(); d.quit()
fronts = [a + " " for a in args if a.startswith("tcpserver ")]
mk = sum(1 for a in fronts if " makesock " in a)
sg = sum(1 for a in fronts if " setuidgid-chroot " in a and " -c 3:" in a)
print(" ".join(sorted(set(ps))), "tcpserver-makesock=%d" % mk, "tcpserver-connect=%d" % sg, "stunnel-imap=%d" % ps.count("stunnel-imap"))
' "$cafile" "$p1" "$p3" "$svscan_pid" 2>&1)
	case "$backend $out " in
	*" socat "*) bad "a socat under the fronts during a session: $out" ;;
	"dovecot "*" makesock "* | "dovecot "*" tcpserver-makesock="[1-9]* | "dovecot "*" tcpserver-connect="[0-3]" "*)
		bad "a makesock under the fronts during a session, or in a front's chain (tcpserver's argv; want four fronts whose setuidgid-chroot connects the server, -c 3:), the server one address: $out" ;;
	*" stunnel-imap=2 "* | *" stunnel-imap=[3-9] "*)
		nomk=
		[ "$backend" = dovecot ] && nomk=", no makesock"
		ok "no socat under the fronts during an IMAP and a POP3 session$nomk (${out% tcpserver-makesock=*})" ;;
	*) bad "two sessions held, but not two stunnel-imap under the fronts: $out" ;;
	esac

	if [ -n "$fwports" ]; then
		# the rule the fronts loaded: only root may connect to Dovecot's
		# PROXY ports; another account's connection is reset
		for hp in $fwports; do
			if nft list chain inet imaptls "proxyport_$hp" 2>/dev/null | grep -q "tcp dport $hp meta skuid != 0 .*reject"; then
				if ! listening "$hp"; then
					bad "firewall: root cannot reach Dovecot's PROXY port $hp either"
				elif setuidgid imaptlsmail socat -T 2 /dev/null "TCP:127.0.0.1:$hp,connect-timeout=2" 2>/dev/null; then
					bad "firewall: imaptlsmail reached Dovecot's PROXY port $hp"
				else
					ok "firewall: chain inet imaptls proxyport_$hp keeps Dovecot's PROXY port $hp to root (root's connection taken, imaptlsmail's refused)"
				fi
			else
				bad "firewall: no chain inet imaptls proxyport_$hp with its rule: $(nft list chain inet imaptls "proxyport_$hp" 2>&1 | tr '\n' ' ')"
			fi
		done
	fi

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

if [ -n "$fwports" ]; then
	firewall="  firewall: only root may connect to Dovecot's PROXY ports ($imaphp, $pop3hp):
            nft list table inet imaptls   (chains proxyport_$imaphp, proxyport_$pop3hp;
            removed when the demo stops)"
elif [ "$backend" = dovecot ]; then
	firewall="  firewall: none ($nftwhy: env/PROXYFIREWALL is no)"
else
	firewall="  no PROXY header: Courier reads the client's address from TCPREMOTEIP"
fi
cat <<EOF

imap-tls demo: a site under svscan ($work/service/imap-tls -> $site)
  127.0.0.1:$p1  IMAP, STARTTLS required  ($s1)
  127.0.0.1:$p2  IMAP, implicit TLS       ($s2)
  127.0.0.1:$p3  POP3, STLS required      ($s3)
  127.0.0.1:$p4  POP3, implicit TLS       ($s4)
  one signer ($site/service/signer), one certificate ($site/ssl/stunnel.pem)
  behind them: a private $server, user alice, password secret, 3 messages
$firewall

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
  the signer's: $site/service/signer/log/main/current
Control: svstat $work/service/imap-tls $site/service/*
  one front: svc -t $s1 (restart it alone); edit $s1/env/PORT, then svc -t $s1
  the whole site: svc -t $work/service/imap-tls

Ctrl-C stops everything (svscan, the site, tcpserver, $server) and removes $work.
EOF

# Wait for Ctrl-C or TERM; wait returns early when a trapped signal comes.
while kill -0 "$svscan_pid" 2>/dev/null; do
	wait "$svscan_pid"
done
say "svscan exited"
exit 111
