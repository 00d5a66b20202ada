//! Any string as the session cookie's value: alone, after the victim's id (a forged
//! signature), or as a mutation of the victim's whole value.
#![no_main]

use cloakroom_fuzz::{Harness, NAME};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(fuzzed) = std::str::from_utf8(rest) else { return };
    let harness = Harness::get();
    let victim_id = harness.victim.split('.').next().unwrap_or_default();
    let value = match mode % 3 {
        0 => fuzzed.to_owned(),
        1 => format!("{victim_id}.{fuzzed}"),
        _ => {
            // Overwrite part of the victim's value with the fuzzed bytes.
            let mut value = harness.victim.clone().into_bytes();
            for (i, b) in fuzzed.bytes().enumerate() {
                let at = (usize::from(mode) + i) % value.len().max(1);
                if let Some(slot) = value.get_mut(at) {
                    *slot = b;
                }
            }
            String::from_utf8_lossy(&value).into_owned()
        }
    };
    if let Ok(header) = HeaderValue::from_str(&format!("{NAME}={value}")) {
        harness.check(vec![header]);
    }
});
