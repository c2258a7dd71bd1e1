# dovecot.awk: dovecot-tls.sh's results (one line per system: "id
# key=value ...", cpu.COMMAND=ms per session) into its section of
# BENCHMARKS.md: the figures, the ratios against Dovecot's own TLS with
# issue 20's targets beside them, the proxy's own connect (setuidgid-chroot
# -c, the default chain's) against socat, and the CPU per session by
# program.
# Variables: rounds, secs, hold, cpun, signer_kb (the signer's PSS, or
# empty), server_comms (the server side's programs, in the CPU table's
# order).

function name(id) {
	if (id == "dovecot-plain") return "Dovecot, no TLS (the floor)"
	if (id == "dovecot-starttls") return "Dovecot's own TLS, STARTTLS"
	if (id == "dovecot-implicit") return "Dovecot's own TLS, implicit"
	if (id == "tls-dovecot-starttls") return "**imap-tls + Dovecot, STARTTLS**"
	if (id == "tls-dovecot-implicit") return "**imap-tls + Dovecot, implicit TLS**"
	if (id == "socat-dovecot-starttls") return "imap-tls + Dovecot, STARTTLS, socat to Dovecot"
	return id
}
# short: a column's head in the CPU table.
function short(id) {
	if (id == "dovecot-plain") return "Dovecot, no TLS"
	if (id == "dovecot-starttls") return "Dovecot STARTTLS"
	if (id == "dovecot-implicit") return "Dovecot implicit"
	if (id == "tls-dovecot-starttls") return "imap-tls STARTTLS"
	if (id == "tls-dovecot-implicit") return "imap-tls implicit"
	if (id == "socat-dovecot-starttls") return "imap-tls STARTTLS, socat"
	return id
}
# num, fmt, mb, ratio: tests/bench/lib.awk.
# ok: both figures are there (a system that was not measured decides no target).
function ok(a, b, x) { return (a in have) && (b in have) && v[a, x] != "" && v[b, x] != "" }
function verdict(met) { return met ? "met" : "**not met**" }

# row measure a b x digits unit kind: one line of the table against
# Dovecot's own TLS; kind "rate" (target: at least 0.9×), "p50" (at most
# +1 ms), "pss" (at most 1.1×) or "" (no target).
function row(measure, a, b, x, d, unit, kind,   fa, fb, r, t) {
	fa = v[a, x]; fb = v[b, x]
	if (x == "pssn") { fa = mb(fa); fb = mb(fb) }
	r = ratio(fa, fb)
	if (kind == "p50" && fa != "" && fb != "") r = sprintf("%+.2f ms", fa - fb)
	t = "—"
	if (kind != "" && !ok(a, b, x)) t = "not evaluated: a system was not measured"
	else if (kind == "rate") t = "at least 0.9×: " verdict(num(fa) >= 0.9 * num(fb))
	else if (kind == "p50") t = "at most +1 ms: " verdict(num(fa) <= num(fb) + 1)
	else if (kind == "pss") t = "at most 1.1×: " verdict(num(fa) <= 1.1 * num(fb))
	printf "| %s | %s | %s | %s | %s |\n", measure, fa == "" ? "—" : fmt(fa, d) unit, fb == "" ? "—" : fmt(fb, d) unit, r, t
}

{
	id = $1
	ids[n++] = id
	for (i = 2; i <= NF; i++) {
		k = $i; sub(/=.*/, "", k)
		x = $i; sub(/^[^=]*=/, "", x)
		v[id, k] = x
		if (k ~ /^cpu\./) {
			c = substr(k, 5)
			if (!(c in seen)) { seen[c] = 1; comm[nc++] = c }
		}
	}
	if (v[id, "failed"] != "yes") have[id] = 1
}

END {
	# The server side's programs (dovecot-tls.sh's SERVER_COMMS): every
	# cpu.NAME but the client (loadgen) and every other process (other).
	split(server_comms, sv, " ")
	for (i = 0; i < n; i++) {
		id = ids[i]
		for (j = 0; j < nc; j++) {
			c = comm[j]
			if (v[id, "cpu." c] == "" || c == "loadgen" || c == "other") continue
			cpu[id] += v[id, "cpu." c]
		}
		if (id in cpu) v[id, "cpu"] = cpu[id]
		client[id] = v[id, "cpu.loadgen"]
		other[id] = v[id, "cpu.other"]
	}

	printf "Sessions: LOGIN as a passwd-file user, with STARTTLS and its handshake, the implicit handshake, or no TLS, "
	printf "then CAPABILITY, LOGIN, LOGOUT (loadgen). Medians of %d rounds of %s s each at c=1 and at c=8. ", rounds, secs
	printf "CPU: every process of the server side (the programs of the table below), from `perf record -a` "
	printf "(a sample per 0.1 ms of CPU, all CPUs) during %d sessions at c=8 a round, per session. ", cpun
	printf "PSS: what %d sessions held at once, logged in with INBOX selected (`loadgen -hold %d -holdat select`), ", hold, hold
	printf "add to the PSS of every process of Dovecot and of the system's tcpserver (tests/bench/pss.sh), per session; "
	print "the processes one held session adds, by name."
	print ""
	print "| system | c=1 p50 ms | c=1 p99 ms | c=8 sessions/s | c=8 p50 ms | CPU ms/session | PSS MB per held session | processes of a held session | failed sessions |"
	print "|---|---:|---:|---:|---:|---:|---:|---|---:|"
	for (i = 0; i < n; i++) {
		id = ids[i]
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name(id),
			fmt(v[id, "p50_1"], 2), fmt(v[id, "p99_1"], 2), fmt(v[id, "rate8"], 1), fmt(v[id, "p50_8"], 2),
			fmt(v[id, "cpu"], 2), fmt(mb(v[id, "pssn"]), 2), v[id, "comms"] == "" ? "—" : v[id, "comms"],
			id in have ? num(v[id, "err"]) : "—"
	}
	if (signer_kb != "")
		printf "\nimap-tls's signer, one process for every connection, is not in its rows' PSS: %.1f MB in all at the end of the run.\n", signer_kb / 1024

	print ""
	print "### Against Dovecot's own TLS: the targets of issue 20"
	print ""
	print "Each imap-tls row against Dovecot doing TLS itself in the same mode; sessions/s above 1× is better, latency, memory and CPU below."
	print ""
	print "| measure | imap-tls + Dovecot | Dovecot's own TLS | ratio | target |"
	print "|---|---:|---:|---:|---|"
	a = "tls-dovecot-starttls"; b = "dovecot-starttls"; ai = "tls-dovecot-implicit"; bi = "dovecot-implicit"
	row("c=8 sessions/s, STARTTLS", a, b, "rate8", 1, "", "rate")
	row("c=8 sessions/s, implicit TLS", ai, bi, "rate8", 1, "", "rate")
	row("p50 at c=1, STARTTLS", a, b, "p50_1", 2, " ms", "p50")
	row("p50 at c=1, implicit TLS", ai, bi, "p50_1", 2, " ms", "p50")
	row("p99 at c=1, STARTTLS", a, b, "p99_1", 2, " ms", "")
	row("p99 at c=1, implicit TLS", ai, bi, "p99_1", 2, " ms", "")
	row("memory per held session (INBOX selected), STARTTLS", a, b, "pssn", 2, " MB", "pss")
	row("memory per held session (INBOX selected), implicit TLS", ai, bi, "pssn", 2, " MB", "pss")
	row("CPU per session, all processes, STARTTLS", a, b, "cpu", 2, " ms", "")
	row("CPU per session, all processes, implicit TLS", ai, bi, "cpu", 2, " ms", "")
	print ""
	print "\"At least 1.5× stunnel 5 implicit and tlswrapper\" is judged in the sections on the other proxies (issues 5 and 14);"
	print "the isolation (a uid per connection, the key outside the proxy, seccomp before the first network byte) is"
	print "the chain's design, tested by the test suite, not measured here."

	# The proxy's own connect (setuidgid-chroot -c) against socat, and
	# the floor.
	s = "socat-dovecot-starttls"; p = "dovecot-plain"
	if ((s in have) || (p in have)) {
		print ""
		print "### The proxy's own connect (setuidgid-chroot -c) against socat, and the floor"
		print ""
		print "| measure | c=8 sessions/s | p50 at c=1 | CPU ms/session | PSS MB per held session |"
		print "|---|---:|---:|---:|---:|"
		if (s in have) {
			printf "| %s | %s | %s | %s | %s |\n", name(s), fmt(v[s, "rate8"], 1), fmt(v[s, "p50_1"], 2), fmt(v[s, "cpu"], 2), fmt(mb(v[s, "pssn"]), 2)
			printf "| imap-tls, setuidgid-chroot -c (the default) ÷ socat | %s | %s | %s | %s |\n",
				ratio(v[a, "rate8"], v[s, "rate8"]), ratio(v[a, "p50_1"], v[s, "p50_1"]), ratio(v[a, "cpu"], v[s, "cpu"]), ratio(v[a, "pssn"], v[s, "pssn"])
		}
		if (p in have) {
			printf "| %s | %s | %s | %s | %s |\n", name(p), fmt(v[p, "rate8"], 1), fmt(v[p, "p50_1"], 2), fmt(v[p, "cpu"], 2), fmt(mb(v[p, "pssn"]), 2)
			printf "| Dovecot's own STARTTLS ÷ the floor | %s | %s | %s | %s |\n",
				ratio(v[b, "rate8"], v[p, "rate8"]), ratio(v[b, "p50_1"], v[p, "p50_1"]), ratio(v[b, "cpu"], v[p, "cpu"]), ratio(v[b, "pssn"], v[p, "pssn"])
			printf "| imap-tls STARTTLS ÷ the floor | %s | %s | %s | %s |\n",
				ratio(v[a, "rate8"], v[p, "rate8"]), ratio(v[a, "p50_1"], v[p, "p50_1"]), ratio(v[a, "cpu"], v[p, "cpu"]), ratio(v[a, "pssn"], v[p, "pssn"])
		}
	}

	print ""
	print "### CPU per session by program"
	print ""
	if (nc == 0) {
		print "Not measured: perf does not work here (Debian: linux-perf)."
		exit
	}
	print "ms of CPU per session (and the share of the server side's), by command, from `perf record -a` at c=8;"
	print "the client (loadgen) and the rest of the machine are not counted in the server side: their rows show how"
	print "quiet the machine was."
	print ""
	printf "| program |"
	for (i = 0; i < n; i++) printf " %s |", short(ids[i])
	print ""
	printf "|---|"
	for (i = 0; i < n; i++) printf "---:|"
	print ""
	for (k = 1; k in sv; k++) {
		c = sv[k]
		if (!(c in seen)) continue
		printf "| %s |", c == "setuidgid-chroo" ? "setuidgid-chroot" : c == "stunnel-imap-si" ? "stunnel-imap-signer" : c
		for (i = 0; i < n; i++) {
			id = ids[i]
			x = v[id, "cpu." c]
			if (x == "" || num(x) < 0.005) printf " — |"
			else printf " %.2f (%.0f %%) |", x, 100 * x / cpu[id]
		}
		print ""
	}
	printf "| **the server side** |"
	for (i = 0; i < n; i++) printf " %s |", ids[i] in cpu ? "**" fmt(cpu[ids[i]], 2) "**" : "—"
	print ""
	printf "| not counted: the client (loadgen) |"
	for (i = 0; i < n; i++) printf " %s |", fmt(client[ids[i]], 2)
	print ""
	printf "| not counted: every other process |"
	for (i = 0; i < n; i++) printf " %s |", fmt(other[ids[i]], 2)
	print ""

	# Where the difference goes, STARTTLS: what TLS costs Dovecot's
	# imap-login (with its own TLS against behind imap-tls, where it does
	# none), against what imap-tls's own programs cost.
	if (ok(a, b, "cpu") && v[a, "cpu.imap-login"] != "" && v[b, "cpu.imap-login"] != "") {
		split("tcpserver makesock setuidgid-chroo stunnel-imap stunnel-imap-si socat", ours, " ")
		o = 0
		for (k = 1; k in ours; k++) o += v[a, "cpu." ours[k]]
		t = v[b, "cpu.imap-login"] - v[a, "cpu.imap-login"]
		print ""
		printf "STARTTLS: Dovecot's TLS costs its imap-login %.2f ms per session (%.2f ms with its own TLS, %.2f ms behind imap-tls, ", t, v[b, "cpu.imap-login"], v[a, "cpu.imap-login"]
		printf "where it does none); imap-tls's own programs (tcpserver, setuidgid-chroot, stunnel-imap, the signer, makesock where it runs) cost %.2f ms, ", o
		printf "%.2f ms more than the TLS they take off Dovecot.", o - t
		if (p in have && v[p, "cpu"] != "")
			printf " The floor, Dovecot with no TLS at all, costs %.2f ms per session: TLS adds %.2f ms done by Dovecot, %.2f ms done by imap-tls.", v[p, "cpu"], v[b, "cpu"] - v[p, "cpu"], v[a, "cpu"] - v[p, "cpu"]
		print ""
	}
}
