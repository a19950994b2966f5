#!/usr/bin/env python3
"""k8s/k6-load-test.js keeps the seed's plan and really targets $TARGET.

1. `k6 inspect` of the script and of the seed's block give the same stages and
   thresholds (skipped without the seed).
2. One iteration with `-e TARGET=` pointed at a loopback server: the request
   arrives as POST /api/agents with the JSON body the runtime's API takes.
Usage: check_k6.py SCRIPT [SEED_MD]
"""
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

from seed_blocks import blocks


def inspect(path):
    out = subprocess.run(["k6", "inspect", path], capture_output=True, text=True, timeout=60, check=True).stdout
    o = json.loads(out)
    return {"stages": o.get("stages"), "thresholds": o.get("thresholds")}


def main():
    script = sys.argv[1]
    errors = []
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        with tempfile.NamedTemporaryFile("w", suffix=".js", delete=False) as f:
            f.write(blocks(sys.argv[2])["k6-load-test.js"])
        try:
            if inspect(script) != inspect(f.name):
                errors.append(f"stages/thresholds differ from the seed: {inspect(script)} vs {inspect(f.name)}")
        finally:
            os.unlink(f.name)

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, self.headers.get("Content-Type"), body))
            reply = b'{"id":"00000000-0000-0000-0000-000000000000","agent_type":"test-agent","state":"Running"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{server.server_address[1]}"
        # --vus/--iterations replace the 16-minute stages: one bounded request.
        run = subprocess.run(["k6", "run", "--quiet", "--no-usage-report", "--vus", "1", "--iterations", "1",
                              "-e", f"TARGET={target}", script], capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    if run.returncode != 0:
        errors.append(f"k6 run exited {run.returncode}: {run.stderr[-500:]}")
    if len(seen) != 1:
        errors.append(f"expected 1 request at {target}, got {len(seen)}")
    else:
        path, ctype, body = seen[0]
        if path != "/api/agents" or ctype != "application/json":
            errors.append(f"request was {path} with Content-Type {ctype}")
        try:
            if json.loads(body) != {"agent_type": "test-agent", "config": {"test": True}}:
                errors.append(f"body {body!r}")
        except json.JSONDecodeError:
            errors.append(f"body is not JSON: {body!r}")
    for e in errors:
        print(f"FAIL {script}: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
