#!/usr/bin/env bash
# Runs every Keyward benchmark on this machine, in one run, and prints one
# table of ratios against the baselines:
#
#   1. verify on a cache hit vs SHA-256 of the key (criterion, in process)
#   2. POST /v1/keys/verify vs GET /health on the same server (wrk)
#   3. keyward gateway vs nginx checking a key map, both in front of the same
#      upstream, same keys, same wrk settings
#   4. start-to-ready with 1,000,000 keys in SQLite, and RSS with all of them
#      cached
#
# Usage: bench/run.sh   (KEYS=100000 BIG=1000000 DURATION=10s CONNECTIONS=64 ROUNDS=3)
# Needs wrk and nginx-light from Debian's packages; installs them if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
http="${SHARED_BENCH:-$root/../shared/bench/http}"
keys_n=${KEYS:-100000}
big_n=${BIG:-1000000}
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
rounds=${ROUNDS:-3}
threads=2
work=$(mktemp -d /tmp/keyward-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$http/nginx-peer.sh" stop >/dev/null 2>&1 || true
  [ -f "$work/static/nginx.pid" ] && kill "$(cat "$work/static/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need /usr/bin/time time
[ -x "$http/nginx-peer.sh" ] || [ -f "$http/nginx-peer.sh" ] || { echo "missing $http (set SHARED_BENCH)" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release -q -p keyward --bin keyward --example seed_keys
bin=target/release/keyward
seed=target/release/examples/seed_keys

echo "== 1. in process: criterion" >&2
cargo bench -q -p keyward-verify --bench verify -- --noplot >"$work/criterion.txt" 2>&1
estimate() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['mean']['point_estimate'])" "target/criterion/hot_path/$1/new/estimates.json"; }
sha_ns=$(estimate sha256_of_key)
verify_ns=$(estimate verify_cache_hit)

# wait_ready and ticks.
source bench/lib.sh
# wrk_run NAME "PIDS" URL [wrk args...]: prints "rps p99_ms non2xx server_us client_us",
# the last two being CPU microseconds per request of the processes in PIDS
# (the server side) and of wrk itself; on a machine whose cores the client
# shares, they tell the server's cost apart from the client's.
wrk_run() {
  local name=$1 pids=$2 url=$3; shift 3
  local before after
  before=$(ticks "$pids")
  /usr/bin/time -f "%U %S" -o "$work/$name.time" \
    wrk -t$threads -c$conns -d"$duration" --latency "$@" "$url" >"$work/$name.txt"
  after=$(ticks "$pids")
  python3 - "$work/$name.txt" "$work/$name.time" $((after - before)) "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
n = int(re.search(r"(\d+) requests in", text).group(1))
user, system = map(float, open(sys.argv[2]).read().split()[-2:])
server_us = int(sys.argv[3]) / int(sys.argv[4]) * 1e6 / n
client_us = (user + system) * 1e6 / n
print(f"{rps:.0f} {float(m.group(1)) * scale:.3f} {non2xx.group(1) if non2xx else 0} {server_us:.1f} {client_us:.1f}")
PY
}

echo "== 2+3. HTTP with $keys_n keys" >&2
"$seed" "sqlite://$work/small/keyward.db" tm "$keys_n" "$work/keys.txt" 2>>"$work/seed.log"
"$bin" serve --data-dir "$work/small" --listen 127.0.0.1:18720 --log warn 2>"$work/serve.log" &
serve_pid=$!
pids+=($serve_pid)
wait_ready http://127.0.0.1:18720/ready 30
root_token=$(grep -o 'kwa_live_[0-9A-Za-z]*' "$work/serve.log" | head -n 1)
# A token with only keys:verify, as an API server would use.
verify_token=$(curl -fs -H "Authorization: Bearer $root_token" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["keys:verify"]}' http://127.0.0.1:18720/v1/tokens |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
"$http/nginx-peer.sh" "$work/keys.txt" 18080 18081 >/dev/null
wait_ready http://127.0.0.1:18081/v1/prices 10
"$bin" gateway --data-dir "$work/small" --upstream http://127.0.0.1:18081 \
  --routes bench/routes.toml --listen 127.0.0.1:18082 --log warn 2>"$work/gateway.log" &
gateway_pid=$!
pids+=($gateway_pid)
sleep 0.5
# Each measurement starts on a warm cache: every key verified once just
# before (one wrk thread walks the whole key file), as on a server in steady
# use.
# wrk waits out its whole duration even after the script stopped its thread,
# so the walk gets about as long as it needs (cache misses run at a few
# thousand per second here) and no longer.
walk_for() { echo "$(( $1 / 4000 + 5 ))s"; }
warm() { KEYS_FILE="$work/keys.txt" AUTH="$verify_token" wrk -t1 -c$conns -d"$(walk_for "$keys_n")" -s bench/walk.lua "$1" >/dev/null; }
nginx_pids=$(pgrep -d ' ' -f 'nginx: worker process')
# What the client allows: nginx answering GET /health and verify.lua's POST
# alike, with one fixed body and no work at all. The ratio of the two is the
# most any server could show for verify/health with this client on these
# cores, since wrk's Lua script costs more per request than a plain GET.
mkdir -p "$work/static"
cat >"$work/static/nginx.conf" <<CONF
worker_processes auto;
pid $work/static/nginx.pid;
error_log $work/static/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:18091;
    location / { default_type application/json; return 200 '{"valid":true}'; }
  }
}
CONF
nginx -c "$work/static/nginx.conf"
wait_ready http://127.0.0.1:18091/health 10
static_pids=$(pgrep -d ' ' -P "$(cat "$work/static/nginx.pid")")
warm http://127.0.0.1:18720/v1/keys/verify
KEYS_FILE="$work/keys.txt" wrk -t1 -c$conns -d5s -s "$http/bearer.lua" http://127.0.0.1:18080/v1/prices >/dev/null
KEYS_FILE="$work/keys.txt" wrk -t1 -c$conns -d"$(walk_for "$keys_n")" -s bench/walk-get.lua http://127.0.0.1:18082/v1/prices >/dev/null
# The machine is shared and its speed drifts within seconds, so each
# comparison is made ROUNDS times, its two sides back to back, and the
# table shows the median of the rounds' ratios (and every round's).
: >"$work/rounds.txt"
for round in $(seq "$rounds"); do
  echo "   round $round of $rounds" >&2
  echo "$round health $(wrk_run "health$round" "$serve_pid" http://127.0.0.1:18720/health)" >>"$work/rounds.txt"
  echo "$round verify $(KEYS_FILE="$work/keys.txt" AUTH="$verify_token" \
    wrk_run "verify$round" "$serve_pid" http://127.0.0.1:18720/v1/keys/verify -s "$http/verify.lua")" >>"$work/rounds.txt"
  echo "$round nginx $(KEYS_FILE="$work/keys.txt" \
    wrk_run "nginx$round" "$nginx_pids" http://127.0.0.1:18080/v1/prices -s "$http/bearer.lua")" >>"$work/rounds.txt"
  echo "$round gateway $(KEYS_FILE="$work/keys.txt" \
    wrk_run "gateway$round" "$gateway_pid $nginx_pids" http://127.0.0.1:18082/v1/prices -s "$http/bearer.lua")" >>"$work/rounds.txt"
  echo "$round static_get $(wrk_run "static_get$round" "$static_pids" http://127.0.0.1:18091/health)" >>"$work/rounds.txt"
  echo "$round static_post $(KEYS_FILE="$work/keys.txt" AUTH="$verify_token" \
    wrk_run "static_post$round" "$static_pids" http://127.0.0.1:18091/v1/keys/verify -s "$http/verify.lua")" >>"$work/rounds.txt"
done
kill "$(cat "$work/static/nginx.pid")" 2>/dev/null || true
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
"$http/nginx-peer.sh" stop >/dev/null 2>&1 || true
wait 2>/dev/null || true
pids=()

echo "== 4. start-up and memory with $big_n keys" >&2
"$seed" "sqlite://$work/big/keyward.db" tm "$big_n" "$work/big-keys.txt" 2>>"$work/seed.log"
start_ns=$(date +%s%N)
"$bin" serve --data-dir "$work/big" --listen 127.0.0.1:18720 --log warn 2>"$work/serve-big.log" &
serve_pid=$!
pids+=($serve_pid)
wait_ready http://127.0.0.1:18720/ready 60
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
big_token=$(grep -o 'kwa_live_[0-9A-Za-z]*' "$work/serve-big.log" | head -n 1)
rss_empty_kb=$(awk '/VmRSS/ {print $2}' /proc/$serve_pid/status)
# One thread walks the whole key file once, so every key is verified and
# cached, then stops.
KEYS_FILE="$work/big-keys.txt" AUTH="$big_token" wrk -t1 -c$conns -d"$(walk_for "$big_n")" -s bench/walk.lua \
  http://127.0.0.1:18720/v1/keys/verify >"$work/warm-big.txt"
big_requests=$(python3 -c "import re,sys;print(re.search(r'(\d+) requests in', open(sys.argv[1]).read()).group(1))" "$work/warm-big.txt")
rss_full_kb=$(awk '/VmRSS/ {print $2}' /proc/$serve_pid/status)

python3 - "$sha_ns" "$verify_ns" "$work/rounds.txt" \
  "$ready_ms" "$rss_empty_kb" "$rss_full_kb" "$big_requests" "$big_n" "$keys_n" "$duration" "$conns" <<'PY'
import statistics, sys
(sha, ver, rounds_file, ready, rss0, rss1, big_req, big_n, keys_n, dur, conns) = sys.argv[1:]
f = float
# rounds.txt: "round kind rps p99_ms non2xx server_us client_us" per line.
runs = {}
for line in open(rounds_file):
    rnd, kind, rps, p99, bad, cpu, client = line.split()
    runs.setdefault(kind, []).append(dict(rps=f(rps), p99=f(p99), bad=int(bad), cpu=f(cpu), client=f(client)))
med = lambda kind, field: statistics.median(r[field] for r in runs[kind])
ratios = lambda a, b, field: [x[field] / y[field] for x, y in zip(runs[a], runs[b])]
v_h = ratios("verify", "health", "rps")
g_n = ratios("gateway", "nginx", "rps")
g_n_p99 = ratios("gateway", "nginx", "p99")
s_p_g = ratios("static_post", "static_get", "rps")
each = lambda rs: " ".join(f"{r:.2f}" for r in rs)
rows = [
    ("verify, cache hit (in process)", f"{f(ver):.0f} ns", f"SHA-256 of the key: {f(sha):.0f} ns",
     f"{f(ver)/f(sha):.2f}x", "<= 4"),
    ("POST /v1/keys/verify", f"{med('verify', 'rps'):.0f} req/s, p99 {med('verify', 'p99'):.2f} ms",
     f"GET /health: {med('health', 'rps'):.0f} req/s, p99 {med('health', 'p99'):.2f} ms",
     f"{statistics.median(v_h):.2f}", ">= 0.8"),
    ("keyward gateway -> upstream", f"{med('gateway', 'rps'):.0f} req/s, p99 {med('gateway', 'p99'):.2f} ms",
     f"nginx key map -> upstream: {med('nginx', 'rps'):.0f} req/s, p99 {med('nginx', 'p99'):.2f} ms",
     f"{statistics.median(g_n):.2f} (p99 {statistics.median(g_n_p99):.2f})", ">= 1.0, p99 <= 1.0"),
    (f"start to ready, {int(big_n):,} keys in SQLite", f"{int(ready)} ms", "", "", "<= 2000 ms"),
    (f"RSS, {int(big_n):,} keys cached", f"{int(rss1)/1024:.0f} MB",
     f"at start: {int(rss0)/1024:.0f} MB; warm-up requests: {int(big_req):,}", "", "<= 400 MB"),
]
n = len(v_h)
print(f"Keyward benchmarks: {keys_n} keys for HTTP, wrk -t2 -c{conns} -d{dur}, one machine, one run")
print(f"HTTP figures are medians of {n} rounds; each round measures both sides of a comparison back to back")
bad = {k: sum(r["bad"] for r in v) for k, v in runs.items()}
print(f"non-2xx answers: verify {bad['verify']}, nginx {bad['nginx']}, gateway {bad['gateway']}")
w = [max(len(r[i]) for r in rows + [("measure", "keyward", "baseline", "ratio", "goal")]) for i in range(5)]
for r in [("measure", "keyward", "baseline", "ratio", "goal")] + rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
print()
print("Ratios in each round:")
print(f"  verify/health     {each(v_h)}")
print(f"  gateway/nginx     {each(g_n)}   p99 {each(g_n_p99)}")
print(f"  static nginx, verify.lua POST / plain GET   {each(s_p_g)}")
print()
print("CPU per request (microseconds, user+system, medians), server side and the wrk client:")
print(f"  GET /health            server {med('health', 'cpu'):5.1f}  wrk {med('health', 'client'):5.1f}")
print(f"  POST /v1/keys/verify   server {med('verify', 'cpu'):5.1f}  wrk {med('verify', 'client'):5.1f}")
print(f"  nginx key map + upstream (nginx workers)               {med('nginx', 'cpu'):5.1f}  wrk {med('nginx', 'client'):5.1f}")
print(f"  keyward gateway + upstream (keyward + nginx workers)   {med('gateway', 'cpu'):5.1f}  wrk {med('gateway', 'client'):5.1f}")
# Both sides share the cores, so throughput follows the sum of the two
# costs. Were verify to cost the server no more than /health, the ratio
# would still be at most this: the ceiling the client's own cost sets.
h_cpu, v_cl = med('health', 'cpu'), med('verify', 'client')
ceiling = (h_cpu + med('health', 'client')) / (h_cpu + v_cl)
print(f"  verify/health ceiling with this client (server cost of verify = /health): {ceiling:.2f}")
print()
print("The client's own limit: nginx giving verify.lua's POST and a plain GET the same fixed answer")
print(f"  (no server work at all) serves {statistics.median(s_p_g):.2f} as many POSTs as GETs"
      f" ({med('static_post', 'rps'):.0f} vs {med('static_get', 'rps'):.0f} req/s; wrk"
      f" {med('static_post', 'client'):.1f} vs {med('static_get', 'client'):.1f} us per request)")
PY
