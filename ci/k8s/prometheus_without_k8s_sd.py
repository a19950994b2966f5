#!/usr/bin/env python3
"""Copies prometheus.yml and its rule files into OUT_DIR with the jobs'
kubernetes_sd_configs removed, for a promtool built without Kubernetes discovery
(Debian's). The jobs' relabel_configs stay, so promtool still checks them.
Refuses anything but the seed's `role: pod`, the one thing not checked then.
Usage: prometheus_without_k8s_sd.py PROMETHEUS_YML OUT_DIR
"""
import os
import shutil
import sys

import yaml


def main():
    src, out = sys.argv[1], sys.argv[2]
    doc = yaml.safe_load(open(src, encoding="utf-8"))
    for job in doc.get("scrape_configs", []):
        sd = job.pop("kubernetes_sd_configs", None)
        if sd is not None and sd != [{"role": "pod"}]:
            print(f"{src}: job {job.get('job_name')}: kubernetes_sd_configs {sd} is not the seed's role: pod")
            return 1
    with open(os.path.join(out, os.path.basename(src)), "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    for rf in doc.get("rule_files", []):
        shutil.copy(os.path.join(os.path.dirname(src), rf), os.path.join(out, rf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
