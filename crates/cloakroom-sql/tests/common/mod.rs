//! What the PostgreSQL and SQLite tests share: hostile input any store must keep exactly.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used, clippy::print_stdout, dead_code)]

use std::time::{Duration, SystemTime};

use cloakroom::store::{Changes, Entry, Record, SessionStore, Update};

pub(crate) fn entry(json: &str) -> Option<Entry> {
    Some(Entry {
        json: json.to_owned(),
        flash: false,
    })
}

/// A new session in `store` that lives `idle` without a request.
pub(crate) async fn session<St: SessionStore>(store: &St, idle: Duration) -> cloakroom::SessionId {
    store
        .create(&Record::new(SystemTime::now(), idle, None))
        .await
        .expect("create")
}

/// An update that may leave the expiry where it is (`touch: false`, no new idle timeout or
/// deadline) writes the entries alone and leaves `expires_ms` as it was (so it changes no
/// indexed column); one with `touch` moves it. `expires` reads a row's `expires_ms`.
pub(crate) async fn only_a_touch_moves_the_expiry<St, F, Fut>(store: &St, expires: F)
where
    St: SessionStore,
    F: Fn(cloakroom::SessionId) -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let id = session(store, Duration::from_secs(600)).await;
    let before = expires(id.clone()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let changes = cloakroom_tests::set("k", "1");
    assert_eq!(
        store.update(&id, &changes).await.expect("update"),
        Update::Applied
    );
    assert_eq!(
        expires(id.clone()).await,
        before,
        "an entries-only update moved the expiry"
    );
    let record = store.read(&id).await.expect("read").expect("the session");
    assert_eq!(record.entries["k"].json, "1");
    let touched = Changes {
        touch: true,
        ..cloakroom_tests::set("k", "2")
    };
    assert_eq!(
        store.update(&id, &touched).await.expect("update"),
        Update::Applied
    );
    assert!(expires(id).await > before, "a touch left the expiry");
}

/// Keys and values no store may change or refuse: any Unicode, NUL bytes in keys and in JSON
/// strings (which PostgreSQL's `jsonb` refuses as characters), quotes, backslashes, escapes
/// that look like the store's own, and a 1 MB value; created, then changed by an update.
pub(crate) async fn hostile_input_round_trips<St: SessionStore>(store: &St) {
    let nul_json = serde_json::to_string("a\0b\u{1}c").expect("json");
    assert!(nul_json.contains("\\u0000"), "{nul_json}");
    let big = serde_json::to_string(&"✓ big\0".repeat(1024 * 1024 / 8)).expect("json");
    assert!(big.len() >= 1024 * 1024, "{}", big.len());
    let pairs: Vec<(String, String)> = vec![
        ("\0".to_owned(), nul_json.clone()),
        ("key\0with nul".to_owned(), "\"\\u0000\"".to_owned()),
        ("%00".to_owned(), "\"%00\"".to_owned()),
        ("%".to_owned(), "1".to_owned()),
        ("\"quoted\\\"".to_owned(), "\"\\\"\\\\\"".to_owned()),
        (
            "ключ 🦀 ✓ \u{10FFFF}\u{FEFF}".to_owned(),
            "\"значение 🦀\"".to_owned(),
        ),
        (
            "\n\t\r\u{7f}".to_owned(),
            "{\"nested\":{\"\\u0000\":[null,true]}}".to_owned(),
        ),
        (
            "'; DROP TABLE sessions; --".to_owned(),
            "\"'); DELETE FROM sessions; --\"".to_owned(),
        ),
        (String::new(), "null".to_owned()),
        ("big".to_owned(), big),
    ];
    let mut record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    for (key, json) in &pairs[..5] {
        record
            .entries
            .insert(key.clone(), entry(json).expect("entry"));
    }
    let id = store
        .create(&record)
        .await
        .expect("create with hostile keys");
    let changes = Changes {
        entries: pairs[5..]
            .iter()
            .map(|(key, json)| (key.clone(), entry(json)))
            .chain([("%".to_owned(), None)])
            .collect(),
        ..Changes::default()
    };
    assert_eq!(
        store.update(&id, &changes).await.expect("update"),
        Update::Applied
    );
    let loaded = store.load(&id).await.expect("load").expect("the session");
    let mut expected = record.entries.clone();
    expected.remove("%");
    for (key, json) in &pairs[5..] {
        expected.insert(key.clone(), entry(json).expect("entry"));
    }
    assert_eq!(loaded.entries.len(), expected.len());
    for (key, entry) in &expected {
        let got = loaded.entries.get(key);
        assert!(
            got == Some(entry),
            "{key:?} came back as {:?}",
            got.map(|e| e.json.chars().take(40).collect::<String>())
        );
    }
    store.delete(&id).await.expect("delete");
}

/// The conformance kit as both SQL stores run it.
pub(crate) fn conformance() -> cloakroom_testkit::Conformance {
    cloakroom_testkit::Conformance::new()
        .tick(Duration::from_millis(200))
        .sessions(2_000)
}

/// 200 requests of one session, each writing its own key at once, through the layer: all
/// 200 keys (and the first request's) survive.
pub(crate) async fn two_hundred_concurrent_writers_all_survive<St>(store: St)
where
    St: SessionStore + Clone + 'static,
{
    use cloakroom_tests::app::{cookie, layer, serve, write_concurrently};
    let app = serve(layer(cookie(), store)).await;
    let browser = app.browser();
    browser.get("/count").await;
    let keys = write_concurrently(std::slice::from_ref(&browser), 200).await;
    assert_eq!(keys.split(',').count(), 201, "updates were lost: {keys}");
}

/// Several stores on one database (several app instances), racing every call and "log out
/// everywhere" for 3 s: the consistency checker finds no violation and no failed call.
pub(crate) async fn instances_agree_with_revokes<St>(
    name: &str,
    instances: Vec<St>,
    at_least: usize,
) where
    St: SessionStore + cloakroom::store::OwnerIndex + Clone + 'static,
{
    let instances_len = instances.len();
    let report = cloakroom_testkit::Consistency::new()
        .duration(Duration::from_secs(3))
        .expiry(Duration::from_secs(1))
        .soak_from_env()
        .run_with_revokes(instances)
        .await
        .unwrap_or_else(|violation| panic!("{violation}"));
    println!("{name}, {instances_len} instances, revokes: {report}");
    assert!(report.operations > at_least, "{report}");
    assert_eq!(report.failed, 0, "calls failed without a fault: {report}");
}
