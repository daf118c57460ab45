#!/usr/bin/env bash
# Measures how nexo holds many idle clients: server memory per client and
# the CPU its heartbeats cost, at 1k, 5k, 10k and 19k clients, then whether
# 50 active clients keep their throughput beside 19k idle ones.
#
#   bench/capacity.sh [counts, default "1000 5000 10000 19000"]
#
# Each count runs a fresh `nexo serve` (heartbeats every 5 s, metrics on)
# and a `nexo bench --idle` process holding the clients from 127.0.0.1-4.
# Memory is read from /proc/PID/status (VmRSS) after two forced GCs
# (/debug/pprof/heap?gc=1), minus the server's RSS before any client came;
# then again after the runtime returned its free memory to the system
# (POST /debug/free-memory): the Go allocator otherwise keeps free pages up
# to its next heap goal (GOGC) mapped.
# This machine caps every process at 20,000 open files.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=${1:-"1000 5000 10000 19000"}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
ulimit -n 20000
go build -o "$out/nexo" ./cmd/nexo

metric() { curl -s localhost:7393/metrics | awk -v m="$1" '$1 == m { printf "%.0f", $2 }'; }
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # clock ticks, user + system
rss() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

serve() {
  "$out/nexo" serve --native-addr 127.0.0.1:7390 --legacy-addr "" --web-addr "" --admin-addr 127.0.0.1:7393 \
    --pprof --heartbeat 5s --max-conns 30000 --max-conns-per-ip 30000 --log-level warn &
  srv=$!
  sleep 0.5
}

echo "| clients | server RSS MiB | RSS per client KiB | RSS per client, free memory returned, KiB | heap per client KiB | stacks per client KiB | server CPU, idle (heartbeats) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in $counts; do
  serve
  curl -s -X POST localhost:7393/debug/free-memory >/dev/null
  base=$(rss "$srv")
  "$out/nexo" bench --idle --allow-errors --addr 127.0.0.1:7390 --connections "$n" --sources 4 -d 40s --json >"$out/idle.json" 2>/dev/null &
  idle=$!
  until [ "$(curl -s localhost:7393/api/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["clients"])')" -ge "$n" ]; do sleep 0.5; done
  sleep 6 # every client has had a heartbeat
  for _ in 1 2; do curl -s 'localhost:7393/debug/pprof/heap?gc=1' >/dev/null; done
  r=$(rss "$srv")
  heap=$(metric go_memstats_heap_inuse_bytes) stack=$(metric go_memstats_stack_inuse_bytes)
  curl -s -X POST localhost:7393/debug/free-memory >/dev/null
  freed=$(rss "$srv")
  c0=$(cpu "$srv"); sleep 10; c1=$(cpu "$srv")
  hz=$(getconf CLK_TCK)
  python3 -c "
n, base, r, freed, heap, stack, ticks, hz = $n, $base, $r, $freed, $heap, $stack, $((c1 - c0)), $hz
print('| %d | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f%% of one core |' % (n, r / 1024, (r - base) / n, (freed - base) / n, heap / 1024 / n, stack / 1024 / n, 100 * ticks / hz / 10))"
  kill "$idle" "$srv"; wait "$idle" "$srv" 2>/dev/null || true
done

# 50 active clients, alone and beside 19k idle ones.
last=${counts##* }
serve
alone=$("$out/nexo" bench --addr 127.0.0.1:7390 -c 50 -p 1 -d 10s --json)
"$out/nexo" bench --idle --allow-errors --addr 127.0.0.1:7390 --connections "$last" --sources 4 -d 60s --json >/dev/null 2>&1 &
idle=$!
until [ "$(curl -s localhost:7393/api/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["clients"])')" -ge "$last" ]; do sleep 0.5; done
beside=$("$out/nexo" bench --addr 127.0.0.1:7390 -c 50 -p 1 -d 10s --json)
kill "$idle" "$srv"; wait "$idle" "$srv" 2>/dev/null || true
python3 -c "
import json
a, b = json.loads('''$alone'''), json.loads('''$beside''')
print()
print('| 50 active clients, c=50 p=1 | ops/s | p50 / p99 µs |')
print('| --- | ---: | ---: |')
print('| alone | %.0f | %.0f / %.0f |' % (a['ops_per_sec'], a['p50_us'], a['p99_us']))
print('| beside $last idle clients | %.0f (%.2fx) | %.0f / %.0f |' % (b['ops_per_sec'], b['ops_per_sec'] / a['ops_per_sec'], b['p50_us'], b['p99_us']))
"
