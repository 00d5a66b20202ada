//! A user's sessions end to end, over real HTTP: signing in gives the session an owner and a
//! new id; "your devices" lists the owner's sessions; revoking one, the others or all signs
//! those browsers out on their next request, through another app instance too; a logout
//! leaves the list. On every store with an owner index.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::store::OwnerIndex;
use cloakroom::{AuditEvent, AuditKind, MemoryStore, SessionLayer};
use cloakroom_fs::FsStore;
use cloakroom_redis::RedisStore;
use cloakroom_testkit::{RedisCluster, RedisServer};
use cloakroom_tests::app::{NAME, cookie, id_from, layer, serve_owned};
use cloakroom_tests::{Browser, TestServer, cluster_url};

/// One line of `/devices`: the session's handle, whether it is the current one, its user agent.
#[derive(Debug, PartialEq)]
struct Device {
    handle: String,
    current: bool,
    user_agent: String,
    address: String,
}

async fn devices(browser: &Browser) -> Vec<Device> {
    let response = browser.get("/devices").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response
        .body
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            Device {
                handle: next(),
                current: next() == "true",
                user_agent: next(),
                address: next(),
            }
        })
        .collect()
}

async fn owner(browser: &Browser) -> String {
    browser.get("/owner").await.body
}

async fn sign_in(browser: &Browser, owner: &str) {
    let response = browser.post_form(&format!("/sign-in/{owner}"), "").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

/// Two app instances over one store's data (`first` and `second`), and every flow of a user's
/// sessions through both. A revoke through one instance holds on the other once `staleness`
/// has passed: the bound the store's README gives (Redis's local copy: its invalidation's
/// trip), zero for stores that keep no copy.
async fn devices_list_and_revoke<St: OwnerIndex>(
    first: SessionLayer<St>,
    second: SessionLayer<St>,
    staleness: Duration,
) {
    let (one, two) = (
        serve_owned(first.keep_user_agent(true)).await,
        serve_owned(second.keep_user_agent(true)).await,
    );
    let laptop = one.browser().with_user_agent("Laptop");
    let phone = two.browser().with_user_agent("Phone");
    let stranger = two.browser().with_user_agent("Stranger");

    // Signing in moves an anonymous session to a new id; the old one is worth nothing.
    assert_eq!(laptop.get("/count").await.body, "1");
    let before = laptop.cookie(NAME).expect("an anonymous session");
    sign_in(&laptop, "user:42").await;
    let after = laptop.cookie(NAME).expect("a signed-in session");
    assert_ne!(id_from(&before), id_from(&after), "signing in kept the id");
    let planted = one.browser();
    planted.set_cookie(NAME, &before);
    assert_eq!(
        owner(&planted).await,
        "anonymous",
        "the pre-login id is signed in"
    );
    assert_eq!(owner(&laptop).await, "user:42");
    assert_eq!(
        laptop.get("/peek").await.body,
        "1",
        "signing in lost the session's data"
    );

    sign_in(&phone, "user:42").await;
    sign_in(&stranger, "user:7").await;

    // Each device sees both sessions, the latest login first, its own marked.
    let seen = devices(&laptop).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].user_agent.as_str(), seen[0].current),
        ("Phone", false)
    );
    assert_eq!(
        (seen[1].user_agent.as_str(), seen[1].current),
        ("Laptop", true)
    );
    assert_eq!(
        seen[0].address, "-",
        "an address was kept without keep_address"
    );
    let from_phone = devices(&phone).await;
    assert_eq!(from_phone.len(), 2);
    assert!(from_phone[0].current && !from_phone[1].current);
    assert_eq!(from_phone[0].handle, seen[0].handle);
    for device in &seen {
        assert!(
            !after.contains(&device.handle) && !device.handle.contains(&after[..8]),
            "a handle shows the session id"
        );
    }

    // "Sign out all other devices" from the laptop, on instance one; the phone's next request,
    // on instance two (which has the phone's session at hand), is signed out.
    assert_eq!(phone.get("/whoami").await.body, "user:42");
    assert_eq!(laptop.post_form("/revoke-others", "").await.body, "1");
    tokio::time::sleep(staleness).await;
    assert_eq!(
        owner(&phone).await,
        "anonymous",
        "a revoked session was served"
    );
    assert_eq!(phone.get("/whoami").await.body, "anonymous");
    assert_eq!(
        owner(&laptop).await,
        "user:42",
        "revoke-others signed out the current device"
    );
    assert_eq!(
        owner(&stranger).await,
        "user:7",
        "another owner's session was revoked"
    );
    assert_eq!(devices(&laptop).await.len(), 1);

    // Sign out one device by its handle; a second revoke of it finds nothing.
    sign_in(&phone, "user:42").await;
    let seen = devices(&laptop).await;
    let other = seen
        .iter()
        .find(|device| !device.current)
        .expect("the phone is listed again");
    let path = format!("/revoke/{}", other.handle);
    assert_eq!(laptop.post_form(&path, "").await.body, "true");
    assert_eq!(laptop.post_form(&path, "").await.body, "false");
    tokio::time::sleep(staleness).await;
    assert_eq!(owner(&phone).await, "anonymous");

    // One owner cannot revoke another's session, even knowing its handle.
    let theirs = devices(&stranger).await;
    assert_eq!(theirs.len(), 1);
    let path = format!("/revoke/{}", theirs[0].handle);
    assert_eq!(laptop.post_form(&path, "").await.body, "false");
    assert_eq!(owner(&stranger).await, "user:7");
    let garbage = laptop.post_form("/revoke/..%2F..%2Fetc", "").await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);

    // "Log out everywhere", from outside any of the owner's sessions.
    sign_in(&phone, "user:42").await;
    let admin = two.browser();
    assert_eq!(admin.post_form("/revoke-all/user:42", "").await.body, "2");
    tokio::time::sleep(staleness).await;
    assert_eq!(owner(&laptop).await, "anonymous");
    assert_eq!(owner(&phone).await, "anonymous");
    assert_eq!(admin.post_form("/revoke-all/user:42", "").await.body, "0");

    // A logout leaves the list at once.
    assert_eq!(devices(&stranger).await.len(), 1);
    stranger.post_form("/logout", "").await;
    tokio::time::sleep(staleness).await;
    sign_in(&laptop, "user:7").await;
    assert_eq!(
        devices(&laptop).await.len(),
        1,
        "a logged-out session is still listed"
    );
    assert_eq!(admin.post_form("/revoke-all/user:7", "").await.body, "1");
}

#[tokio::test]
async fn memory_store() {
    let store = MemoryStore::new();
    devices_list_and_revoke(
        layer(cookie(), store.clone()),
        layer(cookie(), store),
        Duration::ZERO,
    )
    .await;
}

#[tokio::test]
async fn file_store_two_instances() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sessions = dir.path().join("sessions");
    let store = || FsStore::new(&sessions).expect("the file store opens");
    devices_list_and_revoke(
        layer(cookie(), store()),
        layer(cookie(), store()),
        Duration::ZERO,
    )
    .await;
}

/// How long after a call returned another instance's Redis local copy may still show the state
/// before it (`crates/cloakroom-redis/README.md`).
const STALENESS: Duration = Duration::from_millis(100);

async fn redis_store(url: &str) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .build()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"))
}

#[tokio::test]
async fn redis_two_instances_with_local_copies() {
    let server = RedisServer::start().await.expect("redis-server starts");
    let (first, second) = (
        redis_store(&server.url()).await,
        redis_store(&server.url()).await,
    );
    devices_list_and_revoke(layer(cookie(), first), layer(cookie(), second), STALENESS).await;
}

/// Without the local copy, every read asks Redis: a revoke holds on the other instance at once.
#[tokio::test]
async fn redis_two_instances_without_local_copies() {
    let server = RedisServer::start().await.expect("redis-server starts");
    let store = || async {
        RedisStore::builder()
            .url(server.url())
            .local_cache(0)
            .build()
            .await
            .expect("the Redis store connects")
    };
    let (first, second) = (store().await, store().await);
    devices_list_and_revoke(
        layer(cookie(), first),
        layer(cookie(), second),
        Duration::ZERO,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_two_instances() {
    let cluster = RedisCluster::start().await.expect("the cluster starts");
    let url = cluster_url(&cluster);
    let (first, second) = (redis_store(&url).await, redis_store(&url).await);
    devices_list_and_revoke(layer(cookie(), first), layer(cookie(), second), STALENESS).await;
}

async fn postgres_store(
    server: &cloakroom_testkit::PostgresServer,
) -> cloakroom_sql::PostgresStore {
    let store = cloakroom_sql::PostgresStore::builder()
        .url(server.url())
        .build()
        .await
        .expect("the PostgreSQL store connects");
    store.migrate().await.expect("migrate");
    store
}

async fn sqlite_store(path: &std::path::Path) -> cloakroom_sql::SqliteStore {
    let store = cloakroom_sql::SqliteStore::builder()
        .path(path)
        .build()
        .await
        .expect("the SQLite store opens");
    store.migrate().await.expect("migrate");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances() {
    let server = cloakroom_testkit::PostgresServer::start()
        .await
        .expect("PostgreSQL starts");
    let (first, second) = (postgres_store(&server).await, postgres_store(&server).await);
    devices_list_and_revoke(
        layer(cookie(), first),
        layer(cookie(), second),
        Duration::ZERO,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_instances() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("sessions.db");
    let (first, second) = (sqlite_store(&path).await, sqlite_store(&path).await);
    devices_list_and_revoke(
        layer(cookie(), first),
        layer(cookie(), second),
        Duration::ZERO,
    )
    .await;
}

/// The audit hook hears every login, logout and revoke with the owner and the session's short
/// hash, and never the session id.
#[tokio::test]
async fn audit_events_name_the_owner_and_never_the_id() {
    let events: Arc<Mutex<Vec<AuditEvent>>> = Arc::default();
    let heard = Arc::clone(&events);
    let layer = layer(cookie(), MemoryStore::new()).on_audit(move |event| {
        heard.lock().expect("the events").push(event.clone());
    });
    let server: TestServer = serve_owned(layer).await;
    let taken = || std::mem::take(&mut *events.lock().expect("the events"));

    let browser = server.browser();
    sign_in(&browser, "user:1").await;
    let first = browser.cookie(NAME).expect("a session");
    let events_of_login = taken();
    assert_eq!(events_of_login.len(), 1, "{events_of_login:?}");
    assert_eq!(events_of_login[0].kind, AuditKind::Created);
    assert_eq!(events_of_login[0].owner.as_deref(), Some("user:1"));
    assert_eq!(
        events_of_login[0].session,
        Some(id_from(&first).short_hash())
    );

    sign_in(&browser, "user:1").await;
    let second = browser.cookie(NAME).expect("a session");
    let again = taken();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].kind, AuditKind::Regenerated);
    assert_eq!(again[0].session, Some(id_from(&second).short_hash()));
    assert_eq!(again[0].replaces, Some(id_from(&first).short_hash()));

    let phone = server.browser();
    sign_in(&phone, "user:1").await;
    taken();
    assert_eq!(browser.post_form("/revoke-others", "").await.body, "1");
    let revoked = taken();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].kind, AuditKind::Revoked);
    assert_eq!(revoked[0].owner.as_deref(), Some("user:1"));
    let phone_id = phone.cookie(NAME).map(|value| id_from(&value).short_hash());
    assert_eq!(revoked[0].session, phone_id);

    browser.post_form("/logout", "").await;
    let logout = taken();
    assert_eq!(logout.len(), 1, "{logout:?}");
    assert_eq!(logout[0].kind, AuditKind::Destroyed);
    assert_eq!(logout[0].owner.as_deref(), Some("user:1"));
    assert_eq!(logout[0].session, Some(id_from(&second).short_hash()));

    // An anonymous session is created without an owner; a read is no event.
    assert_eq!(browser.get("/count").await.body, "1");
    browser.get("/peek").await;
    let anonymous = taken();
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    assert_eq!(
        (anonymous[0].kind, anonymous[0].owner.as_deref()),
        (AuditKind::Created, None)
    );
}

/// The address is kept only through `keep_address`, as the application finds it (here, from
/// a header a proxy would set), cut to 64 bytes; the user agent only through
/// `keep_user_agent`.
#[tokio::test]
async fn the_address_is_kept_as_the_application_finds_it() {
    let layer = layer(cookie(), MemoryStore::new()).keep_address(|headers, _| {
        let forwarded = headers.get("user-agent")?.to_str().ok()?;
        Some(forwarded.to_owned())
    });
    let server = serve_owned(layer).await;
    let browser = server.browser().with_user_agent("203.0.113.9");
    sign_in(&browser, "user:3").await;
    let seen = devices(&browser).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].address, "203.0.113.9");
    assert_eq!(
        seen[0].user_agent, "-",
        "a user agent was kept without keep_user_agent"
    );
    let long = server.browser().with_user_agent(&"9".repeat(100));
    sign_in(&long, "user:4").await;
    assert_eq!(devices(&long).await[0].address, "9".repeat(64));
}

/// An owner name a store cannot index is the handler's error: no login, no cookie.
#[tokio::test]
async fn an_owner_name_too_long_is_refused() {
    let server = serve_owned(layer(cookie(), MemoryStore::new())).await;
    let browser = server.browser();
    let response = browser
        .post_form(&format!("/sign-in/{}", "x".repeat(300)), "")
        .await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.set_cookie(NAME).is_none());
    assert_eq!(owner(&browser).await, "anonymous");
}

/// "Sign out the others" needs a signed-in session.
#[tokio::test]
async fn revoking_others_without_an_owner_is_an_error() {
    let server = serve_owned(layer(cookie(), MemoryStore::new())).await;
    let response = server.browser().post_form("/revoke-others", "").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
}

/// A request that loaded a session before "log out everywhere" returned, and moves it to a new
/// id after (a step-up re-authentication, say), does not bring the session back.
async fn an_in_flight_regenerate_does_not_undo_a_revoke<St: OwnerIndex>(store: St) {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let (loaded, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = {
        let (loaded, go) = (Arc::clone(&loaded), Arc::clone(&go));
        move |session: cloakroom::Session| async move {
            let _ = session.owner();
            loaded.notify_one();
            go.notified().await;
            session.regenerate_id()
        }
    };
    let layer = layer(cookie(), store);
    let owners = layer.owners();
    let app = cloakroom_tests::app::routes()
        .merge(cloakroom_tests::app::owner_routes(owners.clone()))
        .route("/slow-regenerate", axum::routing::post(slow))
        .layer(layer);
    let server = TestServer::start(app).await;
    let stolen = server.browser();
    sign_in(&stolen, "user:1").await;
    let in_flight = {
        let stolen = stolen.clone();
        tokio::spawn(async move { stolen.post_form("/slow-regenerate", "").await })
    };
    loaded.notified().await;
    owners.revoke_all("user:1").await.expect("the revoke");
    go.notify_one();
    in_flight.await.expect("the in-flight request");
    assert_eq!(
        owner(&stolen).await,
        "anonymous",
        "a revoked session came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_regenerate_does_not_undo_a_revoke_on_any_store() {
    an_in_flight_regenerate_does_not_undo_a_revoke(MemoryStore::new()).await;
    let server = RedisServer::start().await.expect("redis-server starts");
    an_in_flight_regenerate_does_not_undo_a_revoke(redis_store(&server.url()).await).await;
    let memcached = cloakroom_testkit::MemcachedServer::start()
        .await
        .expect("memcached starts");
    let store = cloakroom_memcache::MemcacheStore::builder()
        .servers([memcached.addr()])
        .build()
        .expect("the memcached store");
    an_in_flight_regenerate_does_not_undo_a_revoke(store).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fs = FsStore::new(dir.path().join("sessions")).expect("the file store opens");
    an_in_flight_regenerate_does_not_undo_a_revoke(fs).await;
    let postgres = cloakroom_testkit::PostgresServer::start()
        .await
        .expect("PostgreSQL starts");
    an_in_flight_regenerate_does_not_undo_a_revoke(postgres_store(&postgres).await).await;
    let sqlite = sqlite_store(&dir.path().join("sessions.db")).await;
    an_in_flight_regenerate_does_not_undo_a_revoke(sqlite).await;
}

/// "Log out everywhere, and stay signed in here": a login in the same request as a revoke of
/// every session of its owner is honoured (a login never depends on the session it started
/// from still being there).
#[tokio::test]
async fn a_login_after_revoking_everything_in_the_same_request_stays_signed_in() {
    let layer = layer(cookie(), MemoryStore::new());
    let owners = layer.owners();
    let everywhere = move |session: cloakroom::Session| async move {
        owners.revoke_all("user:5").await.expect("the revoke");
        session.set_owner("user:5")
    };
    let app = cloakroom_tests::app::routes()
        .merge(cloakroom_tests::app::owner_routes(layer.owners()))
        .route("/everywhere", axum::routing::post(everywhere))
        .layer(layer);
    let server = TestServer::start(app).await;
    let browser = server.browser();
    sign_in(&browser, "user:5").await;
    let other = server.browser();
    sign_in(&other, "user:5").await;
    let response = browser.post_form("/everywhere", "").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(owner(&browser).await, "user:5", "the login was dropped");
    assert_eq!(owner(&other).await, "anonymous");
    assert_eq!(devices(&browser).await.len(), 1);
}
