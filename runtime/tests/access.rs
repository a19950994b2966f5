//! `[server] api_token` on the real `caxton` binary: the API answers 401 without the token
//! and serves with it, `/health` and `/ready` stay open, and the token shows neither in the
//! logs nor in `caxton check-config`.

use std::process::Command;

use caxton_testkit::{Caxton, CaxtonConfig};
use serde_json::{Value, json};

const TOKEN: &str = "tok-5f1c9e0a7b3d42e8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("caxton.log");
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = CaxtonConfig::write(
        dir.path(),
        &format!(
            "api_token_file = \"{token}\"\n\n\
             [observability.logging]\nlevel = \"trace\"\nformat = \"json\"\noutput = \"{log}\"\n\
             debug_sample_rate = 1.0\n",
            token = token_file.display(),
            log = log.display(),
        ),
    )
    .unwrap();
    let serving = Caxton::start(env!("CARGO_BIN_EXE_caxton").as_ref(), &config)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let base = serving.base();

    for (method, path) in [
        ("POST", "/api/agents"),
        ("GET", "/api/agents"),
        ("GET", "/api/v1/agents"),
        ("POST", "/api/messages"),
        ("GET", "/ws"),
    ] {
        for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
            let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"caxton\"");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{body}");
        }
    }
    let bearer = format!("Bearer {TOKEN}");
    let api = serving.api().with_header("authorization", &bearer).unwrap();
    let id = api.create_type("test-agent").await.unwrap();
    let r = api
        .ask(&json!({"performative": "REQUEST", "receiver": id, "content": {}}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    for open in ["/health", "/ready"] {
        let r = client.get(format!("{base}{open}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
    let r = client.get(serving.metrics_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(serving);

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("caxton runtime serving"), "{logged}");
    assert!(!logged.contains(TOKEN), "the token was logged");

    // check-config prints the effective configuration, the token as <redacted>.
    let inline = dir.path().join("inline.toml");
    std::fs::write(&inline, format!("[server]\napi_token = \"{TOKEN}\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caxton"))
        .arg("check-config")
        .arg(&inline)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("api_token = \"<redacted>\""), "{printed}");
    assert!(!printed.contains(TOKEN), "{printed}");

    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        format!("[server]\napi_token = \"{TOKEN}\"\napi_token_file = \"/x\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caxton"))
        .arg("check-config")
        .arg(&both)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.api_token_file"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}
