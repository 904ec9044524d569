# written by aaax_vs; run from /work/wt6/bench/results: gnuplot latest.gp
set terminal pngcairo size 1400,1000 font ',10'
set output 'latest.png'
set multiplot layout 2,2 title 'aaax side by side (medians of 5 rounds, servers CPU 0, clients CPU 1)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set termoption noenhanced
set grid ytics
set key top right
set yrange [0:*]
set title 'broadcast: published msgs/s (higher is better)'
set format y '%.1s%c'
plot 'latest-bcast.dat' using 2:xtic(1) title 'aaax (batched)', '' using 3 title 'raw zmq_proxy', '' using 4 title 'NATS core', '' using 5 title 'Redis pub/sub', '' using 6 title 'aaax (1 WRITE per message)'
set title 'durable work queue e2e msgs/s (higher is better)'
set xtics rotate by -20
plot 'latest-queue.dat' using 2:xtic(1) notitle lc rgb '#4477aa'
set format y '%g'
set title 'request/reply round trip, us (lower is better)'
plot 'latest-rtt.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99'
unset multiplot
