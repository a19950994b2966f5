#!/usr/bin/env python3
"""Dashboards and rules use only metric names the runtime and caxton-bench define.

Names come from the Rust sources, the one place they live: string literals
"caxton_..." in runtime/src/metrics.rs and "caxton_bench_..." under loadgen/src.
While a source defines none yet, the CONTRACTS.md list below stands in and the
output says so. Also: every dashboard is importable JSON (dashboard.title,
panels with unique ids) and every panel target has a non-empty expr.
Usage: check_metric_names.py REPO_DIR EXPRESSIONS_JSONL
"""
import glob
import json
import os
import re
import sys

# CONTRACTS.md, "Metric names" and "caxton-bench series": used only until the Rust constants exist.
CONTRACT_RUNTIME = """caxton_agents_total caxton_agents_active caxton_agent_executions_total
caxton_agent_execution_duration_seconds caxton_wasm_memory_usage_bytes caxton_runtime_memory_usage_bytes
caxton_runtime_cpu_usage_ratio caxton_messages_sent_total caxton_messages_received_total
caxton_message_processing_duration_seconds caxton_message_queue_size caxton_message_errors_total
caxton_http_requests_total caxton_http_request_duration_seconds caxton_http_active_connections
caxton_websocket_connections caxton_disk_usage_bytes caxton_network_bytes_total caxton_file_descriptors""".split()
CONTRACT_BENCH = """caxton_bench_requests_total caxton_bench_failures_total caxton_bench_error_rate caxton_bench_rps
caxton_bench_latency_seconds caxton_bench_checks_total caxton_bench_users caxton_bench_dropped_iterations_total
caxton_bench_threshold_ok caxton_bench_run_end_timestamp_seconds""".split()

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
    bench = names_from(glob.glob(os.path.join(repo, "loadgen/src/**/*.rs"), recursive=True), "caxton_bench_")
    if len(runtime) < len(CONTRACT_RUNTIME):
        print(f"note: runtime/src/metrics.rs defines {len(runtime)} of 19 names; using the CONTRACTS.md list")
        runtime = set(CONTRACT_RUNTIME)
    if not bench:
        print("note: loadgen/src defines no caxton_bench_* names yet; using the CONTRACTS.md list")
        bench = set(CONTRACT_BENCH)
    known = runtime | bench
    errors = []
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
