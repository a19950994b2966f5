//! Replays the cargo-fuzz corpora (fuzz/corpus/<target>) on stable: every file goes through
//! the same function its fuzz target calls, so a crash the fuzzer found and kept is a test
//! failure in CI, without a nightly build.

use std::path::PathBuf;

use caxton_runtime::internals::{
    abi_probe, fuzz_config_parse, fuzz_create_agent_body, fuzz_fipa_decode,
};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Feeds every file of `target`'s corpus to `f`.
fn replay(target: &str, mut f: impl FnMut(&PathBuf, &[u8])) {
    for (path, data) in corpus(target) {
        f(&path, &data);
    }
}

#[test]
fn fipa_decode_corpus() {
    replay("fipa_decode", |_, data| fuzz_fipa_decode(data));
}

#[test]
fn create_agent_body_corpus() {
    replay("create_agent_body", |_, data| fuzz_create_agent_body(data));
}

#[test]
fn config_parse_corpus() {
    replay("config_parse", |_, data| fuzz_config_parse(data));
}

#[test]
fn wasm_abi_corpus() {
    let engine = abi_probe::engine().unwrap();
    replay("wasm_abi", |path, data| {
        // The execution may fail (that is what the probe provokes); compiling must not.
        let _execution =
            abi_probe::run(&engine, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    });
}
