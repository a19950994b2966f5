//! Run results of `caxton-bench`, and everything that reads them.
//!
//! - [`model`]: `RunReport`, the one versioned definition of a run's results (read with
//!   upgrade from older schemas), and [`threshold`], the vocabulary of its thresholds;
//! - [`merge`]: the workers' reports of a distributed run as one, with exact percentiles;
//! - [`html`]: `report.html` and the comparison page;
//! - [`compare`] (with [`bootstrap`] intervals and [`calibration`] from a history): a run
//!   against its baseline, verdicts and exit codes; [`profile_diff`]: two runs' CPU profiles;
//! - [`history`]: runs over time, their change points and `history.html`;
//! - the Prometheus sinks: [`remote_write`] (with [`native_histogram`]) and [`pushgateway`],
//!   sharing [`sink`]'s retries and spool; [`prometheus_query`] reads series back.
//!
//! Charts, tables and escaping are internal to the views.

pub mod bootstrap;
pub mod calibration;
pub(crate) mod charts;
pub mod compare;
pub(crate) mod escape;
pub mod history;
pub mod html;
pub mod merge;
pub mod metric;
pub mod model;
pub mod native_histogram;
pub mod paired;
pub mod profile_diff;
pub mod prometheus_query;
pub mod pushgateway;
pub mod remote_write;
pub mod sink;
pub mod slices;
pub(crate) mod table;
pub mod threshold;
pub mod wire;
