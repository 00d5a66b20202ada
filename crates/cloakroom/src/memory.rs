//! `MemoryStore`: sessions in this process's memory, the embedded default.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::SessionId;
use crate::id::ID_LEN;
use crate::store::{Changes, Entry, Record, SessionStore, Update};

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
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: [Mutex<HashMap<Key, Packed>>; SHARDS],
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
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            len: AtomicUsize::new(0),
            max_sessions: self.max_sessions,
            sweep_interval: self.sweep_interval,
            next_inline_sweep: runtime
                .is_none()
                .then(|| Mutex::new(SystemTime::now() + self.sweep_interval)),
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

/// A session's id as the map key: its characters inline, so a session costs no allocation for
/// its key. Ids of another shape (a cookie store's) are never in this store.
type Key = [u8; ID_LEN];

fn key(id: &SessionId) -> Option<Key> {
    id.as_str().as_bytes().try_into().ok()
}

/// A record in one allocation (a `Box<[u8]>`, 16 bytes in the map): a header with its
/// metadata, then its entries packed as `key length, value length, flash, key, value`. A
/// `Record` in the map cost about 170 bytes more per session (measured, 100,000 sessions).
///
/// The header holds `created`, `expires` and `deadline` as time since the Unix epoch, and
/// `idle_timeout`, each as seconds (8 bytes) and nanoseconds (4 bytes), so they come back
/// exactly; then whether there is a deadline (1 byte). A time before the epoch (no real
/// session has one) is kept as the epoch.
#[derive(Debug)]
struct Packed(Box<[u8]>);

const CREATED: usize = 0;
const EXPIRES: usize = 12;
const DEADLINE: usize = 24;
const IDLE: usize = 36;
const HAS_DEADLINE: usize = 48;
const HEADER: usize = 49;

impl Packed {
    fn pack(record: &Record) -> Self {
        let size = record
            .entries
            .iter()
            .map(|(key, entry)| 9 + key.len() + entry.json.len())
            .sum::<usize>();
        let mut bytes = Vec::with_capacity(HEADER + size);
        for duration in [
            since_epoch(record.created),
            since_epoch(record.expires),
            record.deadline.map(since_epoch).unwrap_or_default(),
            record.idle_timeout,
        ] {
            bytes.extend_from_slice(&duration_bytes(duration));
        }
        bytes.push(u8::from(record.deadline.is_some()));
        for (key, entry) in &record.entries {
            // Lengths fit in u32: a session value of 4 GiB is not something a store keeps.
            bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(entry.json.len() as u32).to_le_bytes());
            bytes.push(u8::from(entry.flash));
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(entry.json.as_bytes());
        }
        Self(bytes.into_boxed_slice())
    }

    /// The record without its entries (which allocates nothing).
    fn meta(&self) -> Record {
        Record {
            entries: HashMap::new(),
            created: self.time(CREATED),
            expires: self.time(EXPIRES),
            idle_timeout: self.duration(IDLE),
            deadline: (self.0.get(HAS_DEADLINE) == Some(&1)).then(|| self.time(DEADLINE)),
        }
    }

    fn unpack(&self) -> Record {
        let mut record = self.meta();
        let mut rest = self.0.get(HEADER..).unwrap_or_default();
        while let Some((key, entry, tail)) = Self::next(rest) {
            record.entries.insert(key, entry);
            rest = tail;
        }
        record
    }

    fn set_expires(&mut self, expires: SystemTime) {
        if let Some(field) = self.0.get_mut(EXPIRES..EXPIRES + 12) {
            field.copy_from_slice(&duration_bytes(since_epoch(expires)));
        }
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.meta().is_expired(now)
    }

    fn duration(&self, at: usize) -> Duration {
        let secs = self.0.get(at..at + 8).and_then(|b| b.try_into().ok());
        let nanos = self.0.get(at + 8..at + 12).and_then(|b| b.try_into().ok());
        let secs = Duration::from_secs(secs.map_or(0, u64::from_le_bytes));
        secs.saturating_add(Duration::from_nanos(
            nanos.map_or(0, u32::from_le_bytes).into(),
        ))
    }

    fn time(&self, at: usize) -> SystemTime {
        UNIX_EPOCH
            .checked_add(self.duration(at))
            .unwrap_or(UNIX_EPOCH)
    }

    fn next(bytes: &[u8]) -> Option<(String, Entry, &[u8])> {
        let length = |at: usize| -> Option<usize> {
            let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(raw)).ok()
        };
        let (key_len, json_len) = (length(0)?, length(4)?);
        let flash = *bytes.get(8)? == 1;
        let key = std::str::from_utf8(bytes.get(9..9 + key_len)?).ok()?;
        let end = 9 + key_len + json_len;
        let json = std::str::from_utf8(bytes.get(9 + key_len..end)?).ok()?;
        let entry = Entry {
            json: json.to_owned(),
            flash,
        };
        Some((key.to_owned(), entry, bytes.get(end..)?))
    }
}

fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// A header field: seconds (8 bytes) and nanoseconds (4), little-endian.
fn duration_bytes(duration: Duration) -> [u8; 12] {
    let mut bytes = [0; 12];
    bytes[..8].copy_from_slice(&duration.as_secs().to_le_bytes());
    bytes[8..].copy_from_slice(&duration.subsec_nanos().to_le_bytes());
    bytes
}

impl Inner {
    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Packed>> {
        // Ids are random, so their first character spreads them evenly over the shards.
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sweep(&self, now: SystemTime) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, packed| !packed.is_expired(now));
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
            *next = now + self.sweep_interval;
        }
        self.sweep(now);
    }

    fn remove(&self, shard: &mut HashMap<Key, Packed>, key: &Key) {
        if shard.remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl SessionStore for MemoryStore {
    type Error = MemoryStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, MemoryStoreError> {
        let now = SystemTime::now();
        let Some(key) = key(id) else { return Ok(None) };
        let mut shard = self.inner.shard(&key);
        let Some(packed) = shard.get_mut(&key) else {
            return Ok(None);
        };
        let mut record = packed.unpack();
        if record.touch(now) {
            packed.set_expires(record.expires);
            return Ok(Some(record));
        }
        self.inner.remove(&mut shard, &key);
        Ok(None)
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
            let id = SessionId::generate();
            let Some(key) = key(&id) else { continue };
            let mut shard = self.inner.shard(&key);
            if let std::collections::hash_map::Entry::Vacant(slot) = shard.entry(key) {
                slot.insert(Packed::pack(record));
                self.inner.len.fetch_add(1, Ordering::Relaxed);
                return Ok(id);
            }
        }
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, MemoryStoreError> {
        let now = SystemTime::now();
        let Some(key) = key(id) else {
            return Ok(Update::Missing);
        };
        let mut shard = self.inner.shard(&key);
        match shard.get_mut(&key) {
            Some(packed) if !packed.is_expired(now) => {
                let mut record = packed.unpack();
                record.apply(changes, now);
                *packed = Packed::pack(&record);
                Ok(Update::Applied)
            }
            Some(_) => {
                self.inner.remove(&mut shard, &key);
                Ok(Update::Missing)
            }
            None => Ok(Update::Missing),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), MemoryStoreError> {
        if let Some(key) = key(id) {
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

    #[test]
    fn packing_keeps_every_entry_and_the_metadata() {
        let mut original = record(Duration::from_secs(60));
        for (key, json, flash) in [("a", "1", false), ("ünï", "\"ç\"", true), ("", "[]", false)]
        {
            original.entries.insert(
                key.to_owned(),
                Entry {
                    json: json.to_owned(),
                    flash,
                },
            );
        }
        assert_eq!(Packed::pack(&original).unpack(), original);
        let empty = record(Duration::from_secs(1));
        assert_eq!(Packed::pack(&empty).unpack(), empty);
        let now = SystemTime::now();
        let mut limited = Record::new(now, Duration::new(60, 123), Some(Duration::new(9, 7)));
        assert_eq!(Packed::pack(&limited).unpack(), limited);
        let mut packed = Packed::pack(&limited);
        limited.expires = now + Duration::new(5, 999_999_999);
        packed.set_expires(limited.expires);
        assert_eq!(packed.unpack(), limited);
        assert!(!packed.is_expired(now + Duration::new(5, 999_999_998)));
        assert!(packed.is_expired(limited.expires));
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
