//! On-demand captures beside continuous push: with a Pyroscope `endpoint` configured (the
//! guide's `[profiling]` table), `/debug/pprof/flamegraph?seconds=2` under load answers
//! with its own window in about two seconds, with frames, while pushes keep going. One test
//! per binary: pprof-rs has one sampler per process.
//!
//! Pyroscope does not install here, so the ingest side is a loopback server that takes
//! what Pyroscope's `/ingest` takes (a pprof body, 200) and counts it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_flamegraph_in_continuous_mode_takes_its_own_window() {
    let pushes = Arc::new(AtomicU64::new(0));
    let counted = pushes.clone();
    let ingest = Router::new().route(
        "/ingest",
        post(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                if !body.is_empty() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                "ok"
            }
        }),
    );
    let pyroscope = caxton_testkit::serve(ingest).await.unwrap();

    let h = support::Harness::start(|c| {
        c.profiling.enabled = true;
        c.profiling.server_address = "127.0.0.1:0".parse().unwrap();
        c.profiling.endpoint = Some(format!("http://{pyroscope}"));
    })
    .await;
    let pprof = h.server.pprof_addr().expect("pprof server started");
    let http = h.http.clone();
    let id = h.agent("cpu-heavy").await;
    let load = support::keep_busy(&h.http, &h.base, &id, 20_000);
    // Continuous mode is sampling before the capture is asked for.
    while !caxton_profiles::capture_in_progress() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        let asked = Instant::now();
        let resp = http
            .get(format!("http://{pprof}/debug/pprof/flamegraph?seconds=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let samples: u64 = resp.headers()[caxton_profiles::endpoints::SAMPLES_HEADER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let svg = resp.text().await.unwrap();
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(4), "seconds=2 took {took:?}");
        assert!(samples > 0, "no samples under load");
        assert!(
            svg.contains("caxton_runtime"),
            "no runtime frame: {}",
            &svg[..200.min(svg.len())]
        );
    }
    load.abort();
    // Pushes went on beside the captures.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pushes.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pushes.load(Ordering::SeqCst) > 0,
        "no profile reached the ingest endpoint"
    );
    h.server.shutdown().await;
}
