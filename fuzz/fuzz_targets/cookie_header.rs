//! Any bytes as `Cookie` headers (split on newlines into several headers).
#![no_main]

use cloakroom_fuzz::Harness;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers: Vec<HeaderValue> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    Harness::get().check(headers);
});
