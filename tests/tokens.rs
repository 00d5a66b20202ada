//! The session token in a header instead of (or as well as) the cookie, over real HTTP: what
//! an API client, a mobile app or a gRPC client does.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use cloakroom::{MemoryStore, Transport};
use cloakroom_tests::app::*;
use cloakroom_tests::{Browser, TestResponse};
use http::{HeaderName, Method, Request, StatusCode};
use http_body_util::Full;

const TOKEN: HeaderName = HeaderName::from_static("x-session-token");

/// `method path` with the token header set to `token` (if any) and the `Cookie` header to
/// `cookie` (if any), nothing else.
async fn call(
    browser: &Browser,
    method: Method,
    path: &str,
    token: Option<&str>,
    cookie: Option<&str>,
) -> TestResponse {
    let uri = format!("http://{}{path}", browser.addr());
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(&TOKEN, token);
    }
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    browser.raw(request).await
}

fn token_of(response: &TestResponse) -> Option<String> {
    response.header(TOKEN.as_str())
}

/// A client on a header only: it asks for a session, keeps the token it is given, gets a new
/// one at login (the old one then loads nothing), a renewed one when the refresh is due, and
/// an empty header at logout; no cookie is ever sent or read.
#[tokio::test]
async fn an_api_client_keeps_its_session_in_a_header() {
    let layer = layer(cookie(), MemoryStore::new())
        .transport(Transport::Header(TOKEN))
        .expect("a header of our own")
        .refresh_interval(Duration::ZERO);
    let server = serve(layer).await;
    let client = server.browser();
    let first = call(&client, Method::GET, "/count", Some(""), None).await;
    assert_eq!(first.body, "1");
    assert!(first.set_cookies().is_empty(), "{:?}", first.set_cookies());
    let token = token_of(&first).expect("a token for a new session");
    assert!(
        first
            .header("vary")
            .is_some_and(|v| v.contains(TOKEN.as_str()))
    );
    assert!(
        first
            .header("cache-control")
            .is_some_and(|v| v.contains("no-store"))
    );

    let second = call(&client, Method::GET, "/count", Some(&token), None).await;
    assert_eq!(second.body, "2");
    let renewed = token_of(&second).expect("a renewed token (refresh due on every request)");

    let login = call(&client, Method::POST, "/login", Some(&renewed), None).await;
    let signed_in = token_of(&login).expect("a new token at login");
    assert_ne!(signed_in, renewed);
    let old = call(&client, Method::GET, "/whoami", Some(&renewed), None).await;
    assert_eq!(
        old.body, "anonymous",
        "the token from before login still worked"
    );
    let whoami = call(&client, Method::GET, "/whoami", Some(&signed_in), None).await;
    assert_eq!(whoami.body, "ada");

    // The cookie is not read: a cookie carrying the token is a stranger.
    let cookie = format!("{NAME}={signed_in}");
    let by_cookie = call(&client, Method::GET, "/whoami", None, Some(&cookie)).await;
    assert_eq!(by_cookie.body, "anonymous");

    let logout = call(&client, Method::POST, "/logout", Some(&signed_in), None).await;
    assert_eq!(
        token_of(&logout).as_deref(),
        Some(""),
        "logout tells the client to drop it"
    );
    let after = call(&client, Method::GET, "/whoami", Some(&signed_in), None).await;
    assert_eq!(after.body, "anonymous");
}

/// Forged, altered or foreign tokens in the header are a fresh session, and the client is told
/// to drop them; several values are tried in order and bounded.
#[tokio::test]
async fn a_forged_token_is_a_fresh_session() {
    let layer = layer(cookie(), MemoryStore::new())
        .transport(Transport::Header(TOKEN))
        .expect("a header of our own");
    let server = serve(layer).await;
    let client = server.browser();
    let victim = call(&client, Method::POST, "/set/secret/42", Some(""), None).await;
    let token = token_of(&victim).expect("a token");
    let (signed, tag) = token.rsplit_once('.').unwrap_or_default();
    let flipped = format!(
        "{signed}.{}",
        tag.replace(|c: char| c.is_ascii_digit(), "A")
    );
    let other_secret = {
        let signer = cloakroom::SessionCookie::new(NAME)
            .secret([9; 32])
            .into_signer();
        let id = token.split('.').next().unwrap_or_default();
        signer
            .expect("a valid configuration")
            .sign(id, std::time::SystemTime::now())
    };
    for forged in [
        flipped.as_str(),
        &other_secret,
        token.split('.').next().unwrap_or_default(),
        "garbage",
        "a.1.b.c",
    ] {
        let response = call(&client, Method::GET, "/get/secret", Some(forged), None).await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (StatusCode::OK, "none"),
            "{forged:?} loaded the session"
        );
        assert_eq!(
            token_of(&response).as_deref(),
            Some(""),
            "{forged:?} was not dropped"
        );
    }
    let victim = call(&client, Method::GET, "/get/secret", Some(&token), None).await;
    assert_eq!(victim.body, "42");
}

/// Both: a browser (no header) gets the cookie and never a token it could read from script; a
/// client that sends the header (empty to ask) gets tokens in it and no cookie; a request
/// with both uses the header.
#[tokio::test]
async fn cookie_or_header_chooses_per_request_and_the_header_wins() {
    let layer = layer(cookie(), MemoryStore::new())
        .transport(Transport::CookieOrHeader(TOKEN))
        .expect("a header of our own");
    let server = serve(layer).await;
    let browser = server.browser();
    let page = browser.post_form("/set/who/browser", "").await;
    assert!(page.set_cookie(NAME).is_some());
    assert_eq!(token_of(&page), None, "a browser was handed a token");
    assert_eq!(browser.get("/get/who").await.body, "browser");

    let api = server.browser();
    let asked = call(&api, Method::POST, "/set/who/api", Some(""), None).await;
    assert!(asked.set_cookies().is_empty(), "{:?}", asked.set_cookies());
    let token = token_of(&asked).expect("a token");
    let cookie = format!("{NAME}={}", browser.cookie(NAME).unwrap_or_default());
    let both = call(&api, Method::GET, "/get/who", Some(&token), Some(&cookie)).await;
    assert_eq!(both.body, "api", "the cookie won over the header");
    let cookie_only = call(&api, Method::GET, "/get/who", None, Some(&cookie)).await;
    assert_eq!(cookie_only.body, "browser");
}

/// Under `CookieOrHeader`, a client that sends the header empty on every request (a default
/// header with no token yet) beside its session cookie is on the cookie: its logout ends the
/// cookie session and clears the cookie.
#[tokio::test]
async fn an_empty_header_beside_a_session_cookie_is_the_cookies_request() {
    let layer = layer(cookie(), MemoryStore::new())
        .transport(Transport::CookieOrHeader(TOKEN))
        .expect("a header of our own");
    let server = serve(layer).await;
    let browser = server.browser();
    browser.post_form("/login", "").await;
    let cookie = format!("{NAME}={}", browser.cookie(NAME).unwrap_or_default());
    let whoami = call(&browser, Method::GET, "/whoami", Some(""), Some(&cookie)).await;
    assert_eq!(whoami.body, "ada");
    let logout = call(&browser, Method::POST, "/logout", Some(""), Some(&cookie)).await;
    assert!(
        logout
            .set_cookie(NAME)
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie was not cleared: {:?}",
        logout.set_cookies()
    );
    assert_eq!(token_of(&logout), None);
    let after = call(&browser, Method::GET, "/whoami", None, Some(&cookie)).await;
    assert_eq!(after.body, "anonymous", "the logout left the session alive");
    let vary: Vec<String> = whoami
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase())
        .collect();
    let vary = vary.join(", ");
    assert!(
        vary.contains("cookie") && vary.contains(TOKEN.as_str()),
        "{vary}"
    );
}
