#!/usr/bin/env bash
# Measures the same greeting served three ways through one gateway, in one
# run on this machine:
#   - greet.go in-process (examples/greet-go --serve, which is the gateway);
#   - greet.js by a Node worker over NATS (examples/greet-js/worker.js);
#   - greet.py by a Python HTTP JSON-RPC service (examples/greet-py) behind
#     `nexo worker --upstream`;
# each with `nexo bench` at 50 connections, 1 and 16 pipelined, alternating
# for the given number of rounds, and prints a table with the ratio to
# in-process. Everything shares this machine's cores. It also prints the
# TCP connections the upstream worker opened: kept alive, they stay about
# as many as the calls in flight at once, however many calls there were.
#
#   bench/polyglot.sh [seconds per scenario, default 5] [rounds, default 2]
#
# Needs node (with `npm ci` run in clients/js) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-2}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

go build -o "$out/" ./cmd/nexo ./examples/greet-go
"$out/greet-go" --serve --native-addr 127.0.0.1:7590 --legacy-addr "" --web-addr "" --admin-addr "" \
  --nats-embedded 127.0.0.1:7592 --log-level warn &
python3 examples/greet-py/service.py --addr 127.0.0.1:7593 2>/dev/null &
sleep 1
node examples/greet-js/worker.js --nats nats://127.0.0.1:7592 >/dev/null &
"$out/nexo" worker --nats nats://127.0.0.1:7592 --upstream http://127.0.0.1:7593/rpc --health-addr 127.0.0.1:7594 --log-level warn &
for m in greet.go greet.js greet.py; do
  for _ in $(seq 100); do
    "$out/nexo" call --addr 127.0.0.1:7590 "$m" name=Ann >/dev/null 2>&1 && break
    sleep 0.1
  done
done

results="$out/results.jsonl"
for round in $(seq "$rounds"); do
  for p in 1 16; do
    for m in greet.go greet.js greet.py; do
      j=$("$out/nexo" bench --addr 127.0.0.1:7590 --method "$m" --params '{"name":"Ann"}' -c 50 -p "$p" -d "${secs}s" --json)
      printf '{"round":%d,"p":%d,"m":"%s","r":%s}\n' "$round" "$p" "$m" "$j" >>"$results"
    done
  done
done
conns=$(curl -s http://127.0.0.1:7594/metrics | awk '/^nexo_upstream_connections_total/ {print $2}')
calls=$(curl -s http://127.0.0.1:7594/metrics | awk '/^nexo_upstream_calls_total/ {print $2}')

python3 - "$results" "$conns" "$calls" "$secs" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
what = {"greet.go": "in-process (Go)", "greet.js": "Node worker over NATS", "greet.py": "Python upstream over HTTP"}
print("| method | served by | c=50 p=1 ops/s | / in-process | p50 / p99 µs | c=50 p=16 ops/s | / in-process | p50 / p99 µs | errors |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
def med(m, p, key):
    return statistics.median(r["r"][key] for r in rows if r["p"] == p and r["m"] == m)
for m in ("greet.go", "greet.js", "greet.py"):
    cells = []
    for p in (1, 16):
        ops = med(m, p, "ops_per_sec")
        cells += ["%.0f" % ops, "%.2f" % (ops / med("greet.go", p, "ops_per_sec")), "%.0f / %.0f" % (med(m, p, "p50_us"), med(m, p, "p99_us"))]
    errs = sum(r["r"].get("errors", 0) for r in rows if r["m"] == m)
    print("| %s | %s | %s | %d |" % (m, what[m], " | ".join(cells), errs))
print("\nmedians of %d rounds of %s s each; the upstream worker opened %s TCP connections for %s calls"
      % (max(r["round"] for r in rows), sys.argv[4], sys.argv[2], sys.argv[3]))
PY
