//! The `POST /api/agents` body: the first byte picks JSON or form, the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caxton_runtime::internals::fuzz_create_agent_body(data);
});
