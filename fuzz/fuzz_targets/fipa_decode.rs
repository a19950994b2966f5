//! FIPA-ACL message decode, as the API and the `send_message` host call do it; a decoded
//! message must encode again.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caxton_runtime::internals::fuzz_fipa_decode(data);
});
