//! The hyper, axum + Redis, axum + PostgreSQL, API-token and login-page examples, run as built
//! and driven over real HTTP.

use cloakroom_tests::app::max_age;
use cloakroom_tests::{Browser, Example};

/// A fresh `redis-server` of the test's own.
async fn redis() -> cloakroom_testkit::RedisServer {
    cloakroom_testkit::RedisServer::start()
        .await
        .unwrap_or_else(|error| panic!("redis-server does not start: {error}"))
}

#[tokio::test]
async fn hyper_service_fn_counts_per_session() {
    let example = Example::start("hyper_service_fn").await;
    let browser = Browser::new(example.addr);
    assert_eq!(browser.get("/").await.body, "visit 1\n");
    assert_eq!(browser.get("/").await.body, "visit 2\n");
    assert_eq!(Browser::new(example.addr).get("/").await.body, "visit 1\n");
}

#[tokio::test]
async fn axum_redis_keeps_sessions_in_redis_with_secure_cookies_and_matching_ttl() {
    let redis = redis().await;
    let url = redis.url();
    let secrets =
        "first secret of at least thirty-two bytes,older secret of at least thirty-two bytes";
    let example = Example::start_with_env(
        "axum_redis",
        &[("REDIS_URL", url.as_str()), ("SESSION_SECRETS", secrets)],
    )
    .await;
    let browser = Browser::new(example.addr);
    let first = browser.get("/").await;
    assert_eq!(first.body, "visit 1\n");
    let set_cookie = first.set_cookie("__Host-session").unwrap_or_default();
    assert!(
        set_cookie.contains("; Secure") && set_cookie.contains("; HttpOnly"),
        "{set_cookie}"
    );
    assert_eq!(max_age(&set_cookie), Some(7 * 24 * 3600));
    assert_eq!(browser.get("/").await.body, "visit 2\n");

    // The session is in Redis under the example's prefix, with the same TTL as Max-Age.
    let value = browser.cookie("__Host-session").unwrap_or_default();
    let id = value.split('.').next().unwrap_or_default();
    let key = format!("myapp:session:{id}");
    let ttl = redis_pttl(redis.port(), &key).await;
    assert!(
        (7 * 24 * 3600 * 1000 - 10_000..=7 * 24 * 3600 * 1000).contains(&ttl),
        "PTTL {ttl}"
    );
}

/// README.md's Production section is this program.
#[test]
fn the_readme_shows_the_production_program() {
    cloakroom_tests::assert_readme_shows("examples/axum_redis.rs");
}

/// README.md's PostgreSQL section is this program.
#[test]
fn the_readme_shows_the_postgres_program() {
    cloakroom_tests::assert_readme_shows("examples/axum_postgres.rs");
}

/// A port it cannot listen on is an error naming it, once Redis is reachable.
#[tokio::test]
async fn axum_redis_names_a_port_it_cannot_listen_on() {
    let redis = redis().await;
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("SESSION_SECRETS", "a secret of at least thirty-two bytes"),
        ("PORT", "abc"),
    ];
    let (status, stderr) = Example::exit("axum_redis", &env).await;
    assert!(!status.success());
    assert!(
        stderr.starts_with("error: cannot listen on 0.0.0.0:abc: "),
        "{stderr}"
    );
}

/// The memory-store examples too: a `PORT` they cannot listen on is an error naming it, not
/// a silent fall back to the default port.
#[tokio::test]
async fn every_example_names_a_port_it_cannot_listen_on() {
    for name in [
        "api_token",
        "hyper_service_fn",
        "login_page",
        "tonic_counter",
    ] {
        let (status, stderr) = Example::exit(name, &[("PORT", "abc")]).await;
        assert!(!status.success(), "{name}");
        assert!(
            stderr.contains("cannot listen on 127.0.0.1:abc: "),
            "{name}: {stderr}"
        );
    }
}

/// The PostgreSQL example creates its table, keeps each browser's session in it, and a
/// restarted app (a new process, the same database) carries on where the old one stopped.
#[tokio::test]
async fn axum_postgres_keeps_sessions_in_postgres_across_a_restart() {
    let postgres = cloakroom_testkit::PostgresServer::start()
        .await
        .expect("postgres starts");
    let url = postgres.url();
    let env = [("DATABASE_URL", url.as_str())];
    let example = Example::start_with_env("axum_postgres", &env).await;
    let browser = Browser::new(example.addr);
    let first = browser.get("/").await;
    assert_eq!(first.body, "visit 1\n");
    let set_cookie = first.set_cookie("__Host-session").unwrap_or_default();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert_eq!(browser.get("/").await.body, "visit 2\n");
    let cookie = browser.cookie("__Host-session").unwrap_or_default();
    drop(example);

    let again = Example::start_with_env("axum_postgres", &env).await;
    let browser = Browser::new(again.addr);
    browser.set_cookie("__Host-session", &cookie);
    assert_eq!(browser.get("/").await.body, "visit 3\n");
    assert_eq!(Browser::new(again.addr).get("/").await.body, "visit 1\n");
}

/// `PTTL key` over a raw connection.
async fn redis_pttl(port: u16, key: &str) -> i64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return -3;
    };
    let command = format!("*2\r\n$4\r\nPTTL\r\n${}\r\n{key}\r\n", key.len());
    if stream.write_all(command.as_bytes()).await.is_err() {
        return -3;
    }
    let mut reply = [0u8; 64];
    let read = stream.read(&mut reply).await.unwrap_or(0);
    String::from_utf8_lossy(&reply[..read])
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or(-3)
}

#[tokio::test]
async fn login_page_flow_over_http() {
    let example = Example::start("login_page").await;
    let browser = Browser::new(example.addr);
    let response = browser.get("/account").await;
    assert_eq!(
        (
            response.status.as_u16(),
            response.header("location").as_deref()
        ),
        (303, Some("/login"))
    );

    let wrong = browser
        .post_form("/login", "username=ada&password=nope")
        .await;
    assert_eq!(wrong.header("location").as_deref(), Some("/login"));
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("Wrong username or password.")
    );

    let before = browser.cookie("__session").unwrap_or_default();
    let ok = browser
        .post_form("/login", "username=ada&password=secret")
        .await;
    assert_eq!(ok.header("location").as_deref(), Some("/account"));
    assert_ne!(
        browser.cookie("__session").unwrap_or_default(),
        before,
        "login kept the old id"
    );
    let page = browser.get("/account").await.body;
    assert!(
        page.contains(r#"<p id="flash">Welcome, ada!</p>"#)
            && page.contains(r#"<b id="user">ada</b>"#),
        "{page}"
    );
    assert!(
        !browser.get("/account").await.body.contains("Welcome"),
        "the flash showed twice"
    );

    browser.post_form("/logout", "").await;
    assert_eq!(
        browser.get("/account").await.header("location").as_deref(),
        Some("/login")
    );
}

/// A start-up that cannot work says why in one line, naming the variable and, for a secret,
/// its position; never a `Debug` dump.
#[tokio::test]
async fn axum_redis_says_what_is_wrong_with_its_configuration() {
    let good =
        "first secret of at least thirty-two bytes,older secret of at least thirty-two bytes";
    let cases = [
        (
            vec![("REDIS_URL", "redis://127.0.0.1:1")],
            "SESSION_SECRETS is not set",
        ),
        (
            vec![
                ("REDIS_URL", "redis://127.0.0.1:1"),
                (
                    "SESSION_SECRETS",
                    "first secret of at least thirty-two bytes,",
                ),
            ],
            "secret #2 of SESSION_SECRETS is 0 bytes",
        ),
        (
            vec![
                ("REDIS_URL", "http://127.0.0.1:6379"),
                ("SESSION_SECRETS", good),
            ],
            "\"http\" is not a Redis URL scheme",
        ),
        (vec![("SESSION_SECRETS", good)], "set REDIS_URL"),
        // Redis down at start-up: the app does not start, and says where it looked.
        (
            vec![
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("SESSION_SECRETS", good),
            ],
            "could not connect to Redis at 127.0.0.1:1",
        ),
    ];
    for (env, expected) in cases {
        let (status, stderr) = cloakroom_tests::Example::exit("axum_redis", &env).await;
        assert!(!status.success(), "{env:?} started");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains(" { "), "a Debug dump: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// The API example as its client uses it: log in, keep the token the responses carry, call
/// with it, log out; no cookie either way.
#[tokio::test]
async fn api_token_client_logs_in_and_keeps_its_token() {
    use bytes::Bytes;
    use http_body_util::Full;

    let example = Example::start("api_token").await;
    let client = Browser::new(example.addr);
    let call = |method: &str, path: &str, token: Option<&str>| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", example.addr));
        if let Some(token) = token {
            request = request.header("x-session-token", token);
        }
        request
            .body(Full::new(Bytes::new()))
            .expect("a valid request")
    };
    let anonymous = client.raw(call("GET", "/me", None)).await;
    assert_eq!(anonymous.status.as_u16(), 401);

    let login = client.raw(call("POST", "/login?user=ada", None)).await;
    assert_eq!(login.body, "signed in as ada\n");
    assert!(login.set_cookies().is_empty(), "{:?}", login.set_cookies());
    let mut token = login.header("x-session-token").expect("a token at login");
    for _ in 0..3 {
        let me = client.raw(call("GET", "/me", Some(&token))).await;
        assert_eq!(me.body, "ada\n");
        if let Some(renewed) = me.header("x-session-token") {
            token = renewed;
        }
    }
    let logout = client.raw(call("POST", "/logout", Some(&token))).await;
    assert_eq!(logout.header("x-session-token").as_deref(), Some(""));
    let after = client.raw(call("GET", "/me", Some(&token))).await;
    assert_eq!(after.status.as_u16(), 401, "the token outlived the logout");
}
