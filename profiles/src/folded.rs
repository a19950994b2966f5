//! Reading a pprof protobuf back: decoding (gzipped or not), folding its samples into stacks,
//! and rendering them as a flamegraph with inferno (the renderer pprof-rs uses).

use std::collections::HashMap;
use std::io::Read;

use flate2::read::GzDecoder;
use pprof::protos::{Message, Profile};

/// Why a pprof file could not be read or rendered.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// The gzip stream is corrupt.
    #[error("gunzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// Not a `perftools.profiles.Profile` protobuf.
    #[error("not a pprof protobuf: {0}")]
    Protobuf(String),
    /// A sample or location points at an id or string index that does not exist.
    #[error("inconsistent pprof profile: {0}")]
    Inconsistent(String),
    /// inferno failed.
    #[error("rendering the flamegraph: {0}")]
    Render(String),
}

/// Decodes a pprof profile, gunzipping first when the bytes start with the gzip magic.
pub fn decode_pprof(bytes: &[u8]) -> Result<Profile, FoldError> {
    let raw;
    let body = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(FoldError::Gzip)?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    Profile::parse_from_bytes(body).map_err(|e| FoldError::Protobuf(e.to_string()))
}

/// How much a sample weighs in a flamegraph: the CPU time it stands for, in the profile's
/// periods, when the profile has a `cpu` value and a period (a sample taken at a lowered rate
/// stands for several periods, [`crate::rate`]); else its first value, the sample count.
fn flame_weight(profile: &Profile) -> impl Fn(&pprof::protos::Sample) -> i64 {
    let cpu = profile
        .sample_type
        .iter()
        .position(|t| profile.string_table.get(t.ty as usize).map(String::as_str) == Some("cpu"))
        .filter(|_| profile.period > 0);
    let period = profile.period.max(1) as f64;
    move |sample| match cpu.and_then(|i| sample.value.get(i)) {
        Some(&ns) => (ns as f64 / period).round() as i64,
        None => sample.value.first().copied().unwrap_or(0),
    }
}

/// Samples a profile holds: the sum of each sample's first value (`samples`, `count`).
pub fn sample_count(profile: &Profile) -> u64 {
    profile
        .sample
        .iter()
        .map(|s| s.value.first().copied().unwrap_or(0).max(0) as u64)
        .sum()
}

/// One `root;caller;...;leaf weight` line per distinct stack, weighted by the CPU time its
/// samples stand for ([`flame_weight`]), rooted at the `thread` label when present.
pub fn folded_stacks(profile: &Profile) -> Result<Vec<String>, FoldError> {
    let string = |index: i64| -> Result<&str, FoldError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| FoldError::Inconsistent(format!("string index {index} out of range")))
    };
    let functions: HashMap<u64, &str> = profile
        .function
        .iter()
        .map(|f| Ok((f.id, string(f.name)?)))
        .collect::<Result<_, FoldError>>()?;
    let locations: HashMap<u64, _> = profile.location.iter().map(|l| (l.id, l)).collect();

    let flame_weight = flame_weight(profile);
    let mut weights: HashMap<String, i64> = HashMap::new();
    for sample in &profile.sample {
        let weight = flame_weight(sample);
        if weight <= 0 {
            continue;
        }
        let mut frames: Vec<String> = Vec::new();
        for label in &sample.label {
            if string(label.key)? == "thread" && label.str != 0 {
                frames.push(string(label.str)?.to_owned());
            }
        }
        // location_id[0] is the leaf; within a location the last line is the caller that the
        // earlier (inlined) lines were inlined into.
        for id in sample.location_id.iter().rev() {
            let location = locations.get(id).ok_or_else(|| {
                FoldError::Inconsistent(format!("sample refers to location {id}"))
            })?;
            if location.line.is_empty() {
                frames.push(format!("{:#x}", location.address));
            }
            for line in location.line.iter().rev() {
                let name = functions.get(&line.function_id).ok_or_else(|| {
                    FoldError::Inconsistent(format!("line refers to function {}", line.function_id))
                })?;
                frames.push(name.replace(';', ":"));
            }
        }
        if frames.is_empty() {
            continue;
        }
        *weights.entry(frames.join(";")).or_default() += weight;
    }
    let mut lines: Vec<String> = weights
        .into_iter()
        .map(|(stack, weight)| format!("{stack} {weight}"))
        .collect();
    lines.sort();
    Ok(lines)
}

/// SVG flamegraph of `profile`; an explanatory empty image when it has no samples.
pub(crate) fn flamegraph_svg(profile: &Profile) -> Result<Vec<u8>, FoldError> {
    folded_flamegraph(&folded_stacks(profile)?, None)
}

/// SVG flamegraph of folded stacks, titled `title` (inferno's default without); an
/// explanatory empty image when there are none.
pub fn folded_flamegraph(lines: &[String], title: Option<&str>) -> Result<Vec<u8>, FoldError> {
    if lines.is_empty() {
        return Ok(crate::capture::empty_flamegraph());
    }
    let mut svg = Vec::new();
    let mut options = inferno::flamegraph::Options::default();
    if let Some(title) = title {
        options.title = title.to_owned();
    }
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| FoldError::Render(e.to_string()))?;
    Ok(svg)
}

/// The samples of requests that took at least a threshold, cut from a profile whose samples
/// carry the runtime's request labels ([`crate::capture::REQUEST_LATENCY_LABEL`]).
#[derive(Debug, Clone)]
pub struct SlowSamples {
    /// The profile with only those samples.
    pub profile: Profile,
    /// Samples (first value) in it.
    pub samples: u64,
    /// Samples of the whole profile labelled with their request's latency.
    pub labelled: u64,
}

/// Keeps the samples of `profile` labelled with a request latency of at least
/// `threshold_us` microseconds.
pub fn slow_requests(profile: &Profile, threshold_us: u64) -> SlowSamples {
    let key = profile
        .string_table
        .iter()
        .position(|s| s == crate::capture::REQUEST_LATENCY_LABEL)
        .map(|i| i as i64);
    let mut slow = profile.clone();
    slow.sample.clear();
    let (mut samples, mut labelled) = (0u64, 0u64);
    for sample in &profile.sample {
        let weight = sample.value.first().copied().unwrap_or(0).max(0) as u64;
        let latency = key.and_then(|k| sample.label.iter().find(|l| l.key == k).map(|l| l.num));
        let Some(latency) = latency else { continue };
        labelled += weight;
        if latency >= 0 && latency as u64 >= threshold_us {
            samples += weight;
            slow.sample.push(sample.clone());
        }
    }
    SlowSamples {
        profile: slow,
        samples,
        labelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pprof::protos::{Function, Label, Line, Location, Sample};

    /// main -> work (with `helper` inlined into `work`), 3 samples on thread "w".
    fn sample_profile() -> Profile {
        let strings = ["", "main", "work", "helper", "thread", "w"];
        let mut p = Profile::new();
        p.string_table = strings.iter().map(|s| s.to_string()).collect();
        for (id, name) in [(1, 1), (2, 2), (3, 3)] {
            let mut f = Function::new();
            f.id = id;
            f.name = name;
            p.function.push(f);
        }
        let line = |function_id| {
            let mut l = Line::new();
            l.function_id = function_id;
            l
        };
        let mut leaf = Location::new();
        leaf.id = 10;
        leaf.line = vec![line(3), line(2)];
        let mut root = Location::new();
        root.id = 11;
        root.line = vec![line(1)];
        p.location = vec![leaf, root];
        let mut s = Sample::new();
        s.location_id = vec![10, 11];
        s.value = vec![3, 30_000_000];
        let mut thread = Label::new();
        thread.key = 4;
        thread.str = 5;
        s.label = vec![thread];
        p.sample.push(s);
        p
    }

    #[test]
    fn slow_requests_keep_the_samples_at_or_above_the_threshold() {
        let mut p = sample_profile();
        p.string_table
            .push(crate::capture::REQUEST_LATENCY_LABEL.into());
        let key = (p.string_table.len() - 1) as i64;
        let with_latency = |base: &Sample, us: i64, n: i64| {
            let mut s = base.clone();
            let mut l = Label::new();
            l.key = key;
            l.num = us;
            s.label.push(l);
            s.value = vec![n, 0];
            s
        };
        let base = p.sample[0].clone();
        p.sample.push(with_latency(&base, 900, 5));
        p.sample.push(with_latency(&base, 20_000, 7));
        let slow = slow_requests(&p, 10_000);
        assert_eq!((slow.samples, slow.labelled), (7, 12));
        assert_eq!(
            folded_stacks(&slow.profile).unwrap(),
            ["w;main;work;helper 7"]
        );
        assert_eq!(slow_requests(&sample_profile(), 0).labelled, 0);
    }

    #[test]
    fn folds_root_first_with_inlined_frames_and_thread() {
        assert_eq!(
            folded_stacks(&sample_profile()).unwrap(),
            ["w;main;work;helper 3"]
        );
    }

    #[test]
    fn a_sample_weighs_the_cpu_time_it_stands_for_and_counts_once() {
        use pprof::protos::ValueType;
        let mut p = sample_profile();
        for name in ["samples", "count", "cpu", "nanoseconds"] {
            p.string_table.push(name.into());
        }
        let n = p.string_table.len() as i64;
        let value_type = |ty, unit| {
            let mut t = ValueType::new();
            (t.ty, t.unit) = (ty, unit);
            t
        };
        p.sample_type = vec![value_type(n - 4, n - 3), value_type(n - 2, n - 1)];
        // 1000 Hz: one sample taken at a twentieth of the rate stands for 20 ms of CPU.
        p.period = 1_000_000;
        let mut lowered = p.sample[0].clone();
        lowered.location_id = vec![11];
        lowered.value = vec![1, 20_000_000];
        p.sample[0].value = vec![3, 3_000_000];
        p.sample.push(lowered);
        assert_eq!(
            folded_stacks(&p).unwrap(),
            ["w;main 20", "w;main;work;helper 3"]
        );
        assert_eq!(sample_count(&p), 4);
    }

    #[test]
    fn round_trips_through_gzip_and_renders() {
        let raw = sample_profile().write_to_bytes().unwrap();
        let gz = crate::capture::gzip(&raw).unwrap();
        let decoded = decode_pprof(&gz).unwrap();
        assert_eq!(decode_pprof(&raw).unwrap(), decoded);
        let svg = String::from_utf8(flamegraph_svg(&decoded).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("helper"), "{svg}");
    }

    #[test]
    fn rejects_garbage_and_dangling_ids() {
        assert!(matches!(
            decode_pprof(&[0x1f, 0x8b, 0, 1]),
            Err(FoldError::Gzip(_))
        ));
        assert!(matches!(
            decode_pprof(b"\xff\xff\xff"),
            Err(FoldError::Protobuf(_))
        ));
        let mut p = sample_profile();
        p.sample[0].location_id.push(99);
        let err = folded_stacks(&p).unwrap_err().to_string();
        assert!(err.contains("location 99"), "{err}");
    }
}
