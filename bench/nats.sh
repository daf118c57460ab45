#!/usr/bin/env bash
# Measures the NATS path (client → gateway → NATS → worker) against the same
# server answering in-process, in one run on this machine, and prints a
# table with the ratio.
#
#   bench/nats.sh [seconds per scenario, default 10] [rounds, default 3]
#
# It builds nexo (the NATS server is built in) and starts
#   - `nexo serve` alone: every method in-process;
#   - `nexo serve --nats-embedded ... --services none`: a pure gateway with
#     its own NATS server, and one `nexo worker` serving math;
# then drives each with `nexo bench` (math.add, 50 connections, 1 and 16
# pipelined), alternating between them for the given number of rounds, so
# that both see the same machine. Everything shares this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

go build -o "$out/nexo" ./cmd/nexo
"$out/nexo" serve --native-addr 127.0.0.1:7490 --legacy-addr "" --web-addr "" --admin-addr "" --log-level warn &
"$out/nexo" serve --native-addr 127.0.0.1:7491 --legacy-addr "" --web-addr "" --admin-addr "" --log-level warn \
  --nats-embedded 127.0.0.1:7492 --services none --name bench-gateway &
sleep 1
"$out/nexo" worker --nats nats://127.0.0.1:7492 --services math --log-level warn &
sleep 0.5

results="$out/results.jsonl"
for round in $(seq "$rounds"); do
  for p in 1 16; do
    for path in in-process nats; do
      addr=127.0.0.1:7490
      [ "$path" = nats ] && addr=127.0.0.1:7491
      j=$("$out/nexo" bench --addr "$addr" -c 50 -p "$p" -d "${secs}s" --json)
      printf '{"round":%d,"p":%d,"path":"%s","r":%s}\n' "$round" "$p" "$path" "$j" >>"$results"
    done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| scenario | in-process ops/s | NATS ops/s | NATS / in-process | in-process p50 / p99 µs | NATS p50 / p99 µs |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for p in (1, 16):
    def med(path, key):
        return statistics.median(r["r"][key] for r in rows if r["p"] == p and r["path"] == path)
    ip, nt = med("in-process", "ops_per_sec"), med("nats", "ops_per_sec")
    print("| c=50 p=%d | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f |" % (
        p, ip, nt, nt / ip, med("in-process", "p50_us"), med("in-process", "p99_us"), med("nats", "p50_us"), med("nats", "p99_us")))
print("\nmedians of %d rounds; ratios per round (p=16):" % max(r["round"] for r in rows),
      ", ".join("%.2f" % (n["r"]["ops_per_sec"] / i["r"]["ops_per_sec"]) for i in rows for n in rows
                if i["p"] == n["p"] == 16 and i["round"] == n["round"] and i["path"] == "in-process" and n["path"] == "nats"))
PY
