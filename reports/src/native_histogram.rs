//! Prometheus native (sparse, exponential-bucket) histograms, as remote write carries them.
//!
//! A native histogram needs no bucket list chosen in advance: bucket `i` of schema `s` holds
//! the observations in `(2^((i-1)/2^s), 2^(i/2^s)]`, so its relative width is fixed and
//! `histogram_quantile` over a `sum` of workers' histograms is as exact as one worker's. The
//! classic `_bucket` series stay beside it for receivers without the feature.

use crate::sink::{self, SinkError};
use crate::wire;

/// Schema of the histograms this crate writes: 8 buckets per power of two, each about 9 %
/// wide, which keeps a p95 within a few per cent with a few dozen buckets per run.
pub const SCHEMA: i32 = 3;

/// One native histogram: counts of non-negative observations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NativeHistogram {
    pub schema: i32,
    /// Observations equal to zero (the zero bucket has width 0).
    pub zero_count: u64,
    /// `(bucket index, count)`, indices ascending, counts non-zero.
    pub positive: Vec<(i32, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl NativeHistogram {
    /// The histogram of `(value, times)` observations, values in the histogram's unit (e.g.
    /// seconds), in any order. Negative and non-finite values are not latencies and are
    /// ignored.
    pub fn from_observations(values: impl IntoIterator<Item = (f64, u64)>) -> NativeHistogram {
        let mut buckets = std::collections::BTreeMap::<i32, u64>::new();
        let mut h = NativeHistogram {
            schema: SCHEMA,
            ..NativeHistogram::default()
        };
        for (value, times) in values {
            if !value.is_finite() || value < 0.0 || times == 0 {
                continue;
            }
            h.count += times;
            h.sum += value * times as f64;
            if value == 0.0 {
                h.zero_count += times;
            } else {
                *buckets.entry(bucket_index(value, SCHEMA)).or_default() += times;
            }
        }
        h.positive = buckets.into_iter().collect();
        h
    }

    /// The upper bound of bucket `index`.
    pub fn upper_bound(&self, index: i32) -> f64 {
        upper_bound(index, self.schema)
    }

    /// The remote-write message: spans of consecutive buckets, counts delta-encoded.
    pub fn to_wire(&self, timestamp_ms: i64) -> wire::Histogram {
        let mut spans: Vec<wire::BucketSpan> = Vec::new();
        let mut deltas = Vec::with_capacity(self.positive.len());
        let (mut next_index, mut previous) = (None::<i32>, 0i64);
        for &(index, count) in &self.positive {
            match next_index {
                Some(expected) if expected == index => {
                    if let Some(last) = spans.last_mut() {
                        last.length += 1;
                    }
                }
                // The first span's offset is its first index; each later one's is the gap
                // after the previous span.
                _ => spans.push(wire::BucketSpan {
                    offset: next_index.map_or(index, |expected| index - expected),
                    length: 1,
                }),
            }
            let count = count as i64;
            deltas.push(count - previous);
            previous = count;
            next_index = Some(index + 1);
        }
        wire::Histogram {
            count: Some(wire::histogram::Count::CountInt(self.count)),
            sum: self.sum,
            schema: self.schema,
            zero_threshold: 0.0,
            zero_count: Some(wire::histogram::ZeroCount::ZeroCountInt(self.zero_count)),
            positive_spans: spans,
            positive_deltas: deltas,
            // A cumulative counter: a reset is seen by the receiver, not hinted.
            reset_hint: wire::histogram::ResetHint::No as i32,
            timestamp: timestamp_ms,
            ..wire::Histogram::default()
        }
    }
}

/// The bucket of a positive `value`: the smallest `i` with `value <= 2^(i / 2^schema)`.
fn bucket_index(value: f64, schema: i32) -> i32 {
    let scaled = value.log2() * 2f64.powi(schema);
    let mut index = scaled.ceil() as i32;
    // log2 may land a hair off an exact bucket boundary; the bounds decide.
    if value > upper_bound(index, schema) {
        index += 1;
    } else if value <= upper_bound(index - 1, schema) {
        index -= 1;
    }
    index
}

fn upper_bound(index: i32, schema: i32) -> f64 {
    2f64.powf(index as f64 / 2f64.powi(schema))
}

/// One native histogram of one series at one instant; the sibling of
/// [`Sample`](crate::sink::Sample), with the same name and label rules.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub histogram: NativeHistogram,
    pub timestamp_ms: i64,
}

impl HistogramSample {
    pub(crate) fn sorted_labels(&self, index: usize) -> Result<Vec<(&str, &str)>, SinkError> {
        sink::sorted_labels(&self.name, &self.labels, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_bucket_whose_bounds_hold_them() {
        for value in [1e-6, 1.2e-4, 0.001, 0.0042, 0.25, 0.5, 1.0, 2.0, 3.3, 60.0] {
            let h = NativeHistogram::from_observations([(value, 1)]);
            let (index, _) = h.positive[0];
            assert!(
                h.upper_bound(index - 1) < value && value <= h.upper_bound(index),
                "{value} in bucket {index}: ({}, {}]",
                h.upper_bound(index - 1),
                h.upper_bound(index)
            );
        }
        // Powers of two are upper bounds (inclusive).
        let h = NativeHistogram::from_observations([(0.5, 1), (1.0, 1)]);
        assert_eq!(h.positive, vec![(-8, 1), (0, 1)]);
    }

    #[test]
    fn spans_and_deltas_encode_the_buckets() {
        let h = NativeHistogram {
            schema: SCHEMA,
            zero_count: 2,
            positive: vec![(-3, 4), (-2, 6), (5, 1)],
            count: 13,
            sum: 1.5,
        };
        let w = h.to_wire(7);
        let spans: Vec<_> = w
            .positive_spans
            .iter()
            .map(|s| (s.offset, s.length))
            .collect();
        assert_eq!(spans, vec![(-3, 2), (6, 1)]);
        assert_eq!(w.positive_deltas, vec![4, 2, -5]);
        assert_eq!(w.count, Some(wire::histogram::Count::CountInt(13)));
        assert_eq!(
            w.zero_count,
            Some(wire::histogram::ZeroCount::ZeroCountInt(2))
        );
        assert_eq!(w.timestamp, 7);
    }

    #[test]
    fn counts_and_sum_cover_every_observation() {
        let h = NativeHistogram::from_observations([(0.0, 3), (0.01, 5), (0.02, 2), (-1.0, 9)]);
        assert_eq!((h.count, h.zero_count), (10, 3));
        assert_eq!(h.positive.iter().map(|(_, n)| n).sum::<u64>(), 7);
        assert!((h.sum - 0.09).abs() < 1e-12);
    }
}
