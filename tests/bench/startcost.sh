#!/bin/sh
# startcost.sh: what each program of the connection chain costs to start,
# in measures that do not depend on the machine's load:
#
#   instructions   user-space instructions (valgrind's callgrind, every
#                  thread), from the first one to the point where the
#                  program's own step is done (below); the median of 5 runs
#   faults         minor page faults (getrusage, /usr/bin/time %R) of the
#                  run, less those of what it execs (a static program that
#                  only exits); the median of 5 runs
#   threads        threads the program creates (clone with CLONE_THREAD,
#                  counted by perf's task_newtask tracepoint); the mean of 20
#   syscalls       system calls of the run (perf's raw_syscalls:sys_enter),
#                  less those of what it execs; the median of 20
#   bytes          the binary as sh redo.do builds it
#   inits          packages whose init the runtime runs (GODEBUG=inittrace=1),
#                  and the bytes those inits allocate
#
#   sh tests/bench/startcost.sh [ program ... ]     (as root; a table on stdout)
#
# Each program runs as the chain runs it (imap-tls-server -x prints the
# chain), in a connection's environment (service/env's variables, as
# envdir sets them, and tcpserver's; GOMAXPROCS=1 among them), and stops
# where its step ends:
#
#   floor              a static Go program whose main only execs: what
#                      the runtime alone costs
#   makesock           -c unix-socket prog1: connect, exec prog1 (the end:
#                      syscall.Exec); and the socketpair form, prog1
#                      -makesock_connect_to prog2 (fork prog2, exec prog1)
#   setuidgid-chroot   -/ jail -r base:count -c 3:server-socket -s
#                      4:signer-socket prog, the default chain's first
#                      program: the server's socket on fd 3, the signer's
#                      on fd 4, chroot, a uid of its own, exec
#                      (main.execFD); and without -c, as it runs behind a
#                      makesock (a stdio server, or a key process)
#   proxy-server       -a 127.0.0.1 prog with a PROXY v1 header arrived
#                      on its socket: read it, set the environment, exec
#                      (syscall.Exec)
#   stunnel-imap       -n imap -F 3 -K 4 -H, the server on fd 3, the signer
#                      on fd 4, the client on fd 0/1: up to the lock-down
#                      (seccomp.Install: the certificate chain from the
#                      signer, the TLS configuration, both connections
#                      open, not a byte read from the network); faults and
#                      threads are for the whole run, where the server
#                      closes at once and the client is told * BYE
#   stunnel-imap-key   -P 3 with the key file on fd 3 and its channel on
#                      fd 0/1: up to its lock-down (seccomp.Install: the key
#                      loaded); faults and threads: the whole run, where
#                      the channel closes at once
#   stunnel-imap-signer  per connection, not per start (it is started
#                      once): the instructions it spends on one stunnel-imap
#                      start (the chain and a signature), the mean of 10
#
# The programs are built from this tree into a temporary directory: once
# as redo.do builds them (faults, threads, bytes), once with symbols
# (-s -w left out: the same code) so that callgrind can stop at a named
# function. Needs valgrind, perf, GNU time, gcc, python3, openssl.
set -e
cd "$(dirname "$0")/../.."
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
export PATH

die() { echo "startcost.sh: fatal: $*" >&2; exit 111; }
for t in valgrind perf /usr/bin/time gcc python3 openssl go; do
	command -v "$t" >/dev/null 2>&1 || die "$t is not installed"
done
[ "$(id -u)" = 0 ] || die "run as root: setuidgid-chroot and the signer need it"

programs=${*:-floor makesock setuidgid-chroot proxy-server stunnel-imap stunnel-imap-key stunnel-imap-signer}
runs=7
range=2000000000:4194304

work=$(mktemp -d /tmp/startcost.XXXXXX) || die "unable to make a temporary directory"
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || :; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 111' HUP INT TERM

mkdir -p "$work/bin" "$work/sym" "$work/jail" "$work/out"
chmod 711 "$work" # the jailed uids pass through to out/
for p in makesock setuidgid-chroot proxy-server stunnel-imap stunnel-imap-key stunnel-imap-signer; do
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/bin/$p" "./$p" || die "unable to build $p"
	CGO_ENABLED=0 go build -trimpath -o "$work/sym/$p" "./$p" || die "unable to build $p with symbols"
done

# floor: the least a Go program costs here, one whose main only execs
mkdir -p "$work/floor"
printf 'module floor\n\ngo 1.26\n' >"$work/floor/go.mod"
cat >"$work/floor/main.go" <<EOF
package main

import "syscall"

func main() { syscall.Exec("$work/true", []string{"true"}, nil) }
EOF
(cd "$work/floor" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/bin/floor" . &&
	CGO_ENABLED=0 go build -trimpath -o "$work/sym/floor" .) || die "unable to build the floor program"

# true: a static program that only exits, what the measured programs exec
# (in the jail too, which holds no library)
cat >"$work/true.c" <<'EOF'
void _start(void) { __asm__ volatile("mov $60, %eax\n xor %edi, %edi\n syscall"); }
EOF
gcc -static -nostdlib -O2 -o "$work/true" "$work/true.c" || die "unable to build a static true"

# the certificate and key, as the service keeps them, of the kind
# bench.sh uses (ECDSA P-256; an RSA-2048 key costs the key process about
# 2.6 million instructions more to load)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
	-days 30 -subj /CN=localhost >/dev/null 2>&1 || die "unable to make a certificate"
cat "$work/cert.pem" "$work/key.pem" >"$work/stunnel.pem"
chmod 400 "$work/stunnel.pem"

# the server: a unix socket that accepts and closes at once
cat >"$work/server.py" <<'EOF'
import socket, sys, os
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
EOF
python3 "$work/server.py" "$work/server.sock" &
pids="$pids $!"

# the signer, as service/signer/run starts it
"$work/bin/setuidgid-chroot" -/ "$work/jail" -r "$range" -o 3:"$work/stunnel.pem" -l 4:"$work/signer.sock" \
	"$work/bin/stunnel-imap-signer" -P 3 -L 4 2>"$work/signer.log" &
pids="$pids $!"
signer=$!

# fds: run argv with the descriptors the chain gives it: N=path.sock
# connects fd N to a unix socket (the server on 3, the signer on 4),
# N=path opens a file there; 0 and 1 are one end of a socket pair (as
# tcpserver's socket is one descriptor on both), the other end on 5, so
# that nothing is cut short; in=path: that file's bytes have arrived on
# it, as a client's (a balancer's PROXY header) would. A static C program: its own start adds
# only a few faults (subtracted, as the static true's)
cat >"$work/fds.c" <<'EOF'
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int i = 1, pair[2];
	char *in = 0, buf[4096];
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		int fd = atoi(argv[i]), f;
		if (strncmp(argv[i], "in=", 3) == 0) { in = argv[i] + 3; continue; }
		char *p = strchr(argv[i], '=') + 1;
		size_t n = strlen(p);
		if (n > 5 && strcmp(p + n - 5, ".sock") == 0) {
			struct sockaddr_un a = {.sun_family = AF_UNIX};
			strncpy(a.sun_path, p, sizeof a.sun_path - 1);
			f = socket(AF_UNIX, SOCK_STREAM, 0);
			if (connect(f, (struct sockaddr *)&a, sizeof a) < 0) return 111;
		} else if ((f = open(p, O_RDONLY)) < 0) return 111;
		if (f != fd) { dup2(f, fd); close(f); }
	}
	if (i >= argc - 1) return 100;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) return 111;
	if (in) {
		int f = open(in, O_RDONLY), n;
		if (f < 0 || (n = read(f, buf, sizeof buf)) < 0 || write(pair[1], buf, n) != n) return 111;
		close(f);
	}
	dup2(pair[0], 0); dup2(pair[0], 1); dup2(pair[1], 5);
	close(pair[0]); close(pair[1]);
	if (argv[i + 1][0] == '-') return 100;
	execv(argv[i + 1], argv + i + 1);
	return 111;
}
EOF
gcc -static -O2 -o "$work/fds" "$work/fds.c" || die "unable to build fds"

for i in 1 2 3 4 5 6 7 8 9 10; do
	[ -S "$work/signer.sock" ] && [ -S "$work/server.sock" ] && break
	sleep 0.2
done
[ -S "$work/signer.sock" ] || die "the signer did not start: $(cat "$work/signer.log")"

printf 'PROXY TCP4 192.0.2.1 192.0.2.2 40000 143\r\n' >"$work/header"

# The environment of every measured program is a connection's in the
# service, nothing of the caller's: envdir's (service/env as shipped:
# the first line of each file, an empty file unsets) and tcpserver's.
# Its size counts: each variable costs a Go program about 3k
# instructions (the runtime's copy, the os package's map, the exec).
for v in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
	[ "$v" = PATH ] || unset "$v" 2>/dev/null || :
done
for f in service/env/*; do
	v=$(sed -n '1{s/[[:space:]]*$//;p;}' "$f")
	[ -n "$v" ] && export "${f##*/}=$v"
done
export PROTO=TCP TCPLOCALIP=127.0.0.1 TCPLOCALPORT=143 TCPLOCALHOST=0 TCPREMOTEIP=127.0.0.1 TCPREMOTEPORT=40000
[ "$GOMAXPROCS" = 1 ] || die "service/env/GOMAXPROCS is not 1: the figures assume it"

# cmd NAME: the command line of a measure, with $B the binaries' folder
cmd() {
	case $1 in
	floor) echo "\$B/floor $work/true" ;;
	makesock-c) echo "\$B/makesock -c $work/server.sock $work/true" ;;
	makesock) echo "\$B/makesock $work/true -makesock_connect_to $work/true" ;;
	setuidgid-chroot-c) echo "\$B/setuidgid-chroot -/ $work/jail -r $range -c 3:$work/server.sock -s 4:$work/signer.sock $work/true" ;;
	setuidgid-chroot) echo "\$B/setuidgid-chroot -/ $work/jail -r $range -s 4:$work/signer.sock $work/true" ;;
	proxy-server) echo "$work/fds in=$work/header -- \$B/proxy-server -a 127.0.0.1 $work/true" ;;
	stunnel-imap) echo "$work/fds 3=$work/server.sock 4=$work/signer.sock -- \$B/stunnel-imap -n imap -F 3 -K 4 -H" ;;
	stunnel-imap-key) echo "$work/fds 3=$work/stunnel.pem -- \$B/stunnel-imap-key -P 3" ;;
	esac
}
# the function whose entry ends the measure
stop() {
	case $1 in
	floor | makesock*) echo syscall.Exec ;;
	setuidgid-chroot*) echo main.execFD ;;
	proxy-server) echo syscall.Exec ;;
	stunnel-imap | stunnel-imap-key) echo imap-tls/internal/seccomp.Install ;;
	esac
}
input() { echo /dev/null; }

median() { sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]; else print "-"}'; }
largest() { sort -n | tail -1; }

# instructions NAME: callgrind's count up to stop's function, median
instructions() {
	c=$(cmd "$1" | sed "s|\\\$B|$work/sym|")
	trace=no # fds execs the program: valgrind follows that exec
	case $c in "$work/fds "*) trace=yes ;; esac
	# setuidgid-chroot dumps after its chroot: the out folder is made
	# inside the jail under the same path (and removed after)
	mkdir -p "$work/jail$work/out"
	chmod 1777 "$work/jail$work/out" "$work/out"
	i=0
	while [ $i -lt $runs ]; do
		i=$((i + 1))
		rm -f "$work/out/"cg.* "$work/jail$work/out/"cg.*
		# shellcheck disable=SC2086
		valgrind -q --vgdb=no --tool=callgrind --dump-before="$(stop "$1")" --trace-children="$trace" \
			--callgrind-out-file="$work/out/cg.%p" $c <"$(input "$1")" >/dev/null 2>"$work/valgrind.err" || :
		cat "$work/out/"cg.*.1 "$work/jail$work/out/"cg.*.1 2>/dev/null | sed -n 's/^summary: //p' | head -1
	done | median
	rm -rf "${work:?}/jail/${work#/}"
	rmdir -p "$work/jail${work%/*}" 2>/dev/null || :
}

# faults NAME: minor faults of the run less the static true's (and
# fds's), median
faults() {
	c=$(cmd "$1" | sed "s|\\\$B|$work/bin|")
	b=$work/true
	case $c in "$work/fds "*) b="${c%% -- *} -- $work/true" ;; esac
	# shellcheck disable=SC2086
	base=$(for i in 1 2 3; do /usr/bin/time -f %R $b 2>&1 </dev/null; done | median)
	i=0
	while [ $i -lt $runs ]; do
		i=$((i + 1))
		# shellcheck disable=SC2086
		/usr/bin/time -o "$work/time" -f %R $c <"$(input "$1")" >/dev/null 2>&1 || :
		echo $(($(tail -1 "$work/time") - base))
	done | median
}

# threads NAME: threads created (the task_newtask tracepoint, filtered
# on CLONE_THREAD: no ptrace, so the timing is the program's own), the
# mean of 20 runs (how many the runtime starts depends a little on
# timing); and system calls (raw_syscalls:sys_enter) less those of the
# static true (and fds), the median: "threads syscalls"
threads() {
	c=$(cmd "$1" | sed "s|\\\$B|$work/bin|")
	b=$work/true
	case $c in "$work/fds "*) b="${c%% -- *} -- $work/true" ;; esac
	# shellcheck disable=SC2086
	base=$(for i in 1 2 3; do
		perf stat -x, -o "$work/perf" -e raw_syscalls:sys_enter $b </dev/null >/dev/null 2>&1 || :
		grep sys_enter "$work/perf" | cut -d, -f1
	done | median)
	i=0
	while [ $i -lt 20 ]; do
		i=$((i + 1))
		# shellcheck disable=SC2086
		perf stat -x, -o "$work/perf" -e task:task_newtask --filter 'clone_flags & 0x10000' \
			-e raw_syscalls:sys_enter $c <"$(input "$1")" >/dev/null 2>&1 || :
		echo "$(grep task_newtask "$work/perf" | cut -d, -f1) $(($(grep sys_enter "$work/perf" | cut -d, -f1) - base))"
	done | sort -k2n | awk '{t += $1; s[NR] = $2} END {printf "%.1f %d", t / NR, s[int((NR + 1) / 2)]}'
}

# inits PROG: "N packages, B bytes" from inittrace
inits() {
	GODEBUG=inittrace=1 "$work/bin/$1" -h 2>&1 | awk '$1 == "init" {n++; b += $8} END {printf "%d packages, %d bytes", n, b}'
}

# signer: the signer's CPU time per stunnel-imap start, in microseconds
# (valgrind cannot run it: it refuses to start without its seccomp
# filter): the run time of all its threads (/proc/PID/task/*/schedstat,
# in ns) over 50 connections, after one that is not counted
signer() {
	n=50
	c=$(cmd stunnel-imap | sed "s|\\\$B|$work/bin|")
	pid=$signer # setuidgid-chroot exec'd into it
	cpu() { cat /proc/"$pid"/task/*/schedstat | awk '{t += $1} END {print t}'; }
	# shellcheck disable=SC2086
	$c >/dev/null 2>&1 </dev/null || :
	t0=$(cpu)
	i=0
	while [ $i -lt $n ]; do
		i=$((i + 1))
		# shellcheck disable=SC2086
		$c >/dev/null 2>&1 </dev/null || :
	done
	t1=$(cpu)
	echo "$(((t1 - t0) / n / 1000)) us of CPU"
}

printf '| program | run | instructions | minor faults | threads | syscalls | bytes | inits (packages, bytes allocated) |\n'
printf '|---|---|---:|---:|---:|---:|---:|---|\n'
for p in $programs; do
	case $p in
	makesock) names='makesock-c makesock' ;;
	setuidgid-chroot) names='setuidgid-chroot-c setuidgid-chroot' ;;
	stunnel-imap-signer)
		printf '| stunnel-imap-signer | per connection | %s | | | | %s | %s |\n' "$(signer)" \
			"$(stat -c %s "$work/bin/$p")" "$(inits "$p")"
		continue
		;;
	*) names=$p ;;
	esac
	for n in $names; do
		run=$(cmd "$n" | sed "s|\\\$B/||; s|^[^ ]*/fds [^-]*-- ||; s|$work/||g")
		set -- $(threads "$n")
		printf '| %s | `%s` | %s | %s | %s | %s | %s | %s |\n' "$p" "$run" \
			"$(instructions "$n")" "$(faults "$n")" "$1" "$2" \
			"$(stat -c %s "$work/bin/$p")" "$(inits "$p")"
	done
done
