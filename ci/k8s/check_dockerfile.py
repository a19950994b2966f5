#!/usr/bin/env python3
"""The Dockerfile's paths and commands agree with the repo and the manifests.

No Docker engine runs here, so this checks what a build would trip on first:
COPY sources exist, every `-p PKG --bin BIN` is a workspace package with that
binary, every binary copied out of a build stage (the Rust image's, or one built
on it) was put in /out by that stage, the Rust image is at least the workspace's rust-version, and each image the manifests
run has a stage providing the command they call.
Usage: check_dockerfile.py REPO_DIR
"""
import glob
import os
import re
import shlex
import sys
import tomllib

import yaml

# image in the manifests -> Dockerfile target (as in the Dockerfile's header)
IMAGES = {"caxton/runtime": "runtime", "caxton/runtime-control": "runtime", "caxton/benchmark": "benchmark", "caxton/benchmark-load": "benchmark-load"}


def instructions(text):
    text = re.sub(r"\\\n", " ", text)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            yield op.upper(), rest.strip()


def main():
    repo = sys.argv[1]
    errors = []
    text = open(os.path.join(repo, "Dockerfile"), encoding="utf-8").read()
    ws = tomllib.load(open(os.path.join(repo, "Cargo.toml"), "rb"))
    packages = {}
    for member in ws["workspace"]["members"]:
        pkg = tomllib.load(open(os.path.join(repo, member, "Cargo.toml"), "rb"))
        bins = {b["name"] for b in pkg.get("bin", [])}
        # Cargo's auto-discovered binaries: src/bin/NAME.rs (and src/main.rs, named as the package).
        if pkg["package"].get("autobins", True):
            bins |= {os.path.basename(f)[:-3] for f in glob.glob(os.path.join(repo, member, "src/bin/*.rs"))}
            if os.path.exists(os.path.join(repo, member, "src/main.rs")) and not pkg.get("bin"):
                bins.add(pkg["package"]["name"])
        packages[pkg["package"]["name"]] = bins

    stages, stage, parent = {}, None, {}
    # build stage -> the files its RUN puts in /out
    out_files = {}
    for op, rest in instructions(text):
        if op == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image, stage = m.group(1), (m.group(2) or f"#{len(stages)}")
            stages[stage] = {"files": set(), "entrypoint": None}
            parent[stage] = image
            rust = re.match(r"rust:(\d+)\.(\d+)", image)
            if rust or image in out_files:
                out_files[stage] = set()
            if rust:
                want = tuple(int(x) for x in ws["workspace"]["package"]["rust-version"].split(".")[:2])
                if (int(rust.group(1)), int(rust.group(2))) < want:
                    errors.append(f"FROM {image}: older than workspace rust-version {want}")
            if image in stages:  # inherit files of a parent stage
                stages[stage]["files"] |= stages[image]["files"]
        elif op == "COPY":
            args = shlex.split(rest)
            src_from = next((a.split("=", 1)[1] for a in args if a.startswith("--from=")), None)
            paths = [a for a in args if not a.startswith("--")]
            *srcs, dest = paths
            for s in srcs:
                if src_from is None:
                    if not os.path.exists(os.path.join(repo, s)):
                        errors.append(f"COPY {s}: not in the build context")
                elif src_from in out_files and s.startswith("/out/") and os.path.basename(s) not in out_files[src_from]:
                    errors.append(f"COPY --from={src_from} {s}: that build stage puts no such file in /out")
            if src_from is not None:
                stages[stage]["files"].add(dest)
        elif op == "RUN" and stage in out_files:
            for pkg, binary in re.findall(r"-p\s+(\S+)\s+--bin\s+(\S+)", rest):
                if pkg not in packages:
                    errors.append(f"cargo -p {pkg}: no such workspace package ({sorted(packages)})")
                elif binary not in packages[pkg]:
                    errors.append(f"cargo --bin {binary}: package {pkg} has bins {sorted(packages[pkg])}")
            for m in re.finditer(r"cp ((?:target/release/\S+\s+)+)/out/", rest):
                out_files[stage] |= {os.path.basename(p) for p in m.group(1).split()}
        elif op == "ENTRYPOINT" and stage:
            stages[stage]["entrypoint"] = rest
            stages[stage]["files"].add("__entrypoint__")

    for manifest in ("caxton-runtime.yaml", "caxton-control.yaml", "benchmark-cronjob.yaml", "nightly-verdict-cronjob.yaml", "distributed/workers-job.yaml", "distributed/merge-job.yaml"):
        for doc in yaml.safe_load_all(open(os.path.join(repo, "k8s", manifest), encoding="utf-8")):
            for c in find_containers(doc):
                image = c["image"].split(":")[0]
                target = IMAGES.get(image)
                if target is None:
                    errors.append(f"k8s/{manifest}: image {c['image']} is built by no Dockerfile target")
                    continue
                files = stages.get(target, {}).get("files", set())
                script = " ".join(c.get("command", []) + c.get("args", []))
                for binary in ("/benchmark", "caxton-bench"):
                    if re.search(rf"(^|\s){re.escape(binary)}\s", script + " "):
                        path = binary if binary.startswith("/") else f"/usr/local/bin/{binary}"
                        if path not in files:
                            errors.append(f"k8s/{manifest}: runs {binary}, absent from target {target}")
                if not c.get("command") and not stages.get(target, {}).get("entrypoint"):
                    errors.append(f"k8s/{manifest}: no command and target {target} has no ENTRYPOINT")
    for e in errors:
        print(f"FAIL Dockerfile: {e}")
    return 1 if errors else 0


def find_containers(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "containers" and isinstance(v, list):
                yield from v
            else:
                yield from find_containers(v)
    elif isinstance(node, list):
        for v in node:
            yield from find_containers(v)


if __name__ == "__main__":
    sys.exit(main())
