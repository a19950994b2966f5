//! How a `caxton-bench` run ends: a zero-length plan, SIGINT, a target whose answers carry
//! no agent id, and a Prometheus that never answers. The real binary against small axum
//! targets on loopback.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use caxton_reports::model::RunReport;
use common::{bench, out_dir, test_server, text};

/// A target that answers every POST with 200 and a body that is not an agent.
async fn garbage_server() -> String {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/agents", post(|| async { "<html>hello</html>" }))
        .route("/api/messages", post(|| async { "{}" }));
    format!("http://{}", caxton_testkit::serve(app).await.unwrap())
}

fn spawn_bench(args: &[&str], out: &Path) -> tokio::process::Child {
    common::bench_command(args, out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("caxton-bench is running").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn finish(child: tokio::process::Child, within: Duration) -> Output {
    tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("caxton-bench did not stop within {within:?}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_length_run_is_refused_at_once() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("zero");
    let from = Instant::now();
    let o = bench(
        &["--target", &format!("http://{addr}"), "--duration", "0s"],
        &out,
    )
    .await;
    assert!(
        from.elapsed() < Duration::from_secs(5),
        "{:?}",
        from.elapsed()
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--duration: the plan lasts 0ns"),
        "{stderr}"
    );
}

/// SIGINT at 40% of the plan (12 s of 30 s, scaled to 4 s of 10 s): the load stops, the
/// report and its page say where the run was cut short, and the exit status is k6's 105.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_writes_an_interrupted_report_and_exits_105() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("sigint");
    let child = spawn_bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--stages",
            "2s:4,8s:4",
            "--think-time",
            "20ms",
        ],
        &out,
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&child, "-INT");
    let signalled = Instant::now();
    let o = finish(child, Duration::from_secs(30)).await;
    let wound_down = signalled.elapsed();
    assert_eq!(o.status.code(), Some(105), "{}", text(&o));
    assert!(wound_down < Duration::from_secs(5), "{wound_down:?}");
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let i = report.interrupted.as_ref().expect("marked interrupted");
    assert_eq!(i.signal, "SIGINT");
    assert_eq!(i.stage, "hold-4");
    let sent_at = started.elapsed().as_secs_f64() - wound_down.as_secs_f64();
    assert!(
        i.at_seconds > 2.0 && i.at_seconds <= sent_at,
        "{i:?}, signal sent {sent_at:.1} s after the start"
    );
    assert!(report.overall.requests > 0);
    assert!(report.duration_seconds < 8.0, "{}", report.duration_seconds);
    let html = std::fs::read_to_string(out.join("t").join("report.html")).unwrap();
    assert!(
        html.contains("INTERRUPTED: interrupted by SIGINT"),
        "no banner"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
    let _ = std::fs::remove_dir_all(out);
}

/// SIGTERM (what Kubernetes sends a Job's pod) ends a run the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_run_like_sigint() {
    let addr = test_server(0, Duration::ZERO).await;
    let out = out_dir("sigterm");
    let child = spawn_bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--duration",
            "10s",
            "--concurrent-users",
            "2",
            "--think-time",
            "20ms",
        ],
        &out,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&child, "-TERM");
    let o = finish(child, Duration::from_secs(10)).await;
    assert_eq!(o.status.code(), Some(105), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let i = report.interrupted.expect("marked interrupted");
    assert_eq!((i.signal.as_str(), i.stage.as_str()), ("SIGTERM", "hold-2"));
    let _ = std::fs::remove_dir_all(out);
}

/// A second SIGINT does not wait for a stuck request to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigint_exits_at_once() {
    // The third request hangs for a minute, past the 30 s request timeout.
    let addr = test_server(3, Duration::from_secs(60)).await;
    let out = out_dir("sigint2");
    let child = spawn_bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--duration",
            "20s",
            "--concurrent-users",
            "1",
            "--think-time",
            "10ms",
            "--request-timeout",
            "30s",
        ],
        &out,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&child, "-INT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "-INT");
    let o = finish(child, Duration::from_secs(3)).await;
    assert_eq!(o.status.code(), Some(105), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("SIGINT again: exiting now"), "{stderr}");
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_without_an_agent_fails_the_id_check_and_the_messaging_step() {
    let target = garbage_server().await;
    let run = |scenario: &'static str, out: std::path::PathBuf| {
        let target = target.clone();
        async move {
            let o = bench(
                &[
                    "--target",
                    &target,
                    "--duration",
                    "1s",
                    "--concurrent-users",
                    "2",
                    "--think-time",
                    "20ms",
                    "--scenario",
                    scenario,
                    "--threshold",
                    "checks: rate>0.99",
                ],
                &out,
            )
            .await;
            (o, out)
        }
    };
    let (o, out) = run("create-agent", out_dir("garbage")).await;
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    let id = report
        .checks
        .iter()
        .find(|c| c.name == "body has an id")
        .expect("the id check is reported");
    assert_eq!(id.passes, 0);
    assert_eq!(id.fails, report.overall.requests);
    let status = report.checks.iter().find(|c| c.name == "status is 200");
    assert_eq!(status.map(|c| c.fails), Some(0));
    // The Caxton Monitoring and Observability Guide's script has no step after the create: a check
    // fails, not the request.
    assert_eq!(report.overall.failures, 0);
    let _ = std::fs::remove_dir_all(out);

    let (o, out) = run("messaging", out_dir("garbage-messaging")).await;
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    assert!(report.overall.requests > 0);
    assert_eq!(report.overall.failures, report.overall.requests);
    assert_eq!(
        report.overall.errors.get("no_agent_id"),
        Some(&report.overall.requests)
    );
    assert!(!report.requests.contains_key("send-message"));
    let _ = std::fs::remove_dir_all(out);
}

/// A receiver that accepts connections and never answers.
async fn hanging_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_prometheus_adds_at_most_the_push_bound() {
    let addr = test_server(0, Duration::ZERO).await;
    let prometheus = hanging_receiver().await;
    let out = out_dir("hanging-prom");
    let from = Instant::now();
    let o = bench(
        &[
            "--target",
            &format!("http://{addr}"),
            "--duration",
            "2s",
            "--concurrent-users",
            "2",
            "--think-time",
            "20ms",
            "--report-to-prometheus",
            &prometheus,
        ],
        &out,
    )
    .await;
    let took = from.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    // The run itself, then at most the bound on the final push (and process start-up).
    let allowed = Duration::from_secs_f64(report.duration_seconds)
        + caxton_loadgen::push::PUSH_BOUND
        + Duration::from_secs(3);
    assert!(took <= allowed, "{took:?} > {allowed:?}");
    let spool = out.join("t").join(caxton_loadgen::run_dir::SPOOL_FILE);
    assert!(spool.exists(), "the unsent samples are spooled");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("samples kept in {}", spool.display())),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(out);
}
