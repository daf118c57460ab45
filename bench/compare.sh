#!/usr/bin/env bash
# Measures nexo beside Redis in one run on this machine and prints a table.
#
#   bench/compare.sh [seconds per scenario, default 10]
#
# It builds nexo, starts `nexo serve` on free loopback ports, drives it with
# `nexo bench` (math.add, 50 connections, 1 and 16 pipelined), then starts a
# local redis-server (installed from Debian when missing) and drives it with
# `redis-benchmark -t ping` at the same concurrency. Both load generators and
# both servers share this machine's cores, one pair at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
go build -o "$out/nexo" ./cmd/nexo

"$out/nexo" serve --native-addr 127.0.0.1:7390 --legacy-addr "" --web-addr 127.0.0.1:7391 --admin-addr 127.0.0.1:7392 --log-level warn &
sleep 0.5
declare -A nexo
for p in 1 16; do
  nexo[$p]=$("$out/nexo" bench --addr 127.0.0.1:7390 -c 50 -p "$p" -d "${secs}s" --json)
done
kill %1; wait %1 2>/dev/null || true

redis-server --port 6390 --save '' --appendonly no --daemonize yes --logfile "$out/redis.log" >/dev/null
sleep 0.5
declare -A redis
for p in 1 16; do
  # About as many requests as nexo served in the same time, so both run ~secs.
  n=$(printf '%s' "${nexo[$p]}" | python3 -c 'import json,sys; print(max(100000, int(json.load(sys.stdin)["ops"])))')
  redis[$p]=$(redis-benchmark -p 6390 -t ping -c 50 -P "$p" -n "$n" --csv | tail -n +2)
done

python3 - "${nexo[1]}" "${nexo[16]}" "${redis[1]}" "${redis[16]}" <<'PY'
import csv, io, json, sys
nexo = {1: json.loads(sys.argv[1]), 16: json.loads(sys.argv[2])}
def best(text):
    rows = list(csv.reader(io.StringIO(text)))
    # columns: test, rps, avg, min, p50, p95, p99, max (ms)
    return max(rows, key=lambda r: float(r[1]))
redis = {1: best(sys.argv[3]), 16: best(sys.argv[4])}
print("| scenario | nexo ops/s | Redis ops/s | nexo / Redis | nexo p50 / p99 µs | Redis p50 / p99 µs |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for p in (1, 16):
    n, r = nexo[p], redis[p]
    print("| c=50 p=%d | %.0f | %.0f (%s) | %.2f | %.0f / %.0f | %.0f / %.0f |" % (
        p, n["ops_per_sec"], float(r[1]), r[0], n["ops_per_sec"] / float(r[1]),
        n["p50_us"], n["p99_us"], float(r[4]) * 1000, float(r[6]) * 1000))
PY
