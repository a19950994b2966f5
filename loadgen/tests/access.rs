//! caxton-bench against a runtime with `[server] api_token`: with `--header` or
//! `--token-file` the run passes the Caxton Monitoring and Observability Guide's thresholds;
//! without them every request is a 401 and the thresholds are breached. The token stays out of the
//! report.

mod common;

use caxton_reports::model::RunReport;
use caxton_runtime::config::Config;
use caxton_runtime::config::Secret;
use common::{bench, out_dir, text};

const TOKEN: &str = "bench-token-8c2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protected_target_passes_with_the_header_and_fails_without() {
    let mut config = Config::for_tests();
    config.server.api_token = Some(Secret::new(TOKEN));
    let server = caxton_runtime::start(config).await.unwrap();
    let target = format!("http://{}", server.api_addr());
    let plan = [
        "--target",
        &target,
        "--stages",
        "1s:4,1s:4",
        "--think-time",
        "50ms",
        "--scenario",
        "create-agent,messaging",
    ];
    let bearer = format!("Authorization: Bearer {TOKEN}");

    let out = out_dir("access-header");
    let o = bench(&[&plan[..], &["--header", bearer.as_str()]].concat(), &out).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    assert!(report.overall.requests > 0);
    assert_eq!(report.overall.failures, 0, "{:?}", report.overall.errors);
    assert!(report.requests.contains_key("send-message"));
    let recorded = serde_json::to_string(&report).unwrap();
    assert!(!recorded.contains(TOKEN), "the token reached the report");
    assert!(
        report
            .command_line
            .iter()
            .any(|a| a == "Authorization: <redacted>")
    );

    let out = out_dir("access-token-file");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let o = bench(
        &[&plan[..], &["--token-file", file.to_str().unwrap()]].concat(),
        &out,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let out = out_dir("access-none");
    let o = bench(&plan, &out).await;
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    let report = RunReport::read(&out.join("t").join("report.json")).unwrap();
    assert_eq!(
        report.overall.status_codes.get("401"),
        Some(&report.overall.requests)
    );
    server.shutdown().await;
}
