# report.awk: bench.sh's results (one line per system: "id key=value ...")
# into BENCHMARKS.md's tables, ratios and issue 5's targets against the
# peers. (Issue 6's before and after, the chain against the chain without
# its key process, went with that chain: every chain measured now is the
# one imap-tls-server spells; BENCHMARKS.md of that run keeps the figures.)
# Issue 20's rows have the server at one address (ataddr), and its target
# line: the shipped service at least 1.5x stunnel 5 implicit (connect =)
# and tlswrapper (stdio, the only way it runs a server).
# Variables: rounds, secs, size, hold.

function name(id) {
	if (id == "plain") return "plaintext: tcpserver → fakeimapd"
	if (id == "stunnel-starttls") return "stunnel 5, STARTTLS (`protocol = imap`)"
	if (id == "stunnel-implicit") return "stunnel 5, implicit TLS"
	if (id == "tlswrapper") return "tlswrapper, implicit TLS"
	if (id == "chain-starttls") return "**imap-tls, STARTTLS** (`-n imap`)"
	if (id == "chain-implicit") return "**imap-tls, implicit TLS**"
	if (id == "chain-pop3") return "**imap-tls, POP3 STLS** (`-n pop3`)"
	if (id == "keyproc-starttls") return "imap-tls, STARTTLS, a key process per connection (`-k`, env/SIGNER empty)"
	if (id == "stunnel-pop3") return "stunnel 5, POP3 STLS (`protocol = pop3`)"
	if (id == "chain-addr-starttls") return "**imap-tls, STARTTLS, server at an address (the default chain)**"
	if (id == "chain-addr-implicit") return "**imap-tls, implicit TLS, server at an address (the default chain)**"
	if (id == "stunnel-connect-starttls") return "stunnel 5, STARTTLS (`protocol = imap`), `connect =`"
	if (id == "stunnel-connect-implicit") return "stunnel 5, implicit TLS, `connect =`"
	return id
}

# ataddr: a row whose system connects the server at one address (the
# backend, a tcpserver of its own in front of fakeimapd), rather than
# running fakeimapd as a program per connection: the backend is outside
# its CPU figure, which compares only with the other such rows.
function ataddr(id) { return id ~ /^(chain-addr|stunnel-connect)-/ }

# peer: the stunnel 5 system of the same mode and the same backend.
function peer(id) {
	if (id ~ /^stunnel-connect-/) return ""
	if (ataddr(id)) return "stunnel-connect-" v[id, "mode"]
	if (v[id, "mode"] == "starttls") return "stunnel-starttls"
	if (v[id, "mode"] == "implicit") return "stunnel-implicit"
	if (v[id, "mode"] == "pop3-starttls") return "stunnel-pop3"
	return ""
}

# num, fmt, mb, ratio: tests/bench/lib.awk.
function check(ok, text) {
	printf "- %s %s\n", (ok ? "met:" : "**missed:**"), text
}
# procs: processes serving one connection in handshake / held.
function procs(id) {
	if (v[id, "procs"] == "" && v[id, "procs_hs"] == "") return "—"
	return (v[id, "procs_hs"] == "" ? "—" : v[id, "procs_hs"]) " / " (v[id, "procs"] == "" ? "—" : v[id, "procs"])
}
function comms(id,   c) {
	c = v[id, "comms"]
	if (num(v[id, "zombies"]) > 0) c = c sprintf(" (+%d zombie)", v[id, "zombies"])
	return c
}

{
	id = $1
	ids[n++] = id
	for (i = 2; i <= NF; i++) {
		k = $i; sub(/=.*/, "", k)
		x = $i; sub(/^[^=]*=/, "", x)
		v[id, k] = x
	}
	# have: the systems with figures. A system bench.sh could not
	# measure ("failed=yes") keeps its row of dashes, but is no reference
	# for a ratio and no side of a target: a missing figure is not a met one.
	if (v[id, "failed"] != "yes") have[id] = 1
}

END {
	print "## Results"
	print ""
	printf "Medians of %d rounds (%s s each for sessions/s); latency is a whole session's, connect to LOGOUT's OK; ", rounds, secs
	printf "bulk is one FETCH of a %s message; PSS is the processes serving one held session, the backend excluded, ", size
	printf "then per session with %d held at once (after LOGIN), and per session with %d held just before the TLS handshake, ", hold, hold
	printf "when imap-tls's key process is still there; processes are those serving one connection, the backend excluded, "
	print "in handshake / held after LOGIN."
	print ""
	print "Most rows run fakeimapd as a program per connection (tcpserver → system → fakeimapd). The rows"
	print "\"server at an address\" and `connect =` connect one address instead: fakeimapd behind a tcpserver of its own,"
	print "started once (the backend). imap-tls's is the shipped default's form, the proxy's setuidgid-chroot"
	print "connecting the server (`-c 3:ADDRESS`, no makesock); tlswrapper can only exec a program, so its stdio row"
	print "is the reference for these rows. The backend's tcpserver and fakeimapd are a separate process tree,"
	print "outside these rows' server-side CPU and PSS: their CPU column compares among them, not with the stdio rows."
	print ""
	print "| system | procs, handshake / held | c=1 sessions/s | p50 ms | p99 ms | c=8 sessions/s | p50 ms | p99 ms | bulk MB/s | PSS MB, 1 held | PSS MB per session, " hold " held | PSS MB per session, " hold " in handshake |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 0; i < n; i++) {
		id = ids[i]
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name(id), procs(id),
			fmt(v[id, "rate1"], 1), fmt(v[id, "p50_1"], 2), fmt(v[id, "p99_1"], 2),
			fmt(v[id, "rate8"], 1), fmt(v[id, "p50_8"], 2), fmt(v[id, "p99_8"], 2),
			fmt(v[id, "mbps"], 0), fmt(mb(v[id, "pss1"]), 2), fmt(mb(v[id, "pssn"]), 2), fmt(mb(v[id, "psshsn"]), 2)
	}
	print ""
	print "Where a session's time goes (p50, ms, at concurrency 1): until the greeting, and the TLS handshake alone."
	print "Processes serving one connection, by name, in handshake and held after LOGIN (a zombie is a process that"
	print "has exited and that its parent has not reaped yet: it holds no memory)."
	print ""
	print "CPU: the CPU time of the whole server side (tcpserver, the system, the backend) per session at c=8,"
	print "from perf stat, the median of " rounds " rounds; then less the plaintext baseline's, which leaves what TLS"
	print "and the proxy cost. For the rows with the server at an address, tcpserver and the system only (with imap-tls's"
	print "signer, as for every imap-tls row): the backend is outside, so no baseline is taken off."
	print ""
	print "| system | greeting c=1 | handshake c=1 | greeting c=8 | handshake c=8 | CPU ms/session | less baseline | failed sessions | processes in handshake | held |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
	for (i = 0; i < n; i++) {
		id = ids[i]
		extra = ""
		if (v[id, "cpu"] != "" && v["plain", "cpu"] != "" && id != "plain" && !ataddr(id)) extra = v[id, "cpu"] - v["plain", "cpu"]
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name(id), fmt(v[id, "greet1"], 2), fmt(v[id, "tls1"], 2),
			fmt(v[id, "greet8"], 2), fmt(v[id, "tls8"], 2), fmt(v[id, "cpu"], 2), fmt(extra, 2),
			id in have ? num(v[id, "err1"]) + num(v[id, "err8"]) : "—", v[id, "comms_hs"], comms(id)
	}
	for (pass = 0; pass < 2; pass++) {
		print ""
		if (pass == 0) {
			print "### Ratios to stunnel 5 in the same mode"
			print ""
			print "The rows with the server at an address against stunnel 5 with `connect =`, the others against its `exec`."
		} else {
			print "### Ratios to the plaintext baseline"
		}
		print ""
		print "Figure ÷ reference: above 1 is better for sessions/s and MB/s, below 1 is better for latency and memory."
		print ""
		print "| system | c=1 sessions/s | c=1 p50 | c=8 sessions/s | c=8 p50 | bulk | PSS, 1 held | PSS, " hold " held | PSS, " hold " in handshake | CPU/session |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 0; i < n; i++) {
			id = ids[i]
			ref = pass == 0 ? peer(id) : "plain"
			if (ref == "" || !(ref in have) || ref == id) continue
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name(id),
				ratio(v[id, "rate1"], v[ref, "rate1"]), ratio(v[id, "p50_1"], v[ref, "p50_1"]),
				ratio(v[id, "rate8"], v[ref, "rate8"]), ratio(v[id, "p50_8"], v[ref, "p50_8"]),
				ratio(v[id, "mbps"], v[ref, "mbps"]),
				pass == 0 ? ratio(v[id, "pss1"], v[ref, "pss1"]) : "—",
				pass == 0 ? ratio(v[id, "pssn"], v[ref, "pssn"]) : "—",
				pass == 0 ? ratio(v[id, "psshsn"], v[ref, "psshsn"]) : "—",
				pass == 1 && ataddr(id) ? "—" : ratio(v[id, "cpu"], v[ref, "cpu"])
		}
	}
	print ""
	print "## Targets (issues 5 and 20)"
	print ""
	print "Issue 5's, on the rows with fakeimapd as a program per connection:"
	print ""
	c = "chain-starttls"; ci = "chain-implicit"; s = "stunnel-starttls"; si = "stunnel-implicit"
	if (!(c in have) || !(s in have) || !(si in have) || !("plain" in have))
		print "Not evaluated: this run lacks the chain, stunnel 5 or the baseline."
	else
		targets5()
	print ""
	print "Issue 20's, the shipped service (STARTTLS, the default chain: the server at an address) against"
	print "stunnel 5's implicit TLS with `connect =` and tlswrapper (stdio: it can only exec a program):"
	print ""
	a = "chain-addr-starttls"; sc = "stunnel-connect-implicit"
	if (!(a in have) || !(sc in have) || !("tlswrapper" in have)) {
		print "Not evaluated: this run lacks the default chain, stunnel 5 with `connect =` or tlswrapper."
		exit
	}
	oks = num(v[a, "rate8"]) >= 1.5 * num(v[sc, "rate8"])
	okt = num(v[a, "rate8"]) >= 1.5 * num(v["tlswrapper", "rate8"])
	check(oks && okt,
		sprintf("issue 20: the shipped service (STARTTLS, default chain) at c=8 at least 1.5× stunnel 5 implicit (`connect =`) and at least 1.5× tlswrapper: %s/s vs %s/s, %s; vs %s/s, %s%s",
			v[a, "rate8"], v[sc, "rate8"], ratio(v[a, "rate8"], v[sc, "rate8"]),
			v["tlswrapper", "rate8"], ratio(v[a, "rate8"], v["tlswrapper", "rate8"]),
			oks == okt ? "" : oks ? " (met against stunnel 5, missed against tlswrapper)" : " (missed against stunnel 5, met against tlswrapper)"))
}

# targets5: issue 5's targets, on the stdio rows (c, ci, s, si set).
function targets5() {
	check(num(v[c, "rate8"]) >= 6 * num(v[s, "rate8"]),
		sprintf("STARTTLS sessions/s at c=8 at least 6× stunnel 5's STARTTLS: %s/s vs %s/s, %s", v[c, "rate8"], v[s, "rate8"], ratio(v[c, "rate8"], v[s, "rate8"])))
	check(num(v[c, "rate8"]) >= 1.5 * num(v[si, "rate8"]),
		sprintf("STARTTLS sessions/s at c=8 at least 1.5× stunnel 5's implicit TLS: %s/s vs %s/s, %s", v[c, "rate8"], v[si, "rate8"], ratio(v[c, "rate8"], v[si, "rate8"])))
	check(num(v[c, "p50_1"]) < 10,
		sprintf("STARTTLS p50 latency at c=1 under 10 ms: %s ms", v[c, "p50_1"]))
	check(num(v[c, "mbps"]) >= 2 * num(v[s, "mbps"]),
		sprintf("bulk (STARTTLS) at least 2× stunnel 5: %s vs %s MB/s, %s", v[c, "mbps"], v[s, "mbps"], ratio(v[c, "mbps"], v[s, "mbps"])))
	if (ci in have)
		check(num(v[ci, "mbps"]) >= 2 * num(v[si, "mbps"]),
			sprintf("bulk (implicit) at least 2× stunnel 5: %s vs %s MB/s, %s", v[ci, "mbps"], v[si, "mbps"], ratio(v[ci, "mbps"], v[si, "mbps"])))
	check(num(v[c, "mbps"]) >= 0.6 * num(v["plain", "mbps"]),
		sprintf("bulk at least 0.6× the plaintext baseline: %s vs %s MB/s, %s", v[c, "mbps"], v["plain", "mbps"], ratio(v[c, "mbps"], v["plain", "mbps"])))
	check(num(v[c, "pssn"]) <= 0.5 * num(v[s, "pssn"]),
		sprintf("PSS per held session at most half of stunnel 5's, %d held: %.2f vs %.2f MB, %s", hold, mb(v[c, "pssn"]), mb(v[s, "pssn"]), ratio(v[c, "pssn"], v[s, "pssn"])))
	check(num(v[c, "pss1"]) <= 0.5 * num(v[s, "pss1"]),
		sprintf("the same with one session held: %.2f vs %.2f MB, %s", mb(v[c, "pss1"]), mb(v[s, "pss1"]), ratio(v[c, "pss1"], v[s, "pss1"])))
}
