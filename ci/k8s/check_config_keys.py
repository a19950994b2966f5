#!/usr/bin/env python3
"""The collector, Loki and Fluentd configs parse and hold the keys the seed uses.

None of these servers can be installed here, so this is the check they get:
YAML parses, the seed's keys are present, and the collector's pipelines only
name components that are defined (what `otelcol validate` would reject first).
Usage: check_config_keys.py {collector|collector-modern|loki|fluentd} FILE
"""
import re
import sys

import yaml


def get(doc, path):
    node = doc
    for part in path.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(path)
    return node


def require(doc, paths, errors):
    for p in paths:
        try:
            get(doc, p)
        except (KeyError, IndexError, ValueError):
            errors.append(f"missing key `{p}`")


COLLECTOR_KEYS = [
    "receivers.otlp.protocols.grpc.endpoint", "receivers.otlp.protocols.http.endpoint",
    "processors.batch.timeout", "processors.batch.send_batch_size",
    "processors.resource.attributes", "processors.tail_sampling.decision_wait",
    "processors.tail_sampling.num_traces", "processors.tail_sampling.expected_new_traces_per_sec",
    "processors.tail_sampling.policies", "exporters.prometheus.endpoint",
    "exporters.prometheus.const_labels.environment",
    "service.pipelines.traces", "service.pipelines.metrics", "service.pipelines.logs",
]


def check_collector(doc, errors, modern):
    require(doc, COLLECTOR_KEYS, errors)
    if modern:
        require(doc, ["exporters.otlp/jaeger.endpoint", "exporters.otlphttp/loki.endpoint"], errors)
        if doc.get("exporters", {}).get("otlp/jaeger", {}).get("endpoint") != "jaeger:4317":
            errors.append("exporters.otlp/jaeger.endpoint is not jaeger:4317")
    else:
        require(doc, ["exporters.prometheus.namespace", "exporters.jaeger.endpoint",
                      "exporters.jaeger.tls.insecure", "exporters.loki.endpoint", "exporters.loki.tenant_id"], errors)
    names = {p.get("name") for p in doc.get("processors", {}).get("tail_sampling", {}).get("policies", [])}
    for want in ("error_sampling", "slow_requests", "random_sampling"):
        if want not in names:
            errors.append(f"tail_sampling policy `{want}` missing")
    for pname, pipe in (doc.get("service", {}).get("pipelines") or {}).items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipe.get(kind, []):
                if comp not in (doc.get(kind) or {}):
                    errors.append(f"pipeline `{pname}` uses {kind[:-1]} `{comp}`, which is not defined under `{kind}`")


LOKI_KEYS = [
    "auth_enabled", "server.http_listen_port", "server.grpc_listen_port", "common.path_prefix",
    "common.storage.filesystem.chunks_directory", "common.storage.filesystem.rules_directory",
    "common.replication_factor", "common.ring.instance_addr", "common.ring.kvstore.store",
    "query_range.results_cache.cache.embedded_cache.enabled",
    "query_range.results_cache.cache.embedded_cache.max_size_mb",
    "schema_config.configs.0.from", "schema_config.configs.0.store", "schema_config.configs.0.object_store",
    "schema_config.configs.0.schema", "schema_config.configs.0.index.prefix", "schema_config.configs.0.index.period",
    "ruler.alertmanager_url", "limits_config.ingestion_rate_mb", "limits_config.ingestion_burst_size_mb",
    "limits_config.max_streams_per_user", "limits_config.max_line_size",
]
# Every directive of the Caxton Monitoring and Observability Guide's fluent.conf, in order.
FLUENTD_DIRECTIVES = [
    "<source>", "@type tail", "path /var/log/containers/caxton-*.log", "tag caxton.*",
    "<filter caxton.**>", "@type parser", "key_name message",
    "<filter caxton.**>", "@type record_transformer",
    "<match caxton.**>", "@type copy", "@type loki", "url http://loki:3100",
    "@type elasticsearch", "index_name caxton-logs",
]
TAG = re.compile(r"^\s*<(/?)(\w+)[^>]*>\s*$")


def check_fluentd(doc, errors):
    if doc.get("kind") != "ConfigMap":
        errors.append("kind is not ConfigMap")
    conf = (doc.get("data") or {}).get("fluent.conf")
    if not isinstance(conf, str):
        errors.append("missing key `data.fluent.conf`")
        return
    pos = 0
    for d in FLUENTD_DIRECTIVES:
        i = conf.find(d, pos)
        if i < 0:
            errors.append(f"fluent.conf: directive `{d}` missing (or out of order)")
        else:
            pos = i + len(d)
    stack = []
    for n, line in enumerate(conf.splitlines(), 1):
        m = TAG.match(line)
        if not m:
            continue
        if m.group(1):
            if not stack or stack[-1] != m.group(2):
                errors.append(f"fluent.conf line {n}: </{m.group(2)}> closes {stack[-1] if stack else 'nothing'}")
            else:
                stack.pop()
        else:
            stack.append(m.group(2))
    if stack:
        errors.append(f"fluent.conf: unclosed <{stack[-1]}>")


def main():
    kind, path = sys.argv[1], sys.argv[2]
    errors = []
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as e:
        print(f"{path}: YAML does not parse: {e}")
        return 1
    if kind == "collector":
        check_collector(doc, errors, modern=False)
    elif kind == "collector-modern":
        check_collector(doc, errors, modern=True)
    elif kind == "loki":
        require(doc, LOKI_KEYS, errors)
    elif kind == "fluentd":
        check_fluentd(doc, errors)
    else:
        print(f"unknown kind {kind}")
        return 2
    for e in errors:
        print(f"{path}: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
