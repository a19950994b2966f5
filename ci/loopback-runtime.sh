# Sourced by ci/gate and ci/nightly: the dev-profile binaries and a `caxton serve` on free
# loopback ports with its pprof endpoint on, stopped on exit. Needs $tmp (a scratch dir)
# and $out (where runtime.log goes); optional: $PROFILE_HZ (the profiler's rate, default
# 1000, within a sample budget of 1000 a second: a run's profile, and its diff and its slow
# requests' diff, need thousands of samples), $RUNTIME_EXTRA_TOML (a file of further config tables appended to caxton.toml) and
# $RUNTIME_CPUS (a taskset CPU list the runtime is pinned to).

# The dev profile ci/test builds (a no-op when it is up to date), or CAXTON_BIN_DIR as is.
caxton_binaries() {
  if [[ -n ${CAXTON_BIN_DIR:-} ]]; then
    BIN=$CAXTON_BIN_DIR
  else
    BIN=target/debug
    cargo build --quiet -p caxton-runtime --bin caxton -p caxton-loadgen --bin caxton-bench
  fi
  for b in caxton caxton-bench; do
    [[ -x $BIN/$b ]] || { echo "no $BIN/$b (set CAXTON_BIN_DIR or run from a cargo workspace)" >&2; return 1; }
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A target URL the scripts may load: loopback only (GUIDE.md).
require_loopback() {
  local url=$1 what=$2
  if [[ ! $url =~ ^https?://(127\.[0-9]+\.[0-9]+\.[0-9]+|localhost|\[::1\])(:[0-9]+)?(/.*)?$ ]]; then
    echo "$what $url: only loopback targets (127.0.0.0/8, localhost, [::1]) are allowed" >&2
    return 1
  fi
}

runtime_pid=""
stop_runtime() {
  if [[ -n $runtime_pid ]]; then
    kill -TERM "$runtime_pid" 2>/dev/null || true
    # Graceful shutdown is quick; do not wait forever for it.
    for _ in $(seq 50); do kill -0 "$runtime_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$runtime_pid" 2>/dev/null || true
    wait "$runtime_pid" 2>/dev/null || true
    runtime_pid=""
  fi
}

# Sets API_URL, METRICS_URL and PPROF_URL (empty when this runtime serves no pprof).
# RUNTIME_SERVER_EXTRA: more lines for the [server] table (e.g. 'max_agents = 10000').
start_runtime() {
  local api metrics pprof
  api=$(free_port); metrics=$(free_port); pprof=$(free_port)
  mkdir -p "$tmp/data"
  cat >"$tmp/caxton.toml" <<TOML
[server]
api_address = "127.0.0.1:$api"
metrics_address = "127.0.0.1:$metrics"
data_dir = "$tmp/data"
${RUNTIME_SERVER_EXTRA:-}

[profiling]
enabled = true
server_address = "127.0.0.1:$pprof"
sample_rate = ${PROFILE_HZ:-1000}
sample_budget = 1000
TOML
  # Further tables of the caller's (e.g. ci/gate --runtime-toml: [observability]).
  if [[ -n ${RUNTIME_EXTRA_TOML:-} ]]; then cat "$RUNTIME_EXTRA_TOML" >>"$tmp/caxton.toml"; fi
  local pin=()
  if [[ -n ${RUNTIME_CPUS:-} ]]; then pin=(taskset -c "$RUNTIME_CPUS"); fi
  "${pin[@]}" "$BIN/caxton" serve --config "$tmp/caxton.toml" >"$out/runtime.log" 2>&1 &
  runtime_pid=$!
  API_URL="http://127.0.0.1:$api"
  METRICS_URL="http://127.0.0.1:$metrics/metrics"
  # Readiness probe, bounded: 120 tries, 0.25 s apart.
  for _ in $(seq 120); do
    curl -fsS "$API_URL/ready" >/dev/null 2>&1 && break
    kill -0 "$runtime_pid" 2>/dev/null || { echo "caxton exited:" >&2; cat "$out/runtime.log" >&2; return 1; }
    sleep 0.25
  done
  curl -fsS "$API_URL/ready" >/dev/null || { echo "caxton not ready on $API_URL" >&2; cat "$out/runtime.log" >&2; return 1; }
  # Profiling is the runtime's [profiling] table; a build without it serves no pprof.
  PPROF_URL=""
  if curl -fsS -o /dev/null "http://127.0.0.1:$pprof/debug/pprof/heap" 2>/dev/null ||
     curl -sS -o /dev/null "http://127.0.0.1:$pprof/" 2>/dev/null; then
    PPROF_URL="http://127.0.0.1:$pprof"
  fi
}
