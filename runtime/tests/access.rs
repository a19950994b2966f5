//! `[server] api_token` on the real `caxton` binary: the API answers 401 without the token
//! and serves with it, `/health` and `/ready` stay open, and the token shows neither in the
//! logs nor in `caxton check-config`.

mod binary;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use binary::{Serving, free_port};

const TOKEN: &str = "tok-5f1c9e0a7b3d42e8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (api, metrics) = (free_port(), free_port());
    let log = dir.path().join("caxton.log");
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("caxton.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\napi_address = \"127.0.0.1:{api}\"\nmetrics_address = \"127.0.0.1:{metrics}\"\n\
             data_dir = \"{data}\"\napi_token_file = \"{token}\"\n\n\
             [observability.logging]\nlevel = \"trace\"\nformat = \"json\"\noutput = \"{log}\"\n\
             debug_sample_rate = 1.0\n",
            data = dir.path().display(),
            token = token_file.display(),
            log = log.display(),
        ),
    )
    .unwrap();
    let serving = Serving::start(&config, api, &[], Duration::from_secs(40)).await;
    let client = reqwest::Client::new();
    let base = &serving.api;

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
    let r = client
        .post(format!("{base}/api/agents"))
        .header("authorization", &bearer)
        .json(&json!({"agent_type": "test-agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .post(format!("{base}/api/messages?wait=true"))
        .header("authorization", &bearer)
        .json(&json!({"performative": "REQUEST", "receiver": id, "content": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for open in ["/health", "/ready"] {
        let r = client.get(format!("{base}{open}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
    let r = client
        .get(format!("http://127.0.0.1:{metrics}/metrics"))
        .send()
        .await
        .unwrap();
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
