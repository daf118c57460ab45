#!/usr/bin/env bash
# The event-loop spike of issue 17: the same math.add on the native
# protocol served by
#   - bench/baseline: a goroutine per connection (the Go "limit" today),
#   - epoll: loops grown from nexo's own epoll poller (this module),
#   - gnet: loops on github.com/panjf2000/gnet/v2 (this module),
#   - nexo serve itself, and Redis (PING) for scale,
# each driven by `nexo bench` in turn, in rounds, with the server's CPU
# per request read from /proc and, last, the RSS of 19,000 idle clients.
#
#   bench/spike/run.sh [seconds per run, default 5] [rounds, default 3]
#   NEXO_BIN=path/to/nexo bench/spike/run.sh ...   (that build of nexo)
set -euo pipefail
[ -n "${SPIKE_TRACE:-}" ] && set -x
cd "$(dirname "$0")"
secs=${1:-5}
rounds=${2:-3}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; redis-cli -p 6391 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
go build -o "$out/epoll" ./epoll
go build -o "$out/gnet" ./gnet
go build -o "$out/hold" ./hold
if [ -n "${NEXO_BIN:-}" ]; then cp "$NEXO_BIN" "$out/nexo"; else (cd ../.. && go build -o "$out/nexo" ./cmd/nexo); fi
(cd ../.. && go build -o "$out/baseline" ./bench/baseline)
addr=127.0.0.1:7590
start() { # server, pin...
  local s=$1; shift
  case $s in
    nexo) "$@" "$out/nexo" serve --native-addr $addr --legacy-addr "" --web-addr "" --admin-addr "" --log-level warn --max-conns 20000 --max-conns-per-ip 20000 2>/dev/null & ;;
    redis) "$@" redis-server --port 6391 --save '' --appendonly no --maxclients 20000 >/dev/null 2>&1 & ;;
    *) "$@" "$out/$s" -addr $addr 2>/dev/null & ;;
  esac
  pid=$!
  sleep 0.5
}
cpu() { awk '{print $14 + $15}' /proc/$1/stat; } # utime + stime, in clock ticks
tick=$(getconf CLK_TCK)
results="$out/results.jsonl"
servers=(baseline epoll gnet nexo redis)
for round in $(seq "$rounds"); do
  for s in "50 1" "50 16" "1 1"; do
    set -- $s
    c=$1 p=$2
    pin=(); [ "$c" = 1 ] && pin=(taskset -c 0)
    for server in "${servers[@]}"; do
      start "$server" "${pin[@]}"
      door=native a=$addr
      [ "$server" = redis ] && door=redis a=127.0.0.1:6391
      before=$(cpu $pid)
      j=$("${pin[@]}" "$out/nexo" bench --door $door --addr $a -c "$c" -p "$p" -d "${secs}s" --json)
      after=$(cpu $pid)
      printf '{"server":"%s","c":%d,"p":%d,"cpu_s":%s,"r":%s}\n' "$server" "$c" "$p" "$(awk -v a="$after" -v b="$before" -v t="$tick" 'BEGIN{printf "%.4f", (a-b)/t}')" "$j" >>"$results"
      [ "$server" = redis ] && redis-cli -p 6391 shutdown nosave >/dev/null 2>&1 || true
      kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    done
  done
done
# Idle clients: RSS per client at 19,000 (the load tool holds them for 6 s;
# the server's RSS is read at 4 s, minus its RSS before).
for server in "${servers[@]}"; do
  start "$server"
  a=$addr
  [ "$server" = redis ] && a=127.0.0.1:6391
  rss0=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  if [ "$server" = redis ]; then # no handshake: plain connections
    "$out/hold" -addr $a -n 19000 -d 6s >/dev/null &
  else # HELLO, then PONGs
    "$out/nexo" bench --addr $a --idle --connections 19000 --dial-rate 20000 -d 6s --json >"$out/idle.json" 2>/dev/null &
  fi
  bp=$!
  sleep 5
  rss1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  wait $bp || true
  printf '{"server":"%s","idle_kib_per_client":%s}\n' "$server" "$(awk -v a="$rss1" -v b="$rss0" 'BEGIN{printf "%.4f", (a-b)/19000}')" >>"$results"
  [ "$server" = redis ] && redis-cli -p 6391 shutdown nosave >/dev/null 2>&1 || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
done
python3 - "$results" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = ["baseline", "epoll", "gnet", "nexo", "redis"]
def med(server, c, p, f):
    return statistics.median(f(r) for r in rows if r.get("server") == server and r.get("c") == c and r.get("p") == p)
print("| scenario | " + " | ".join(servers) + " |")
print("| --- |" + " ---: |" * len(servers))
for c, p in ((50, 1), (50, 16), (1, 1)):
    if not any(r.get("c") == c and r.get("p") == p for r in rows):
        continue
    name = "c=%d p=%d%s" % (c, p, " (1 CPU)" if c == 1 else "")
    print("| %s ops/s | " % name + " | ".join("%.0f" % med(s, c, p, lambda r: r["r"]["ops_per_sec"]) for s in servers) + " |")
    print("| %s p50 / p99 µs | " % name + " | ".join("%.0f / %.0f" % (med(s, c, p, lambda r: r["r"]["p50_us"]), med(s, c, p, lambda r: r["r"]["p99_us"])) for s in servers) + " |")
    print("| %s server CPU µs per request | " % name + " | ".join("%.2f" % med(s, c, p, lambda r: 1e6 * r["cpu_s"] / max(1, r["r"]["ops"])) for s in servers) + " |")
idle = {r["server"]: r["idle_kib_per_client"] for r in rows if "idle_kib_per_client" in r}
if not idle:
    sys.exit(0)
print("| idle clients: RSS KiB per client at 19,000 | " + " | ".join("%.2f" % idle.get(s, float("nan")) for s in servers) + " |")
PY
