#!/usr/bin/env bash
# Compares two builds of the gateway on this machine: both run at once on
# the same store and upstream, and each round measures them back to back in
# the order A B B A, so the machine's drift within a round falls on both.
# Prints the server CPU per proxied request (gateway + nginx upstream
# workers) and the throughput of each, per round and as medians, and the
# ratio B / A.
#
# Usage: bench/gateway-ab.sh OLD_BINARY NEW_BINARY
#   (KEYS=100000 DURATION=10s CONNECTIONS=64 ROUNDS=4)
# A binary is `target/release/keyward` of each tree, built with
# `cargo build --release -p keyward --bin keyward`.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
http="${SHARED_BENCH:-$root/../shared/bench/http}"
keys_n=${KEYS:-100000}
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
rounds=${ROUNDS:-4}
threads=2
work=$(mktemp -d /tmp/keyward-ab.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$http/nginx-peer.sh" stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }

echo "== building the key seeder (release)" >&2
cargo build --release -q -p keyward --example seed_keys
seed=target/release/examples/seed_keys

# wait_ready and ticks.
source bench/lib.sh
# wrk_run NAME "PIDS" URL: prints "rps server_us", the second being the CPU
# microseconds per request of the processes in PIDS.
wrk_run() {
  local name=$1 pids=$2 url=$3
  local before after
  before=$(ticks "$pids")
  KEYS_FILE="$work/keys.txt" wrk -t$threads -c$conns -d"$duration" -s "$http/bearer.lua" "$url" >"$work/$name.txt"
  after=$(ticks "$pids")
  python3 - "$work/$name.txt" $((after - before)) "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
n = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if bad:
    sys.exit(f"{bad.group(1)} non-2xx answers")
print(f"{rps:.0f} {int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / n:.2f}")
PY
}

echo "== seeding $keys_n keys" >&2
"$seed" "sqlite://$work/keyward.db" tm "$keys_n" "$work/keys.txt" 2>>"$work/seed.log"
# A server on the store first, as in bench/run.sh: it initialises the store
# the gateways then share.
"$new" serve --data-dir "$work" --listen 127.0.0.1:18720 --log warn 2>"$work/serve.log" &
pids+=($!)
wait_ready http://127.0.0.1:18720/ready 30
"$http/nginx-peer.sh" "$work/keys.txt" 18080 18081 >/dev/null
wait_ready http://127.0.0.1:18081/v1/prices 10
nginx_pids=$(pgrep -d ' ' -f 'nginx: worker process')
start_gateway() { # BINARY PORT; its pid in $started
  "$1" gateway --data-dir "$work" --upstream http://127.0.0.1:18081 \
    --routes bench/routes.toml --listen "127.0.0.1:$2" --log warn >/dev/null 2>"$work/gateway-$2.log" &
  started=$!
  pids+=($started)
}
start_gateway "$old" 18082
old_pid=$started
start_gateway "$new" 18083
new_pid=$started
sleep 0.5
walk="$(( keys_n / 4000 + 5 ))s"
for port in 18082 18083; do
  KEYS_FILE="$work/keys.txt" wrk -t1 -c$conns -d"$walk" -s bench/walk-get.lua "http://127.0.0.1:$port/v1/prices" >/dev/null
done

: >"$work/rounds.txt"
measure() { # ROUND SIDE
  local pid port
  if [ "$2" = old ]; then pid=$old_pid port=18082; else pid=$new_pid port=18083; fi
  echo "$1 $2 $(wrk_run "$2$1-$RANDOM" "$pid $nginx_pids" "http://127.0.0.1:$port/v1/prices")" >>"$work/rounds.txt"
}
for round in $(seq "$rounds"); do
  echo "   round $round of $rounds" >&2
  measure "$round" old
  measure "$round" new
  measure "$round" new
  measure "$round" old
done

python3 - "$work/rounds.txt" "$old" "$new" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
per = {}
for rnd, side, rps, cpu in rows:
    per.setdefault(int(rnd), {}).setdefault(side, []).append((float(rps), float(cpu)))
print(f"gateway A/B: A = {sys.argv[2]}")
print(f"             B = {sys.argv[3]}")
print("CPU per proxied request (gateway + nginx upstream workers, us) and throughput, rounds of A B B A:")
ratios_cpu, ratios_rps, cpu_a, cpu_b = [], [], [], []
for rnd in sorted(per):
    a, b = per[rnd]["old"], per[rnd]["new"]
    ca, cb = statistics.mean(c for _, c in a), statistics.mean(c for _, c in b)
    ra, rb = statistics.mean(r for r, _ in a), statistics.mean(r for r, _ in b)
    cpu_a.append(ca); cpu_b.append(cb)
    ratios_cpu.append(cb / ca); ratios_rps.append(rb / ra)
    print(f"  round {rnd}: A {ca:5.1f} us {ra:7.0f} req/s   B {cb:5.1f} us {rb:7.0f} req/s   B/A cpu {cb / ca:.3f}")
print(f"medians: A {statistics.median(cpu_a):.1f} us, B {statistics.median(cpu_b):.1f} us; "
      f"B/A CPU per request {statistics.median(ratios_cpu):.3f}, throughput {statistics.median(ratios_rps):.3f}")
PY
