#!/usr/bin/env python3
"""k8s/ keeps every seed config: equal, or a superset where k8s/README.md lists
the additions, with each deliberate fix named here by path.
Usage: check_seed_fidelity.py SEED_MD K8S_DIR   (prints one line per file)
"""
import json
import os
import sys

import yaml

from seed_blocks import blocks

# (file, path) of seed values that k8s/ deliberately changes; why is in the file's header.
FIXES = {
    ("alertmanager.yml", "receivers.1.email_configs.0.subject"),
    ("alertmanager.yml", "receivers.1.email_configs.0.body"),
}
EXACT = ["otel-collector-config.yaml", "sampling-strategies.json", "loki-config.yaml",
         "fluentd-configmap.yaml", "runtime-overview.json"]
SUPERSET = ["prometheus.yml", "jaeger-deployment.yaml", "alertmanager.yml", "benchmark-cronjob.yaml"]
LOCAL = {"runtime-overview.json": "dashboards/runtime-overview.json"}
# Seed alerts whose expr or description k8s/caxton_rules.yml fixes (see its header).
RULE_FIXES = {
    "CaxtonAgentHighFailureRate": {"expr"},
    "CaxtonAgentMemoryLeak": {"description"},
    "CaxtonHighMemoryUsage": {"expr", "description"},
    "CaxtonHighResponseTime": {"description"},
    "CaxtonMessageProcessingErrors": {"description"},
}


def load(name, text):
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


def subset(seed, ours, fname, path, errs):
    if (fname, path) in FIXES:
        return
    if isinstance(seed, dict):
        if not isinstance(ours, dict):
            errs.append(f"{path or '<root>'}: seed has a mapping")
            return
        for k, v in seed.items():
            p = f"{path}.{k}" if path else str(k)
            if (fname, p) in FIXES:
                continue
            if k not in ours:
                errs.append(f"{p}: seed key missing")
            else:
                subset(v, ours[k], fname, p, errs)
    elif isinstance(seed, list):
        if not isinstance(ours, list) or len(ours) < len(seed):
            errs.append(f"{path}: seed list has {len(seed)} items")
            return
        for i, v in enumerate(seed):
            subset(v, ours[i], fname, f"{path}.{i}", errs)
    elif seed != ours:
        errs.append(f"{path}: seed {seed!r}, here {ours!r}")


def norm(expr):
    return " ".join(str(expr).split())


def check_rules(seed_text, k8s, errs):
    seed = {r["alert"]: r for g in yaml.safe_load(seed_text)["groups"] for r in g["rules"]}
    ours = {r.get("alert"): r for g in yaml.safe_load(open(os.path.join(k8s, "caxton_rules.yml")))["groups"] for r in g["rules"]}
    for name, s in seed.items():
        o = ours.get(name)
        if o is None:
            errs.append(f"caxton_rules.yml: seed alert {name} missing")
            continue
        fixed = RULE_FIXES.get(name, set())
        for key, sv, ov in (("expr", norm(s["expr"]), norm(o["expr"])), ("for", s.get("for"), o.get("for")),
                            ("labels", s.get("labels"), o.get("labels")),
                            ("summary", s["annotations"]["summary"], o["annotations"]["summary"]),
                            ("description", s["annotations"]["description"], o["annotations"]["description"])):
            if key not in fixed and sv != ov:
                errs.append(f"caxton_rules.yml: {name}.{key}: seed {sv!r}, here {ov!r}")
    # The test-only copy must stay the seed's expression, or its test pins nothing.
    kept = yaml.safe_load(open(os.path.join(k8s, "tests", "rules", "seed_failure_rate.yml")))["groups"][0]["rules"][0]
    if kept != seed["CaxtonAgentHighFailureRate"]:
        errs.append("tests/rules/seed_failure_rate.yml: differs from the seed's CaxtonAgentHighFailureRate")


def main():
    seed_md, k8s = sys.argv[1], sys.argv[2]
    seed = blocks(seed_md)
    failed = 0
    for name in EXACT + SUPERSET + ["caxton_rules.yml"]:
        errs = []
        if name not in seed:
            errs.append("block not found in the seed")
        elif name == "caxton_rules.yml":
            check_rules(seed[name], k8s, errs)
        else:
            path = os.path.join(k8s, LOCAL.get(name, name))
            text = open(path, encoding="utf-8").read()
            ours = load(name, text.split("\n---\n")[0])  # the seed's document comes first
            theirs = load(name, seed[name])
            if name in EXACT:
                if ours != theirs:
                    errs.append("differs from the seed")
            else:
                subset(theirs, ours, name, "", errs)
        for e in errs:
            print(f"FAIL {name}: {e}")
        failed += bool(errs)
        if not errs:
            print(f"ok   {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
