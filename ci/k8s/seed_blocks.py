"""The seed's example configs, read from monitoring-guide.md's fenced blocks.

A block is named by its first-line comment (`# prometheus.yml`), or by the
header above it for the two unnamed JSON blocks.
"""
import re

UNNAMED = {"Trace Sampling Strategies": "sampling-strategies.json",
           "Runtime Overview Dashboard": "runtime-overview.json"}


def blocks(path):
    text = open(path, encoding="utf-8").read()
    out = {}
    for m in re.finditer(r"```(\w+)\n(.*?)```", text, re.S):
        body = m.group(2)
        first = body.splitlines()[0].strip()
        name = re.match(r"^(?:#|//)\s*([\w.-]+\.(?:ya?ml|js|toml))$", first)
        if name:
            out[name.group(1)] = body
            continue
        heads = re.findall(r"^#+ (.+)$", text[: m.start()], re.M)
        if heads and heads[-1].strip() in UNNAMED:
            out[UNNAMED[heads[-1].strip()]] = body
    return out
