//! The W3C `traceparent`/`tracestate` pair, read and written on the hot path.
//!
//! Every traced request writes its `traceparent` once and reads it back once per message
//! execution, sampled or not. The SDK's `TraceContextPropagator` splits the value into a
//! `Vec`, parses each part with `from_str_radix` and formats with `format!`, a cost the
//! message path's callgrind profile showed (BENCHMARKS.md has the saving).
//! Version 00 with lowercase hex, the only form W3C defines today and the only one this
//! runtime writes, is decoded and encoded here directly; any other value (a future version,
//! padding, upper case) goes to the SDK propagator, so what is accepted, rejected and
//! produced is exactly the propagator's. Tests check the two agree.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";

/// Length of a version-00 value: `00-` + 32 + `-` + 16 + `-` + 2.
const V00_LEN: usize = 55;

/// The caller's context from a carrier's `traceparent`/`tracestate`, as
/// `TraceContextPropagator::extract` would build it (an empty context when absent or
/// malformed).
pub(crate) fn extract(carrier: &dyn Extractor) -> Context {
    let Some(sc) = carrier.get(TRACEPARENT).and_then(decode_v00) else {
        return TraceContextPropagator::new().extract(carrier);
    };
    let state = match carrier.get(TRACESTATE) {
        Some(s) => s.parse().unwrap_or_default(),
        None => TraceState::default(),
    };
    let (trace_id, span_id, flags) = sc;
    let sc = SpanContext::new(trace_id, span_id, flags, true, state);
    if !sc.is_valid() {
        return Context::new();
    }
    Context::new().with_remote_span_context(sc)
}

/// `(trace id, traceparent)` of a valid span context: what `inject` writes, and the
/// `x-trace-id` response header.
pub(crate) fn encode(sc: &SpanContext) -> Option<(String, String)> {
    if !sc.is_valid() {
        return None;
    }
    let mut b = [b'-'; V00_LEN];
    b[..2].copy_from_slice(b"00");
    hex_into(&mut b[3..35], &sc.trace_id().to_bytes());
    hex_into(&mut b[36..52], &sc.span_id().to_bytes());
    hex_into(
        &mut b[53..],
        &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    // Hex digits and dashes: always UTF-8.
    let header = String::from_utf8(b.to_vec()).ok()?;
    Some((header[3..35].to_owned(), header))
}

fn decode_v00(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let b = value.as_bytes();
    if b.len() != V00_LEN || !b.starts_with(b"00-") || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from(hex_value(&b[3..35])?);
    let span_id = SpanId::from(u64::try_from(hex_value(&b[36..52])?).ok()?);
    let flags = u8::try_from(hex_value(&b[53..55])?).ok()?;
    // Unknown flags are accepted but zeroed, as the propagator (and W3C) requires.
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// Lowercase hex digits only: the propagator refuses upper case, and `from_str_radix`
/// would also take a leading `+`, which the fallback then judges.
fn hex_value(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(d))
    })
}

/// Writes `bytes` as lowercase hex into `out`, which is twice as long.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::TraceContextExt;

    use super::*;

    fn sdk_extract(carrier: &HashMap<String, String>) -> SpanContext {
        TraceContextPropagator::new()
            .extract(carrier)
            .span()
            .span_context()
            .clone()
    }

    fn ours(carrier: &HashMap<String, String>) -> SpanContext {
        extract(carrier).span().span_context().clone()
    }

    fn carrier(traceparent: &str, tracestate: Option<&str>) -> HashMap<String, String> {
        let mut c = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
        if let Some(s) = tracestate {
            c.insert(TRACESTATE.to_owned(), s.to_owned());
        }
        c
    }

    /// splitmix64: ids spread over the whole range without a rand dependency.
    fn ids(n: usize) -> impl Iterator<Item = (u128, u64)> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..n).map(move |_| ((u128::from(next()) << 64) | u128::from(next()), next()))
    }

    #[test]
    fn decodes_what_the_sdk_decodes() {
        for (t, s) in ids(500) {
            for flags in ["00", "01", "03", "ff"] {
                for state in [None, Some("vendor=abc,other=1"), Some("not a tracestate")] {
                    let c = carrier(&format!("00-{t:032x}-{s:016x}-{flags}"), state);
                    let (a, b) = (ours(&c), sdk_extract(&c));
                    assert_eq!(a, b, "{c:?}");
                    assert_eq!(a.trace_state().header(), b.trace_state().header());
                }
            }
        }
    }

    #[test]
    fn everything_else_is_judged_by_the_sdk() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        let s = "00f067aa0ba902b7";
        let cases = [
            format!("00-{t}-{s}-01"),
            format!("00-{}-{s}-01", t.to_uppercase()),
            format!("00-{t}-{}-01", s.to_uppercase()),
            format!("00-{t}-{s}-0A"),
            format!(" 00-{t}-{s}-01 "),
            format!("00-{t}-{s}-01-extra"),
            format!("01-{t}-{s}-01-extra"),
            format!("ff-{t}-{s}-01"),
            format!("00-{}-{s}-01", "0".repeat(32)),
            format!("00-{t}-{}-01", "0".repeat(16)),
            format!("00-+{}-{s}-01", &t[1..]),
            format!("00-{t}-{s}-+1"),
            format!("00_{t}_{s}_01"),
            format!("00-{t}-{s}"),
            String::new(),
            "garbage".to_owned(),
        ];
        for tp in cases {
            let c = carrier(&tp, Some("k=v"));
            assert_eq!(ours(&c), sdk_extract(&c), "{tp:?}");
        }
        let empty = HashMap::new();
        assert_eq!(ours(&empty), sdk_extract(&empty));
    }

    #[test]
    fn encodes_what_the_sdk_injects() {
        for (i, (t, s)) in ids(500).enumerate() {
            let flags = TraceFlags::new([0u8, 1, 0xff][i % 3]);
            let sc = SpanContext::new(
                TraceId::from(t),
                SpanId::from(s),
                flags,
                true,
                TraceState::default(),
            );
            let mut injected = HashMap::new();
            TraceContextPropagator::new().inject_context(
                &Context::new().with_remote_span_context(sc.clone()),
                &mut injected,
            );
            let (trace_id, header) = encode(&sc).unwrap();
            assert_eq!(Some(&header), injected.get(TRACEPARENT));
            assert_eq!(trace_id, sc.trace_id().to_string());
        }
        assert_eq!(encode(&SpanContext::empty_context()), None);
    }
}
