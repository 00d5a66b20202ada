//! Session ids never reach a log. Every store is driven, through the layer, into each error
//! it can be made to report (an outage, data that is not a session, a session file that
//! cannot be written), with every `tracing` event captured; no id of any session seen may
//! appear in what was logged.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::MemoryStore;
use cloakroom_tests::app::{NAME, cookie, layer, serve};
use cloakroom_tests::{Browser, Delays, Instrumented, TestServer};

/// Everything logged, by every thread, since the test began.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide capture (a global subscriber: stores log from their own tasks and
/// blocking threads too).
fn captured() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            captured
        })
        .clone()
}

/// A logged-in browser on `server`, and the id its cookie carries.
async fn logged_in(server: &TestServer) -> (Browser, String) {
    let browser = server.browser();
    assert_eq!(browser.post_form("/login", "").await.body, "logged in");
    browser.get("/count").await;
    let value = browser.cookie(NAME).unwrap_or_default();
    let id = value.split('.').next().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 32, "no session id in {value:?}");
    (browser, id)
}

/// What the layer answered for `path`, which must be an error.
async fn fails(browser: &Browser, path: &str) -> StatusCode {
    let status = browser.get(path).await.status;
    assert!(status.is_server_error(), "{path} succeeded: {status}");
    status
}

fn redis_key(id: &str) -> String {
    format!("session:{id}")
}

async fn redis_admin(url: &str) -> fred::clients::Client {
    use fred::interfaces::ClientLike;
    let config = fred::types::config::Config::from_url(url).expect("a Redis URL");
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.expect("the admin client connects");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_id_reaches_a_log_on_any_error_of_any_store() {
    let captured = captured();
    let mut ids = Vec::new();

    // Memory: a full store refuses a new session.
    let full = MemoryStore::builder().max_sessions(1).build();
    let server = serve(layer(cookie(), full)).await;
    ids.push(logged_in(&server).await.1);
    assert_eq!(
        server.browser().post_form("/login", "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Files: a corrupt session file, then a directory that is gone (every write fails).
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sessions = dir.path().join("sessions");
    let fs = cloakroom_fs::FsStore::new(&sessions).expect("the store");
    let server = serve(layer(cookie(), fs)).await;
    let (browser, id) = logged_in(&server).await;
    std::fs::write(sessions.join(format!("{id}.json")), "garbage").unwrap_or_default();
    fails(&browser, "/peek").await;
    ids.push(id);
    let (browser, id) = logged_in(&server).await;
    std::fs::remove_dir_all(&sessions).unwrap_or_default();
    std::fs::write(&sessions, "not a directory").unwrap_or_default();
    fails(&browser, "/count").await;
    ids.push(id);

    // memcached: down.
    let mut memcached = cloakroom_testkit::MemcachedServer::start()
        .await
        .expect("memcached starts");
    let memcache = cloakroom_memcache::MemcacheStore::builder()
        .servers([memcached.addr()])
        .timeout(Duration::from_millis(300))
        .build()
        .expect("the store");
    let server = serve(layer(cookie(), memcache)).await;
    let (browser, id) = logged_in(&server).await;
    memcached.stop();
    fails(&browser, "/count").await;
    ids.push(id);

    // Redis: another program's data under a session's key, then down.
    let mut redis = cloakroom_testkit::RedisServer::start()
        .await
        .expect("redis-server starts");
    let store = cloakroom_redis::RedisStore::builder()
        .url(redis.url())
        .command_timeout(Duration::from_millis(300))
        .local_cache(0)
        .build()
        .await
        .expect("the store connects");
    let server = serve(layer(cookie(), store)).await;
    let (browser, id) = logged_in(&server).await;
    let admin = redis_admin(&redis.url()).await;
    let _: Result<(), _> = fred::interfaces::KeysInterface::set(
        &admin,
        redis_key(&id),
        "not a session",
        None,
        None,
        false,
    )
    .await;
    assert_eq!(
        fails(&browser, "/peek").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    ids.push(id);
    let (browser, id) = logged_in(&server).await;
    redis.stop();
    fails(&browser, "/count").await;
    ids.push(id);

    let logs = captured.text();
    assert!(
        logs.matches("session store failed").count() >= 6,
        "the errors were not logged: {logs}"
    );
    for id in &ids {
        assert!(
            !logs.contains(id.as_str()),
            "a session id reached the log:\n{}",
            logs.lines()
                .filter(|line| line.contains(id.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A logout whose delete fails after the response gave up on it (the timeout passed, the
/// client got a 503) is not lost silently: the background task logs the failure, still
/// without the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_that_fails_after_the_timeout_is_logged() {
    let captured = captured();
    let store = Instrumented::new(MemoryStore::new()).always_waiting();
    let timeout = Duration::from_millis(100);
    let server = serve(layer(cookie(), store.clone()).store_timeout(timeout)).await;
    let (browser, id) = logged_in(&server).await;
    store.set_delay(Delays {
        deletes: timeout * 3,
        ..Delays::default()
    });
    // The store goes down while the delete waits: it fails once it goes on.
    let outage = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout / 2).await;
            store.set_down(true);
        })
    };
    let response = browser.post_form("/logout", "").await;
    let _ = outage.await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(timeout * 5).await;
    let logs = captured.text();
    let late: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("after the response had given up"))
        .collect();
    assert!(
        late.iter().any(|line| line.contains("operation=delete")),
        "the late failure was not logged:\n{logs}"
    );
    assert!(!logs.contains(id.as_str()), "a session id reached the log");
}
