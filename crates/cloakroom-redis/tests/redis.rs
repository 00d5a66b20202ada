//! RedisStore against real `redis-server` processes (standalone and a 3-master cluster) that
//! the tests start on free loopback ports.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use cloakroom::SessionId;
use cloakroom::store::{Changes, Entry, OwnerIndex, Record, SessionStore, Update};
use cloakroom_redis::{RedisStore, RedisStoreError};
use cloakroom_testkit::{Conformance, RedisServer};
use cloakroom_tests::app::{NAME, cookie, id_from, layer, max_age, serve, write_concurrently};
use cloakroom_tests::{cluster_url, set};
use common::{admin as inspector, cluster, durable_redis, redis, store, uncached_store};
use fred::clients::Client;
use fred::interfaces::{
    ClientLike, ConfigInterface, HashesInterface, KeysInterface, SortedSetsInterface,
};

/// A fresh server, a store on it and a client to inspect it.
async fn server_store_and_inspector() -> (RedisServer, RedisStore, Client) {
    let server = redis().await;
    let store = store(&server.url()).await;
    let inspector = inspector(&server.url()).await;
    (server, store, inspector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_keeps_every_promise() {
    let server = redis().await;
    let result = Conformance::new()
        .tick(Duration::from_millis(200))
        .run(store(&server.url()).await)
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_every_promise() {
    let cluster = cluster().await;
    let store = store(&cluster_url(&cluster)).await;
    let result = Conformance::new()
        .tick(Duration::from_millis(200))
        .sessions(3_000)
        .run(store.clone())
        .await;
    assert_eq!(result, Ok(()));
    // The sessions really are spread over the three masters.
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(60), None);
    let mut per_node = HashMap::new();
    for _ in 0..60 {
        let id = store.create(&record).await.expect("create");
        for url in cluster.urls() {
            let node = inspector(&url).await;
            let keys: i64 = node.exists(store.key(&id)).await.unwrap_or(0);
            if keys == 1 {
                *per_node.entry(url).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(per_node.len(), 3, "sessions landed on {per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_keeps_the_owner_index_promises() {
    let server = redis().await;
    let result = Conformance::new()
        .tick(Duration::from_millis(200))
        .sessions(3_000)
        .run_owner_index(store(&server.url()).await)
        .await;
    assert_eq!(result, Ok(()));
}

/// On a cluster an owner's sessions live on every node, and its set on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_the_owner_index_promises() {
    let cluster = cluster().await;
    let store = store(&cluster_url(&cluster)).await;
    let result = Conformance::new()
        .tick(Duration::from_millis(200))
        .sessions(3_000)
        .run_owner_index(store.clone())
        .await;
    assert_eq!(result, Ok(()));
    let mut per_node = HashMap::new();
    for _ in 0..30 {
        let id = store
            .create(&owned("user:spread", 60_000))
            .await
            .expect("create");
        for url in cluster.urls() {
            let keys: i64 = inspector(&url)
                .await
                .exists(store.key(&id))
                .await
                .unwrap_or(0);
            if keys == 1 {
                *per_node.entry(url).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(
        per_node.len(),
        3,
        "one owner's sessions landed on {per_node:?}"
    );
    let listed = store
        .owned("user:spread")
        .await
        .expect("a list across nodes");
    assert_eq!(listed.len(), 30);
}

/// A record of `owner` that lives `idle_ms` without requests.
fn owned(owner: &str, idle_ms: u64) -> Record {
    cloakroom_tests::owned(owner, Duration::from_millis(idle_ms))
}

/// Thousands of an owner's sessions expire: each login prunes a bounded number of their ids,
/// a list drops the rest, and a logout's id goes at the next list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_set_does_not_keep_ended_sessions() {
    let (_server, store, inspector) = server_store_and_inspector().await;
    let set = store.owner_key("user:many");
    for _ in 0..20 {
        let record = owned("user:many", 3_000);
        let logins = (0..100).map(|_| store.create(&record));
        for created in futures_util::future::join_all(logins).await {
            created.expect("create");
        }
    }
    let size = |inspector: &Client| {
        let (inspector, set) = (inspector.clone(), set.clone());
        async move { inspector.zcard::<i64, _>(&set).await.expect("ZCARD") }
    };
    assert_eq!(size(&inspector).await, 2_000, "logins pruned live sessions");
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    // Each login looks at 64 of the expired ids, whatever the set holds.
    for _ in 0..10 {
        store
            .create(&owned("user:many", 60_000))
            .await
            .expect("create");
    }
    assert_eq!(size(&inspector).await, 2_000 + 10 - 640);
    let live = store.owned("user:many").await.expect("list");
    assert_eq!(live.len(), 10);
    assert_eq!(
        size(&inspector).await,
        10,
        "a list left the ids of ended sessions"
    );
    store.delete(&live[0].0).await.expect("delete");
    assert_eq!(store.owned("user:many").await.expect("list").len(), 9);
    assert_eq!(size(&inspector).await, 9);
}

/// The message of `result`'s refusal for the server's eviction policy.
fn refused<T>(result: Result<T, RedisStoreError>) -> String {
    use cloakroom::store::StoreError as _;
    match result {
        Err(error @ RedisStoreError::EvictingPolicy { .. }) => {
            assert_eq!(error.failure_kind(), cloakroom::FailureKind::Rejected);
            error.to_string()
        }
        Err(error) => panic!("refused for another reason: {error}"),
        Ok(_) => panic!("not refused"),
    }
}

/// On a server that may evict keys without a TTL, an owner's set could vanish and a revoke
/// miss sessions: the store refuses what needs the set (a 500), and nothing else.
#[tokio::test]
async fn a_server_that_may_evict_the_owner_index_refuses_owners_and_nothing_else() {
    let server = RedisServer::start_with_args(&["--maxmemory-policy", "allkeys-lru"])
        .await
        .expect("redis-server starts");
    let store = store(&server.url()).await;
    let login = refused(store.create(&owned("user:1", 60_000)).await);
    assert!(
        login.contains("allkeys-lru") && login.contains("volatile-"),
        "{login}"
    );
    refused(store.owned("user:1").await);
    refused(store.revoke_all("user:1", None).await);
    let anonymous = store
        .create(&Record::new(
            SystemTime::now(),
            Duration::from_secs(60),
            None,
        ))
        .await
        .expect("a session without an owner");
    assert!(store.load(&anonymous).await.expect("load").is_some());

    // A volatile policy keeps keys without a TTL: the same server, rebuilt, takes owners.
    let inspector = inspector(&server.url()).await;
    common::command(
        &inspector,
        &["CONFIG", "SET", "maxmemory-policy", "volatile-lru"],
    )
    .await;
    let store = common::store(&server.url()).await;
    store.create(&owned("user:1", 60_000)).await.expect("login");
    assert_eq!(store.owned("user:1").await.expect("list").len(), 1);
}

/// A read of a session with an owner costs what a read of any session costs: the owner adds
/// no command to requests that do not change it.
#[tokio::test]
async fn an_owner_adds_no_command_to_a_read_or_a_write() {
    let (_server, store, inspector) = server_store_and_inspector().await;
    let uncached = uncached_store(&_server.url()).await;
    for store in [store, uncached] {
        let anonymous = store
            .create(&Record::new(
                SystemTime::now(),
                Duration::from_secs(60),
                None,
            ))
            .await
            .expect("create");
        let signed_in = store
            .create(&owned("user:counted", 60_000))
            .await
            .expect("create");
        let mut costs = Vec::new();
        for id in [&anonymous, &signed_in] {
            let before = command_counts(&inspector).await;
            store.read(id).await.expect("read");
            store.load(id).await.expect("load");
            store.update(id, &set("k", "1")).await.expect("update");
            let after = command_counts(&inspector).await;
            let spent: HashMap<String, u64> = after
                .iter()
                .map(|(command, n)| {
                    (
                        command.clone(),
                        n - before.get(command).copied().unwrap_or(0),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            costs.push(spent);
        }
        assert_eq!(
            costs[0], costs[1],
            "an owner changed the commands of a request"
        );
    }
}

/// `(command, calls)` from `INFO commandstats`, without the inspector's own commands.
async fn command_counts(client: &Client) -> HashMap<String, u64> {
    let info: String = client
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "info"
                    | "config|resetstat"
                    | "ping"
                    | "client|setname"
                    | "client|setinfo"
                    | "hello"
            )
        })
        .collect()
}

/// The commands one request costs, counted by Redis itself (scripts' inner commands included).
async fn commands_of(
    inspector: &Client,
    request: impl Future<Output = String>,
) -> HashMap<String, u64> {
    let _: () = inspector.config_resetstat().await.unwrap_or(());
    request.await;
    command_counts(inspector).await
}

fn counts(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs
        .iter()
        .map(|(name, n)| ((*name).to_owned(), *n))
        .collect()
}

#[tokio::test]
async fn without_the_local_cache_a_read_costs_one_command_and_a_write_one_command() {
    let server = redis().await;
    let refresh = Duration::from_millis(300);
    let store = uncached_store(&server.url()).await;
    let app = serve(layer(cookie(), store).refresh_interval(refresh)).await;
    let inspector = inspector(&server.url()).await;
    let browser = app.browser();
    // Warm up: create the session, load the update and load scripts.
    browser.get("/count").await;
    browser.get("/count").await;
    tokio::time::sleep(refresh).await;
    browser.get("/peek").await;

    let read = commands_of(&inspector, async { browser.get("/peek").await.body }).await;
    assert_eq!(
        read,
        counts(&[("hgetall", 1)]),
        "a read-only request within the refresh interval must be one plain HGETALL"
    );
    let write = commands_of(&inspector, async { browser.get("/count").await.body }).await;
    assert_eq!(
        write,
        counts(&[
            ("hgetall", 1),
            ("evalsha", 1),
            ("hmget", 1),
            ("hset", 1),
            ("exists", 1)
        ]),
        "a writing request must be the read and one EVALSHA (HMGET, HSET and the closing \
         EXISTS that keeps the key tracked run inside it)"
    );

    tokio::time::sleep(refresh).await;
    let mut set_cookie = None;
    let refreshed = commands_of(&inspector, async {
        let response = browser.get("/peek").await;
        set_cookie = response.set_cookie(NAME);
        response.body
    })
    .await;
    assert_eq!(
        refreshed,
        counts(&[
            ("evalsha", 1),
            ("hgetall", 1),
            ("time", 1),
            ("hset", 1),
            ("pexpireat", 1),
            ("exists", 1)
        ]),
        "a read that refreshes the TTL must be exactly one EVALSHA (the rest runs inside it)"
    );
    assert!(
        set_cookie.is_some(),
        "the refresh did not re-send the cookie"
    );
    assert_eq!(browser.get("/peek").await.body, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_writers_all_survive_standalone_and_cluster() {
    let server = redis().await;
    let cluster = cluster().await;
    for url in [server.url(), cluster_url(&cluster)] {
        let app = serve(layer(cookie(), store(&url).await)).await;
        let browser = app.browser();
        browser.get("/count").await;
        let keys = write_concurrently(std::slice::from_ref(&browser), 200).await;
        assert_eq!(
            keys.split(',').count(),
            201,
            "{url}: keys were lost: {keys}"
        );
    }
}

#[tokio::test]
async fn two_app_instances_share_sessions_through_one_redis() {
    let server = redis().await;
    let first = serve(layer(cookie(), store(&server.url()).await)).await;
    let second = serve(layer(cookie(), store(&server.url()).await)).await;
    let browser = first.browser();
    assert_eq!(browser.get("/count").await.body, "1");
    let session = browser.cookie(NAME).unwrap_or_default();

    let elsewhere = second.browser();
    elsewhere.set_cookie(NAME, &session);
    assert_eq!(
        elsewhere.get("/count").await.body,
        "2",
        "the second instance did not see the session"
    );
    assert_eq!(
        browser.get("/peek").await.body,
        "2",
        "the first instance did not see the change"
    );
}

/// A record of `keys` entries, `k0: 0`, `k1: 1`, ...
fn record_of(keys: usize) -> Record {
    let mut record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    for i in 0..keys {
        let entry = Entry {
            json: i.to_string(),
            flash: false,
        };
        record.entries.insert(format!("k{i}"), entry);
    }
    record
}

#[tokio::test]
async fn a_new_session_is_one_script_call_however_many_keys_it_has() {
    let server = redis().await;
    let store = uncached_store(&server.url()).await;
    let inspector = inspector(&server.url()).await;
    // Load the script.
    store.create(&record_of(1)).await.expect("create");
    let small = record_of(3);
    let mut created = None;
    let commands = commands_of(&inspector, async {
        created = store.create(&small).await.ok();
        String::new()
    })
    .await;
    assert_eq!(
        commands,
        counts(&[
            ("evalsha", 1),
            ("exists", 1),
            ("time", 1),
            ("hset", 1),
            ("pexpireat", 1)
        ]),
        "a new session must be one EVALSHA: EXISTS, TIME, one HSET with its expiry and \
         PEXPIREAT (no closing EXISTS: a create leaves its key untracked)"
    );
    let created = created.expect("the session was created");
    let loaded = store.load(&created).await.ok().flatten();
    assert_eq!(loaded.map(|record| record.entries), Some(small.entries));

    // 5,000 keys are 10,000 field arguments, more than one HSET takes inside the script.
    let large = record_of(5_000);
    let id = store.create(&large).await.expect("create");
    let loaded = store.load(&id).await.ok().flatten();
    let expires = loaded.as_ref().map(|record| record.expires);
    assert_eq!(loaded.map(|record| record.entries), Some(large.entries));
    let ttl: i64 = inspector.pttl(store.key(&id)).await.unwrap_or(-3);
    assert!(
        (595_000..=600_000).contains(&ttl) && expires.is_some_and(|at| at > SystemTime::now()),
        "a large session's TTL is {ttl} ms, its expiry {expires:?}"
    );
}

/// The layer boxes a store call's future and moves it: fred's command futures (kilobytes
/// each) must not sit inline in it. A create that may index its owner once carried one.
#[tokio::test]
async fn a_store_call_s_future_is_small() {
    let server = redis().await;
    let store = store(&server.url()).await;
    let record = record_of(1);
    let id = SessionId::generate();
    let changes = Changes::default();
    let sizes = [
        ("create", std::mem::size_of_val(&store.create(&record))),
        ("load", std::mem::size_of_val(&store.load(&id))),
        ("read", std::mem::size_of_val(&store.read(&id))),
        (
            "update",
            std::mem::size_of_val(&store.update(&id, &changes)),
        ),
        ("delete", std::mem::size_of_val(&store.delete(&id))),
    ];
    for (call, size) in sizes {
        assert!(size <= 1536, "{call}'s future is {size} bytes");
    }
}

/// Calls sent together share one script call and read Redis's clock once in it.
#[tokio::test]
async fn a_batch_of_creates_reads_the_clock_once() {
    let server = redis().await;
    let store = uncached_store(&server.url()).await;
    let inspector = inspector(&server.url()).await;
    // Load the script.
    store.create(&record_of(1)).await.expect("create");
    let commands = commands_of(&inspector, async {
        let mut together = tokio::task::JoinSet::new();
        for keys in 0..20 {
            let store = store.clone();
            together.spawn(async move { store.create(&record_of(keys % 3)).await });
        }
        for created in together.join_all().await {
            created.expect("create");
        }
        String::new()
    })
    .await;
    let count = |name: &str| commands.get(name).copied().unwrap_or(0);
    assert_eq!(count("hset"), 20, "{commands:?}");
    assert!(
        count("evalsha") < 20 && count("time") == count("evalsha"),
        "each script call must read the clock once, however many creates it carries: \
         {commands:?}"
    );
}

/// Redis's `tracking_total_keys`: how many keys some connection is told about.
async fn tracked_keys(inspector: &Client) -> u64 {
    let info: String = inspector
        .info(Some(fred::types::InfoKind::Stats))
        .await
        .expect("INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("tracking_total_keys:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has tracking_total_keys")
}

/// New sessions leave nothing in Redis's tracking table (which evicts, with an invalidation
/// per key, past `tracking-table-max-keys`): only a read tracks a key, for the copy it makes,
/// also when creates share a script call with loads (any read in a script tracks all its keys).
#[tokio::test]
async fn creating_sessions_fills_no_tracking_table_and_reading_them_tracks_each() {
    let (_server, store, inspector) = server_store_and_inspector().await;
    let mut first = Vec::new();
    for keys in 0..50 {
        first.push(store.create(&record_of(keys % 3)).await.expect("create"));
    }
    assert_eq!(
        tracked_keys(&inspector).await,
        0,
        "a create must leave its key untracked"
    );
    // Concurrent calls share one script call (see `batch`): 50 creates beside 50 loads.
    let mut together = tokio::task::JoinSet::new();
    for keys in 0..50 {
        let store = store.clone();
        together.spawn(async move { Some(store.create(&record_of(keys % 3)).await) });
    }
    for id in &first {
        let (store, id) = (store.clone(), id.clone());
        together.spawn(async move {
            assert!(store.load(&id).await.expect("load").is_some());
            None
        });
    }
    let created: Vec<_> = together
        .join_all()
        .await
        .into_iter()
        .flatten()
        .map(|created| created.expect("create"))
        .collect();
    assert_eq!(created.len(), 50);
    assert_eq!(
        tracked_keys(&inspector).await,
        50,
        "the loads track their keys, the creates beside them none"
    );
    for id in &created {
        assert!(store.read(id).await.expect("read").is_some());
        assert!(store.read_now(id).is_some(), "the read keeps a copy");
    }
    assert_eq!(
        tracked_keys(&inspector).await,
        100,
        "each read tracks its key"
    );
}

#[tokio::test]
async fn redis_ttl_and_cookie_max_age_agree() {
    let server = redis().await;
    let store = store(&server.url()).await;
    let app = serve(layer(cookie(), store.clone()).idle_timeout(Duration::from_secs(1800))).await;
    let inspector = inspector(&server.url()).await;
    let browser = app.browser();
    let response = browser.get("/count").await;
    let sent = response.set_cookie(NAME).as_deref().and_then(max_age);
    let id = id_from(&browser.cookie(NAME).unwrap_or_default());
    let ttl: i64 = inspector.pttl(store.key(&id)).await.unwrap_or(-3);
    assert_eq!(sent, Some(1800));
    assert!(
        (1_795_000..=1_800_000).contains(&ttl),
        "Redis TTL {ttl} ms vs Max-Age 1800 s"
    );

    let response = browser.post_form("/remember", "").await;
    let sent = response.set_cookie(NAME).as_deref().and_then(max_age);
    let ttl: i64 = inspector.pttl(store.key(&id)).await.unwrap_or(-3);
    assert_eq!(sent, Some(60 * 24 * 3600));
    assert!(
        ttl > 60 * 24 * 3600 * 1000 - 5_000,
        "remember-me TTL {ttl} ms"
    );
}

/// With `LoadFailure::RunHandler` and Redis stopped, a route that does not use the session
/// (a health check) still answers 200; one that does gets the 503, never "logged out"; when
/// Redis is back the session is there as it was.
#[tokio::test]
async fn with_redis_stopped_a_health_check_still_answers_and_session_routes_fail_closed() {
    let mut server = durable_redis().await;
    let store = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(500))
        .local_cache(0)
        .build()
        .await
        .expect("the store connects");
    let layer = layer(cookie(), store).load_failure(cloakroom::LoadFailure::RunHandler);
    let app = serve(layer).await;
    let browser = app.browser();
    browser.post_form("/login", "").await;
    browser.get("/count").await;

    server.stop();
    let health = browser.get("/noop").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "nothing")
    );
    for path in ["/whoami", "/signed-in", "/count"] {
        let response = browser.get(path).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(response.set_cookies().is_empty(), "{path} set a cookie");
    }

    server.restart().await.expect("redis-server restarts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let response = browser.get("/whoami").await;
        if response.status == StatusCode::OK || tokio::time::Instant::now() > deadline {
            break response.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body, "ada");
    assert_eq!(browser.get("/count").await.body, "2");
}

#[tokio::test]
async fn redis_down_is_a_503_and_nothing_is_lost_when_it_returns() {
    let mut server = durable_redis().await;
    let store = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("the store connects");
    let app = serve(layer(cookie(), store)).await;
    let browser = app.browser();
    for _ in 0..3 {
        browser.get("/count").await;
    }

    server.stop();
    // The write goes to Redis whatever the local copy holds; once it has failed, the client
    // has seen the connection drop and the copy is gone too.
    for path in ["/count", "/peek"] {
        let response = browser.get(path).await;
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path} while Redis is down"
        );
        assert!(
            response.set_cookies().is_empty(),
            "{path} set a cookie while Redis is down"
        );
    }
    let newcomer = app.browser().get("/count").await;
    assert_eq!(newcomer.status, StatusCode::SERVICE_UNAVAILABLE);

    server.restart().await.expect("redis-server restarts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let response = browser.get("/peek").await;
        if response.status == StatusCode::OK || tokio::time::Instant::now() > deadline {
            break response.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        body, "3",
        "after Redis came back the session was lost or overwritten"
    );
    assert_eq!(browser.get("/count").await.body, "4");
}

#[tokio::test]
async fn a_key_written_by_another_program_is_a_clear_error_naming_it() {
    let (_server, store, inspector) = server_store_and_inspector().await;
    let id = SessionId::generate();
    let key = store.key(&id);

    let _: () = inspector
        .set(&key, "not a session", None, None, false)
        .await
        .unwrap_or(());
    // Named by the key, its id replaced by the id's short hash (an id is a credential).
    let named = format!("session:{id}");
    let error = store.load(&id).await.err();
    assert!(
        matches!(&error, Some(RedisStoreError::Foreign { key: k, .. }) if *k == named),
        "{error:?}"
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains(&named) && !message.contains(id.as_str()),
        "{message}"
    );

    let _: () = inspector.del(&key).await.unwrap_or(());
    let _: () = fred::interfaces::HashesInterface::hset(&inspector, &key, ("name", "bob"))
        .await
        .unwrap_or(());
    let error = store
        .load(&id)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(&named) && error.contains("does not hold a cloakroom session"),
        "{error}"
    );

    // Through the layer: the owner of a session whose key was overwritten gets a 500 (no
    // retry fixes it), not a crash and not a fresh session that would hide the problem.
    let app = serve(layer(cookie(), store.clone())).await;
    let browser = app.browser();
    browser.get("/count").await;
    let id = id_from(&browser.cookie(NAME).unwrap_or_default());
    let _: () = inspector
        .set(store.key(&id), "{}", None, None, false)
        .await
        .unwrap_or(());
    let response = browser.get("/peek").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.set_cookies().is_empty());
}

#[tokio::test]
async fn with_the_local_cache_a_read_costs_no_command_and_a_write_one() {
    let server = redis().await;
    let refresh = Duration::from_millis(300);
    let app = serve(layer(cookie(), store(&server.url()).await).refresh_interval(refresh)).await;
    let inspector = inspector(&server.url()).await;
    let browser = app.browser();
    // Create the session, then read it from Redis once (and load the scripts).
    browser.get("/count").await;
    browser.get("/count").await;

    let read = commands_of(&inspector, async { browser.get("/peek").await.body }).await;
    assert_eq!(
        read,
        counts(&[]),
        "a read-only request within the refresh interval must be served from the local copy"
    );
    let write = commands_of(&inspector, async { browser.get("/count").await.body }).await;
    assert_eq!(
        write,
        counts(&[("evalsha", 1), ("hmget", 1), ("hset", 1), ("exists", 1)]),
        "a writing request on a held session must be one EVALSHA, the new copy made here"
    );
    let read = commands_of(&inspector, async { browser.get("/peek").await.body }).await;
    assert_eq!(read, counts(&[]), "the write must leave the new copy");
    assert_eq!(browser.get("/peek").await.body, "3");
    // Held or not, what is served is what Redis holds.
    let elsewhere = serve(layer(cookie(), uncached_store(&server.url()).await)).await;
    let uncached = elsewhere.browser();
    uncached.set_cookie(NAME, &browser.cookie(NAME).unwrap_or_default());
    assert_eq!(uncached.get("/peek").await.body, "3");

    tokio::time::sleep(refresh).await;
    // Due: served from the copy, refreshed by one EVALSHA after the handler, which sends back
    // only the new expiry (no HGETALL); a writing request's refresh rides on its own EVALSHA.
    let refresh_commands = |hset| {
        let commands = [
            ("evalsha", 1),
            ("hmget", 1),
            ("time", 1),
            ("pexpireat", 1),
            ("exists", 1),
        ];
        let mut expected = counts(&commands);
        expected.insert("hset".to_owned(), hset);
        expected
    };
    let refreshed = commands_of(&inspector, async { browser.get("/peek").await.body }).await;
    assert_eq!(refreshed, refresh_commands(1), "a due read-only request");
    let read = commands_of(&inspector, async { browser.get("/peek").await.body }).await;
    assert_eq!(read, counts(&[]), "the refresh must leave the copy");
    tokio::time::sleep(refresh).await;
    let write = commands_of(&inspector, async { browser.get("/count").await.body }).await;
    assert_eq!(write, refresh_commands(2), "a due writing request");
    // The copy carries the expiry Redis set: another instance reads the same.
    assert_eq!(uncached.get("/peek").await.body, "4");
    assert_eq!(browser.get("/peek").await.body, "4");
}

#[tokio::test]
async fn a_refreshed_copy_carries_the_expiry_redis_set() {
    let (_server, store, inspector) = server_store_and_inspector().await;
    let record = Record::new(SystemTime::now(), Duration::from_secs(60), None);
    let id = store.create(&record).await.expect("create");
    let cost = until_cached(&store, &inspector, &id, Duration::from_secs(2)).await;
    assert!(cost.is_empty(), "the session was never held: {cost:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let refresh = Changes {
        touch: true,
        ..Changes::default()
    };
    assert!(matches!(
        store.update(&id, &refresh).await,
        Ok(Update::Applied)
    ));
    let held = store.read_now(&id).and_then(Result::ok).flatten();
    let key = store.key(&id);
    let stored: Option<String> = inspector.hget(&key, "@expires").await.unwrap_or(None);
    let millis = |time: SystemTime| {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| since.as_millis().to_string())
            .ok()
    };
    assert!(
        held.as_ref()
            .is_some_and(|held| held.expires > record.expires)
    );
    assert_eq!(held.and_then(|held| millis(held.expires)), stored);
}

/// Reads `id` through `store` until `done` says yes, for up to two seconds (an invalidation
/// travels from Redis to the store's connection); returns the last read.
async fn read_until(
    store: &RedisStore,
    id: &SessionId,
    done: impl Fn(&Option<Record>) -> bool,
) -> Option<Record> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let record = store.read(id).await.expect("read");
        if done(&record) || tokio::time::Instant::now() > deadline {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_copy_follows_changes_from_other_instances_and_programs() {
    let server = redis().await;
    let cluster = cluster().await;
    follow_changes(&server.url(), true).await;
    // A cluster's INFO comes from one node, so commands are counted on the standalone only.
    follow_changes(&cluster_url(&cluster), false).await;
}

/// The local copy of a store on `url` follows another store's change, another program's and
/// a deletion; `counted`: check that a second read costs no command.
async fn follow_changes(url: &str, counted: bool) {
    let here = store(url).await;
    let there = store(url).await;
    let inspector = inspector(url).await;
    let value = |record: &Option<Record>, key: &str| {
        record
            .as_ref()
            .and_then(|r| r.entries.get(key))
            .map(|e| e.json.clone())
    };
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(600), None);
    let id = here.create(&record).await.expect("create");
    assert!(matches!(here.read(&id).await, Ok(Some(_))));
    if counted {
        let cached = commands_of(&inspector, async {
            let _ = here.read(&id).await;
            String::new()
        })
        .await;
        assert_eq!(
            cached,
            counts(&[]),
            "the second read must use the local copy"
        );
    }

    assert!(there.update(&id, &set("cart", "[1]")).await.is_ok());
    let seen = read_until(&here, &id, |r| value(r, "cart").is_some()).await;
    assert_eq!(
        value(&seen, "cart").as_deref(),
        Some("[1]"),
        "another instance's change never reached the local copy"
    );

    let _: () =
        fred::interfaces::HashesInterface::hset(&inspector, here.key(&id), (".cart", "v[1,2]"))
            .await
            .unwrap_or(());
    let seen = read_until(&here, &id, |r| value(r, "cart").as_deref() == Some("[1,2]")).await;
    assert_eq!(value(&seen, "cart").as_deref(), Some("[1,2]"));

    let _: () = inspector.del(here.key(&id)).await.unwrap_or(());
    let seen = read_until(&here, &id, Option::is_none).await;
    assert!(
        seen.is_none(),
        "a deleted session was still served: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_the_local_copy_is_tracked_again() {
    let mut server = durable_redis().await;
    // One connection, so that one reconnection is all there is.
    let store = RedisStore::builder()
        .url(server.url())
        .pool_size(1)
        .command_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("the store connects");
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(600), None);
    let id = store.create(&record).await.expect("create");
    assert!(matches!(store.read(&id).await, Ok(Some(_))));

    server.restart().await.expect("redis-server restarts");
    // Once a read succeeds again, the client has reconnected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.read(&id).await.is_err() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Caching resumes (tracking is turned on again in the background)...
    let inspector = inspector(&server.url()).await;
    let cached = until_cached(&store, &inspector, &id, Duration::from_secs(5)).await;
    assert_eq!(cached, counts(&[]), "reads never came from the copy again");
    // ...and the copy is tracked on the new connection: another program's change reaches it.
    assert!(
        followed_elsewhere(&store, &inspector, &id).await,
        "after the reconnection the copy went stale"
    );
}

/// Whether a change another program makes to `id` (an `HSET` through `inspector`) reaches
/// what `store` reads: its copy, if it holds one, is tracked.
async fn followed_elsewhere(store: &RedisStore, inspector: &Client, id: &SessionId) -> bool {
    let _: () = fred::interfaces::HashesInterface::hset(inspector, store.key(id), (".seen", "v1"))
        .await
        .unwrap_or(());
    let seen = read_until(store, id, |r| {
        r.as_ref().is_some_and(|r| r.entries.contains_key("seen"))
    })
    .await;
    seen.is_some_and(|r| r.entries.contains_key("seen"))
}

/// Reads `id` until a read costs no command (it came from the copy), for up to `patience`;
/// returns the commands the last read cost.
async fn until_cached(
    store: &RedisStore,
    inspector: &Client,
    id: &SessionId,
    patience: Duration,
) -> HashMap<String, u64> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let _ = store.read(id).await;
        let cost = commands_of(inspector, async {
            let _ = store.read(id).await;
            String::new()
        })
        .await;
        if cost.is_empty() || tokio::time::Instant::now() > deadline {
            return cost;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_tracking_is_retried_until_the_copy_is_tracked_again() {
    let server = redis().await;
    let store = RedisStore::builder()
        .url(server.url())
        .pool_size(1)
        .build()
        .await
        .expect("the store connects");
    let inspector = inspector(&server.url()).await;
    let record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    let id = store.create(&record).await.expect("create");
    assert_eq!(
        until_cached(&store, &inspector, &id, Duration::from_secs(5)).await,
        counts(&[])
    );

    // Redis refuses CLIENT TRACKING, then the store's connection drops and comes back.
    common::command(
        &inspector,
        &["ACL", "SETUSER", "default", "-client|tracking"],
    )
    .await;
    common::command(
        &inspector,
        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
    )
    .await;
    // What a read costs, without the store's own reconnection and tracking attempts.
    let read_cost = || async {
        let mut cost = commands_of(&inspector, async {
            let _ = store.read(&id).await;
            String::new()
        })
        .await;
        // Its attempts turn tracking on (`CLIENT`) and close the watchers they replace.
        cost.retain(|name, _| !name.starts_with("client|") && name != "quit");
        cost
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while read_cost().await != counts(&[("hgetall", 1)]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "without tracking, reads must go to Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused attempts come and go; reads keep going to Redis meanwhile.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        read_cost().await,
        counts(&[("hgetall", 1)]),
        "reads came from an untracked copy"
    );

    // Once Redis allows it again, the store tries again by itself: no reconnection needed.
    common::command(
        &inspector,
        &["ACL", "SETUSER", "default", "+client|tracking"],
    )
    .await;
    let cached = until_cached(&store, &inspector, &id, Duration::from_secs(10)).await;
    assert_eq!(
        cached,
        counts(&[]),
        "the copy stayed off after tracking was refused once"
    );
    assert!(
        followed_elsewhere(&store, &inspector, &id).await,
        "the copy is not tracked after the retry"
    );
}

/// Updates `count` fresh sessions of `store` at once, plus one whose key holds another
/// program's data; checks every update applied and only the foreign one failed, naming its
/// key. Returns how many `EVALSHA`s the lot cost on `nodes`, the servers behind `url`.
async fn update_together(store: &RedisStore, url: &str, nodes: &[String], count: usize) -> u64 {
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(60), None);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(store.create(&record).await.expect("create"));
    }
    let foreign = SessionId::generate();
    let _: () = inspector(url)
        .await
        .set(store.key(&foreign), "not a session", None, None, false)
        .await
        .unwrap_or(());
    let changes: Vec<Changes> = (0..count).map(|n| set("n", &n.to_string())).collect();
    let mut node_inspectors = Vec::new();
    for node in nodes {
        let inspector = inspector(node).await;
        let _: () = inspector.config_resetstat().await.unwrap_or(());
        node_inspectors.push(inspector);
    }

    let updates = ids.iter().zip(&changes).map(|(id, c)| store.update(id, c));
    let (updates, foreign_update) = tokio::join!(
        futures_util::future::join_all(updates),
        store.update(&foreign, &changes[0]),
    );

    let mut evalsha = 0;
    for inspector in &node_inspectors {
        evalsha += command_counts(inspector)
            .await
            .get("evalsha")
            .copied()
            .unwrap_or(0);
    }
    for (n, update) in updates.into_iter().enumerate() {
        assert!(
            matches!(update, Ok(Update::Applied)),
            "update {n}: {update:?}"
        );
    }
    assert!(
        matches!(&foreign_update, Err(RedisStoreError::Foreign { key, .. }) if *key == format!("session:{foreign}")),
        "{foreign_update:?}"
    );
    for (n, id) in ids.iter().enumerate() {
        let record = store.read(id).await.ok().flatten();
        let value = record.and_then(|r| r.entries.get("n").map(|e| e.json.clone()));
        assert_eq!(value, Some(n.to_string()), "session {n}");
    }
    evalsha
}

#[tokio::test]
async fn concurrent_calls_share_one_script_call_and_fail_alone() {
    let server = redis().await;
    let (url, nodes) = (server.url(), [server.url()]);
    // Without the local copy, the connections track no keys.
    let pooled = |size| {
        RedisStore::builder()
            .url(&url)
            .pool_size(size)
            .local_cache(0)
            .build()
    };
    let store = pooled(1).await.expect("the store connects");
    // After a SCRIPT FLUSH (as on a restarted server) the batch loads the script and retries.
    let _: () = fred::interfaces::LuaInterface::script_flush(&inspector(&url).await, false)
        .await
        .unwrap_or(());
    update_together(&store, &url, &nodes, 100).await;
    // On one thread every call is queued before the batch is sent: 101 updates, one EVALSHA.
    assert_eq!(update_together(&store, &url, &nodes, 100).await, 1);
    // At most 128 calls ride one script, so a batch never holds Redis up for long.
    assert_eq!(update_together(&store, &url, &nodes, 300).await, 3);
    // With a pool, a session's calls keep to one connection (by hash slot), so each of the
    // four connections carries its share in one script call.
    let store = pooled(4).await.expect("the store connects");
    assert_eq!(update_together(&store, &url, &nodes, 100).await, 4);
    // Before Redis 7.2 a tracking connection's (the local copy's) script tracks every key at
    // every read, a cost that grows with the square of its calls: there, 16 calls a script.
    let store = RedisStore::builder().url(&url).pool_size(1).build();
    let store = store.await.expect("the store connects");
    assert!(store.local_cache_stats().is_some(), "the copy is on");
    let info: String = inspector(&url)
        .await
        .info(Some(fred::types::InfoKind::Server))
        .await
        .expect("INFO server");
    let version: Vec<u32> = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().split('.').filter_map(|n| n.parse().ok()).collect())
        .expect("INFO server has redis_version");
    let expected = if version[..] < [7, 2][..] { 7 } else { 1 };
    assert_eq!(
        update_together(&store, &url, &nodes, 100).await,
        expected,
        "Redis {version:?}"
    );
}

#[tokio::test]
async fn concurrent_calls_on_a_cluster_go_one_script_call_per_slot() {
    let cluster = cluster().await;
    let url = cluster_url(&cluster);
    let store = store(&url).await;
    // A script's keys must share a hash slot: 101 random keys fall in (nearly) as many slots.
    let evalsha = update_together(&store, &url, &cluster.urls(), 100).await;
    assert!((95..=101).contains(&evalsha), "{evalsha} EVALSHAs");
}
