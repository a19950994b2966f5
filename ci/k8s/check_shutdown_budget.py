#!/usr/bin/env python3
"""The runtime Deployment's terminationGracePeriodSeconds covers its whole shutdown.

Kubernetes sends SIGTERM after the preStop hook and SIGKILL terminationGracePeriodSeconds
after the hook started. The runtime, on SIGTERM, drains mailboxes for shutdown_timeout,
waits out one execution_timeout, gives open requests and then the metrics listener up to
SHUTDOWN_GRACE each (runtime/src/server.rs), and flushes telemetry for up to otlp_timeout.
A SIGKILL inside that loses the drop count the shutdown reports.
Usage: check_shutdown_budget.py k8s/caxton-runtime.yaml
"""
import re
import sys
import tomllib

import yaml

SHUTDOWN_GRACE = 5  # runtime/src/server.rs
DEFAULTS = {"shutdown_timeout": "10s", "execution_timeout": "1s", "otlp_timeout": "10s"}


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not m:
        raise ValueError(f"duration {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": 60 * n}[unit]


def main():
    docs = list(yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")))
    config = next(d for d in docs if d and d.get("kind") == "ConfigMap")
    toml = tomllib.loads(config["data"]["caxton.toml"])
    deploy = next(d for d in docs if d and d.get("kind") == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    grace = pod.get("terminationGracePeriodSeconds", 30)
    container = pod["containers"][0]
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if command[:1] != ["sleep"]:
        print(f"FAIL: preStop is {command!r}, expected a sleep")
        return 1
    pre_stop = float(command[1])
    get = lambda table, key: seconds(toml.get(table, {}).get(key, DEFAULTS[key]))
    need = (pre_stop + get("server", "shutdown_timeout") + get("agents", "execution_timeout")
            + 2 * SHUTDOWN_GRACE + get("observability", "otlp_timeout"))
    print(f"terminationGracePeriodSeconds {grace}, shutdown needs up to {need:g} s")
    if grace < need:
        print("FAIL: SIGKILL can come before the shutdown reports its drops")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
