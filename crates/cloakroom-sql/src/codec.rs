//! How a record becomes a row and back: pure functions, shared by both databases.
//!
//! The entries are one JSON object per row, so that an update can merge this request's keys
//! into what the row holds now, in the statement (`jsonb` `||` in PostgreSQL, `json_patch` in
//! SQLite), and concurrent requests that change different keys all survive. Each value is
//! kept as a JSON *string* holding the entry's own JSON text, tagged `v` (a value) or `f` (a
//! flash): the database never parses the value, so anything `serde_json` writes round-trips
//! byte for byte, including `\u0000`, which PostgreSQL's `jsonb` refuses as a character but
//! keeps as the six characters of its escape inside a string.
//!
//! Keys (and owner names) are escaped: `%`, `"`, `\` and control characters become `%XX`, so
//! a key never holds a NUL (which neither `jsonb` nor PostgreSQL `text` can hold) and never
//! needs JSON escaping (so both databases compare keys byte for byte, whatever their
//! version). The escape is one-to-one, and most keys contain none of those characters.
//!
//! Times are milliseconds since the Unix epoch (`BIGINT`), compared with the database's own
//! clock in every statement.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloakroom::store::{Changes, Entry, FOREVER, Owner, Record};
use serde::ser::Serializer;

/// The tag of a plain value.
const VALUE: char = 'v';
/// The tag of a flash value.
const FLASH: char = 'f';

/// A row's columns after `id`, in the order every statement returns them.
pub(crate) type Columns = (
    String,         // entries
    i64,            // created_ms
    i64,            // expires_ms
    i64,            // idle_ms
    Option<i64>,    // deadline_ms
    Option<String>, // owner
    Option<i64>,    // owner_since_ms
    Option<String>, // user_agent
    Option<String>, // address
);

/// The columns a statement returns, in [`Columns`] order, with `entries` as `entries_expr`.
pub(crate) fn returning(entries_expr: &str) -> String {
    format!(
        "{entries_expr}, created_ms, expires_ms, idle_ms, deadline_ms, owner, owner_since_ms, user_agent, address"
    )
}

/// What a row holds that is not a record.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Corrupt(pub(crate) String);

/// `key` escaped (see the module docs); borrowed when there is nothing to escape.
pub(crate) fn escape(key: &str) -> Cow<'_, str> {
    if !key.bytes().any(needs_escape) {
        return Cow::Borrowed(key);
    }
    let mut escaped = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        if c.is_ascii() && needs_escape(c as u8) {
            let _ = write!(escaped, "%{:02X}", c as u8);
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

fn needs_escape(b: u8) -> bool {
    b == b'%' || b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f
}

/// The key `escape` made `escaped` from.
pub(crate) fn unescape(escaped: &str) -> Result<Cow<'_, str>, Corrupt> {
    if !escaped.contains('%') {
        return Ok(Cow::Borrowed(escaped));
    }
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let byte = rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii() && needs_escape(*b))
            .ok_or_else(|| Corrupt(format!("a key has a bad escape: {escaped:?}")))?;
        out.push(char::from(byte));
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// An entry as the JSON string it is kept as: its tag, then its JSON text, written straight
/// into the serializer (no copy of a large value).
struct Tagged<'a>(&'a Entry);

impl fmt::Display for Tagged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char(if self.0.flash { FLASH } else { VALUE })?;
        f.write_str(&self.0.json)
    }
}

impl serde::Serialize for Tagged<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn object<'a>(entries: impl Iterator<Item = (&'a str, Option<&'a Entry>)>) -> String {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::new(&mut out);
    // Writing strings and maps of strings into memory cannot fail, and is UTF-8.
    let written =
        serializer.collect_map(entries.map(|(key, entry)| (escape(key), entry.map(Tagged))));
    match (written, String::from_utf8(out)) {
        (Ok(()), Ok(text)) => text,
        _ => "{}".to_owned(),
    }
}

/// A new record's entries column.
pub(crate) fn entries(record: &Record) -> String {
    object(
        record
            .entries
            .iter()
            .map(|(key, entry)| (key.as_str(), Some(entry))),
    )
}

/// Whether `changes` leave the expiry, the idle timeout and the deadline where they are, so
/// that an update may write the entries alone: it then changes no indexed column, which
/// PostgreSQL can do in place (a HOT update) and SQLite without touching an index.
pub(crate) fn entries_only(changes: &Changes) -> bool {
    !changes.touch && changes.idle_timeout.is_none() && changes.deadline.is_none()
}

/// One request's changed keys as a merge patch: the value of each key set, `null` for each
/// key removed (the last change of a key wins, as [`Record::apply`] applies them in order).
pub(crate) fn patch(changes: &Changes) -> String {
    let mut last: HashMap<&str, Option<&Entry>> = HashMap::with_capacity(changes.entries.len());
    for (key, entry) in &changes.entries {
        last.insert(key.as_str(), entry.as_ref());
    }
    object(last.into_iter())
}

/// Milliseconds since the Unix epoch (negative before it), saturating.
pub(crate) fn millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// A duration in milliseconds, at most [`FOREVER`]'s: `now + idle` in a statement then
/// never overflows a `BIGINT` (a `Duration::MAX` "remember me" is a session that lasts).
pub(crate) fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.min(FOREVER).as_millis()).unwrap_or(i64::MAX)
}

fn time(ms: i64) -> SystemTime {
    let offset = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(offset).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(offset).unwrap_or(UNIX_EPOCH)
    }
}

/// The record a row holds.
pub(crate) fn record(columns: Columns) -> Result<Record, Corrupt> {
    let (entries, created, expires, idle, deadline, owner, since, user_agent, address) = columns;
    let stored: HashMap<String, String> = serde_json::from_str(&entries)
        .map_err(|e| Corrupt(format!("the entries are not an object of strings: {e}")))?;
    let mut decoded = HashMap::with_capacity(stored.len());
    for (key, mut tagged) in stored {
        let flash = match tagged.chars().next() {
            Some(VALUE) => false,
            Some(FLASH) => true,
            _ => return Err(Corrupt("an entry has no tag".to_owned())),
        };
        tagged.drain(..1);
        let key = unescape(&key)?.into_owned();
        decoded.insert(
            key,
            Entry {
                json: tagged,
                flash,
            },
        );
    }
    let owner = match (owner, since) {
        (Some(name), Some(since)) => Some(Owner {
            name: unescape(&name)?.into_owned(),
            since: time(since),
            user_agent: user_agent
                .map(|ua| unescape(&ua).map(Cow::into_owned))
                .transpose()?,
            address: address
                .map(|a| unescape(&a).map(Cow::into_owned))
                .transpose()?,
        }),
        (None, _) => None,
        (Some(_), None) => return Err(Corrupt("an owner without its login time".to_owned())),
    };
    Ok(Record {
        entries: decoded,
        created: time(created),
        expires: time(expires),
        idle_timeout: Duration::from_millis(u64::try_from(idle).unwrap_or(0)),
        deadline: deadline.map(time),
        owner,
    })
}

/// The owner columns of a new record: name, login time, user agent, address, escaped.
pub(crate) fn owner(
    record: &Record,
) -> (Option<String>, Option<i64>, Option<String>, Option<String>) {
    match &record.owner {
        Some(owner) => (
            Some(escape(&owner.name).into_owned()),
            Some(millis(owner.since)),
            owner
                .user_agent
                .as_deref()
                .map(|ua| escape(ua).into_owned()),
            owner.address.as_deref().map(|a| escape(a).into_owned()),
        ),
        None => (None, None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str, flash: bool) -> Entry {
        Entry {
            json: json.to_owned(),
            flash,
        }
    }

    #[test]
    fn escaping_is_one_to_one_and_leaves_plain_keys_alone() {
        assert!(matches!(escape("user"), Cow::Borrowed("user")));
        for key in [
            "%",
            "%25",
            "\0",
            "a\"b\\c",
            "\n\t\u{7f}",
            "ключ ✓ 🦀",
            "%0",
            "",
        ] {
            let escaped = escape(key);
            assert!(!escaped.contains(['\0', '"', '\\']), "{escaped:?}");
            assert_eq!(unescape(&escaped).ok().as_deref(), Some(key), "{key:?}");
        }
        assert_ne!(escape("%00"), escape("\0"));
        assert!(unescape("%zz").is_err());
        assert!(unescape("%41").is_err(), "an escape escape() never makes");
    }

    #[test]
    fn entries_and_owners_round_trip_through_the_columns() {
        let now = SystemTime::now();
        let mut record = Record::new(now, Duration::from_secs(60), None);
        record
            .entries
            .insert("\0key\"".to_owned(), entry("\"a\\u0000b\"", false));
        record
            .entries
            .insert("flash".to_owned(), entry("[1,2]", true));
        record.owner = Some(Owner {
            name: "user:\0".to_owned(),
            since: now,
            user_agent: Some("UA ✓".to_owned()),
            address: None,
        });
        let text = entries(&record);
        assert!(
            !text.contains("\\u0000\""),
            "a NUL escape outside a string: {text}"
        );
        let (name, since, ua, address) = owner(&record);
        let back = super::record((
            text,
            millis(record.created),
            millis(record.expires),
            60_000,
            None,
            name,
            since,
            ua,
            address,
        ));
        let back = back.ok();
        assert_eq!(back.as_ref().map(|r| &r.entries), Some(&record.entries));
        assert_eq!(
            back.and_then(|r| r.owner).map(|o| o.name).as_deref(),
            Some("user:\0")
        );
    }

    #[test]
    fn a_patch_sets_and_removes_with_the_last_change_winning() {
        let changes = Changes {
            entries: vec![
                ("a".to_owned(), Some(entry("1", false))),
                ("b".to_owned(), None),
                ("a".to_owned(), None),
                ("b".to_owned(), Some(entry("2", true))),
            ],
            ..Changes::default()
        };
        let patch: serde_json::Value = serde_json::from_str(&patch(&changes)).unwrap_or_default();
        assert_eq!(patch, serde_json::json!({"a": null, "b": "f2"}));
    }

    #[test]
    fn times_before_and_after_the_epoch_round_trip_to_the_millisecond() {
        for ms in [0, 1, -1, 1_700_000_000_123, -86_400_000] {
            assert_eq!(millis(time(ms)), ms);
        }
    }
}
