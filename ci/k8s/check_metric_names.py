#!/usr/bin/env python3
"""Dashboards and rules use only metric names the runtime and caxton-bench define.

Names come from the Rust sources, the one place they live: string literals
"caxton_..." in runtime/src/metrics.rs and "caxton_bench_..." under loadgen/src,
benches/src and reports/src. A source that defines none is an error (a moved
file must not turn the check into a no-op), and so is a name in code that
CONTRACTS.md does not list. Also: every dashboard is importable JSON (dashboard.title,
panels with unique ids) and every panel target has a non-empty expr.
Usage: check_metric_names.py REPO_DIR EXPRESSIONS_JSONL
"""
import glob
import json
import os
import re
import sys

LITERAL = re.compile(r'"(caxton_[a-z_]+)"')
USED = re.compile(r"\bcaxton_[a-z_]+")
SUFFIX = re.compile(r"_(bucket|sum|count)$")


def names_from(files, prefix):
    found = set()
    for f in files:
        found |= {n for n in LITERAL.findall(open(f, encoding="utf-8").read()) if n.startswith(prefix)}
    return found


def main():
    repo, exprs = sys.argv[1], sys.argv[2]
    runtime = names_from(glob.glob(os.path.join(repo, "runtime/src/metrics.rs")), "caxton_")
    runtime = {n for n in runtime if not n.startswith("caxton_bench_")}
    bench_sources = [
        f
        for d in ("loadgen/src", "benches/src", "reports/src")
        for f in glob.glob(os.path.join(repo, d, "**/*.rs"), recursive=True)
    ]
    bench = names_from(bench_sources, "caxton_bench_")
    if not runtime:
        sys.exit(f"{repo}/runtime/src/metrics.rs: no caxton_* metric name found; names must come from the code")
    if not bench:
        sys.exit(f"{repo}: no caxton_bench_* name under loadgen/src, benches/src or reports/src; names must come from the code")
    known = runtime | bench
    errors = []
    contracts = open(os.path.join(repo, "CONTRACTS.md"), encoding="utf-8").read()
    documented = set(re.findall(r"`(caxton_[a-z_]+)`", contracts))
    defined = {SUFFIX.sub("", n) for n in known if not n.endswith("_")}
    for name in sorted(defined - documented):
        errors.append(f"CONTRACTS.md: {name} is defined in code and not listed")
    for path in sorted(glob.glob(os.path.join(repo, "k8s/dashboards/*.json"))):
        try:
            doc = json.load(open(path, encoding="utf-8"))
        except json.JSONDecodeError as e:
            errors.append(f"{path}: not JSON: {e}")
            continue
        dash = doc.get("dashboard", doc)
        if not dash.get("title"):
            errors.append(f"{path}: no dashboard.title")
        ids = [p.get("id") for p in dash.get("panels", []) if "id" in p]
        if len(ids) != len(set(ids)):
            errors.append(f"{path}: duplicate panel ids")
        for p in dash.get("panels", []):
            if p.get("type") != "row" and not p.get("targets"):
                errors.append(f"{path}: panel {p.get('title')!r} has no targets")
    count = 0
    used = set()
    for line in open(exprs, encoding="utf-8"):
        e = json.loads(line)
        count += 1
        if not e["expr"].strip():
            errors.append(f"{e['file']}: {e['where']}: empty expr")
        for n in USED.findall(e["expr"]):
            base = SUFFIX.sub("", n)
            used.add(base)
            if base not in known:
                errors.append(f"{e['file']}: {e['where']}: unknown metric {n}")
    for e in errors:
        print(f"FAIL {e}")
    print(f"{count} expressions use {len(used)} metric names; runtime names not shown anywhere: "
          f"{sorted(runtime - used) or 'none'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
