#!/usr/bin/env bash
# Server CPU per signed verify against per unsigned verify, over HTTP, on
# one `keyward serve` (SQLite, replays remembered in memory):
#   POST /v1/keys/verify with {"key"} for an unsigned key, and with
#   {"key", "request"} for an HMAC key, each request signed with its own
#   nonce (RFC 9421: @method @authority @path @query content-digest).
# The client (Python, one keep-alive connection per process) is slow and
# shares the cores; what is compared is the server's CPU time per request,
# from /proc, so the client's speed does not enter the ratio.
#   N=20000 CLIENTS=2 bench/signed.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. bench/lib.sh
n="${N:-20000}"
clients="${CLIENTS:-2}"
cargo build --release -q -p keyward
bin="$root/target/release/keyward"
work=$(mktemp -d)
trap 'kill "${serve_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" serve --data-dir "$work/data" --listen 127.0.0.1:18730 --log warn 2>"$work/serve.log" &
serve_pid=$!
wait_ready http://127.0.0.1:18730/ready 30
root_token=$(grep -o 'kwa_live_[0-9A-Za-z]*' "$work/serve.log" | head -n 1)
python3 - "$root_token" "$n" "$clients" "$serve_pid" <<'PY'
import base64, hashlib, hmac, http.client, json, multiprocessing, os, sys, time

token, n, clients, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", 18730)

def call(method, path, body):
    conn.request(method, path, json.dumps(body), {"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"{}")

_, api = call("POST", "/v1/apis", {"name": "bench", "prefix": "bs", "environments": ["live"]})
_, plain = call("POST", "/v1/keys", {"api_id": api["id"], "environment": "live", "owner": "a",
                                      "scopes": ["trade"]})
_, signed = call("POST", "/v1/keys", {"api_id": api["id"], "environment": "live", "owner": "a",
                                       "scopes": ["trade"], "signing": {"algorithm": "hmac-sha256",
                                                                        "window_ms": 300000}})
_, verifier = call("POST", "/v1/tokens", {"name": "bench", "scopes": ["keys:verify"]})
secret, key_id = signed["signing_secret"].encode(), signed["id"]

def signed_body(i):
    body = '{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","qty":"1","price":"97000"}'
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + ":"
    params = ('("@method" "@authority" "@path" "@query" "content-digest");created=%d;'
              'keyid="%s";nonce="%016x";alg="hmac-sha256"' % (int(time.time()), key_id, i))
    base = ('"@method": POST\n"@authority": api.example.com\n"@path": /api/v3/order\n'
            '"@query": ?venue=spot\n"content-digest": %s\n"@signature-params": %s' % (digest, params))
    sig = base64.b64encode(hmac.new(secret, base.encode(), hashlib.sha256).digest()).decode()
    return json.dumps({"key": signed["key"], "scopes": ["trade"], "request": {
        "method": "POST", "path": "/api/v3/order", "query": "venue=spot",
        "headers": [["Host", "api.example.com"], ["Content-Type", "application/json"],
                    ["Content-Digest", digest], ["Signature-Input", "sig1=" + params],
                    ["Signature", "sig1=:" + sig + ":"]],
        "body": body}})

def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def send(bodies, expect, out):
    c = http.client.HTTPConnection("127.0.0.1", 18730)
    bad = 0
    for body in bodies:
        c.request("POST", "/v1/keys/verify", body, {"Authorization": f"Bearer {verifier['token']}",
                                                    "Content-Type": "application/json"})
        answer = json.loads(c.getresponse().read())
        bad += answer["code"] != expect
    out.put(bad)

def run(name, bodies, expect):
    per = [bodies[i::clients] for i in range(clients)]
    out = multiprocessing.Queue()
    before, started = ticks(), time.time()
    procs = [multiprocessing.Process(target=send, args=(p, expect, out)) for p in per]
    for p in procs: p.start()
    for p in procs: p.join()
    elapsed, used = time.time() - started, ticks() - before
    bad = sum(out.get() for _ in procs)
    us = used / os.sysconf("SC_CLK_TCK") / len(bodies) * 1e6
    print(f"{name}: {len(bodies)} requests in {elapsed:.1f} s, {bad} not {expect}, "
          f"server CPU {us:.1f} µs per request")
    return us

unsigned = [json.dumps({"key": plain["key"], "scopes": ["trade"]})] * n
signed_bodies = [signed_body(i) for i in range(n)]
# Warm both keys into the cache.
run("warm", unsigned[:200] + [signed_body(n + i) for i in range(200)], "VALID")
results = {}
for round_ in range(2):
    results.setdefault("unsigned", []).append(run(f"unsigned {round_}", unsigned, "VALID"))
    bodies = signed_bodies if round_ == 0 else [signed_body(2 * n + i) for i in range(n)]
    results.setdefault("signed", []).append(run(f"signed {round_}", bodies, "VALID"))
u, s = min(results["unsigned"]), min(results["signed"])
print(f"server CPU per signed verify / per unsigned verify: {s:.1f} / {u:.1f} µs = {s / u:.2f}")
PY
