#!/usr/bin/env python3
"""k8s/kustomization.yaml names only files that exist, and every top-level
manifest of k8s/ is one of its resources (distributed/ is applied by hand).
Usage: check_kustomization.py K8S_DIR MANIFEST...
"""
import os
import sys

import yaml


def main():
    k8s, manifests = sys.argv[1], sys.argv[2:]
    doc = yaml.safe_load(open(os.path.join(k8s, "kustomization.yaml"), encoding="utf-8"))
    errors = []
    named = list(doc.get("resources", []))
    for gen in doc.get("configMapGenerator", []):
        named += gen.get("files", [])
    for f in named:
        if not os.path.isfile(os.path.join(k8s, f)):
            errors.append(f"names {f}, which does not exist")
    for m in manifests:
        rel = os.path.relpath(m, k8s)
        if os.path.dirname(rel) == "" and rel not in doc.get("resources", []):
            errors.append(f"manifest {rel} is not in resources")
    for e in errors:
        print(f"FAIL k8s/kustomization.yaml: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
