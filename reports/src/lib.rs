//! Run results of `caxton-bench`: the versioned report model, the sinks that carry it
//! (JSON file, Prometheus remote write, Pushgateway), the HTML report and the
//! run-vs-baseline comparison.

pub mod bootstrap;
pub mod calibration;
pub mod charts;
pub mod compare;
pub mod history;
pub mod html;
pub mod merge;
pub mod model;
pub mod native_histogram;
pub mod profile_diff;
pub mod prometheus_query;
pub mod pushgateway;
pub mod remote_write;
pub mod sink;
pub mod table;
pub mod threshold;
