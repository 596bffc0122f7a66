#!/usr/bin/env bash
# Transit benchmarks, in one run on this machine, printed as one table:
#
#   1. transit encrypt in process vs the bare AES-256-GCM it wraps, for 64 B
#      and 64 KiB (criterion, crates/keyward-crypto/benches/transit.rs)
#   2. POST /v1/transit/encrypt of a 64-byte payload vs GET /health on the
#      same server (wrk, one fixed request body: no per-request script cost)
#   3. POST /v1/transit/encrypt with batch_input of 1,000 items
#
# Usage: bench/transit.sh            (DURATION=10s CONNECTIONS=64)
# Needs wrk from Debian's packages; installs it if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
work=$(mktemp -d /tmp/keyward-transit-bench.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

echo "== building (release)" >&2
cargo build --release -q -p keyward --bin keyward
echo "== 1. in process: criterion" >&2
cargo bench -q -p keyward-crypto --bench transit -- --noplot >"$work/criterion.txt" 2>&1
estimate() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['mean']['point_estimate'])" "target/criterion/transit_encrypt/$1/new/estimates.json"; }
bare64=$(estimate bare_aes_256_gcm/64); transit64=$(estimate transit/64)
bare64k=$(estimate bare_aes_256_gcm/65536); transit64k=$(estimate transit/65536)

echo "== 2+3. HTTP" >&2
target/release/keyward serve --data-dir "$work/data" --listen 127.0.0.1:18730 --log warn 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 200); do curl -fs http://127.0.0.1:18730/ready >/dev/null 2>&1 && break; sleep 0.05; done
root_token=$(grep -o 'kwa_live_[0-9A-Za-z]*' "$work/serve.log" | head -n 1)
token=$(curl -fs -H "Authorization: Bearer $root_token" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["transit:use"]}' http://127.0.0.1:18730/v1/tokens |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
curl -fs -H "Authorization: Bearer $root_token" -H 'content-type: application/json' -d '{}' \
  http://127.0.0.1:18730/v1/transit/keys/bench >/dev/null
payload=$(head -c 64 /dev/urandom | base64 -w0)
cat >"$work/encrypt.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"plaintext":"$payload"}'
LUA
python3 - "$payload" "$token" >"$work/batch.lua" <<'PY'
import json, sys
payload, token = sys.argv[1], sys.argv[2]
body = json.dumps({"batch_input": [{"plaintext": payload}] * 1000})
print('wrk.method = "POST"')
print('wrk.headers["Content-Type"] = "application/json"')
print(f'wrk.headers["Authorization"] = "Bearer {token}"')
print(f"wrk.body = '{body}'")
PY
# One request of each, checked, before measuring.
curl -fs -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"plaintext\":\"$payload\"}" http://127.0.0.1:18730/v1/transit/encrypt/bench | grep -q 'kw:v1:'
run() { wrk -t2 -c"$1" -d"$duration" --latency "${@:2}" >"$work/out.txt"; python3 - "$work/out.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
print(f"{rps:.0f} {p99:.2f} {bad.group(1) if bad else 0}")
PY
}
read -r h_rps h_p99 _ < <(run "$conns" http://127.0.0.1:18730/health)
read -r e_rps e_p99 e_bad < <(run "$conns" -s "$work/encrypt.lua" http://127.0.0.1:18730/v1/transit/encrypt/bench)
read -r b_rps b_p99 b_bad < <(run 4 -s "$work/batch.lua" http://127.0.0.1:18730/v1/transit/encrypt/bench)

python3 - "$bare64" "$transit64" "$bare64k" "$transit64k" "$h_rps" "$h_p99" "$e_rps" "$e_p99" "$e_bad" "$b_rps" "$b_p99" "$b_bad" "$duration" "$conns" <<'PY'
import sys
(b64, t64, b64k, t64k, h, hp, e, ep, eb, b, bp, bb, dur, conns) = sys.argv[1:]
f = float
mbps = lambda ns, n: n / (f(ns) / 1e9) / 1e6
rows = [
    ("transit encrypt 64 B (in process)", f"{f(t64):.0f} ns", f"bare AES-256-GCM: {f(b64):.0f} ns", f"{f(b64)/f(t64):.2f}", "reported"),
    ("transit encrypt 64 KiB (in process)", f"{f(t64k)/1000:.1f} us ({mbps(t64k, 65536):.0f} MB/s)",
     f"bare AES-256-GCM: {f(b64k)/1000:.1f} us ({mbps(b64k, 65536):.0f} MB/s)", f"{f(b64k)/f(t64k):.2f}", ">= 0.9"),
    ("POST /v1/transit/encrypt, 64 B", f"{f(e):.0f} req/s, p99 {f(ep):.2f} ms", f"GET /health: {f(h):.0f} req/s, p99 {f(hp):.2f} ms", f"{f(e)/f(h):.2f}", ">= 0.6"),
    ("batch_input of 1,000 items (4 conns)", f"{f(b)*1000:.0f} items/s, p99 {f(bp):.2f} ms", f"{f(b):.0f} batches/s", "", "reported"),
]
print(f"Keyward transit benchmarks: wrk -t2 -c{conns} -d{dur}, one machine, one run; non-2xx: encrypt {eb}, batch {bb}")
if int(eb) or int(bb):
    print("WARNING: some requests failed; their rates are not comparable")
head = ("measure", "keyward", "baseline", "ratio (transit speed / baseline)", "goal")
w = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
for r in [head] + rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
PY
