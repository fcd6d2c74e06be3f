#!/usr/bin/env bash
# Load test on loopback: the example server with its queue in memory and on
# its journal (the JSON-lines sink writing to a file) against the bare
# baseline, side by side, with wrk, in rounds.
#   loadtest/run.sh [duration] [connections] [rounds] [modes]
# modes is a space-separated list of: bare memory journal (default all three).
# Needs wrk (apt-get install wrk). Sends traffic to 127.0.0.1 only, for a
# bounded time, and stops the servers it started.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-20s}
conns=${2:-64}
rounds=${3:-1}
modes=${4:-"bare memory journal"}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT

# Static binaries, as a container image would hold them: a cgo build
# maps libc too, about 2 MB more of RSS.
export CGO_ENABLED=0
go build -o "$tmp/bare" ./loadtest/bare
go build -o "$tmp/server" ./examples/server

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
peak_rss() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
. loadtest/cpu.sh # cpu_ticks, per_request

printf '%-8s %-6s %12s %9s %9s %10s %9s\n' mode round 'requests/s' p50 p99 'peak RSS' 'CPU/req'
for round in $(seq "$rounds"); do
	for mode in $modes; do
		rm -rf "$tmp/data" "$tmp/events.jsonl"
		case $mode in
		bare) ADDR=127.0.0.1:8081 "$tmp/bare" & pid=$!; port=8081 ;;
		memory | journal)
			PORT=8082 ADMIN_ADDR=127.0.0.1:9092 WRITE_KEY=wk OPENTRACK_QUEUE=$mode OPENTRACK_DATA_DIR="$tmp/data" \
				OPENTRACK_FILE="$tmp/events.jsonl" "$tmp/server" 2>"$tmp/server-$mode.log" & pid=$!
			port=8082 ;;
		*) echo "unknown mode $mode" >&2; exit 2 ;;
		esac
		wait_port $port
		c0=$(cpu_ticks $pid)
		out=$(wrk -t2 -c"$conns" -d"$dur" --latency -s loadtest/track.lua "http://127.0.0.1:$port/v1/track")
		sleep 1
		c1=$(cpu_ticks $pid)
		cpu=$(per_request $((c1 - c0)) "$(awk '/requests in/ {print $1}' <<<"$out")")
		rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		p50=$(awk '$1=="50%" {print $2}' <<<"$out")
		p99=$(awk '$1=="99%" {print $2}' <<<"$out")
		non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
		printf '%-8s %-6s %12s %9s %9s %10s %9s %s\n' "$mode" "$round" "$rps" "$p50" "$p99" "$(peak_rss $pid)" "$cpu" "${non2xx:+non-2xx: $non2xx}"
		kill -TERM $pid; wait $pid || true; pid=""
		if [ "$mode" != bare ]; then
			echo "         lines written: $(wc -l <"$tmp/events.jsonl")"
		fi
	done
done
