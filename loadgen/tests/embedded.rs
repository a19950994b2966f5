//! The compressed k6 plan against the real runtime, started embedded by `caxton-bench`
//! itself on a free loopback port (no `--target`).
#![cfg(feature = "embedded")]

mod common;

use std::time::{Duration, Instant};

use caxton_reports::model::RunReport;
use caxton_testkit::Rotel;

/// A run that must exit 0 within `limit`: its report and its output.
async fn passing_run(
    limit: Duration,
    run_id: &str,
    args: &[&str],
    out: &std::path::Path,
) -> (RunReport, String) {
    let o = common::bench_within(limit, run_id, args, out).await;
    let log = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{log}");
    let report = RunReport::read(&out.join(run_id).join("report.json")).unwrap();
    (report, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_k6_plan_against_the_embedded_runtime_passes_its_thresholds() {
    let out = common::out_dir("k6");
    // 1/100 of the Caxton Monitoring and Observability Guide's 16 minutes: 9.6 s, up to 200 users
    // sleeping 1 s per iteration.
    let (report, _) = passing_run(
        Duration::from_secs(90),
        "k6",
        &[
            "--plan",
            "k6",
            "--time-scale",
            "0.01",
            "--threshold",
            "http_req_duration{stage:hold-200}: p(99)<1500",
        ],
        &out,
    )
    .await;
    assert!(report.embedded_target);
    assert!(
        report.target.starts_with("http://127.0.0.1:"),
        "{}",
        report.target
    );
    let names: Vec<_> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["ramp-100", "hold-100", "ramp-200", "hold-200", "ramp-0"]
    );
    let thresholds: Vec<_> = report
        .thresholds
        .iter()
        .map(|t| t.expression.as_str())
        .collect();
    assert_eq!(
        thresholds,
        [
            "http_req_duration: p(95)<2000",
            "http_req_failed: rate<0.1",
            "http_req_duration{stage:hold-200}: p(99)<1500"
        ]
    );
    assert!(
        report.thresholds.iter().all(|t| t.ok && t.value.is_some()),
        "{:?}",
        report.thresholds
    );
    // The runtime answered the guide's request: every status 200, checks pass.
    assert_eq!(
        report.overall.status_codes.get("200"),
        Some(&report.overall.requests)
    );
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.fails == 0 && c.passes == report.overall.requests)
    );
    assert_eq!(report.max_users, 200);
    // hold-200 runs 200 users at ~1 iteration/s each for 3 s.
    let hold = &report.stages[3].stats;
    assert!(hold.throughput_rps > 100.0, "{hold:?}");
    // The flamegraph is the runtime's alone: the generator shares the process, not the
    // profile, and the report says how many samples it holds and lost.
    let profile = report.flamegraph.as_ref().expect("a flamegraph of the run");
    // The whole run by default, at the embedded runtime's 1000 Hz: a light load still
    // leaves a profile worth reading.
    assert_eq!(profile.stage, "run", "{profile:?}");
    assert_eq!(profile.frequency_hz, 1000, "{profile:?}");
    assert!(profile.samples > 0, "{profile:?}");
    assert!(
        matches!(profile.sampler.as_deref(), Some("perf_event" | "signal")),
        "the report names the sampler: {profile:?}"
    );
    assert!(report.validity.valid, "{:?}", report.validity);
    let generator = report.generator_cpu.as_ref().expect("the generator's CPU");
    assert!(generator.target_mean_cores.is_some(), "{generator:?}");
    let svg = std::fs::read_to_string(out.join("k6").join("flamegraph.svg")).unwrap();
    for foreign in ["goose::", "caxton_loadgen", "caxton_bench"] {
        assert!(
            !svg.contains(foreign),
            "the target's flamegraph shows {foreign}"
        );
    }
    assert!(
        svg.contains("caxton_runtime"),
        "no runtime frame in the flamegraph"
    );
    let build = report.target_build.as_ref().expect("the target's build");
    assert_eq!(build.version, env!("CARGO_PKG_VERSION"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_scenario_sends_fipa_requests_and_waits_for_replies() {
    let out = common::out_dir("msg");
    let (report, log) = passing_run(
        Duration::from_secs(60),
        "msg",
        &[
            "--stages",
            "1s:4,1s:4",
            "--think-time",
            "50ms",
            "--scenario",
            "create-agent:1,messaging:1",
            "--no-default-thresholds",
            "--threshold",
            "http_req_failed: rate==0",
        ],
        &out,
    )
    .await;
    let sent = &report.requests["send-message"];
    assert!(sent.requests > 0, "{log}");
    assert_eq!(sent.status_codes.get("200"), Some(&sent.requests));
    assert_eq!(report.plan.scenarios.len(), 2);
    std::fs::remove_dir_all(&out).unwrap();
}

/// `--runtime-config`'s `[observability]` reaches the embedded runtime: with tracing on at
/// rate 1.0, the spans of the message path arrive at a real OTLP receiver (rotel, gRPC),
/// under the configured service name, by the time caxton-bench has exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_observability_exports_the_embedded_runtimes_spans() {
    let dir = common::out_dir("embedded-otlp");
    std::fs::create_dir_all(&dir).unwrap();
    let rotel = Rotel::start(&["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
        .await
        .unwrap();
    let rotel_grpc = rotel.grpc();
    let config = dir.join("runtime.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npersist_agents = false\n\
             [observability]\nenable_tracing = true\notlp_endpoint = \"http://{rotel_grpc}\"\n\
             trace_sample_rate = 1.0\nservice_name = \"caxton-embedded\"\n"
        ),
    )
    .unwrap();
    let o = common::bench_as(
        "otlp",
        &[
            "--stages",
            "1s:4,1s:4",
            "--think-time",
            "50ms",
            "--scenario",
            "create-agent:1,messaging:1",
            "--no-default-thresholds",
            "--runtime-config",
            config.to_str().unwrap(),
        ],
        &dir,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let report = RunReport::read(&dir.join("otlp").join("report.json")).unwrap();
    assert!(report.embedded_target);
    let sent = report
        .requests
        .get("send-message")
        .map_or(0, |r| r.requests);
    assert!(sent > 0, "{}", common::text(&o));
    // The runtime flushed its spans before caxton-bench exited; rotel may still be
    // writing them out.
    let expected = [
        "caxton-embedded",
        "POST /api/messages",
        "message.route",
        "agent.execute",
        "agent.create",
    ];
    let started = Instant::now();
    loop {
        let seen = rotel.output();
        let missing: Vec<_> = expected.iter().filter(|e| !seen.contains(*e)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rotel never logged {missing:?}:\n{seen}\n{}",
            common::text(&o)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
