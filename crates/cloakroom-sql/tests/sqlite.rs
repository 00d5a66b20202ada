//! SqliteStore on database files in temporary directories.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

mod common;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use cloakroom::SessionId;
use cloakroom::store::{
    FailureKind, OwnerIndex, Record, Revoked, SessionStore, StoreError, Update,
};
use cloakroom_sql::{SqlStoreError, SqliteStore};
use cloakroom_tests::app::{cookie, layer, serve};
use cloakroom_tests::set;
use sqlx::Connection;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

async fn store_with(path: &Path, busy: Duration) -> SqliteStore {
    let store = SqliteStore::builder()
        .path(path)
        .busy_timeout(busy)
        .build()
        .await
        .expect("the store opens");
    store.migrate().await.expect("migrate");
    store
}

/// A store (migrated, no sweeper) on a pool of the test's own, made by `pool` on `path` in
/// WAL mode; the pool too.
async fn store_on(
    path: &Path,
    pool: sqlx::sqlite::SqlitePoolOptions,
) -> (sqlx::SqlitePool, SqliteStore) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = pool.connect_with(options).await.expect("a pool");
    let store = SqliteStore::builder()
        .pool(pool.clone())
        .sweep_interval(None)
        .build()
        .await
        .expect("the store");
    store.migrate().await.expect("migrate");
    (pool, store)
}

async fn store(path: &Path) -> SqliteStore {
    store_with(path, Duration::from_secs(2)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_promise() {
    let dir = dir();
    let result = common::conformance()
        .large_value(1024 * 1024)
        .run(store(&dir.path().join("sessions.db")).await)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_owner_index_promises() {
    let dir = dir();
    let result = common::conformance()
        .run_owner_index(store(&dir.path().join("sessions.db")).await)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn hostile_keys_and_values_round_trip() {
    let dir = dir();
    common::hostile_input_round_trips(&store(&dir.path().join("sessions.db")).await).await;
}

#[tokio::test]
async fn the_database_is_in_wal_mode_and_a_sql_table_name_is_refused() {
    let dir = dir();
    let store = store(&dir.path().join("sessions.db")).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let built = SqliteStore::builder()
        .pool(store.pool().clone())
        .table("sessions; DROP TABLE sessions")
        .build()
        .await;
    match built {
        Err(SqlStoreError::Config(message)) => {
            assert!(
                message.contains("\"sessions; DROP TABLE sessions\""),
                "{message}"
            );
        }
        other => panic!("accepted: {other:?}"),
    }
    // A qualified name is a table of an attached database ("main" is always there).
    let qualified = SqliteStore::builder()
        .pool(store.pool().clone())
        .table("main.other_sessions")
        .build()
        .await
        .expect("a qualified name");
    qualified.migrate().await.expect("migrate");
    qualified.migrate().await.expect("migrate again");
    let id = common::session(&qualified, Duration::from_secs(60)).await;
    assert!(qualified.load(&id).await.expect("load").is_some());
    assert!(store.load(&id).await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_writers_all_survive() {
    let dir = dir();
    common::two_hundred_concurrent_writers_all_survive(store(&dir.path().join("s.db")).await).await;
}

/// Another process holds the write lock (an open `BEGIN IMMEDIATE`): calls that write wait
/// the busy timeout, then fail with a retryable error (503 through the layer), never hang;
/// once the lock is released everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_a_bounded_wait_then_a_503() {
    let dir = dir();
    let path = dir.path().join("s.db");
    let busy = Duration::from_millis(300);
    let store = store_with(&path, busy).await;
    let id = common::session(&store, Duration::from_secs(600)).await;
    let app = serve(layer(cookie(), store.clone())).await;
    let browser = app.browser();
    assert_eq!(browser.get("/count").await.body, "1");

    let mut locker = write_lock(&path).await;

    let began = Instant::now();
    let error = store
        .update(&id, &set("k", "1"))
        .await
        .expect_err("a locked database");
    let waited = began.elapsed();
    assert!(
        waited >= busy,
        "gave up after {waited:?}, before the busy timeout"
    );
    assert!(
        waited < busy * 5,
        "waited {waited:?} for a {busy:?} busy timeout"
    );
    assert_eq!(error.failure_kind(), FailureKind::Unavailable, "{error}");
    assert!(!error.to_string().contains(id.as_str()), "{error}");
    let load = tokio::time::timeout(busy * 5, store.load(&id)).await;
    assert!(matches!(load, Ok(Err(_))), "{load:?}");
    let response = tokio::time::timeout(Duration::from_secs(5), browser.get("/count"))
        .await
        .expect("a request hung on the lock");
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    // Readers do not wait for a writer in WAL mode.
    assert!(store.read(&id).await.expect("read").is_some());

    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("release");
    assert_eq!(browser.get("/count").await.body, "2");
    assert_eq!(
        store.update(&id, &set("k", "1")).await.expect("update"),
        Update::Applied
    );
}

#[tokio::test]
async fn expired_rows_are_swept_and_the_sweeper_stops_with_the_store() {
    let dir = dir();
    let path = dir.path().join("s.db");
    let sweeping = SqliteStore::builder()
        .path(&path)
        .sweep_interval(Some(Duration::from_millis(100)))
        .sweep_batch(7)
        .build()
        .await
        .expect("open");
    sweeping.migrate().await.expect("migrate");
    let short = Record::new(SystemTime::now(), Duration::from_millis(50), None);
    for _ in 0..30 {
        sweeping.create(&short).await.expect("create");
    }
    let kept = common::session(&sweeping, Duration::from_secs(600)).await;
    let rows = |store: SqliteStore| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
            .fetch_one(store.pool())
            .await
            .expect("count")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rows(sweeping.clone()).await > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(sweeping.clone()).await, 1, "expired rows were left");
    assert!(sweeping.load(&kept).await.expect("load").is_some());
    let observer = SqliteStore::builder()
        .path(&path)
        .sweep_interval(None)
        .build()
        .await
        .expect("open");
    drop(sweeping);
    for _ in 0..5 {
        observer.create(&short).await.expect("create");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rows(observer.clone()).await,
        6,
        "a dropped store kept sweeping"
    );
    assert_eq!(observer.sweep().await.expect("sweep"), 5);
}

/// Three stores with pools of their own on one file (three app processes' worth), racing
/// every call and "log out everywhere".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_file_agree_with_revokes() {
    let dir = dir();
    let path = dir.path().join("s.db");
    let instances = vec![store(&path).await, store(&path).await, store(&path).await];
    common::instances_agree_with_revokes("SqliteStore", instances, 300).await;
}

const CHILD: &str = "CLOAKROOM_SQLITE_WRITER";
/// Writers in each process, each writing [`WRITES`] keys one after another.
const WRITERS: usize = 16;
const WRITES: usize = 150;
/// The children's busy timeout: the store's default, so that a writer kept from the lock
/// shows in a short run (SQLite's own busy handler, sleeping up to 100 ms a try, failed about
/// one run in four here with half of it; on a machine loaded with other work, one second
/// also failed the store's own waiting now and then).
const CHILD_BUSY: Duration = Duration::from_secs(2);

/// Several processes on one database file lose no update and fail no write: four copies of
/// this test binary (each its own process, pool and SQLite library state), each with
/// [`WRITERS`] tasks writing their own keys of one session as fast as they can, so that
/// each process commits back to back and the others must get the lock in between within
/// a busy timeout of [`CHILD_BUSY`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_on_one_file_lose_no_update() {
    let dir = dir();
    let path = dir.path().join("s.db");
    let store = store(&path).await;
    let id = common::session(&store, Duration::from_secs(600)).await;
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..4)
        .map(|process| {
            std::process::Command::new(&exe)
                .args(["--exact", "a_writer_process", "--nocapture"])
                .env(
                    CHILD,
                    format!("{}\n{}\n{process}", path.display(), id.as_str()),
                )
                .spawn()
                .expect("a writer process")
        })
        .collect();
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "a writer process failed: {status}");
    }
    let record = store.load(&id).await.expect("load").expect("the session");
    assert_eq!(
        record.entries.len(),
        4 * WRITERS * WRITES,
        "updates were lost"
    );
}

/// One writer process of `several_processes_on_one_file_lose_no_update`: does nothing unless
/// that test started it.
#[tokio::test]
async fn a_writer_process() {
    let Ok(job) = std::env::var(CHILD) else {
        return;
    };
    let mut lines = job.lines();
    let (path, id, process) = (
        lines.next().expect("path"),
        lines.next().expect("id"),
        lines.next().expect("process"),
    );
    let id = SessionId::parse(id).expect("an id");
    let store = store_with(Path::new(path), CHILD_BUSY).await;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, id, process) = (store.clone(), id.clone(), process.to_owned());
        writers.spawn(async move {
            for write in 0..WRITES {
                let key = format!("p{process}-{writer}-{write}");
                let done = store.update(&id, &set(&key, "1")).await.expect("update");
                assert_eq!(done, Update::Applied);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer");
    }
}

/// Writes waiting together are committed together, and one that fails on its own fails
/// alone, a 500, while the writes around it are kept: an update SQLite refuses (a row whose
/// entries are not JSON) and a load of a row this store did not write (text in a time
/// column, which fails as the row is read, after SQLite ran the statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_on_its_own_fails_alone_among_writes_committed_together() {
    let dir = dir();
    let store = store(&dir.path().join("s.db")).await;
    let record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    let refused = store.create(&record).await.expect("create");
    sqlx::query("UPDATE sessions SET entries = 'not json' WHERE id = ?1")
        .bind(refused.as_str())
        .execute(store.pool())
        .await
        .expect("break a row");
    let undecodable = store.create(&record).await.expect("create");
    sqlx::query("UPDATE sessions SET created_ms = 'yesterday' WHERE id = ?1")
        .bind(undecodable.as_str())
        .execute(store.pool())
        .await
        .expect("break another row");
    let mut good = Vec::new();
    for _ in 0..200 {
        good.push(store.create(&record).await.expect("create"));
    }
    enum Call {
        Good(usize),
        Refused,
        Undecodable,
    }
    let mut writes = tokio::task::JoinSet::new();
    for (i, id) in good.iter().enumerate() {
        let (each, id) = (store.clone(), id.clone());
        writes.spawn(async move {
            (
                Call::Good(i),
                each.update(&id, &set("k", &i.to_string())).await.map(Some),
            )
        });
        if i % 20 == 0 {
            let (each, refused) = (store.clone(), refused.clone());
            writes.spawn(async move {
                (
                    Call::Refused,
                    each.update(&refused, &set("k", "1")).await.map(Some),
                )
            });
            let (each, undecodable) = (store.clone(), undecodable.clone());
            writes.spawn(async move {
                (
                    Call::Undecodable,
                    each.load(&undecodable).await.map(|_| None),
                )
            });
        }
    }
    while let Some(joined) = writes.join_next().await {
        match joined.expect("the task") {
            (Call::Good(i), result) => assert_eq!(
                result.unwrap_or_else(|error| panic!("good write {i}: {error}")),
                Some(Update::Applied)
            ),
            (Call::Refused | Call::Undecodable, result) => {
                let error = result.expect_err("a broken row's call");
                assert_eq!(error.failure_kind(), FailureKind::Rejected, "{error}");
            }
        }
    }
    for (i, id) in good.iter().enumerate() {
        let record = store.load(id).await.expect("load").expect("the session");
        assert_eq!(record.entries["k"].json, i.to_string());
    }
}

/// A pool of the application's own outside WAL mode (sqlx's default journal is DELETE):
/// `COMMIT` must wait for readers to finish, within the busy timeout, not fail at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_readers_outside_wal_mode() {
    let dir = dir();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("s.db"))
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("a pool");
    let store = SqliteStore::builder()
        .pool(pool)
        .build()
        .await
        .expect("the store");
    store.migrate().await.expect("migrate");
    let id = common::session(&store, Duration::from_secs(600)).await;
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (store, id) = (store.clone(), id.clone());
        readers.spawn(async move {
            for _ in 0..1000 {
                store.read(&id).await.expect("read");
            }
        });
    }
    for i in 0..300 {
        let done = store.update(&id, &set(&format!("k{i}"), "1")).await;
        assert_eq!(
            done.unwrap_or_else(|error| panic!("write {i}: {error}")),
            Update::Applied
        );
    }
    while let Some(done) = readers.join_next().await {
        done.expect("a reader");
    }
}

/// A "log out everywhere" that meets rows this store did not write (an id stored as bytes,
/// an id that is not a session id) deletes them with the rest and succeeds, naming only the
/// real sessions it ended: it never fails after having logged people out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_ends_rows_it_cannot_read_too_and_names_only_sessions() {
    let dir = dir();
    let store = store(&dir.path().join("s.db")).await;
    let session = store
        .create(&cloakroom_tests::owned("user:1", Duration::from_secs(600)))
        .await
        .expect("create");
    for foreign in ["CAST(id AS BLOB)", "'legacy-session-7'"] {
        let id = store
            .create(&cloakroom_tests::owned("user:1", Duration::from_secs(600)))
            .await
            .expect("create");
        sqlx::query(&format!("UPDATE sessions SET id = {foreign} WHERE id = ?1"))
            .bind(id.as_str())
            .execute(store.pool())
            .await
            .expect("break a row");
    }
    let ended = store.revoke_all("user:1", None).await.expect("the revoke");
    assert_eq!(ended, Revoked::Sessions(vec![session.clone()]));
    assert!(store.load(&session).await.expect("load").is_none());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE owner = 'user:1'")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(rows, 0, "the owner's rows that are not sessions were kept");
}

/// A "log out everywhere" that fails half-way (an application's trigger raising FAIL on the
/// last of the owner's rows, which keeps what the statement did before it) ends no session:
/// it is kept whole or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_failing_half_way_ends_no_session() {
    let dir = dir();
    let store = store(&dir.path().join("s.db")).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let record = cloakroom_tests::owned("user:1", Duration::from_secs(600));
        sessions.push(store.create(&record).await.expect("create"));
    }
    sqlx::query(&format!(
        "CREATE TRIGGER guard BEFORE DELETE ON sessions WHEN old.id = '{}' \
         BEGIN SELECT RAISE(FAIL, 'guarded'); END",
        sessions[2].as_str()
    ))
    .execute(store.pool())
    .await
    .expect("a trigger");
    store
        .revoke_all("user:1", None)
        .await
        .expect_err("a revoke the trigger stops");
    for id in &sessions {
        assert!(
            store.load(id).await.expect("load").is_some(),
            "a failed revoke ended a session"
        );
    }
}

/// A connection of another's holding the write lock of the database at `path`, until it
/// runs `ROLLBACK`.
async fn write_lock(path: &Path) -> sqlx::SqliteConnection {
    let url = format!("sqlite://{}", path.display());
    let mut locker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .expect("the write lock");
    locker
}

/// Queues the writes of `writes` behind a write that waits for the lock another connection
/// holds, so that they are committed together, in order, once it is released.
async fn one_batch<T>(path: &Path, store: &SqliteStore, writes: impl Future<Output = T>) -> T {
    let mut locker = write_lock(path).await;
    let blocker = {
        let store = store.clone();
        tokio::spawn(async move { store.delete(&SessionId::generate()).await })
    };
    // The writer now waits in BEGIN with the blocker's batch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let release = async {
        // Once `writes` are queued.
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut locker)
            .await
            .expect("release");
    };
    let (out, ()) = tokio::join!(writes, release);
    blocker.await.expect("join").expect("the blocker");
    out
}

/// A write that ends the whole transaction under a code that does not say so (an
/// application's trigger raising ROLLBACK) fails the writes committed with it, and none of
/// them is kept: the writes after it do not commit one by one while reported failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_ends_the_transaction_fails_its_batch_and_keeps_nothing() {
    let dir = dir();
    let path = dir.path().join("s.db");
    let store = store(&path).await;
    let before = common::session(&store, Duration::from_secs(600)).await;
    let guarded = common::session(&store, Duration::from_secs(600)).await;
    let after = common::session(&store, Duration::from_secs(600)).await;
    sqlx::query(&format!(
        "CREATE TRIGGER guard BEFORE UPDATE ON sessions WHEN old.id = '{}' \
         BEGIN SELECT RAISE(ROLLBACK, 'guarded'); END",
        guarded.as_str()
    ))
    .execute(store.pool())
    .await
    .expect("a trigger");
    let k = set("k", "1");
    let results = one_batch(&path, &store, async {
        tokio::join!(
            store.update(&before, &k),
            store.update(&guarded, &k),
            store.update(&after, &k)
        )
    })
    .await;
    for (id, result) in [
        (&before, results.0),
        (&guarded, results.1),
        (&after, results.2),
    ] {
        let kept = store
            .read(id)
            .await
            .expect("read")
            .expect("the session")
            .entries
            .contains_key("k");
        assert!(
            result.is_err(),
            "a write of the ended transaction: {result:?}"
        );
        assert!(!kept, "a write reported failed was kept");
    }
}

/// The writer's connection past the pool's idle timeout is replaced only when the pool has
/// one to give at once: handlers holding the whole pool do not make session writes wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_writer_connection_never_waits_on_a_busy_pool() {
    let dir = dir();
    let (pool, store) = store_on(
        &dir.path().join("s.db"),
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(Duration::from_millis(200))
            .acquire_timeout(Duration::from_secs(1)),
    )
    .await;
    let id = common::session(&store, Duration::from_secs(600)).await;
    // A handler holds the pool's only connection (a long read, a transaction of its own).
    let held = pool.acquire().await.expect("the pool's connection");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    let written = store.update(&id, &set("a", "1")).await;
    let waited = began.elapsed();
    drop(held);
    assert_eq!(written.expect("the write"), Update::Applied);
    assert!(
        waited < Duration::from_millis(500),
        "the write waited {waited:?}"
    );
}

/// The pool's `max_lifetime` applies to the connection the writer keeps, as to the pool's
/// own (so a connection's `after_connect` settings, or a database file replaced during a
/// restore, reach the writes in the same time as the reads), and a closed pool writes no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_connection_is_renewed_within_the_pools_lifetime_and_ends_with_the_pool() {
    let dir = dir();
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&made);
    let (pool, store) = store_on(
        &dir.path().join("s.db"),
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .max_lifetime(Duration::from_secs(1))
            .after_connect(move |_, _| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Box::pin(async { Ok(()) })
            }),
    )
    .await;
    let id = common::session(&store, Duration::from_secs(600)).await;
    store.update(&id, &set("a", "1")).await.expect("a write");
    let before = made.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        store.update(&id, &set("a", "2")).await.expect("a write");
    }
    assert_eq!(
        made.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "writes within the lifetime reuse the writer's connection"
    );
    // Past the lifetime and past the pool's own check of its idle connections (every
    // lifetime), so the writer's next connection is a new one.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    store.update(&id, &set("a", "3")).await.expect("a write");
    assert!(
        made.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the writer kept its connection past the pool's max_lifetime"
    );
    pool.close().await;
    store
        .update(&id, &set("a", "4"))
        .await
        .expect_err("a write after the pool closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_may_keep_the_expiry_writes_the_entries_alone() {
    let dir = dir();
    let store = store(&dir.path().join("s.db")).await;
    common::only_a_touch_moves_the_expiry(&store, |id| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar("SELECT expires_ms FROM sessions WHERE id = ?1")
                .bind(id.as_str())
                .fetch_one(&pool)
                .await
                .expect("expires_ms")
        }
    })
    .await;
}
