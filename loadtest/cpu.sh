# Sourced by the load scripts: a process's CPU time per request.
# cpu_ticks prints the CPU time a process has used (user + system, fields
# 14 and 15 of /proc/PID/stat, counted after the parenthesised name), in
# clock ticks; per_request turns a difference of two into µs per request.
# The end is read a second after wrk stops, so that the work left over
# (deliveries, acknowledgements) counts too.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
tck=$(getconf CLK_TCK)
per_request() { awk -v t="$1" -v n="$2" -v hz="$tck" 'BEGIN {if (n > 0 && t >= 0) printf "%.0fus", t * 1e6 / hz / n; else printf "n/a"}'; }
