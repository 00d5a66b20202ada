//! PostgresStore against a real PostgreSQL that each test starts on a free loopback port.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use cloakroom::store::{FailureKind, Record, SessionStore, StoreError, Update};
use cloakroom_sql::{PostgresStore, SqlStoreError};
use cloakroom_testkit::{Consistency, PostgresServer};
use cloakroom_tests::app::{cookie, layer, serve};
use cloakroom_tests::set;

async fn postgres() -> PostgresServer {
    PostgresServer::start().await.expect("PostgreSQL starts")
}

async fn store(server: &PostgresServer) -> PostgresStore {
    let store = PostgresStore::builder()
        .url(server.url())
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("the store connects");
    store.migrate().await.expect("migrate");
    store
}

/// A store on a pool of the test's own (migrated), sweeping every `sweep` if given.
async fn store_on(pool: sqlx::PgPool, sweep: Option<Duration>) -> PostgresStore {
    let store = PostgresStore::builder()
        .pool(pool)
        .sweep_interval(sweep)
        .build()
        .await
        .expect("the store");
    store.migrate().await.expect("migrate");
    store
}

async fn count(store: &PostgresStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(store.pool())
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_promise() {
    let server = postgres().await;
    let result = common::conformance()
        .large_value(1024 * 1024)
        .run(store(&server).await)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_owner_index_promises() {
    let server = postgres().await;
    let result = common::conformance()
        .run_owner_index(store(&server).await)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn hostile_keys_and_values_round_trip() {
    let server = postgres().await;
    common::hostile_input_round_trips(&store(&server).await).await;
}

#[tokio::test]
async fn a_table_name_with_sql_in_it_is_refused_when_the_store_is_built() {
    let server = postgres().await;
    for hostile in [
        "sessions; DROP TABLE users",
        "sessions\" (id int); --",
        "public.sessions.extra",
        "",
    ] {
        let built = PostgresStore::builder()
            .url(server.url())
            .table(hostile)
            .build()
            .await;
        match built {
            Err(SqlStoreError::Config(message)) => {
                assert!(message.contains(&format!("{hostile:?}")), "{message}");
            }
            other => panic!("{hostile:?} was not refused: {other:?}"),
        }
    }
    // A schema-qualified name works, in a schema of the application's making.
    let plain = store(&server).await;
    sqlx::query("CREATE SCHEMA app")
        .execute(plain.pool())
        .await
        .expect("a schema");
    let qualified = PostgresStore::builder()
        .pool(plain.pool().clone())
        .table("app.user_sessions")
        .build()
        .await
        .expect("a qualified name");
    qualified.migrate().await.expect("migrate");
    let record = Record::new(SystemTime::now(), Duration::from_secs(60), None);
    let id = qualified.create(&record).await.expect("create");
    assert!(qualified.load(&id).await.expect("load").is_some());
    assert!(
        plain.load(&id).await.expect("load").is_none(),
        "a table shared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_safe_from_several_instances_at_once() {
    let server = postgres().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        let store = PostgresStore::builder()
            .url(server.url())
            .build()
            .await
            .expect("connect");
        stores.push(store);
    }
    let mut migrations = tokio::task::JoinSet::new();
    for store in &stores {
        let store = store.clone();
        migrations.spawn(async move { store.migrate().await });
    }
    while let Some(result) = migrations.join_next().await {
        result.expect("the task").expect("a concurrent migrate");
    }
    stores[0].migrate().await.expect("again");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'sessions' ORDER BY 1",
    )
    .fetch_all(stores[0].pool())
    .await
    .expect("indexes");
    assert_eq!(
        indexes,
        [
            "sessions_expires_idx",
            "sessions_owner_idx",
            "sessions_pkey"
        ]
    );
}

#[tokio::test]
async fn expired_rows_are_swept_in_batches_and_the_sweeper_stops_with_the_store() {
    let server = postgres().await;
    let sweeping = PostgresStore::builder()
        .url(server.url())
        .sweep_interval(Some(Duration::from_millis(100)))
        .sweep_batch(7)
        .build()
        .await
        .expect("connect");
    sweeping.migrate().await.expect("migrate");
    let short = Record::new(SystemTime::now(), Duration::from_millis(50), None);
    let long = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    for _ in 0..50 {
        sweeping.create(&short).await.expect("create");
    }
    let kept = sweeping.create(&long).await.expect("create");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count(&sweeping).await > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&sweeping).await, 1, "expired rows were left");
    assert!(sweeping.load(&kept).await.expect("load").is_some());

    // Once the store is dropped its sweeper stops: expired rows stay.
    let observer = store(&server).await;
    drop(sweeping);
    for _ in 0..10 {
        observer.create(&short).await.expect("create");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&observer).await, 11, "a dropped store kept sweeping");
    assert!(observer.load(&kept).await.expect("load").is_some());
}

#[tokio::test]
async fn expiry_is_checked_in_the_statement_whether_or_not_swept() {
    let server = postgres().await;
    let store = store(&server).await;
    let id = common::session(&store, Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count(&store).await, 1, "the row is still there, unswept");
    assert!(store.read(&id).await.expect("read").is_none());
    assert!(store.load(&id).await.expect("load").is_none());
    assert_eq!(
        store.update(&id, &set("k", "1")).await.expect("update"),
        Update::Missing
    );
    assert!(store.load(&id).await.expect("load").is_none(), "revived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_writers_all_survive() {
    let server = postgres().await;
    common::two_hundred_concurrent_writers_all_survive(store(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_a_503_and_requests_recover_by_themselves() {
    let mut server = postgres().await;
    let app = serve(layer(cookie(), store(&server).await)).await;
    let browser = app.browser();
    assert_eq!(browser.get("/count").await.body, "1");
    server.stop();
    for path in ["/peek", "/count"] {
        let response = browser.get(path).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(response.set_cookies().is_empty());
    }
    server.restart().await.expect("PostgreSQL restarts");
    // Its data survives the restart: the same session goes on counting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut response = browser.get("/count").await;
    while response.status != StatusCode::OK && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        response = browser.get("/count").await;
    }
    assert_eq!(
        response.status,
        StatusCode::OK,
        "no recovery after the restart"
    );
    assert_eq!(
        response.body, "2",
        "the session did not survive the restart"
    );
}

#[tokio::test]
async fn errors_say_whether_to_retry_and_never_show_the_id() {
    let server = postgres().await;
    let store = PostgresStore::builder()
        .url(server.url())
        .build()
        .await
        .expect("connect");
    // No migrate: the table is missing, which no retry fixes.
    let id = cloakroom::SessionId::generate();
    let error = store.load(&id).await.expect_err("no table");
    assert_eq!(error.failure_kind(), FailureKind::Rejected, "{error}");
    let message = format!("{error} {error:?}");
    assert!(!message.contains(id.as_str()), "{message}");
}

/// Three stores, each with its own pool (three app instances), racing every call and "log
/// out everywhere"; PostgreSQL restarted twice meanwhile keeps its data, so calls that
/// failed are the only unknowns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_with_revokes() {
    let server = postgres().await;
    let instances = vec![
        store(&server).await,
        store(&server).await,
        store(&server).await,
    ];
    common::instances_agree_with_revokes("PostgresStore", instances, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_through_restarts() {
    let server = tokio::sync::Mutex::new(postgres().await);
    let instances = {
        let server = server.lock().await;
        vec![
            store(&server).await,
            store(&server).await,
            store(&server).await,
        ]
    };
    let checker = Consistency::new()
        .duration(Duration::from_secs(4))
        .expiry(Duration::from_secs(1))
        .soak_from_env();
    let restarts = async {
        let rounds = checker.planned_duration().as_secs().max(2) / 2;
        for _ in 0..rounds {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            server
                .lock()
                .await
                .restart()
                .await
                .expect("PostgreSQL restarts");
        }
    };
    let (report, ()) = tokio::join!(checker.run(instances), restarts);
    let report = report.unwrap_or_else(|violation| panic!("{violation}"));
    println!("PostgresStore, 3 instances, restarts: {report}");
    assert!(report.operations > 300, "{report}");
    assert!(
        report.indeterminate > 0,
        "no call failed: the restarts were not seen"
    );
}

/// Calls cut off at every point of their round trip (as the layer's store timeout or a client
/// gone does) leave no connection with a statement half-way: on a single connection, the next
/// call always gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_never_leaves_its_answer_to_the_next() {
    let server = postgres().await;
    // A slow link, so that cut-off points spread over the whole round trip.
    let proxy = cloakroom_testkit::Proxy::start(server.port())
        .await
        .expect("the proxy starts");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let store = PostgresStore::builder()
        .url(url)
        .max_connections(1)
        .build()
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let mut ids = Vec::new();
    for value in ["\"a\"", "\"b\""] {
        let id = common::session(&store, Duration::from_secs(600)).await;
        store.update(&id, &set("v", value)).await.expect("update");
        ids.push(id);
    }
    // Each round trip takes at least 4 ms now: cut-offs from 0 to 2.5 ms land in every
    // part of it (a timeout of zero always cuts: the first poll cannot be answered).
    proxy.delay(Duration::from_millis(2));
    let mut cut = 0;
    for round in 0..300_u64 {
        let wait = Duration::from_micros(500 * (round % 6));
        if tokio::time::timeout(wait, store.load(&ids[0]))
            .await
            .is_err()
        {
            cut += 1;
        }
        let b = store
            .load(&ids[1])
            .await
            .expect("a load after a cut-off one");
        let value = b.map(|record| record.entries["v"].json.clone());
        assert_eq!(value.as_deref(), Some("\"b\""), "round {round}");
    }
    assert!(cut >= 40, "only {cut} calls were cut off");
}

/// Idle connections the server closed (an idle timeout, an administrator, a failover) fail no
/// call: the first call that finds one dead drops the idle ones and runs on a new
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_closed_by_the_server_fail_no_call() {
    let server = postgres().await;
    let store = store(&server).await;
    let record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    let id = store.create(&record).await.expect("create");
    // Several idle connections of the store's own.
    let loads: Vec<_> = (0..4).map(|_| store.load(&id)).collect();
    for load in loads {
        load.await.expect("load");
    }
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url())
        .await
        .expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(!killed.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        assert!(
            store
                .load(&id)
                .await
                .expect("a load after the kill")
                .is_some()
        );
        assert_eq!(
            store.update(&id, &set("k", "1")).await.expect("update"),
            Update::Applied
        );
    }
}

/// A pool's `after_connect` hook (here a per-tenant `search_path`) applies to every call of
/// the store, the sweeper's included: sessions go to the tenant's table, never to another
/// table of the same name elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_after_connect_hook_applies_to_every_call() {
    use sqlx::Executor;
    let server = postgres().await;
    // A table the calls would silently use if the hook were skipped.
    let public = store(&server).await;
    public.migrate().await.expect("migrate");
    sqlx::query("CREATE SCHEMA tenant")
        .execute(public.pool())
        .await
        .expect("a schema");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection.execute("SET search_path TO tenant").await?;
                Ok(())
            })
        })
        .connect(&server.url())
        .await
        .expect("a pool");
    let tenant = store_on(pool, None).await;
    let live = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    let short = Record::new(SystemTime::now(), Duration::from_millis(1), None);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (tenant, live, short) = (tenant.clone(), live.clone(), short.clone());
        calls.spawn(async move {
            let id = tenant.create(&live).await.expect("create");
            tenant.create(&short).await.expect("create");
            assert_eq!(
                tenant.update(&id, &set("k", "1")).await.expect("update"),
                Update::Applied
            );
            let record = tenant.load(&id).await.expect("load").expect("the session");
            assert_eq!(record.entries["k"].json, "1");
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("the calls");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        tenant.sweep().await.expect("sweep"),
        8,
        "the tenant's expired rows"
    );
    let rows = |table: &'static str| {
        let pool = public.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(rows("tenant.sessions").await, 8);
    assert_eq!(rows("public.sessions").await, 0, "a call skipped the hook");
}

/// The backends whose `application_name` is `name`, as PostgreSQL sees them.
async fn backends(server: &PostgresServer, name: &str) -> i64 {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url())
        .await
        .expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity")
}

/// A burst of 32 concurrent loads on a pool of 8 connections named `name`, which must use
/// more than one of them.
async fn burst(server: &PostgresServer, store: &PostgresStore, name: &str) {
    let id = common::session(store, Duration::from_secs(600)).await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (store, id) = (store.clone(), id.clone());
        burst.spawn(async move { store.load(&id).await.expect("load") });
    }
    while let Some(done) = burst.join_next().await {
        done.expect("a load");
    }
    assert!(
        backends(server, name).await >= 2,
        "the burst used one connection"
    );
}

/// Waits up to five seconds for the backends named `name` to be `expected`; how many there
/// are then.
async fn backends_settle(server: &PostgresServer, name: &str, expected: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = backends(server, name).await;
        if now == expected || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pool's `idle_timeout` closes the store's idle connections too, as they pass it and
/// with no call needed: a burst of calls does not hold its connections (server processes)
/// open until traffic returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_pools_idle_timeout() {
    let server = postgres().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .idle_timeout(Duration::from_millis(300))
        .connect(&format!("{}?application_name=burst", server.url()))
        .await
        .expect("a pool");
    let store = store_on(pool, None).await;
    burst(&server, &store, "burst").await;
    assert_eq!(
        backends_settle(&server, "burst", 0).await,
        0,
        "idle connections kept"
    );
    common::session(&store, Duration::from_secs(600)).await;
}

/// Closing the application's pool (a graceful shutdown) closes the store's connections too,
/// and calls after it fail instead of opening new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_pool_closes_the_stores_connections() {
    let server = postgres().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&format!("{}?application_name=closing", server.url()))
        .await
        .expect("a pool");
    let store = store_on(pool.clone(), Some(Duration::from_secs(600))).await;
    burst(&server, &store, "closing").await;
    pool.close().await;
    let error = store
        .create(&Record::new(
            SystemTime::now(),
            Duration::from_secs(600),
            None,
        ))
        .await
        .expect_err("a call right after the pool closed");
    assert!(error.to_string().contains("closed"), "{error}");
    assert_eq!(
        backends_settle(&server, "closing", 0).await,
        0,
        "connections open after the pool closed"
    );
}

/// This process's TCP connections to `port` that are open (`/proc/net/tcp`, ESTABLISHED).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// A store dropped while its sweeper waits on a statement that does not end (a table locked
/// by a migration, a hung server) closes its connections at once: the sweeper never keeps a
/// dropped store alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dropped_while_its_sweep_hangs_closes_its_connections() {
    use sqlx::Connection;
    let server = postgres().await;
    let store = PostgresStore::builder()
        .url(server.url())
        .sweep_interval(Some(Duration::from_millis(100)))
        .build()
        .await
        .expect("the store");
    store.migrate().await.expect("migrate");
    let record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    store.create(&record).await.expect("create");
    let mut admin = sqlx::PgConnection::connect(&server.url())
        .await
        .expect("connect");
    let mut lock = admin.begin().await.expect("begin");
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    // The sweeper's next statement now waits for the lock.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(connections_to(server.port()) >= 2, "the store's and ours");
    drop(store);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = connections_to(server.port());
    lock.rollback().await.expect("unlock");
    assert_eq!(
        open, 1,
        "a dropped store's connections stayed open beside ours"
    );
}

/// A sweep waiting on a lock (a long migration, `VACUUM FULL`) is waited for, never given up
/// and started again: the store's backends stay within its pool's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_waiting_on_a_lock_opens_no_more_backends() {
    use sqlx::Connection;
    let server = postgres().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{}?application_name=sweeper", server.url()))
        .await
        .expect("a pool");
    let store = store_on(pool, Some(Duration::from_millis(100))).await;
    common::session(&store, Duration::from_secs(600)).await;
    let mut admin = sqlx::PgConnection::connect(&server.url())
        .await
        .expect("connect");
    let mut lock = admin.begin().await.expect("begin");
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let open = backends(&server, "sweeper").await;
    lock.rollback().await.expect("unlock");
    assert!(open <= 2, "{open} backends for a pool of 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_may_keep_the_expiry_writes_the_entries_alone() {
    let server = postgres().await;
    let store = store(&server).await;
    common::only_a_touch_moves_the_expiry(&store, |id| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar("SELECT expires_ms FROM sessions WHERE id = $1")
                .bind(id.as_str())
                .fetch_one(&pool)
                .await
                .expect("expires_ms")
        }
    })
    .await;
}
