#!/usr/bin/env bash
# Holds 100,000 idle clients on this machine: several gateway processes
# share one port (SO_REUSEPORT, `serve --reuseport`) and join over NATS for
# the cluster view; several load processes hold the clients, connecting from
# 127.0.0.1-127.0.0.8 to stay clear of the ephemeral-port limit. Every
# process here may hold at most 20,000 open files, hence the numbers.
#
#   bench/c100k.sh [clients, default 102000] [gateways, default 7] [load processes, default 6]
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-102000}
gateways=${2:-7}
loaders=${3:-6}
hold=${HOLD:-40}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"' EXIT
ulimit -n 20000
go build -o "$out/nexo" ./cmd/nexo

common=(--reuseport --native-addr 127.0.0.1:7690 --legacy-addr "" --web-addr "" --heartbeat 10s
  --max-conns 30000 --max-conns-per-ip 30000 --log-level warn)
"$out/nexo" serve "${common[@]}" --admin-addr 127.0.0.1:7700 --nats-embedded 127.0.0.1:7699 --name gw-1 &
pids=($!)
sleep 1
for g in $(seq 2 "$gateways"); do
  "$out/nexo" serve "${common[@]}" --admin-addr 127.0.0.1:$((7699 + g)) --nats nats://127.0.0.1:7699 --name "gw-$g" &
  pids+=($!)
done
sleep 1

start=$(date +%s.%N)
per=$(( (total + loaders - 1) / loaders ))
for l in $(seq "$loaders"); do
  "$out/nexo" bench --idle --allow-errors --addr 127.0.0.1:7690 --connections "$per" --sources 8 --dial-rate 4000 -d "${hold}s" --json >"$out/load-$l.json" 2>"$out/load-$l.err" &
done

clients() {
  "$out/nexo" clients --cluster --addr 127.0.0.1:7690 --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["clients"])' 2>/dev/null || echo 0
}
for _ in $(seq 120); do
  n=$(clients)
  echo "connected: $n" >&2
  [ "$n" -ge "$total" ] && break
  sleep 1
done
up=$(python3 -c "import time; print('%.1f' % (time.time() - $start))")
sleep 5
echo "clients connected over all gateways: $(clients) (asked for $((per * loaders)); all up after ${up}s)"
echo
echo "| gateway | clients | RSS MiB | RSS per client KiB |"
echo "| --- | ---: | ---: | ---: |"
sum=0
for i in "${!pids[@]}"; do
  g=$((i + 1))
  n=$(curl -s "127.0.0.1:$((7699 + g))/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["clients"])')
  for _ in 1 2; do curl -s "127.0.0.1:$((7699 + g))/debug/pprof/heap?gc=1" >/dev/null 2>&1 || true; done
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/${pids[$i]}/status")
  sum=$((sum + rss))
  python3 -c "print('| gw-$g | $n | %.1f | %.2f |' % ($rss / 1024, $rss / max(1, $n)))"
done
echo
echo "all gateways: $((sum / 1024)) MiB"
# The gateways' CPU over 10 s with every client idle: heartbeats (every
# 10 s here, so each client is pinged once) and the cluster view.
ticks() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo $t; }
t0=$(ticks); sleep 10; t1=$(ticks)
python3 -c "print('all gateways, idle: %.1f%% of one core (heartbeats every 10 s)' % (100 * ($t1 - $t0) / $(getconf CLK_TCK) / 10))"
"$out/nexo" bench --addr 127.0.0.1:7690 -c 50 -p 1 -d 5s | sed 's/^/active beside them: /'
wait_load() { for f in "$out"/load-*.json; do while [ ! -s "$f" ]; do sleep 1; done; done; }
wait_load
cat "$out"/load-*.err >&2
python3 - "$out"/load-*.json <<'PY'
import json, sys
rs = [json.load(open(f)) for f in sys.argv[1:]]
print("load processes: %d up, %d failed, %d dropped by a gateway, %d PINGs answered" % (
    sum(r["up"] for r in rs), sum(r["failed"] for r in rs), sum(r["dropped"] for r in rs), sum(r["pings"] for r in rs)))
PY
