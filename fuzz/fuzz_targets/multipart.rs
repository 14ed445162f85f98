#![no_main]

#[path = "../harness_serve.rs"]
mod harness_serve;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness_serve::multipart(data));
