//! The agent ABI's host side driven by arbitrary guest memory and pointers, for the
//! `wasm_abi` cargo-fuzz target and its corpus replay test (the same function for both).
//!
//! An input is turned into a module whose memory starts with the input's bytes, whose
//! `alloc` returns a pointer taken from the input (where the host writes the message), and
//! whose `handle_message` makes host calls (`send_message`, `console_log`) with pointers and
//! lengths taken from the input, then returns a status from it. Whatever the input, the
//! host must answer with a status or an `ExecError`, never a panic or a read outside the
//! guest's memory.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::AgentsConfig;
use crate::fipa::{AclMessage, Performative};
use crate::wasm::{ExecError, Execution, ModuleError, WasmEngine};

/// Host calls one probe makes at most.
const MAX_CALLS: usize = 8;
/// Guest memory bytes an input may fill (the first page).
const MAX_MEMORY: usize = 64 * 1024;

/// An engine sized for probing: few instance slots, the documented limits otherwise.
pub fn engine() -> Result<WasmEngine, ModuleError> {
    WasmEngine::new(&AgentsConfig {
        max_instances: 4,
        ..AgentsConfig::default()
    })
}

fn word(data: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    for (i, v) in b.iter_mut().enumerate() {
        *v = data.get(at + i).copied().unwrap_or(0);
    }
    i32::from_le_bytes(b)
}

/// The WAT of the probe module for `data`: a header of words (alloc pointer, status, and
/// up to [`MAX_CALLS`] (call, pointer, length) triples), the whole input as memory.
pub fn module_wat(data: &[u8]) -> String {
    let calls = usize::from(data.first().copied().unwrap_or(0)) % (MAX_CALLS + 1);
    let mut body = String::new();
    for i in 0..calls {
        let at = 9 + i * 9;
        let (ptr, len) = (word(data, at + 1), word(data, at + 5));
        let _ = match data.get(at).copied().unwrap_or(0) % 2 {
            0 => write!(
                body,
                "(drop (call $send (i32.const {ptr}) (i32.const {len})))"
            ),
            _ => write!(body, "(call $log (i32.const {ptr}) (i32.const {len}))"),
        };
    }
    let mut memory = String::new();
    for b in &data[..data.len().min(MAX_MEMORY)] {
        let _ = write!(memory, "\\{b:02x}");
    }
    format!(
        r#"(module
  (import "caxton" "send_message" (func $send (param i32 i32) (result i32)))
  (import "caxton" "console_log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{memory}")
  (func (export "alloc") (param i32) (result i32) (i32.const {alloc}))
  (func (export "handle_message") (param i32 i32) (result i32) {body} (i32.const {status})))"#,
        alloc = word(data, 1),
        status = word(data, 5) % 4,
    )
}

/// Compiles the probe for `data` and delivers one message to it.
pub fn run(engine: &WasmEngine, data: &[u8]) -> Result<Result<Execution, ExecError>, ModuleError> {
    let ty = engine.compile("abi-probe", module_wat(data).as_bytes(), false)?;
    let mut msg = AclMessage::new(Performative::Request);
    msg.sender = "fuzz".into();
    msg.content = serde_json::json!({"probe": data.len()});
    let bytes = serde_json::to_vec(&msg).unwrap_or_default();
    let id: Arc<str> = Arc::from("abi-probe");
    Ok(engine.execute(&ty, &id, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_pointers_are_errors_not_panics() {
        let engine = engine().unwrap();
        // alloc far outside memory: the host cannot write the message there.
        let mut data = vec![0u8; 32];
        data[1..5].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(run(&engine, &data).unwrap().is_err());
        // A send and a log with a negative pointer and a huge length; alloc at 1024.
        let mut data = vec![2u8; 32];
        data[1..5].copy_from_slice(&1024i32.to_le_bytes());
        data[5..9].copy_from_slice(&0i32.to_le_bytes());
        data[9] = 0;
        data[10..14].copy_from_slice(&(-5i32).to_le_bytes());
        data[14..18].copy_from_slice(&i32::MAX.to_le_bytes());
        data[18] = 1;
        data[19..23].copy_from_slice(&60_000i32.to_le_bytes());
        data[23..27].copy_from_slice(&10_000i32.to_le_bytes());
        let out = run(&engine, &data).unwrap().unwrap();
        assert!(out.outgoing.is_empty());
    }
}
