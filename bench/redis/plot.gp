# bench/redis/plot.gp - the plots of bench/redis/report.sh:
#   gnuplot -e "outdir='DIR'; names='always batch none'" plot.gp
# DIR/ops-NAME.dat: "COMMAND LOAD" ctxd_ops redis_ops, one row per cell;
# DIR/ratio.dat: "COMMAND LOAD" ratio_always ratio_batch ratio_none.
set terminal pngcairo size 1100,900 font ",10"
set output outdir . "/bench-server-ops.png"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set format y "10^{%T}"
set grid ytics mytics
set yrange [100:*]
set xtics rotate by -30 noenhanced
set key top left noenhanced
n = words(names)
set multiplot layout n, 1 title "redis-benchmark: median ops/s, ctxd (every core) and Redis 7.0 (one thread)"
do for [i = 1:n] {
	d = word(names, i)
	set title sprintf("durability %s (Redis: %s)", d, \
	    d eq "always" ? "appendfsync always" : d eq "batch" ? "appendfsync everysec" : "no AOF, no RDB") noenhanced
	plot outdir . "/ops-" . d . ".dat" using 2:xtic(1) title "ctxd" lc rgb "#7b2cbf", \
	     "" using 3 title "redis-server" lc rgb "#d7301f"
}
unset multiplot

set terminal pngcairo size 1100,500 font ",10"
set output outdir . "/bench-server-ratio.png"
unset logscale y
set format y "%g"
set yrange [0:*]
set title "ctxd ops/s ÷ Redis ops/s (medians); goals: 1.0 everywhere, 1.5 at 64 clients" noenhanced
set key outside right top
plot outdir . "/ratio.dat" using 2:xtic(1) title "always" lc rgb "#1f78b4", \
     "" using 3 title "batch / everysec" lc rgb "#1b9e77", \
     "" using 4 title "none / no persistence" lc rgb "#e66101", \
     1 with lines lw 2 lc rgb "#000000" dt 2 title "1.0", \
     1.5 with lines lw 2 lc rgb "#636363" dt 3 title "1.5"
