//! The layer end to end: a real HTTP server on a loopback port, a real HTTP client, and the
//! memory store. Each test names the behaviour a user relies on.

use std::time::Duration;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use cloakroom::{
    MemoryStore, SameSite, Session, SessionCookie, SessionError, SessionLayer, SessionStore,
    StoreFailure,
};
use cloakroom_tests::{Instrumented, TestServer};
use http_body_util::Full;

const NAME: &str = "__session";
const SECRET: &[u8] = b"test secret number one, 32+ bytes long";
const OLD_SECRET: &[u8] = b"test secret number zero, also 32+ bytes";

fn cookie() -> SessionCookie {
    SessionCookie::new(NAME).secret(SECRET).secure(false)
}

fn layer<St: SessionStore>(cookie: SessionCookie, store: St) -> SessionLayer<St> {
    match SessionLayer::new(cookie, store) {
        Ok(layer) => layer,
        Err(error) => panic!("test layer rejected: {error}"),
    }
}

async fn count(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(visits.to_string())
}

async fn peek(session: Session) -> Result<String, SessionError> {
    let visits: Option<u64> = session.get("visits")?;
    Ok(visits.map_or_else(|| "none".to_owned(), |v| v.to_string()))
}

async fn set(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<(), SessionError> {
    session.set(key, value)
}

async fn keys(session: Session) -> Result<String, SessionError> {
    let mut keys: Vec<String> = session.data()?.keys().cloned().collect();
    keys.sort();
    Ok(keys.join(","))
}

async fn flash(session: Session) -> Result<Redirect, SessionError> {
    session.flash("notice", "saved")?;
    Ok(Redirect::to("/show-flash"))
}

async fn show_flash(session: Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("notice")?
        .unwrap_or_else(|| "no notice".to_owned()))
}

async fn login(session: Session) -> Result<String, SessionError> {
    session.set("user", "ada")?;
    session.regenerate_id()?;
    Ok("logged in".to_owned())
}

async fn whoami(session: Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".to_owned()))
}

async fn logout(session: Session) -> &'static str {
    session.destroy();
    "logged out"
}

async fn destroy_then_set(session: Session) -> String {
    session.destroy();
    match session.set("x", 1) {
        Ok(()) => "changed".to_owned(),
        Err(error) => error.to_string(),
    }
}

async fn own_cookie(session: Session) -> Result<Response, SessionError> {
    session.set("k", "v")?;
    Ok(([(header::SET_COOKIE, "theme=dark; Path=/")], "ok").into_response())
}

async fn own_cache_control(session: Session) -> Result<Response, SessionError> {
    session.set("k", "v")?;
    Ok(([(header::CACHE_CONTROL, "private, max-age=60")], "ok").into_response())
}

async fn fail(session: Session) -> Result<StatusCode, SessionError> {
    session.set("half-done", true)?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn remember(session: Session) -> Result<(), SessionError> {
    session.set("user", "ada")?;
    session.set_idle_timeout(Duration::from_secs(60 * 24 * 60 * 60))
}

async fn noop() -> &'static str {
    "nothing"
}

fn routes() -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/peek", get(peek))
        .route("/set/{key}/{value}", post(set))
        .route("/keys", get(keys))
        .route("/flash", post(flash))
        .route("/show-flash", get(show_flash))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .route("/destroy-then-set", post(destroy_then_set))
        .route("/own-cookie", get(own_cookie))
        .route("/own-cache-control", get(own_cache_control))
        .route("/fail", get(fail))
        .route("/remember", post(remember))
        .route("/noop", get(noop))
}

async fn serve<St: SessionStore + Clone>(layer: SessionLayer<St>) -> TestServer {
    TestServer::start(routes().layer(layer)).await
}

async fn memory_server() -> (TestServer, MemoryStore) {
    let store = MemoryStore::new();
    (serve(layer(cookie(), store.clone())).await, store)
}

/// The `Max-Age` of a `Set-Cookie` value.
fn max_age(set_cookie: &str) -> Option<u64> {
    set_cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .and_then(|value| value.parse().ok())
}

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
    assert_eq!(store.calls.counts(), (0, 0, 0, 0));
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
async fn forged_or_truncated_signatures_get_a_fresh_session() {
    let (server, _store) = memory_server().await;
    let victim = server.browser();
    victim.get("/count").await;
    victim.get("/count").await;
    let Some(stolen) = victim.cookie(NAME) else {
        panic!("the victim has no session cookie");
    };
    let (id, tag) = stolen.rsplit_once('.').unwrap_or_default();
    let mut flipped_tag = tag.to_owned().into_bytes();
    flipped_tag[5] = if flipped_tag[5] == b'A' { b'B' } else { b'A' };
    let flipped_tag = String::from_utf8(flipped_tag).unwrap_or_default();
    let forgeries = [
        id.to_owned(),                             // no signature
        format!("{id}."),                          // empty signature
        format!("{id}.{}", &tag[..tag.len() - 1]), // truncated
        format!("{id}.{flipped_tag}"),             // altered
        stolen[..stolen.len() - 10].to_owned(),    // cut short
        format!("{stolen}x"),                      // extended
        "garbage".to_owned(),
        String::new(),
    ];
    for forged in forgeries {
        let attacker = server.browser();
        attacker.set_cookie(NAME, &forged);
        let response = attacker.get("/peek").await;
        assert_eq!(
            response.body, "none",
            "forged cookie {forged:?} loaded the victim's data"
        );
        assert_eq!(response.status, StatusCode::OK);
        let cleared = response.set_cookie(NAME).unwrap_or_default();
        assert_eq!(
            max_age(&cleared),
            Some(0),
            "invalid cookie {forged:?} not cleared"
        );
    }
    assert_eq!(
        victim.get("/peek").await.body,
        "2",
        "the victim lost their session"
    );
}

#[tokio::test]
async fn a_validly_signed_unknown_id_gets_a_fresh_session_with_a_new_id() {
    let (first, _) = memory_server().await;
    let browser = first.browser();
    browser.get("/count").await;
    let Some(old) = browser.cookie(NAME) else {
        panic!("no session cookie");
    };
    // Same secret, different (empty) store: the signature verifies, the id is unknown.
    let (second, store) = memory_server().await;
    let replay = second.browser();
    replay.set_cookie(NAME, &old);
    let response = replay.get("/count").await;
    assert_eq!(
        response.body, "1",
        "an unknown id must start a fresh session"
    );
    let new = replay.cookie(NAME).unwrap_or_default();
    assert_ne!(
        new, old,
        "the client-chosen id was adopted (session fixation)"
    );
    assert_eq!(new.split('.').next().map(str::len), Some(32));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn cookies_from_another_app_secret_get_a_fresh_session() {
    let store = MemoryStore::new();
    let ours = serve(layer(cookie(), store.clone())).await;
    let other_app = serve(layer(
        SessionCookie::new(NAME)
            .secret(b"another application's secret, 32+ bytes")
            .secure(false),
        store.clone(),
    ))
    .await;
    let browser = other_app.browser();
    browser.get("/count").await;
    browser.get("/count").await;
    let Some(foreign) = browser.cookie(NAME) else {
        panic!("no cookie from the other app");
    };
    let attacker = ours.browser();
    attacker.set_cookie(NAME, &foreign);
    assert_eq!(attacker.get("/peek").await.body, "none");
}

#[tokio::test]
async fn an_old_secret_is_accepted_and_the_cookie_re_signed_with_the_newest() {
    let store = MemoryStore::new();
    let before = serve(layer(
        SessionCookie::new(NAME).secret(OLD_SECRET).secure(false),
        store.clone(),
    ))
    .await;
    let rotated = serve(layer(
        SessionCookie::new(NAME)
            .secrets([SECRET, OLD_SECRET])
            .secure(false),
        store.clone(),
    ))
    .await;
    let after = serve(layer(cookie(), store.clone())).await;

    let browser = before.browser();
    browser.get("/count").await;
    let old_cookie = browser.cookie(NAME).unwrap_or_default();

    let browser = rotated.browser();
    browser.set_cookie(NAME, &old_cookie);
    let response = browser.get("/peek").await;
    assert_eq!(
        response.body, "1",
        "a cookie signed with an older secret was not accepted"
    );
    let resigned = browser.cookie(NAME).unwrap_or_default();
    assert_ne!(resigned, old_cookie, "the cookie was not re-signed");
    assert_eq!(
        resigned.split('.').next(),
        old_cookie.split('.').next(),
        "re-signing must keep the id"
    );

    let browser = after.browser();
    browser.set_cookie(NAME, &old_cookie);
    assert_eq!(
        browser.get("/peek").await.body,
        "none",
        "a retired secret still verifies"
    );
    let browser = after.browser();
    browser.set_cookie(NAME, &resigned);
    assert_eq!(
        browser.get("/peek").await.body,
        "1",
        "the re-signed cookie does not verify"
    );
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
async fn regenerate_id_moves_the_data_and_kills_the_old_id() {
    let (server, store) = memory_server().await;
    let browser = server.browser();
    browser.get("/count").await;
    let before = browser.cookie(NAME).unwrap_or_default();
    let response = browser.post_form("/login", "").await;
    assert_eq!(response.body, "logged in");
    let after = browser.cookie(NAME).unwrap_or_default();
    assert_ne!(
        before.split('.').next(),
        after.split('.').next(),
        "the id did not change"
    );
    assert_eq!(browser.get("/whoami").await.body, "ada");
    assert_eq!(
        browser.get("/peek").await.body,
        "1",
        "data was lost when the id moved"
    );

    let attacker = server.browser();
    attacker.set_cookie(NAME, &before);
    assert_eq!(
        attacker.get("/whoami").await.body,
        "anonymous",
        "the old id still works"
    );
    assert_eq!(store.len(), 1, "the old record was not deleted");
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
async fn destroy_deletes_the_record_and_clears_the_cookie() {
    let store = MemoryStore::new();
    let server = serve(layer(cookie().path("/").domain("127.0.0.1"), store.clone())).await;
    let browser = server.browser();
    browser.post_form("/login", "").await;
    let cookie_before = browser.cookie(NAME).unwrap_or_default();
    let response = browser.post_form("/logout", "").await;
    let cleared = response.set_cookie(NAME).unwrap_or_default();
    assert!(cleared.starts_with(&format!("{NAME}=;")), "{cleared}");
    assert_eq!(max_age(&cleared), Some(0));
    assert!(
        cleared.contains("; Path=/") && cleared.contains("; Domain=127.0.0.1"),
        "{cleared}"
    );
    assert_eq!(store.len(), 0);

    let replay = server.browser();
    replay.set_cookie(NAME, &cookie_before);
    assert_eq!(
        replay.get("/whoami").await.body,
        "anonymous",
        "a destroyed session came back"
    );
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
        browser.get("/noop").await.header("vary").as_deref(),
        Some("Cookie"),
        "the cookie was re-sent"
    );
    assert_eq!(server.browser().get("/noop").await.header("vary"), None);
}

#[tokio::test]
async fn a_hundred_concurrent_writers_of_one_session_all_survive() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    browser.get("/count").await;
    let writers: Vec<_> = (0..100)
        .map(|i| {
            let browser = browser.clone();
            tokio::spawn(async move {
                browser
                    .post_form(&format!("/set/k{i:03}/{i}"), "")
                    .await
                    .status
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.await.ok(), Some(StatusCode::OK));
    }
    let keys = browser.get("/keys").await.body;
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
    assert_eq!(store.calls.counts(), (1, 1, 1, 0));
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
        (3, 1, 1, 0),
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
    let (server, _) = memory_server().await;
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

#[tokio::test]
async fn set_cookie_has_the_configured_attributes() {
    let store = MemoryStore::new();
    let server = serve(layer(
        SessionCookie::new("__Host-sid")
            .secret(SECRET)
            .same_site(SameSite::Strict),
        store,
    ))
    .await;
    let response = server.browser().get("/count").await;
    let set_cookie = response.set_cookie("__Host-sid").unwrap_or_default();
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        [
            "Max-Age=604800",
            "Path=/",
            "HttpOnly",
            "Secure",
            "SameSite=Strict"
        ]
    );
    let (server, _) = memory_server().await;
    let set_cookie = server
        .browser()
        .get("/count")
        .await
        .set_cookie(NAME)
        .unwrap_or_default();
    assert!(
        set_cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "{set_cookie}"
    );
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
    let (loads, _, updates, _) = store.calls.counts();
    assert_eq!((loads, updates), (calls_before.0 + 1, calls_before.2 + 1));
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

#[tokio::test]
async fn hostile_cookie_headers_never_panic() {
    let (server, _) = memory_server().await;
    let browser = server.browser();
    let huge = format!("{NAME}={}", "A".repeat(60_000));
    let many: String = (0..2000).map(|i| format!("{NAME}=x{i}.y; ")).collect();
    let values: Vec<http::HeaderValue> = [
        http::HeaderValue::from_str(&huge).ok(),
        http::HeaderValue::from_str(&many).ok(),
        http::HeaderValue::from_bytes(b"__session=\xff\xfe\x80; a=\xc3").ok(),
        http::HeaderValue::from_str(&format!("{NAME}=../../etc/passwd.AAAA")).ok(),
        http::HeaderValue::from_str(&format!("{NAME}=\"quoted\"; {NAME}")).ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(values.len(), 5);
    for value in values {
        let request = http::Request::builder()
            .uri(format!("http://{}/peek", server.addr))
            .header(header::COOKIE, value.clone())
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
        let response = browser.raw(request).await;
        assert!(
            response.status == StatusCode::OK && response.body == "none",
            "{value:?}: {} {}",
            response.status,
            response.body
        );
    }
    let _: HeaderMap = HeaderMap::new();
}
