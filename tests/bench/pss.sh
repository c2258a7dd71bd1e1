#!/bin/sh
# pss.sh: the memory of the processes that serve connections.
#
#   sh pss.sh rootpid [ exclude ]
#
# Finds every process descending from rootpid (tcpserver; rootpid itself
# not counted), leaves out those whose command name is exclude (the
# backend), and prints, on one line:
#
#   procs=N pss_kb=K comms=name,name,... zombies=Z
#
# K is the sum of the Pss lines of /proc/PID/smaps_rollup: the
# proportional set size, each shared page divided among its sharers, so
# that the sums of several processes add up honestly. A zombie (a
# process that has exited and that its parent has not reaped yet, as
# imap-tls's key process is once the handshake is done) holds no memory
# and serves nothing: it is counted in Z, not in N.
[ $# -ge 1 ] || { echo "pss.sh: usage: pss.sh rootpid [ exclude ]" >&2; exit 100; }
root=$1
exclude=${2:-}
for f in /proc/[0-9]*/stat; do
	# A process may end between the glob and the read.
	cat "$f" 2>/dev/null && echo
done | awk -v root="$root" -v exclude="$exclude" '
# "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
# cut at the first "(" and the last ")".
NF > 0 {
	open = index($0, "(")
	close_ = 0
	for (i = length($0); i > 0; i--) if (substr($0, i, 1) == ")") { close_ = i; break }
	if (open == 0 || close_ == 0) next
	pid = substr($0, 1, open - 2)
	comm[pid] = substr($0, open + 1, close_ - open - 1)
	split(substr($0, close_ + 2), rest, " ")
	state[pid] = rest[1]
	parent[pid] = rest[2]
}
END {
	# Breadth first from root.
	n = 0; queue[n++] = root; inset[root] = 1
	for (q = 0; q < n; q++)
		for (p in parent)
			if (parent[p] == queue[q] && !(p in inset)) { inset[p] = 1; queue[n++] = p }
	procs = 0; pss = 0; names = ""; zombies = 0
	for (q = 1; q < n; q++) {
		p = queue[q]
		if (comm[p] == exclude) continue
		if (state[p] == "Z") { zombies++; continue }
		f = "/proc/" p "/smaps_rollup"
		while ((getline l < f) > 0)
			if (l ~ /^Pss:/) { split(l, a, " "); pss += a[2] }
		close(f)
		procs++
		names = names (names == "" ? "" : ",") comm[p]
	}
	printf "procs=%d pss_kb=%d comms=%s zombies=%d\n", procs, pss, names, zombies
}'
