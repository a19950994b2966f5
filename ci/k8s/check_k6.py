#!/usr/bin/env python3
"""k8s/k6-load-test.js is the seed's script, and it passes against the real runtime.

1. The script's text is the seed's block, byte for byte (skipped without the seed).
2. The real `caxton` (CAXTON binary) serves on loopback ports it picks; the UNMODIFIED
   script runs under the real k6 with only CLI overrides: `--stage` shortens the 16-minute
   plan, and a `--config` file maps the script's `caxton.local:8080` to that loopback
   address (k6's `hosts` option), so no request leaves 127.0.0.1. k6 posts the script's
   plain object as a form; every check and both thresholds must pass.
Usage: check_k6.py SCRIPT CAXTON [SEED_MD]
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from seed_blocks import blocks

# Ramp, hold, ramp down: ~20 s in all, against the 16 minutes of the Caxton Monitoring and
# Observability Guide's plan.
STAGES = "5s:20,10s:20,5s:0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"caxton exited {proc.returncode} before answering {url}"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return None
        except OSError:
            time.sleep(0.1)
    return f"{url} not ready within the deadline"


def run_against_runtime(script, caxton, errors):
    api, metrics = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "caxton.toml")
        with open(cfg, "w") as f:
            f.write(f'[server]\napi_address = "127.0.0.1:{api}"\n'
                    f'metrics_address = "127.0.0.1:{metrics}"\ndata_dir = "{tmp}"\n')
        k6_cfg = os.path.join(tmp, "k6.json")
        with open(k6_cfg, "w") as f:
            json.dump({"hosts": {"caxton.local:8080": f"127.0.0.1:{api}"}}, f)
        summary = os.path.join(tmp, "summary.json")
        proc = subprocess.Popen([caxton, "serve", "--config", cfg],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            err = wait_ready(f"http://127.0.0.1:{api}/ready", proc, time.monotonic() + 60)
            if err:
                errors.append(err)
                return
            run = subprocess.run(["k6", "run", "--quiet", "--no-usage-report", "--stage", STAGES,
                                  "--config", k6_cfg, "--summary-export", summary, script],
                                 capture_output=True, text=True, timeout=180)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if run.returncode != 0:
            errors.append(f"k6 run exited {run.returncode}: {run.stdout[-800:]} {run.stderr[-800:]}")
        if not os.path.exists(summary):
            errors.append("k6 wrote no summary")
            return
        with open(summary) as f:
            s = json.load(f)
        checks = s.get("root_group", {}).get("checks", {})
        if not checks:
            errors.append("the summary has no checks: did any iteration run?")
        for name, c in checks.items():
            if c.get("fails", 0) or not c.get("passes", 0):
                errors.append(f"check '{name}': {c.get('passes')} passed, {c.get('fails')} failed")
        reqs = s.get("metrics", {}).get("http_reqs", {}).get("count", 0)
        print(f"k6: {reqs} requests, checks {json.dumps(checks)}")


def main():
    script, caxton = sys.argv[1], sys.argv[2]
    errors = []
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
        seed = blocks(sys.argv[3])["k6-load-test.js"]
        with open(script, encoding="utf-8") as f:
            if f.read() != seed:
                errors.append("the script differs from the seed's k6-load-test.js block")
    run_against_runtime(script, caxton, errors)
    for e in errors:
        print(f"FAIL {script}: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
