#!/usr/bin/env bash
# bench/redis/report.sh RAW.csv ENV.txt OUTDIR quick|full
#
# Turns the raw rows of bench/redis/run.sh (one per round, durability,
# command, load and server) into medians over the rounds, a markdown report
# (OUTDIR/report.md: settings, goals, the table), gnuplot data and two plots
# (OUTDIR/bench-server-ops.png, OUTDIR/bench-server-ratio.png), and prints the
# report. In full mode it also copies the plots to docs/ and puts the report
# between the markers of "ctxd against Redis" in docs/benchmarks.md.
set -euo pipefail

raw=${1:?usage: report.sh RAW.csv ENV.txt OUTDIR quick|full}
envf=$2
out=$3
mode=$4
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/redis
mkdir -p "$out"
rm -f "$out"/*.dat "$out"/*.png
[ -s "$raw" ] || { echo "report.sh: no $raw" >&2; exit 2; }

# medians: one row per durability, command, load: the ctxd and Redis medians.
med=$out/medians.csv
awk -F, -v OFS=, '
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
NR == 1 { next }
{
	k = $2 SUBSEP $3 SUBSEP $4 SUBSEP $5
	if (!(k in rps)) { order[++nk] = k }
	rps[k] = rps[k] " " $7; p50[k] = p50[k] " " $10; p99[k] = p99[k] " " $12
	scpu[k] = scpu[k] " " $14; ccpu[k] = ccpu[k] " " $15; oth[k] = oth[k] " " $16
	nr[k]++
}
END {
	print "durability,command,load,server,rounds,rps,p50_ms,p99_ms,server_cpus,client_cpus,other_cpus"
	for (i = 1; i <= nk; i++) {
		k = order[i]; split(k, f, SUBSEP)
		print f[1], f[2], f[3], f[4], nr[k], median(rps[k]), median(p50[k]), median(p99[k]),
		      median(scpu[k]), median(ccpu[k]), median(oth[k])
	}
}' "$raw" >"$med"

# the report and the plot data
awk -F, -v out="$out" -v mode="$mode" '
function ops(x) {
	if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
	if (x >= 1e4) return sprintf("%.0fk", x / 1e3)
	return x >= 1e3 ? sprintf("%.1fk", x / 1e3) : sprintf("%.0f", x)
}
function us(ms) { return ms * 1000 >= 10 ? sprintf("%.0f", ms * 1000) : sprintf("%.1f", ms * 1000) }
function ratio(x) { return x >= 10 ? sprintf("%.0f×", x) : sprintf("%.2f×", x) }
function lname(l,   a) {
	if (split(l, a, "x") == 2) return a[1] " × P" a[2]
	return l
}
function cname(c) { return toupper(c) }
NR == 1 { next }
{
	k = $1 SUBSEP $2 SUBSEP $3
	if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
	rps[k, $4] = $6; p50[k, $4] = $7; p99[k, $4] = $8; scpu[k, $4] = $9
	ccpu[k, $4] = $10; oth[k, $4] = $11; rounds = $5
}
END {
	worst = 1e99; worst64 = 1e99; nbelow = 0; nbelow64 = 0; n64 = 0; np99 = 0; wp99 = 0
	tbl = "| durability | command | clients | ctxd ops/s | Redis ops/s | ctxd ÷ Redis | ctxd p50 / p99 µs | Redis p50 / p99 µs | p99 ctxd ÷ Redis | CPUs: ctxd / Redis / client / others |\n"
	tbl = tbl "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n"
	for (i = 1; i <= nk; i++) {
		k = order[i]; split(k, f, SUBSEP)
		c = rps[k, "ctx"]; r = rps[k, "redis"]
		if (c == "" || r == "" || r == 0) continue
		q = c / r
		pr = p99[k, "redis"] > 0 ? p99[k, "ctx"] / p99[k, "redis"] : 1
		cell = f[1] ", " cname(f[2]) ", " lname(f[3]) " clients"
		if (q < worst) { worst = q; wcell = cell }
		if (q < 1) nbelow++
		if (f[3] == "64") {
			n64++
			if (q < worst64) { worst64 = q; w64cell = cell }
			if (q < 1.5) nbelow64++
		}
		if (p99[k, "ctx"] > p99[k, "redis"]) {
			np99++
			if (pr > wp99) { wp99 = pr; wp99cell = cell }
		}
		tbl = tbl sprintf("| %s | %s | %s | %s | %s | **%s** | %s / %s | %s / %s | %s | %.2f / %.2f / %.2f / %.2f |\n",
		    f[1], cname(f[2]), lname(f[3]), ops(c), ops(r), ratio(q),
		    us(p50[k, "ctx"]), us(p99[k, "ctx"]), us(p50[k, "redis"]), us(p99[k, "redis"]),
		    ratio(pr), scpu[k, "ctx"], scpu[k, "redis"], (ccpu[k, "ctx"] + ccpu[k, "redis"]) / 2,
		    (oth[k, "ctx"] + oth[k, "redis"]) / 2)
		label = cname(f[2]) " " f[3]
		print "\"" label "\"", c, r > (out "/ops-" f[1] ".dat")
		rat[f[2] " " f[3], f[1]] = q
		if (!((f[2] " " f[3]) in rl)) { rl[f[2] " " f[3]] = 1; rlo[++nrl] = f[2] " " f[3] }
	}
	for (i = 1; i <= nrl; i++) {
		split(rlo[i], a, " ")
		printf "\"%s %s\" %s %s %s\n", cname(a[1]), a[2], rat[rlo[i], "always"] + 0,
		       rat[rlo[i], "batch"] + 0, rat[rlo[i], "none"] + 0 > (out "/ratio.dat")
	}
	g = "| goal | worst cell | ratio | result |\n|---|---|--:|---|\n"
	g = g sprintf("| ctxd ops/s ≥ 1.0× Redis in every cell | %s | %s | %s |\n", wcell, ratio(worst),
	    nbelow ? "**missed** in " nbelow " of " nk " cells" : "met")
	if (n64)
		g = g sprintf("| ctxd ops/s ≥ 1.5× Redis at 64 clients | %s | %s | %s |\n", w64cell,
		    ratio(worst64), nbelow64 ? "**missed** in " nbelow64 " of " n64 " cells" : "met")
	g = g sprintf("| ctxd p99 ≤ Redis p99 in every cell | %s | %s | %s |\n",
	    np99 ? wp99cell : "-", np99 ? ratio(wp99) : "-",
	    np99 ? "**missed** in " np99 " of " nk " cells" : "met")
	printf "%s", g > (out "/goals.md")
	printf "%s", tbl > (out "/table.md")
	printf "\nCPUs: the median over the rounds of the CPU time each used divided by the duration of the measurement (ctxd and Redis: the server process, all threads; client: redis-benchmark, the mean of its two runs; others: the busy time of the machine minus that of the server and the client, the mean of the two runs).\n" >> (out "/table.md")
	printf "%d\n", rounds > (out "/rounds.txt")
}' "$med"

# plots
names=""
for d in always batch none; do
	[ -s "$out/ops-$d.dat" ] && names+="$d "
done
gnuplot -e "outdir='$out'; names='${names% }'" "$here/plot.gp"

# the report
{
	echo "### Machine and settings"
	echo
	sed 's/^/- /' "$envf"
	echo
	echo "### Goals"
	echo
	cat "$out/goals.md"
	echo
	echo "### Results (median of $(cat "$out/rounds.txt") round(s))"
	echo
	if [ "$mode" = full ]; then
		echo "![ctxd and Redis ops/s](bench-server-ops.png)"
		echo
		echo "![ctxd ÷ Redis](bench-server-ratio.png)"
		echo
	fi
	cat "$out/table.md"
} >"$out/report.md"
cat "$out/report.md"

if [ "$mode" = full ]; then
	cp "$out/bench-server-ops.png" "$out/bench-server-ratio.png" "$root/docs/"
	doc=$root/docs/benchmarks.md
	begin='<!-- BEGIN GENERATED by bench/redis/run.sh: do not edit by hand -->'
	end='<!-- END GENERATED by bench/redis/run.sh -->'
	grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" ||
		{ echo "report.sh: no generated markers in $doc" >&2; exit 1; }
	awk -v b="$begin" -v e="$end" -v f="$out/report.md" '
		$0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
		$0 == e { skip = 0 }
		!skip' "$doc" >"$doc.tmp"
	mv "$doc.tmp" "$doc"
	echo "report.sh: wrote docs/bench-server-*.png and the generated part of docs/benchmarks.md" >&2
fi
