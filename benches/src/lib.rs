//! Peers and probes for the runtime's benchmarks: the criterion benches live in `benches/`,
//! the wrk peer (`bare-axum`) and the idle-agent memory probe (`idle-agents`) in `src/bin/`.
