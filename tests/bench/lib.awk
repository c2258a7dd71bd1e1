# lib.awk: the number formats report.awk and dovecot.awk share (awk -f
# tests/bench/lib.awk -f the report's own file).

# num: a figure as a number ("" is 0).
function num(x) { return x + 0 }
# fmt: x with d decimals; an empty figure (not measured) is a dash.
function fmt(x, d) { return x == "" ? "—" : sprintf("%." d "f", x) }
# mb: kB to MB, "" kept.
function mb(kb) { return kb == "" ? "" : kb / 1024 }
# ratio: a ÷ b as "1.23×" (ten and more without decimals), a dash when
# either is missing or b is 0.
function ratio(a, b,   r) {
	if (a == "" || b == "" || num(b) == 0) return "—"
	r = num(a) / num(b)
	return r >= 10 ? sprintf("%.0f×", r) : sprintf("%.2f×", r)
}
