#!/usr/bin/env bash
# Load test on loopback: the example server (JSON-lines sink writing to a
# file) against the bare baseline, side by side, with wrk.
#   loadtest/run.sh [duration] [connections]
# Needs wrk (apt-get install wrk). Sends traffic to 127.0.0.1 only, for a
# bounded time, and stops the servers it started.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-20s}
conns=${2:-64}
tmp=$(mktemp -d)
trap 'kill $bare_pid $ot_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT

go build -o "$tmp/bare" ./loadtest/bare
go build -o "$tmp/server" ./examples/server

ADDR=127.0.0.1:8081 "$tmp/bare" & bare_pid=$!
PORT=8082 WRITE_KEY=wk OPENTRACK_FILE="$tmp/events.jsonl" "$tmp/server" 2>"$tmp/server.log" & ot_pid=$!
sleep 1

peak_rss() { awk '/VmHWM/ {print $2/1024 " MB"}' "/proc/$1/status"; }

echo "== bare net/http + json.Unmarshal into a map (pid $bare_pid)"
wrk -t2 -c"$conns" -d"$dur" -s loadtest/track.lua http://127.0.0.1:8081/v1/track
echo "peak RSS: $(peak_rss $bare_pid)"
echo
echo "== examples/server with the JSON-lines sink (pid $ot_pid)"
wrk -t2 -c"$conns" -d"$dur" -s loadtest/track.lua http://127.0.0.1:8082/v1/track
echo "peak RSS: $(peak_rss $ot_pid)"
kill -TERM $ot_pid; wait $ot_pid || true
echo "lines written: $(wc -l < "$tmp/events.jsonl")"
grep '"delivery"' "$tmp/server.log" || true
