#!/usr/bin/env bash
# Load test on loopback: the example server on a JetStream stream (one
# nats-server, R1) against the bare baseline, side by side, with wrk.
#   loadtest/run-jetstream.sh [duration] [connections]
# Needs wrk (apt-get install wrk). Uses Debian's nats-server when installed,
# else builds one from the module. Sends traffic to 127.0.0.1 only, for a
# bounded time, and stops the processes it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
conns=${2:-64}
tmp=$(mktemp -d)
bare_pid= ot_pid= nats_pid=
trap 'for p in $ot_pid $bare_pid $nats_pid; do kill $p 2>/dev/null || true; done; rm -rf "$tmp"' EXIT

nats=$(command -v nats-server || true)
if [ -z "$nats" ]; then
  nats="$tmp/nats-server"
  go build -o "$nats" github.com/nats-io/nats-server/v2
fi
go build -o "$tmp/bare" ./loadtest/bare
go build -o "$tmp/server" ./examples/server

"$nats" -a 127.0.0.1 -p 4322 -js -sd "$tmp/nats" 2>"$tmp/nats.log" & nats_pid=$!
for _ in $(seq 100); do
  grep -q 'Server is ready' "$tmp/nats.log" 2>/dev/null && break
  sleep 0.1
done
ADDR=127.0.0.1:8081 "$tmp/bare" & bare_pid=$!
PORT=8082 WRITE_KEY=wk OPENTRACK_FILE="$tmp/events.jsonl" NATS_URL=nats://127.0.0.1:4322 \
  "$tmp/server" 2>"$tmp/server.log" & ot_pid=$!
for _ in $(seq 100); do
  grep -q '"opentrack listening"' "$tmp/server.log" 2>/dev/null && break
  sleep 0.1
done

peak_rss() { awk '/VmHWM/ {print $2/1024 " MB"}' "/proc/$1/status"; }

echo "== bare net/http + json.Unmarshal into a map (pid $bare_pid)"
wrk -t2 -c"$conns" -d"$dur" --latency -s loadtest/track.lua http://127.0.0.1:8081/v1/track
echo "peak RSS: $(peak_rss $bare_pid)"
echo
echo "== examples/server on a JetStream stream (R1), JSON-lines sink (pid $ot_pid, nats-server pid $nats_pid)"
wrk -t2 -c"$conns" -d"$dur" --latency -s loadtest/track.lua http://127.0.0.1:8082/v1/track
echo "peak RSS: $(peak_rss $ot_pid) (collector), $(peak_rss $nats_pid) (nats-server)"
kill -TERM $ot_pid; wait $ot_pid || true
ot_pid=
echo "lines written: $(wc -l < "$tmp/events.jsonl"), of which repeated messageIds: $(grep -o '"messageId":"[^"]*"' "$tmp/events.jsonl" | sort | uniq -d | wc -l)"
grep '"delivery"' "$tmp/server.log" || true
