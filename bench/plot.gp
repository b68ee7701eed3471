# bench/plot.gp - throughput against thread count, one PNG per workload.
# bench/run.sh calls it as
#   gnuplot -e "infile='plot-read.dat'; outfile='bench-read.png'; ttl='...'; ncol=9; nctx=3" plot.gp
# infile: a header line (threads, then one name per engine), then one row per
# thread count, "?" where a cell is missing. Columns 2..nctx+1 are ctx's.
set terminal pngcairo size 960,560 font ",10"
set output outfile
set title ttl noenhanced
set datafile missing "?"
set logscale x 2
set logscale y 10
set xtics (1, 2, 4, 8, 16, 32, 64)
set format y "10^{%T}"
set xlabel "threads (log scale)"
set ylabel "median ops/s (log scale)"
set grid xtics ytics mytics
set key outside right top noenhanced
set xrange [0.8:80]
# ctx: thick solid lines; peers: thin dashed ones. (A dashtype given as
# "(expr)" would be read as a dash pattern, hence the functions.)
isctx(i) = i <= nctx + 1
width(i) = isctx(i) ? 2.5 : 1.2
colors = "#7b2cbf #1b9e77 #1f78b4 #e66101 #8c510a #c51b7d #d7301f #636363 #000000"
color(i) = word(colors, i - 1)
dash(i) = isctx(i) ? 1 : 2
plot for [i=2:ncol] infile using 1:i with linespoints \
     lw width(i) lc rgb color(i) dt dash(i) pt (i - 1) ps 1.2 title columnheader(i)
