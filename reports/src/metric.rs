//! What a run is judged on: the metrics of `compare`, `ab` and `history`, their names and
//! units, and which direction is worse.

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    P50,
    P90,
    P95,
    P99,
    Throughput,
    ErrorRate,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::P50,
        Metric::P90,
        Metric::P95,
        Metric::P99,
        Metric::Throughput,
        Metric::ErrorRate,
    ];

    /// The name used by `--metric-threshold`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::Throughput => "throughput",
            Metric::ErrorRate => "error_rate",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::P50 => "p50 latency (corrected)",
            Metric::P90 => "p90 latency (corrected)",
            Metric::P95 => "p95 latency (corrected)",
            Metric::P99 => "p99 latency (corrected)",
            Metric::Throughput => "throughput",
            Metric::ErrorRate => "error rate",
        }
    }

    pub(crate) fn quantile(self) -> Option<f64> {
        match self {
            Metric::P50 => Some(0.5),
            Metric::P90 => Some(0.9),
            Metric::P95 => Some(0.95),
            Metric::P99 => Some(0.99),
            Metric::Throughput | Metric::ErrorRate => None,
        }
    }

    /// Whether a rise is bad (latency, errors) or a fall is (throughput).
    pub fn higher_is_worse(self) -> bool {
        self != Metric::Throughput
    }

    /// The value for display, in its unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Metric::Throughput => format!("{v:.1} req/s"),
            Metric::ErrorRate => format!("{:.2}%", v * 100.0),
            _ => format!("{v:.2} ms"),
        }
    }

    pub fn parse(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }
}
