//! Any string as a cookie store's sealed session: it opens only if it was sealed with our key
//! for this cookie name, and never panics.
#![no_main]

use std::sync::OnceLock;

use cloakroom::SessionCookie;
use cloakroom::store::SessionStore;
use cloakroom_cookie::CookieStore;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static CookieStore {
    static STORE: OnceLock<CookieStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let cookie = SessionCookie::new("__session").secret([5u8; 32]);
        CookieStore::new(&cookie).unwrap_or_else(|error| panic!("{error}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let store = store();
    if let Some(id) = CookieStore::IDS.parse(value) {
        // The store's futures complete at once; poll them without a runtime.
        let loaded = futures_executor_lite(store.load(&id));
        assert!(matches!(loaded, Ok(None)), "a fuzzed payload opened: {value:?}");
    }
});

/// Drives a future that never waits.
fn futures_executor_lite<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the cookie store waited"),
    }
}
