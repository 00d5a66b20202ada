//! `MemoryStore`: sessions in this process's memory, the embedded default.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use hashbrown::hash_table;

use crate::SessionId;
use crate::id::ID_BYTES;
use crate::store::{Changes, Entry, Record, SessionStore, Update, later};

/// Independent locks, so concurrent requests of different sessions rarely wait on each other.
const SHARDS: usize = 16;

/// Sessions kept in this process's memory.
///
/// Fast and dependency-free, for development, tests and single-instance services. Sessions
/// are lost when the process exits and are not shared between instances: behind a load
/// balancer use a shared store (Redis, memcached).
///
/// Expired sessions are never returned, and a background task (started when the store is built
/// inside a Tokio runtime) removes them every [`sweep_interval`](MemoryStoreBuilder::sweep_interval),
/// so memory stays bounded by the number of live sessions. Outside a runtime the sweep runs
/// during [`create`](SessionStore::create) when it is due. An optional
/// [`max_sessions`](MemoryStoreBuilder::max_sessions) caps that number: creating a session
/// beyond it is an error ([`MemoryStoreError::Full`], answered with the layer's error
/// response) rather than the eviction of someone else's session.
///
/// Cloning is cheap; clones share the same sessions.
///
/// ```
/// use std::time::Duration;
/// use cloakroom::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::builder()
///     .max_sessions(1_000_000)
///     .sweep_interval(Duration::from_secs(30))
///     .build();
/// assert_eq!(store.len(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: [Mutex<Table>; SHARDS],
    len: AtomicUsize,
    max_sessions: Option<usize>,
    sweep_interval: Duration,
    /// When the next inline sweep is due; `None` when a background task sweeps.
    next_inline_sweep: Option<Mutex<SystemTime>>,
}

/// Why the memory store refused a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryStoreError {
    /// The store holds `max_sessions` live sessions already.
    #[error("memory store is full: it holds its limit of {limit} live sessions")]
    Full {
        /// The configured limit.
        limit: usize,
    },
}

/// A full store is a 503: sessions expire, and a retry may find room.
impl crate::store::StoreError for MemoryStoreError {}

/// Builds a [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder {
    max_sessions: Option<usize>,
    sweep_interval: Duration,
}

impl MemoryStoreBuilder {
    /// The most live sessions to hold; creating one more is an error. Unlimited by default.
    pub fn max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = Some(max_sessions);
        self
    }

    /// How often expired sessions are removed; every 60 seconds by default.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The store. Inside a Tokio runtime this starts the sweeping task, which ends when the
    /// last clone of the store is dropped.
    pub fn build(self) -> MemoryStore {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let inner = Arc::new(Inner {
            shards: std::array::from_fn(|_| Mutex::new(HashTable::new())),
            len: AtomicUsize::new(0),
            max_sessions: self.max_sessions,
            sweep_interval: self.sweep_interval,
            next_inline_sweep: runtime
                .is_none()
                .then(|| Mutex::new(later(SystemTime::now(), self.sweep_interval))),
        });
        if let Some(runtime) = runtime {
            runtime.spawn(sweep_periodically(
                Arc::downgrade(&inner),
                self.sweep_interval,
            ));
        }
        MemoryStore { inner }
    }
}

async fn sweep_periodically(store: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else { return };
        let removed = store.sweep(SystemTime::now());
        tracing::trace!(removed, "memory store swept expired sessions");
    }
}

/// Shows the store's settings and size, never its sessions: they hold ids (credentials) and
/// users' data.
impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("max_sessions", &self.inner.max_sessions)
            .field("sweep_interval", &self.inner.sweep_interval)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with no session limit, swept every 60 seconds.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set a session limit or the sweep interval.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_sessions: None,
            sweep_interval: Duration::from_secs(60),
        }
    }

    /// How many sessions the store holds, counting expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no sessions at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session now and returns how many it removed.
    pub fn sweep(&self) -> usize {
        self.inner.sweep(SystemTime::now())
    }
}

/// A session's id as the table key: the id's 24 random bytes. Ids of another shape (a cookie
/// store's) are never in this store.
type Key = [u8; ID_BYTES];

/// A key's hash. Ids come from the CSPRNG, so their bytes are already uniformly distributed
/// and serve as the hash as they are. Only ids this store generated are ever inserted, so a
/// client choosing the id it sends cannot crowd a bucket. (The first byte picks the shard.)
fn hash(key: &Key) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&key[8..16]);
    u64::from_le_bytes(bytes)
}

/// Bytes of a time in a packed record: milliseconds since the Unix epoch, little-endian.
const TIME: usize = 6;
const CREATED: usize = ID_BYTES;
const EXPIRES: usize = CREATED + TIME;

/// One session in one allocation (a `Box<[u8]>`, 16 bytes in the table):
///
/// `id (24 bytes) | created (6) | expires (6) | idle timeout (varint) | deadline (0, or 1 and 6) | entries`
///
/// and each entry as `varint(key length × 2 + flash) | varint(value length) | key | value`.
/// Times are milliseconds since the Unix epoch in 6 bytes (good for 8,000 years), the idle
/// timeout milliseconds: the precision Redis keeps too. A time before the epoch (no real
/// session has one) is kept as the epoch. With the id inside, the table holds only the
/// pointer. A session of four small keys (86 bytes of keys and values) costs 167 bytes of
/// resident memory in all, table and allocator included (`benches/memory.rs`, 100,000
/// sessions); a `Record` per session cost about 460.
struct Packed(Box<[u8]>);

impl Packed {
    fn pack(key: &Key, record: &Record) -> Self {
        let idle = millis(record.idle_timeout);
        let size = ID_BYTES
            + 2 * TIME
            + varint_len(idle)
            + record.deadline.map_or(1, |_| 1 + TIME)
            + record
                .entries
                .iter()
                .map(|(key, entry)| {
                    varint_len(entry_head(key, entry))
                        + varint_len(entry.json.len() as u64)
                        + key.len()
                        + entry.json.len()
                })
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&time_bytes(record.created));
        bytes.extend_from_slice(&time_bytes(record.expires));
        put_varint(&mut bytes, idle);
        match record.deadline {
            Some(deadline) => {
                bytes.push(1);
                bytes.extend_from_slice(&time_bytes(deadline));
            }
            None => bytes.push(0),
        }
        for (key, entry) in &record.entries {
            put_varint(&mut bytes, entry_head(key, entry));
            put_varint(&mut bytes, entry.json.len() as u64);
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(entry.json.as_bytes());
        }
        Self(bytes.into_boxed_slice())
    }

    fn is(&self, key: &Key) -> bool {
        self.0.first_chunk() == Some(key)
    }

    /// The record without its entries (which allocates nothing), and a reader at the entries.
    /// `None` only for bytes `pack` did not write.
    fn meta(&self) -> Option<(Record, Reader<'_>)> {
        let mut reader = Reader(self.0.get(CREATED..)?);
        let created = reader.time()?;
        let expires = reader.time()?;
        let idle_timeout = Duration::from_millis(reader.varint()?);
        let deadline = match reader.take(1)? {
            [0] => None,
            _ => Some(reader.time()?),
        };
        let record = Record {
            entries: HashMap::new(),
            created,
            expires,
            idle_timeout,
            deadline,
        };
        Some((record, reader))
    }

    fn unpack(&self) -> Option<Record> {
        let (mut record, mut reader) = self.meta()?;
        while !reader.0.is_empty() {
            let (key, entry) = reader.entry()?;
            record.entries.insert(key, entry);
        }
        Some(record)
    }

    fn set_expires(&mut self, expires: SystemTime) {
        if let Some(field) = self.0.get_mut(EXPIRES..EXPIRES + TIME) {
            field.copy_from_slice(&time_bytes(expires));
        }
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.meta().is_none_or(|(record, _)| record.is_expired(now))
    }
}

/// An entry's first varint: the key's length and, in the low bit, whether it is a flash.
fn entry_head(key: &str, entry: &Entry) -> u64 {
    (key.len() as u64) << 1 | u64::from(entry.flash)
}

/// Reads a packed record front to back. Every step is checked, so bytes `pack` did not write
/// read as `None`, never as a panic.
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

    fn entry(&mut self) -> Option<(String, Entry)> {
        let head = self.varint()?;
        let json_len = usize::try_from(self.varint()?).ok()?;
        let key = std::str::from_utf8(self.take(usize::try_from(head >> 1).ok()?)?).ok()?;
        let json = std::str::from_utf8(self.take(json_len)?).ok()?;
        let entry = Entry {
            json: json.to_owned(),
            flash: head & 1 == 1,
        };
        Some((key.to_owned(), entry))
    }
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

type Table = HashTable<Packed>;

impl Inner {
    fn shard(&self, key: &Key) -> MutexGuard<'_, Table> {
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The live record of `id`, copied out without moving its expiry (the layer reads within
    /// the refresh interval). An expired one reads as missing and is left to the sweep.
    fn read(&self, id: &SessionId) -> Option<Record> {
        let now = SystemTime::now();
        let key = id.bytes()?;
        let shard = self.shard(&key);
        let record = shard.find(hash(&key), |packed| packed.is(&key))?.unpack()?;
        (!record.is_expired(now)).then_some(record)
    }

    fn sweep(&self, now: SystemTime) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|packed| !packed.is_expired(now));
            removed += before - shard.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    fn sweep_inline_if_due(&self, now: SystemTime) {
        let Some(next) = &self.next_inline_sweep else {
            return;
        };
        {
            let mut next = next.lock().unwrap_or_else(PoisonError::into_inner);
            if *next > now {
                return;
            }
            *next = later(now, self.sweep_interval);
        }
        self.sweep(now);
    }

    fn remove(&self, shard: &mut Table, key: &Key) {
        if let Ok(found) = shard.find_entry(hash(key), |packed| packed.is(key)) {
            found.remove();
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl SessionStore for MemoryStore {
    type Error = MemoryStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, MemoryStoreError> {
        let now = SystemTime::now();
        let Some(key) = id.bytes() else {
            return Ok(None);
        };
        let mut shard = self.inner.shard(&key);
        let Some(packed) = shard.find_mut(hash(&key), |packed| packed.is(&key)) else {
            return Ok(None);
        };
        if let Some(mut record) = packed.unpack() {
            if record.touch(now) {
                packed.set_expires(record.expires);
                return Ok(Some(record));
            }
        }
        self.inner.remove(&mut shard, &key);
        Ok(None)
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Record>, MemoryStoreError> {
        Ok(self.inner.read(id))
    }

    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, MemoryStoreError>> {
        Some(Ok(self.inner.read(id)))
    }

    async fn create(&self, record: &Record) -> Result<SessionId, MemoryStoreError> {
        let now = SystemTime::now();
        self.inner.sweep_inline_if_due(now);
        if let Some(limit) = self.inner.max_sessions {
            // Expired sessions do not count against the limit.
            if self.len() >= limit && (self.inner.sweep(now) == 0 || self.len() >= limit) {
                return Err(MemoryStoreError::Full { limit });
            }
        }
        loop {
            let key = SessionId::random_bytes();
            let mut shard = self.inner.shard(&key);
            let slot = shard.entry(
                hash(&key),
                |packed| packed.is(&key),
                |packed| packed.0.first_chunk().map_or(0, hash),
            );
            if let hash_table::Entry::Vacant(slot) = slot {
                slot.insert(Packed::pack(&key, record));
                self.inner.len.fetch_add(1, Ordering::Relaxed);
                return Ok(SessionId::from_bytes(&key));
            }
        }
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, MemoryStoreError> {
        let now = SystemTime::now();
        let Some(key) = id.bytes() else {
            return Ok(Update::Missing);
        };
        let mut shard = self.inner.shard(&key);
        let Some(packed) = shard.find_mut(hash(&key), |packed| packed.is(&key)) else {
            return Ok(Update::Missing);
        };
        if changes.entries.is_empty() && changes.idle_timeout.is_none() {
            // Only the expiry moves (a refresh): rewritten in place, as `load` does.
            if let Some((mut record, _)) = packed.meta() {
                if record.touch(now) {
                    packed.set_expires(record.expires);
                    return Ok(Update::Applied);
                }
            }
        } else if let Some(mut record) = packed.unpack().filter(|record| !record.is_expired(now)) {
            record.apply(changes, now);
            *packed = Packed::pack(&key, &record);
            return Ok(Update::Applied);
        }
        self.inner.remove(&mut shard, &key);
        Ok(Update::Missing)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), MemoryStoreError> {
        if let Some(key) = id.bytes() {
            let mut shard = self.inner.shard(&key);
            self.inner.remove(&mut shard, &key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;

    fn record(idle: Duration) -> Record {
        Record::new(SystemTime::now(), idle, None)
    }

    fn set(key: &str, json: &str) -> Changes {
        Changes {
            entries: vec![(
                key.to_owned(),
                Some(Entry {
                    json: json.to_owned(),
                    flash: false,
                }),
            )],
            ..Changes::default()
        }
    }

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

    mod properties {
        use proptest::collection::{hash_map, vec};
        use proptest::prelude::*;

        use super::*;

        fn entries() -> impl Strategy<Value = HashMap<String, Entry>> {
            let entry =
                ("\\PC{0,300}", any::<bool>()).prop_map(|(json, flash)| Entry { json, flash });
            hash_map("\\PC{0,200}", entry, 0..20)
        }

        proptest! {
            #[test]
            fn any_record_round_trips_to_the_millisecond(
                key in any::<[u8; ID_BYTES]>(),
                entries in entries(),
                created in 0..1u64 << 47,
                idle in 0..1u64 << 40,
                deadline in proptest::option::of(0..1u64 << 47),
            ) {
                let at = |millis| UNIX_EPOCH + Duration::from_millis(millis);
                let record = Record {
                    entries,
                    created: at(created),
                    expires: at(created + idle),
                    idle_timeout: Duration::from_millis(idle),
                    deadline: deadline.map(at),
                };
                let packed = Packed::pack(&key, &record);
                prop_assert!(packed.is(&key));
                prop_assert_eq!(packed.unpack(), Some(record));
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

    #[tokio::test]
    async fn a_hundred_thousand_expired_sessions_are_reclaimed_in_the_background()
    -> Result<(), MemoryStoreError> {
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_millis(50))
            .build();
        let short = record(Duration::from_millis(20));
        for _ in 0..100_000 {
            store.create(&short).await?;
        }
        let live = store.create(&record(Duration::from_secs(600))).await?;
        assert!(store.len() > 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.len() > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.len(), 1, "expired sessions were not swept");
        assert!(
            store.load(&live).await?.is_some(),
            "the sweep removed a live session"
        );
        Ok(())
    }

    #[test]
    fn without_a_runtime_create_sweeps_when_due() -> Result<(), MemoryStoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|_| MemoryStoreError::Full { limit: 0 })?;
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_millis(10))
            .build();
        runtime.block_on(async {
            for _ in 0..100 {
                store.create(&record(Duration::from_millis(1))).await?;
            }
            std::thread::sleep(Duration::from_millis(20));
            store.create(&record(Duration::from_secs(60))).await?;
            assert_eq!(store.len(), 1);
            Ok(())
        })
    }

    #[tokio::test]
    async fn expired_records_are_never_returned_nor_updated() -> Result<(), MemoryStoreError> {
        let store = MemoryStore::new();
        let id = store.create(&record(Duration::from_millis(10))).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(store.update(&id, &set("a", "1")).await?, Update::Missing);
        assert_eq!(store.load(&id).await?, None);
        assert!(
            store.is_empty(),
            "an expired record stayed after it was found dead"
        );
        Ok(())
    }

    #[tokio::test]
    async fn updates_merge_by_key_and_never_resurrect() -> Result<(), MemoryStoreError> {
        let store = MemoryStore::new();
        let id = store.create(&record(Duration::from_secs(60))).await?;
        let writers: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                let id = id.clone();
                tokio::spawn(async move { store.update(&id, &set(&format!("k{i}"), "1")).await })
            })
            .collect();
        for writer in writers {
            assert_eq!(writer.await.ok(), Some(Ok(Update::Applied)));
        }
        let loaded = store.load(&id).await?.map(|r| r.entries.len());
        assert_eq!(loaded, Some(50));
        store.delete(&id).await?;
        assert_eq!(store.update(&id, &set("late", "1")).await?, Update::Missing);
        assert_eq!(store.load(&id).await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn a_refresh_moves_only_the_expiry_and_never_revives() -> Result<(), MemoryStoreError> {
        let store = MemoryStore::new();
        let mut live = record(Duration::from_secs(60));
        let entry = Entry {
            json: "1".to_owned(),
            flash: false,
        };
        live.entries.insert("k".to_owned(), entry);
        let id = store.create(&live).await?;
        let before = store.read(&id).await?.map(|record| record.expires);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let refresh = Changes {
            touch: true,
            ..Changes::default()
        };
        assert_eq!(store.update(&id, &refresh).await?, Update::Applied);
        let after = store.read(&id).await?;
        assert!(after.as_ref().map(|record| record.expires) > before);
        assert_eq!(after.map(|record| record.entries), Some(live.entries));

        let dying = store.create(&record(Duration::from_millis(10))).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(store.update(&dying, &refresh).await?, Update::Missing);
        assert_eq!(store.load(&dying).await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn the_session_limit_refuses_new_sessions_but_not_after_expiry()
    -> Result<(), MemoryStoreError> {
        let store = MemoryStore::builder().max_sessions(2).build();
        store.create(&record(Duration::from_secs(60))).await?;
        store.create(&record(Duration::from_millis(10))).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.create(&record(Duration::from_secs(60))).await?;
        let refused = store.create(&record(Duration::from_secs(60))).await;
        assert_eq!(refused, Err(MemoryStoreError::Full { limit: 2 }));
        assert_eq!(
            refused.err().map(|e| e.to_string()).as_deref(),
            Some("memory store is full: it holds its limit of 2 live sessions")
        );
        Ok(())
    }

    #[tokio::test]
    async fn debug_shows_the_settings_and_never_a_session() -> Result<(), MemoryStoreError> {
        let store = MemoryStore::builder().max_sessions(9).build();
        let mut session = record(Duration::from_secs(60));
        session.entries.insert(
            "email".to_owned(),
            Entry {
                json: "\"ada@example.com\"".to_owned(),
                flash: false,
            },
        );
        let id = store.create(&session).await?;
        let shown = format!("{store:?}");
        assert!(
            shown.contains("len: 1") && shown.contains("max_sessions: Some(9)"),
            "{shown}"
        );
        assert!(
            !shown.contains(id.as_str()) && !shown.contains("ada@example.com"),
            "{shown}"
        );
        let id_bytes = id.bytes().map(|key| format!("{:?}", &key[..4]));
        assert!(
            !id_bytes.is_some_and(|bytes| shown.contains(&bytes[1..bytes.len() - 1])),
            "{shown}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_sweeper_stops_when_the_store_is_dropped() {
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_millis(5))
            .build();
        let weak = Arc::downgrade(&store.inner);
        drop(store);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            weak.upgrade().is_none(),
            "the sweeper keeps the store alive"
        );
    }
}
