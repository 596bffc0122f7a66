#!/usr/bin/env bash
# Measures `keyward scan` against the open scanners a provider would compare
# it with, all on this machine in one run, and prints one table:
#
#   files:   the crate sources under ~/.cargo/registry/src (real code)
#   history: a git repository whose long history is built here from those
#            sources, one commit per crate version, with deletions — every
#            unique blob once
#
# For each tool and mode: wall time, MB/s (of the same input size for every
# tool) and peak RSS. Then precision and recall of Keyward and Kingfisher on
# the labeled corpus in bench/scan-corpus (bench/scan-accuracy.py).
#
# Peers are installed as a user would, into $TOOLS (default
# /tmp/keyward-scan-peers): Kingfisher and detect-secrets from PyPI in a
# venv, ripsecrets with `cargo install`. ripsecrets and detect-secrets have
# no history mode.
#
# Usage: bench/scan.sh          (SOURCES=~/.cargo/registry/src)
#        DETECT_SECRETS=0 bench/scan.sh   skips detect-secrets, which takes
#                                         minutes over the crate sources
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sources=${SOURCES:-$HOME/.cargo/registry/src}
tools=${TOOLS:-/tmp/keyward-scan-peers}
work=$(mktemp -d /tmp/keyward-scan-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

echo "== installing peers into $tools" >&2
mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/kingfisher" ] || [ ! -x "$tools/venv/bin/detect-secrets" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q kingfisher-bin detect-secrets
fi
if [ ! -x "$tools/bin/ripsecrets" ]; then
  cargo install -q --locked ripsecrets --root "$tools"
fi
kingfisher=("$tools/venv/bin/kingfisher")
export XDG_CACHE_HOME="$work/cache"

echo "== building keyward (release)" >&2
cargo build --release -q -p keyward --bin keyward
keyward=$root/target/release/keyward

echo "== building a git history from $sources" >&2
repo=$work/history
git init -q -b main "$repo"
git -C "$repo" config user.name "Bench"
git -C "$repo" config user.email "bench@example.invalid"
git -C "$repo" config core.autocrlf false
n=0
for crate in "$sources"/*/*/; do
  name=$(basename "$crate")
  base=${name%-[0-9]*}
  # A later version of the same crate replaces the earlier one: history
  # holds both, the tree only the last.
  rm -rf "$repo/vendor/$base"
  mkdir -p "$repo/vendor/$base"
  cp -R "$crate". "$repo/vendor/$base/"
  git -C "$repo" add -A vendor >/dev/null
  git -C "$repo" commit -q --no-verify -m "vendor $name"
  n=$((n + 1))
  # Every tenth crate is dropped again: its blobs live only in history.
  if [ $((n % 10)) -eq 0 ]; then
    git -C "$repo" rm -rq "vendor/$base"
    git -C "$repo" commit -q --no-verify -m "drop $base"
  fi
done
git -C "$repo" gc -q
commits=$(git -C "$repo" rev-list --all --count)
files_bytes=$(find "$sources" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
blob_bytes=$(git -C "$repo" cat-file --batch-all-objects --batch-check='%(objecttype) %(objectsize)' |
  awk '$1 == "blob" {s += $2} END {print s}')

# run NAME BYTES CMD...: prints "NAME seconds MB/s peak_MB exit"
run() {
  local name=$1 bytes=$2; shift 2
  local status=0
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || status=$?
  read -r secs rss_kb < <(tail -n 1 "$work/$name.time")
  python3 -c "import sys; n,b,s,r,e=sys.argv[1:]; s=float(s); print(n, f'{s:.2f}', f'{int(b)/1e6/max(s,1e-3):.1f}', f'{int(r)/1024:.0f}', e)" \
    "$name" "$bytes" "$secs" "$rss_kb" "$status"
}

echo "== files: $sources ($((files_bytes / 1000000)) MB)" >&2
# Warm the page cache, and Kingfisher's compiled-rule cache, which its
# first run fills.
find "$sources" -type f -print0 | xargs -0 cat >/dev/null
"${kingfisher[@]}" scan bench/scan-corpus --no-validate --no-update-check --git-history none \
  --format json >/dev/null 2>&1 || true
results=()
results+=("$(run keyward-files "$files_bytes" "$keyward" scan "$sources" --format json --no-ignore --quiet)")
results+=("$(run kingfisher-files "$files_bytes" "${kingfisher[@]}" scan "$sources" --no-validate --no-update-check --git-history none --format json)")
results+=("$(run ripsecrets-files "$files_bytes" "$tools/bin/ripsecrets" "$sources")")
# detect-secrets only scans paths under the working directory.
[ "${DETECT_SECRETS:-1}" = 0 ] ||
  results+=("$(run detect-secrets-files "$files_bytes" bash -c 'cd "$1" && exec "$2" scan --all-files .' _ "$sources" "$tools/venv/bin/detect-secrets")")

echo "== history: $commits commits, $((blob_bytes / 1000000)) MB of unique blobs" >&2
results+=("$(run keyward-history "$blob_bytes" "$keyward" scan --git "$repo" --format json --quiet)")
results+=("$(run kingfisher-history "$blob_bytes" "${kingfisher[@]}" scan "$repo" --no-validate --no-update-check --git-history full --format json)")

echo "== accuracy on bench/scan-corpus" >&2
"$keyward" scan bench/scan-corpus --format json --no-ignore --quiet >"$work/kw-corpus.json" || true
"${kingfisher[@]}" scan bench/scan-corpus --no-validate --no-update-check --git-history none \
  --format json >"$work/kf-corpus.json" 2>/dev/null || true
python3 bench/scan-accuracy.py --labels bench/scan-corpus/labels.json \
  --keyward "$work/kw-corpus.json" --kingfisher "$work/kf-corpus.json" --no-fn >"$work/accuracy.txt"

kf_version=$("${kingfisher[@]}" --version 2>/dev/null | head -n 1)
rs_version=$("$tools/bin/ripsecrets" --version 2>/dev/null | head -n 1)
ds_version=$("$tools/venv/bin/detect-secrets" --version 2>/dev/null | head -n 1)
python3 - "$kf_version" "$rs_version" "$ds_version" "${results[@]}" <<'PY'
import sys
kf, rs, ds, *rows = sys.argv[1:]
data = {}
for row in rows:
    name, secs, mbs, rss, status = row.split()
    tool, mode = name.rsplit("-", 1)
    data[(tool, mode)] = (float(secs), float(mbs), int(rss), status)
print(f"keyward scan against {kf}, {rs}, detect-secrets {ds}; one machine, one run")
print(f"{'tool':<16}{'mode':<9}{'wall s':>9}{'MB/s':>9}{'peak MB':>9}{'exit':>6}{'vs kingfisher':>15}")
for (tool, mode), (secs, mbs, rss, status) in data.items():
    base = data.get(("kingfisher", mode))
    ratio = f"{mbs / base[1]:.2f}x" if base else ""
    print(f"{tool:<16}{mode:<9}{secs:>9.2f}{mbs:>9.1f}{rss:>9}{status:>6}{ratio:>15}")
kw, rip = data.get(("keyward", "files")), data.get(("ripsecrets", "files"))
if kw and rip:
    print(f"keyward / ripsecrets (files): {kw[1] / rip[1]:.2f}x")
PY
echo
cat "$work/accuracy.txt"
