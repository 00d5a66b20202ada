//! CookieStore over real HTTP: the session lives only in the cookie.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::SessionCookie;
use cloakroom_cookie::CookieStore;
use cloakroom_tests::TestServer;
use cloakroom_tests::app::{NAME, OLD_SECRET, SECRET, cookie, layer, max_age, serve};

async fn app(cookie: SessionCookie, idle: Duration) -> TestServer {
    let store = CookieStore::new(&cookie).expect("the store");
    serve(layer(cookie, store).idle_timeout(idle)).await
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_session_lives_in_the_cookie_across_requests() {
    let server = app(cookie(), HOUR).await;
    let browser = server.browser();
    for expected in 1..=3 {
        assert_eq!(browser.get("/count").await.body, expected.to_string());
    }
    let sealed = browser.cookie(NAME).unwrap_or_default();
    assert!(
        !sealed.contains("visits") && sealed.len() > 60,
        "the cookie is not sealed: {sealed}"
    );
    // Another app instance with the same secret reads it: nothing is kept on the server.
    let other_instance = app(cookie(), HOUR).await;
    let elsewhere = other_instance.browser();
    elsewhere.set_cookie(NAME, &sealed);
    assert_eq!(elsewhere.get("/peek").await.body, "3");
}

#[tokio::test]
async fn flash_destroy_and_regenerate_work() {
    let server = app(cookie(), HOUR).await;
    let browser = server.browser();
    browser.post_form("/flash", "").await;
    assert_eq!(browser.get("/show-flash").await.body, "saved");
    assert_eq!(browser.get("/show-flash").await.body, "no notice");

    let before = browser.cookie(NAME).unwrap_or_default();
    browser.post_form("/login", "").await;
    assert_ne!(browser.cookie(NAME).unwrap_or_default(), before);
    assert_eq!(browser.get("/whoami").await.body, "ada");

    let response = browser.post_form("/logout", "").await;
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(0)
    );
    assert_eq!(browser.get("/whoami").await.body, "anonymous");
}

#[tokio::test]
async fn expiry_rolls_with_use_and_an_expired_cookie_loads_nothing() {
    let server = app(cookie(), Duration::from_secs(1)).await;
    let browser = server.browser();
    browser.get("/count").await;
    let first = browser.cookie(NAME).unwrap_or_default();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let response = browser.get("/peek").await;
        assert_eq!(response.body, "1", "an active session expired");
        assert_eq!(
            response.set_cookie(NAME).as_deref().and_then(max_age),
            Some(1)
        );
    }
    // The first cookie was sealed with an expiry long past: replayed, it loads nothing.
    let replay = server.browser();
    replay.set_cookie(NAME, &first);
    assert_eq!(replay.get("/peek").await.body, "none");
}

#[tokio::test]
async fn anything_that_does_not_open_is_a_fresh_session() {
    let server = app(cookie(), HOUR).await;
    let victim = server.browser();
    victim.get("/count").await;
    let sealed = victim.cookie(NAME).unwrap_or_default();
    let other_app = app(
        SessionCookie::new(NAME)
            .secret(b"another app's secret, 32 bytes or more")
            .secure(false),
        HOUR,
    )
    .await;
    let foreign = other_app.browser();
    foreign.get("/count").await;
    let renamed = app(
        SessionCookie::new("other").secret(SECRET).secure(false),
        HOUR,
    )
    .await;
    let moved = renamed.browser();
    moved.get("/count").await;
    let (id, signature) = sealed.rsplit_once('.').unwrap_or_default();
    let mut tampered = id.as_bytes().to_vec();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap_or_default();
    for forged in [
        format!("{tampered}.{signature}"),
        sealed[..sealed.len() / 2].to_owned(),
        "A".repeat(300),
        foreign.cookie(NAME).unwrap_or_default(),
        moved.cookie("other").unwrap_or_default(),
    ] {
        let attacker = server.browser();
        attacker.set_cookie(NAME, &forged);
        let response = attacker.get("/peek").await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (StatusCode::OK, "none"),
            "{forged:.40}"
        );
    }
}

#[tokio::test]
async fn an_old_secret_is_accepted_and_the_cookie_comes_back_sealed_with_the_newest() {
    let old = app(
        SessionCookie::new(NAME).secret(OLD_SECRET).secure(false),
        HOUR,
    )
    .await;
    let rotated = app(
        SessionCookie::new(NAME)
            .secrets([SECRET, OLD_SECRET])
            .secure(false),
        HOUR,
    )
    .await;
    let new = app(cookie(), HOUR).await;
    let browser = old.browser();
    browser.get("/count").await;
    let sealed_old = browser.cookie(NAME).unwrap_or_default();

    let browser = rotated.browser();
    browser.set_cookie(NAME, &sealed_old);
    assert_eq!(browser.get("/peek").await.body, "1");
    let resealed = browser.cookie(NAME).unwrap_or_default();

    let browser = new.browser();
    browser.set_cookie(NAME, &sealed_old);
    assert_eq!(
        browser.get("/peek").await.body,
        "none",
        "a retired secret still opens"
    );
    browser.set_cookie(NAME, &resealed);
    assert_eq!(
        browser.get("/peek").await.body,
        "1",
        "the cookie was not re-sealed with the newest secret"
    );
}

#[tokio::test]
async fn a_session_too_big_for_a_cookie_is_a_500_without_a_cookie() {
    let server = app(cookie(), HOUR).await;
    let browser = server.browser();
    browser.get("/count").await;
    let big = "x".repeat(4000);
    let response = browser.post_form(&format!("/set/big/{big}"), "").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response.set_cookies().is_empty(),
        "a cookie the browser would drop was sent"
    );
    assert_eq!(browser.get("/peek").await.body, "1", "the session was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promises_that_apply_without_server_state_hold() {
    let store = CookieStore::new(&cookie()).expect("the store");
    let result = cloakroom_testkit::Conformance::new()
        .tick(Duration::from_millis(100))
        .large_value(1000)
        .run(store)
        .await;
    assert_eq!(result, Ok(()));
}
