#!/usr/bin/env python3
"""Every caxton-bench command line in k8s/ uses flags the real binary accepts.

Reads the container scripts of the manifests that run caxton-bench (the CronJob runs it
as /benchmark), splits them like the shell would (after joining backslash-newlines), and
checks each `--flag` against `caxton-bench --help` (runs) or `caxton-bench SUB --help`
(subcommands such as `merge`). The help text is the binary's clap definition, so a flag
renamed in loadgen/src/cli.rs fails here. The same goes for the CAXTON_BENCH_* variables a
container sets (the defaults that keep the guide's command line, e.g. CAXTON_BENCH_PPROF):
each must be named in the binary's --help.
Usage: check_bench_flags.py REPO_DIR CAXTON_BENCH_BINARY
"""
import os
import re
import shlex
import subprocess
import sys

import yaml

MANIFESTS = ("benchmark-cronjob.yaml", "nightly-verdict-cronjob.yaml", "distributed/workers-job.yaml", "distributed/merge-job.yaml")
BINARIES = ("/benchmark", "caxton-bench")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
ENV = re.compile(r"\bCAXTON_BENCH_[A-Z0-9_]+")


def help_flags(binary, sub=None):
    args = [binary] + ([sub] if sub else []) + ["--help"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    return set(FLAG.findall(out)), out


def subcommands(help_text):
    # clap lists them under "Commands:" as "  name  description".
    block = help_text.split("Commands:", 1)[1].split("\n\n", 1)[0] if "Commands:" in help_text else ""
    return {m.group(1) for m in re.finditer(r"^  ([a-z][a-z0-9-]*)\s", block, re.M)}


def containers(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "containers" and isinstance(v, list):
                yield from v
            else:
                yield from containers(v)
    elif isinstance(node, list):
        for v in node:
            yield from containers(v)


def main():
    repo, binary = sys.argv[1], sys.argv[2]
    run_flags, top_help = help_flags(binary)
    subs = subcommands(top_help)
    sub_flags = {s: help_flags(binary, s)[0] for s in subs if s != "help"}
    errors, checked = [], 0
    for manifest in MANIFESTS:
        path = os.path.join(repo, "k8s", manifest)
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            for c in containers(doc):
                for var in c.get("env", []) or []:
                    name = var.get("name", "")
                    if name.startswith("CAXTON_BENCH_"):
                        checked += 1
                        if name not in set(ENV.findall(top_help)):
                            errors.append(f"k8s/{manifest}: env {name} is not named in `caxton-bench --help`")
                script = " ".join(c.get("command", []) + c.get("args", [])).replace("\\\n", " ")
                words = shlex.split(script)
                for i, w in enumerate(words):
                    if w not in BINARIES:
                        continue
                    rest = []
                    for x in words[i + 1:]:
                        if x in ("&&", "||", ";", "|"):
                            break
                        rest.append(x)
                    sub = rest[0] if rest and rest[0] in sub_flags else None
                    allowed = sub_flags[sub] if sub else run_flags
                    what = f"caxton-bench {sub}" if sub else "caxton-bench"
                    used = [x.split("=", 1)[0] for x in rest if x.startswith("--")]
                    if not used and not sub:
                        errors.append(f"k8s/{manifest}: {w} without flags")
                    for flag in used:
                        checked += 1
                        if flag not in allowed:
                            errors.append(f"k8s/{manifest}: `{what}` has no flag {flag} (see `{what} --help`)")
    for e in errors:
        print(f"FAIL {e}")
    print(f"{checked} caxton-bench flags and variables in k8s/ checked against --help of {binary}")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
