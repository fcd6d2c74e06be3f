#!/usr/bin/env bash
# Load test on loopback: the example server on a JetStream stream against the
# bare baseline, side by side, with wrk.
#   loadtest/run-jetstream.sh [duration] [connections] [replicas]
# replicas is 1 (one nats-server, an R1 stream; the default) or 3 (three
# nats-server processes as one cluster, an R3 stream). Needs wrk (apt-get
# install wrk). Builds nats-server from the module this repository pins.
# Sends traffic to 127.0.0.1 only, for a bounded time, and stops the
# processes it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
conns=${2:-64}
replicas=${3:-1}
case $replicas in 1 | 3) ;; *) echo "replicas must be 1 or 3" >&2; exit 2 ;; esac
tmp=$(mktemp -d)
bare_pid= ot_pid= nats_pids=
trap 'for p in $ot_pid $bare_pid $nats_pids; do kill $p 2>/dev/null || true; done; rm -rf "$tmp"' EXIT

# Static binaries, as a container image would hold them (see run.sh).
export CGO_ENABLED=0
nats="$tmp/nats-server"
go build -o "$nats" github.com/nats-io/nats-server/v2
go build -o "$tmp/bare" ./loadtest/bare
go build -o "$tmp/server" ./examples/server

urls=
if [ "$replicas" = 1 ]; then
  "$nats" -a 127.0.0.1 -p 4322 -js -sd "$tmp/nats" 2>"$tmp/nats.log" & nats_pids=$!
  logs="$tmp/nats.log"
  urls=nats://127.0.0.1:4322
else
  routes=nats://127.0.0.1:6322,nats://127.0.0.1:6323,nats://127.0.0.1:6324
  logs=
  for i in 0 1 2; do
    "$nats" -n "n$i" -a 127.0.0.1 -p $((4322 + i)) -js -sd "$tmp/nats$i" \
      --cluster_name loadtest --cluster "nats://127.0.0.1:$((6322 + i))" --routes "$routes" \
      2>"$tmp/nats$i.log" & nats_pids="$nats_pids $!"
    logs="$logs $tmp/nats$i.log"
    urls="${urls:+$urls,}nats://127.0.0.1:$((4322 + i))"
  done
fi
for log in $logs; do
  for _ in $(seq 100); do
    grep -q 'Server is ready' "$log" 2>/dev/null && break
    sleep 0.1
  done
done
ADDR=127.0.0.1:8081 "$tmp/bare" & bare_pid=$!
PORT=8082 WRITE_KEY=wk OPENTRACK_FILE="$tmp/events.jsonl" NATS_URL=$urls NATS_REPLICAS=$replicas \
  "$tmp/server" 2>"$tmp/server.log" & ot_pid=$!
for _ in $(seq 300); do
  grep -q '"opentrack listening"' "$tmp/server.log" 2>/dev/null && break
  sleep 0.1
done

peak_rss() { awk '/VmHWM/ {print $2/1024 " MB"}' "/proc/$1/status"; }
. loadtest/cpu.sh # cpu_ticks, per_request

echo "== bare net/http + json.Unmarshal into a map (pid $bare_pid)"
c0=$(cpu_ticks $bare_pid)
out=$(wrk -t2 -c"$conns" -d"$dur" --latency -s loadtest/track.lua http://127.0.0.1:8081/v1/track)
echo "$out"
n=$(awk '/requests in/ {print $1}' <<<"$out")
sleep 1
c1=$(cpu_ticks $bare_pid)
echo "peak RSS: $(peak_rss $bare_pid); CPU per request: $(per_request $((c1 - c0)) "$n")"
echo
echo "== examples/server on a JetStream stream (R$replicas), JSON-lines sink (pid $ot_pid, nats-server pids$nats_pids)"
c0=$(cpu_ticks $ot_pid)
declare -A t0
for p in $nats_pids; do t0[$p]=$(cpu_ticks $p); done
out=$(wrk -t2 -c"$conns" -d"$dur" --latency -s loadtest/track.lua http://127.0.0.1:8082/v1/track)
echo "$out"
n=$(awk '/requests in/ {print $1}' <<<"$out")
sleep 1
c1=$(cpu_ticks $ot_pid)
nats_cpu=
for p in $nats_pids; do nats_cpu+="$(per_request $(($(cpu_ticks $p) - t0[$p])) "$n") "; done
echo "peak RSS: $(peak_rss $ot_pid) (collector); nats-server: $(for p in $nats_pids; do printf '%s ' "$(peak_rss $p)"; done)"
echo "CPU per request: collector $(per_request $((c1 - c0)) "$n"); nats-server: $nats_cpu"
kill -TERM $ot_pid; wait $ot_pid || true
ot_pid=
echo "lines written: $(wc -l < "$tmp/events.jsonl"), of which repeated messageIds: $(grep -o '"messageId":"[^"]*"' "$tmp/events.jsonl" | sort | uniq -d | wc -l)"
grep '"delivery"' "$tmp/server.log" || true
