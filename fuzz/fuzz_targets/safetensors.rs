#![no_main]

#[path = "../harness.rs"]
mod harness;

// The same loader as every weights file; the corpus differs (tests/fuzz/safetensors).
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::weights(data));
