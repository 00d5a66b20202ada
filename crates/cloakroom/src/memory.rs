//! `MemoryStore`: sessions in this process's memory, the embedded default.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use hashbrown::HashTable;
use hashbrown::hash_table;

use self::packed::{Key, Packed, hash};
use crate::SessionId;
use crate::store::{Changes, OwnerIndex, Record, SessionStore, Update, later};

mod packed;

/// Independent locks, so concurrent requests of different sessions rarely wait on each other,
/// and a sweep (which holds one shard's lock while it scans it) holds up only the reads of
/// that shard, briefly: one per value of the id's first byte.
const SHARDS: usize = 256;

/// How often a full store sweeps before refusing a create: a whole sweep of a large store
/// takes a few hundred milliseconds, and requests without a cookie (each a create) must not
/// be able to make every one of them run it.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Sessions kept in this process's memory.
///
/// Fast and dependency-free, for development, tests and single-instance services. Sessions
/// are lost when the process exits and are not shared between instances: behind a load
/// balancer use a shared store (Redis, memcached).
///
/// Expired sessions are never returned, and a background task (started when the store is built
/// inside a Tokio runtime) removes them every [`sweep_interval`](MemoryStoreBuilder::sweep_interval),
/// one shard at a time, letting the runtime's other tasks run between shards, so memory stays
/// bounded by the number of live sessions. Outside a runtime the sweep runs
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
    /// When a full store last swept before refusing a create (see [`FULL_SWEEP_EVERY`]).
    last_full_sweep: Mutex<Option<Instant>>,
    /// The keys of each owner's sessions: added after the record at create, removed after it
    /// at delete and sweep, and when a list finds the record gone. Never locked while a shard
    /// is.
    owners: Mutex<HashMap<String, HashSet<Key>>>,
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
    /// A full store sweeps out expired sessions before it refuses, at most once a second.
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
            last_full_sweep: Mutex::new(None),
            owners: Mutex::new(HashMap::new()),
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
        let Some(removed) = sweep_yielding(&store, SystemTime::now()).await else {
            return;
        };
        tracing::trace!(removed, "memory store swept expired sessions");
    }
}

/// The background sweep: the sessions expired at `now`, one shard at a time, letting the
/// runtime's other tasks run after each, so a sweep of a million sessions (a few hundred
/// milliseconds) does not stall a worker thread, or a one-thread runtime, for all of that
/// time. The store is held only while a shard is swept, so one dropped mid-sweep is freed at
/// once; then `None`.
async fn sweep_yielding(store: &Weak<Inner>, now: SystemTime) -> Option<usize> {
    let mut removed = 0;
    for shard in 0..SHARDS {
        removed += store.upgrade()?.sweep_shard(shard, now);
        tokio::task::yield_now().await;
    }
    Some(removed)
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

    /// Removes the sessions expired at `now`; how many.
    fn sweep(&self, now: SystemTime) -> usize {
        (0..SHARDS).map(|shard| self.sweep_shard(shard, now)).sum()
    }

    /// Removes the sessions of shard `index` expired at `now`, and their index entries.
    fn sweep_shard(&self, index: usize, now: SystemTime) -> usize {
        let mut owned = Vec::new();
        let removed = {
            let mut shard = self.shards[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|packed| {
                if !packed.is_expired(now) {
                    return true;
                }
                if let (Some(owner), Some(key)) = (packed.owner(), packed.key()) {
                    owned.push((owner, key));
                }
                false
            });
            before - shard.len()
        };
        self.len.fetch_sub(removed, Ordering::Relaxed);
        self.unindex(owned);
        removed
    }

    /// The sweep of a full store before it refuses a create, unless one ran less than
    /// [`FULL_SWEEP_EVERY`] ago (then 0).
    fn sweep_when_full(&self, now: SystemTime) -> usize {
        {
            let mut last = self
                .last_full_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < FULL_SWEEP_EVERY) {
                return 0;
            }
            *last = Some(Instant::now());
        }
        self.sweep(now)
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<String, HashSet<Key>>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes these (owner, key) pairs from the index.
    fn unindex(&self, pairs: impl IntoIterator<Item = (String, Key)>) {
        let mut owners = None;
        for (owner, key) in pairs {
            let owners = owners.get_or_insert_with(|| self.owners());
            if let Some(keys) = owners.get_mut(&owner) {
                keys.remove(&key);
                if keys.is_empty() {
                    owners.remove(&owner);
                }
            }
        }
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

    /// Removes the record of `key` from its (locked) shard; returns its owner, for the caller
    /// to take out of the index once the shard is unlocked.
    #[must_use = "an owned record's index entry is removed with the owner returned"]
    fn remove(&self, shard: &mut Table, key: &Key) -> Option<String> {
        let found = shard.find_entry(hash(key), |packed| packed.is(key)).ok()?;
        let (packed, _) = found.remove();
        self.len.fetch_sub(1, Ordering::Relaxed);
        packed.owner()
    }

    /// Removes the record of `key`, and its index entry.
    fn remove_now(&self, key: &Key) {
        let owner = self.remove(&mut self.shard(key), key);
        self.unindex(owner.map(|owner| (owner, *key)));
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
        drop(shard);
        self.inner.remove_now(&key);
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
            // Expired sessions do not count against the limit, once swept.
            if self.len() >= limit && (self.inner.sweep_when_full(now) == 0 || self.len() >= limit)
            {
                return Err(MemoryStoreError::Full { limit });
            }
        }
        loop {
            let key = SessionId::random_bytes();
            let mut shard = self.inner.shard(&key);
            let slot = shard.entry(hash(&key), |packed| packed.is(&key), Packed::rehash);
            if let hash_table::Entry::Vacant(slot) = slot {
                slot.insert(Packed::pack(&key, record));
                self.inner.len.fetch_add(1, Ordering::Relaxed);
                drop(shard);
                // The record first, then the index: an entry never names a record that is
                // still to come, so a list may drop an entry whose record is missing.
                if let Some(owner) = &record.owner {
                    let mut owners = self.inner.owners();
                    owners.entry(owner.name.clone()).or_default().insert(key);
                }
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
        if changes.entries.is_empty()
            && changes.idle_timeout.is_none()
            && changes.deadline.is_none()
        {
            // Only the expiry moves (a refresh): rewritten in place, as `load` does.
            if let Some(mut record) = packed.head() {
                if record.touch(now) {
                    packed.set_expires(record.expires);
                    return Ok(Update::Applied);
                }
            }
        } else if let Some(patched) = packed.patched(changes, now) {
            *packed = patched;
            return Ok(Update::Applied);
        }
        drop(shard);
        self.inner.remove_now(&key);
        Ok(Update::Missing)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), MemoryStoreError> {
        if let Some(key) = id.bytes() {
            self.inner.remove_now(&key);
        }
        Ok(())
    }
}

/// Each owner's sessions are a set of ids in process, kept with the records: an entry leaves
/// with its record (a delete, the sweep) or when a list finds it dead, so the index holds no
/// more than the live sessions and those expired since the last sweep.
impl OwnerIndex for MemoryStore {
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, MemoryStoreError> {
        let keys: Vec<Key> = match self.inner.owners().get(owner) {
            Some(keys) => keys.iter().copied().collect(),
            None => return Ok(Vec::new()),
        };
        let (mut live, mut gone) = (Vec::with_capacity(keys.len()), Vec::new());
        for key in keys {
            let id = SessionId::from_bytes(&key);
            match self.inner.read(&id) {
                Some(record) if record.owner.as_ref().is_some_and(|o| o.name == owner) => {
                    live.push((id, record));
                }
                Some(_) => {}
                // Gone, or dead (which the sweep removes too): out of the index.
                None => gone.push((owner.to_owned(), key)),
            }
        }
        self.inner.unindex(gone);
        Ok(live)
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

    /// A store sweeping every `interval`, with twenty sessions a shard on average that expire
    /// after a millisecond; their ids.
    async fn expiring(
        interval: Duration,
    ) -> Result<(MemoryStore, Vec<SessionId>), MemoryStoreError> {
        let store = MemoryStore::builder().sweep_interval(interval).build();
        let short = record(Duration::from_millis(1));
        let mut ids = Vec::new();
        for _ in 0..20 * SHARDS {
            ids.push(store.create(&short).await?);
        }
        Ok((store, ids))
    }

    /// The background sweep hands the thread back after each shard: polled once, it has swept
    /// exactly shard 0 (the ids whose first byte is 0) and is pending; run to the end, all.
    #[tokio::test(flavor = "current_thread")]
    async fn the_background_sweep_sweeps_one_shard_per_poll() -> Result<(), MemoryStoreError> {
        let (store, ids) = expiring(Duration::from_secs(3600)).await?;
        let first_shard = ids
            .iter()
            .filter(|id| id.bytes().is_some_and(|key| key[0] == 0))
            .count();
        let created = store.len();
        let later = SystemTime::now() + Duration::from_secs(1);
        let weak = Arc::downgrade(&store.inner);
        let mut sweep = std::pin::pin!(sweep_yielding(&weak, later));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(sweep.as_mut().poll(&mut context).is_pending());
        assert_eq!(
            store.len(),
            created - first_shard,
            "shard 0 swept, no other"
        );
        assert_eq!(sweep.await, Some(created));
        assert_eq!(store.len(), 0);
        Ok(())
    }

    /// The sweeper itself: on a one-thread runtime another task runs while it sweeps, and sees
    /// the store part-swept after shard upon shard (a sweep in one go shows it none).
    #[tokio::test(flavor = "current_thread")]
    async fn other_tasks_run_while_the_background_sweeper_sweeps() -> Result<(), MemoryStoreError> {
        let (store, _) = expiring(Duration::from_millis(20)).await?;
        let created = store.len();
        let mut part_swept = HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !store.is_empty() && tokio::time::Instant::now() < deadline {
            let len = store.len();
            if len < created {
                part_swept.insert(len);
            }
            tokio::task::yield_now().await;
        }
        assert!(
            store.is_empty(),
            "the sweeper removed every expired session"
        );
        assert!(
            part_swept.len() >= SHARDS / 2,
            "saw the store part-swept {} times",
            part_swept.len()
        );
        Ok(())
    }

    /// A store dropped in the middle of a sweep is freed at once, not after the sweep.
    #[tokio::test(flavor = "current_thread")]
    async fn a_store_dropped_mid_sweep_is_freed_at_once() -> Result<(), MemoryStoreError> {
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_secs(3600))
            .build();
        store.create(&record(Duration::from_millis(1))).await?;
        let weak = Arc::downgrade(&store.inner);
        let later = SystemTime::now() + Duration::from_secs(1);
        let mut sweep = std::pin::pin!(sweep_yielding(&weak, later));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(sweep.as_mut().poll(&mut context).is_pending());
        drop(store);
        assert!(weak.upgrade().is_none(), "the sweep keeps the store alive");
        assert_eq!(sweep.await, None);
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
    async fn an_owner_index_keeps_only_live_sessions_however_many_expire()
    -> Result<(), MemoryStoreError> {
        let store = MemoryStore::new();
        let owned = |idle| {
            let mut record = record(idle);
            record.owner = Some(crate::store::Owner {
                name: "user:1".to_owned(),
                since: SystemTime::now(),
                user_agent: None,
                address: None,
            });
            record
        };
        for _ in 0..5_000 {
            store.create(&owned(Duration::from_millis(10))).await?;
        }
        let live = store.create(&owned(Duration::from_secs(60))).await?;
        let gone = store.create(&owned(Duration::from_secs(60))).await?;
        store.delete(&gone).await?;
        let indexed = |store: &MemoryStore| store.inner.owners().get("user:1").map(HashSet::len);
        assert_eq!(
            indexed(&store),
            Some(5_001),
            "a delete left its index entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(store.owned("user:1").await?.len(), 1);
        assert_eq!(store.sweep(), 5_000);
        assert_eq!(indexed(&store), Some(1), "the sweep left index entries");
        store.delete(&live).await?;
        assert!(
            store.inner.owners().is_empty(),
            "an empty owner stayed in the index"
        );
        Ok(())
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

    /// Creates refused by a full store sweep at most once a second: requests without a cookie
    /// cannot make each one sweep the whole store.
    #[tokio::test]
    async fn a_full_store_sweeps_before_refusing_at_most_once_a_second()
    -> Result<(), MemoryStoreError> {
        let store = MemoryStore::builder()
            .max_sessions(2)
            .sweep_interval(Duration::from_secs(3600))
            .build();
        let full = Err(MemoryStoreError::Full { limit: 2 });
        store.create(&record(Duration::from_secs(60))).await?;
        let second = store.create(&record(Duration::from_secs(60))).await?;
        assert_eq!(store.create(&record(Duration::from_secs(60))).await, full);
        // Swept a moment ago: a session expired since still counts until the next sweep.
        store.delete(&second).await?;
        store.create(&record(Duration::from_millis(1))).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            store.create(&record(Duration::from_secs(60))).await,
            full,
            "a second sweep within the second"
        );
        tokio::time::sleep(FULL_SWEEP_EVERY).await;
        store.create(&record(Duration::from_secs(60))).await?;
        assert_eq!(store.len(), 2);
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
