#!/usr/bin/env bash
# Measures the NATS path (client → gateway → NATS → worker) against the same
# server answering in-process, in one run on this machine, and prints a
# table with the ratio.
#
#   bench/nats.sh [seconds per scenario, default 10] [rounds, default 3]
#   NEXO_BEFORE=<git revision> bench/nats.sh ...
#
# It builds nexo (the NATS server is built in) and starts
#   - `nexo serve` alone: every method in-process;
#   - `nexo serve --nats-embedded ... --services none`: a pure gateway with
#     its own NATS server, and one `nexo worker` serving math;
# then drives each with `nexo bench` (math.add, 50 connections, 1 and 16
# outstanding), alternating between them, and prints the medians of the
# rounds; everything shares this machine's cores. With NEXO_BEFORE, nexo
# built from that revision runs the same servers beside them (idle while
# the others are driven), in the same rounds, and a last table compares
# the two builds.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
out=$(mktemp -d)
workers=()
# Workers stop first, so that their gateways' NATS servers see them go.
stop() {
  [ ${#workers[@]} -gt 0 ] && { kill "${workers[@]}" 2>/dev/null || true; wait "${workers[@]}" 2>/dev/null || true; }
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap stop EXIT

go build -o "$out/nexo" ./cmd/nexo
builds=(nexo)
if [ -n "${NEXO_BEFORE:-}" ]; then
  mkdir "$out/before"
  git archive "$NEXO_BEFORE" | tar -x -C "$out/before"
  (cd "$out/before" && go build -o "$out/nexo-before" ./cmd/nexo)
  builds=(nexo nexo-before)
fi
# Each build's servers on ports of their own: base (in-process), base+1
# (gateway), base+2 (its NATS server).
base=7490
for b in "${builds[@]}"; do
  "$out/$b" serve --native-addr "127.0.0.1:$base" --legacy-addr "" --web-addr "" --admin-addr "" --log-level warn &
  "$out/$b" serve --native-addr "127.0.0.1:$((base + 1))" --legacy-addr "" --web-addr "" --admin-addr "" --log-level warn \
    --nats-embedded "127.0.0.1:$((base + 2))" --services none --name "bench-gateway-$b" &
  sleep 1
  "$out/$b" worker --nats "nats://127.0.0.1:$((base + 2))" --services math --log-level warn &
  workers+=($!)
  base=$((base + 10))
done
sleep 0.5

results="$out/results.jsonl"
for round in $(seq "$rounds"); do
  for p in 1 16; do
    base=7490
    for b in "${builds[@]}"; do
      for path in in-process nats; do
        addr=127.0.0.1:$base
        [ "$path" = nats ] && addr=127.0.0.1:$((base + 1))
        j=$("$out/nexo" bench --addr "$addr" -c 50 -p "$p" -d "${secs}s" --json)
        printf '{"round":%d,"p":%d,"build":"%s","path":"%s","r":%s}\n' "$round" "$p" "$b" "$path" "$j" >>"$results"
      done
      base=$((base + 10))
    done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(build, p, path, key):
    return statistics.median(r["r"][key] for r in rows if r["build"] == build and r["p"] == p and r["path"] == path)
print("| scenario | in-process ops/s | NATS ops/s | NATS / in-process | in-process p50 / p99 µs | NATS p50 / p99 µs |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for p in (1, 16):
    ip, nt = med("nexo", p, "in-process", "ops_per_sec"), med("nexo", p, "nats", "ops_per_sec")
    print("| c=50 p=%d | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f |" % (
        p, ip, nt, nt / ip, med("nexo", p, "in-process", "p50_us"), med("nexo", p, "in-process", "p99_us"),
        med("nexo", p, "nats", "p50_us"), med("nexo", p, "nats", "p99_us")))
mine = [r for r in rows if r["build"] == "nexo"]
print("\nmedians of %d rounds; ratios per round (p=16):" % max(r["round"] for r in rows),
      ", ".join("%.2f" % (n["r"]["ops_per_sec"] / i["r"]["ops_per_sec"]) for i in mine for n in mine
                if i["p"] == n["p"] == 16 and i["round"] == n["round"] and i["path"] == "in-process" and n["path"] == "nats"))
if any(r["build"] == "nexo-before" for r in rows):
    print("\nThis build against the one before (NEXO_BEFORE), each path as its ratio to the build before:\n")
    print("| scenario | before ops/s | after ops/s | after / before | p50 / p99 µs: before | after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for p in (1, 16):
        for path in ("in-process", "nats"):
            b, a = med("nexo-before", p, path, "ops_per_sec"), med("nexo", p, path, "ops_per_sec")
            print("| c=50 p=%d %s | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f |" % (
                p, path, b, a, a / b, med("nexo-before", p, path, "p50_us"), med("nexo-before", p, path, "p99_us"),
                med("nexo", p, path, "p50_us"), med("nexo", p, path, "p99_us")))
PY
