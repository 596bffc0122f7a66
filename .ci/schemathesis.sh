#!/usr/bin/env bash
# A bounded schemathesis pass: starts the real server (embedded SQLite, file
# seal, a temporary data directory, a free port), reads the root token it
# prints on its first start, and runs schemathesis against the OpenAPI
# document it serves, with every check. Any finding fails the run: the
# document must say every status, bound and route the server has.
#
# Usage: .ci/schemathesis.sh PYTHON_VENV
# Reproducible: a fixed seed, one worker (several interleave differently
# from run to run, and CPython 3.11 can fail compiling in parallel threads),
# no example database carried between runs.
# Bounded: few examples per operation and a time budget per pass.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="${1:?usage: $0 VENV}"
st="$venv/bin/schemathesis"
seed="${KEYWARD_SCHEMATHESIS_SEED:-20261203}"
examples="${KEYWARD_SCHEMATHESIS_EXAMPLES:-15}"

work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-schemathesis.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build -q -p keyward
target_dir="${CARGO_TARGET_DIR:-target}"
KEYWARD_DATA_DIR="$work/data" KEYWARD_LISTEN=127.0.0.1:0 KEYWARD_LOG=info \
  "$target_dir/debug/keyward" serve 2>"$work/server.log" &
server_pid=$!

addr=
token=
for _ in $(seq 1 100); do
  addr=$(grep -o 'keyward is serving addr=[0-9.:]*' "$work/server.log" | head -n 1 | sed 's/.*addr=//' || true)
  # The root token, printed once on the first start (an admin token's shape).
  token=$(grep -o 'kwa_live_[A-Za-z0-9]*' "$work/server.log" | head -n 1 || true)
  [ -n "$addr" ] && [ -n "$token" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.log" >&2
    echo "FATAL: the server did not start" >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$addr" ] || [ -z "$token" ]; then
  cat "$work/server.log" >&2
  echo "FATAL: the server printed no address or root token" >&2
  exit 1
fi
base="http://$addr"
echo "server at $base"

# One pass of schemathesis: checks it skips (or "none"), then filters.
pass() {
  local name="$1" skipped="$2"
  shift 2
  local skip=()
  [ "$skipped" = none ] || skip=(--exclude-checks "$skipped")
  echo "--- schemathesis: $name"
  (cd "$work" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$root/.ci" "$st" \
    --config-file "$root/.ci/schemathesis.toml" run "$base/v1/openapi.json" \
    --url "$base" \
    -H "Authorization: Bearer $token" \
    --checks all \
    "${skip[@]}" \
    --seed "$seed" \
    --max-examples "$examples" \
    --generation-database none \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    "$@")
}

# Every check runs on the admin API. The KV v2 and transit routes answer as
# Vault's do, which two checks cannot follow there:
# - they are dispatched by path under the router's fallback, and a method a
#   route does not take answers 404 or 400, not 405 with `Allow`
#   (unsupported_method, allow_header_conformance);
# - a request can be well formed and still refused with 400 for what is
#   stored: a check-and-set that does not match the current version, a
#   transit key of a type that cannot sign, a version outside the key's
#   policy, a ciphertext not made by this key. No schema can state those
#   (positive_data_acceptance).
#
# Operations that would end the run for everything after them go last, each
# in its own pass, in this order:
# - `POST /v1/sys/seal` seals this node (a file seal unseals only on the next
#   start), after which every secrets and transit call answers SEALED;
# - `POST /v1/tokens/{id}/revoke` may revoke the root token itself (its id is
#   in `GET /v1/tokens`), after which every call answers 401.
apart='^(POST (/v1/sys/seal|/v1/tokens/\{id\}/revoke)|(GET|HEAD) /v1/sys/health)$'
pass "the admin API" none \
  --exclude-tag secrets --exclude-tag transit --exclude-tag users --exclude-tag auth \
  --exclude-tag workspaces --exclude-tag owners --exclude-name-regex "$apart"
# People. The pass runs with the root token, a service token, and a request
# can be well formed and still refused with 400 for who is asking or what
# is stored: the session routes (`/v1/auth/totp`, `step-up`, `logout`)
# serve sessions only, a password may be one of the most common, a grant
# may name a role or workspace that does not exist, and an owner's TOTP
# confirmation needs the code of the secret just enrolled. No schema can
# state those (positive_data_acceptance).
pass "users, sessions, workspaces, roles and owners' second factor" positive_data_acceptance \
  --include-tag users --include-tag auth --include-tag workspaces --include-tag owners
# Vault's health endpoint answers whatever status a probe asks for, 5xx
# included (`activecode=503` is how some balancers mark a node out), so a
# 5xx there is the answer asked for, not a server error
# (not_a_server_error).
pass "Vault's health" not_a_server_error --include-name-regex '^(GET|HEAD) /v1/sys/health$'
pass "secrets (KV v2) and transit" \
  unsupported_method,allow_header_conformance,positive_data_acceptance \
  --include-tag secrets --include-tag transit
pass "seal" none --include-name 'POST /v1/sys/seal'
pass "token revoke" none --include-name 'POST /v1/tokens/{id}/revoke'
echo "schemathesis found nothing"
