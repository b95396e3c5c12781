//! Fuzz target: see `cortex_gateway::fuzzing::cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cortex_gateway::fuzzing::cursor(data);
});
