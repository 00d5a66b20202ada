//! Any string as a session id: accepted only in the exact shape of a generated id, and never
//! shown in logs.
#![no_main]

use cloakroom::SessionId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    if let Some(id) = SessionId::parse(value) {
        assert_eq!(id.as_str(), value);
        assert_eq!(value.len(), 32);
        assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(!format!("{id:?}").contains(value));
        assert!(!id.to_string().contains(value));
    }
});
