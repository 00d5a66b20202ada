//! What the PostgreSQL and SQLite tests share: hostile input any store must keep exactly.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used, dead_code)]

use std::time::{Duration, SystemTime};

use cloakroom::store::{Changes, Entry, Record, SessionStore, Update};

pub(crate) fn entry(json: &str) -> Option<Entry> {
    Some(Entry {
        json: json.to_owned(),
        flash: false,
    })
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
