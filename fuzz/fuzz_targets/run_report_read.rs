//! `RunReport::read`'s parse of a report file's bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caxton_reports::model::RunReport::fuzz_read(data);
});
