#!/usr/bin/env bash
# Measures nexo beside its peers in one run on this machine and prints a
# table of ratios.
#
#   bench/compare.sh [seconds per scenario, default 10] [rounds, default 3]
#   NEXO_BEFORE=<git revision> bench/compare.sh ...
#
# With NEXO_BEFORE, nexo built from that revision runs too, in the same
# rounds, and a last table compares the two builds, each as its ratio to
# the baseline of the same round: a change's cost, measured in one run.
#
# Servers, one at a time, each on free loopback ports:
#   - nexo serve (sessions, heartbeats, metrics: everything on), driven by
#     `nexo bench` (math.add);
#   - bench/baseline, a deliberately minimal Go server for math.add
#     (goroutine per connection, one write per burst), driven by the same
#     `nexo bench`: the Go "limit";
#   - Debian's redis-server (installed when missing), driven by
#     `redis-benchmark -t ping`, and again by `nexo bench --door redis`
#     (PINGs), so that one client measures both servers' latency.
# Scenarios: 50 connections with 1 and 16 requests outstanding each, and one
# connection with one request, where server and load tool share one CPU
# (taskset -c 0) so that latency, not parallelism, is measured.
# Every round runs every scenario on every server; the table shows the
# median of the rounds, which one noisy run cannot move much. The servers'
# CPU per request comes from /proc (user + system time over each run), and
# so do the requests per read and per write system call (/proc/PID/io).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
go build -o "$out/nexo" ./cmd/nexo
go build -o "$out/baseline" ./bench/baseline
nexos=(nexo)
if [ -n "${NEXO_BEFORE:-}" ]; then
  mkdir "$out/before"
  git archive "$NEXO_BEFORE" | tar -x -C "$out/before"
  (cd "$out/before" && go build -o "$out/nexo-before" ./cmd/nexo)
  nexos=(nexo nexo-before)
fi
scenarios=("50 1" "50 16" "1 1")
results="$out/results.jsonl"
# A process's CPU time (user + system) in seconds, from /proc.
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
# A process's read and write system calls so far (syscr, syscw), from /proc;
# 0 0 where the kernel keeps no I/O accounting (the table then says n/a).
calls() { awk '/^syscr/{r=$2} /^syscw/{w=$2} END{printf "%.0f %.0f", r, w}' "/proc/$1/io" 2>/dev/null || echo "0 0"; }
# The JSON fields of the CPU and system calls a process spent between two readings.
spent() { # cpu0 cpu1 "r0 w0" "r1 w1"
  local r0 w0 r1 w1
  read -r r0 w0 <<<"$3"; read -r r1 w1 <<<"$4"
  printf '"cpu_s":%s,"reads":%d,"writes":%d' "$(awk -v a="$2" -v b="$1" 'BEGIN{printf "%.2f", a - b}')" $((r1 - r0)) $((w1 - w0))
}

for round in $(seq "$rounds"); do
  for s in "${scenarios[@]}"; do
    set -- $s
    c=$1 p=$2
    pin=() # one connection: server and load tool share CPU 0
    [ "$c" = 1 ] && pin=(taskset -c 0)
    for server in "${nexos[@]}" baseline; do
      if [ "$server" != baseline ]; then
        "${pin[@]}" "$out/$server" serve --native-addr 127.0.0.1:7390 --legacy-addr "" --web-addr "" --admin-addr 127.0.0.1:7392 --log-level warn &
      else
        "${pin[@]}" "$out/baseline" -addr 127.0.0.1:7390 2>/dev/null &
      fi
      pid=$!
      # Up to 10 s to listen: nexo builds its catalog first, and pinned to
      # one busy CPU that took over the 0.5 s once waited here.
      for _ in $(seq 200); do
        (exec 3<>/dev/tcp/127.0.0.1/7390) 2>/dev/null && break
        sleep 0.05
      done
      before=$(cpu "$pid") calls0=$(calls "$pid")
      j=$("${pin[@]}" "$out/nexo" bench --addr 127.0.0.1:7390 -c "$c" -p "$p" -d "${secs}s" --json)
      after=$(cpu "$pid") calls1=$(calls "$pid")
      printf '{"server":"%s","c":%d,"p":%d,%s,"r":%s}\n' "$server" "$c" "$p" "$(spent "$before" "$after" "$calls0" "$calls1")" "$j" >>"$results"
      kill "$pid"; wait "$pid" 2>/dev/null || true
    done
    "${pin[@]}" redis-server --port 6390 --save '' --appendonly no --daemonize yes --logfile "$out/redis.log" >/dev/null
    sleep 0.5
    # About as many requests as nexo served in the same time, so both run ~secs.
    n=$(grep '"server":"nexo","c":'"$c"',"p":'"$p"',' "$results" | tail -n 1 | python3 -c 'import json,sys; print(max(20000, int(json.loads(sys.stdin.read())["r"]["ops"])))')
    csv=$("${pin[@]}" redis-benchmark -p 6390 -t ping -c "$c" -P "$p" -n "$n" --csv | tail -n +2 | tr '\n' ';')
    printf '{"server":"redis","c":%d,"p":%d,"csv":"%s"}\n' "$c" "$p" "${csv//\"/}" >>"$results"
    rpid=$(redis-cli -p 6390 info server | awk -F: '/^process_id:/{print $2}' | tr -d '\r')
    before=$(cpu "$rpid") calls0=$(calls "$rpid")
    j=$("${pin[@]}" "$out/nexo" bench --door redis --addr 127.0.0.1:6390 -c "$c" -p "$p" -d "${secs}s" --json)
    after=$(cpu "$rpid") calls1=$(calls "$rpid")
    printf '{"server":"redis-nb","c":%d,"p":%d,%s,"r":%s}\n' "$c" "$p" "$(spent "$before" "$after" "$calls0" "$calls1")" "$j" >>"$results"
    redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true
    sleep 0.3
  done
done

python3 - "$results" <<'PY'
import json, sys
import statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
def one(r):
    if r["server"] != "redis":
        x = r["r"]
        return x["ops_per_sec"], x["p50_us"], x["p99_us"]
    # redis-benchmark CSV: test, rps, avg, min, p50, p95, p99, max (ms); the better of the PING tests
    best = max((l.split(",") for l in r["csv"].split(";") if l), key=lambda f: float(f[1]))
    return float(best[1]), float(best[4]) * 1000, float(best[6]) * 1000
def get(server, c, p):
    """The median over the rounds of ops/s, p50 and p99, each on its own."""
    runs = [one(r) for r in rows if r["server"] == server and r["c"] == c and r["p"] == p]
    return tuple(statistics.median(x[i] for x in runs) for i in range(3))
print("| scenario | nexo ops/s | baseline ops/s | Redis ops/s | nexo / baseline | nexo / Redis | p50 / p99 µs: nexo | baseline | Redis |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c, p in ((50, 1), (50, 16), (1, 1)):
    n, b, r = get("nexo", c, p), get("baseline", c, p), get("redis", c, p)
    print("| c=%d p=%d%s | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f |" % (
        c, p, " (1 CPU)" if c == 1 else "", n[0], b[0], r[0], n[0] / b[0], n[0] / r[0], n[1], n[2], b[1], b[2], r[1], r[2]))
print()
print("Redis driven by the same client as nexo (nexo bench --door redis):")
print()
print("| scenario | nexo ops/s | Redis ops/s | nexo / Redis | p50 / p99 µs: nexo | Redis | p99 nexo / Redis |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for c, p in ((50, 1), (50, 16), (1, 1)):
    n, r = get("nexo", c, p), get("redis-nb", c, p)
    print("| c=%d p=%d%s | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f | %.2f |" % (
        c, p, " (1 CPU)" if c == 1 else "", n[0], r[0], n[0] / r[0], n[1], n[2], r[1], r[2], n[2] / r[2]))
print()
print("Server CPU per request (user + system time from /proc over the run, divided by the requests answered; the same client for all):")
print()
print("| scenario | nexo µs | baseline µs | Redis µs | nexo / Redis |")
print("| --- | ---: | ---: | ---: | ---: |")
def per(server, c, p, key):
    """The median over the rounds of a server's key (CPU seconds, read or write calls) per request."""
    return statistics.median(r[key] / max(1, r["r"]["ops"]) for r in rows if r["server"] == server and r["c"] == c and r["p"] == p)
for c, p in ((50, 1), (50, 16), (1, 1)):
    n, b, r = (1e6 * per(s, c, p, "cpu_s") for s in ("nexo", "baseline", "redis-nb"))
    print("| c=%d p=%d%s | %.2f | %.2f | %.2f | %.2f |" % (c, p, " (1 CPU)" if c == 1 else "", n, b, r, n / r))
print()
print("Requests per system call of the server (read and write calls from /proc/PID/io, syscr and syscw; epoll_wait is in neither):")
print()
print("| scenario | nexo per read / write | baseline | Redis |")
print("| --- | ---: | ---: | ---: |")
def calls(server, c, p):
    r, w = per(server, c, p, "reads"), per(server, c, p, "writes")
    return "%.1f / %.1f" % (1 / r, 1 / w) if r and w else "n/a"
for c, p in ((50, 1), (50, 16), (1, 1)):
    print("| c=%d p=%d%s | %s | %s | %s |" % (c, p, " (1 CPU)" if c == 1 else "", calls("nexo", c, p), calls("baseline", c, p), calls("redis-nb", c, p)))
if any(r["server"] == "nexo-before" for r in rows):
    print()
    print("This build against the one before (NEXO_BEFORE), each as its ratio to the baseline:")
    print()
    print("| scenario | before ops/s | after ops/s | before / baseline | after / baseline | p50 / p99 µs: before | after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c, p in ((50, 1), (50, 16), (1, 1)):
        a, bf, b = get("nexo", c, p), get("nexo-before", c, p), get("baseline", c, p)
        print("| c=%d p=%d%s | %.0f | %.0f | %.2f | %.2f | %.0f / %.0f | %.0f / %.0f |" % (
            c, p, " (1 CPU)" if c == 1 else "", bf[0], a[0], bf[0] / b[0], a[0] / b[0], bf[1], bf[2], a[1], a[2]))
PY
