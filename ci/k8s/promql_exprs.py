#!/usr/bin/env python3
"""Every PromQL expression in the k8s rule files and Grafana dashboards.

Prints JSON lines {"file", "where", "expr", "query"}: `expr` as written, `query`
with Grafana's template variables substituted so a real Prometheus can parse it.
Usage: promql_exprs.py K8S_DIR
"""
import glob
import json
import os
import re
import sys

import yaml

# Grafana's built-in interval variables become durations; the dashboards' own
# variables ($plan, $job, ...) sit inside regex matchers, where ".*" is valid.
BUILTINS = {
    "__rate_interval": "5m", "__interval": "1m", "__range": "1h",
    "__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)")


def grafana_to_promql(expr):
    def sub(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return BUILTINS.get(name, ".*")
    return VARIABLE.sub(sub, expr)


def rule_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            yield f"group {group.get('name')}, rule {name}", rule.get("expr", "")


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    dash = doc.get("dashboard", doc)

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash.get("panels", [])):
        for i, t in enumerate(p.get("targets", [])):
            yield f"panel {p.get('title')!r}, target {t.get('refId', i + 1)}", t.get("expr", "")


def main():
    k8s = sys.argv[1] if len(sys.argv) > 1 else "k8s"
    rules = [os.path.join(k8s, "caxton_rules.yml")] + sorted(glob.glob(os.path.join(k8s, "tests", "rules", "*.yml")))
    for path in rules:
        for where, expr in rule_exprs(path):
            print(json.dumps({"file": path, "where": where, "expr": expr, "query": expr}))
    for path in sorted(glob.glob(os.path.join(k8s, "dashboards", "*.json"))):
        for where, expr in dashboard_exprs(path):
            print(json.dumps({"file": path, "where": where, "expr": expr, "query": grafana_to_promql(expr)}))


if __name__ == "__main__":
    main()
