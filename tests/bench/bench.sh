#!/bin/sh
# bench.sh: imap-tls against stunnel 5, tlswrapper and plaintext, side by
# side on loopback, with one backend (tests/fakeimapd) and one client
# (tests/loadgen); writes BENCHMARKS.md. imap-tls runs as the run file
# written by imap-tls-conf runs it: imap-tls-server, which execs
# tcpserver with the one chain it spells (a key process, a uid of its
# own for each process, -r). Run from anywhere, as root, after
# `sh redo.do` has built bin/ (`sh redo.do bench` does both).
#
#   sh tests/bench/bench.sh
#
# Environment:
#   IMAPTLS_BIN    where the suite's binaries are (default: bin/ at the root)
#   BENCH_ROUNDS   rounds per figure, the median is kept (default 3)
#   BENCH_SECS     length of a sessions/s round in seconds (default 2.5)
#   BENCH_SIZE     size of the bulk FETCH's message (default 64M)
#   BENCH_OUT      the report to write (default BENCHMARKS.md at the root)
#   BENCH_SYSTEMS  the systems to measure, by id (default: all installed)
#   BENCH_RANGE    setuidgid-chroot -r's uid range (default the run
#                  file's, 2000000000:4194304)
#   BENCH_PROFILE  0 to skip the perf profile of the chain (default 1)
#   BENCH_QUICK    1: one short round of everything, for the tests
#   BENCH_DOVECOT  0 to skip tests/bench/dovecot-tls.sh (issue 20: imap-tls
#                  in front of Dovecot against Dovecot's own TLS; its own
#                  DOVECOT_* variables; needs dovecot-imapd, socat, nftables)
#   BENCH_SWEEP    0 to skip tests/bench/sweep.sh (issue 14's figures and
#                  pictures; its own SWEEP_* variables)
#
# Every system runs under the same `tcpserver -1 -R -H -l 0 -c 200 -b 100
# 127.0.0.1 0` (without -l, tcpserver asks DNS for the local name on each
# connection): the peers' written out, imap-tls's from imap-tls-server's
# -1 -c 200 -b 100 options.
#
# Two backends (issue 20). Most rows run fakeimapd as a stdio program per
# connection (tcpserver -> system -> fakeimapd; imap-tls's chain is then
# makesock -> setuidgid-chroot -> stunnel-imap). The rows "server at an
# address" connect one address instead, fakeimapd behind a tcpserver of
# its own started once (the backend): imap-tls with it as
# imap-tls-server's server operand, the shipped default's form (the
# proxy's setuidgid-chroot connects it, -c 3:ADDRESS; no makesock), and
# stunnel 5 with `connect =` (tests/bench/stunnel-connect.conf.in).
# tlswrapper can only exec a program: its stdio row is the reference.
# The backend is a process tree apart from each system's tcpserver: it
# is outside those rows' CPU and PSS, as fakeimapd is outside every
# row's PSS.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 111
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
export PATH

BIN=${IMAPTLS_BIN:-$root/bin}
# imap-tls-server and every program of its chain find the next one here.
PATH=$BIN:$PATH
export PATH
# The defaults keep a whole run (these tables, dovecot-tls.sh's, sweep.sh's)
# near 15 minutes on a quiet 2-core machine (about 16 with issue 20's four
# rows at an address); the run says how long it took.
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-2.5}
SIZE=${BENCH_SIZE:-64M}
OUT=${BENCH_OUT:-$root/BENCHMARKS.md}
RANGE=${BENCH_RANGE:-2000000000:4194304}
PROFILE=${BENCH_PROFILE:-1}
QUICK=${BENCH_QUICK:-0}
HOLD=50   # sessions held at once for the per-session PSS at load
EXECN=100 # runs per start-up measurement
CPUN=200  # sessions for the CPU time per session
if [ "$QUICK" = 1 ]; then
	ROUNDS=1 SECS=0.5 SIZE=${BENCH_SIZE:-1M} PROFILE=0 HOLD=2 EXECN=5 CPUN=4
fi

say() { echo "bench: $*" >&2; }
die() { echo "bench: fatal: $*" >&2; exit 111; }
# make_cert, start_signer: what the bench scripts set up alike.
. tests/bench/lib.sh

for p in tcpserver openssl go awk; do
	command -v $p >/dev/null 2>&1 || die "unable to find $p: install ucspi-tcp, openssl, Go 1.26"
done

# Estimated from short runs of each part with these defaults: the
# tables about 5 minutes for the nine stdio rows, and (not yet timed on a
# quiet machine, from the per-row cost of those) about 2.5 more for the
# four rows with the server at an address; dovecot-tls.sh about 3,
# sweep.sh about 5.5.
[ "$QUICK" = 1 ] || say "a whole run with the defaults takes about 15 to 17 minutes on a quiet 2-core machine; uptime now: $(uptime | sed 's/^ *//')"

# How quiet the machine was: uptime before the first measurement and
# after the last, in the report; and how long the run took.
load_before=$(uptime | sed 's/^ *//')
t_start=$(date +%s)

work=$(mktemp -d /tmp/imaptls-bench.XXXXXX) || die "unable to make a temporary directory"
servers=
cleanup() {
	for p in $servers; do kill "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 111' INT TERM HUP

# The bench's own tools, static like the suite.
for t in fakeimapd loadgen; do
	CGO_ENABLED=0 go build -trimpath -o "$work/$t" "./tests/$t" || die "unable to build tests/$t"
done
FAKE=$work/fakeimapd
LOADGEN=$work/loadgen

# One throwaway ECDSA P-256 key and self-signed certificate, in one PEM
# file (key first), for every TLS system alike.
make_cert "$work/ssl"
PEM=$work/ssl/localhost.pem
mkdir -p "$work/jail"
chmod 755 "$work" "$work/jail"
JAIL=$work/jail

if ! id imaptls >/dev/null 2>&1; then
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin imaptls ||
		die "unable to create account imaptls"
fi

for mode in starttls implicit; do
	proto=
	[ $mode = starttls ] && proto='protocol = imap'
	sed -e "s|@PEM@|$PEM|" -e "s|@FAKEIMAPD@|$FAKE|" -e "s|@SIZE@|$SIZE|" -e "s|@PROTOCOL@|$proto|" \
		tests/bench/stunnel.conf.in >"$work/stunnel-$mode.conf"
done
# POP3: stunnel 5's protocol = pop3 (STLS) in front of fakeimapd -pop3.
sed -e "s|@PEM@|$PEM|" -e "s|@FAKEIMAPD@|$FAKE|" -e "s|@SIZE@|$SIZE|" -e "s|@PROTOCOL@|protocol = pop3|" \
	-e 's|^execArgs = .*|& -pop3|' tests/bench/stunnel.conf.in >"$work/stunnel-pop3.conf"

# The rows with the server at one address: the backend, and stunnel 5's
# connect = configurations, once the systems to measure are known (below).
BACKEND=
start_backend() {
	BACKEND_CMD="$TCPSERVER $FAKE -s $SIZE"
	# shellcheck disable=SC2086
	start_server backend $BACKEND_CMD
	BACKEND=127.0.0.1:$port
	backend_pid=$spid
	for mode in starttls implicit; do
		proto=
		[ $mode = starttls ] && proto='protocol = imap'
		sed -e "s|@PEM@|$PEM|" -e "s|@CONNECT@|$BACKEND|" -e "s|@PROTOCOL@|$proto|" \
			tests/bench/stunnel-connect.conf.in >"$work/stunnel-connect-$mode.conf"
	done
}

# lgmode MODE: loadgen's options for a system's mode (pop3-starttls is
# loadgen -m starttls -pop3).
lgmode() {
	case $1 in
	pop3-*) echo "-m ${1#pop3-} -pop3" ;;
	*) echo "-m $1" ;;
	esac
}

have_perf=no
perf stat -x, -e task-clock -o /dev/null true >/dev/null 2>&1 && have_perf=yes
[ $have_perf = yes ] || say "warning: perf does not work here (apt-get install linux-perf): no CPU figures"
have_chain=yes
for p in imap-tls-server makesock setuidgid-chroot stunnel-imap stunnel-imap-key stunnel-imap-signer; do
	[ -x "$BIN/$p" ] || have_chain=no
done
STUNNEL=$(command -v stunnel4 || command -v stunnel || true)
TLSWRAPPER=$(command -v tlswrapper || true)

# The systems: id, mode, and the command that runs the server (one line
# each).
#
# TCPSERVER: what the peers run under.
TCPSERVER="tcpserver -1 -R -H -l 0 -c 200 -b 100 127.0.0.1 0"
# front DIR MODE [ option ... ]: the run file's way, imap-tls-server from DIR (the rest
# of the chain from $PATH) with the same tcpserver options as the peers:
# it execs tcpserver with the chain (imap-tls-server/README.md); the
# proxy and the key process each run under setuidgid-chroot -r (uid =
# gid = a number of the range of their own), and only the key process
# gets the key file. The backend's command line follows.
# With env/SIGNER set (the default) the run file passes -s: the signer,
# started below as its own service's run file starts it, holds the key.
front() {
	d=$1 m=$2
	shift 2
	echo "$d/imap-tls-server ${*:+$* }-1 -c 200 -b 100 -n $m -r $RANGE -j $JAIL -s $SOCK 127.0.0.1 0"
}
# front_k: the same with env/SIGNER empty: a key process per connection.
front_k() {
	d=$1 m=$2
	shift 2
	echo "$d/imap-tls-server ${*:+$* }-1 -c 200 -b 100 -n $m -r $RANGE -j $JAIL -k $PEM 127.0.0.1 0"
}
# The signer, as imap-tls-conf's signer/run starts it, for every run of
# the chain (bin/'s, or the profile's build: signer DIR).
SOCK=$work/signer/socket
SIGNER=
signer() {
	[ -n "$SIGNER" ] && kill "$SIGNER" 2>/dev/null && wait "$SIGNER" 2>/dev/null
	: >"$work/signer.err"
	start_signer "$JAIL" "$RANGE" "$PEM" "$SOCK" "$work/signer.err" "$1"
	servers="$servers $SIGNER"
}
systems() {
	echo "plain plain $TCPSERVER $FAKE -s $SIZE"
	[ -n "$STUNNEL" ] && {
		echo "stunnel-starttls starttls $TCPSERVER $STUNNEL $work/stunnel-starttls.conf"
		echo "stunnel-implicit implicit $TCPSERVER $STUNNEL $work/stunnel-implicit.conf"
	}
	[ -n "$TLSWRAPPER" ] && echo "tlswrapper implicit $TCPSERVER $TLSWRAPPER -f $PEM $FAKE -s $SIZE"
	[ $have_chain = yes ] && {
		echo "chain-starttls starttls $(front "$BIN" imap) $FAKE -s $SIZE"
		echo "chain-implicit implicit $(front "$BIN" imaps) $FAKE -s $SIZE"
		echo "chain-pop3 pop3-starttls $(front "$BIN" pop3) $FAKE -s $SIZE -pop3"
		echo "keyproc-starttls starttls $(front_k "$BIN" imap) $FAKE -s $SIZE"
	}
	[ -n "$STUNNEL" ] && echo "stunnel-pop3 pop3-starttls $TCPSERVER $STUNNEL $work/stunnel-pop3.conf"
	# The server at one address, @BACKEND@ (start_backend's); the
	# shipped default's chain: setuidgid-chroot -c 3:@BACKEND@ stunnel-imap.
	[ $have_chain = yes ] && {
		echo "chain-addr-starttls starttls $(front "$BIN" imap) @BACKEND@"
		echo "chain-addr-implicit implicit $(front "$BIN" imaps) @BACKEND@"
	}
	[ -n "$STUNNEL" ] && {
		echo "stunnel-connect-starttls starttls $TCPSERVER $STUNNEL $work/stunnel-connect-starttls.conf"
		echo "stunnel-connect-implicit implicit $TCPSERVER $STUNNEL $work/stunnel-connect-implicit.conf"
	}
	true
}
[ -n "$STUNNEL" ] || say "warning: stunnel4 is not installed: apt-get install stunnel4"
[ -n "$TLSWRAPPER" ] || say "warning: tlswrapper is not installed: apt-get install tlswrapper"
[ $have_chain = yes ] || say "warning: $BIN lacks imap-tls-server, makesock, setuidgid-chroot, stunnel-imap or stunnel-imap-key: run sh redo.do"

# start_server id cmd...: cmd, a tcpserver on a free port (-1 prints
# it), or imap-tls-server, which becomes one; sets port and spid.
# With $counting set (and perf installed), it runs under
# `perf stat -e task-clock`, which follows every process it forks, and
# $work/$id.cpu gets the CPU time of the whole server side when it stops.
start_server() {
	sid=$1
	shift
	: >"$work/$sid.port"
	# GOMAXPROCS=1 as the run file's env/GOMAXPROCS sets it, for every
	# system's server side alike: the C peers ignore it, and fakeimapd,
	# the backend of every system, gets it everywhere. Not for loadgen.
	if [ -n "${counting:-}" ]; then
		perf stat -x, -e task-clock -o "$work/$sid.cpu" \
			env GOMAXPROCS=1 "$@" >"$work/$sid.port" 2>>"$work/$sid.err" &
	else
		env GOMAXPROCS=1 "$@" >"$work/$sid.port" 2>>"$work/$sid.err" &
	fi
	spid=$!
	servers="$servers $spid"
	i=0
	while [ ! -s "$work/$sid.port" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && die "tcpserver for $sid did not start: $(tail -1 "$work/$sid.err")"
		sleep 0.1
	done
	port=$(cat "$work/$sid.port")
	if [ -n "${counting:-}" ]; then
		wrapper=$spid
		spid=$(pgrep -P "$wrapper" tcpserver)
		[ -n "$spid" ] || die "unable to find tcpserver under perf stat"
		servers="$servers $spid"
	fi
}

stop_server() {
	kill "$spid" 2>/dev/null
	if [ -n "${counting:-}" ]; then
		wait "$wrapper" 2>/dev/null
	else
		wait "$spid" 2>/dev/null
	fi
}

# result key line: the value of key= in line.
val() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# median: the median of the numbers on stdin, one a line.
median() {
	sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field file key: the values of key= in every line of file, one a line.
field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }

# round id mode: one round of the timed figures of one system, against
# its running tcpserver: sessions at c=1 and at c=8, one bulk FETCH; each
# result line is appended to $work/$id.cN or $work/$id.bulk.
round() {
	id=$1 mode=$2
	lg="$LOADGEN -a 127.0.0.1:$(cat "$work/$id.port") $(lgmode "$mode")"
	for c in 1 8; do
		$lg -c $c -d "${SECS}s" </dev/null 2>>"$work/$id.loadgen.err" | grep '^result' >>"$work/$id.c$c"
	done
	$lg -fetch -n 1 </dev/null 2>>"$work/$id.loadgen.err" | grep '^result' >>"$work/$id.bulk"
}

# cpu_round id mode cmd...: the CPU time the whole server side (tcpserver,
# the system, the backend) spends per session at c=8, from a fresh
# tcpserver under perf stat; appended to $work/$id.cpus. CPU time, unlike
# wall time, moves little with what else the machine runs.
cpu_round() {
	id=$1 mode=$2
	shift 2
	counting=yes
	start_server "$id-cpu" "$@"
	# The signer is no child of tcpserver: its CPU time over the same
	# span, counted apart (perf stat -p) and added.
	sp=
	case " $* " in *" -s $SOCK "*)
		perf stat -x, -e task-clock -p "$SIGNER" -o "$work/signer.cpu" &
		sp=$!
		sleep 0.2
		;;
	esac
	# shellcheck disable=SC2046
	r=$($LOADGEN -a "127.0.0.1:$port" $(lgmode "$mode") -c 8 -n "$CPUN" </dev/null 2>>"$work/$id.loadgen.err" | grep '^result')
	stop_server
	sc=0
	if [ -n "$sp" ]; then
		kill -INT "$sp"
		wait "$sp" 2>/dev/null
		sc=$(awk -F, '/task-clock/ { print $1 }' "$work/signer.cpu")
	fi
	counting=
	n=$(val sessions "$r")
	[ "${n:-0}" -gt 0 ] || return 0
	awk -F, -v n="$n" -v sc="${sc:-0}" '/task-clock/ { printf "%.3f\n", ($1 + sc) / n }' "$work/$id-cpu.cpu" >>"$work/$id.cpus"
}

# memory id mode: processes and PSS of 1, then $HOLD, sessions held
# just before the TLS handshake (every process a connection starts is
# there: imap-tls's key process exits once it has signed), then of 1 and
# $HOLD held after LOGIN.
memory() {
	id=$1 mode=$2
	spid=$(cat "$work/$id.pid")
	line=
	for at_h in handshake:1 handshake:$HOLD login:1 login:$HOLD; do
		at=${at_h%:*} h=${at_h#*:}
		: >"$work/$id.hold"
		# shellcheck disable=SC2046
		$LOADGEN -a "127.0.0.1:$(cat "$work/$id.port")" $(lgmode "$mode") -hold "$h" -holdat "$at" -c 8 -holdfor 30s \
			</dev/null >"$work/$id.hold" 2>>"$work/$id.loadgen.err" &
		hpid=$!
		i=0
		held=yes
		while ! grep -q '^held=' "$work/$id.hold"; do
			i=$((i + 1))
			if [ $i -gt 300 ] || ! kill -0 $hpid 2>/dev/null; then
				say "$id: unable to hold $h sessions: $(tail -1 "$work/$id.loadgen.err")"
				held=no
				break
			fi
			sleep 0.1
		done
		m=
		if [ $held = yes ]; then
			# Let every process of the chain finish its start-up
			# (in implicit mode a session is held as soon as it is
			# connected): count until two counts agree.
			sleep 0.3
			m=$(sh tests/bench/pss.sh "$spid" fakeimapd)
			j=0
			while [ $j -lt 10 ]; do
				j=$((j + 1))
				sleep 0.3
				m2=$(sh tests/bench/pss.sh "$spid" fakeimapd)
				[ "$(val procs "$m2")" = "$(val procs "$m")" ] && break
				m=$m2
			done
		fi
		kill $hpid 2>/dev/null
		wait $hpid 2>/dev/null
		sleep 0.3 # let the sessions' processes go before the next count
		if [ -z "$m" ]; then
			continue
		elif [ "$at_h" = handshake:1 ]; then
			line="$line procs_hs=$(val procs "$m") psshs1=$(val pss_kb "$m") comms_hs=$(val comms "$m")"
		elif [ $at = handshake ]; then
			line="$line psshsn=$(($(val pss_kb "$m") / h))"
		elif [ $h = 1 ]; then
			line="$line procs=$(val procs "$m") pss1=$(val pss_kb "$m") comms=$(val comms "$m") zombies=$(val zombies "$m")"
		else
			line="$line pssn=$(($(val pss_kb "$m") / h))"
		fi
	done
	echo "$line"
}

: >"$work/results"
failed=
systems | while read -r id rest; do
	case " ${BENCH_SYSTEMS:-$id} " in *" $id "*) echo "$id $rest" ;; esac
done >"$work/systems"
# Issue 20's systems (tests/bench/dovecot-tls.sh) share the ids'
# namespace: BENCH_SYSTEMS may name only those.
dovecot_ids='dovecot-plain dovecot-starttls dovecot-implicit tls-dovecot-starttls tls-dovecot-implicit socat-dovecot-starttls'
run_dovecot=no
if [ "${BENCH_DOVECOT:-1}" = 1 ]; then
	for id in $dovecot_ids; do
		case " ${BENCH_SYSTEMS:-$id} " in *" $id "*) run_dovecot=yes ;; esac
	done
fi
[ -s "$work/systems" ] || [ $run_dovecot = yes ] || die "no system to measure: BENCH_SYSTEMS=${BENCH_SYSTEMS:-}"
[ $have_chain = yes ] && signer "$BIN"
if grep -q -e ' @BACKEND@$' -e '^stunnel-connect-' "$work/systems"; then
	start_backend
	sed "s| @BACKEND@\$| $BACKEND|" "$work/systems" >"$work/systems.tmp" && mv -f "$work/systems.tmp" "$work/systems" ||
		die "unable to write $work/systems"
fi
say "measuring $(wc -l <"$work/systems") systems, $ROUNDS rounds of ${SECS}s each, interleaved"

# Every system's tcpserver runs for the whole measurement, and the rounds
# go round the systems in turn: whatever else loads the machine meanwhile
# falls on every system alike, rather than on whichever ran at the time.
while read -r id mode cmd; do
	# shellcheck disable=SC2086
	start_server "$id" $cmd
	echo "$port" >"$work/$id.port"
	echo "$spid" >"$work/$id.pid"
	: >"$work/$id.c1"
	: >"$work/$id.c8"
	: >"$work/$id.bulk"
	: >"$work/$id.cpus"
done <"$work/systems"
k=0
while [ $k -lt "$ROUNDS" ]; do
	k=$((k + 1))
	say "round $k of $ROUNDS"
	while read -r id mode cmd; do
		round "$id" "$mode"
		# shellcheck disable=SC2086
		[ $have_perf = yes ] && cpu_round "$id" "$mode" $cmd
	done <"$work/systems"
done
while read -r id mode cmd; do
	if [ ! -s "$work/$id.c1" ] || [ ! -s "$work/$id.c8" ]; then
		say "$id: no result: $(tail -1 "$work/$id.loadgen.err")"
		echo "$id mode=$mode failed=yes" >>"$work/results"
		failed="$failed $id"
		continue
	fi
	line="$id mode=$mode"
	for c in 1 8; do
		f=$work/$id.c$c
		errs=$(field "$f" errors | awk '{ s += $1 } END { print s + 0 }')
		line="$line rate$c=$(field "$f" rate | median) p50_$c=$(field "$f" p50_ms | median) p99_$c=$(field "$f" p99_ms | median)"
		line="$line greet$c=$(field "$f" greet_p50_ms | median) tls$c=$(field "$f" tls_p50_ms | median) err$c=$errs"
	done
	line="$line mbps=$(field "$work/$id.bulk" mbps | median)"
	[ -s "$work/$id.cpus" ] && line="$line cpu=$(median <"$work/$id.cpus")"
	line="$line$(memory "$id" "$mode")"
	echo "$line" >>"$work/results"
	say "$line"
done <"$work/systems"
while read -r id mode cmd; do
	spid=$(cat "$work/$id.pid")
	stop_server
done <"$work/systems"
if [ -n "$BACKEND" ]; then
	spid=$backend_pid
	stop_server
fi

t_main=$(date +%s)

# Issue 20: imap-tls in front of Dovecot against Dovecot doing TLS itself,
# on one private Dovecot (tests/bench/dovecot-tls.sh, its own section).
: >"$work/dovecot.md"
if [ $run_dovecot = yes ]; then
	if command -v dovecot >/dev/null 2>&1 && command -v socat >/dev/null 2>&1 && command -v nft >/dev/null 2>&1; then
		IMAPTLS_BIN=$BIN BENCH_RANGE=$RANGE sh tests/bench/dovecot-tls.sh >"$work/dovecot.md" || {
			say "warning: tests/bench/dovecot-tls.sh failed"
			failed="$failed dovecot-tls"
		}
	else
		say "warning: dovecot-imapd, socat or nftables is not installed (apt-get install dovecot-imapd socat nftables): no Dovecot rows"
	fi
fi
t_dovecot=$(date +%s)

# Start-up cost of each link on its own: N runs in a row, each with its
# input at end of file, so that each program starts, does its set-up,
# sees EOF and exits: wall time per run, and CPU time per run (perf stat
# follows every process the loop starts), in microseconds.
exec_us() {
	n=$1
	shift
	loop="i=0; while [ \$i -lt $n ]; do $* </dev/null >/dev/null 2>&1; i=\$((i + 1)); done"
	t0=$(date +%s%N)
	if [ $have_perf = yes ]; then
		perf stat -x, -e task-clock -o "$work/exec.cpu" sh -c "$loop"
		cpu=$(awk -F, -v n="$n" '/task-clock/ { printf "%d", $1 * 1000 / n }' "$work/exec.cpu")
	else
		sh -c "$loop"
		cpu=—
	fi
	t1=$(date +%s%N)
	echo "$(((t1 - t0) / n / 1000)) | $cpu"
}
: >"$work/startup"
startup() {
	what=$1
	shift
	echo "| $(exec_us "$EXECN" "$@") | $what | \`$*\` |" >>"$work/startup"
}
startup "fork+exec of a small C program (the baseline)" /bin/true
startup "a static Go program: fakeimapd greets and sees EOF" "$FAKE"
if [ $have_chain = yes ]; then
	startup "makesock and two fakeimapd" "$BIN/makesock $FAKE -makesock_connect_to $FAKE"
	startup "setuidgid-chroot -u (an account), then fakeimapd" "$BIN/setuidgid-chroot -u imaptls -/ $JAIL $FAKE"
	startup "setuidgid-chroot -r (a uid of its own), then fakeimapd" "$BIN/setuidgid-chroot -/ $JAIL -r $RANGE $FAKE"
	startup "makesock, stunnel-imap (loads the key, greets, sees EOF) and fakeimapd" \
		"$BIN/makesock $BIN/stunnel-imap -n imap -F 3 -p $PEM -makesock_connect_to $FAKE"
	startup "the key process alone: setuidgid-chroot -r -o, stunnel-imap-key (loads the key, sees EOF)" \
		"$BIN/setuidgid-chroot -/ $JAIL -r $RANGE -o 3:$PEM $BIN/stunnel-imap-key -P 3"
	# what tcpserver runs for each connection, as imap-tls-server -x
	# prints it (from its first makesock on)
	chain=$($(front "$BIN" imap -x) $FAKE | sed -n '/^makesock$/,$p' | tr '\n' ' ' | sed 's/ $//')
	[ -n "$chain" ] || die "imap-tls-server -x printed no chain"
	startup "**the run file's chain**, STARTTLS (from imap-tls-server -x; the signer answers)" "$chain"
	chain=$($(front_k "$BIN" imap -x) $FAKE | sed -n '/^makesock$/,$p' | tr '\n' ' ' | sed 's/ $//')
	startup "the chain with a key process per connection (-k, env/SIGNER empty), STARTTLS" "$chain"
fi
[ -n "$STUNNEL" ] && startup "stunnel 5, implicit, inetd mode, and fakeimapd" "$STUNNEL $work/stunnel-implicit.conf"
[ -n "$TLSWRAPPER" ] && startup "tlswrapper and fakeimapd" "$TLSWRAPPER -f $PEM $FAKE"

t_startup=$(date +%s)

# Where the chain's CPU time goes: a system-wide perf profile while
# loadgen drives the run file's STARTTLS chain at concurrency 8, by
# command and by shared object, and the hottest symbols (from unstripped
# builds, first in $PATH for imap-tls-server and its chain). The key
# process is stunnel-imap-key, apart from the proxy in the samples.
: >"$work/profile"
if [ "$PROFILE" = 1 ] && [ $have_chain = yes ] && command -v perf >/dev/null 2>&1; then
	mkdir -p "$work/prof"
	ok=yes
	for p in imap-tls-server makesock setuidgid-chroot stunnel-imap stunnel-imap-key stunnel-imap-signer; do
		CGO_ENABLED=0 go build -trimpath -o "$work/prof/$p" "./$p" || ok=no
	done
	if [ $ok = yes ]; then
		P=$work/prof
		signer "$P"
		# shellcheck disable=SC2046
		start_server prof env PATH="$P:$PATH" $(front "$P" imap) "$FAKE" -s "$SIZE"
		perf record -a -g -o "$work/perf.data" -- "$LOADGEN" -a "127.0.0.1:$port" -m starttls -c 8 -d 5s \
			>"$work/prof.loadgen" 2>"$work/perf.err" || say "warning: perf record failed: $(tail -1 "$work/perf.err")"
		perf record -a -g -o "$work/perf-bulk.data" -- "$LOADGEN" -a "127.0.0.1:$port" -m starttls -n 2 -fetch \
			>"$work/prof-bulk.loadgen" 2>>"$work/perf.err" || say "warning: perf record failed: $(tail -1 "$work/perf.err")"
		stop_server
		if [ -s "$work/perf.data" ]; then
			rep() { perf report -i "$work/perf.data" --no-children -g none --stdio "$@" 2>/dev/null | grep -v '^#' | grep '%'; }
			comms=tcpserver,makesock,setuidgid-chroo,stunnel-imap,stunnel-imap-si,fakeimapd,loadgen
			{
				echo "CPU samples of the processes of the test (other processes on the machine left out),"
				echo "by command (the kernel keeps 15 characters: setuidgid-chroo is setuidgid-chroot,"
				echo "stunnel-imap-si the signer, stunnel-imap-signer):"
				echo
				echo '```'
				rep --comms $comms --percentage relative --sort comm | head -8
				echo '```'
				echo
				echo "Kernel ([k]) and user ([.]) time of each link, by command:"
				echo
				echo '```'
				perf report -i "$work/perf.data" --no-children -g none --stdio --comms $comms --percentage relative \
					--sort comm,sym 2>/dev/null | awk '/%/ && $1 ~ /%$/ { split($1, p, "%"); k = $3 == "[k]" ? "kernel" : "user"; t[$2 " " k] += p[1] } END { for (x in t) printf "%7.2f%%  %s\n", t[x], x }' | sort -rn | head -12
				echo '```'
				for c in stunnel-imap stunnel-imap-si setuidgid-chroo makesock; do
					echo
					echo "Hottest symbols of $c (share of its own samples):"
					echo
					echo '```'
					rep --comms $c --percentage relative --sort sym | head -12
					echo '```'
				done
				echo
				echo "During two bulk FETCHes of the $SIZE message ($(grep '^result' "$work/prof-bulk.loadgen" | sed 's/.*mbps=/MB\/s: /')), by command and symbol:"
				echo
				echo '```'
				perf report -i "$work/perf-bulk.data" --no-children -g none --stdio --comms $comms --percentage relative \
					--sort comm,sym 2>/dev/null | grep -v '^#' | grep '%' | head -12
				echo '```'
			} >"$work/profile"
		fi
	fi
fi

t_profile=$(date +%s)

# The report.
machine() {
	echo "- $(nproc) cores: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
	echo "- kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "- $(go version | sed 's/^go version //')"
	for p in ucspi-tcp stunnel4 tlswrapper openssl; do
		v=$(dpkg-query -W -f '${Version}' $p 2>/dev/null) && echo "- $p $v"
	done
	echo "- uptime before the run: $load_before"
	echo "- uptime after the run: @LOAD_AFTER@"
	echo "- the run took @ELAPSED@"
}
{
	echo "# Benchmarks"
	echo
	echo "imap-tls against the TLS proxies a mail administrator would pick instead, measured"
	echo "side by side in one run on one machine by \`sh redo.do bench\` (tests/bench/bench.sh),"
	echo "on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "How quiet the machine was: load (uptime) before the run: $load_before; after it: @LOAD_AFTER@."
	echo
	awk -v rounds="$ROUNDS" -v secs="$SECS" -v size="$SIZE" -v hold="$HOLD" -f tests/bench/lib.awk -f tests/bench/report.awk "$work/results"
	echo
	if [ -s "$work/dovecot.md" ]; then
		cat "$work/dovecot.md"
		echo
		# Issue 20's floor, by hand: what the figures above leave room
		# for under the design's rules (quotes a named run).
		if [ -f tests/bench/analysis-dovecot.md ]; then
			cat tests/bench/analysis-dovecot.md
			echo
		fi
	fi
	echo "## Start-up cost of each link, on its own"
	echo
	echo "Each command run $EXECN times in a row from sh, its input at end of file, so that it"
	echo "starts, does its set-up, sees EOF and exits: wall time per run, and the CPU time of every"
	echo "process involved (perf stat), the shell's fork included. Each link's own cost is its row less"
	echo "the rows of what it runs."
	echo
	echo "| wall µs per run | CPU µs per run | what | command |"
	echo "|---:|---:|---|---|"
	sed -e "s|$work|\$W|g" -e "s|$BIN/||g" "$work/startup"
	echo
	if [ -s "$work/profile" ]; then
		echo "## Profile of the run file's STARTTLS chain at concurrency 8"
		echo
		echo "\`perf record -a -g\` during 5 s of loadgen against the run file's chain, the signer answering (unstripped builds of the same sources):"
		echo "$(grep '^result' "$work/prof.loadgen" | cut -d' ' -f2-)."
		echo
		cat "$work/profile"
		echo
	fi
	echo "## The machine"
	echo
	machine
	echo
	echo "The machine is shared: other jobs may have run during the measurement; figures are"
	echo "medians of $ROUNDS rounds to damp that, not to remove it."
	echo
	echo "## How to reproduce"
	echo
	echo '```'
	echo "sh redo.do bench     # installs stunnel4, tlswrapper, linux-perf, dovecot-imapd, socat and nftables if missing, builds bin/, runs tests/bench/bench.sh"
	echo '```'
	echo
	echo "Tunables: BENCH_ROUNDS (default 3), BENCH_SECS (2.5), BENCH_SIZE (64M), BENCH_OUT, BENCH_PROFILE=0, BENCH_DOVECOT=0"
	echo "(no Dovecot section; its own DOVECOT_ROUNDS, DOVECOT_SECS, DOVECOT_CPUN, DOVECOT_HOLD: tests/bench/dovecot-tls.sh), BENCH_SWEEP=0 (no sweep.sh; under bench.sh its SWEEP_SECS defaults to 1.25),"
	echo "BENCH_SYSTEMS (ids, as below), BENCH_RANGE (setuidgid-chroot -r's range, default the run file's"
	echo "2000000000:4194304). The CPU figures and the profile need perf (Debian: linux-perf);"
	echo "without it those columns stay empty."
	echo "The systems, exactly as run (\$W is the bench's temporary directory):"
	echo
	echo '```'
	while read -r id mode cmd; do
		echo "$id ($mode): $cmd"
	done <"$work/systems" | sed -e "s|$work|\$W|g" -e "s|$BIN/||g"
	if [ -n "$BACKEND" ]; then
		echo "the backend of the rows with the server at an address, $BACKEND: $BACKEND_CMD" |
			sed -e "s|$work|\$W|g"
	fi
	echo '```'
	if [ $have_chain = yes ]; then
		echo
		echo "imap-tls-server checks its options and execs this (\`imap-tls-server -x\` prints it, one"
		echo "argument per line), for STARTTLS:"
		echo
		echo '```'
		# shellcheck disable=SC2046
		$(front "$BIN" imap -x) "$FAKE" -s "$SIZE" | tr '\n' ' ' | sed -e 's/ $//' -e "s|$work|\$W|g" -e "s|$BIN/||g"
		echo
		echo '```'
		if [ -n "$BACKEND" ]; then
			echo
			echo "and with the server at an address, the shipped default's form (the proxy's setuidgid-chroot"
			echo "connects it, -c 3:ADDRESS; no makesock):"
			echo
			echo '```'
			# shellcheck disable=SC2046
			$(front "$BIN" imap -x) "$BACKEND" | tr '\n' ' ' | sed -e 's/ $//' -e "s|$work|\$W|g" -e "s|$BIN/||g"
			echo
			echo '```'
		fi
	fi
	echo
	echo "stunnel's configuration is tests/bench/stunnel.conf.in with \`protocol = imap\` for STARTTLS"
	echo "and without it for implicit TLS; for the rows with the server at an address,"
	echo "tests/bench/stunnel-connect.conf.in, the same with \`connect =\` the backend's address instead of"
	echo "\`exec\`. tlswrapper can only exec a program: it has no row at an address, and its stdio row is"
	echo "the reference there. A session is loadgen's: connect, greeting, STARTTLS and"
	echo "handshake (or the implicit handshake), CAPABILITY, LOGIN, LOGOUT, each from its own"
	echo "loopback source address; the bulk figure is one FETCH 1 BODY[] of a $SIZE message, timed"
	echo "from the command to its tagged OK. Memory is tests/bench/pss.sh: the sum of the Pss lines"
	echo "of /proc/PID/smaps_rollup of tcpserver's descendants, the backend and zombies left out,"
	echo "with sessions held by loadgen either after LOGIN (\"held\") or just before the TLS handshake"
	echo "(\"in handshake\": after the greeting for STARTTLS, once connected for implicit TLS), when"
	echo "imap-tls's key process, which exits once it has signed, is still there. The backend of the"
	echo "rows with the server at an address (its tcpserver and its fakeimapd) is no descendant of the"
	echo "system's tcpserver: it is outside their PSS, as fakeimapd is outside every row's, and outside"
	echo "their CPU (perf stat of the system's tcpserver), unlike the stdio rows'."
	if [ -f tests/bench/analysis.md ]; then
		echo
		cat tests/bench/analysis.md
	fi
	# Issue 14's figures: sessions/s against concurrency, CPU per
	# session, the signer, hybrid and X25519 only, held sessions; with
	# the SVG pictures next to $OUT.
	if [ "$QUICK" != 1 ] && [ "${BENCH_SWEEP:-1}" = 1 ]; then
		echo
		# (1.25 s per figure instead of sweep.sh's own 2: the 15 minutes)
		IMAPTLS_BIN=$BIN BENCH_RANGE=$RANGE SWEEP_SECS=${SWEEP_SECS:-1.25} sh tests/bench/sweep.sh "$(dirname "$OUT")" || say "warning: sweep.sh failed"
	fi
} >"$work/report.md" || die "unable to write the report"
t_end=$(date +%s)
load_after=$(uptime | sed 's/^ *//')
# mins SECONDS: "M min S s"
mins() { echo "$(($1 / 60)) min $(($1 % 60)) s"; }
elapsed="$(mins $((t_end - t_start))) (the systems' tables $(mins $((t_main - t_start))), Dovecot $(mins $((t_dovecot - t_main))), start-up $(mins $((t_startup - t_dovecot))), profile $(mins $((t_profile - t_startup))), sweep $(mins $((t_end - t_profile))))"
say "the run took $elapsed; uptime before: $load_before; after: $load_after"
sed -e "s|@LOAD_AFTER@|$load_after|g" -e "s|@ELAPSED@|$elapsed|g" "$work/report.md" >"$OUT.tmp" && mv -f "$OUT.tmp" "$OUT" || die "unable to write $OUT"
say "wrote $OUT"
[ -z "$failed" ] || die "unable to measure:$failed"
