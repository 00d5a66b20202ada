//! How the memory store keeps a session: the whole record packed into one allocation.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::id::ID_BYTES;
use crate::store::{Changes, Entry, Owner, Record};

pub(super) type Key = [u8; ID_BYTES];

/// A key's hash. Ids come from the CSPRNG, so their bytes are already uniformly distributed
/// and serve as the hash as they are. Only ids this store generated are ever inserted, so a
/// client choosing the id it sends cannot crowd a bucket. (The first byte picks the shard.)
pub(super) fn hash(key: &Key) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&key[8..16]);
    u64::from_le_bytes(bytes)
}

/// Bytes of a time in a packed record: milliseconds since the Unix epoch, little-endian.
const TIME: usize = 6;
/// Flags: a deadline follows.
const HAS_DEADLINE: u8 = 1;
/// Flags: an owner follows (after the deadline, if any).
const HAS_OWNER: u8 = 2;
const CREATED: usize = ID_BYTES;
const EXPIRES: usize = CREATED + TIME;

/// One session in one allocation (a `Box<[u8]>`, 16 bytes in the table):
///
/// `id (24 bytes) | created (6) | expires (6) | idle timeout (varint) | flags (1) | deadline (6, if flagged) | owner (varint length and JSON, if flagged) | entries`
///
/// and each entry as `varint(key length × 2 + flash) | varint(value length) | key | value`.
/// Times are milliseconds since the Unix epoch in 6 bytes (good for 8,000 years), the idle
/// timeout milliseconds: the precision Redis keeps too. A time before the epoch (no real
/// session has one) is kept as the epoch. With the id inside, the table holds only the
/// pointer. A session of four small keys (86 bytes of keys and values) costs 167 bytes of
/// resident memory in all, table and allocator included (`benches/memory.rs`, 100,000
/// sessions); a `Record` per session cost about 460.
pub(super) struct Packed(Box<[u8]>);

impl Packed {
    pub(super) fn pack(key: &Key, record: &Record) -> Self {
        // An owner is a few dozen bytes of JSON; serializing these plain fields cannot fail.
        let owner = record
            .owner
            .as_ref()
            .and_then(|owner| serde_json::to_vec(owner).ok());
        let size = head_len(record, owner.as_deref())
            + record
                .entries
                .iter()
                .map(|(key, entry)| entry_len(key, entry))
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(size);
        put_head(&mut bytes, key, record, owner.as_deref());
        for (key, entry) in &record.entries {
            put_entry(&mut bytes, key, entry);
        }
        Self(bytes.into_boxed_slice())
    }

    /// The record with `changes` applied at `now`, as [`Record::apply`] leaves it, made from
    /// these bytes without unpacking: the entries a write leaves alone are copied as they are
    /// (a write of one key decodes none of the others), so they are not checked again either:
    /// the bytes of a store's records come from `pack` alone. `None` for a record expired at
    /// `now` (a write never revives one) and for bytes whose layout `pack` did not write.
    pub(super) fn patched(&self, changes: &Changes, now: SystemTime) -> Option<Self> {
        let id = self.key()?;
        let (mut head, owner, entries) = self.meta()?;
        if head.is_expired(now) {
            return None;
        }
        head.apply_times(changes, now);
        // Each changed key's last change, as `apply` takes them in order: reversed, then
        // sorted by a stable sort (so a key's last change stays first among its own) to look
        // up, then the rest of each key's changes dropped.
        let mut last: Vec<(&str, Option<&Entry>)> = changes
            .entries
            .iter()
            .rev()
            .map(|(name, entry)| (name.as_str(), entry.as_ref()))
            .collect();
        last.sort_by_key(|&(name, _)| name);
        last.dedup_by_key(|&mut (name, _)| name);
        let changed = |name: &[u8]| {
            last.binary_search_by(|&(other, _)| other.as_bytes().cmp(name))
                .is_ok()
        };
        // The exact size first, so the record is allocated once.
        let mut kept = 0;
        let mut reader = entries.clone();
        while !reader.0.is_empty() {
            let raw = reader.raw_entry()?;
            kept += if changed(raw.key) { 0 } else { raw.bytes.len() };
        }
        let added = last
            .iter()
            .filter_map(|&(name, entry)| Some(entry_len(name, entry?)))
            .sum::<usize>();
        let mut bytes = Vec::with_capacity(head_len(&head, owner) + kept + added);
        put_head(&mut bytes, &id, &head, owner);
        let mut reader = entries;
        while !reader.0.is_empty() {
            let raw = reader.raw_entry()?;
            if !changed(raw.key) {
                bytes.extend_from_slice(raw.bytes);
            }
        }
        for (name, entry) in last {
            if let Some(entry) = entry {
                put_entry(&mut bytes, name, entry);
            }
        }
        Some(Self(bytes.into_boxed_slice()))
    }

    /// The hash of the key inside, for the table to move the record when it grows.
    pub(super) fn rehash(&self) -> u64 {
        self.0.first_chunk().map_or(0, hash)
    }

    /// The id's bytes, the record's key.
    pub(super) fn key(&self) -> Option<Key> {
        self.0.first_chunk().copied()
    }

    pub(super) fn is(&self, key: &Key) -> bool {
        self.0.first_chunk() == Some(key)
    }

    /// The record without its entries and owner (which allocates nothing), the owner's JSON,
    /// and a reader at the entries. `None` only for bytes `pack` did not write.
    fn meta(&self) -> Option<(Record, Option<&[u8]>, Reader<'_>)> {
        let mut reader = Reader(self.0.get(CREATED..)?);
        let created = reader.time()?;
        let expires = reader.time()?;
        let idle_timeout = Duration::from_millis(reader.varint()?);
        let &[flags] = reader.take(1)? else {
            return None;
        };
        if flags & !(HAS_DEADLINE | HAS_OWNER) != 0 {
            return None;
        }
        let deadline = match flags & HAS_DEADLINE {
            0 => None,
            _ => Some(reader.time()?),
        };
        let owner = match flags & HAS_OWNER {
            0 => None,
            _ => {
                let len = usize::try_from(reader.varint()?).ok()?;
                Some(reader.take(len)?)
            }
        };
        let record = Record {
            entries: HashMap::new(),
            created,
            expires,
            idle_timeout,
            deadline,
            owner: None,
        };
        Some((record, owner, reader))
    }

    /// The record without its entries and owner, allocating nothing: what a refresh looks at.
    pub(super) fn head(&self) -> Option<Record> {
        self.meta().map(|(record, _, _)| record)
    }

    /// The owner's name, if the record has an owner.
    pub(super) fn owner(&self) -> Option<String> {
        let (_, owner, _) = self.meta()?;
        Some(serde_json::from_slice::<Owner>(owner?).ok()?.name)
    }

    pub(super) fn unpack(&self) -> Option<Record> {
        let (mut record, owner, mut reader) = self.meta()?;
        if let Some(owner) = owner {
            record.owner = Some(serde_json::from_slice(owner).ok()?);
        }
        while !reader.0.is_empty() {
            let (key, entry) = reader.entry()?;
            record.entries.insert(key, entry);
        }
        Some(record)
    }

    pub(super) fn set_expires(&mut self, expires: SystemTime) {
        if let Some(field) = self.0.get_mut(EXPIRES..EXPIRES + TIME) {
            field.copy_from_slice(&time_bytes(expires));
        }
    }

    pub(super) fn is_expired(&self, now: SystemTime) -> bool {
        self.meta()
            .is_none_or(|(record, _, _)| record.is_expired(now))
    }
}

/// Bytes of the head [`put_head`] writes.
fn head_len(record: &Record, owner: Option<&[u8]>) -> usize {
    ID_BYTES
        + 2 * TIME
        + varint_len(millis(record.idle_timeout))
        + 1
        + record.deadline.map_or(0, |_| TIME)
        + owner.map_or(0, |owner| varint_len(owner.len() as u64) + owner.len())
}

/// Writes everything before the entries: the id, the times, the flags, the owner's JSON.
fn put_head(bytes: &mut Vec<u8>, key: &Key, record: &Record, owner: Option<&[u8]>) {
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&time_bytes(record.created));
    bytes.extend_from_slice(&time_bytes(record.expires));
    put_varint(bytes, millis(record.idle_timeout));
    let flags = if record.deadline.is_some() {
        HAS_DEADLINE
    } else {
        0
    } | if owner.is_some() { HAS_OWNER } else { 0 };
    bytes.push(flags);
    if let Some(deadline) = record.deadline {
        bytes.extend_from_slice(&time_bytes(deadline));
    }
    if let Some(owner) = owner {
        put_varint(bytes, owner.len() as u64);
        bytes.extend_from_slice(owner);
    }
}

/// Bytes of an entry [`put_entry`] writes.
fn entry_len(key: &str, entry: &Entry) -> usize {
    varint_len(entry_head(key, entry))
        + varint_len(entry.json.len() as u64)
        + key.len()
        + entry.json.len()
}

fn put_entry(bytes: &mut Vec<u8>, key: &str, entry: &Entry) {
    put_varint(bytes, entry_head(key, entry));
    put_varint(bytes, entry.json.len() as u64);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(entry.json.as_bytes());
}

/// An entry's first varint: the key's length and, in the low bit, whether it is a flash.
fn entry_head(key: &str, entry: &Entry) -> u64 {
    (key.len() as u64) << 1 | u64::from(entry.flash)
}

/// Reads a packed record front to back. Every step is checked, so bytes `pack` did not write
/// read as `None`, never as a panic.
#[derive(Clone)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn time(&mut self) -> Option<SystemTime> {
        let &[a, b, c, d, e, f] = self.take(TIME)? else {
            return None;
        };
        let millis = u64::from_le_bytes([a, b, c, d, e, f, 0, 0]);
        UNIX_EPOCH.checked_add(Duration::from_millis(millis))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let &[byte] = self.take(1)? else { return None };
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// The next entry as it is: its key, its value's JSON, its flash bit, and all of its bytes.
    fn raw_entry(&mut self) -> Option<RawEntry<'a>> {
        let whole = self.0;
        let head = self.varint()?;
        let json_len = usize::try_from(self.varint()?).ok()?;
        let key = self.take(usize::try_from(head >> 1).ok()?)?;
        let json = self.take(json_len)?;
        let len = whole.len() - self.0.len();
        Some(RawEntry {
            key,
            json,
            flash: head & 1 == 1,
            bytes: whole.get(..len)?,
        })
    }

    fn entry(&mut self) -> Option<(String, Entry)> {
        let raw = self.raw_entry()?;
        let entry = Entry {
            json: std::str::from_utf8(raw.json).ok()?.to_owned(),
            flash: raw.flash,
        };
        Some((std::str::from_utf8(raw.key).ok()?.to_owned(), entry))
    }
}

/// One entry of a packed record, not yet checked as UTF-8.
struct RawEntry<'a> {
    key: &'a [u8],
    json: &'a [u8],
    flash: bool,
    /// The whole entry, as `put_entry` wrote it.
    bytes: &'a [u8],
}

/// LEB128: seven bits a byte, low bits first, the high bit set on every byte but the last.
fn put_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push(value as u8 | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `time` in a record's 6 bytes, saturating past the year 10889.
fn time_bytes(time: SystemTime) -> [u8; TIME] {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let [a, b, c, d, e, f, _, _] = millis(since).min((1 << 48) - 1).to_le_bytes();
    [a, b, c, d, e, f]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose times are whole milliseconds, as the store keeps them.
    fn exact(now: SystemTime, idle: Duration, lifetime: Option<Duration>) -> Record {
        let now = UNIX_EPOCH + Duration::from_millis(millis(since_epoch(now)));
        Record::new(now, idle, lifetime)
    }

    fn since_epoch(time: SystemTime) -> Duration {
        time.duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    #[test]
    fn packing_keeps_every_entry_and_the_metadata() {
        let key = [7; ID_BYTES];
        let now = SystemTime::now();
        let mut original = exact(now, Duration::from_secs(60), None);
        let long = "v".repeat(300);
        for (key, json, flash) in [
            ("a", "1", false),
            ("ünï", "\"ç\"", true),
            ("", "[]", false),
            (&long, &long, true),
        ] {
            original.entries.insert(
                key.to_owned(),
                Entry {
                    json: json.to_owned(),
                    flash,
                },
            );
        }
        let packed = Packed::pack(&key, &original);
        assert!(packed.is(&key) && !packed.is(&[8; ID_BYTES]));
        assert_eq!(packed.unpack(), Some(original));
        let empty = exact(now, Duration::from_secs(1), None);
        assert_eq!(Packed::pack(&key, &empty).unpack(), Some(empty));
        let days = |days: u64| Duration::from_secs(days * 86_400) + Duration::from_millis(7);
        let mut limited = exact(now, days(400), Some(days(500)));
        assert_eq!(Packed::pack(&key, &limited).unpack(), Some(limited.clone()));
        let mut packed = Packed::pack(&key, &limited);
        limited.expires += Duration::from_millis(5_999);
        packed.set_expires(limited.expires);
        assert_eq!(packed.unpack(), Some(limited.clone()));
        assert!(!packed.is_expired(limited.expires - Duration::from_millis(1)));
        assert!(packed.is_expired(limited.expires));
    }

    #[test]
    fn times_keep_their_milliseconds_and_saturate() {
        let key = [0; ID_BYTES];
        let now = UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789);
        let record = Record::new(now, Duration::new(60, 999_999), None);
        let unpacked = Packed::pack(&key, &record).unpack();
        let created = unpacked.as_ref().map(|record| since_epoch(record.created));
        assert_eq!(created, Some(Duration::new(1_800_000_000, 123_000_000)));
        let idle = unpacked.map(|record| record.idle_timeout);
        assert_eq!(idle, Some(Duration::from_secs(60)));
        let far = Record::new(UNIX_EPOCH, Duration::MAX, None);
        let expires = Packed::pack(&key, &far)
            .unpack()
            .map(|record| record.expires);
        assert_eq!(
            expires,
            UNIX_EPOCH.checked_add(Duration::from_millis((1 << 48) - 1))
        );
    }

    #[test]
    fn bytes_pack_did_not_write_read_as_nothing() {
        let key = [1; ID_BYTES];
        let mut record = exact(SystemTime::now(), Duration::from_secs(60), None);
        record.entries.insert(
            "key".to_owned(),
            Entry {
                json: "\"value\"".to_owned(),
                flash: false,
            },
        );
        let Packed(bytes) = Packed::pack(&key, &record);
        for end in 0..bytes.len() {
            // Cut after the metadata it is a record without entries; anywhere else, nothing.
            let unpacked = Packed(bytes[..end].into()).unpack();
            let entries = unpacked.map(|record| record.entries.len());
            assert!(matches!(entries, None | Some(0)), "cut at {end}");
        }
        let mut overlong = bytes.to_vec();
        overlong.extend_from_slice(&[0xff; 11]);
        assert_eq!(Packed(overlong.into()).unpack(), None);
    }

    #[test]
    fn a_patch_takes_each_key_s_last_change_among_many() {
        let id = [3; ID_BYTES];
        let now = UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
        let record = Record::new(now, Duration::from_secs(60), None);
        // More changes than a sort handles by insertion (where any sort is stable), every
        // seventh a removal.
        let entries: Vec<(String, Option<Entry>)> = (0..197)
            .map(|i| {
                let entry = (i % 7 != 0).then(|| Entry {
                    json: i.to_string(),
                    flash: false,
                });
                (["a", "b", "c"][i % 3].to_owned(), entry)
            })
            .collect();
        let changes = Changes {
            entries,
            idle_timeout: None,
            deadline: None,
            touch: false,
        };
        let patched = Packed::pack(&id, &record).patched(&changes, now);
        let entries = patched.as_ref().and_then(Packed::unpack).map(|r| r.entries);
        let json = |name: &str| Some(entries.as_ref()?.get(name)?.json.clone());
        // The last changes: 194 sets c, 195 sets a, 196 removes b.
        assert_eq!(json("a"), Some("195".to_owned()));
        assert_eq!(json("b"), None);
        assert_eq!(json("c"), Some("194".to_owned()));
        assert_eq!(entries.map(|entries| entries.len()), Some(2));
    }

    mod properties {
        use proptest::collection::{hash_map, vec};
        use proptest::prelude::*;

        use super::*;

        fn entry() -> impl Strategy<Value = Entry> {
            ("\\PC{0,300}", any::<bool>()).prop_map(|(json, flash)| Entry { json, flash })
        }

        fn entries() -> impl Strategy<Value = HashMap<String, Entry>> {
            hash_map("\\PC{0,200}", entry(), 0..20)
        }

        /// Keys from a few, so that changes meet existing entries and each other.
        fn small_key() -> impl Strategy<Value = String> {
            proptest::sample::select(vec!["a", "b", "cart", "ünï", ""]).prop_map(str::to_owned)
        }

        fn small_entries() -> impl Strategy<Value = HashMap<String, Entry>> {
            hash_map(small_key(), entry(), 0..5)
        }

        proptest! {
            #[test]
            fn any_record_round_trips_to_the_millisecond(
                key in any::<[u8; ID_BYTES]>(),
                entries in entries(),
                created in 0..1u64 << 47,
                idle in 0..1u64 << 40,
                deadline in proptest::option::of(0..1u64 << 47),
                owner in proptest::option::of(("\\PC{1,100}", 0..1u64 << 47, proptest::option::of("\\PC{0,100}"))),
            ) {
                let at = |millis| UNIX_EPOCH + Duration::from_millis(millis);
                let record = Record {
                    entries,
                    created: at(created),
                    expires: at(created + idle),
                    idle_timeout: Duration::from_millis(idle),
                    deadline: deadline.map(at),
                    owner: owner.map(|(name, since, user_agent)| Owner {
                        name,
                        since: at(since),
                        address: user_agent.clone(),
                        user_agent,
                    }),
                };
                let packed = Packed::pack(&key, &record);
                prop_assert!(packed.is(&key));
                prop_assert_eq!(packed.unpack(), Some(record));
            }

            #[test]
            fn a_patch_leaves_what_unpacking_applying_and_packing_leaves(
                key in any::<[u8; ID_BYTES]>(),
                entries in small_entries(),
                changed in vec((small_key(), proptest::option::of(entry())), 0..8),
                idle in proptest::option::of(0..1u64 << 40),
                deadline in proptest::option::of(0..1u64 << 47),
                owner in any::<bool>(),
            ) {
                let at = |millis| UNIX_EPOCH + Duration::from_millis(millis);
                let now = at(1_800_000_000_000);
                let mut record = Record::new(now, Duration::from_secs(60), None);
                record.entries = entries;
                record.owner = owner.then(|| Owner {
                    name: "ada".to_owned(),
                    since: now,
                    address: None,
                    user_agent: Some("test".to_owned()),
                });
                let changes = Changes {
                    entries: changed,
                    idle_timeout: idle.map(Duration::from_millis),
                    deadline: deadline.map(at),
                    touch: false,
                };
                let packed = Packed::pack(&key, &record);
                let later = now + Duration::from_millis(1_234);
                let mut applied = packed.unpack().unwrap_or_else(|| panic!("a packed record"));
                applied.apply(&changes, later);
                let expected = Packed::pack(&key, &applied).unpack();
                let patched = packed.patched(&changes, later);
                prop_assert!(patched.as_ref().is_some_and(|patched| patched.is(&key)));
                prop_assert_eq!(patched.and_then(|patched| patched.unpack()), expected);
            }

            #[test]
            fn any_bytes_read_without_a_panic(bytes in vec(any::<u8>(), 0..160)) {
                let packed = Packed(bytes.into());
                let now = SystemTime::now();
                // The sweep's expiry check agrees with the record that loads, if any does.
                if let Some(record) = packed.unpack() {
                    prop_assert_eq!(packed.is_expired(now), record.is_expired(now));
                }
            }
        }
    }

    #[test]
    fn varints_round_trip_at_every_length() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            assert_eq!(bytes.len(), varint_len(value), "{value}");
            assert_eq!(Reader(&bytes).varint(), Some(value));
        }
    }
}
