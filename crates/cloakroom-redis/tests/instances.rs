//! Several app instances on one Redis: what one instance writes or deletes reaches every
//! other instance's local copy, whichever path made that copy (a plain read, a load's refresh,
//! an update with or without a session sent back). Each instance is its own `RedisStore`,
//! with its own connections, as separate app processes have.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use cloakroom::SessionId;
use cloakroom::store::{Changes, Record, SessionStore};
use cloakroom_redis::RedisStore;
use cloakroom_testkit::RedisServer;
use cloakroom_tests::app::{NAME, cookie, layer, serve};
use cloakroom_tests::{cluster_url, set};
use common::{admin, cluster, redis, run, store, uncached_store};
use fred::interfaces::ClientLike;

/// How long an instance may still serve a copy after another instance's change returned: the
/// time Redis's invalidation takes to reach it. The README states this bound.
const STALENESS: Duration = Duration::from_millis(100);

fn value(record: &Option<Record>, key: &str) -> Option<String> {
    Some(record.as_ref()?.entries.get(key)?.json.clone())
}

async fn create(store: &RedisStore) -> SessionId {
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(600), None);
    store.create(&record).await.expect("create")
}

async fn read(store: &RedisStore, id: &SessionId) -> Option<Record> {
    store.read(id).await.expect("read")
}

/// What `store` answers for `id` once [`STALENESS`] has passed, by `read` and by `read_now`
/// (which must agree when it answers).
async fn settled(store: &RedisStore, id: &SessionId) -> Option<Record> {
    tokio::time::sleep(STALENESS).await;
    let read = read(store, id).await;
    if let Some(now) = store.read_now(id) {
        let now = now.expect("read_now");
        assert_eq!(
            now.map(|r| r.entries),
            read.as_ref().map(|r| r.entries.clone()),
            "read_now and read disagree"
        );
    }
    read
}

/// The ways an instance comes to hold a copy: each leaves `here` holding `id`.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// A plain read (`HGETALL`).
    Read,
    /// A load, whose script refreshes the expiry (a write) and sends the session back.
    Load,
    /// An update built on the held copy: the script writes and sends only the expiry back.
    UpdateOnCopy,
    /// An update with a new idle timeout: the script writes and sends the session back.
    UpdateReturned,
    /// An update that only refreshes the expiry (`Changes::touch`).
    Refresh,
}

const HELD: [Held; 5] = [
    Held::Read,
    Held::Load,
    Held::UpdateOnCopy,
    Held::UpdateReturned,
    Held::Refresh,
];

async fn hold(here: &RedisStore, id: &SessionId, how: Held) {
    // Held first by a read, so that the updates below have a copy to build on.
    assert!(read(here, id).await.is_some());
    let outcome = match how {
        Held::Read => return,
        Held::Load => here.load(id).await.map(drop),
        Held::UpdateOnCopy => here.update(id, &set("mine", "1")).await.map(drop),
        Held::UpdateReturned => {
            let changes = Changes {
                idle_timeout: Some(Duration::from_secs(900)),
                ..set("mine", "1")
            };
            here.update(id, &changes).await.map(drop)
        }
        Held::Refresh => {
            let changes = Changes {
                touch: true,
                ..Changes::default()
            };
            here.update(id, &changes).await.map(drop)
        }
    };
    outcome.unwrap_or_else(|error| panic!("{how:?}: {error}"));
    assert!(
        here.read_now(id).is_some(),
        "{how:?} left no local copy: nothing is tested"
    );
}

/// For every way of holding a copy: another instance's update, then its delete, reach it.
async fn changes_elsewhere_reach_every_copy(url: &str) {
    let here = store(url).await;
    let there = store(url).await;
    for how in HELD {
        let id = create(&here).await;
        hold(&here, &id, how).await;
        there
            .update(&id, &set("cart", "[1]"))
            .await
            .expect("an update elsewhere");
        let seen = settled(&here, &id).await;
        assert_eq!(
            value(&seen, "cart").as_deref(),
            Some("[1]"),
            "{url}: held by {how:?}, another instance's update never reached the copy"
        );

        // The read above re-made the copy; hold it the same way again, then delete elsewhere.
        hold(&here, &id, how).await;
        there.delete(&id).await.expect("a delete elsewhere");
        let seen = settled(&here, &id).await;
        assert!(
            seen.is_none(),
            "{url}: held by {how:?}, a session deleted through another instance was still served"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_update_and_delete_reach_every_copy_standalone() {
    let server = redis().await;
    changes_elsewhere_reach_every_copy(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_update_and_delete_reach_every_copy_on_a_cluster() {
    let cluster = cluster().await;
    changes_elsewhere_reach_every_copy(&cluster_url(&cluster)).await;
}

/// The counters say what the copy did: a read from Redis is a miss, the next one a hit; a
/// write through another instance invalidates the copy, and the read after it is a miss again.
/// A full cache evicts. Without a copy there are no counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_copys_counters_follow_hits_misses_and_other_instances_writes() {
    let server = redis().await;
    let here = store(&server.url()).await;
    let there = store(&server.url()).await;
    let id = create(&here).await;
    let before = here.local_cache_stats().expect("the copy is on");
    assert_eq!((before.hits, before.misses, before.held), (0, 0, 0));

    read(&here, &id).await;
    read(&here, &id).await;
    assert!(here.read_now(&id).is_some(), "the copy answers read_now");
    let held = here.local_cache_stats().expect("stats");
    assert_eq!((held.hits, held.misses, held.held), (2, 1, 1), "{held:?}");

    there
        .update(&id, &set("cart", "[1]"))
        .await
        .expect("an update elsewhere");
    let seen = settled(&here, &id).await;
    assert_eq!(value(&seen, "cart").as_deref(), Some("[1]"));
    let after = here.local_cache_stats().expect("stats");
    assert_eq!(after.invalidated, 1, "{after:?}");
    assert_eq!((after.hits, after.misses), (3, 2), "{after:?}");

    let small = RedisStore::builder()
        .url(server.url())
        .local_cache(2)
        .build()
        .await
        .expect("store");
    for _ in 0..3 {
        let id = create(&small).await;
        read(&small, &id).await;
    }
    let full = small.local_cache_stats().expect("stats");
    assert_eq!((full.held, full.evicted), (2, 1), "{full:?}");

    let off = uncached_store(&server.url()).await;
    assert_eq!(off.local_cache_stats(), None);
}

/// The reproduction through HTTP: log in on A, one writing request on A, log out
/// through B; A must answer "anonymous". With `refresh_interval(0)` every request on A also
/// refreshes (a write of its own), which must not blind A's copy either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_through_one_instance_holds_on_the_other() {
    let server = redis().await;
    for refresh in [Duration::from_secs(60), Duration::ZERO] {
        let a = serve(layer(cookie(), store(&server.url()).await).refresh_interval(refresh)).await;
        let b = serve(layer(cookie(), store(&server.url()).await).refresh_interval(refresh)).await;
        let on_a = a.browser();
        assert_eq!(on_a.post_form("/login", "").await.body, "logged in");
        assert_eq!(on_a.get("/count").await.body, "1");
        assert_eq!(on_a.get("/whoami").await.body, "ada");
        let session = on_a.cookie(NAME).unwrap_or_default();

        let on_b = b.browser();
        on_b.set_cookie(NAME, &session);
        assert_eq!(on_b.get("/count").await.body, "2", "B must see A's write");
        tokio::time::sleep(STALENESS).await;
        assert_eq!(
            on_a.get("/peek").await.body,
            "2",
            "refresh {refresh:?}: A kept serving its own write over B's"
        );
        assert_eq!(on_b.post_form("/logout", "").await.body, "logged out");
        tokio::time::sleep(STALENESS).await;
        // The browser on A still sends the old cookie, as a second tab would.
        on_a.set_cookie(NAME, &session);
        assert_eq!(
            on_a.get("/whoami").await.body,
            "anonymous",
            "refresh {refresh:?}: A still served a session logged out through B"
        );
    }
}

/// Three instances on `url` hold sessions (each in every way there is); `flush` empties Redis
/// through `nodes` (every node of a cluster); then no instance serves any of them.
async fn a_flush_logs_everybody_out(url: &str, nodes: &[String], command: &'static str) {
    let instances = [store(url).await, store(url).await, store(url).await];
    let mut ids = Vec::new();
    for (n, how) in HELD.into_iter().enumerate() {
        for _ in 0..4 {
            let id = create(&instances[n % 3]).await;
            for instance in &instances {
                hold(instance, &id, how).await;
            }
            ids.push(id);
        }
    }
    for node in nodes {
        let admin = admin(node).await;
        let custom = fred::types::CustomCommand::new_static(command, None, false);
        let reply: Result<fred::types::Value, _> = admin.custom(custom, Vec::<String>::new()).await;
        reply.unwrap_or_else(|error| panic!("{command} on {node}: {error}"));
    }
    tokio::time::sleep(STALENESS).await;
    for (n, instance) in instances.iter().enumerate() {
        for id in &ids {
            assert!(
                instance.read_now(id).is_none(),
                "{url}: instance {n} kept a copy through {command}"
            );
            assert!(
                read(instance, id).await.is_none(),
                "{url}: instance {n} served a session after {command}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_logs_everybody_out_on_every_instance_standalone() {
    let server = redis().await;
    a_flush_logs_everybody_out(&server.url(), &[server.url()], "FLUSHALL").await;
    a_flush_logs_everybody_out(&server.url(), &[server.url()], "FLUSHDB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_logs_everybody_out_on_every_instance_on_a_cluster() {
    let cluster = cluster().await;
    a_flush_logs_everybody_out(&cluster_url(&cluster), &cluster.urls(), "FLUSHALL").await;
}

/// A write that timed out is indeterminate: against a paused Redis the request gets the store
/// error (503, no cookie) after the command timeout, and its write still applies when Redis
/// resumes (fred has already written the command to the socket). The README says so; a change
/// that makes a timed-out write unable to land must change this test and the README together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_timed_out_against_a_paused_redis_may_land_when_it_resumes() {
    let server = redis().await;
    let store = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect("the store connects");
    let app = serve(layer(cookie(), store)).await;
    let browser = app.browser();
    for visit in 1..=6 {
        assert_eq!(browser.get("/count").await.body, visit.to_string());
    }
    server.pause().expect("redis-server pauses");
    let timed_out = browser.get("/count").await;
    server.resume().expect("redis-server resumes");
    assert_eq!(
        timed_out.status,
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        timed_out.set_cookies().is_empty(),
        "a failed save set a cookie"
    );
    tokio::time::sleep(STALENESS).await;
    assert_eq!(
        browser.get("/count").await.body,
        "8",
        "the timed-out write (7) did not land after all: update the README's 'may still apply'"
    );
}

/// A connection that stalls without closing (a partition dropping packets) delivers neither
/// invalidations nor errors. Instance A reaches Redis through a proxy that freezes; B deletes
/// the session meanwhile. A must stop serving its copy within the heartbeat's bound (a PING a
/// second, a second to answer), answer with an error rather than the deleted session while cut
/// off, and see the delete once the partition heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_stops_the_copy_within_the_heartbeat_bound() {
    let server = redis().await;
    let proxy = cloakroom_testkit::Proxy::start(server.port())
        .await
        .expect("the proxy starts");
    let a = RedisStore::builder()
        .url(format!("redis://127.0.0.1:{}", proxy.port()))
        .command_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("the store connects");
    let b = store(&server.url()).await;
    let id = create(&b).await;
    hold(&a, &id, Held::Read).await;

    proxy.freeze();
    b.delete(&id).await.expect("delete");
    let frozen = tokio::time::Instant::now();
    let bound = Duration::from_secs(3);
    while a.read_now(&id).is_some() {
        assert!(
            frozen.elapsed() < bound,
            "A served its copy for {bound:?} behind a stalled connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !matches!(a.read(&id).await, Ok(Some(_))),
        "A served the deleted session while cut off"
    );

    proxy.thaw();
    let healed = tokio::time::Instant::now();
    loop {
        match a.read(&id).await {
            Ok(None) => break,
            Ok(Some(_)) => panic!("A served the deleted session after the partition healed"),
            Err(_) => assert!(
                healed.elapsed() < Duration::from_secs(10),
                "A never recovered after the partition healed"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An update cut short (the client went away) while still queued, then a read of the same
/// session in the same batch: the read may run before the update, so its reply must not be
/// kept, however the update's ticket ended. (Found by review: the cancelled ticket released
/// its claim, the read's stale reply was kept, and NOLOOP meant nothing ever corrected it.)
#[tokio::test]
async fn a_cancelled_update_leaves_no_stale_copy_on_its_own_instance() {
    let server = redis().await;
    let here = store(&server.url()).await;
    let redis = uncached_store(&server.url()).await;
    let id = create(&here).await;
    here.update(&id, &set("k", "1")).await.expect("update");
    assert_eq!(value(&read(&here, &id).await, "k").as_deref(), Some("1"));
    {
        let changes = set("k", "2");
        let mut update = Box::pin(here.update(&id, &changes));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            update.as_mut().poll(&mut context).is_pending(),
            "the update finished in one poll: nothing is tested"
        );
    }
    let _ = read(&here, &id).await;
    tokio::time::sleep(STALENESS).await;
    let truth = value(&read(&redis, &id).await, "k");
    assert_eq!(
        truth.as_deref(),
        Some("2"),
        "the cancelled update did not land"
    );
    assert_eq!(
        value(&settled(&here, &id).await, "k"),
        truth,
        "the instance that cancelled the update kept serving the state before it"
    );
}

/// A slot that moved to another primary: the first script call after it gets `MOVED`. fred
/// would follow it as a second attempt, which it cannot tell from replaying a call whose
/// connection broke (which may have run), so the store lets that call fail (the request gets
/// the store error, never a wrong answer) and the next call goes to the new owner. A change
/// that follows the redirection safely must change this test and the README together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_slot_moved_one_script_call_fails_and_the_next_reaches_the_new_owner() {
    let cluster = cluster().await;
    let mut nodes = Vec::new();
    for url in cluster.urls() {
        nodes.push(admin(&url).await);
    }
    let ports = cluster.ports();
    let here = uncached_store(&cluster_url(&cluster)).await;
    let id = create(&here).await;
    let key = here.key(&id);
    let slot = fred::util::redis_keyslot(key.as_bytes()).to_string();
    let mut owner = None;
    for (i, node) in nodes.iter().enumerate() {
        if run(node, &["HGETALL", &key]).await.is_ok() {
            owner = Some(i);
        }
    }
    let from = owner.unwrap_or_else(|| panic!("no node owns {slot}"));
    let to = (from + 1) % 3;
    let node_id = |i: usize| {
        let node = &nodes[i];
        async move {
            let reply = run(node, &["CLUSTER", "MYID"]).await;
            reply
                .ok()
                .and_then(|v| v.as_string())
                .expect("CLUSTER MYID answers")
        }
    };
    let (from_id, to_id) = (node_id(from).await, node_id(to).await);
    let to_port = ports[to].to_string();
    for (node, args) in [
        (to, vec!["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
        (from, vec!["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
        (
            from,
            vec!["MIGRATE", "127.0.0.1", &to_port, &key, "0", "5000"],
        ),
    ] {
        run(&nodes[node], &args)
            .await
            .unwrap_or_else(|error| panic!("{args:?}: {error}"));
    }
    for node in &nodes {
        run(node, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])
            .await
            .expect("CLUSTER SETSLOT NODE");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = here.load(&id).await;
    assert!(
        first.is_err(),
        "the first call after the move: {first:?} (see the doc comment)"
    );
    match here.load(&id).await {
        Ok(Some(_)) => {}
        other => panic!("the second load after the slot moved: {other:?}"),
    }
}

/// `replicas(n, timeout)`: with a replica in sync a write succeeds, whatever the timeout asked
/// (`Duration::MAX` is cut to what `WAIT` takes and the connection can wait); with no replica,
/// it fails, naming the cause, after at most that timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_counts_once_a_replica_has_it() {
    let primary = redis().await;
    let lonely = RedisStore::builder()
        .url(primary.url())
        .replicas(1, Duration::from_millis(100))
        .build()
        .await
        .expect("the store connects");
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(60), None);
    let error = lonely.create(&record).await.err().map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("0 of 1 replicas")),
        "{error:?}"
    );

    let replica_of = format!("127.0.0.1 {}", primary.port());
    let _replica = RedisServer::start_with_args(&["--replicaof", &replica_of])
        .await
        .expect("the replica starts");
    let admin = admin(&primary.url()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = run(&admin, &["INFO", "replication"]).await;
        let info = info.ok().and_then(|v| v.as_string()).unwrap_or_default();
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = RedisStore::builder()
        .url(primary.url())
        .replicas(1, Duration::MAX)
        .build()
        .await
        .expect("the store connects");
    let id = store.create(&record).await.expect("create with a replica");
    store
        .update(&id, &set("k", "1"))
        .await
        .expect("update with a replica");
    store.delete(&id).await.expect("delete with a replica");
}
