//! MemcacheStore against real `memcached` processes that the tests start on free loopback
//! ports.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::time::{Duration, SystemTime};

use async_memcached::{Client, MetaProtocol};
use axum::http::StatusCode;
use cloakroom::store::{Entry, OwnerIndex, Record, SessionStore, StoreError};
use cloakroom_memcache::{MemcacheStore, MemcacheStoreError};
use cloakroom_testkit::{Conformance, MemcachedServer, Proxy};
use cloakroom_tests::app::{NAME, cookie, id_from, layer, max_age, serve, write_concurrently};
use cloakroom_tests::set;

async fn memcached() -> MemcachedServer {
    MemcachedServer::start().await.expect("memcached starts")
}

fn store(servers: &[&MemcachedServer]) -> MemcacheStore {
    let addrs: Vec<String> = servers.iter().map(|s| s.addr()).collect();
    MemcacheStore::builder()
        .servers(addrs)
        .timeout(Duration::from_millis(500))
        .build()
        .expect("the store")
}

async fn client(server: &MemcachedServer) -> Client {
    Client::new(format!("tcp://{}", server.addr()))
        .await
        .expect("a client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_keeps_every_promise() {
    let server = memcached().await;
    let result = Conformance::new()
        .tick(Duration::from_secs(1))
        .sessions(2_000)
        .large_value(200 * 1024)
        .run(store(&[&server]))
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn sessions_spread_over_two_servers() {
    let (a, b) = (memcached().await, memcached().await);
    let store = store(&[&a, &b]);
    let record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    for _ in 0..200 {
        store.create(&record).await.expect("create");
    }
    let mut counts = Vec::new();
    for server in [&a, &b] {
        let stats = client(server).await.stats().await.unwrap_or_default();
        counts.push(
            stats
                .get("curr_items")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0),
        );
    }
    assert_eq!(counts.iter().sum::<u64>(), 200, "{counts:?}");
    assert!(
        counts.iter().all(|&n| n >= 50),
        "uneven spread over two servers: {counts:?}"
    );
}

#[tokio::test]
async fn a_sixty_day_remember_me_works() {
    let server = memcached().await;
    let app = serve(layer(cookie(), store(&[&server]))).await;
    let browser = app.browser();
    let response = browser.post_form("/remember", "").await;
    assert_eq!(
        response.set_cookie(NAME).as_deref().and_then(max_age),
        Some(60 * 86400)
    );
    // A plain relative expiry of 60 days would be read as a Unix time in 1970: gone at once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        browser.get("/whoami").await.body,
        "ada",
        "the 60-day session vanished"
    );
    let key = format!(
        "session:{}",
        id_from(&browser.cookie(NAME).unwrap_or_default()).as_str()
    );
    let item = client(&server)
        .await
        .meta_get(&key, false, None, Some(&["t"]))
        .await;
    let ttl = item
        .ok()
        .flatten()
        .and_then(|value| value.ttl_remaining)
        .unwrap_or(0);
    // memcached's clock ticks in whole seconds and lags the wall clock by up to one, so an
    // absolute expiry can read back a second or two long.
    assert!(
        (60 * 86400 - 10..=60 * 86400 + 2).contains(&ttl),
        "memcached TTL {ttl} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_writers_all_survive() {
    let server = memcached().await;
    let app = serve(layer(cookie(), store(&[&server]))).await;
    let browser = app.browser();
    browser.get("/count").await;
    let keys = write_concurrently(std::slice::from_ref(&browser), 200).await;
    assert_eq!(keys.split(',').count(), 201, "updates were lost: {keys}");
}

/// An update whose every compare-and-swap loses to another writer gives up after ten call
/// timeouts, however many attempts it has left: over a slow link (each round close to a
/// timeout, none over it) the thousand attempts alone would hold the request for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_keeps_losing_its_compare_and_swap_ends_in_bounded_time() {
    let server = memcached().await;
    let direct = store(&[&server]);
    let proxy = Proxy::start(server.port()).await.expect("the proxy starts");
    let timeout = Duration::from_millis(100);
    let slow = MemcacheStore::builder()
        .servers([format!("127.0.0.1:{}", proxy.port())])
        .timeout(timeout)
        .build()
        .expect("the store");
    let record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    let id = direct.create(&record).await.expect("create");
    // A rival that rewrites the session without pause, so every CAS of the slow writer fails.
    let rival = {
        let (direct, id) = (direct.clone(), id.clone());
        tokio::spawn(async move {
            for round in 0_usize.. {
                let changes = set("rival", &round.to_string());
                direct
                    .update(&id, &changes)
                    .await
                    .expect("the rival's update");
            }
        })
    };
    proxy.delay(timeout * 3 / 10);
    let mine = set("slow", "1");
    let update = slow.update(&id, &mine);
    let began = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), update).await;
    let took = began.elapsed();
    rival.abort();
    // The bound: ten call timeouts (1 s here), then at most the round under way (two calls).
    let bound = timeout * 10 + timeout * 2;
    match outcome {
        Ok(Err(MemcacheStoreError::Contention { attempts, .. })) => {
            assert!(attempts > 1, "gave up after {attempts} attempts");
            assert!(
                took < bound * 2,
                "gave up after {took:?}, more than twice the bound of {bound:?}"
            );
        }
        Ok(other) => panic!("expected contention, got {other:?}"),
        Err(_) => panic!("an update losing every CAS was still trying after 20 s"),
    }
}

#[tokio::test]
async fn a_session_larger_than_an_item_is_a_clear_error() {
    let server = memcached().await;
    let store = store(&[&server]);
    let mut record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    let big = format!("\"{}\"", "x".repeat(2 * 1024 * 1024));
    record.entries.insert(
        "big".to_owned(),
        Entry {
            json: big,
            flash: false,
        },
    );
    let error = store.create(&record).await.err();
    assert!(
        matches!(
            error,
            Some(MemcacheStoreError::TooLarge {
                limit: 1_048_576,
                ..
            })
        ),
        "{error:?}"
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("bytes, more than memcached's item size limit of 1048576 bytes"),
        "{message}"
    );

    // The server's own limit is reported the same way when the store's is set higher.
    let lenient = MemcacheStore::builder()
        .servers([server.addr()])
        .max_item_size(8 << 20)
        .build()
        .expect("the store");
    let error = lenient.create(&record).await.err();
    assert!(
        matches!(error, Some(MemcacheStoreError::TooLarge { .. })),
        "{error:?}"
    );
    // No retry makes it fit: through the layer, a 500 rather than a 503.
    if let Some(error) = &error {
        assert_eq!(
            error.failure_kind(),
            cloakroom::store::FailureKind::Rejected
        );
    }
}

#[tokio::test]
async fn memcached_down_is_a_503_and_service_resumes_when_it_returns() {
    let mut server = memcached().await;
    let app = serve(layer(cookie(), store(&[&server]))).await;
    let browser = app.browser();
    assert_eq!(browser.get("/count").await.body, "1");

    server.stop();
    for path in ["/peek", "/count"] {
        let response = browser.get(path).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(response.set_cookies().is_empty());
    }
    server.restart().await.expect("memcached restarts");
    // memcached keeps nothing across a restart: the session starts over, and works.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    while status != StatusCode::OK && tokio::time::Instant::now() < deadline {
        status = browser.get("/count").await.status;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "requests did not recover after memcached came back"
    );
    assert_eq!(browser.get("/peek").await.status, StatusCode::OK);
}

/// Three `MemcacheStore` instances (each with its own connections) on one memcached, restarted
/// twice while the consistency checker runs: a restart loses every session (the checker is told),
/// and the calls that succeeded still agree. (The report is printed: `scripts/soak.sh`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_through_restarts() {
    let server = tokio::sync::Mutex::new(memcached().await);
    let instances = {
        let server = server.lock().await;
        vec![store(&[&server]), store(&[&server]), store(&[&server])]
    };
    let faults = cloakroom_testkit::Faults::new();
    let checker = cloakroom_testkit::Consistency::new()
        .duration(Duration::from_secs(3))
        .expiry(Duration::from_secs(1))
        .faults(faults.clone())
        .soak_from_env();
    let restarts = async {
        let rounds = checker.planned_duration().as_secs().max(2) - 1;
        for _ in 0..rounds {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let restarted = faults
                .wipe(async { server.lock().await.restart().await })
                .await;
            restarted.expect("memcached restarts");
        }
    };
    let (report, ()) = tokio::join!(checker.run(instances), restarts);
    let report = report.expect("the instances agree");
    println!("MemcacheStore, 3 instances, restarts: {report}");
    assert!(report.operations > 500, "{report}");
    assert!(
        report.indeterminate > 0,
        "no call failed: the restarts were not seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_revokes_an_owners_sessions() {
    let server = memcached().await;
    let result = Conformance::new()
        .tick(Duration::from_secs(1))
        .run_revocation(store(&[&server]))
        .await;
    assert_eq!(result, Ok(()));
}

fn owned(owner: &str) -> Record {
    cloakroom_tests::owned(owner, Duration::from_secs(600))
}

/// memcached may evict the owner's item at any moment: its sessions are then not served (the
/// user is logged out), never served past a revoke nobody could record. A new login works.
#[tokio::test]
async fn an_evicted_owner_fails_closed() {
    let server = memcached().await;
    let store = store(&[&server]);
    let id = store.create(&owned("user:1")).await.expect("create");
    let anonymous = store
        .create(&Record::new(
            SystemTime::now(),
            Duration::from_secs(600),
            None,
        ))
        .await
        .expect("create");
    assert!(store.load(&id).await.expect("load").is_some());
    let mut evict = client(&server).await;
    evict
        .meta_delete(store.owner_key("user:1"), false, None, None)
        .await
        .expect("the owner's item is removed, as an eviction would");
    assert!(
        store.read(&id).await.expect("read").is_none(),
        "served without its owner"
    );
    assert!(store.load(&id).await.expect("load").is_none());
    assert!(store.load(&anonymous).await.expect("load").is_some());
    let again = store.create(&owned("user:1")).await.expect("a new login");
    assert!(store.load(&again).await.expect("load").is_some());
    assert!(
        store.load(&id).await.expect("load").is_none(),
        "an evicted generation came back"
    );
}

/// Through two app instances: signing out the other devices ends the phone's session and
/// keeps the laptop's, even while the laptop's own requests keep coming; listing is a clear
/// error (500), not a wrong list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_other_devices_through_another_instance() {
    let server = memcached().await;
    let one = cloakroom_tests::app::serve_owned(layer(cookie(), store(&[&server]))).await;
    let two = cloakroom_tests::app::serve_owned(layer(cookie(), store(&[&server]))).await;
    let (laptop, phone) = (one.browser(), two.browser());
    for browser in [&laptop, &phone] {
        let response = browser.post_form("/sign-in/user:42", "").await;
        assert_eq!(response.status, StatusCode::OK);
    }
    assert_eq!(phone.get("/owner").await.body, "user:42");
    // The laptop keeps making requests while it signs out the others, again and again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let (laptop, stop) = (laptop.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    answers.push(laptop.get("/owner").await.body);
                }
                answers
            })
        })
        .collect();
    for _ in 0..20 {
        let response = laptop.post_form("/revoke-others", "").await;
        assert_eq!(response.body, "all", "{}", response.status);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for request in busy {
        let answers = request.await.expect("the laptop's requests");
        let signed_out = answers.iter().filter(|answer| *answer != "user:42").count();
        assert_eq!(
            signed_out,
            0,
            "the laptop was signed out while it signed out the others ({} requests)",
            answers.len()
        );
    }
    assert_eq!(phone.get("/owner").await.body, "anonymous");
    assert_eq!(laptop.get("/owner").await.body, "user:42");
    let listed = laptop.get("/devices").await;
    assert_eq!(listed.status, StatusCode::INTERNAL_SERVER_ERROR);
    let admin = two.browser();
    assert_eq!(admin.post_form("/revoke-all/user:42", "").await.body, "all");
    assert_eq!(laptop.get("/owner").await.body, "anonymous");
}

/// "Log out everywhere" through any of three instances, racing every other call: a revoke by
/// generation ends every session of the owner on every instance once it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revokes_hold_on_every_instance() {
    let server = memcached().await;
    let instances = vec![store(&[&server]), store(&[&server]), store(&[&server])];
    let report = cloakroom_testkit::Consistency::new()
        .duration(Duration::from_secs(3))
        .expiry(Duration::from_secs(1))
        .run_with_revokes(instances)
        .await;
    let report = report.unwrap_or_else(|violation| panic!("{violation}"));
    assert!(report.operations > 500, "{report}");
    assert_eq!(report.failed, 0, "calls failed without a fault: {report}");
}

async fn item(client: &mut Client, key: &str) -> String {
    let value = client.meta_get(key, false, None, Some(&["v"])).await;
    let data = value
        .expect("mg")
        .and_then(|value| value.data)
        .unwrap_or_default();
    String::from_utf8(data).expect("the owner's item is text")
}

/// A "sign out other devices" cut short (a store timeout, a client gone) leaves the owner's
/// item accepting two generations; a device that signs in then and later signs out its other
/// devices keeps its own session, and ends the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_cut_short_is_finished_by_the_next_one() {
    let server = memcached().await;
    let store = store(&[&server]);
    let mut client = client(&server).await;
    let key = store.owner_key("user:1");
    let laptop = store.create(&owned("user:1")).await.expect("create");
    let lock = format!("{key}:lock");
    let mut tries = 0;
    loop {
        // A revoke cut short holds its lock until the lock's TTL, seconds away; the next one
        // here would spend them waiting. Taking the lock away is that wait, done at once.
        let _ = client.meta_delete(&lock, false, None, None).await;
        if item(&mut client, &key).await.contains(',') {
            break;
        }
        tries += 1;
        assert!(tries < 20_000, "a revoke was never cut short half-way");
        // Cuts from 20 µs to 2 ms, so one lands between the revoke's steps however fast
        // the machine is.
        let cut = Duration::from_micros(20 + (tries * 7 % 2_000) as u64);
        let _ = tokio::time::timeout(cut, store.revoke_all("user:1", Some(&laptop))).await;
    }
    assert!(store.load(&laptop).await.expect("load").is_some());
    let phone = store.create(&owned("user:1")).await.expect("create");
    store
        .revoke_all("user:1", Some(&phone))
        .await
        .expect("revoke");
    assert!(
        store.load(&phone).await.expect("load").is_some(),
        "it signed out its own device"
    );
    assert!(
        store.load(&laptop).await.expect("load").is_none(),
        "the other device survived"
    );
}
