//! A local copy of the sessions this instance uses, kept true by Redis itself.
//!
//! With RESP3, `CLIENT TRACKING` makes Redis remember which keys a connection read and push an
//! invalidation to it when any other connection changes or deletes one of them, or when one
//! expires. So a session this instance has read stays valid in memory until Redis says it
//! changed: a read within the refresh interval costs no round trip at all, and a writing
//! request only its write: the new copy is the held one with the request's changes, or, when
//! none was held or the TTL moved, the session as the update script sends it back.
//!
//! # The invariant
//!
//! **A copy is served only while Redis will tell us about its next change.** Four things
//! keep it:
//!
//! - Redis forgets who tracks a key when anyone writes it, this connection included (NOLOOP
//!   only spares us the message). So every script call ends by reading its key again (see
//!   [`lua`](crate::lua)), and a copy made from a script's reply (a load's refresh, an update
//!   with or without the session sent back) is tracked like one made from a plain `HGETALL`.
//!   `create` keeps no copy (and leaves its key untracked), and a delete drops it.
//! - A flush empties the tracking table and says so in a message fred drops on our
//!   connections; the [`flush`](crate::flush) watchers hear it instead, and it drops
//!   everything.
//! - A connection that drops loses its tracking: the copy is dropped and nothing is kept until
//!   tracking is on again on every connection and the watchers are listening (fred restores
//!   neither). A connection that stalls without closing is treated the same once a command on
//!   it times out, or a heartbeat `PING` (every second) goes unanswered.
//! - A write of ours keeps any reply of its key from being kept while its command may still
//!   run, even after its caller went away ([`InFlight`]): a read may run before it.
//!
//! Outside the invariant: `SWAPDB` sends no invalidation at all (the README says so).
//!
//! # The order of events
//!
//! Replies and invalidations arrive on the same connection, in the order Redis produced them,
//! but fred hands them to different tasks, so a reply can reach the cache after an
//! invalidation that came behind it. Every call therefore takes a [`Ticket`] before it is sent,
//! and its reply is kept only if nothing could have made it stale since:
//!
//! - each key has a generation, moved on by every invalidation of it and every write to it
//!   from this instance; a reply is kept only if the generation is the one its ticket saw;
//! - a reply is kept only if no write of the same key from this instance was in flight when
//!   the call was sent or is still in flight (a key keeps to one pooled connection, but a
//!   cluster's redirections or a reconnection can still reorder its commands);
//! - pending invalidations, errors and reconnections are taken in before a copy is served.
//!   One taken in after a reply was kept drops it, as it would have kept it from being kept
//!   (the bookkeeping of calls leaves them pending: draining fred's channels costs a lock on
//!   each, and only serving needs them).
//!
//! A change from another instance is therefore seen as soon as its invalidation arrives, which
//! Redis sends before it answers the writer; a read here in the instant between the two can
//! still be served from the copy (the README states the bound the tests hold it to).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use cloakroom::store::Record;
use fred::clients::Client;
use fred::error::Error;
use fred::interfaces::{ClientLike, EventInterface, TrackingInterface};
use fred::types::RespVersion;
use fred::types::client::Invalidation;
use fred::types::config::Server;
use tokio::sync::Notify;
use tokio::sync::broadcast::{Receiver, error::TryRecvError};

use self::slots::{Claim, Slots};
use self::tracking::{retrack, track};
use crate::flush::Watchers;

mod slots;
mod tracking;

/// What the local copy has done since the store was built, from
/// [`RedisStore::local_cache_stats`](crate::RedisStore::local_cache_stats).
///
/// The hit rate, `hits / (hits + misses)`, is the share of session reads that cost no round
/// trip. Across instances it falls with every write another instance makes to a session this
/// one holds (each is an `invalidated` copy and the next read a miss); a steady `evicted`
/// count says [`local_cache`](crate::RedisStoreBuilder::local_cache) is smaller than the
/// sessions in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalCacheStats {
    /// Reads answered from the copy, with no command.
    pub hits: u64,
    /// Sessions read from Redis: reads of a session with no copy held, and loads (the
    /// refresh once per refresh interval, which always goes to Redis).
    pub misses: u64,
    /// Copies dropped because Redis reported their key changed, expired or was deleted
    /// (by another connection), because the copy was found expired here, or because no copy
    /// could be trusted any more (a flush, a lost or stalled connection).
    pub invalidated: u64,
    /// Copies dropped to make room for another, the cache being full.
    pub evicted: u64,
    /// Copies held now.
    pub held: usize,
}

/// The sessions this instance holds, and what it listens to in order to keep them true.
pub(crate) struct Cache {
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the task that turns tracking back on after a reconnection.
    retrack: Arc<Notify>,
}

struct State {
    slots: Slots,
    /// The store's own connections'.
    listeners: Vec<Listener>,
    /// The current flush watchers' (replaced with the watchers).
    watchers: Vec<Listener>,
    /// A reconnection was seen and tracking is not on again yet.
    retrack_pending: bool,
}

/// One fred client's notifications.
struct Listener {
    invalidations: Receiver<Invalidation>,
    errors: Receiver<(Error, Option<Server>)>,
    reconnections: Receiver<Server>,
}

impl Listener {
    /// Listens to `client` from now on.
    fn of(client: &Client) -> Self {
        Self {
            invalidations: client.invalidation_rx(),
            errors: client.error_rx(),
            reconnections: client.reconnect_rx(),
        }
    }
}

impl Cache {
    /// Turns tracking on for every client and returns the cache, or `None` when the clients
    /// do not speak RESP3 (tracking needs it) or Redis refused.
    pub(crate) async fn start(capacity: usize, clients: Vec<Client>) -> Option<Arc<Self>> {
        if capacity == 0 {
            return None;
        }
        if let Some(client) = clients
            .iter()
            .find(|c| c.protocol_version() != RespVersion::RESP3)
        {
            tracing::info!(
                client = client.id(),
                "the Redis client speaks RESP2: the local session cache needs RESP3 and is off"
            );
            return None;
        }
        let first = clients.first()?;
        // Before 7, Redis does not track the keys a script reads for its caller, and a copy
        // made from a script's reply would never be invalidated (see `lua`).
        if let Some(version) = first.server_version().filter(|v| v.major < 7) {
            tracing::warn!(%version, "Redis before 7.0 cannot keep the local session cache true: it is off");
            return None;
        }
        let watchers = Watchers::new(first);
        let cache = Arc::new(Self {
            capacity,
            state: Mutex::new(State {
                slots: Slots::default(),
                listeners: clients.iter().map(Listener::of).collect(),
                watchers: watchers.clients().iter().map(Listener::of).collect(),
                retrack_pending: false,
            }),
            retrack: Arc::new(Notify::new()),
        });
        if let Err(error) = track(&clients, &watchers).await {
            tracing::warn!(%error, "CLIENT TRACKING failed: the local session cache is off");
            watchers.close().await;
            return None;
        }
        {
            let mut state = cache.lock();
            // A reconnection while tracking was being turned on is the task's to handle.
            if !state.retrack_pending {
                state.slots.set_tracking(true);
            }
        }
        tokio::spawn(retrack(
            Arc::downgrade(&cache),
            Arc::clone(&cache.retrack),
            clients,
            watchers,
        ));
        Some(cache)
    }

    /// The state, with every notification fred has received so far taken in: what serving a
    /// copy needs.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.bookkeeping();
        if state.take_notifications() {
            self.retrack.notify_one();
        }
        state
    }

    /// The state as it is, for the bookkeeping of calls (announcing one, keeping its reply,
    /// releasing a write's guard). A notification it leaves pending is taken in before the
    /// next copy is served, and taking one in only drops copies, moves generations on and
    /// turns the copy off, so taking it in later serves nothing that taking it in now would
    /// not: a reply kept meanwhile is dropped then.
    fn bookkeeping(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; the bookkeeping stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live session under `key`, if this instance holds it.
    pub(crate) fn get(&self, key: &str, now: SystemTime) -> Option<Record> {
        self.lock().slots.get(key, now)
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> LocalCacheStats {
        self.lock().slots.stats()
    }

    /// Announces a call on `key` (a `write` changes or deletes it); its reply may be kept
    /// through the ticket.
    pub(crate) fn begin<'a>(self: &'a Arc<Self>, key: &'a str, write: bool) -> Ticket<'a> {
        let (claim, base) = self.bookkeeping().slots.begin(key, write);
        let in_flight = write.then(|| {
            Arc::new(InFlight {
                cache: Arc::clone(self),
                key: key.to_owned(),
            })
        });
        Ticket {
            cache: self,
            key,
            claim,
            base,
            in_flight,
            done: false,
        }
    }

    /// A connection may have stopped delivering (a command or a heartbeat timed out): drop
    /// every copy and keep none until tracking is confirmed on every connection again.
    pub(crate) fn suspect(&self) {
        {
            let mut state = self.lock();
            state.slots.set_tracking(false);
            state.retrack_pending = true;
        }
        self.retrack.notify_one();
    }

    fn finish(&self, key: &str, claim: Claim, record: Option<Record>) {
        let capacity = self.capacity;
        self.bookkeeping()
            .slots
            .finish(key, claim, record, capacity);
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // Lets the retracking task see that the cache is gone.
        self.retrack.notify_one();
    }
}

impl State {
    /// Applies pending invalidations, errors and reconnections; returns whether tracking
    /// must be turned on again.
    fn take_notifications(&mut self) -> bool {
        let mut retrack = false;
        let watchers = self.watchers.iter_mut().map(|listener| (listener, true));
        for (listener, watcher) in self
            .listeners
            .iter_mut()
            .map(|l| (l, false))
            .chain(watchers)
        {
            loop {
                match listener.invalidations.try_recv() {
                    // A flush (see `flush`): everything is gone.
                    Ok(invalidation) if invalidation.keys.is_empty() => self.slots.reset(),
                    Ok(invalidation) => {
                        for key in &invalidation.keys {
                            if let Some(key) = key.as_str() {
                                self.slots.invalidated(key);
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    // Some invalidations were lost: nothing held can be trusted.
                    Err(TryRecvError::Lagged(_)) => self.slots.reset(),
                    Err(TryRecvError::Closed) => {
                        self.slots.set_tracking(false);
                        break;
                    }
                }
            }
            // A watcher is never reconnected (its one connection event is its first), and its
            // error means no one hears a flush until the watchers are replaced.
            let mut lost = false;
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = listener.errors.try_recv() {
                lost |= watcher;
                self.slots.reset();
            }
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = listener.reconnections.try_recv() {
                lost |= !watcher;
            }
            if lost {
                self.slots.set_tracking(false);
                self.retrack_pending = true;
                retrack = true;
            }
        }
        retrack
    }
}
/// A call in flight on one key. Dropped without [`finish`](Self::finish) (the request was
/// cancelled), it keeps nothing.
pub(crate) struct Ticket<'a> {
    cache: &'a Cache,
    key: &'a str,
    claim: Claim,
    /// For a write, the copy it replaces: what the key held before, if this instance knew.
    base: Option<Record>,
    /// For a write, its commands' guard (see [`InFlight`]).
    in_flight: Option<Arc<InFlight>>,
    done: bool,
}

/// A write of one key whose command may still run. While any clone lives, no reply for the
/// key is kept: the ticket holds one, and so does each queued or sent command, which the
/// batcher drops only once Redis has answered (or the command was abandoned). A request that
/// goes away before its write was sent thus cannot let a read, sent after it but run before
/// it, keep the state the write is about to change.
pub(crate) struct InFlight {
    cache: Arc<Cache>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.cache.bookkeeping().slots.release(&self.key);
    }
}

impl Ticket<'_> {
    /// Whether the reply can be kept at all, as far as is known when the call is sent.
    pub(crate) fn may_keep(&self) -> bool {
        self.claim.clean
    }

    /// For a write that may keep its reply, the copy it started from: with the write's
    /// changes applied, that is what Redis now holds, unless an invalidation says otherwise
    /// (a key's calls and its invalidations share one connection, so one for a change made
    /// before this write arrives ahead of its reply, and is taken in before the copy is
    /// served).
    pub(crate) fn take_base(&mut self) -> Option<Record> {
        self.base.take().filter(|_| self.claim.clean)
    }

    /// A guard for one command of this write, to travel with it (see [`InFlight`]).
    pub(crate) fn in_flight(&self) -> Option<Arc<InFlight>> {
        self.in_flight.clone()
    }

    /// The call's outcome: `record` is what Redis now holds under the key (if it said).
    pub(crate) fn finish(mut self, record: Option<Record>) {
        self.done = true;
        // The commands' guards are gone by now (the batcher drops its guard before it
        // answers); this one goes before the reply is weighed.
        self.in_flight = None;
        self.cache.finish(self.key, self.claim, record);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.in_flight = None;
            self.cache.finish(self.key, self.claim, None);
        }
    }
}
