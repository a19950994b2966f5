//! `caxton.toml` parsing and validation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caxton_runtime::internals::fuzz_config_parse(data);
});
