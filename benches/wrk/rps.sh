# Sourced by the benches/run-* scripts. `wrk_rps ARGS...` runs wrk (pinned to CPU 1) and
# prints its Requests/sec, or fails when any response was not 2xx/3xx or a socket errored:
# wrk counts error responses as requests, and a benchmark of 404s once passed for a result
# here (BENCHMARKS.md, issue 2).
wrk_rps() {
  local out
  out=$(taskset -c 1 wrk "$@") || { echo "wrk failed: $*" >&2; return 1; }
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "wrk saw errors (wrk $*):" >&2; echo "$out" >&2; return 1
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
