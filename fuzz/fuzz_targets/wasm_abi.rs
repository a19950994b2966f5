//! The agent ABI's host calls with arbitrary guest memory and pointers (abi_probe.rs).
#![no_main]
use std::sync::OnceLock;

use caxton_runtime::internals::abi_probe;
use caxton_runtime::internals::WasmEngine;
use libfuzzer_sys::fuzz_target;

static ENGINE: OnceLock<WasmEngine> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let engine = ENGINE.get_or_init(|| abi_probe::engine().expect("engine"));
    let _ = abi_probe::run(engine, data);
});
