#!/usr/bin/env bash
# Measures nexo's web door beside a minimal net/http JSON-RPC server, in
# one run on this machine, and prints a table of ratios.
#
#   bench/web.sh [seconds per run, default 10] [rounds, default 3]
#
# Servers, one at a time, on loopback ports 7390 and 7391 (which must be free):
#   - nexo serve with only its web door (sessions, limits, metrics: all on);
#   - bench/baseline -http-addr: math.add as JSON-RPC over POST /rpc with
#     net/http and encoding/json, nothing else;
#   - bench/spike/fasthttp: the same on github.com/valyala/fasthttp instead
#     of net/http (issue 17's spike: what a leaner HTTP/1.1 server gives).
# Each round drives, with `nexo bench` at c=50 p=1 (math.add):
#   - POST /rpc on the baseline (--door http),
#   - POST /rpc on the fasthttp spike (--door http),
#   - POST /rpc on nexo (--door http),
#   - the WebSocket /ws on nexo (--door web),
# and the table shows the median of the rounds, with each server's CPU per
# request from /proc (user + system time over the run).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
go build -o "$out/nexo" ./cmd/nexo
go build -o "$out/baseline" ./bench/baseline
(cd bench/spike && go build -o "$out/fasthttp" ./fasthttp)
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
results="$out/results.jsonl"
for round in $(seq "$rounds"); do
  for run in "baseline http" "fasthttp http" "nexo http" "nexo web"; do
    set -- $run
    server=$1 door=$2
    case $server in
      nexo) "$out/nexo" serve --native-addr "" --legacy-addr "" --web-addr 127.0.0.1:7391 --admin-addr "" --log-level warn & ;;
      fasthttp) "$out/fasthttp" -addr 127.0.0.1:7391 & ;;
      *) "$out/baseline" -addr 127.0.0.1:7390 -http-addr 127.0.0.1:7391 2>/dev/null & ;;
    esac
    pid=$!
    sleep 0.5
    c0=$(cpu "$pid")
    j=$("$out/nexo" bench --door "$door" --addr 127.0.0.1:7391 -c 50 -p 1 -d "${secs}s" --json)
    printf '{"server":"%s","door":"%s","cpu_s":%s,"r":%s}\n' "$server" "$door" "$(awk -v a="$(cpu "$pid")" -v b="$c0" 'BEGIN{printf "%.2f", a - b}')" "$j" >>"$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
python3 - "$results" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
def get(server, door):
    runs = [r for r in rows if r["server"] == server and r["door"] == door]
    med = tuple(statistics.median(x["r"][k] for x in runs) for k in ("ops_per_sec", "p50_us", "p99_us"))
    return med + (statistics.median(x["cpu_s"] * 1e6 / max(x["r"]["ops"], 1) for x in runs),)
b, f, h, w = get("baseline", "http"), get("fasthttp", "http"), get("nexo", "http"), get("nexo", "web")
print("| c=50 p=1, math.add | ops/s | p50 µs | p99 µs | server CPU µs per request | ratio |")
print("| --- | ---: | ---: | ---: | ---: | --- |")
print("| baseline POST /rpc (net/http, encoding/json) | %.0f | %.0f | %.0f | %.1f | |" % b)
print("| fasthttp spike POST /rpc (fasthttp, encoding/json) | %.0f | %.0f | %.0f | %.1f | %.2f× the baseline |" % (f + (f[0] / b[0],)))
print("| nexo POST /rpc | %.0f | %.0f | %.0f | %.1f | %.2f× the baseline |" % (h + (h[0] / b[0],)))
print("| nexo /ws | %.0f | %.0f | %.0f | %.1f | %.2f× nexo's POST /rpc |" % (w + (w[0] / h[0],)))
PY
