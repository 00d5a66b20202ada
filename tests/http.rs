//! The layer end to end: a real HTTP server on a loopback port, a real HTTP client, and the
//! memory store. Each test names the behaviour a user relies on.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use cloakroom::{MemoryStore, Session, SessionError, StoreFailure, StoreTimedOut};
use cloakroom_tests::app::*;
use cloakroom_tests::{Counts, Delays, Instrumented, TestServer};
use http_body_util::Full;

#[tokio::test]
async fn a_session_survives_across_requests() {
    let (server, store) = memory_server().await;
    let browser = server.browser();
    for expected in 1..=3 {
        assert_eq!(browser.get("/count").await.body, expected.to_string());
    }
    assert_eq!(store.len(), 1);
    let other = server.browser();
    assert_eq!(
        other.get("/count").await.body,
        "1",
        "a second browser shares nothing"
    );
}

#[tokio::test]
async fn an_untouched_new_session_costs_no_store_call_and_no_cookie() {
    let store = Instrumented::new(MemoryStore::new());
    let server = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    for path in ["/noop", "/peek"] {
        let response = browser.get(path).await;
        assert!(
            response.set_cookies().is_empty(),
            "{path}: {:?}",
            response.set_cookies()
        );
        assert_eq!(response.header("cache-control"), None);
    }
    assert_eq!(store.calls.counts(), Counts::default());
}

#[tokio::test]
async fn save_uninitialized_stores_and_sends_new_sessions() {
    let store = MemoryStore::new();
    let server = serve(layer(cookie(), store.clone()).save_uninitialized(true)).await;
    let response = server.browser().get("/noop").await;
    assert!(response.set_cookie(NAME).is_some());
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_flash_message_shows_once_after_a_redirect() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    let response = browser.post_form("/flash", "").await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.header("location").as_deref(), Some("/show-flash"));
    assert_eq!(browser.get("/show-flash").await.body, "saved");
    assert_eq!(browser.get("/show-flash").await.body, "no notice");
}

#[tokio::test]
async fn regenerate_id_on_a_new_session_just_creates_it() {
    let (server, store) = memory_server().await;
    let browser = server.browser();
    browser.post_form("/login", "").await;
    assert_eq!(browser.get("/whoami").await.body, "ada");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn changing_a_destroyed_session_is_an_error() {
    let (server, _) = memory_server().await;
    let response = server.browser().post_form("/destroy-then-set", "").await;
    assert_eq!(
        response.body,
        "the session was destroyed in this request and cannot be changed"
    );
}

#[tokio::test]
async fn our_cookie_is_found_among_others_and_across_cookie_headers() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    browser.get("/count").await;
    let ours = browser.cookie(NAME).unwrap_or_default();
    for headers in [
        vec![format!("a=1; {NAME}={ours}; b=2")],
        vec!["a=1; b=2".to_owned(), format!("theme=dark; {NAME}={ours}")],
        vec![
            format!("{NAME}=forged.value; c=3"),
            format!("{NAME}={ours}"),
        ],
        vec![format!("{NAME}x=1;{NAME}={ours};;  ; =;x")],
    ] {
        let mut request = http::Request::builder().uri(format!("http://{}/peek", server.addr));
        for value in &headers {
            request = request.header(header::COOKIE, value);
        }
        let response = browser
            .raw(request.body(Full::new(Bytes::new())).unwrap_or_default())
            .await;
        assert_eq!(response.body, "1", "session not found in {headers:?}");
    }
}

#[tokio::test]
async fn the_handlers_own_set_cookie_and_cache_control_are_kept() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    let response = browser.get("/own-cookie").await;
    let set_cookies = response.set_cookies();
    assert!(
        set_cookies.contains(&"theme=dark; Path=/".to_owned()),
        "{set_cookies:?}"
    );
    assert!(response.set_cookie(NAME).is_some(), "{set_cookies:?}");
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("no-store")
    );

    let response = browser.get("/own-cache-control").await;
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("private, max-age=60")
    );

    // A handler's `public` or `s-maxage` must not let a CDN hand this session to others.
    let newcomer = server.browser();
    let response = newcomer.get("/public").await;
    assert!(response.set_cookie(NAME).is_some());
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("private, max-age=60")
    );
}

#[tokio::test]
async fn responses_that_read_the_session_vary_on_cookie() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    let response = browser.get("/peek").await;
    assert_eq!(response.header("vary").as_deref(), Some("Cookie"));
    let response = browser.get("/count").await;
    assert_eq!(response.header("vary").as_deref(), Some("Cookie"));
    assert_eq!(response.headers.get_all("vary").iter().count(), 1);
    assert_eq!(
        browser.get("/noop").await.header("vary"),
        None,
        "a response that neither read the session nor re-sent its cookie varies on Cookie"
    );
    assert_eq!(server.browser().get("/noop").await.header("vary"), None);
}

#[tokio::test]
async fn a_hundred_concurrent_writers_of_one_session_all_survive() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    browser.get("/count").await;
    let keys = write_concurrently(std::slice::from_ref(&browser), 100).await;
    let expected: Vec<String> = (0..100)
        .map(|i| format!("k{i:03}"))
        .chain(["visits".to_owned()])
        .collect();
    assert_eq!(keys, expected.join(","));
}

#[tokio::test]
async fn only_the_changed_keys_are_written_and_reads_write_nothing() {
    let store = Instrumented::new(MemoryStore::new());
    let server = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    browser.post_form("/set/a/1", "").await;
    browser.post_form("/set/b/2", "").await;
    let written = Counts {
        read: 1,
        create: 1,
        update: 1,
        ..Counts::default()
    };
    assert_eq!(store.calls.counts(), written);
    assert_eq!(
        *store
            .calls
            .last_update_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
        ["b"]
    );
    browser.get("/keys").await;
    browser.get("/noop").await;
    assert_eq!(
        store.calls.counts(),
        Counts { read: 3, ..written },
        "a read-only request wrote to the store"
    );
}

#[tokio::test]
async fn every_request_refreshes_the_idle_timeout_and_re_sends_max_age() {
    let store = MemoryStore::new();
    let server = serve(layer(cookie(), store).idle_timeout(Duration::from_secs(1))).await;
    let browser = server.browser();
    let created = browser.get("/count").await;
    assert_eq!(
        created.set_cookie(NAME).as_deref().and_then(max_age),
        Some(1)
    );
    // Read-only requests for twice the idle timeout keep the session alive.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        let response = browser.get("/peek").await;
        assert_eq!(
            response.body, "1",
            "the session expired although it was in use"
        );
        assert_eq!(
            response.set_cookie(NAME).as_deref().and_then(max_age),
            Some(1)
        );
    }
    // Idle for longer than the timeout: gone, even though the client still sends the cookie.
    let cookie = browser.cookie(NAME).unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    browser.set_cookie(NAME, &cookie);
    assert_eq!(browser.get("/peek").await.body, "none");
}

#[tokio::test]
async fn within_the_refresh_interval_requests_only_read_and_send_no_cookie() {
    within_the_refresh_interval(true).await;
}

#[tokio::test]
async fn within_the_refresh_interval_a_store_that_waits_only_reads_too() {
    within_the_refresh_interval(false).await;
}

/// `at_once`: the store answers `read_now` (as the memory store does) or always waits.
async fn within_the_refresh_interval(at_once: bool) {
    let store = Instrumented::new(MemoryStore::new());
    let store = if at_once {
        store
    } else {
        store.always_waiting()
    };
    let server = serve(
        layer(cookie(), store.clone())
            .idle_timeout(Duration::from_secs(60))
            .refresh_interval(Duration::from_millis(400)),
    )
    .await;
    let browser = server.browser();
    let created = browser.get("/count").await;
    assert_eq!(
        created.set_cookie(NAME).as_deref().and_then(max_age),
        Some(60)
    );
    for path in ["/peek", "/count", "/noop"] {
        let response = browser.get(path).await;
        assert!(
            response.set_cookies().is_empty(),
            "{path} re-sent a cookie issued just now: {:?}",
            response.set_cookies()
        );
        assert_eq!(response.header("cache-control"), None, "{path}");
    }
    let quiet = Counts {
        read: 3,
        create: 1,
        update: 1,
        ..Counts::default()
    };
    assert_eq!(store.calls.counts(), quiet, "only reads, and the one write");
    let touched = || {
        store
            .calls
            .last_update_touch
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert!(
        !touched(),
        "a write within the interval asked for a refresh"
    );

    // Older than the interval: the store's expiry is refreshed (by the load, or, from a store
    // that has the session at hand, by an update after the handler), the cookie comes back
    // with a fresh Max-Age and a new issue time, so the next request is quiet again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old_cookie = browser.cookie(NAME).unwrap_or_default();
    let response = browser.get("/peek").await;
    assert_eq!(response.body, "2");
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(60)
    );
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("no-store")
    );
    assert_ne!(browser.cookie(NAME), Some(old_cookie));
    let refreshed = if at_once {
        assert!(touched(), "the update after a due read did not refresh");
        Counts {
            read: quiet.read + 1,
            update: quiet.update + 1,
            ..quiet
        }
    } else {
        Counts { load: 1, ..quiet }
    };
    assert_eq!(store.calls.counts(), refreshed);
    assert!(browser.get("/peek").await.set_cookies().is_empty());
}

#[tokio::test]
async fn a_session_with_a_short_own_idle_timeout_is_refreshed_in_time() {
    // The layer's interval is 60 s, but a session that lives 1 s without requests must be
    // refreshed far more often: the layer finds out after loading it and refreshes then.
    let store = Instrumented::new(MemoryStore::new());
    let app = routes().route(
        "/short",
        get(|session: Session| async move {
            session.set_idle_timeout(Duration::from_secs(1))?;
            session.set("visits", 1u64)
        }),
    );
    let server = TestServer::start(app.layer(layer(cookie(), store.clone()))).await;
    let browser = server.browser();
    browser.get("/short").await;
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(450)).await;
        let response = browser.get("/peek").await;
        assert_eq!(response.body, "1", "expired while in use, round {round}");
        assert_eq!(
            response.set_cookie(NAME).as_deref().and_then(max_age),
            Some(1),
            "round {round}"
        );
        assert!(
            store
                .calls
                .last_update_touch
                .load(std::sync::atomic::Ordering::SeqCst),
            "the refresh was not asked of the store"
        );
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(browser.get("/peek").await.body, "none");
}

#[tokio::test]
async fn the_absolute_lifetime_ends_an_active_session() {
    let store = MemoryStore::new();
    let server = serve(
        layer(cookie(), store)
            .idle_timeout(Duration::from_secs(60))
            .lifetime(Duration::from_millis(1500)),
    )
    .await;
    let browser = server.browser();
    let created = browser.get("/count").await;
    assert_eq!(
        created.set_cookie(NAME).as_deref().and_then(max_age),
        Some(2),
        "Max-Age must follow the lifetime, rounded up"
    );
    let cookie = browser.cookie(NAME).unwrap_or_default();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(browser.get("/peek").await.body, "1");
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    browser.set_cookie(NAME, &cookie);
    assert_eq!(
        browser.get("/peek").await.body,
        "none",
        "an active session outlived its lifetime"
    );
}

#[tokio::test]
async fn remember_me_gives_one_session_its_own_idle_timeout() {
    let server = serve(layer(cookie(), MemoryStore::new()).refresh_interval(Duration::ZERO)).await;
    let sixty_days = 60 * 24 * 60 * 60;
    let browser = server.browser();
    let response = browser.post_form("/remember", "").await;
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(sixty_days)
    );
    let response = browser.get("/peek").await;
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(sixty_days),
        "the session's own timeout was not kept for later requests"
    );
    let response = server.browser().get("/count").await;
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(7 * 24 * 60 * 60)
    );
}

/// "Don't remember me": a browser-session cookie has no `Max-Age` on any response, and the
/// server's idle timeout still ends the session.
#[tokio::test]
async fn a_browser_session_cookie_has_no_max_age_and_still_expires_on_the_server() {
    let layer = layer(cookie().persistent(false), MemoryStore::new())
        .idle_timeout(Duration::from_secs(1))
        .refresh_interval(Duration::ZERO);
    let server = serve(layer).await;
    let browser = server.browser();
    for visit in ["1", "2"] {
        let response = browser.get("/count").await;
        assert_eq!(response.body, visit);
        let set_cookie = response.set_cookie(NAME).unwrap_or_default();
        assert!(
            set_cookie.starts_with(&format!("{NAME}=")) && !set_cookie.contains("Max-Age"),
            "{set_cookie}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        browser.get("/count").await.body,
        "1",
        "outlived its idle timeout"
    );
}

/// "Remember me" at login: one session's cookie outlives the browser, and keeps doing so on
/// later requests; unticked, it is a browser-session cookie; other sessions keep the layer's
/// default.
#[tokio::test]
async fn remember_me_at_login_chooses_whether_the_cookie_outlives_the_browser() {
    let week = Some(7 * 24 * 60 * 60);
    for default in [false, true] {
        let layer = layer(cookie().persistent(default), MemoryStore::new())
            .refresh_interval(Duration::ZERO);
        let server = serve(layer).await;
        let browser = server.browser();
        browser.get("/count").await;
        let max_age_of = |response: &cloakroom_tests::TestResponse| {
            response.set_cookie(NAME).as_deref().and_then(max_age)
        };
        let remembered = browser.post_form("/stay-signed-in/yes", "").await;
        assert_eq!(max_age_of(&remembered), week, "default {default}");
        assert_eq!(browser.get("/whoami").await.body, "ada");
        let later = browser.get("/count").await;
        assert_eq!(max_age_of(&later), week, "not kept (default {default})");
        let forgotten = browser.post_form("/stay-signed-in/no", "").await;
        assert!(forgotten.set_cookie(NAME).is_some(), "default {default}");
        assert_eq!(max_age_of(&forgotten), None, "default {default}");
        assert_eq!(max_age_of(&browser.get("/count").await), None);
        let other = server.browser().get("/count").await;
        assert_eq!(max_age_of(&other), default.then_some(7 * 24 * 60 * 60));
    }
}

/// A cookie nobody chose persistence for follows the layer's default, so tightening it to
/// browser-session cookies reaches existing cookies; a login does not inherit the previous
/// user's "remember me" on a shared computer.
#[tokio::test]
async fn the_default_reaches_cookies_nobody_chose_for_and_a_login_starts_from_it() {
    let store = MemoryStore::new();
    let before = serve(layer(cookie(), store.clone())).await;
    let after = serve(layer(cookie().persistent(false), store.clone())).await;
    let browser = before.browser();
    browser.get("/count").await;
    let user = after.browser();
    user.set_cookie(NAME, &browser.cookie(NAME).unwrap_or_default());
    let login = user.post_form("/login", "").await;
    let set_cookie = login.set_cookie(NAME).unwrap_or_default();
    assert!(
        set_cookie.starts_with(&format!("{NAME}=")) && !set_cookie.contains("Max-Age"),
        "{set_cookie}"
    );

    // Someone ticked "remember me"; the next person logs in on the same browser without.
    let shared = after.browser();
    shared.post_form("/stay-signed-in/yes", "").await;
    let next = shared.post_form("/login", "").await;
    let set_cookie = next.set_cookie(NAME).unwrap_or_default();
    assert!(!set_cookie.contains("Max-Age"), "{set_cookie}");
}

/// "Don't remember me" is never undone by a new id: on a layer whose default outlives the
/// browser, a session that chose a browser-session cookie keeps one across a later
/// `regenerate_id` (a sudo step, a password change, a second login on the same browser), so
/// a shared computer is not left signed in after it closes. Only "remember me" is left
/// behind at a new id.
#[tokio::test]
async fn dont_remember_me_survives_a_new_id() {
    let server = serve(layer(cookie(), MemoryStore::new())).await;
    let browser = server.browser();
    let forgotten = browser.post_form("/stay-signed-in/no", "").await;
    let set_cookie = forgotten.set_cookie(NAME).unwrap_or_default();
    assert!(!set_cookie.contains("Max-Age"), "{set_cookie}");
    let regenerated = browser.post_form("/login", "").await;
    let set_cookie = regenerated.set_cookie(NAME).unwrap_or_default();
    assert!(
        set_cookie.starts_with(&format!("{NAME}=")) && !set_cookie.contains("Max-Age"),
        "a new id made a browser-session cookie outlive the browser: {set_cookie}"
    );
    assert_eq!(browser.get("/whoami").await.body, "ada");
}

/// `Partitioned` (CHIPS) is sent when asked for, and refused without `Secure`.
#[tokio::test]
async fn a_partitioned_cookie_says_so_and_needs_secure() {
    let refused = cloakroom::SessionLayer::new(cookie().partitioned(true), MemoryStore::new());
    assert_eq!(
        refused.err(),
        Some(cloakroom::ConfigError::PartitionedWithoutSecure)
    );
    let cookie = cookie()
        .secure(true)
        .same_site(cloakroom::SameSite::None)
        .partitioned(true);
    let server = serve(layer(cookie, MemoryStore::new())).await;
    let set_cookie = server
        .browser()
        .get("/count")
        .await
        .set_cookie(NAME)
        .unwrap_or_default();
    assert!(
        set_cookie.contains("; Secure") && set_cookie.ends_with("; Partitioned"),
        "{set_cookie}"
    );
}

/// `LoadFailure::RunHandler`: while the store is down, a route that never touches the session
/// answers as usual; one that does gets the store-error response, through a method that can
/// fail or one that cannot (never "logged out"), with no cookie and nothing written; and all
/// is as before once the store is back. The default answers every route with the error.
#[tokio::test]
async fn with_run_handler_routes_that_do_not_use_the_session_work_while_the_store_is_down() {
    let store = Instrumented::new(MemoryStore::new());
    let run_handler = layer(cookie(), store.clone())
        .load_failure(cloakroom::LoadFailure::RunHandler)
        .on_store_error(|failure| {
            let page = format!("sessions are down ({} failed)", failure.operation());
            (StatusCode::SERVICE_UNAVAILABLE, page).into_response()
        });
    let server = TestServer::start(routes().layer(run_handler)).await;
    let default = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    browser.post_form("/login", "").await;
    browser.get("/count").await;
    let signed_in = browser.cookie(NAME).unwrap_or_default();
    let other = default.browser();
    other.set_cookie(NAME, &signed_in);

    store.set_down(true);
    let writes_before = store.calls.counts();
    let health = browser.get("/noop").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "nothing")
    );
    assert!(
        health.set_cookies().is_empty(),
        "{:?}",
        health.set_cookies()
    );
    for path in ["/count", "/whoami", "/signed-in"] {
        let response = browser.get(path).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            response.body.starts_with("sessions are down"),
            "{path}: {}",
            response.body
        );
        assert!(response.set_cookies().is_empty(), "{path} sent a cookie");
    }
    let logout = browser.post_form("/logout", "").await;
    assert_eq!(
        logout.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a logout must be retried"
    );
    assert_eq!(
        other.get("/noop").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the default answers every route with the error"
    );
    let calls = store.calls.counts();
    assert_eq!(
        (calls.create, calls.update, calls.delete),
        (
            writes_before.create,
            writes_before.update,
            writes_before.delete
        ),
        "a request whose session could not be loaded wrote to the store"
    );

    store.set_down(false);
    assert_eq!(
        browser.cookie(NAME).unwrap_or_default(),
        signed_in,
        "the cookie changed"
    );
    assert_eq!(browser.get("/whoami").await.body, "ada");
    assert_eq!(browser.get("/count").await.body, "2");
}

#[tokio::test]
async fn a_store_failure_is_a_503_and_recovers_without_losing_data() {
    let store = Instrumented::new(MemoryStore::new());
    let server = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    browser.get("/count").await;
    browser.get("/count").await;

    store.set_down(true);
    for path in ["/peek", "/count"] {
        let response = browser.get(path).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            response.header("retry-after").as_deref(),
            Some("1"),
            "{path}: a 503 says when to retry"
        );
        assert!(
            response.set_cookies().is_empty(),
            "{path} sent a cookie although the store failed"
        );
    }
    let fresh = server.browser();
    let response = fresh.get("/count").await;
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a failed create must not pass"
    );
    assert!(response.set_cookies().is_empty());

    store.set_down(false);
    assert_eq!(
        browser.get("/count").await.body,
        "3",
        "data was lost or overwritten while the store was down"
    );
}

/// A request to a hung store ends with a 503 after the layer's store timeout, whichever call
/// hangs, instead of holding the client (and the server's connection) for as long as the store;
/// the failure names the call that hung, a regenerate's delete included.
#[tokio::test]
async fn a_hung_store_is_given_up_on_after_the_store_timeout() {
    let store = Instrumented::new(MemoryStore::new()).always_waiting();
    let timeout = Duration::from_millis(300);
    let layer = layer(cookie(), store.clone())
        .store_timeout(timeout)
        .on_store_error(|failure: &StoreFailure<'_>| {
            let timed_out = failure.error().downcast_ref::<StoreTimedOut>();
            let told = timed_out.map(|t| (t.operation().to_string(), t.after()));
            let mut response = format!("{told:?}").into_response();
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        });
    let server = TestServer::start(routes().layer(layer)).await;
    let browser = server.browser();
    assert_eq!(browser.post_form("/login", "").await.body, "logged in");
    let logged_in = browser.cookie(NAME).unwrap_or_default();
    let hung = Duration::MAX;
    let reads = Delays {
        reads: hung,
        ..Delays::default()
    };
    let writes = Delays {
        writes: hung,
        ..Delays::default()
    };
    let deletes = Delays {
        deletes: hung,
        ..Delays::default()
    };
    for (delays, method, path, call) in [
        (reads, "GET", "/whoami", "read"),
        (writes, "GET", "/count", "update"),
        (writes, "POST", "/login", "create"),
        (deletes, "POST", "/login", "delete"),
        (deletes, "POST", "/logout", "delete"),
    ] {
        store.set_delay(delays);
        let request = async {
            if method == "POST" {
                browser.post_form(path, "").await
            } else {
                browser.get(path).await
            }
        };
        let Ok(response) = tokio::time::timeout(Duration::from_secs(10), request).await else {
            panic!("{method} {path}: the layer waited for a hung {call}");
        };
        assert_eq!(
            (response.status, response.body.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{:?}", Some((call, timeout))).as_str()
            ),
            "{method} {path}: a hung {call}"
        );
        assert!(response.set_cookies().is_empty(), "{method} {path}");
        store.set_delay(Delays::default());
        assert_eq!(
            browser.cookie(NAME).unwrap_or_default(),
            logged_in,
            "{method} {path}: a timed-out request changed the cookie"
        );
    }
    assert_eq!(browser.get("/whoami").await.body, "ada");

    // A logout slower than the timeout answers 503, and still happens: the old cookie names
    // no session once the delete has landed.
    store.set_delay(Delays {
        deletes: timeout * 2,
        ..Delays::default()
    });
    let response = browser.post_form("/logout", "").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    store.set_delay(Delays::default());
    tokio::time::sleep(timeout * 3).await;
    let replay = server.browser();
    replay.set_cookie(NAME, &logged_in);
    assert_eq!(
        replay.get("/whoami").await.body,
        "anonymous",
        "a logout that timed out was abandoned half-way"
    );
}

/// The default response to a store that does not answer: a 503 that says when to retry.
#[tokio::test]
async fn a_timed_out_store_call_is_a_503_with_retry_after() {
    let store = Instrumented::new(MemoryStore::new()).always_waiting();
    let server =
        serve(layer(cookie(), store.clone()).store_timeout(Duration::from_millis(100))).await;
    let browser = server.browser();
    browser.get("/count").await;
    store.set_delay(Delays {
        reads: Duration::MAX,
        ..Delays::default()
    });
    let response = browser.get("/peek").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.header("retry-after").as_deref(), Some("1"));
}

/// Logouts to a store that never answers each give up after the timeout, and the calls they
/// leave behind stay bounded: no more than the layer's 1,024 background writes wait on the
/// store, however many clients retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_logouts_leave_a_bounded_number_of_calls_behind() {
    use tower::ServiceExt as _;
    let store = Instrumented::new(MemoryStore::new()).always_waiting();
    let app =
        routes().layer(layer(cookie(), store.clone()).store_timeout(Duration::from_millis(200)));
    let send = |cookie: Option<String>, path: &'static str| {
        let app = app.clone();
        async move {
            let mut request = http::Request::post(path);
            if let Some(cookie) = cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let request = request
                .body(axum::body::Body::empty())
                .expect("a valid request");
            app.oneshot(request)
                .await
                .unwrap_or_else(|never| match never {})
        }
    };
    let login = send(None, "/login").await;
    let set_cookie = login
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok());
    let cookie = set_cookie
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    store.set_delay(Delays {
        deletes: Duration::MAX,
        ..Delays::default()
    });
    let logouts: Vec<_> = (0..1_100)
        .map(|_| tokio::spawn(send(cookie.clone(), "/logout")))
        .collect();
    for logout in logouts {
        let status = logout.await.map(|response| response.status()).ok();
        assert_eq!(status, Some(StatusCode::SERVICE_UNAVAILABLE));
    }
    let waiting = store
        .calls
        .waiting
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=1_024).contains(&waiting),
        "{waiting} deletes still wait on the store"
    );
}

#[tokio::test]
async fn a_failed_save_is_an_error_not_a_silent_loss() {
    let store = Instrumented::new(MemoryStore::new());
    let server = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    browser.get("/count").await;
    // Fail only the write: the load succeeds, the update fails.
    let calls_before = store.calls.counts();
    let handle = {
        let store = store.clone();
        tokio::spawn(async move {
            // Let the request load first, then switch the store off before it saves.
            tokio::time::sleep(Duration::from_millis(5)).await;
            store.set_down(true);
        })
    };
    let app = routes().route(
        "/slow",
        get(|session: Session| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            session.set("visits", 100u64)
        }),
    );
    let slow_server = TestServer::start(app.layer(layer(cookie(), store.clone()))).await;
    let slow = slow_server.browser();
    slow.set_cookie(NAME, &browser.cookie(NAME).unwrap_or_default());
    let response = slow.get("/slow").await;
    let _ = handle.await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.set_cookies().is_empty());
    let calls = store.calls.counts();
    assert_eq!(
        (calls.read, calls.update),
        (calls_before.read + 1, calls_before.update + 1)
    );
    store.set_down(false);
    assert_eq!(browser.get("/peek").await.body, "1");
}

#[tokio::test]
async fn the_store_error_response_can_be_changed() {
    let store = Instrumented::new(MemoryStore::new());
    let layer = layer(cookie(), store.clone()).on_store_error(|failure: &StoreFailure<'_>| {
        let mut response = format!("try again later ({})", failure.operation()).into_response();
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("5"));
        response
    });
    let server = TestServer::start(routes().layer(layer)).await;
    store.set_down(true);
    let response = server.browser().get("/count").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.body, "try again later (create)");
    assert_eq!(response.header("retry-after").as_deref(), Some("5"));
}

#[tokio::test]
async fn nothing_is_saved_when_the_handler_fails_unless_asked() {
    for (save_on_error, expected) in [(false, "none"), (true, "saved")] {
        let store = MemoryStore::new();
        let app = routes().route(
            "/half",
            get(|session: Session| async move {
                let _ = session.set("visits", 5u64);
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        );
        let layer = layer(cookie(), store.clone()).save_on_server_error(save_on_error);
        let server = TestServer::start(app.layer(layer)).await;
        let browser = server.browser();
        browser.get("/count").await;
        let response = browser.get("/half").await;
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        let visits = browser.get("/peek").await.body;
        let got = if visits == "5" {
            "saved"
        } else if visits == "1" {
            "none"
        } else {
            "broken"
        };
        assert_eq!(
            got, expected,
            "save_on_server_error({save_on_error}): visits={visits}"
        );
        let response = server.browser().get("/fail").await;
        assert_eq!(response.set_cookie(NAME).is_some(), save_on_error);
    }
}

/// A logout that fails after `destroy` still logs out, on every setting; a login that fails
/// after `regenerate_id` moves nothing: the old session stays as it was, under its old id.
#[tokio::test]
async fn a_failing_logout_still_logs_out_and_a_failing_login_changes_nothing() {
    for save_on_error in [false, true] {
        let store = MemoryStore::new();
        let layer = layer(cookie(), store.clone()).save_on_server_error(save_on_error);
        let server = serve(layer).await;
        let browser = server.browser();
        assert_eq!(browser.post_form("/login", "").await.body, "logged in");
        let logged_in = browser.cookie(NAME).unwrap_or_default();
        let response = browser.post_form("/logout-then-fail", "").await;
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.set_cookie(NAME).as_deref().and_then(max_age),
            Some(0),
            "save_on_server_error({save_on_error}): the cookie was not cleared"
        );
        // Even a copy of the old cookie, replayed, is logged out.
        let replay = server.browser();
        replay.set_cookie(NAME, &logged_in);
        assert_eq!(
            replay.get("/whoami").await.body,
            "anonymous",
            "save_on_server_error({save_on_error}): a failed logout left the session alive"
        );
        assert_eq!(store.len(), 0);
    }

    let store = MemoryStore::new();
    let server = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    browser.get("/count").await;
    let before = browser.cookie(NAME).unwrap_or_default();
    let response = browser.post_form("/login-then-fail", "").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response.set_cookie(NAME).is_none(),
        "a failed login moved the session"
    );
    assert_eq!(browser.cookie(NAME).unwrap_or_default(), before);
    assert_eq!(browser.get("/whoami").await.body, "anonymous");
    assert_eq!(browser.get("/peek").await.body, "1");
    assert_eq!(store.len(), 1);
}

/// A request that began on the old id and ends after a login moved the session (or one that
/// still carries the old cookie) must not clear the cookie: its removal could reach the browser
/// after the login's new cookie and log the user out. Only the request that ended a session
/// clears its cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_request_on_the_old_id_does_not_log_out_a_user_who_just_logged_in() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    browser.get("/count").await;
    let old = browser.cookie(NAME).unwrap_or_default();
    let slow = {
        let browser = browser.clone();
        tokio::spawn(async move { browser.get("/slow-write").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(browser.post_form("/login", "").await.body, "logged in");
    let late = slow.await.expect("the slow request");
    assert_eq!(late.status, StatusCode::OK);
    assert_eq!(
        late.set_cookie(NAME),
        None,
        "the late request touched the cookie"
    );
    assert_eq!(
        browser.get("/whoami").await.body,
        "ada",
        "logged out by a request that began before the login"
    );

    // A request still carrying the pre-login cookie (sent before the login's answer came).
    let request = http::Request::builder()
        .uri(format!("http://{}/peek", server.addr))
        .header(header::COOKIE, format!("{NAME}={old}"))
        .body(Full::new(Bytes::new()))
        .unwrap_or_default();
    let stale = browser.raw(request).await;
    assert_eq!(stale.body, "none");
    assert_eq!(stale.set_cookie(NAME), None, "the stale cookie was cleared");
}

/// A logout is the request that ends the session: it clears the cookie even when the session
/// was gone already (a retried logout whose first attempt deleted it, then failed).
#[tokio::test]
async fn a_logout_of_a_session_already_gone_still_clears_the_cookie() {
    let (server, store) = memory_server().await;
    let browser = server.browser();
    browser.post_form("/login", "").await;
    let id = id_from(&browser.cookie(NAME).unwrap_or_default());
    cloakroom::SessionStore::delete(&store, &id)
        .await
        .expect("the delete");
    let response = browser.post_form("/logout", "").await;
    assert_eq!(response.body, "logged out");
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(0),
        "the cookie of a logged-out browser was left"
    );
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500_naming_the_layer() {
    let server = TestServer::start(routes()).await;
    let response = server.browser().get("/count").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.body.contains("SessionLayer"), "{}", response.body);
}

#[tokio::test]
async fn extension_session_works_in_axum() {
    async fn handler(Extension(session): Extension<Session>) -> Result<String, SessionError> {
        count(session).await
    }
    let app = Router::new()
        .route("/", get(handler))
        .layer(layer(cookie(), MemoryStore::new()));
    let server = TestServer::start(app).await;
    let browser = server.browser();
    browser.get("/").await;
    assert_eq!(browser.get("/").await.body, "2");
}

#[tokio::test]
async fn a_plain_hyper_service_fn_works_behind_the_layer() {
    let service = tower::ServiceBuilder::new()
        .layer(layer(cookie(), MemoryStore::new()))
        .service_fn(|request: http::Request<hyper::body::Incoming>| async move {
            let Some(session) = request.extensions().get::<Session>() else {
                return Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    Bytes::from("no session"),
                )));
            };
            let visits: u64 = session.get("visits").ok().flatten().unwrap_or(0) + 1;
            let _ = session.set("visits", visits);
            Ok(http::Response::new(Full::new(Bytes::from(
                visits.to_string(),
            ))))
        });
    let server = TestServer::start(service).await;
    let browser = server.browser();
    browser.get("/").await;
    assert_eq!(browser.get("/").await.body, "2");
}

/// A memory store whose `create` and `delete` take 40 ms each, for cutting a save short.
#[derive(Clone, Default)]
struct Slow(MemoryStore);

impl cloakroom::SessionStore for Slow {
    type Error = cloakroom::MemoryStoreError;

    async fn load(
        &self,
        id: &cloakroom::SessionId,
    ) -> Result<Option<cloakroom::store::Record>, Self::Error> {
        self.0.load(id).await
    }

    async fn create(
        &self,
        record: &cloakroom::store::Record,
    ) -> Result<cloakroom::SessionId, Self::Error> {
        tokio::time::sleep(Duration::from_millis(40)).await;
        self.0.create(record).await
    }

    async fn update(
        &self,
        id: &cloakroom::SessionId,
        changes: &cloakroom::store::Changes,
    ) -> Result<cloakroom::store::Update, Self::Error> {
        self.0.update(id, changes).await
    }

    async fn delete(&self, id: &cloakroom::SessionId) -> Result<(), Self::Error> {
        tokio::time::sleep(Duration::from_millis(40)).await;
        self.0.delete(id).await
    }
}

/// A client that goes away while a login or a logout is being saved (the response future is
/// dropped during the create, between it and the delete, during the delete) never leaves the
/// session reachable under its old id.
#[tokio::test]
async fn a_client_that_goes_away_mid_save_never_leaves_the_old_id_alive() {
    use tower::ServiceExt;
    // Login: create (40 ms), then delete (40 ms); logout: delete (40 ms).
    for (path, cuts) in [
        ("/login", &[5, 30, 45, 70][..]),
        ("/logout", &[5, 20, 35][..]),
    ] {
        for &cut in cuts {
            let store = Slow::default();
            let app = routes().layer(layer(cookie(), store.clone()));
            // A session to log in (or out) from.
            let setup = app
                .clone()
                .oneshot(
                    http::Request::get("/count")
                        .body(axum::body::Body::empty())
                        .unwrap_or_default(),
                )
                .await
                .unwrap_or_else(|error| match error {});
            let set = setup
                .headers()
                .get(header::SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let value = set
                .split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
                .map(|(_, value)| value.to_owned())
                .unwrap_or_default();
            let old = id_from(&value);
            let request = http::Request::post(path)
                .header(header::COOKIE, format!("{NAME}={value}"))
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            let cut_short =
                tokio::time::timeout(Duration::from_millis(cut), app.clone().oneshot(request))
                    .await;
            assert!(cut_short.is_err(), "{path} finished within {cut} ms");
            tokio::time::sleep(Duration::from_millis(150)).await;
            let left = cloakroom::SessionStore::load(&store.0, &old).await;
            assert!(
                matches!(left, Ok(None)),
                "{path} cut after {cut} ms left the old id alive"
            );
        }
    }
}

/// `remove` answers the old value and the key is gone for later requests; `clear` empties the
/// session but keeps it (same id, no new cookie needed); `is_empty` says so.
#[tokio::test]
async fn remove_returns_the_old_value_and_clear_keeps_the_session() {
    let (server, _store) = memory_server().await;
    let browser = server.browser();
    browser.post_form("/set/a/apple", "").await;
    browser.post_form("/set/b/banana", "").await;
    assert_eq!(browser.get("/empty").await.body, "false");
    assert_eq!(browser.post_form("/take/a", "").await.body, "apple");
    assert_eq!(browser.post_form("/take/a", "").await.body, "none");
    assert_eq!(browser.get("/keys").await.body, "b");
    let before = browser.cookie(NAME).unwrap_or_default();
    let response = browser.post_form("/clear", "").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.set_cookie(NAME), None, "clear ended the session");
    assert_eq!(browser.get("/keys").await.body, "");
    assert_eq!(browser.get("/empty").await.body, "true");
    assert_eq!(browser.cookie(NAME).unwrap_or_default(), before);
    browser.get("/count").await;
    assert_eq!(
        browser.get("/peek").await.body,
        "1",
        "the cleared session is still in use"
    );
}

/// A handler can read how long its session lives without requests, and whether it has an end
/// however active it is.
#[tokio::test]
async fn a_handler_reads_the_idle_timeout_and_the_deadline() {
    let plain =
        serve(layer(cookie(), MemoryStore::new()).idle_timeout(Duration::from_secs(600))).await;
    assert_eq!(plain.browser().get("/expiry").await.body, "600 none");
    let limited =
        serve(layer(cookie(), MemoryStore::new()).lifetime(Duration::from_secs(3600))).await;
    let browser = limited.browser();
    browser.get("/count").await;
    assert_eq!(browser.get("/expiry").await.body, "604800 set");
    browser.post_form("/remember", "").await;
    assert_eq!(browser.get("/expiry").await.body, "5184000 set");
}

/// Setting a key to `None` unsets it: it reads back as not set, of any type, in this request
/// and later ones, instead of a stored `null` that `get::<String>` fails on (a 500).
#[tokio::test]
async fn setting_none_unsets_the_key() {
    let (server, _store) = memory_server().await;
    let browser = server.browser();
    browser.post_form("/set/theme/dark", "").await;
    assert_eq!(browser.get("/get/theme").await.body, "dark");
    let response = browser.post_form("/set-none/theme", "").await;
    assert_eq!(response.status, StatusCode::OK);
    let response = browser.get("/get/theme").await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (StatusCode::OK, "none")
    );
    assert_eq!(browser.get("/keys").await.body, "");
}

/// A logout whose detached delete is cut short by a runtime shutdown (the task is cancelled
/// while the response still completes, on another runtime) still clears the cookie.
#[test]
fn a_logout_interrupted_by_a_runtime_shutdown_still_clears_the_cookie() {
    use tower::{Service as _, ServiceExt as _};
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    };
    let store = Instrumented::new(MemoryStore::new());
    let mut app = routes().layer(layer(cookie(), store.clone()).store_timeout(None));
    let request = |path: &str, cookie: Option<&str>| {
        let mut request = http::Request::post(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.body(axum::body::Body::empty()).expect("a request")
    };
    let setup = runtime();
    let login = setup.block_on(app.clone().oneshot(request("/login", None)));
    let login = login.unwrap_or_else(|never| match never {});
    let set_cookie = login
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok());
    let pair = set_cookie
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    store.set_delay(Delays {
        deletes: Duration::MAX,
        ..Delays::default()
    });
    // The handler answers on runtime A, which runs the delete as its task; the delete hangs.
    let doomed = runtime();
    let mut logout = Box::pin(app.call(request("/logout", pair.as_deref())));
    doomed.block_on(std::future::poll_fn(|cx| {
        assert!(logout.as_mut().poll(cx).is_pending(), "the delete hangs");
        std::task::Poll::Ready(())
    }));
    // A shuts down, cancelling the delete; the response completes on B.
    drop(doomed);
    let response = runtime()
        .block_on(logout)
        .unwrap_or_else(|never| match never {});
    let cleared = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok());
    assert!(
        cleared.is_some_and(|c| c.starts_with(&format!("{NAME}=;")) && c.contains("Max-Age=0")),
        "a logout left the cookie in place: {cleared:?}"
    );
}

/// `Priority=High` on the session cookie, when asked, on every cookie the layer sends (set and
/// cleared), so the browser evicts other cookies first.
#[tokio::test]
async fn the_cookie_carries_the_priority_asked_for() {
    let high = cookie().priority(cloakroom::Priority::High);
    let server = serve(layer(high, MemoryStore::new())).await;
    let browser = server.browser();
    let set = browser
        .get("/count")
        .await
        .set_cookie(NAME)
        .unwrap_or_default();
    assert!(set.ends_with("; SameSite=Lax; Priority=High"), "{set}");
    let cleared = browser
        .post_form("/logout", "")
        .await
        .set_cookie(NAME)
        .unwrap_or_default();
    assert!(
        cleared.contains("Max-Age=0") && cleared.ends_with("; Priority=High"),
        "{cleared}"
    );
    let plain = serve(layer(cookie(), MemoryStore::new())).await;
    let set = plain
        .browser()
        .get("/count")
        .await
        .set_cookie(NAME)
        .unwrap_or_default();
    assert!(!set.contains("Priority"), "no Priority unless asked: {set}");
}

/// The layer applied twice to the same routes (a nested router and the outer one): the inner
/// one passes the request on, so a login whose cookie is due for a refresh gets one cookie,
/// the new one, and the user stays logged in.
#[tokio::test]
async fn a_layer_applied_twice_behaves_as_one() {
    let store = Instrumented::new(MemoryStore::new());
    let layer = layer(cookie(), store.clone()).refresh_interval(Duration::ZERO);
    let app = Router::new()
        .merge(routes().layer(layer.clone()))
        .layer(layer);
    let server = TestServer::start(app).await;
    let browser = server.browser();
    assert_eq!(browser.get("/count").await.body, "1");
    let response = browser.post_form("/login", "").await;
    let ours: Vec<String> = response
        .set_cookies()
        .into_iter()
        .filter(|cookie| cookie.starts_with(&format!("{NAME}=")))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(
        !ours[0].contains("Max-Age=0"),
        "the login cleared its own cookie: {ours:?}"
    );
    assert_eq!(
        browser.get("/whoami").await.body,
        "ada",
        "logged out right after login"
    );
    assert_eq!(browser.get("/peek").await.body, "1");
    // One load per request, not two.
    let before = store.calls.counts();
    browser.get("/peek").await;
    let after = store.calls.counts();
    assert_eq!(after.read + after.load - before.read - before.load, 1);
}

/// Two different layers on one route cannot both own the request's `Session`: the outer one
/// does, the inner one passes the request on (and says so in the log).
#[tokio::test]
async fn a_second_different_layer_inside_the_first_is_passed_over() {
    let outer = layer(cookie(), MemoryStore::new());
    let inner = layer(
        cloakroom::SessionCookie::new("inner")
            .secret(SECRET)
            .secure(false),
        MemoryStore::new(),
    );
    let app = Router::new().merge(routes().layer(inner)).layer(outer);
    let server = TestServer::start(app).await;
    let browser = server.browser();
    let response = browser.get("/count").await;
    assert_eq!(response.body, "1");
    assert!(response.set_cookie(NAME).is_some());
    assert!(
        response.set_cookie("inner").is_none(),
        "the inner layer set a cookie"
    );
    assert_eq!(browser.get("/count").await.body, "2");
}

/// A handler is a function of a `Session`: `TestSession` makes one without a layer, and says
/// what the handler did.
#[tokio::test]
async fn a_handler_is_tested_without_the_layer() -> Result<(), SessionError> {
    use cloakroom::testing::{Ending, TestSession};
    let test = TestSession::stored().with("visits", 41)?;
    assert_eq!(count(test.session()).await?, "42");
    let changes = test.changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes.get("visits"), Some(&Some(serde_json::json!(42))));
    assert_eq!(test.ending(), Ending::Kept);
    Ok(())
}

/// A handler's deadline ends the session then, however active it is, and the cookie's
/// `Max-Age` follows at once; a later one than the layer's lifetime changes nothing.
#[tokio::test]
async fn a_session_ends_at_the_deadline_a_handler_set() {
    let store = MemoryStore::new();
    let server = serve(layer(cookie(), store.clone()).lifetime(Duration::from_secs(60))).await;
    let browser = server.browser();
    assert_eq!(browser.get("/count").await.body, "1");
    let later = browser.post_form("/deadline/3600", "").await;
    let age = later.set_cookie(NAME).and_then(|c| max_age(&c));
    assert!(age.is_some_and(|age| (59..=60).contains(&age)), "{age:?}");
    let soon = browser.post_form("/deadline/1", "").await;
    let age = soon.set_cookie(NAME).and_then(|c| max_age(&c));
    assert!(age.is_some_and(|age| age <= 2), "{age:?}");
    assert_eq!(
        browser.get("/count").await.body,
        "2",
        "the session ended early"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // The browser would have dropped the cookie; a client that keeps it gets a new session.
    let planted = server.browser();
    if let Some(value) = browser.cookie(NAME) {
        planted.set_cookie(NAME, &value);
    }
    assert_eq!(
        planted.get("/peek").await.body,
        "none",
        "served past its deadline"
    );
}
