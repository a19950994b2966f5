//! The threshold vocabulary a report records, typed: k6's metric names and aggregations, and
//! the one formatter of a threshold's measured value that the terminal summary and the HTML
//! report both use. (Parsing a threshold expression and judging it is the load generator's.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A metric a threshold can name, as k6 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdMetric {
    /// Corrected request duration, ms.
    Duration,
    DurationUncorrected,
    /// Share of failed requests.
    Failed,
    /// Requests: a count, or per second.
    Reqs,
    /// Share of passed checks.
    Checks,
    /// Dropped iterations: a count, or per second.
    Dropped,
}

impl ThresholdMetric {
    pub const ALL: [ThresholdMetric; 6] = [
        ThresholdMetric::Duration,
        ThresholdMetric::DurationUncorrected,
        ThresholdMetric::Failed,
        ThresholdMetric::Reqs,
        ThresholdMetric::Checks,
        ThresholdMetric::Dropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThresholdMetric::Duration => "http_req_duration",
            ThresholdMetric::DurationUncorrected => "http_req_duration_uncorrected",
            ThresholdMetric::Failed => "http_req_failed",
            ThresholdMetric::Reqs => "http_reqs",
            ThresholdMetric::Checks => "checks",
            ThresholdMetric::Dropped => "dropped_iterations",
        }
    }

    pub fn parse(name: &str) -> Option<ThresholdMetric> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn is_duration(self) -> bool {
        matches!(
            self,
            ThresholdMetric::Duration | ThresholdMetric::DurationUncorrected
        )
    }

    /// Whether `rate` of this metric is a share (of requests or checks) rather than a count
    /// per second.
    fn rate_is_share(self) -> bool {
        matches!(self, ThresholdMetric::Failed | ThresholdMetric::Checks)
    }

    /// The aggregations k6 defines for this metric's type (trend, rate or counter).
    pub fn allows(self, agg: &Aggregation) -> bool {
        if self.is_duration() {
            matches!(
                agg,
                Aggregation::Percentile(_)
                    | Aggregation::Avg
                    | Aggregation::Med
                    | Aggregation::Min
                    | Aggregation::Max
            )
        } else if self.rate_is_share() {
            matches!(agg, Aggregation::Rate)
        } else {
            matches!(agg, Aggregation::Count | Aggregation::Rate)
        }
    }
}

/// How a threshold aggregates its metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// Percentile in (0, 100].
    Percentile(f64),
    Avg,
    Med,
    Min,
    Max,
    Rate,
    Count,
}

/// Why a text is not an [`Aggregation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregationError {
    #[error("unknown aggregation `{0}` (p(N), avg, med, min, max, rate, count)")]
    Unknown(String),
    #[error("percentile `{0}` must be in (0, 100], e.g. p(95)")]
    Percentile(String),
}

impl FromStr for Aggregation {
    type Err = AggregationError;

    fn from_str(text: &str) -> Result<Aggregation, AggregationError> {
        let unknown = || AggregationError::Unknown(text.to_owned());
        Ok(match text {
            "avg" => Aggregation::Avg,
            "med" => Aggregation::Med,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "rate" => Aggregation::Rate,
            "count" => Aggregation::Count,
            _ => {
                let n = text
                    .strip_prefix("p(")
                    .and_then(|t| t.strip_suffix(')'))
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .ok_or_else(unknown)?;
                if !(n > 0.0 && n <= 100.0) {
                    return Err(AggregationError::Percentile(text.to_owned()));
                }
                Aggregation::Percentile(n)
            }
        })
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Percentile(n) => write!(f, "p({n})"),
            Aggregation::Avg => f.write_str("avg"),
            Aggregation::Med => f.write_str("med"),
            Aggregation::Min => f.write_str("min"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Rate => f.write_str("rate"),
            Aggregation::Count => f.write_str("count"),
        }
    }
}

impl fmt::Display for ThresholdMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A duration in ms as k6 prints it: `12.30ms`, or `1.50s` from a second on.
pub fn duration_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{ms:.2}ms")
    }
}

/// `p(95)=12.30ms`, `rate=0.00%` (a share), `rate=483.002` (per second), `count=12`: a
/// threshold's measured value as k6 prints it.
pub fn value_text(
    metric: ThresholdMetric,
    aggregation: &Aggregation,
    value: Option<f64>,
) -> String {
    match value {
        None => format!("{aggregation}=n/a (no data)"),
        Some(v) if metric.is_duration() => format!("{aggregation}={}", duration_text(v)),
        Some(v) if *aggregation == Aggregation::Rate && metric.rate_is_share() => {
            format!("rate={:.2}%", v * 100.0)
        }
        Some(v) if v.fract() == 0.0 => format!("{aggregation}={v:.0}"),
        Some(v) => format!("{aggregation}={v:.3}"),
    }
}

// Reports store both as the strings a user wrote, so report.json reads as k6's vocabulary.
impl Serialize for ThresholdMetric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ThresholdMetric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ThresholdMetric::parse(&name).ok_or_else(|| {
            let known: Vec<_> = ThresholdMetric::ALL.iter().map(|m| m.name()).collect();
            serde::de::Error::custom(format!(
                "unknown threshold metric `{name}` (known: {})",
                known.join(", ")
            ))
        })
    }
}

impl Serialize for Aggregation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Aggregation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_k6_and_a_per_second_rate_is_no_percentage() {
        let p95 = Aggregation::Percentile(95.0);
        assert_eq!(
            value_text(ThresholdMetric::Duration, &p95, Some(12.3)),
            "p(95)=12.30ms"
        );
        assert_eq!(
            value_text(ThresholdMetric::Failed, &Aggregation::Rate, Some(0.05)),
            "rate=5.00%"
        );
        assert_eq!(
            value_text(ThresholdMetric::Reqs, &Aggregation::Rate, Some(483.002)),
            "rate=483.002"
        );
        assert_eq!(
            value_text(ThresholdMetric::Reqs, &Aggregation::Count, Some(12.0)),
            "count=12"
        );
        assert_eq!(
            value_text(ThresholdMetric::Duration, &p95, None),
            "p(95)=n/a (no data)"
        );
    }

    #[test]
    fn names_round_trip_through_json() {
        for m in ThresholdMetric::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<ThresholdMetric>(&json).unwrap(), m);
        }
        for a in ["p(99.9)", "p(95)", "avg", "rate", "count"] {
            let agg: Aggregation = a.parse().unwrap();
            assert_eq!(agg.to_string(), a);
        }
        let err = serde_json::from_str::<ThresholdMetric>("\"latency\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("latency") && err.contains("http_req_duration"),
            "{err}"
        );
        assert!(
            "p(0)"
                .parse::<Aggregation>()
                .unwrap_err()
                .to_string()
                .contains("(0, 100]")
        );
    }
}
