//! `[profiling] sampler` in a running runtime under load from a loopback client: the perf_event
//! sampler takes nearly every sample the runtime's CPU time calls for, with the runtime's own
//! and kernel frames, and `sampler = "signal"` still profiles.
//!
//! perf_event_open may be refused (`kernel.perf_event_paranoid`, a seccomp profile): then this
//! test fails, naming the reason, unless `CAXTON_ALLOW_NO_PERF=1` says the environment is known
//! to refuse it.

mod support;

use caxton_profiles::Sampler;
use caxton_profiles::folded::{decode_pprof, folded_stacks};
use support::Harness;

/// Largest share of the called-for samples the perf_event sampler may lose.
const MAX_LOST_SHARE: f64 = 0.05;

/// The process has one sampler, at one rate: tests asking for different rates take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Capture {
    sampler: String,
    taken: u64,
    lost: u64,
    stacks: Vec<String>,
}

async fn start(sampler: Sampler) -> Harness {
    Harness::start(|cfg| {
        cfg.profiling.enabled = true;
        cfg.profiling.server_address = "127.0.0.1:0".parse().unwrap();
        cfg.profiling.sampler = sampler;
    })
    .await
}

/// Captures `seconds` of CPU profile while two loopback clients keep a `cpu-heavy` agent busy.
/// `Err` holds the error body when the capture is refused.
async fn capture_under_load(h: &Harness, seconds: u64) -> Result<Capture, String> {
    let id = h.agent("cpu-heavy").await;
    // Bounded in requests; aborted once the capture answers.
    let load: Vec<_> = (0..2)
        .map(|_| support::keep_busy(&h.http, &h.base, &id, 20_000))
        .collect();
    let resp = h.profile_during(seconds, load).await;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let sampler = header("x-pprof-sampler");
    let taken = header("x-pprof-samples").parse().unwrap_or(0);
    let lost = header("x-pprof-samples-lost").parse().unwrap_or(0);
    let body = resp.bytes().await.unwrap();
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let profile = decode_pprof(&body).expect("valid gzipped pprof");
    let stacks = folded_stacks(&profile).expect("stacks");
    Ok(Capture {
        sampler,
        taken,
        lost,
        stacks,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_event_sampler_loses_few_samples_and_signal_still_works() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let srv = start(Sampler::PerfEvent).await;
    match capture_under_load(&srv, 3).await {
        Ok(perf) => {
            assert_eq!(perf.sampler, "perf_event");
            let expected = perf.taken + perf.lost;
            // Two busy clients and the runtime: at least one core's worth of 3 s at 100 Hz on
            // an idle machine; a parallel build may take most of it.
            assert!(
                expected >= 50,
                "too little CPU to judge: {} taken, {} lost",
                perf.taken,
                perf.lost
            );
            let share = perf.lost as f64 / expected as f64;
            eprintln!("perf_event: {} taken, {} lost", perf.taken, perf.lost);
            assert!(
                share < MAX_LOST_SHARE,
                "perf_event lost {} of {expected} samples ({:.1}%)",
                perf.lost,
                share * 100.0
            );
            assert!(
                perf.stacks
                    .iter()
                    .any(|s| s.contains("caxton_runtime::runtime::routing")),
                "the runtime's own hot path is in the profile: {:?}",
                perf.stacks.iter().take(5).collect::<Vec<_>>()
            );
            if !caxton_profiles::kallsyms::kernel().is_empty() {
                assert!(
                    perf.stacks.iter().any(|s| s.contains("_[k]")),
                    "kernel frames (loopback TCP, futexes) are in the profile: {:?}",
                    perf.stacks.iter().take(5).collect::<Vec<_>>()
                );
            }
        }
        Err(refused) if std::env::var("CAXTON_ALLOW_NO_PERF").as_deref() == Ok("1") => {
            eprintln!("perf_event sampler refused here (CAXTON_ALLOW_NO_PERF=1): {refused}");
        }
        Err(refused) => panic!(
            "the perf_event sampler was refused: {refused}; set CAXTON_ALLOW_NO_PERF=1 where \
             perf_event_open is known to be unavailable"
        ),
    }
    srv.server.shutdown().await;

    let srv = start(Sampler::Signal).await;
    let signal = capture_under_load(&srv, 2).await.expect("signal capture");
    assert_eq!(signal.sampler, "signal");
    eprintln!("signal: {} taken, {} lost", signal.taken, signal.lost);
    assert!(signal.taken > 0, "no samples");
    assert!(
        signal
            .stacks
            .iter()
            .any(|s| s.contains("caxton_runtime::runtime::routing")),
        "{:?}",
        signal.stacks.iter().take(5).collect::<Vec<_>>()
    );
    srv.server.shutdown().await;
}

/// A request whose trace is sampled names it in its samples (label `trace_id`), so a
/// flamegraph of slow requests leads to their traces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_of_a_traced_request_carry_its_trace_id() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let srv = Harness::start(|cfg| {
        cfg.profiling.enabled = true;
        cfg.profiling.server_address = "127.0.0.1:0".parse().unwrap();
        cfg.profiling.sampler = Sampler::PerfEvent;
        // Every sample at the full rate: this test counts the samples of one client's trace.
        cfg.profiling.sample_budget = 0;
        cfg.observability.enable_tracing = true;
        // Rate 0: only the caller's sampled flag gets a request traced. Nothing listens on
        // port 1; the exporter's failures do not reach the requests.
        cfg.observability.trace_sample_rate = 0.0;
        cfg.observability.otlp_endpoint = "http://127.0.0.1:1".into();
    })
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let id = srv.agent("cpu-heavy").await;
    let url = format!("{}/api/messages?wait=true", srv.base);
    let load: Vec<_> = (0..2)
        .map(|i| {
            let (http, url) = (srv.http.clone(), url.clone());
            let msg = serde_json::json!({"performative": "REQUEST", "receiver": id});
            tokio::spawn(async move {
                for _ in 0..20_000 {
                    // Every other client's requests are untraced.
                    let mut req = http.post(&url).json(&msg);
                    if i == 0 {
                        req =
                            req.header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"));
                    }
                    let _ = req.send().await;
                }
            })
        })
        .collect();
    let resp = srv.profile_during(2, load).await;
    let status = resp.status();
    let body = resp.bytes().await.unwrap();
    if refused_here(status, &body) {
        return;
    }
    let profile = decode_pprof(&body).expect("valid gzipped pprof");
    let text = |i: i64| profile.string_table[i as usize].as_str();
    let (mut traced, mut other_traces, mut untraced_requests) = (0, 0, 0);
    for sample in &profile.sample {
        let trace = sample
            .label
            .iter()
            .find(|l| text(l.key) == caxton_profiles::capture::TRACE_ID_LABEL);
        let request = sample.label.iter().any(|l| text(l.key) == "request_id");
        match trace {
            Some(l) if text(l.str) == trace_id => traced += sample.value[0],
            Some(_) => other_traces += sample.value[0],
            None if request => untraced_requests += sample.value[0],
            None => {}
        }
    }
    eprintln!("samples: traced {traced}, untraced requests {untraced_requests}");
    assert!(traced > 0, "no sample names the caller's trace");
    assert_eq!(other_traces, 0, "a trace id the caller never sent");
    assert!(
        untraced_requests > 0,
        "the untraced client's requests are tagged without a trace"
    );
    srv.server.shutdown().await;
}

/// Whether the perf_event capture was refused where `CAXTON_ALLOW_NO_PERF=1` says that is
/// expected; a refusal anywhere else fails the test with the target's reason.
fn refused_here(status: reqwest::StatusCode, body: &[u8]) -> bool {
    if status == 200 {
        return false;
    }
    assert_eq!(
        std::env::var("CAXTON_ALLOW_NO_PERF").as_deref(),
        Ok("1"),
        "the perf_event sampler was refused: {}",
        String::from_utf8_lossy(body)
    );
    true
}

/// Under load the sampler lowers its rate to keep within `[profiling] sample_budget`, says so
/// (`x-pprof-sample-rate-lowest`), and weighs each sample by the full-rate periods it stands
/// for: the profile still accounts for the CPU the process used, so its flamegraph keeps
/// the proportions a fixed rate would have drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_target_is_sampled_within_the_budget_and_weighed_to_its_cpu_time() {
    const SECONDS: u64 = 3;
    const BUDGET: u32 = 50;
    let _turn = ONE_AT_A_TIME.lock().await;
    let srv = Harness::start(|cfg| {
        cfg.profiling.enabled = true;
        cfg.profiling.server_address = "127.0.0.1:0".parse().unwrap();
        cfg.profiling.sampler = Sampler::PerfEvent;
        cfg.profiling.sample_rate = 1000;
        cfg.profiling.sample_budget = BUDGET;
    })
    .await;
    let id = srv.agent("cpu-heavy").await;
    let load: Vec<_> = (0..2)
        .map(|_| support::keep_busy(&srv.http, &srv.base, &id, 20_000))
        .collect();
    // No thread filter in this process: the profile is of all of it, clients included.
    let process_cpu = || {
        let (target, other) = caxton_profiles::threads::cpu_split();
        target + other
    };
    let before = process_cpu();
    let resp = srv.profile_during(SECONDS, load).await;
    let used = process_cpu() - before;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (taken, lowest) = (
        header("x-pprof-samples"),
        header("x-pprof-sample-rate-lowest"),
    );
    let body = resp.bytes().await.unwrap();
    if refused_here(status, &body) {
        return;
    }
    let profile = decode_pprof(&body).expect("valid gzipped pprof");
    let samples: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    let cpu_ns: i64 = profile.sample.iter().map(|s| s.value[1]).sum();
    let profiled = std::time::Duration::from_nanos(cpu_ns.max(0) as u64);
    eprintln!(
        "{samples} samples (header {taken:?}), lowest rate {lowest:?} Hz, profile CPU {profiled:?}, \
         process CPU {used:?}"
    );
    assert_eq!(
        Some(samples as u64),
        taken,
        "the pprof counts the samples taken"
    );
    let lowest = lowest.expect("a busy process is sampled below the full rate, and says so");
    assert!(lowest < 1000, "lowest rate {lowest} Hz");
    // The first poll runs at the full rate before the sampler has seen the load.
    let bound = 2 * u64::from(BUDGET) * SECONDS + 150;
    assert!(
        (samples as u64) <= bound,
        "{samples} samples in {SECONDS} s: more than twice the budget of {BUDGET}/s"
    );
    // The capture window is a segment shorter than the measured one at most, and the
    // measured one also holds the symbolizing: the profile's CPU falls a little short.
    let ratio = profiled.as_secs_f64() / used.as_secs_f64();
    assert!(
        (0.5..=1.3).contains(&ratio),
        "the profile accounts for {profiled:?} of the {used:?} the process used ({ratio:.2})"
    );
    srv.server.shutdown().await;
}
