//! How a [`Record`] is laid out in Redis, and read back.
//!
//! A session is one hash. Each session key is a field `.`+key whose value is `v` (or `f`, for
//! a flash) followed by the entry's JSON text. The metadata are fields of their own, in
//! milliseconds as decimal text: `@created` (Unix time), `@idle` (the idle timeout),
//! `@deadline` (Unix time, absent without one), `@expires` (Unix time, a copy of the key's
//! TTL that the script keeps, so a plain `HGETALL` reads the whole record) and `@owner` (the
//! [`Owner`](cloakroom::store::Owner) as JSON, absent without one). The `.` and `@`
//! prefixes keep the user's keys apart from the metadata, whatever they are called.
//!
//! The script does the writing (see [`lua`](crate::lua)): this module builds its arguments and
//! reads what Redis returns. Nothing here talks to Redis or reads a clock, so every function is
//! tested below. Anything that is not a hash this store wrote is
//! [`RedisStoreError::Foreign`], named by its key with the session id redacted.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloakroom::store::{Changes, Entry, FOREVER, Record};
use fred::types::Value;

use crate::RedisStoreError;

/// The create script's arguments: idle timeout and deadline, then the hash fields (all but
/// `@expires`, which the script computes on Redis's clock).
pub(crate) fn record_fields(record: &Record) -> Vec<Value> {
    let idle = number(duration_millis(record.idle_timeout));
    let deadline = record.deadline.map(|d| number(millis(d)));
    let mut fields = Vec::with_capacity(record.entries.len() * 2 + 8);
    fields.push(idle.clone());
    fields.push(deadline.clone().unwrap_or_else(absent));
    for (key, entry) in &record.entries {
        fields.push(Value::from(format!(".{key}")));
        fields.push(Value::from(encode(entry)));
    }
    fields.push(Value::from_static_str("@created"));
    fields.push(number(millis(record.created)));
    fields.push(Value::from_static_str("@idle"));
    fields.push(idle);
    if let Some(deadline) = deadline {
        fields.push(Value::from_static_str("@deadline"));
        fields.push(deadline);
    }
    // Plain fields and strings: serializing them cannot fail.
    if let Some(owner) = record
        .owner
        .as_ref()
        .and_then(|o| serde_json::to_string(o).ok())
    {
        fields.push(Value::from_static_str("@owner"));
        fields.push(Value::from(owner));
    }
    fields
}

/// The update script's arguments: a new idle timeout or '', '1' to refresh the expiry or '',
/// '1' to return the session as it now is (`returned`) or '', a new deadline or '', then
/// field, value pairs where an empty value removes the field.
pub(crate) fn update_args(changes: &Changes, returned: bool) -> Vec<Value> {
    let flag = |on: bool| {
        if on {
            Value::from_static_str("1")
        } else {
            absent()
        }
    };
    let mut args = Vec::with_capacity(changes.entries.len() * 2 + 4);
    args.push(
        changes
            .idle_timeout
            .map_or_else(absent, |idle| number(duration_millis(idle))),
    );
    args.push(flag(changes.touch));
    args.push(flag(returned));
    args.push(
        changes
            .deadline
            .map_or_else(absent, |deadline| number(millis(deadline))),
    );
    for (name, entry) in &changes.entries {
        args.push(Value::from(format!(".{name}")));
        args.push(Value::from(entry.as_ref().map(encode).unwrap_or_default()));
    }
    args
}

/// The record in `reply` (from `key`), if it is alive at `now`: the hash's fields and values
/// as `HGETALL` returns them (a map) or the scripts do (an array of field, value, ...); none
/// for a key that does not exist. A record already dead by this clock is none too: Redis
/// expires the key on its own clock, to the millisecond, and a dead record is never returned.
pub(crate) fn decode(
    key: &str,
    reply: Value,
    now: SystemTime,
) -> Result<Option<Record>, RedisStoreError> {
    let record = match reply {
        Value::Null => None,
        Value::Array(items) => {
            let count = items.len() / 2;
            let mut items = items.into_iter();
            let pairs = std::iter::from_fn(|| Some((items.next()?, items.next()?)));
            decode_fields(key, count, pairs)?
        }
        Value::Map(map) => {
            let map = map.inner();
            let count = map.len();
            let pairs = map
                .into_iter()
                .map(|(field, value)| (Value::Bytes(field.into_bytes()), value));
            decode_fields(key, count, pairs)?
        }
        other => {
            let reason = format!("Redis returned {:?}", other.kind());
            return Err(RedisStoreError::foreign(key, reason));
        }
    };
    Ok(record.filter(|record| !record.is_expired(now)))
}

/// The new `@expires` an update sends back when it moved the expiry (decimal text), if
/// `reply` is one.
pub(crate) fn decode_expires(reply: &Value) -> Option<SystemTime> {
    let text = reply.as_str()?;
    text.parse::<u64>().ok().map(from_millis)
}

/// An entry as a hash value: `v` or `f` (flash), then the JSON text.
fn encode(entry: &Entry) -> String {
    let tag = if entry.flash { 'f' } else { 'v' };
    let mut value = String::with_capacity(entry.json.len() + 1);
    value.push(tag);
    value.push_str(&entry.json);
    value
}

/// A record from the `count` fields of its hash; none for a key that does not exist.
fn decode_fields(
    key: &str,
    count: usize,
    fields: impl Iterator<Item = (Value, Value)>,
) -> Result<Option<Record>, RedisStoreError> {
    if count == 0 {
        return Ok(None);
    }
    let foreign = |reason: String| RedisStoreError::foreign(key, reason);
    let mut entries = HashMap::with_capacity(count);
    let (mut created, mut idle, mut deadline, mut expires) = (None, None, None, None);
    let mut owner = None;
    for (field, value) in fields {
        let (Some(field), Some(value)) = (field.as_str(), value.as_str()) else {
            return Err(foreign("a field or value is not UTF-8 text".to_owned()));
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| foreign(format!("field {field:?} does not hold a number")))
        };
        match field.as_ref() {
            "@created" => created = Some(number()?),
            "@idle" => idle = Some(number()?),
            "@deadline" => deadline = Some(number()?),
            "@expires" => expires = Some(number()?),
            "@owner" => {
                let parsed = serde_json::from_str(&value)
                    .map_err(|_| foreign("field \"@owner\" does not hold an owner".to_owned()))?;
                owner = Some(parsed);
            }
            _ => {
                let Some(name) = field.strip_prefix('.') else {
                    return Err(foreign(format!("unexpected field {field:?}")));
                };
                let flash = match value.as_bytes().first() {
                    Some(b'v') => false,
                    Some(b'f') => true,
                    // The value is the user's data: not for a log.
                    _ => return Err(foreign(format!("field {field:?} holds no tagged value"))),
                };
                entries.insert(
                    name.to_owned(),
                    Entry {
                        json: value[1..].to_owned(),
                        flash,
                    },
                );
            }
        }
    }
    let (Some(created), Some(idle), Some(expires)) = (created, idle, expires) else {
        return Err(foreign(
            "it lacks the @created, @idle and @expires fields".to_owned(),
        ));
    };
    Ok(Some(Record {
        entries,
        created: from_millis(created),
        expires: from_millis(expires),
        idle_timeout: Duration::from_millis(idle),
        deadline: deadline.map(from_millis),
        owner,
    }))
}

/// An argument the script reads as absent: ''.
fn absent() -> Value {
    Value::from_static_str("")
}

/// `n` as a script argument. fred sends an integer as its digits, the bytes `n.to_string()`
/// would be, without allocating the string; the script's Lua numbers are exact below 2^53,
/// which every duration ([`duration_millis`]) and any time before the year 285,000 is.
fn number(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A time as Unix milliseconds; 0 for a time before 1970.
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A duration in milliseconds, at most [`FOREVER`]: the script adds it to Redis's clock in a
/// Lua number, exact below 2^53 (`FOREVER` is about 2^48 ms); beyond, `PEXPIREAT` would get a
/// negative time and delete the key.
fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.min(FOREVER).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "session:abc";

    /// `args` as Redis receives them: fred sends an integer as its digits.
    fn sent(args: &[Value]) -> Vec<String> {
        args.iter()
            .map(|arg| match arg {
                Value::Integer(n) => n.to_string(),
                other => other.as_str().map(|s| s.into_owned()).expect("a string"),
            })
            .collect()
    }

    /// `record` as the create script stores it, with `@expires` at its `expires`, as the
    /// array of field, value, ... that a script returns.
    fn stored(record: &Record) -> Value {
        let mut fields = record_fields(record).split_off(2);
        fields.push("@expires".into());
        fields.push(Value::from(millis(record.expires).to_string()));
        Value::Array(fields)
    }

    /// The same fields as the map `HGETALL` returns on RESP3.
    fn as_map(reply: Value) -> Value {
        let Value::Array(items) = reply else {
            return reply;
        };
        let map: fred::types::Map = items
            .chunks(2)
            .filter_map(|pair| match pair {
                [field, value] => Some((fred::types::Key::from(&*field.as_str()?), value.clone())),
                _ => None,
            })
            .collect();
        Value::Map(map)
    }

    fn at(ms: u64) -> SystemTime {
        from_millis(ms)
    }

    fn record() -> Record {
        let mut record = Record::new(at(1_000), Duration::from_secs(60), None);
        record.expires = at(61_000);
        for (name, json, flash) in [("user", "42", false), ("notice", "\"saved\"", true)] {
            let entry = Entry {
                json: json.into(),
                flash,
            };
            record.entries.insert(name.to_owned(), entry);
        }
        record
    }

    fn reason(result: Result<Option<Record>, RedisStoreError>) -> String {
        match result {
            Err(RedisStoreError::Foreign { key, reason }) if key == KEY => reason,
            other => panic!("not a Foreign error for {KEY}: {other:?}"),
        }
    }

    #[test]
    fn entries_encode_with_a_flash_tag() {
        let plain = Entry {
            json: "1".into(),
            flash: false,
        };
        let flash = Entry {
            json: "\"hi\"".into(),
            flash: true,
        };
        assert_eq!(encode(&plain), "v1");
        assert_eq!(encode(&flash), "f\"hi\"");
    }

    #[test]
    fn a_record_comes_back_as_it_was_written_from_an_array_or_a_map() {
        let mut with_deadline = record();
        with_deadline.deadline = Some(at(3_600_000));
        for record in [
            record(),
            with_deadline,
            Record::new(at(5), Duration::ZERO, None),
        ] {
            let mut record = record;
            record.expires = at(61_000);
            let now = at(2_000);
            assert_eq!(
                decode(KEY, stored(&record), now).ok().flatten().as_ref(),
                Some(&record)
            );
            assert_eq!(
                decode(KEY, as_map(stored(&record)), now).ok().flatten(),
                Some(record)
            );
        }
    }

    #[test]
    fn no_key_and_dead_records_are_none() {
        assert!(matches!(decode(KEY, Value::Null, at(0)), Ok(None)));
        assert!(matches!(
            decode(KEY, Value::Array(Vec::new()), at(0)),
            Ok(None)
        ));
        // Dead at its expiry, by this clock, to the millisecond.
        let record = record();
        assert!(matches!(decode(KEY, stored(&record), at(61_000)), Ok(None)));
        assert!(
            decode(KEY, stored(&record), at(60_999))
                .ok()
                .flatten()
                .is_some()
        );
        let mut past_deadline = record;
        past_deadline.deadline = Some(at(1_500));
        assert!(matches!(
            decode(KEY, stored(&past_deadline), at(2_000)),
            Ok(None)
        ));
    }

    #[test]
    fn extreme_times_and_durations_stay_in_range() {
        // Longer than FOREVER is FOREVER: the script's Lua numbers stay exact.
        let mut record = record();
        record.idle_timeout = Duration::MAX;
        let fields = record_fields(&record);
        let forever = u64::try_from(FOREVER.as_millis()).unwrap_or(u64::MAX);
        assert_eq!(sent(&fields[..1]), [forever.to_string()]);
        assert!(forever < 1 << 53);
        // Before 1970 is 0, not a panic.
        let mut ancient = Record::new(at(0), Duration::from_secs(1), None);
        ancient.created = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(sent(&record_fields(&ancient)[3..4]), ["0"]);
        // After the year 292 million a deadline is the largest integer, not a panic.
        let mut far = record.clone();
        far.deadline = UNIX_EPOCH.checked_add(Duration::from_millis(u64::MAX));
        assert!(far.deadline.is_some());
        assert_eq!(sent(&record_fields(&far)[1..2]), [i64::MAX.to_string()]);
        // The largest stored numbers read back.
        let reply = Value::Array(
            [
                ("@created", "0"),
                ("@idle", &u64::MAX.to_string()),
                ("@expires", &(1_u64 << 53).to_string()),
            ]
            .iter()
            .flat_map(|(field, value)| [Value::from(*field), Value::from(*value)])
            .collect(),
        );
        let record = decode(KEY, reply, at(0)).ok().flatten();
        assert_eq!(
            record.map(|r| r.idle_timeout),
            Some(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn update_arguments_are_flags_then_fields() {
        let changes = Changes {
            entries: vec![
                (
                    "user".to_owned(),
                    Some(Entry {
                        json: "7".into(),
                        flash: false,
                    }),
                ),
                ("gone".to_owned(), None),
            ],
            idle_timeout: Some(Duration::from_secs(2)),
            deadline: Some(at(90_000)),
            touch: true,
        };
        assert_eq!(
            sent(&update_args(&changes, false)),
            ["2000", "1", "", "90000", ".user", "v7", ".gone", ""]
        );
        let quiet = update_args(&Changes::default(), true);
        assert_eq!(sent(&quiet), ["", "", "1", ""]);
    }

    #[test]
    fn a_moved_expiry_is_read_from_its_text() {
        assert_eq!(decode_expires(&Value::from("61000")), Some(at(61_000)));
        assert_eq!(decode_expires(&Value::from("soon")), None);
        assert_eq!(decode_expires(&Value::Null), None);
    }

    #[test]
    fn a_hash_that_is_not_ours_is_a_clear_error_naming_the_key() {
        let reply = Value::Array(vec!["name".into(), "bob".into()]);
        let error = decode("session:abc", reply, SystemTime::now())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "Redis key \"session:abc\" does not hold a cloakroom session: unexpected field \"name\""
            )
        );
    }

    #[test]
    fn corrupt_data_is_foreign_and_says_why_without_the_user_s_data() {
        let fields = |pairs: &[(&str, &str)]| {
            Value::Array(
                pairs
                    .iter()
                    .flat_map(|(field, value)| [Value::from(*field), Value::from(*value)])
                    .collect(),
            )
        };
        let meta = [("@created", "1"), ("@idle", "1"), ("@expires", "9")];
        let now = at(0);
        let missing = fields(&meta[..2]);
        assert!(reason(decode(KEY, missing, now)).contains("lacks the @created"));
        let not_a_number = fields(&[("@created", "yesterday"), meta[1], meta[2]]);
        assert_eq!(
            reason(decode(KEY, not_a_number, now)),
            "field \"@created\" does not hold a number"
        );
        let negative = fields(&[("@created", "-1"), meta[1], meta[2]]);
        assert!(reason(decode(KEY, negative, now)).contains("number"));
        let untagged = fields(&[meta[0], meta[1], meta[2], (".user", "secret")]);
        let why = reason(decode(KEY, untagged, now));
        assert_eq!(why, "field \".user\" holds no tagged value");
        let empty = fields(&[meta[0], meta[1], meta[2], (".user", "")]);
        assert!(reason(decode(KEY, empty, now)).contains("no tagged value"));
        let bytes = Value::Array(vec![
            Value::Bytes(vec![0xff, 0xfe].into()),
            Value::from("v1"),
        ]);
        assert!(reason(decode(KEY, bytes, now)).contains("UTF-8"));
        assert_eq!(
            reason(decode(KEY, Value::Integer(3), now)),
            "Redis returned Integer"
        );
    }

    #[test]
    fn a_foreign_key_is_named_by_its_id_s_short_hash() {
        let id = cloakroom::SessionId::generate();
        let key = format!("session:{}", id.as_str());
        let error = decode(&key, Value::Integer(1), at(0)).err();
        let named = format!("session:{id}");
        assert!(
            matches!(&error, Some(RedisStoreError::Foreign { key, .. }) if *key == named),
            "{error:?}"
        );
    }
}
