#!/bin/sh
# dovecot-tls.sh: imap-tls in front of Dovecot against Dovecot doing TLS
# itself (issue 20), on one private, login-capable Dovecot 2.3 with
# ssl = required (tests/dovecot.sh, its default login processes, a
# passwd-file passdb), every system side by side in one run:
#
#   dovecot-plain          Dovecot, no TLS at all: a listener of its own on
#                          127.0.0.2 (local 127.0.0.2 { ssl = no }): the floor
#   dovecot-starttls       Dovecot's own TLS, STARTTLS (a 143-style listener)
#   dovecot-implicit       Dovecot's own TLS, implicit (a 993-style listener,
#                          ssl = yes)
#   tls-dovecot-starttls   imap-tls (-n imap) in front of Dovecot's haproxy = yes
#                          listener, as the shipped service runs it: env/IMAPD
#                          one address, env/PROXYHEADER yes (-H), the signer
#                          (env/SIGNER), GOMAXPROCS=1; tcpserver runs
#                          setuidgid-chroot -c 3:ADDRESS -s 4:SOCKET, which
#                          connects Dovecot and the signer as root and execs
#                          stunnel-imap (two Go starts per connection, no
#                          makesock); with -H imap-tls-server loads the
#                          nftables rule that keeps the haproxy port to root
#                          (removed at the end)
#   tls-dovecot-implicit   the same with -n imaps
#   socat-dovecot-starttls the same as tls-dovecot-starttls with the server
#                          side as it was before makesock -c and
#                          setuidgid-chroot -c: makesock starting socat to the
#                          haproxy listener, per connection
#
# Both TLS sides use the same certificate (an ECDSA P-256 key made here).
# A session is loadgen's, LOGIN as alice: STARTTLS and the handshake (or
# the implicit handshake, or neither), CAPABILITY, LOGIN, LOGOUT. For each
# system: p50 and p99 at c=1, sessions/s at c=8 (rounds interleaved over
# the systems); CPU per session by program (perf record -a, every
# process on the machine, a sample per 0.1 ms of CPU, during DOVECOT_CPUN
# sessions at c=8); memory per held session, logged in with INBOX
# selected (loadgen -hold -holdat select): the PSS added to every
# process of Dovecot and of the system's tcpserver (tests/bench/pss.sh)
# by 1, then DOVECOT_HOLD, held sessions. Writes a Markdown section on
# stdout (tests/bench/dovecot.awk); bench.sh puts it into BENCHMARKS.md.
# Runs alone too, as root, after `sh redo.do`:
#
#   sh tests/bench/dovecot-tls.sh >section.md
#
# Environment:
#   IMAPTLS_BIN     the suite's binaries (default bin/ at the root)
#   DOVECOT_ROUNDS  rounds, the median is kept (default 3)
#   DOVECOT_SECS    seconds per c=1 and per c=8 figure (default 2)
#   DOVECOT_CPUN    sessions per CPU profile, one profile a round (default 200)
#   DOVECOT_HOLD    sessions held at once for the memory figure (default 50)
#   BENCH_SYSTEMS   ids to measure (default all; bench.sh's variable: ids
#                   of its other systems are ignored here)
#   BENCH_QUICK     1: one short round of everything, for the tests
#   BENCH_RANGE     setuidgid-chroot -r's range (default 2000000000:4194304)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 111
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
BIN=${IMAPTLS_BIN:-$root/bin}
PATH=$BIN:$PATH
export PATH
ROUNDS=${DOVECOT_ROUNDS:-3}
SECS=${DOVECOT_SECS:-2}
CPUN=${DOVECOT_CPUN:-200}
HOLD=${DOVECOT_HOLD:-50}
RANGE=${BENCH_RANGE:-2000000000:4194304}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=1 SECS=0.5 CPUN=20 HOLD=2
fi

say() { echo "dovecot-tls: $*" >&2; }
die() { echo "dovecot-tls: fatal: $*" >&2; exit 111; }
# make_cert, start_signer: what the bench scripts set up alike.
. tests/bench/lib.sh

# The systems: id, loadgen mode, label (the ids also name the rows of
# dovecot.awk).
all='dovecot-plain dovecot-starttls dovecot-implicit tls-dovecot-starttls tls-dovecot-implicit socat-dovecot-starttls'
systems=
for id in $all; do
	case " ${BENCH_SYSTEMS:-$id} " in *" $id "*) systems="$systems $id" ;; esac
done
[ -n "$systems" ] || die "no system to measure: BENCH_SYSTEMS=${BENCH_SYSTEMS:-}"

for p in tcpserver openssl go awk python3 socat dovecot doveadm nft imap-tls-server stunnel-imap-signer; do
	command -v $p >/dev/null 2>&1 || die "unable to find $p: apt-get install ucspi-tcp-ipv6 openssl python3 socat dovecot-imapd nftables, and sh redo.do"
done

work=$(mktemp -d /tmp/imaptls-dovecot.XXXXXX) || die "unable to make a temporary directory"
pids=
dovecot_up=
HP=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	[ -n "$dovecot_up" ] && sh tests/dovecot.sh stop "$work/dovecot" >/dev/null 2>&1
	# imap-tls-server -H's rule for this run's haproxy port (its own
	# chain, internal/firewall), and nothing else of the table
	[ -n "$HP" ] && nft delete chain inet imaptls "proxyport_$HP" >/dev/null 2>&1
	# and the table too when that left it empty (it was this run's)
	if [ -n "$HP" ] && ! nft list table inet imaptls 2>/dev/null | grep -q chain; then
		nft delete table inet imaptls >/dev/null 2>&1
	fi
	sleep 0.2
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 111' INT TERM HUP

CGO_ENABLED=0 go build -trimpath -o "$work/loadgen" ./tests/loadgen || die "unable to build tests/loadgen"
LOADGEN=$work/loadgen
JAIL=$work/jail
SOCK=$work/signer/socket
mkdir -p "$JAIL" "$work/dovecot"
chmod 755 "$work" "$JAIL"
# One certificate for both TLS sides: the signer's PEM file (key first),
# and Dovecot's ssl_cert and ssl_key, the same key and certificate.
make_cert "$work/ssl"
PEM=$work/ssl/localhost.pem

have_perf=no
perf stat -x, -e task-clock -o /dev/null true >/dev/null 2>&1 && have_perf=yes
[ $have_perf = yes ] || say "warning: perf does not work here (apt-get install linux-perf): no CPU figures"
load_before=$(uptime | sed 's/^ *//')

# The signer, as the service's signer/run starts it.
start_signer "$JAIL" "$RANGE" "$PEM" "$SOCK" "$work/signer.err"
pids="$pids $SIGNER"

# Dovecot: tests/dovecot.sh's private instance (its haproxy = yes
# listener is the service's env/IMAPD), with ssl = required and three
# listeners more.
freeport() {
	python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}
SP=$(freeport 127.0.0.1) && IP=$(freeport 127.0.0.1) && PP=$(freeport 127.0.0.2) || die "unable to find free ports"
DOVECOT_CONF_EXTRA="# dovecot-tls.sh: Dovecot's own TLS, the same certificate as imap-tls's
ssl = required
ssl_cert = <$work/ssl/cert.pem
ssl_key = <$work/ssl/key.pem
# the floor: a listener without TLS on an address of its own
local 127.0.0.2 {
  ssl = no
}
service imap-login {
  inet_listener imap-starttls {
    address = 127.0.0.1
    port = $SP
  }
  inet_listener imap-implicit {
    address = 127.0.0.1
    port = $IP
    ssl = yes
  }
  inet_listener imap-plain {
    address = 127.0.0.2
    port = $PP
  }
}" sh tests/dovecot.sh start "$work/dovecot" >&2 || die "unable to start Dovecot"
dovecot_up=yes
HP=$(cat "$work/dovecot/imap-haproxy.port")
MASTER=$(cat "$work/dovecot/run/master.pid")
DOVECOT_VERSION=$(dovecot --version 2>/dev/null | cut -d' ' -f1)

# front MODE SERVER...: the service's command (env/SIGNER, env/PROXYHEADER
# yes, env/UIDRANGE; tcpserver's options as bench.sh's systems have them).
front() {
	m=$1
	shift
	echo "imap-tls-server -1 -c 200 -b 100 -n $m -H -r $RANGE -j $JAIL -s $SOCK 127.0.0.1 0 $*"
}
cmd_of() {
	case $1 in
	tls-dovecot-starttls) front imap "127.0.0.1:$HP" ;;
	tls-dovecot-implicit) front imaps "127.0.0.1:$HP" ;;
	socat-dovecot-starttls) front imap "socat -lf /dev/null -t 5 STDIO,shut-down TCP:127.0.0.1:$HP" ;;
	esac
}
mode_of() {
	case $1 in
	*-plain) echo plain ;;
	*-starttls) echo starttls ;;
	*-implicit) echo implicit ;;
	esac
}
for id in $systems; do
	echo "$id" >"$work/$id.id"
	case $id in
	dovecot-plain) echo "127.0.0.2:$PP" >"$work/$id.addr" ;;
	dovecot-starttls) echo "127.0.0.1:$SP" >"$work/$id.addr" ;;
	dovecot-implicit) echo "127.0.0.1:$IP" >"$work/$id.addr" ;;
	*)
		: >"$work/$id.port"
		# shellcheck disable=SC2046
		env GOMAXPROCS=1 $(cmd_of "$id") >"$work/$id.port" 2>>"$work/$id.err" &
		echo $! >"$work/$id.pid"
		pids="$pids $!"
		i=0
		while [ ! -s "$work/$id.port" ]; do
			i=$((i + 1))
			[ $i -gt 100 ] && die "$id did not start: $(tail -1 "$work/$id.err")"
			sleep 0.1
		done
		echo "127.0.0.1:$(cat "$work/$id.port")" >"$work/$id.addr"
		;;
	esac
	: >"$work/$id.c1"
	: >"$work/$id.c8"
	: >"$work/$id.cpu"
done

lg() { "$LOADGEN" -u alice -p secret "$@" </dev/null 2>>"$work/loadgen.err"; }
val() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }

# The server side's programs, by the name the kernel keeps (15
# characters): dovecot.awk's rows of the CPU table, in this order.
SERVER_COMMS='tcpserver makesock setuidgid-chroo stunnel-imap stunnel-imap-si socat imap-login imap auth dovecot anvil log config stats'

# profile ID: perf record -a during CPUN sessions at c=8; appends to
# $work/ID.cpu one line "sessions N" and a line "COMM NS" per command
# (the CPU time its samples stand for: one sample per 100 µs of CPU).
profile() {
	r=$(perf record -a -q -e cpu-clock -c 100000 -o "$work/perf.data" -- \
		"$LOADGEN" -u alice -p secret -a "$(cat "$work/$1.addr")" -m "$(mode_of "$1")" -c 8 -n "$CPUN" \
		</dev/null 2>>"$work/perf.err" | grep '^result')
	n=$(val sessions "$r")
	[ "${n:-0}" -gt 0 ] || { say "$1: no session under perf: $(tail -1 "$work/perf.err")"; return 0; }
	echo "sessions $n" >>"$work/$1.cpu"
	perf report -i "$work/perf.data" --stdio --sort comm -F period,comm 2>/dev/null |
		awk '!/^#/ && NF >= 2 { c = $2; for (i = 3; i <= NF; i++) c = c "_" $i; print c, $1 }' >>"$work/$1.cpu"
	rm -f "$work/perf.data"
}

say "$(echo "$systems" | wc -w) systems on Dovecot $DOVECOT_VERSION, $ROUNDS rounds of ${SECS}s, interleaved; load: $(cut -d' ' -f1-3 /proc/loadavg)"
k=0
while [ $k -lt "$ROUNDS" ]; do
	k=$((k + 1))
	say "round $k of $ROUNDS"
	for id in $systems; do
		for c in 1 8; do
			lg -a "$(cat "$work/$id.addr")" -m "$(mode_of "$id")" -c $c -d "${SECS}s" | grep '^result' >>"$work/$id.c$c"
		done
	done
	if [ $have_perf = yes ]; then
		for id in $systems; do profile "$id"; done
	fi
done

# snap ID: every process of Dovecot (the master's descendants) and of the
# system's tcpserver: "procs=N pss_kb=K comms=a,b,..."; counted until two
# counts in a row find the same processes (a session's processes start
# and end asynchronously to the client).
snap1() {
	d=$(sh tests/bench/pss.sh "$MASTER")
	t='procs=0 pss_kb=0 comms='
	[ -f "$work/$1.pid" ] && t=$(sh tests/bench/pss.sh "$(cat "$work/$1.pid")")
	echo "procs=$(($(val procs "$d") + $(val procs "$t"))) pss_kb=$(($(val pss_kb "$d") + $(val pss_kb "$t"))) comms=$(val comms "$d"),$(val comms "$t")"
}
snap() {
	m=$(snap1 "$1")
	j=0
	while [ $j -lt 20 ]; do
		j=$((j + 1))
		sleep 0.3
		m2=$(snap1 "$1")
		[ "$(val comms "$m2")" = "$(val comms "$m")" ] && break
		m=$m2
	done
	echo "$m2"
}
# newcomms BEFORE AFTER: the commands in the comma list AFTER that are not
# in BEFORE (as many times as more), sorted, comma-separated.
newcomms() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, ","); for (i = 1; i <= n; i++) if (x[i] != "") c[x[i]]--
		n = split(b, x, ","); for (i = 1; i <= n; i++) if (x[i] != "") c[x[i]]++
		for (k in c) for (i = 0; i < c[k]; i++) print k
	}' | sort | paste -sd, -
}
# memory ID: the processes and PSS one held session adds, then the PSS
# per session of HOLD held at once; sessions logged in with INBOX selected.
memory() {
	id=$1
	line=
	for h in 1 "$HOLD"; do
		before=$(snap "$id")
		: >"$work/hold.out"
		"$LOADGEN" -u alice -p secret -a "$(cat "$work/$id.addr")" -m "$(mode_of "$id")" -hold "$h" -holdat select -c 8 -holdfor 120s \
			</dev/null >"$work/hold.out" 2>>"$work/loadgen.err" &
		hp=$!
		i=0
		held=yes
		while ! grep -q '^held=' "$work/hold.out"; do
			i=$((i + 1))
			if [ $i -gt 600 ] || ! kill -0 $hp 2>/dev/null; then
				say "$id: unable to hold $h sessions: $(tail -1 "$work/loadgen.err")"
				held=no
				break
			fi
			sleep 0.1
		done
		after=
		[ $held = yes ] && after=$(snap "$id")
		kill $hp 2>/dev/null
		wait $hp 2>/dev/null
		[ -n "$after" ] || continue
		kb=$(($(val pss_kb "$after") - $(val pss_kb "$before")))
		if [ "$h" = 1 ]; then
			line="$line procs=$(($(val procs "$after") - $(val procs "$before"))) comms=$(newcomms "$(val comms "$before")" "$(val comms "$after")") pss1=$kb"
		else
			line="$line pssn=$((kb / h))"
		fi
	done
	echo "$line"
}

: >"$work/results"
for id in $systems; do
	line="$id mode=$(mode_of "$id")"
	if [ ! -s "$work/$id.c1" ] || [ ! -s "$work/$id.c8" ]; then
		say "$id: no result: $(tail -1 "$work/loadgen.err")"
		echo "$id mode=$(mode_of "$id") failed=yes" >>"$work/results"
		continue
	fi
	errs=$(cat "$work/$id.c1" "$work/$id.c8" | tr ' ' '\n' | sed -n 's/^errors=//p' | awk '{ s += $1 } END { print s + 0 }')
	line="$line rate1=$(field "$work/$id.c1" rate | median) p50_1=$(field "$work/$id.c1" p50_ms | median) p99_1=$(field "$work/$id.c1" p99_ms | median)"
	line="$line rate8=$(field "$work/$id.c8" rate | median) p50_8=$(field "$work/$id.c8" p50_ms | median) p99_8=$(field "$work/$id.c8" p99_ms | median) err=$errs"
	if [ -s "$work/$id.cpu" ]; then
		# CPU ms per session by command, over every profile of the
		# run: the server side's programs (the chain, the signer,
		# socat, Dovecot's processes; the kernel keeps 15 characters of
		# a name), the client, and every other process together (the
		# idle task and perf itself left out)
		line="$line$(awk -v server="$SERVER_COMMS" '
			BEGIN { split(server, s, " "); for (i in s) known[s[i]] = 1; known["loadgen"] = 1 }
			$1 == "sessions" { n += $2; next }
			$1 == "swapper" || $1 == "perf" || $1 == "perf-exec" { next }
			$1 in known { t[$1] += $2; next }
			{ t["other"] += $2 }
			END { if (n) for (c in t) printf " cpu.%s=%.3f", c, t[c] / 1e6 / n }' "$work/$id.cpu")"
	fi
	line="$line$(memory "$id")"
	echo "$line" >>"$work/results"
	say "$line"
done
for id in $systems; do
	[ -f "$work/$id.pid" ] && kill "$(cat "$work/$id.pid")" 2>/dev/null
done
load_after=$(uptime | sed 's/^ *//')
sm=$(awk '/^Pss:/ { print $2 }' /proc/"$SIGNER"/smaps_rollup 2>/dev/null)

# The chains as imap-tls-server -x prints them, for the report.
chains=
for id in $systems; do
	case $id in
	dovecot-*) ;;
	*) chains="$chains$id: $($(cmd_of "$id" | sed 's/^imap-tls-server /imap-tls-server -x /') | tr '\n' ' ' | sed 's/ $//')
" ;;
	esac
done

echo "## imap-tls in front of Dovecot, against Dovecot's own TLS (issue 20)"
echo
echo "Measured by tests/bench/dovecot-tls.sh (run by bench.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), every system in"
echo "the same run against one private Dovecot $DOVECOT_VERSION (\`ssl = required\`, its default login processes:"
echo "a login process per connection, a passwd-file passdb; tests/dovecot.sh), rounds interleaved over the systems."
echo "Load (uptime) before: $load_before; after: $load_after."
echo
awk -v rounds="$ROUNDS" -v secs="$SECS" -v hold="$HOLD" -v cpun="$CPUN" -v signer_kb="${sm:-}" -v server_comms="$SERVER_COMMS" -f tests/bench/lib.awk -f tests/bench/dovecot.awk "$work/results"
echo
echo "The systems, exactly as run (\$W is the script's temporary directory; Dovecot's listeners are in"
echo "\$W/dovecot/dovecot.conf: tests/dovecot.sh's, and the ones this script adds):"
echo
echo '```'
for id in $systems; do
	case $id in
	dovecot-*) echo "$id: loadgen -m $(mode_of "$id") -a $(cat "$work/$id.addr") (Dovecot's listener)" ;;
	*) echo "$id: GOMAXPROCS=1 $(cmd_of "$id")" ;;
	esac
done | sed -e "s|$work|\$W|g" -e "s|$BIN/||g" -e "s|127.0.0.1:$HP|127.0.0.1:\$HAPROXYPORT|g"
echo
printf '%s' "$chains" | sed -e "s|$work|\$W|g" -e "s|$BIN/||g" -e "s|127.0.0.1:$HP|127.0.0.1:\$HAPROXYPORT|g"
echo '```'
echo
echo "Dovecot's configuration added to tests/dovecot.sh's (whose \`inet_listener imap-haproxy\` has \`haproxy = yes\`):"
echo
echo '```'
printf '%s\n' "ssl = required" "ssl_cert = <\$W/ssl/cert.pem" "ssl_key = <\$W/ssl/key.pem" "local 127.0.0.2 { ssl = no }" \
	"service imap-login {" "  inet_listener imap-starttls { address = 127.0.0.1; port = ... }" \
	"  inet_listener imap-implicit { address = 127.0.0.1; port = ...; ssl = yes }" \
	"  inet_listener imap-plain { address = 127.0.0.2; port = ... }" "}"
echo '```'
