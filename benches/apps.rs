//! The apps the benchmarks compare: the same three routes with no session layer, with
//! cloakroom, and with tower-sessions, on the memory store, Redis, PostgreSQL or SQLite
//! (tower-sessions-sqlx-store for tower-sessions, on a pool of the same settings).
//!
//! - `GET /write`: reads `counter` and writes `counter + 1` (creates the session if needed);
//! - `GET /read`: reads `counter` only; the idle expiry is refreshed (cloakroom once per
//!   refresh interval, or on every request in the `cloakroom-every` flavor; tower-sessions
//!   needs `with_always_save(true)` for it, which these apps set);
//! - `GET /create`: writes `counter` into a new session (the client sends no cookie);
//! - `GET /untouched`: does not use the session;
//! - `GET /pad/{bytes}`: sets `pad` to a string of that many bytes and `counter` to 0 (a big
//!   session, which `/write` then changes by one key);
//! - `GET /stats` (cloakroom on Redis): the local copy's hits and misses so far;
//! - `GET /key/{i}`: sets the key `k{i}` (the concurrent writers of one session), and
//!   `GET /keys`: how many of `k0` .. `k999` the session holds.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
use cloakroom_redis::RedisStore;
use http::Request;
use http::header::{COOKIE, SET_COOKIE};
use tower::ServiceExt as _;

/// Which session library an app uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// No session layer at all: the ceiling.
    NoLayer,
    /// cloakroom's `SessionLayer` as configured by default: the expiry is refreshed (and the
    /// cookie re-sent) once per refresh interval, 60 s.
    Cloakroom,
    /// cloakroom's `SessionLayer` refreshing the expiry and re-sending the cookie on every
    /// request (`refresh_interval(Duration::ZERO)`), as tower-sessions' `always_save` does.
    CloakroomEvery,
    /// tower-sessions' `SessionManagerLayer`.
    TowerSessions,
}

impl Flavor {
    /// Every flavor, in the order they are run and printed.
    pub const ALL: [Flavor; 4] = [
        Flavor::NoLayer,
        Flavor::Cloakroom,
        Flavor::CloakroomEvery,
        Flavor::TowerSessions,
    ];

    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoLayer => "no-layer",
            Self::Cloakroom => "cloakroom",
            Self::CloakroomEvery => "cloakroom-every",
            Self::TowerSessions => "tower-sessions",
        }
    }

    /// The flavor called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|flavor| flavor.name() == name)
    }
}

/// `app` as `axum::serve` runs it: its handlers turned into services once. A bare `Router`
/// called as a service does that (and builds every layer's service) on each request.
pub fn serving(app: Router) -> Router {
    app.with_state(())
}

/// `GET path`, with `cookie` if given.
pub fn request(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().uri(path);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request
        .body(Body::empty())
        .unwrap_or_else(|error| panic!("{error}"))
}

/// The `name=value` of the cookie a response sets, if it sets one.
pub fn set_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_owned)
}

/// Sends `GET path` with `cookie` to `app` in process and returns the `name=value` of the
/// response's cookie.
pub async fn call(app: &Router, path: &str, cookie: Option<&str>) -> Option<String> {
    let response = app
        .clone()
        .oneshot(request(path, cookie))
        .await
        .unwrap_or_else(|never| match never {});
    set_cookie(response.headers())
}

/// A session like a web app's, expiring after `idle`: a user id, a name, a CSRF token, and a
/// cart of `items`; with its payload's size in bytes (keys and JSON values).
pub fn web_session(items: usize, idle: Duration) -> (cloakroom::store::Record, usize) {
    use cloakroom::store::{Entry, Record};
    let mut record = Record::new(std::time::SystemTime::now(), idle, None);
    let cart: Vec<u32> = (0..items as u32).map(|i| 100_000 + i).collect();
    let pairs = [
        ("user_id", "123456".to_owned()),
        ("name", "\"Ada Lovelace\"".to_owned()),
        ("csrf", format!("\"{}\"", "x".repeat(43))),
        ("cart", serde_json::to_string(&cart).unwrap_or_default()),
    ];
    let payload = pairs.iter().map(|(key, json)| key.len() + json.len()).sum();
    for (key, json) in pairs {
        record
            .entries
            .insert(key.to_owned(), Entry { json, flash: false });
    }
    (record, payload)
}

/// The keys `/keys` counts: `k0` .. `k999`.
const KEYS: u32 = 1000;

/// The idle timeout every app uses.
pub const IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
const SECRET: &[u8] = b"benchmark secret, at least 32 bytes long";

/// Where an app keeps its sessions, from the `serve` command's argument: none for memory,
/// `postgres://…`, `sqlite:<path>`, or a Redis URL.
enum Backend<'a> {
    Memory,
    Redis(&'a str),
    Postgres(&'a str),
    Sqlite(&'a str),
}

impl<'a> Backend<'a> {
    fn parse(url: Option<&'a str>) -> Self {
        match url {
            None => Self::Memory,
            Some(url) if url.starts_with("postgres://") => Self::Postgres(url),
            Some(url) => match url.strip_prefix("sqlite:") {
                Some(path) => Self::Sqlite(path),
                None => Self::Redis(url),
            },
        }
    }
}

/// The connections of the SQL apps: the same pool settings for cloakroom's stores and
/// tower-sessions-sqlx-store's, so the comparison is of the stores. The pool checks each
/// connection on release; a check on acquire too would cost every call a round trip.
const SQL_CONNECTIONS: u32 = 10;

/// A PostgreSQL pool of the comparison's settings.
pub async fn postgres_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(SQL_CONNECTIONS)
        .test_before_acquire(false)
        .connect(url)
        .await
        .unwrap_or_else(|error| panic!("postgres: {error}"))
}

/// A SQLite pool of the comparison's settings: WAL mode, a 5 s busy timeout.
pub async fn sqlite_pool(path: &str) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(SQL_CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .unwrap_or_else(|error| panic!("sqlite: {error}"))
}

/// The app of `flavor` on the memory store, or on the store at `url` (Redis, `postgres://`,
/// `sqlite:<path>`).
pub async fn app(flavor: Flavor, url: Option<&str>) -> Router {
    let backend = Backend::parse(url);
    match flavor {
        Flavor::NoLayer => no_layer::routes(),
        Flavor::Cloakroom | Flavor::CloakroomEvery => {
            let cookie = SessionCookie::new("__session").secret(SECRET).secure(false);
            let refresh = if flavor == Flavor::CloakroomEvery {
                Duration::ZERO
            } else {
                cloakroom::DEFAULT_REFRESH_INTERVAL
            };
            match backend {
                Backend::Memory => ours::routes()
                    .layer(layer(cookie, MemoryStore::new()).refresh_interval(refresh)),
                Backend::Redis(url) => {
                    let store = RedisStore::builder().url(url).pool_size(1).build().await;
                    let store = store.unwrap_or_else(|error| panic!("redis: {error}"));
                    let stats = store.clone();
                    ours::routes()
                        .layer(layer(cookie, store).refresh_interval(refresh))
                        .route("/stats", get(move || async move { cache_stats(&stats) }))
                }
                Backend::Postgres(url) => {
                    let store = cloakroom_sql::PostgresStore::builder()
                        .pool(postgres_pool(url).await)
                        .build()
                        .await
                        .unwrap_or_else(|error| panic!("postgres: {error}"));
                    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
                    ours::routes().layer(layer(cookie, store).refresh_interval(refresh))
                }
                Backend::Sqlite(path) => {
                    let store = cloakroom_sql::SqliteStore::builder()
                        .pool(sqlite_pool(path).await)
                        .build()
                        .await
                        .unwrap_or_else(|error| panic!("sqlite: {error}"));
                    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
                    ours::routes().layer(layer(cookie, store).refresh_interval(refresh))
                }
            }
        }
        Flavor::TowerSessions => {
            use tower_sessions::{Expiry, SessionManagerLayer, SessionStore, cookie::time};
            let expiry = Expiry::OnInactivity(time::Duration::seconds(IDLE.as_secs() as i64));
            fn theirs<S: SessionStore + Clone>(store: S, expiry: Expiry) -> Router {
                theirs::routes().layer(
                    SessionManagerLayer::new(store)
                        .with_secure(false)
                        .with_always_save(true)
                        .with_expiry(expiry),
                )
            }
            match backend {
                Backend::Memory => theirs(tower_sessions::MemoryStore::default(), expiry),
                Backend::Redis(url) => {
                    use fred::interfaces::ClientLike;
                    let config = fred::types::config::Config::from_url(url)
                        .unwrap_or_else(|error| panic!("redis url: {error}"));
                    let pool = fred::clients::Pool::new(config, None, None, None, 1)
                        .unwrap_or_else(|error| panic!("redis pool: {error}"));
                    pool.init()
                        .await
                        .unwrap_or_else(|error| panic!("redis: {error}"));
                    theirs(tower_sessions_redis_store::RedisStore::new(pool), expiry)
                }
                Backend::Postgres(url) => {
                    let store =
                        tower_sessions_sqlx_store::PostgresStore::new(postgres_pool(url).await);
                    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
                    theirs(store, expiry)
                }
                Backend::Sqlite(path) => {
                    let store =
                        tower_sessions_sqlx_store::SqliteStore::new(sqlite_pool(path).await);
                    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
                    theirs(store, expiry)
                }
            }
        }
    }
}

/// The local copy's `hits misses` (`/stats` of cloakroom's Redis apps, outside the layer).
fn cache_stats(store: &RedisStore) -> String {
    store
        .local_cache_stats()
        .map(|stats| format!("{} {}", stats.hits, stats.misses))
        .unwrap_or_default()
}

/// cloakroom's app on an [`FsStore`](cloakroom_fs::FsStore) in `dir`.
pub async fn fs_app(dir: &std::path::Path) -> Router {
    let cookie = SessionCookie::new("__session").secret(SECRET).secure(false);
    // A directory of the store's own making: private (0700).
    let store = cloakroom_fs::FsStore::new(dir.join("sessions"))
        .unwrap_or_else(|error| panic!("fs: {error}"));
    ours::routes().layer(layer(cookie, store))
}

/// cloakroom's app on a [`CookieStore`](cloakroom_cookie::CookieStore).
pub fn cookie_app() -> Router {
    let cookie = SessionCookie::new("__session").secret(SECRET).secure(false);
    let store = cloakroom_cookie::CookieStore::new(&cookie).unwrap_or_else(|e| panic!("{e}"));
    ours::routes().layer(layer(cookie, store))
}

/// The output of `future` if it is ready at its first poll (the cookie and memory stores
/// never wait), `None` if it is not.
pub fn ready<F: std::future::Future>(future: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Sealing and opening a typical session with the cookie store, as two closures to time.
pub fn seal_and_open() -> (impl Fn() -> bool, impl Fn() -> bool) {
    use cloakroom::store::{Entry, Record, SessionStore};
    let cookie = SessionCookie::new("__session").secret(SECRET);
    let store = std::sync::Arc::new(
        cloakroom_cookie::CookieStore::new(&cookie).unwrap_or_else(|e| panic!("{e}")),
    );
    let mut record = Record::new(std::time::SystemTime::now(), IDLE, None);
    for (key, json) in [
        ("user_id", "123456"),
        ("name", "\"Ada Lovelace\""),
        ("csrf", "\"0123456789abcdef0123456789abcdef\""),
    ] {
        record.entries.insert(
            key.to_owned(),
            Entry {
                json: json.to_owned(),
                flash: false,
            },
        );
    }
    let sealed = ready(store.create(&record)).and_then(Result::ok);
    let sealed = sealed.unwrap_or_else(|| panic!("seal failed"));
    let sealer = std::sync::Arc::clone(&store);
    let seal = move || ready(sealer.create(&record)).is_some_and(|r| r.is_ok());
    let open = move || ready(store.load(&sealed)).is_some_and(|r| matches!(r, Ok(Some(_))));
    (seal, open)
}

fn layer<St: cloakroom::SessionStore>(cookie: SessionCookie, store: St) -> SessionLayer<St> {
    SessionLayer::new(cookie, store)
        .unwrap_or_else(|error| panic!("layer: {error}"))
        .idle_timeout(IDLE)
}

mod no_layer {
    use super::*;

    pub(super) fn routes() -> Router {
        Router::new()
            .route("/read", get(|| async { "0" }))
            .route("/write", get(|| async { "1" }))
            .route("/create", get(|| async { "1" }))
            .route("/untouched", get(|| async { "-" }))
            .route("/pad/{bytes}", get(|| async { "0" }))
    }
}

mod ours {
    use cloakroom::{Session, SessionError};

    use super::*;

    async fn read(session: Session) -> Result<String, SessionError> {
        Ok(session.get::<u64>("counter")?.unwrap_or(0).to_string())
    }

    async fn write(session: Session) -> Result<String, SessionError> {
        let counter = session.get::<u64>("counter")?.unwrap_or(0) + 1;
        session.set("counter", counter)?;
        Ok(counter.to_string())
    }

    async fn key(session: Session, Path(i): Path<u32>) -> Result<String, SessionError> {
        session.set(format!("k{i}"), i)?;
        Ok(i.to_string())
    }

    async fn pad(session: Session, Path(bytes): Path<usize>) -> Result<String, SessionError> {
        session.set("pad", "x".repeat(bytes))?;
        session.set("counter", 0)?;
        Ok("0".to_owned())
    }

    async fn keys(session: Session) -> String {
        (0..KEYS)
            .filter(|i| session.has(&format!("k{i}")))
            .count()
            .to_string()
    }

    pub(super) fn routes() -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/create", get(write))
            .route("/untouched", get(|| async { "-" }))
            .route("/key/{i}", get(key))
            .route("/keys", get(keys))
            .route("/pad/{bytes}", get(pad))
    }
}

mod theirs {
    use axum::http::StatusCode;
    use tower_sessions::Session;

    use super::*;

    async fn read(session: Session) -> Result<String, StatusCode> {
        let counter: Option<u64> = session
            .get("counter")
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(counter.unwrap_or(0).to_string())
    }

    async fn write(session: Session) -> Result<String, StatusCode> {
        let counter: Option<u64> = session
            .get("counter")
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        let counter = counter.unwrap_or(0) + 1;
        session
            .insert("counter", counter)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(counter.to_string())
    }

    async fn key(session: Session, Path(i): Path<u32>) -> Result<String, StatusCode> {
        session
            .insert(&format!("k{i}"), i)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(i.to_string())
    }

    async fn pad(session: Session, Path(bytes): Path<usize>) -> Result<String, StatusCode> {
        let failed = |_| StatusCode::INTERNAL_SERVER_ERROR;
        session
            .insert("pad", "x".repeat(bytes))
            .await
            .map_err(failed)?;
        session.insert("counter", 0).await.map_err(failed)?;
        Ok("0".to_owned())
    }

    async fn keys(session: Session) -> Result<String, StatusCode> {
        let mut count = 0;
        for i in 0..KEYS {
            let value: Option<u32> = session
                .get(&format!("k{i}"))
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            count += usize::from(value.is_some());
        }
        Ok(count.to_string())
    }

    pub(super) fn routes() -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/create", get(write))
            .route("/untouched", get(|| async { "-" }))
            .route("/key/{i}", get(key))
            .route("/keys", get(keys))
            .route("/pad/{bytes}", get(pad))
    }
}
