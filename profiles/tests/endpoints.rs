//! The pprof endpoints, continuous push and capture client over real HTTP on loopback.
//!
//! pprof-rs has one sampler per process, so these tests run one at a time (`serial()`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use caxton_profiles::folded::decode_pprof;
use caxton_profiles::{ProfileType, Profiler, ProfilerStats, ProfilingSettings};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard, mpsc};

const HOT: &str = "caxton_test_hot_loop";

static SERIAL: Mutex<()> = Mutex::const_new(());

async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The function every profile taken under load must show.
#[inline(never)]
fn caxton_test_hot_loop(stop: &AtomicBool) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(31));
        }
    }
    x
}

/// Keeps one core busy in [`caxton_test_hot_loop`] until dropped.
struct HotLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl HotLoop {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hot-loop".into())
            .spawn(move || caxton_test_hot_loop(&flag))
            .expect("spawn hot loop thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HotLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(settings: ProfilingSettings) -> (Profiler, String) {
    let profiler = Profiler::new(settings).expect("valid settings");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = profiler.clone();
    tokio::spawn(async move { served.serve(listener, std::future::pending()).await });
    (profiler, base)
}

fn has_hot_function(profile: &pprof::protos::Profile) -> bool {
    profile.string_table.iter().any(|s| s.contains(HOT))
}

async fn wait_for_stats(profiler: &Profiler, what: &str, pred: impl FnMut(&ProfilerStats) -> bool) {
    let mut rx = profiler.watch_stats();
    let waited = tokio::time::timeout(Duration::from_secs(40), rx.wait_for(pred)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "timed out waiting for {what}; stats: {:?}",
        profiler.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_profile_under_load_is_valid_pprof_with_the_hot_function() {
    let _serial = serial().await;
    let (profiler, base) = serve(ProfilingSettings::default()).await;
    let hot = HotLoop::start();
    let response = reqwest::get(format!("{base}/debug/pprof/profile?seconds=2"))
        .await
        .unwrap();
    drop(hot);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let body = response.bytes().await.unwrap();
    assert!(body.starts_with(&[0x1f, 0x8b]), "body is not gzipped");

    let profile = decode_pprof(&body).unwrap();
    assert!(has_hot_function(&profile), "{HOT} not in the string table");
    assert_eq!(profile.period, 10_000_000, "100 Hz is a 10 ms period");
    assert!(profile.duration_nanos >= 2_000_000_000);

    let stats = profiler.stats();
    eprintln!("capture ratio {:?}: {stats:?}", stats.capture_ratio());
    assert_eq!(stats.captures, 1);
    // One busy thread for 2 s at 100 Hz: ~200 samples expected on an idle machine. Under a
    // parallel build the thread gets less CPU, and fewer samples are expected: the count
    // follows the CPU time, which is the point (a fresh-clone CI run saw 139).
    assert!(stats.samples_expected >= 50, "{stats:?}");
    assert!(stats.samples_taken > 0, "{stats:?}");
    assert_eq!(
        stats.samples_lost,
        stats.samples_expected.saturating_sub(stats.samples_taken)
    );

    // An independent decoder: Go's own pprof tool (ci/install-tools installs golang-go).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.pb.gz");
    std::fs::write(&file, &body).unwrap();
    let output = std::process::Command::new("go")
        .args(["tool", "pprof", "-top", "-symbolize=none"])
        .arg(&file)
        .env("HOME", dir.path())
        .env("GOCACHE", dir.path().join("gocache"))
        .output()
        .expect("`go` not found: install golang-go (ci/install-tools does)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "go tool pprof failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(HOT),
        "go tool pprof -top lacks {HOT}:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flamegraph_is_svg_with_frames() {
    let _serial = serial().await;
    let (_profiler, base) = serve(ProfilingSettings::default()).await;
    let hot = HotLoop::start();
    let response = reqwest::get(format!("{base}/debug/pprof/flamegraph?seconds=1"))
        .await
        .unwrap();
    drop(hot);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{}",
        &svg[..80.min(svg.len())]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.matches("<g").count() > 2, "no frames");
    assert!(svg.contains(HOT), "flamegraph lacks {HOT}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_captures_share_the_sampler_and_each_gets_its_own_window() {
    let _serial = serial().await;
    let (_profiler, base) = serve(ProfilingSettings::default()).await;
    let first_url = format!("{base}/debug/pprof/profile?seconds=3");
    let first = tokio::spawn(async move { reqwest::get(first_url).await.map(|r| r.status()) });
    while !caxton_profiles::capture_in_progress() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = std::time::Instant::now();
    let second = reqwest::get(format!("{base}/debug/pprof/flamegraph?seconds=1"))
        .await
        .unwrap();
    // Its own one-second window (plus at most the segment under way), not the first's three.
    assert_eq!(second.status(), 200);
    assert!(
        asked.elapsed() < Duration::from_millis(2_900),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        !first.is_finished(),
        "the first capture ended with the second"
    );
    assert_eq!(first.await.unwrap().unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_at_another_frequency_waits_for_none_and_gets_409() {
    let _serial = serial().await;
    let first = tokio::spawn(caxton_profiles::capture_cpu(Duration::from_secs(2), 100));
    while !caxton_profiles::capture_in_progress() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = caxton_profiles::capture_cpu(Duration::from_secs(1), 250)
        .await
        .unwrap_err();
    let fixed = caxton_profiles::Rate::fixed;
    assert!(
        matches!(
            err,
            caxton_profiles::CaptureError::Busy { running, asked }
                if running == fixed(100) && asked == fixed(250)
        ),
        "{err}"
    );
    assert!(err.to_string().contains("running at 100 Hz"), "{err}");
    assert!(first.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_seconds_is_400_with_the_value() {
    let _serial = serial().await;
    let (profiler, base) = serve(ProfilingSettings::default()).await;
    for (path, bad) in [
        ("profile", "0"),
        ("profile", "301"),
        ("flamegraph", "abc"),
        ("profile", "2.5"),
    ] {
        let response = reqwest::get(format!("{base}/debug/pprof/{path}?seconds={bad}"))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "seconds={bad}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(
            error["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("`seconds={bad}`")),
            "{error}"
        );
    }
    assert_eq!(
        profiler.stats().captures,
        0,
        "a rejected request must not sample"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_gives_404_with_the_reason() {
    let _serial = serial().await;
    let (_, cpu_only) = serve(ProfilingSettings::default()).await;
    let response = reqwest::get(format!("{cpu_only}/debug/pprof/heap"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"], "profile type not enabled");
    assert!(
        error["detail"].as_str().unwrap().contains("inuse_space"),
        "{error}"
    );

    let (_, heap_enabled) = serve(ProfilingSettings {
        profile_types: vec![ProfileType::Cpu, ProfileType::InuseSpace],
        ..Default::default()
    })
    .await;
    let response = reqwest::get(format!("{heap_enabled}/debug/pprof/heap"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"], "heap profiling not available");
    assert!(
        error["detail"].as_str().unwrap().contains("jemalloc"),
        "{error}"
    );

    // And a CPU-less configuration refuses CPU captures the same way.
    let (_, no_cpu) = serve(ProfilingSettings {
        profile_types: vec![ProfileType::AllocSpace],
        ..Default::default()
    })
    .await;
    let response = reqwest::get(format!("{no_cpu}/debug/pprof/profile?seconds=1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

type Ingested = (HashMap<String, String>, Option<String>, Bytes);

/// Stand-in for Pyroscope's `POST /ingest`: no Pyroscope server is installable here, so this
/// receiver records the real request (query, content type, pprof body) for the test to decode.
async fn pyroscope_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Ingested>) {
    async fn ingest(
        State(tx): State<mpsc::UnboundedSender<Ingested>>,
        Query(query): Query<HashMap<String, String>>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = tx.send((query, content_type, body));
        "ok"
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route("/ingest", post(ingest)).with_state(tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_pushes_pprof_to_pyroscope_ingest() {
    let _serial = serial().await;
    let (addr, mut ingested) = pyroscope_receiver().await;
    let profiler = Profiler::new(ProfilingSettings {
        endpoint: Some(format!("http://{addr}")),
        application_name: "caxton-test".into(),
        labels: BTreeMap::from([("env".to_owned(), "ci".to_owned())]),
        push_interval: Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap();
    let hot = HotLoop::start();
    let continuous = profiler.start_continuous().unwrap();
    let received = tokio::time::timeout(Duration::from_secs(30), ingested.recv()).await;
    drop(hot);
    let (query, content_type, body) = received
        .expect("no push within 30 s")
        .expect("receiver open");

    assert_eq!(query["name"], "caxton-test.cpu{env=ci}");
    assert_eq!(query["format"], "pprof");
    assert_eq!(query["sampleRate"], "100");
    assert_eq!(query["spyName"], "caxton");
    let from: u64 = query["from"].parse().unwrap();
    let until: u64 = query["until"].parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        from < until && until <= now + 1 && now - from < 60,
        "from={from} until={until} now={now}"
    );
    assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
    let profile = decode_pprof(&body).unwrap();
    assert!(!profile.sample.is_empty(), "pushed profile has no samples");
    assert!(has_hot_function(&profile), "pushed profile lacks {HOT}");

    wait_for_stats(&profiler, "profiles_pushed >= 1", |s| {
        s.profiles_pushed >= 1
    })
    .await;
    continuous.shutdown().await;
    assert_eq!(profiler.stats().profiles_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyroscope_down_drops_and_counts_while_serving_on() {
    let _serial = serial().await;
    // A port that was just free: connections to it are refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (profiler, base) = serve(ProfilingSettings {
        endpoint: Some(format!("http://{closed}")),
        push_interval: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let continuous = profiler.start_continuous().unwrap();
    wait_for_stats(&profiler, "profiles_dropped >= 1", |s| {
        s.profiles_dropped >= 1
    })
    .await;

    // The endpoints still answer, and an on-demand capture gets the sampler between windows.
    let response = reqwest::get(format!("{base}/debug/pprof/profile?seconds=1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    decode_pprof(&response.bytes().await.unwrap()).unwrap();

    continuous.shutdown().await;
    let stats = profiler.stats();
    assert_eq!(stats.profiles_pushed, 0);
    assert!(stats.profiles_dropped >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_saves_profile_and_flamegraph() {
    let _serial = serial().await;
    let (_profiler, base) = serve(ProfilingSettings::default()).await;
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("profiles/out");
    let hot = HotLoop::start();
    let collected = caxton_profiles::collect(&base, 1, &out_dir).await.unwrap();
    drop(hot);
    assert!(collected.samples > 0);
    let name = collected
        .pprof_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.ends_with(".pb.gz"), "{name}");
    assert_eq!(
        collected.flamegraph_path,
        out_dir.join(name.replace(".pb.gz", ".svg"))
    );
    let profile = decode_pprof(&std::fs::read(&collected.pprof_path).unwrap()).unwrap();
    assert!(has_hot_function(&profile));
    let svg = std::fs::read_to_string(&collected.flamegraph_path).unwrap();
    assert!(svg.contains("<svg") && svg.contains(HOT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_cli_writes_files_and_reports_errors_with_the_url() {
    let _serial = serial().await;
    let (_profiler, base) = serve(ProfilingSettings::default()).await;
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_caxton-profiles");
    let run = |target: String| {
        let out = out.path().to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args(["collect", "--target", &target, "--seconds", "1", "--out"])
                .arg(out)
                .output()
                .unwrap()
        })
    };
    let ok = run(base).await.unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed = String::from_utf8_lossy(&ok.stdout).into_owned();
    let paths: Vec<&str> = printed.lines().collect();
    assert_eq!(paths.len(), 2, "{printed}");
    assert!(paths[0].ends_with(".pb.gz") && paths[1].ends_with(".svg"));
    for path in paths {
        assert!(std::fs::metadata(path).unwrap().len() > 0, "{path} empty");
    }

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let failed = run(format!("http://{closed}")).await.unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!("http://{closed}/debug/pprof/profile?seconds=1")),
        "{stderr}"
    );
}
