//! Profiles reach into the agents' compiled WebAssembly: a custom agent whose named function
//! `$burn_in_agent` burns CPU shows under its own name, below an `agent:<type>` frame, in a
//! `/debug/pprof/profile` taken while loopback clients keep it busy; and the stack goes on
//! from there into the runtime's Rust frames (the frame-pointer walk crosses JIT code).
//! Both samplers: perf_event (unless `CAXTON_ALLOW_NO_PERF=1` says it is refused here) and
//! signal.

mod support;

use caxton_profiles::Sampler;
use caxton_profiles::folded::{decode_pprof, folded_stacks};
use serde_json::json;
use support::Harness;

const AGENT_TYPE: &str = "burner";

/// Burns CPU in `$burn_in_agent` (called from `handle_message`, calling `$mix_step` in its
/// loop), then answers INFORM so that `?wait=true` clients go on at once. The call to
/// `$mix_step` keeps `burn_in_agent` in the signal sampler's stacks too: pprof-rs's
/// frame-pointer walk starts at the interrupted function's caller, so it never sees a leaf.
const BURNER: &str = r#"(module
  (import "caxton" "send_message" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"performative\":\"INFORM\",\"content\":{\"burnt\":true}}")
  (func $alloc (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func $mix_step (param $h i32) (result i32)
    (i32.mul (i32.xor (local.get $h) (i32.shr_u (local.get $h) (i32.const 13)))
             (i32.const 0x01000193)))
  (func $burn_in_agent (param $n i32) (result i32)
    (local $h i32)
    (local.set $h (i32.const 0x811c9dc5))
    (loop $mix
      (local.set $h (call $mix_step (local.get $h)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $mix (i32.gt_s (local.get $n) (i32.const 0))))
    (local.get $h))
  (func $handle_message (export "handle_message") (param i32 i32) (result i32)
    (drop (call $burn_in_agent (i32.const 100000)))
    (call $send (i32.const 0) (i32.const 50))))
"#;

async fn start(sampler: Sampler) -> Harness {
    Harness::start(|cfg| {
        cfg.profiling.enabled = true;
        cfg.profiling.server_address = "127.0.0.1:0".parse().unwrap();
        cfg.profiling.sampler = sampler;
    })
    .await
}

/// The folded stacks of a `seconds` capture while two clients keep the burner busy; `Err`
/// holds the refusal.
async fn stacks_under_load(h: &Harness, seconds: u64) -> Result<(String, Vec<String>), String> {
    let module = caxton_testkit::api::module_b64(BURNER).expect("valid WAT");
    let (status, body) = h
        .create(json!({ "agent_type": AGENT_TYPE, "wasm_module": module }))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("agent id").to_owned();
    // The agent answers: a failing agent would make an empty profile look like a bug here.
    let (status, reply) = h.ask(&id, "REQUEST").await;
    assert_eq!(status, 200, "{reply}");
    let load: Vec<_> = (0..2)
        .map(|_| support::keep_busy(&h.http, &h.base, &id, 50_000))
        .collect();
    let resp = h.profile_during(seconds, load).await;
    let status = resp.status();
    let sampler = resp
        .headers()
        .get("x-pprof-sampler")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.bytes().await.unwrap();
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let profile = decode_pprof(&body).expect("valid gzipped pprof");
    Ok((sampler, folded_stacks(&profile).expect("stacks")))
}

/// Some stack runs from the runtime's Rust frames through `agent:burner` to `burn_in_agent`,
/// in that order (root first).
fn assert_agent_frames(sampler: &str, stacks: &[String]) {
    let agent = format!("agent:{AGENT_TYPE}");
    let burning: Vec<&String> = stacks
        .iter()
        .filter(|s| s.contains("burn_in_agent"))
        .collect();
    assert!(
        !burning.is_empty(),
        "{sampler}: no stack names burn_in_agent; the heaviest: {:?}",
        heaviest(stacks)
    );
    let whole = burning.iter().find(|s| {
        let frames: Vec<&str> = s
            .rsplit_once(' ')
            .map_or(s.as_str(), |(f, _)| f)
            .split(';')
            .collect();
        let at = |name: &str| frames.iter().position(|f| f.contains(name));
        match (at("caxton_runtime"), at(&agent), at("burn_in_agent")) {
            (Some(rust), Some(agent), Some(burn)) => rust < agent && agent < burn,
            _ => false,
        }
    });
    assert!(
        whole.is_some(),
        "{sampler}: no stack goes runtime -> {agent} -> burn_in_agent: {burning:?}"
    );
}

fn heaviest(stacks: &[String]) -> Vec<&String> {
    let mut by_weight: Vec<&String> = stacks.iter().collect();
    by_weight.sort_by_key(|s| {
        std::cmp::Reverse(
            s.rsplit_once(' ')
                .and_then(|(_, n)| n.parse::<u64>().ok())
                .unwrap_or(0),
        )
    });
    by_weight.into_iter().take(5).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_functions_are_named_under_their_agent_type() {
    let srv = start(Sampler::PerfEvent).await;
    match stacks_under_load(&srv, 2).await {
        Ok((sampler, stacks)) => {
            assert_eq!(sampler, "perf_event");
            assert_agent_frames(&sampler, &stacks);
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
    let (sampler, stacks) = stacks_under_load(&srv, 2).await.expect("signal capture");
    assert_eq!(sampler, "signal");
    assert_agent_frames(&sampler, &stacks);
    srv.server.shutdown().await;
}
