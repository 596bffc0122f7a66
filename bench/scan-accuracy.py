#!/usr/bin/env python3
"""Precision and recall of secret scanners on the labeled corpus bench/scan-corpus.

    keyward scan bench/scan-corpus --format json --no-ignore -q > /tmp/kw.json
    XDG_CACHE_HOME=/tmp/kf-cache kingfisher scan bench/scan-corpus \\
        --no-validate --no-update-check --format json > /tmp/kf.json
    python3 bench/scan-accuracy.py --labels bench/scan-corpus/labels.json \\
        --keyward /tmp/kw.json --kingfisher /tmp/kf.json

Findings files may hold one JSON document, several concatenated ones (Kingfisher's
`--format json` writes the findings document and then a summary document) or JSON
Lines. A record is either flat, `{"rule", "path", "line", ...}` (keyward), or nested,
`{"rule": {"id"}, "finding": {"path", "line"}}` (Kingfisher). Paths are made relative
to the corpus by cutting everything up to and including `scan-corpus/` (the name of
the folder holding labels.json).

Matching. Each positive in labels.json has a file, a 1-based line and a kind. A
finding matches a positive when it is in the same file and its line is in the
positive's accepted range: `first_line`..`last_line` when the label gives them
(a PEM block from BEGIN to END, a whole service-account JSON object), else
line..line+WINDOW (default 30) for multi-line kinds (private keys, service
accounts), else the labeled line only. Each positive counts once: the first
finding on it is a true positive, further ones are duplicates (neither TP nor
FP). A finding that matches no positive is a false positive.

Recall per kind = positives of that kind found / positives of that kind.
Precision = TP / (TP + FP). "On kinds X supports" restricts recall to the kinds
of which tool X finds at least one positive, for an apples-to-apples comparison.

Standard library only.
"""
import argparse
import json
import os
import sys
from collections import defaultdict

MULTILINE_KINDS_PREFIXES = ("private-key", "gcp-service-account", "coinbase-cdp-private-key")


def decode_all(text):
    """Every JSON value in text: one document, several concatenated, or JSON Lines."""
    dec = json.JSONDecoder()
    i, n, out = 0, len(text), []
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            return out
        val, i = dec.raw_decode(text, i)
        out.append(val)


def records(values):
    for v in values:
        if isinstance(v, list):
            yield from records(v)
        elif isinstance(v, dict):
            if isinstance(v.get("findings"), list):
                yield from records(v["findings"])
            elif "finding" in v or ("path" in v and "line" in v):
                yield v
            # anything else (summaries, metadata) is skipped


def to_finding(rec):
    """(path, line, rule) of one record, flat or Kingfisher-style."""
    if isinstance(rec.get("finding"), dict):
        f = rec["finding"]
        rule = rec.get("rule")
        rule = rule.get("id") or rule.get("name") if isinstance(rule, dict) else rule
        path = f.get("path") or f.get("file")
        line = f.get("line") or f.get("line_num") or f.get("start_line")
    else:
        rule = rec.get("rule") or rec.get("rule_id") or rec.get("id")
        if isinstance(rule, dict):
            rule = rule.get("id") or rule.get("name")
        path = rec.get("path") or rec.get("file")
        line = rec.get("line") or rec.get("start_line")
    if path is None or line is None:
        return None
    return str(path), int(line), str(rule)


def normalise(path, marker):
    path = path.replace("\\", "/")
    k = path.find(marker)
    if k >= 0:
        path = path[k + len(marker):]
    while path.startswith("./"):
        path = path[2:]
    return path


def load_findings(path, marker):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out, skipped = [], 0
    for rec in records(decode_all(text)):
        t = to_finding(rec)
        if t is None:
            skipped += 1
            continue
        out.append((normalise(t[0], marker), t[1], t[2]))
    if skipped:
        print(f"warning: {path}: {skipped} records without path/line skipped", file=sys.stderr)
    return out


class Label:
    def __init__(self, d, window):
        self.file, self.line, self.kind = d["file"], int(d["line"]), d["kind"]
        multi = self.kind.startswith(MULTILINE_KINDS_PREFIXES)
        self.lo = int(d.get("first_line", self.line))
        self.hi = int(d.get("last_line", self.line + window if multi else self.line))

    def covers(self, line):
        return self.lo <= line <= self.hi

    def where(self):
        return f"{self.file}:{self.line}"


def evaluate(labels, findings):
    by_file = defaultdict(list)
    for lab in labels:
        by_file[lab.file].append(lab)
    found = {}  # id(label) -> (line, rule)
    fps, dups = [], []
    # exact-line matches first, so a finding on a labeled line is never taken
    # by a neighbour's range
    order = sorted(findings, key=lambda f: (f[0], f[1]))
    pending = []
    for f in order:
        exact = [l for l in by_file.get(f[0], []) if l.line == f[1]]
        if exact:
            lab = exact[0]
            if id(lab) in found:
                dups.append((f, lab))
            else:
                found[id(lab)] = f
        else:
            pending.append(f)
    for f in pending:
        cands = [l for l in by_file.get(f[0], []) if l.covers(f[1])]
        if not cands:
            fps.append(f)
            continue
        fresh = [l for l in cands if id(l) not in found]
        pick = min(fresh or cands, key=lambda l: (abs(f[1] - l.line), l.line))
        if id(pick) in found:
            dups.append((f, pick))
        else:
            found[id(pick)] = f
    return found, fps, dups


def pct(a, b):
    return "   -  " if b == 0 else f"{100.0 * a / b:5.1f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", required=True)
    ap.add_argument("--keyward", help="findings of `keyward scan --format json`")
    ap.add_argument("--kingfisher", help="findings of `kingfisher scan --format json|jsonl`")
    ap.add_argument("--tool", action="append", default=[], metavar="NAME=FILE",
                    help="another tool's findings (flat or Kingfisher-style records)")
    ap.add_argument("--window", type=int, default=30,
                    help="lines after the labeled line accepted for multi-line kinds "
                         "without an explicit range (default 30)")
    ap.add_argument("--no-fn", action="store_true", help="do not list false negatives")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()

    with open(args.labels, encoding="utf-8") as f:
        spec = json.load(f)
    marker = os.path.basename(os.path.dirname(os.path.abspath(args.labels))) + "/"
    labels = [Label(d, args.window) for d in spec["positives"]]
    kinds = list(spec.get("kinds", {}))
    for lab in labels:
        if lab.kind not in kinds:
            kinds.append(lab.kind)
    count = defaultdict(int)
    for lab in labels:
        count[lab.kind] += 1
    negtag = {(d["file"], int(d["line"])): d["kind"] for d in spec.get("negatives", [])}
    known_files = {lab.file for lab in labels} | {d["file"] for d in spec.get("negatives", [])}

    tools = []
    if args.keyward:
        tools.append(("keyward", args.keyward))
    if args.kingfisher:
        tools.append(("kingfisher", args.kingfisher))
    for t in args.tool:
        name, _, path = t.partition("=")
        tools.append((name, path))
    if not tools:
        ap.error("give at least one of --keyward, --kingfisher, --tool")

    res = {}
    for name, path in tools:
        findings = load_findings(path, marker)
        found, fps, dups = evaluate(labels, findings)
        per_kind = defaultdict(int)
        for lab in labels:
            if id(lab) in found:
                per_kind[lab.kind] += 1
        res[name] = dict(findings=findings, found=found, fps=fps, dups=dups, per_kind=per_kind,
                         supports={k for k, v in per_kind.items() if v})
        stray = {f[0] for f in findings} - known_files
        if stray and not any(f in known_files for f in {x[0] for x in findings}):
            print(f"warning: {name}: no finding path matches the corpus; check path "
                  f"normalisation (e.g. {sorted(stray)[0]})", file=sys.stderr)

    names = [n for n, _ in tools]
    total = len(labels)
    print(f"corpus: {len({l.file for l in labels})} files with positives, {total} positives "
          f"in {len(kinds)} kinds, {len(spec.get('negatives', []))} tagged hard negatives\n")

    # per-kind table
    w = max(len(k) for k in kinds + ["kind"])
    cw = max(16, max(len(n) for n in names))
    head = f"{'kind':<{w}}  count  " + "  ".join(f"{n:>{cw}}" for n in names)
    print(head)
    print("-" * len(head))
    for k in kinds:
        cells = []
        for n in names:
            got = res[n]["per_kind"][k]
            cells.append(f"{got:>3}/{count[k]:<3} {pct(got, count[k])}")
        print(f"{k:<{w}}  {count[k]:>5}  " + "  ".join(f"{c:>{cw}}" for c in cells))
    print()

    # overall
    summary = {}
    for n in names:
        r = res[n]
        tp, fp = len(r["found"]), len(r["fps"])
        line = {"findings": len(r["findings"]), "tp": tp, "fp": fp, "duplicates": len(r["dups"]),
                "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / total,
                "kinds_found": sorted(r["supports"]),
                "recall_per_kind": {k: r["per_kind"][k] / count[k] for k in kinds}}
        for other in names:
            ks = res[other]["supports"]
            den = sum(count[k] for k in ks)
            num = sum(r["per_kind"][k] for k in ks)
            line[f"recall_on_kinds_{other}_supports"] = num / den if den else None
            line[f"_n_{other}"] = (num, den, len(ks))
        summary[n] = line
    tw = max(12, max(len(n) for n in names))
    print(f"{'tool':<{tw}} {'findings':>8} {'TP':>4} {'FP':>4} {'dup':>4} {'precision':>9} "
          f"{'recall':>7}")
    for n in names:
        s = summary[n]
        print(f"{n:<{tw}} {s['findings']:>8} {s['tp']:>4} {s['fp']:>4} {s['duplicates']:>4} "
              f"{pct(s['tp'], s['tp'] + s['fp']):>9} {pct(s['tp'], total):>7}")
    print()
    print("recall restricted to the kinds a tool finds at least once (\"kinds it supports\"):")
    for n in names:
        for other in names:
            num, den, nk = summary[n][f"_n_{other}"]
            who = "its own" if other == n else f"{other}'s"
            print(f"  {n:<{tw}} on {who:<{tw + 2}} {nk:>2} kinds ({den:>3} positives): "
                  f"{num:>3}/{den:<3} {pct(num, den)}")
    print()

    for n in names:
        r = res[n]
        print(f"false positives of {n} ({len(r['fps'])}):")
        for f in sorted(r["fps"]):
            tag = negtag.get((f[0], f[1]))
            print(f"  {n:<10} {f[0]}:{f[1]:<5} {f[2]}" + (f"   [hard negative: {tag}]" if tag else ""))
        print()
    if not args.no_fn:
        for n in names:
            r = res[n]
            miss = [l for l in labels if id(l) not in r["found"]]
            print(f"false negatives of {n} ({len(miss)}):")
            for lab in sorted(miss, key=lambda l: (l.kind, l.file, l.line)):
                print(f"  {n:<10} {lab.kind:<26} {lab.where()}")
            print()

    if args.json:
        for n in names:
            for k in list(summary[n]):
                if k.startswith("_n_"):
                    del summary[n][k]
            summary[n]["false_positives"] = [
                {"file": f[0], "line": f[1], "rule": f[2], "hard_negative": negtag.get((f[0], f[1]))}
                for f in sorted(res[n]["fps"])]
            summary[n]["false_negatives"] = [
                {"file": l.file, "line": l.line, "kind": l.kind}
                for l in labels if id(l) not in res[n]["found"]]
        with open(args.json, "w") as f:
            json.dump({"positives": total, "kinds": {k: count[k] for k in kinds}, "tools": summary},
                      f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
