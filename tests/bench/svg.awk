# svg.awk: the bench's two pictures, as plain SVG, from its own figures.
#
#   awk -F'\t' -v kind=lines -v title=... -v xlabel=... -v ylabel=... -f svg.awk data >out.svg
#       data: "series<TAB>x<TAB>y" lines; x on a log2 axis (concurrency),
#       one line and one legend entry per series, in order of appearance
#   awk -F'\t' -v kind=bars -v title=... -v xlabel=... -f svg.awk data >out.svg
#       data: "label<TAB>value" lines, one horizontal bar each, value
#       printed at its end
#
# No dependency but awk; the output is deterministic for given input.

function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
# nice: a round number at or above x for the top of an axis.
function nice(x,   p, m) {
	if (x <= 0) return 1
	p = 1
	while (p * 10 <= x) p *= 10
	while (p > x) p /= 10
	m = x / p
	if (m <= 1) return p
	if (m <= 2) return 2 * p
	if (m <= 2.5) return 2.5 * p
	if (m <= 5) return 5 * p
	return 10 * p
}
function log2(x) { return log(x) / log(2) }
BEGIN {
	split("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #7f7f7f #17becf #bcbd22", color, " ")
}
kind == "lines" && NF >= 3 && $2 + 0 > 0 {
	s = $1
	if (!(s in seen)) { seen[s] = ++ns; sname[ns] = s }
	k = seen[s]
	np[k]++
	px[k, np[k]] = $2 + 0
	py[k, np[k]] = $3 + 0
	if ($3 + 0 > ymax) ymax = $3 + 0
	if (xmin == "" || $2 + 0 < xmin) xmin = $2 + 0
	if ($2 + 0 > xmax) xmax = $2 + 0
}
kind == "bars" && NF >= 2 {
	nb++
	blabel[nb] = $1
	bval[nb] = $2 + 0
	if ($2 + 0 > ymax) ymax = $2 + 0
}
END {
	if (kind == "lines") lines(); else bars()
}
function header(w, h) {
	printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", w, h, w, h
	printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h
	printf "<text x=\"%d\" y=\"20\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n", w / 2, esc(title)
}
function lines(   w, h, l, r, t, b, top, i, j, k, x, y, pts, ticks, lx, ly) {
	w = 760; h = 440; l = 60; r = 250; t = 36; b = 50
	if (ns == 0) { xmin = xmax = 1 } # no figures: the axes alone
	top = nice(ymax)
	header(w, h)
	# grid and y labels
	for (i = 0; i <= 5; i++) {
		y = h - b - (h - t - b) * i / 5
		printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", l, y, w - r, y
		printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", l - 6, y + 4, top * i / 5
	}
	# x ticks at each power of two from xmin to xmax
	for (x = xmin; x <= xmax; x *= 2) {
		lx = l + (w - l - r) * (xmax == xmin ? 0 : (log2(x) - log2(xmin)) / (log2(xmax) - log2(xmin)))
		printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", lx, t, lx, h - b
		printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", lx, h - b + 16, x
	}
	printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", l + (w - l - r) / 2, h - 12, esc(xlabel)
	printf "<text x=\"14\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">%s</text>\n", t + (h - t - b) / 2, t + (h - t - b) / 2, esc(ylabel)
	for (k = 1; k <= ns; k++) {
		pts = ""
		for (j = 1; j <= np[k]; j++) {
			lx = l + (w - l - r) * (xmax == xmin ? 0 : (log2(px[k, j]) - log2(xmin)) / (log2(xmax) - log2(xmin)))
			ly = h - b - (h - t - b) * py[k, j] / top
			pts = pts sprintf("%.1f,%.1f ", lx, ly)
			printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", lx, ly, color[(k - 1) % 10 + 1]
		}
		printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", pts, color[(k - 1) % 10 + 1]
		ly = t + 10 + (k - 1) * 20
		printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n", w - r + 14, ly, w - r + 34, ly, color[(k - 1) % 10 + 1]
		printf "<text x=\"%d\" y=\"%d\">%s</text>\n", w - r + 40, ly + 4, esc(sname[k])
	}
	print "</svg>"
}
function bars(   w, h, l, r, t, b, top, i, y, bw, barh, x) {
	w = 760; l = 300; r = 60; t = 36; b = 44; barh = 22
	h = t + b + nb * (barh + 8)
	top = nice(ymax)
	header(w, h)
	for (i = 0; i <= 5; i++) {
		x = l + (w - l - r) * i / 5
		printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, t, x, h - b
		printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x, h - b + 16, top * i / 5
	}
	printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", l + (w - l - r) / 2, h - 8, esc(xlabel)
	for (i = 1; i <= nb; i++) {
		y = t + (i - 1) * (barh + 8) + 4
		bw = (w - l - r) * bval[i] / top
		printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", l, y, bw, barh, color[(i - 1) % 10 + 1]
		printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", l - 6, y + barh - 6, esc(blabel[i])
		printf "<text x=\"%.1f\" y=\"%d\">%.2f</text>\n", l + bw + 4, y + barh - 6, bval[i]
	}
	print "</svg>"
}
