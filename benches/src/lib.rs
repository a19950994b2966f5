//! Benchmarks of the runtime's hot paths and the tools around them:
//! - `benches/hot_paths.rs`: the criterion benches (`cargo bench -p caxton-benches`);
//! - [`workloads`]: their inputs and set-ups, shared with the instruction counter;
//! - [`criterion_results`] + [`gate`]: the wall-time regression gate (`bench-gate criterion`);
//! - [`callgrind`]: instruction counts of the key paths and their gate (`bench-gate callgrind`);
//! - [`series`]: the `caxton_bench_micro_*` / `caxton_bench_instructions` series pushed to
//!   Prometheus (`bench-gate push`);
//! - `src/bin/`: `bench-gate`, `callgrind-paths`, the load-test peers (`bare-axum`, ...) and
//!   the idle-agent memory probe `idle-agents`.

pub mod callgrind;
pub mod criterion_results;
pub mod gate;
pub mod series;
pub mod workloads;
