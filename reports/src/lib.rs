//! Run results of `caxton-bench`: the versioned report model and the sinks that carry it
//! (JSON file, Prometheus remote write, Pushgateway).

pub mod model;
#[cfg(feature = "testkit")]
pub mod prometheus_server;
pub mod pushgateway;
pub mod remote_write;
pub mod sink;
