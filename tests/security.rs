//! The security suite: what an attacker can send, and what they must never get. Every check
//! runs over real HTTP against the layer, once per store (the `security_suite!` list at the
//! bottom); a new store adds one line there.

use axum::http::{StatusCode, header};
use bytes::Bytes;
use cloakroom::{SameSite, SessionCookie, SessionId, SessionStore};
use cloakroom_tests::TestServer;
use cloakroom_tests::app::*;
use http_body_util::Full;

/// The parts of a signed cookie value `id.issued.tag`.
fn parts(cookie: &str) -> (&str, &str, &str) {
    let (signed, tag) = cookie.rsplit_once('.').unwrap_or_default();
    let (id, issued) = signed.rsplit_once('.').unwrap_or_default();
    (id, issued, tag)
}

/// The id inside a signed cookie value.
fn id_of(cookie: &str) -> &str {
    parts(cookie).0
}

async fn victim(server: &TestServer) -> String {
    let victim = server.browser();
    victim.get("/count").await;
    victim.get("/count").await;
    match victim.cookie(NAME) {
        Some(cookie) => cookie,
        None => panic!("the victim got no session cookie"),
    }
}

/// Each forged value gets a fresh session and has the bad cookie cleared.
async fn assert_fresh(server: &TestServer, forged: &str) {
    let attacker = server.browser();
    attacker.set_cookie(NAME, forged);
    let response = attacker.get("/peek").await;
    assert_eq!(response.status, StatusCode::OK, "{forged:?}");
    assert_eq!(
        response.body, "none",
        "cookie {forged:?} loaded someone's session"
    );
    let cleared = response.set_cookie(NAME).unwrap_or_default();
    assert_eq!(
        max_age(&cleared),
        Some(0),
        "invalid cookie {forged:?} was not cleared"
    );
}

async fn forged_truncated_and_reused_signatures<St: SessionStore + Clone>(store: St) {
    let server = serve(layer(cookie(), store)).await;
    let stolen = victim(&server).await;
    let other = victim(&server).await;
    let (id, issued, tag) = parts(&stolen);
    let (_, other_issued, other_tag) = parts(&other);
    let mut flipped = tag.to_owned().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap_or_default();
    let later = issued.parse::<u64>().unwrap_or_default() + 3_600_000;
    let unsigned_valid_shape = SessionId::generate();
    for forged in [
        id.to_owned(),                                      // no issue time, no signature
        format!("{id}.{issued}"),                           // no signature
        format!("{id}.{issued}."),                          // empty signature
        format!("{id}.{tag}"),                              // no issue time
        format!("{id}.{issued}.{}", &tag[..tag.len() - 1]), // truncated signature
        format!("{id}.{issued}.{flipped}"),                 // altered signature
        format!("{id}.{other_issued}.{other_tag}"),         // another session's signature
        format!("{id}.{later}.{tag}"),                      // a later issue time
        format!("{id}.{issued}.{tag}.{tag}"),               // doubled
        stolen[..stolen.len() - 10].to_owned(),             // cut short
        format!("{stolen}x"),                               // extended
        format!("{}.{issued}.{tag}", &id[1..]),             // altered id
        unsigned_valid_shape.as_str().to_owned(),           // a well-formed id, unsigned
        "garbage".to_owned(),
        String::new(),
    ] {
        assert_fresh(&server, &forged).await;
    }
    let victim = server.browser();
    victim.set_cookie(NAME, &stolen);
    assert_eq!(
        victim.get("/peek").await.body,
        "2",
        "the victim lost their session"
    );
}

async fn retired_and_foreign_secrets<St: SessionStore + Clone>(store: St) {
    let old_app = serve(layer(
        SessionCookie::new(NAME).secret(OLD_SECRET).secure(false),
        store.clone(),
    ))
    .await;
    let other_app = serve(layer(
        SessionCookie::new(NAME)
            .secret(b"another application's secret, 32+ bytes")
            .secure(false),
        store.clone(),
    ))
    .await;
    let ours = serve(layer(cookie(), store)).await;
    for app in [&old_app, &other_app] {
        let cookie = victim(app).await;
        assert_fresh(&ours, &cookie).await;
    }
}

async fn an_old_secret_is_accepted_and_re_signed<St: SessionStore + Clone>(store: St) {
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
    let after = serve(layer(cookie(), store)).await;

    let old_cookie = victim(&before).await;
    let browser = rotated.browser();
    browser.set_cookie(NAME, &old_cookie);
    assert_eq!(
        browser.get("/peek").await.body,
        "2",
        "an older secret was not accepted"
    );
    let resigned = browser.cookie(NAME).unwrap_or_default();
    assert_ne!(resigned, old_cookie, "the cookie was not re-signed");
    assert_eq!(
        id_of(&resigned),
        id_of(&old_cookie),
        "re-signing must keep the id"
    );

    assert_fresh(&after, &old_cookie).await;
    let browser = after.browser();
    browser.set_cookie(NAME, &resigned);
    assert_eq!(
        browser.get("/peek").await.body,
        "2",
        "the re-signed cookie does not verify"
    );
}

async fn a_client_chosen_id_is_never_adopted<St: SessionStore + Clone>(store: St) {
    let server = serve(layer(cookie(), store.clone())).await;
    // A validly signed id that the store does not know: sign one, then delete its session.
    let planted = victim(&server).await;
    let Some(id) = SessionId::parse(id_of(&planted)) else {
        panic!("the layer issued an id of the wrong shape: {planted}");
    };
    if let Err(error) = store.delete(&id).await {
        panic!("delete failed: {error}");
    }
    let browser = server.browser();
    browser.set_cookie(NAME, &planted);
    let response = browser.get("/count").await;
    assert_eq!(
        response.body, "1",
        "an unknown id must start a fresh session"
    );
    let issued = browser.cookie(NAME).unwrap_or_default();
    assert_ne!(
        id_of(&issued),
        id_of(&planted),
        "the planted id was adopted (session fixation)"
    );
    assert!(SessionId::parse(id_of(&issued)).is_some());
}

async fn regenerate_id_kills_the_old_id<St: SessionStore + Clone>(store: St) {
    let server = serve(layer(cookie(), store)).await;
    let browser = server.browser();
    browser.get("/count").await;
    let before = browser.cookie(NAME).unwrap_or_default();
    assert_eq!(browser.post_form("/login", "").await.body, "logged in");
    let after = browser.cookie(NAME).unwrap_or_default();
    assert_ne!(id_of(&before), id_of(&after), "login did not change the id");
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
        "the pre-login id still works"
    );
    assert_eq!(attacker.get("/peek").await.body, "none");
}

async fn a_destroyed_session_stays_dead_when_replayed<St: SessionStore + Clone>(store: St) {
    let server = serve(layer(cookie().domain("127.0.0.1"), store)).await;
    let browser = server.browser();
    browser.post_form("/login", "").await;
    let before = browser.cookie(NAME).unwrap_or_default();
    let response = browser.post_form("/logout", "").await;
    let cleared = response.set_cookie(NAME).unwrap_or_default();
    assert!(cleared.starts_with(&format!("{NAME}=;")), "{cleared}");
    assert_eq!(max_age(&cleared), Some(0));
    assert!(
        cleared.contains("; Path=/") && cleared.contains("; Domain=127.0.0.1"),
        "the clearing cookie must have the same path and domain: {cleared}"
    );
    for _ in 0..2 {
        let replay = server.browser();
        replay.set_cookie(NAME, &before);
        assert_eq!(
            replay.get("/whoami").await.body,
            "anonymous",
            "a destroyed session came back"
        );
    }
}

async fn cookie_attributes_are_as_configured<St: SessionStore + Clone>(store: St) {
    let host = serve(layer(
        SessionCookie::new("__Host-sid")
            .secret(SECRET)
            .same_site(SameSite::Strict),
        store.clone(),
    ))
    .await;
    let set_cookie = host.browser().get("/count").await.set_cookie("__Host-sid");
    let set_cookie = set_cookie.unwrap_or_default();
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
    let scoped = serve(
        layer(cookie().path("/app").domain("example.test"), store)
            .idle_timeout(std::time::Duration::from_secs(3600)),
    )
    .await;
    let set_cookie = scoped.browser().get("/count").await.set_cookie(NAME);
    let set_cookie = set_cookie.unwrap_or_default();
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        [
            "Max-Age=3600",
            "Path=/app",
            "Domain=example.test",
            "HttpOnly",
            "SameSite=Lax"
        ]
    );
}

async fn issued_ids_are_distinct_long_and_base64url<St: SessionStore + Clone>(store: St) {
    let server = serve(layer(cookie(), store.clone())).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let browser = server.browser();
        browser.get("/count").await;
        let issued = browser.cookie(NAME).unwrap_or_default();
        let id = id_of(&issued).to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert!(seen.insert(id), "an id was issued twice");
    }
    let record = cloakroom::store::Record::new(
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(60),
        None,
    );
    for _ in 0..10_000 {
        match store.create(&record).await {
            Ok(id) => assert!(
                seen.insert(id.as_str().to_owned()),
                "the store issued an id twice"
            ),
            Err(error) => panic!("create failed: {error}"),
        }
    }
}

async fn hostile_cookie_headers_never_panic<St: SessionStore + Clone>(store: St) {
    let server = serve(layer(cookie(), store)).await;
    let stolen = victim(&server).await;
    let browser = server.browser();
    let huge = format!("{NAME}={}", "A".repeat(60_000));
    let enormous = format!("{NAME}={}", "A".repeat(1_000_000));
    let many: String = (0..2000).map(|i| format!("{NAME}=x{i}.y; ")).collect();
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![huge.into_bytes()],
        vec![many.into_bytes()],
        vec![b"__session=\xff\xfe\x80; a=\xc3".to_vec()],
        vec![format!("{NAME}=../../etc/passwd.AAAA").into_bytes()],
        vec![format!("{NAME}=/etc/passwd").into_bytes()],
        vec![format!("{NAME}=\"quoted\"; {NAME}").into_bytes()],
        vec![format!("{NAME}=%00%2e%2e.x").into_bytes()],
        // The victim's cookie behind a forged one, and in a second header: never someone
        // else's data, and the valid one may be found.
        vec![format!("{NAME}=forged.value; {NAME}={stolen}").into_bytes()],
        (0..50)
            .map(|i| format!("{NAME}=dup{i}.sig").into_bytes())
            .collect(),
        vec![enormous.into_bytes()],
    ];
    for headers in cases {
        let mut request = http::Request::builder().uri(format!("http://{}/peek", server.addr));
        for value in &headers {
            match http::HeaderValue::from_bytes(value) {
                Ok(value) => request = request.header(header::COOKIE, value),
                Err(error) => panic!("test header rejected by http itself: {error}"),
            }
        }
        let request = match request.body(Full::new(Bytes::new())) {
            Ok(request) => request,
            Err(error) => panic!("bad test request: {error}"),
        };
        let response = browser.raw(request).await;
        let shown: String = String::from_utf8_lossy(&headers[0])
            .chars()
            .take(60)
            .collect();
        match response.status {
            // hyper refuses headers larger than its limit before the layer runs: a clear 4xx.
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {}
            StatusCode::OK => assert!(
                response.body == "none" || response.body == "2",
                "{shown}: body {:?}",
                response.body
            ),
            status => panic!("{shown}: unexpected status {status}"),
        }
    }
    // The server is still up and still serves the victim.
    let victim = server.browser();
    victim.set_cookie(NAME, &stolen);
    assert_eq!(victim.get("/peek").await.body, "2");
    // Another site's cookie with a non-ASCII value in the same header does not hide the session.
    let neighbour = format!("lang=fran\u{e7}ais; {NAME}={stolen}");
    let request = http::Request::builder()
        .uri(format!("http://{}/peek", server.addr))
        .header(header::COOKIE, neighbour.as_bytes())
        .body(Full::new(Bytes::new()));
    let request = request.unwrap_or_else(|error| panic!("bad test request: {error}"));
    assert_eq!(browser.raw(request).await.body, "2");
    // Nor does one whose value is not even UTF-8, before or after ours: the user stays logged
    // in (a fresh session here was the symptom of a bug that logged users out).
    for raw in [
        [
            &b"a=\xff\xfe\x80; "[..],
            format!("{NAME}={stolen}").as_bytes(),
        ]
        .concat(),
        [format!("{NAME}={stolen}; ").as_bytes(), &b"b=\xc3"[..]].concat(),
    ] {
        let value = http::HeaderValue::from_bytes(&raw)
            .unwrap_or_else(|error| panic!("test header rejected by http itself: {error}"));
        let request = http::Request::builder()
            .uri(format!("http://{}/peek", server.addr))
            .header(header::COOKIE, value)
            .body(Full::new(Bytes::new()));
        let request = request.unwrap_or_else(|error| panic!("bad test request: {error}"));
        let response = browser.raw(request).await;
        assert_eq!(
            response.body,
            "2",
            "{}: the session was lost",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(
            response.set_cookie(NAME),
            None,
            "the session cookie was touched"
        );
    }
}

/// A handler asking for an idle timeout of `u64::MAX` seconds gets a session that lasts: a
/// cookie with a long `Max-Age` (not 0, which would log the user out), and the user still
/// logged in on the next requests, each of which refreshes the session in the store.
async fn a_forever_idle_timeout_keeps_the_user_logged_in<St: SessionStore + Clone>(store: St) {
    let layer = layer(cookie(), store).refresh_interval(std::time::Duration::ZERO);
    let server = serve(layer).await;
    let browser = server.browser();
    let response = browser.post_form("/forever", "").await;
    assert_eq!(response.status, StatusCode::OK);
    let sent = response.set_cookie(NAME).unwrap_or_default();
    let ten_years = 10 * 365 * 86_400;
    assert!(
        max_age(&sent).is_some_and(|age| age > ten_years),
        "the cookie of a forever session: {sent:?}"
    );
    for _ in 0..2 {
        let response = browser.get("/whoami").await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (StatusCode::OK, "ada"),
            "a forever session was lost"
        );
        let renewed = response.set_cookie(NAME).unwrap_or_default();
        assert!(
            max_age(&renewed).is_some_and(|age| age > ten_years),
            "the refreshed cookie of a forever session: {renewed:?}"
        );
    }
}

/// One test per check for a store; `$make` is an async block giving the store and whatever
/// must live as long as it (the server process).
macro_rules! security_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[tokio::test]
            async fn forged_truncated_and_reused_signatures() {
                let (store, _server) = $make.await;
                super::forged_truncated_and_reused_signatures(store).await
            }
            #[tokio::test]
            async fn retired_and_foreign_secrets() {
                let (store, _server) = $make.await;
                super::retired_and_foreign_secrets(store).await
            }
            #[tokio::test]
            async fn an_old_secret_is_accepted_and_re_signed() {
                let (store, _server) = $make.await;
                super::an_old_secret_is_accepted_and_re_signed(store).await
            }
            #[tokio::test]
            async fn a_client_chosen_id_is_never_adopted() {
                let (store, _server) = $make.await;
                super::a_client_chosen_id_is_never_adopted(store).await
            }
            #[tokio::test]
            async fn regenerate_id_kills_the_old_id() {
                let (store, _server) = $make.await;
                super::regenerate_id_kills_the_old_id(store).await
            }
            #[tokio::test]
            async fn a_destroyed_session_stays_dead_when_replayed() {
                let (store, _server) = $make.await;
                super::a_destroyed_session_stays_dead_when_replayed(store).await
            }
            #[tokio::test]
            async fn cookie_attributes_are_as_configured() {
                let (store, _server) = $make.await;
                super::cookie_attributes_are_as_configured(store).await
            }
            #[tokio::test]
            async fn issued_ids_are_distinct_long_and_base64url() {
                let (store, _server) = $make.await;
                super::issued_ids_are_distinct_long_and_base64url(store).await
            }
            #[tokio::test]
            async fn a_forever_idle_timeout_keeps_the_user_logged_in() {
                let (store, _server) = $make.await;
                super::a_forever_idle_timeout_keeps_the_user_logged_in(store).await
            }
            #[tokio::test]
            async fn hostile_cookie_headers_never_panic() {
                let (store, _server) = $make.await;
                super::hostile_cookie_headers_never_panic(store).await
            }
        }
    };
}

security_suite!(memory, async { (cloakroom::MemoryStore::new(), ()) });

security_suite!(fs, async {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("no temporary directory: {error}"),
    };
    // A directory of the store's own making: private (0700).
    match cloakroom_fs::FsStore::new(dir.path().join("sessions")) {
        Ok(store) => (store, dir),
        Err(error) => panic!("{error}"),
    }
});

security_suite!(memcache, async {
    let server = match cloakroom_testkit::MemcachedServer::start().await {
        Ok(server) => server,
        Err(error) => panic!("{error}"),
    };
    match cloakroom_memcache::MemcacheStore::builder()
        .servers([server.addr()])
        .build()
    {
        Ok(store) => (store, server),
        Err(error) => panic!("{error}"),
    }
});

async fn redis_store(url: String) -> cloakroom_redis::RedisStore {
    match cloakroom_redis::RedisStore::builder()
        .url(&url)
        .build()
        .await
    {
        Ok(store) => store,
        Err(error) => panic!("cannot connect to {url}: {error}"),
    }
}

security_suite!(redis, async {
    let server = match cloakroom_testkit::RedisServer::start().await {
        Ok(server) => server,
        Err(error) => panic!("{error}"),
    };
    (crate::redis_store(server.url()).await, server)
});

security_suite!(redis_cluster, async {
    let cluster = match cloakroom_testkit::RedisCluster::start().await {
        Ok(cluster) => cluster,
        Err(error) => panic!("{error}"),
    };
    let ports = cluster.ports();
    let url = format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    (crate::redis_store(url).await, cluster)
});
