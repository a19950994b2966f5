# syntax=docker/dockerfile:1
# Three images:
#   docker build --target runtime        -t caxton/runtime:latest .
#   docker build --target benchmark      -t caxton/benchmark:latest .
#   docker build --target benchmark-load -t caxton/benchmark-load:latest .
# k8s/ runs the first two: caxton-runtime.yaml (runtime), benchmark-cronjob.yaml and
# distributed/ (benchmark, whose /benchmark is caxton-bench as the Caxton Monitoring and
# Observability Guide calls it).
# benchmark-load is the load-only generator: caxton-bench built without its `embedded`
# feature (`cargo build -p caxton-loadgen --no-default-features`), so it needs --target and
# its build compiles neither the runtime nor wasmtime. It has benchmark's entrypoint and
# /benchmark (the CronJob and the distributed workers all give --target), not the nightly's
# micro-benchmark binaries.

FROM rust:1.95-bookworm AS source
WORKDIR /src
COPY . .

FROM source AS build
# target/ is a cache mount, so the binaries are copied out of it within the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p caxton-runtime --bin caxton -p caxton-loadgen --bin caxton-bench \
      -p caxton-benches --bin bench-gate \
 && cp "$(cargo bench --locked -p caxton-benches --bench hot_paths --no-run 2>&1 \
          | grep -o 'target/release/deps/hot_paths-[0-9a-f]*' | head -n 1)" target/release/hot-paths-bench \
 && mkdir -p /out \
 && cp target/release/caxton target/release/caxton-bench target/release/bench-gate target/release/hot-paths-bench /out/

FROM source AS build-load
# Its own target cache: the caxton-bench it builds differs from the one above, and a build
# of both targets at once must not copy out the other's.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,id=caxton-target-load,target=/src/target \
    cargo build --release --locked --no-default-features -p caxton-loadgen --bin caxton-bench \
 && mkdir -p /out \
 && cp target/release/caxton-bench /out/

FROM debian:bookworm-slim AS base
# ca-certificates: caxton-bench may push to an https Prometheus; OTLP may be TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/caxton --create-home caxton
USER 10001

FROM base AS runtime
COPY --from=build /out/caxton /usr/local/bin/caxton
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/caxton"]
CMD ["serve"]

FROM base AS benchmark-load
COPY --from=build-load /out/caxton-bench /usr/local/bin/caxton-bench
COPY --from=build-load /out/caxton-bench /benchmark
ENTRYPOINT ["/usr/local/bin/caxton-bench"]

# The last stage: what a plain `docker build .` gives.
FROM base AS benchmark
COPY --from=build /out/caxton-bench /usr/local/bin/caxton-bench
# The guide's CronJob runs /benchmark through /bin/sh -c.
COPY --from=build /out/caxton-bench /benchmark
# The nightly's micro-benchmarks (nightly-verdict-cronjob.yaml): criterion's hot paths,
# compiled, and bench-gate, which pushes and keeps their results.
COPY --from=build /out/hot-paths-bench /usr/local/bin/hot-paths-bench
COPY --from=build /out/bench-gate /usr/local/bin/bench-gate
# The embedded-runtime mode (no --target) needs no second binary: caxton-bench links the runtime.
ENTRYPOINT ["/usr/local/bin/caxton-bench"]
