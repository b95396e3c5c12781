//! Fuzz target: see `cortex_gateway::fuzzing::accept_encoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cortex_gateway::fuzzing::accept_encoding(data);
});
