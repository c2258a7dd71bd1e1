#!/bin/sh
# sweep.sh: the figures of issue 14, on one machine in one run, every
# system side by side: sessions/s against concurrency (1, 2, 4, 8, 16,
# 32), the server's CPU per session at c=8 (the signer's share
# included), the shipped service with hybrid post-quantum
# (X25519MLKEM768, Go's client default) and X25519-only clients, and
# SWEEP_HELD sessions held at once through the service (memory per
# session, then a NOOP on every one). Writes a Markdown section on
# stdout and two SVG pictures (drawn by tests/bench/svg.awk) into DIR.
# bench.sh runs it after its own tables; it also runs alone, as root,
# after `sh redo.do`:
#
#   sh tests/bench/sweep.sh DIR >section.md
#
# Environment:
#   IMAPTLS_BIN     the suite's binaries (default bin/ at the root)
#   SWEEP_ROUNDS    rounds, the median is kept (default 3)
#   SWEEP_SECS      seconds per sessions/s figure (default 2)
#   SWEEP_LEVELS    concurrencies (default "1 2 4 8 16 32")
#   SWEEP_HELD      sessions held at once (default 1000; 0: skip)
#   SWEEP_CPUN      sessions per CPU figure (default 200)
#   SWEEP_SYSTEMS   ids to measure (default all installed)
#   BENCH_RANGE     setuidgid-chroot -r's range (default 2000000000:4194304)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 111
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
BIN=${IMAPTLS_BIN:-$root/bin}
PATH=$BIN:$PATH
export PATH
DIR=${1:-$root}
ROUNDS=${SWEEP_ROUNDS:-3}
SECS=${SWEEP_SECS:-2}
LEVELS=${SWEEP_LEVELS:-1 2 4 8 16 32}
HELD=${SWEEP_HELD:-1000}
CPUN=${SWEEP_CPUN:-200}
RANGE=${BENCH_RANGE:-2000000000:4194304}

say() { echo "sweep: $*" >&2; }
die() { echo "sweep: fatal: $*" >&2; exit 111; }
# make_cert, start_signer: what the bench scripts set up alike.
. tests/bench/lib.sh

for p in tcpserver openssl go awk imap-tls-server stunnel-imap-signer; do
	command -v $p >/dev/null 2>&1 || die "unable to find $p: install ucspi-tcp and openssl, run sh redo.do"
done
work=$(mktemp -d /tmp/imaptls-sweep.XXXXXX) || die "unable to make a temporary directory"
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	sleep 0.2
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 111' INT TERM HUP

for t in fakeimapd loadgen; do
	CGO_ENABLED=0 go build -trimpath -o "$work/$t" "./tests/$t" || die "unable to build tests/$t"
done
FAKE=$work/fakeimapd
LOADGEN=$work/loadgen
PEM=$work/ssl/localhost.pem
JAIL=$work/jail
SOCK=$work/signer/socket
mkdir -p "$JAIL"
chmod 755 "$work" "$JAIL"
make_cert "$work/ssl"
for mode in starttls implicit; do
	proto=
	[ $mode = starttls ] && proto='protocol = imap'
	sed -e "s|@PEM@|$PEM|" -e "s|@FAKEIMAPD@|$FAKE|" -e "s|@SIZE@|1M|" -e "s|@PROTOCOL@|$proto|" \
		tests/bench/stunnel.conf.in >"$work/stunnel-$mode.conf"
done
have_perf=no
perf stat -x, -e task-clock -o /dev/null true >/dev/null 2>&1 && have_perf=yes
STUNNEL=$(command -v stunnel4 || command -v stunnel || true)
TLSWRAPPER=$(command -v tlswrapper || true)

# The signer, as imap-tls-conf's signer/run starts it (GOMAXPROCS=1 as
# env/GOMAXPROCS): one for every imap-tls system of the run.
start_signer "$JAIL" "$RANGE" "$PEM" "$SOCK" "$work/signer.err"
pids="$pids $SIGNER"

TCPSERVER="tcpserver -1 -R -H -l 0 -c 200 -b 100 127.0.0.1 0"
# service MODE [ -c N ]: the service's chain, as the run file starts it
# (env/SIGNER set: imap-tls-server -s).
service() { m=$1; shift; echo "imap-tls-server -1 ${*:--c 200} -b 100 -n $m -r $RANGE -j $JAIL -s $SOCK 127.0.0.1 0"; }
keyproc() { echo "imap-tls-server -1 -c 200 -b 100 -n $1 -r $RANGE -j $JAIL -k $PEM 127.0.0.1 0"; }

# The systems: id, server (systems that differ only in the client share
# one), loadgen mode, the client's GODEBUG, signer (yes: add the signer's
# CPU), label; then the servers: id and command.
{
	echo "plain|plain|plain|-|no|plaintext: tcpserver → fakeimapd"
	[ -n "$TLSWRAPPER" ] && echo "tlswrapper|tlswrapper|implicit|-|no|tlswrapper, implicit TLS"
	[ -n "$STUNNEL" ] && echo "stunnel-implicit|stunnel-implicit|implicit|-|no|stunnel 5, implicit TLS"
	[ -n "$STUNNEL" ] && echo "stunnel-starttls|stunnel-starttls|starttls|-|no|stunnel 5, STARTTLS"
	echo "service-starttls|service-starttls|starttls|-|yes|imap-tls service, STARTTLS"
	echo "service-starttls-x25519|service-starttls|starttls|tlsmlkem=0|yes|imap-tls service, STARTTLS, X25519 only"
	echo "service-implicit|service-implicit|implicit|-|yes|imap-tls service, implicit TLS"
	echo "service-implicit-x25519|service-implicit|implicit|tlsmlkem=0|yes|imap-tls service, implicit, X25519 only"
	echo "keyproc-starttls|keyproc-starttls|starttls|-|no|imap-tls, key process per connection (-k), STARTTLS"
} | while IFS='|' read -r id rest; do
	case " ${SWEEP_SYSTEMS:-$id} " in *" $id "*) echo "$id|$rest" ;; esac
done >"$work/systems"
cmd_of() {
	case $1 in
	plain) echo "$TCPSERVER $FAKE" ;;
	tlswrapper) echo "$TCPSERVER $TLSWRAPPER -f $PEM $FAKE" ;;
	stunnel-implicit) echo "$TCPSERVER $STUNNEL $work/stunnel-implicit.conf" ;;
	stunnel-starttls) echo "$TCPSERVER $STUNNEL $work/stunnel-starttls.conf" ;;
	service-starttls) echo "$(service imap) $FAKE" ;;
	service-implicit) echo "$(service imaps) $FAKE" ;;
	keyproc-starttls) echo "$(keyproc imap) $FAKE" ;;
	esac
}

# start NAME SERVER [ perf ]: a tcpserver for SERVER on a free port (-1
# prints it), its files $work/NAME.*; with perf, under perf stat, which
# follows every process it forks. Sets port and spid (the process to
# kill).
start() {
	: >"$work/$1.port"
	if [ "${3:-}" = perf ]; then
		# shellcheck disable=SC2046
		perf stat -x, -e task-clock -o "$work/$1.cpu" env GOMAXPROCS=1 $(cmd_of "$2") >"$work/$1.port" 2>>"$work/$1.err" &
	else
		# shellcheck disable=SC2046
		env GOMAXPROCS=1 $(cmd_of "$2") >"$work/$1.port" 2>>"$work/$1.err" &
	fi
	spid=$!
	pids="$pids $spid"
	i=0
	while [ ! -s "$work/$1.port" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && die "$1 did not start: $(tail -1 "$work/$1.err")"
		sleep 0.1
	done
	port=$(cat "$work/$1.port")
}
lg() { # lg GODEBUG args...
	g=$1
	shift
	if [ "$g" = - ]; then "$LOADGEN" "$@"; else env GODEBUG="$g" "$LOADGEN" "$@"; fi
}
val() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

say "$(wc -l <"$work/systems") systems, concurrency $LEVELS, $ROUNDS rounds of ${SECS}s, interleaved; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cut -d'|' -f2 "$work/systems" | sort -u >"$work/servers"
while read -r s; do
	start "$s" "$s"
	echo "$port" >"$work/$s.listen"
done <"$work/servers"
: >"$work/rates"
: >"$work/cpus"
k=0
while [ $k -lt "$ROUNDS" ]; do
	k=$((k + 1))
	say "round $k of $ROUNDS"
	for c in $LEVELS; do
		while IFS='|' read -r id srv mode g sig label; do
			r=$(lg "$g" -a "127.0.0.1:$(cat "$work/$srv.listen")" -m "$mode" -c "$c" -d "${SECS}s" </dev/null 2>>"$work/loadgen.err" | grep '^result')
			echo "$id $c $(val rate "$r") $(val errors "$r") $(val p50_ms "$r")" >>"$work/rates"
		done <"$work/systems"
	done
	# CPU per session at c=8: a fresh tcpserver under perf stat, and
	# perf stat on the signer for the same span.
	[ $have_perf = yes ] && while IFS='|' read -r id srv mode g sig label; do
		start "$srv-cpu" "$srv" perf
		sport=$port
		wrapper=$spid
		if [ "$sig" = yes ]; then
			perf stat -x, -e task-clock -p "$SIGNER" -o "$work/signer.cpu" &
			sp=$!
			sleep 0.2
		fi
		r=$(lg "$g" -a "127.0.0.1:$sport" -m "$mode" -c 8 -n "$CPUN" </dev/null 2>>"$work/loadgen.err" | grep '^result')
		if [ "$sig" = yes ]; then
			kill -INT $sp
			wait $sp 2>/dev/null
		fi
		kill "$(pgrep -P "$wrapper" tcpserver)" 2>/dev/null
		wait "$wrapper" 2>/dev/null
		n=$(val sessions "$r")
		[ "${n:-0}" -gt 0 ] || continue
		sc=0
		[ "$sig" = yes ] && sc=$(awk -F, '/task-clock/ { print $1 }' "$work/signer.cpu")
		awk -F, -v n="$n" -v sc="$sc" -v id="$id" '/task-clock/ { printf "%s %.3f %.3f\n", id, ($1 + sc) / n, sc / n }' "$work/$srv-cpu.cpu" >>"$work/cpus"
	done <"$work/systems"
done

# Held sessions through the service: memory, then NOOP on every one.
held_line=
if [ "$HELD" -gt 0 ]; then
	say "holding $HELD sessions through the service"
	srv=service-held
	eval "cmd_of_held() { echo \"\$(service imap -c $((HELD + 200))) $FAKE\"; }"
	: >"$work/$srv.port"
	# shellcheck disable=SC2046
	env GOMAXPROCS=1 $(cmd_of_held) >"$work/$srv.port" 2>>"$work/$srv.err" &
	hp=$!
	pids="$pids $hp"
	i=0
	while [ ! -s "$work/$srv.port" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
	: >"$work/held.out"
	t0=$(date +%s%N)
	"$LOADGEN" -a "127.0.0.1:$(cat "$work/$srv.port")" -m starttls -hold "$HELD" -holdat login -c 8 -holdfor 30s -T 300s \
		</dev/null >"$work/held.out" 2>"$work/held.err" &
	lp=$!
	i=0
	while ! grep -q '^held=' "$work/held.out" && kill -0 $lp 2>/dev/null; do sleep 0.2; done
	t1=$(date +%s%N)
	sleep 1
	m=$(sh tests/bench/pss.sh "$hp" fakeimapd)
	sm=$(awk '/^Pss:/ { print $2 }' /proc/"$SIGNER"/smaps_rollup)
	wait $lp
	held_line="procs=$(val procs "$m") pss_kb=$(val pss_kb "$m") signer_kb=$sm open_s=$(((t1 - t0) / 1000000)) answered=$(sed -n 's/^answered=//p' "$work/held.out") err=$(tail -1 "$work/held.err")"
	kill $hp 2>/dev/null
	say "held: $held_line"
fi

# The report.
while IFS='|' read -r id srv mode g sig label; do
	for c in $LEVELS; do
		r=$(awk -v id="$id" -v c="$c" '$1 == id && $2 == c { print $3 }' "$work/rates" | median)
		e=$(awk -v id="$id" -v c="$c" '$1 == id && $2 == c { s += $4 } END { print s + 0 }' "$work/rates")
		p=$(awk -v id="$id" -v c="$c" '$1 == id && $2 == c { print $5 }' "$work/rates" | median)
		echo "$id $c $r $e $p"
	done
done <"$work/systems" >"$work/medians"
cpu_of() { awk -v id="$1" '$1 == id { print $2 }' "$work/cpus" | median; }
sigcpu_of() { awk -v id="$1" '$1 == id { print $3 }' "$work/cpus" | median; }
rate_of() { awk -v id="$1" -v c="$2" '$1 == id && $2 == c { print $3 }' "$work/medians"; }
p50_of() { awk -v id="$1" -v c="$2" '$1 == id && $2 == c { print $5 }' "$work/medians"; }

# Pictures: every TLS system's curve (the plaintext baseline, about ten
# times higher, would flatten them), and CPU per session as bars.
while IFS='|' read -r id srv mode g sig label; do
	[ "$id" = plain ] && continue
	for c in $LEVELS; do printf '%s\t%s\t%s\n' "$label" "$c" "$(rate_of "$id" "$c")"; done
done <"$work/systems" | awk -F'\t' -v kind=lines -v title="Sessions per second against concurrency (medians of $ROUNDS rounds)" \
	-v xlabel="concurrent clients" -v ylabel="sessions/s" -f tests/bench/svg.awk >"$DIR/BENCHMARKS-sessions.svg"
while IFS='|' read -r id srv mode g sig label; do
	x=$(cpu_of "$id")
	[ -n "$x" ] && printf '%s\t%s\n' "$label" "$x"
done <"$work/systems" | awk -F'\t' -v kind=bars -v title="Server CPU per session at c=8, ms (medians of $ROUNDS rounds)" \
	-v xlabel="ms of CPU per session (tcpserver, the chain, the backend, the signer's share)" -f tests/bench/svg.awk >"$DIR/BENCHMARKS-cpu.svg"

echo "## Sessions against concurrency, CPU per session, the signer (issue 14)"
echo
echo "Measured by tests/bench/sweep.sh (run by bench.sh after the tables above) on $(date -u '+%Y-%m-%d %H:%M UTC'),"
echo "every system in the same run, interleaved: for each round, each concurrency, each system in turn."
echo "Medians of $ROUNDS rounds of ${SECS} s; load average at the start $(cut -d' ' -f1-3 /proc/loadavg | head -1)."
echo "\"imap-tls service\" is the chain the run file starts (env/SIGNER set: \`imap-tls-server -s\`) with a stdio"
echo "server, fakeimapd: makesock, setuidgid-chroot (which connects to the signer while root), stunnel-imap"
echo "(with the server one address, the default, setuidgid-chroot connects it too and no makesock runs:"
echo "the Dovecot section); the signer is one long-running process of its own service. \"Key process per"
echo "connection\" is \`-k\`."
echo "The client is Go's crypto/tls (loadgen): it offers the hybrid post-quantum group X25519MLKEM768"
echo "and X25519 by default, as current browsers and mail clients do; stunnel 5 (OpenSSL 3.0) and"
echo "tlswrapper take X25519. \"X25519 only\" is the same client with GODEBUG=tlsmlkem=0."
echo
echo "![sessions/s against concurrency](BENCHMARKS-sessions.svg)"
echo
printf '| system |'
for c in $LEVELS; do printf ' c=%s |' "$c"; done
echo " p50 ms c=1 | failed |"
printf '|---|'
for c in $LEVELS; do printf -- '---:|'; done
echo "---:|---:|"
while IFS='|' read -r id srv mode g sig label; do
	printf '| %s |' "$label"
	for c in $LEVELS; do printf ' %s |' "$(rate_of "$id" "$c")"; done
	printf ' %s | %s |\n' "$(p50_of "$id" 1)" "$(awk -v id="$id" '$1 == id { s += $4 } END { print s + 0 }' "$work/medians")"
done <"$work/systems"
echo
echo "![CPU per session](BENCHMARKS-cpu.svg)"
echo
echo "CPU: perf stat's task-clock of the whole server side (tcpserver and every process it forks,"
echo "the backend included) over $CPUN sessions at c=8, plus, for the service, the signer's task-clock"
echo "over the same span (perf stat -p), per session."
echo
echo "| system | CPU ms/session | of which the signer |"
echo "|---|---:|---:|"
while IFS='|' read -r id srv mode g sig label; do
	echo "| $label | $(cpu_of "$id") | $([ "$sig" = yes ] && sigcpu_of "$id" || echo —) |"
done <"$work/systems"
echo
t8=$(rate_of tlswrapper 8) s8=$(rate_of stunnel-implicit 8) v8=$(rate_of service-starttls 8) vi8=$(rate_of service-implicit 8)
tc=$(cpu_of tlswrapper) vc=$(cpu_of service-starttls) vic=$(cpu_of service-implicit)
p1=$(p50_of service-starttls 1)
chk() { if [ "$1" = 1 ]; then echo "- met: $2"; else echo "- **missed:** $2"; fi; }
ok() { awk "BEGIN { print ($1) ? 1 : 0 }"; }
echo "### Targets (issue 14)"
echo
if [ -n "$t8" ] && [ -n "$s8" ] && [ -n "$v8" ]; then
	chk "$(ok "$v8 >= 1.5 * $t8")" "STARTTLS sessions/s at c=8 at least 1.5× tlswrapper's: $v8 vs $t8, $(awk "BEGIN { printf \"%.2f×\", $v8 / $t8 }")"
	chk "$(ok "$v8 >= 1.5 * $s8")" "STARTTLS sessions/s at c=8 at least 1.5× stunnel 5 implicit's: $v8 vs $s8, $(awk "BEGIN { printf \"%.2f×\", $v8 / $s8 }")"
	chk "$(ok "$vi8 >= 1.5 * $t8")" "implicit TLS sessions/s at c=8 at least 1.5× tlswrapper's: $vi8 vs $t8, $(awk "BEGIN { printf \"%.2f×\", $vi8 / $t8 }")"
	chk "$(ok "$vi8 >= 1.5 * $s8")" "implicit TLS sessions/s at c=8 at least 1.5× stunnel 5 implicit's: $vi8 vs $s8, $(awk "BEGIN { printf \"%.2f×\", $vi8 / $s8 }")"
	chk "$(ok "$p1 < 8")" "p50 of a whole STARTTLS session at c=1 under 8 ms: $p1 ms"
	[ -n "$tc" ] && [ -n "$vc" ] && {
		chk "$(ok "$vc <= 1.3 * $tc")" "server CPU per session at most 1.3× tlswrapper's: STARTTLS $vc vs $tc ms, $(awk "BEGIN { printf \"%.2f×\", $vc / $tc }")"
		chk "$(ok "$vic <= 1.3 * $tc")" "the same, implicit TLS: $vic vs $tc ms, $(awk "BEGIN { printf \"%.2f×\", $vic / $tc }")"
	}
else
	echo "Not evaluated: this run lacks tlswrapper, stunnel 5 or the service."
fi
if [ -n "$held_line" ]; then
	pk=$(val pss_kb "$held_line") sk=$(val signer_kb "$held_line")
	echo
	echo "### $HELD sessions held at once through the service"
	echo
	echo "\`loadgen -hold $HELD -holdat login\` against the service's STARTTLS chain (tcpserver -c $((HELD + 200))):"
	echo "$HELD sessions opened 8 at a time to after LOGIN in $(val open_s "$held_line") ms, held 30 s, then a NOOP on every one"
	echo "(answered: $(val answered "$held_line"); the run fails on the first that does not answer), then LOGOUT."
	echo "Processes serving them, the backend excluded: $(val procs "$held_line"). PSS of those: $(awk "BEGIN { printf \"%.0f\", $pk / 1024 }") MB,"
	echo "$(awk "BEGIN { printf \"%.2f\", $pk / 1024 / $HELD }") MB per session; with the signer's $(awk "BEGIN { printf \"%.1f\", $sk / 1024 }") MB (shared by all):"
	echo "$(awk "BEGIN { printf \"%.2f\", ($pk + $sk) / 1024 / $HELD }") MB per session (the backend, fakeimapd here, is the site's own and not counted)."
fi
if [ -f tests/bench/analysis-signer.md ]; then
	echo
	cat tests/bench/analysis-signer.md
fi
if [ -f tests/bench/startcost.md ]; then
	echo
	cat tests/bench/startcost.md # sh tests/bench/startcost.sh's figures, by hand
fi
echo
echo "Reproduce: \`sh tests/bench/sweep.sh DIR >section.md\` (as root, after \`sh redo.do\`); SWEEP_ROUNDS,"
echo "SWEEP_SECS, SWEEP_LEVELS, SWEEP_HELD, SWEEP_SYSTEMS as in its header. The signer's log of this run:"
echo
echo '```'
sed 's/^/    /' "$work/signer.err"
echo '```'
