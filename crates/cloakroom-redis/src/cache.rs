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
//!   `create` keeps no copy, and a delete drops it.
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
//! - pending invalidations, errors and reconnections are taken in before a reply is kept, so
//!   one that fred has already received is never applied after the reply.
//!
//! A change from another instance is therefore seen as soon as its invalidation arrives, which
//! Redis sends before it answers the writer; a read here in the instant between the two can
//! still be served from the copy (the README states the bound the tests hold it to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use cloakroom::store::Record;
use fred::clients::Client;
use fred::error::Error;
use fred::interfaces::{ClientLike, EventInterface, TrackingInterface};
use fred::types::RespVersion;
use fred::types::client::Invalidation;
use fred::types::config::Server;
use tokio::sync::Notify;
use tokio::sync::broadcast::{Receiver, error::TryRecvError};

use crate::flush::Watchers;

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

    /// The state, with every notification fred has received so far taken in.
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; the bookkeeping stays consistent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.take_notifications() {
            self.retrack.notify_one();
        }
        state
    }

    /// The live session under `key`, if this instance holds it.
    pub(crate) fn get(&self, key: &str, now: SystemTime) -> Option<Record> {
        self.lock().slots.get(key, now)
    }

    /// Announces a call on `key` (a `write` changes or deletes it); its reply may be kept
    /// through the ticket.
    pub(crate) fn begin<'a>(self: &'a Arc<Self>, key: &'a str, write: bool) -> Ticket<'a> {
        let (claim, base) = self.lock().slots.begin(key, write);
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
        self.lock().slots.finish(key, claim, record, capacity);
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
                                self.slots.invalidate(key);
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

/// `CLIENT TRACKING on NOLOOP` on every connection (this instance's own writes keep its copy
/// up to date through their replies instead), then the flush watchers.
async fn track(clients: &[Client], watchers: &Watchers) -> Result<(), Error> {
    for client in clients {
        client
            .start_tracking(Vec::<String>::new(), false, false, false, true)
            .await?;
    }
    watchers.connect().await
}

/// How long the retracking task waits after a failed `CLIENT TRACKING` before it tries again,
/// at first and at most (it doubles in between).
const RETRACK_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRACK_DELAY: Duration = Duration::from_secs(30);

/// How often every connection is asked for a `PING`, and how long it has to answer. A
/// connection that stalls without closing (a partition dropping packets) delivers no
/// invalidations and no error; reads from the copy send no command that could time out, so
/// this is what bounds how long such a copy is served.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// Turns tracking on again after every reconnection, until the cache is dropped, with new
/// flush watchers (a cluster's primaries may have changed, and a watcher's new connection would
/// be neither tracking nor subscribed). A failed attempt (the server refusing the command, or
/// dropping again) is retried with a growing delay, so the copy does not stay off until some
/// later reconnection.
async fn retrack(cache: Weak<Cache>, wake: Arc<Notify>, clients: Vec<Client>, watchers: Watchers) {
    let mut delay = RETRACK_DELAY;
    let mut current = Some(watchers);
    loop {
        let woken = tokio::select! {
            () = wake.notified() => true,
            () = tokio::time::sleep(HEARTBEAT) => false,
        };
        let Some(cache) = cache.upgrade() else {
            break;
        };
        if !woken {
            if let Err(error) = heartbeat(&clients).await {
                tracing::warn!(%error, "a Redis connection did not answer PING: no local session copies until tracking is confirmed again");
                cache.suspect();
            }
            continue;
        }
        let watchers = {
            let mut state = cache.lock();
            if !state.retrack_pending {
                continue;
            }
            state.retrack_pending = false;
            let Some(first) = clients.first() else {
                break;
            };
            let watchers = Watchers::new(first);
            state.watchers = watchers.clients().iter().map(Listener::of).collect();
            watchers
        };
        if let Some(old) = current.replace(watchers) {
            old.close().await;
        }
        let Some(watchers) = current.as_ref() else {
            break;
        };
        match track(&clients, watchers).await {
            Ok(()) => {
                delay = RETRACK_DELAY;
                let mut state = cache.lock();
                // Another reconnection in the meantime needs its own round.
                if !state.retrack_pending {
                    state.slots.set_tracking(true);
                    tracing::debug!("Redis client tracking is on again: caching sessions");
                }
            }
            Err(error) => {
                cache.lock().retrack_pending = true;
                tracing::warn!(%error, retry_in = ?delay, "CLIENT TRACKING failed after a reconnection: no local session copies until it is on again");
                // Waiting must not keep the cache alive.
                drop(cache);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRACK_DELAY);
                wake.notify_one();
            }
        }
    }
    if let Some(watchers) = current {
        watchers.close().await;
    }
}

/// A `PING` on every connection, each within [`HEARTBEAT_TIMEOUT`].
async fn heartbeat(clients: &[Client]) -> Result<(), Error> {
    for client in clients {
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.ping::<()>(None)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(Error::new(
                    fred::error::ErrorKind::Timeout,
                    format!("no PONG within {HEARTBEAT_TIMEOUT:?}"),
                ));
            }
        }
    }
    Ok(())
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
        self.cache.lock().slots.release(&self.key);
    }
}

/// What a call saw of its key when it was sent.
#[derive(Clone, Copy, Debug)]
struct Claim {
    generation: u64,
    /// Caching was on and no write of the key was in flight.
    clean: bool,
}

impl Ticket<'_> {
    /// Whether the reply can be kept at all, as far as is known when the call is sent.
    pub(crate) fn may_keep(&self) -> bool {
        self.claim.clean
    }

    /// For a write that may keep its reply, the copy it started from: with the write's
    /// changes applied, that is what Redis now holds, unless an invalidation says otherwise
    /// before [`finish`](Self::finish) (a key's calls and its invalidations share one
    /// connection, so one for a change made before this write arrives ahead of its reply).
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

/// The bookkeeping itself, free of fred.
#[derive(Default)]
struct Slots {
    map: HashMap<String, Slot>,
    /// The last generation handed out.
    generation: u64,
    /// How many slots hold a record.
    cached: usize,
    tracking: bool,
}

#[derive(Default)]
struct Slot {
    record: Option<Record>,
    generation: u64,
    /// Tickets alive, and writes whose commands may still run (see [`InFlight`]).
    calls: u32,
    writes: u32,
}

impl Slots {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    fn get(&mut self, key: &str, now: SystemTime) -> Option<Record> {
        if !self.tracking {
            return None;
        }
        let slot = self.map.get_mut(key)?;
        match &slot.record {
            Some(record) if !record.is_expired(now) => Some(record.clone()),
            Some(_) => {
                self.invalidate(key);
                None
            }
            None => None,
        }
    }

    /// A call on `key` starts; a write takes the copy out (and returns it).
    fn begin(&mut self, key: &str, write: bool) -> (Claim, Option<Record>) {
        let generation = if write {
            Some(self.next_generation())
        } else {
            None
        };
        let slot = self.map.entry(key.to_owned()).or_default();
        let clean = slot.writes == 0;
        let mut base = None;
        if let Some(generation) = generation {
            slot.generation = generation;
            base = slot.record.take();
            if base.is_some() {
                self.cached -= 1;
            }
            slot.writes += 1;
        }
        slot.calls += 1;
        let claim = Claim {
            generation: slot.generation,
            clean: clean && self.tracking,
        };
        (claim, base)
    }

    /// A write's last command is done (see [`InFlight`]).
    fn release(&mut self, key: &str) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        slot.writes -= 1;
        if slot.calls == 0 && slot.writes == 0 && slot.record.is_none() {
            self.map.remove(key);
        }
    }

    fn finish(&mut self, key: &str, claim: Claim, record: Option<Record>, capacity: usize) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        slot.calls -= 1;
        let keep = claim.clean
            && self.tracking
            && slot.generation == claim.generation
            && slot.writes == 0
            && capacity > 0;
        let mut added = false;
        if let (true, Some(record)) = (keep, record) {
            added = slot.record.replace(record).is_none();
        }
        if slot.calls == 0 && slot.writes == 0 && slot.record.is_none() {
            self.map.remove(key);
        }
        if added {
            self.cached += 1;
            if self.cached > capacity {
                self.evict_other_than(key);
            }
        }
    }

    /// Drops one copy other than `key`'s to make room: the first in the map's (hash) order,
    /// which is as good as random and costs no bookkeeping per read.
    fn evict_other_than(&mut self, key: &str) {
        let victim = self
            .map
            .iter()
            .find(|(k, slot)| slot.record.is_some() && k.as_str() != key)
            .map(|(k, _)| k.clone());
        if let Some(victim) = victim {
            self.invalidate(&victim);
        }
    }

    /// Forgets `key`, and any reply in flight for it.
    fn invalidate(&mut self, key: &str) {
        let generation = self.next_generation();
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        slot.generation = generation;
        if slot.record.take().is_some() {
            self.cached -= 1;
        }
        if slot.calls == 0 && slot.writes == 0 {
            self.map.remove(key);
        }
    }

    /// Forgets everything, and every reply in flight.
    fn reset(&mut self) {
        let generation = self.next_generation();
        self.map.retain(|_, slot| {
            slot.generation = generation;
            slot.record = None;
            slot.calls > 0 || slot.writes > 0
        });
        self.cached = 0;
    }

    fn set_tracking(&mut self, tracking: bool) {
        self.reset();
        self.tracking = tracking;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KEY: &str = "session:a";

    fn record(value: &str) -> Record {
        let mut record = Record::new(SystemTime::now(), Duration::from_secs(60), None);
        record.entries.insert(
            "k".to_owned(),
            cloakroom::store::Entry {
                json: value.to_owned(),
                flash: false,
            },
        );
        record
    }

    fn slots() -> Slots {
        let mut slots = Slots::default();
        slots.set_tracking(true);
        slots
    }

    /// A read of `KEY` whose reply, `k: value`, is kept.
    fn hold(slots: &mut Slots, value: &str) {
        let (read, _) = slots.begin(KEY, false);
        slots.finish(KEY, read, Some(record(value)), 10);
    }

    /// A write's reply: its command is done, then its ticket finishes.
    fn written(slots: &mut Slots, claim: Claim, record: Option<Record>) {
        slots.release(KEY);
        slots.finish(KEY, claim, record, 10);
    }

    fn held(slots: &mut Slots) -> Option<String> {
        let record = slots.get(KEY, SystemTime::now())?;
        Some(record.entries.get("k")?.json.clone())
    }

    #[test]
    fn a_reply_is_kept_and_served_until_invalidated() {
        let mut slots = slots();
        let (claim, _) = slots.begin(KEY, false);
        slots.finish(KEY, claim, Some(record("1")), 10);
        assert_eq!(held(&mut slots).as_deref(), Some("1"));
        slots.invalidate(KEY);
        assert_eq!(held(&mut slots), None);
        assert!(slots.map.is_empty(), "an idle, empty slot must not stay");
    }

    #[test]
    fn an_invalidation_between_send_and_reply_discards_the_reply() {
        let mut slots = slots();
        let (claim, _) = slots.begin(KEY, false);
        slots.invalidate(KEY);
        slots.finish(KEY, claim, Some(record("stale")), 10);
        assert_eq!(held(&mut slots), None);
    }

    #[test]
    fn a_read_sent_while_a_write_is_in_flight_is_not_kept() {
        let mut slots = slots();
        let (write, _) = slots.begin(KEY, true);
        let (read, _) = slots.begin(KEY, false);
        slots.finish(KEY, read, Some(record("maybe before the write")), 10);
        assert_eq!(held(&mut slots), None);
        written(&mut slots, write, Some(record("after the write")));
        assert_eq!(held(&mut slots).as_deref(), Some("after the write"));
    }

    #[test]
    fn a_write_takes_the_copy_out_as_its_base() {
        let mut slots = slots();
        hold(&mut slots, "1");
        let (write, base) = slots.begin(KEY, true);
        assert_eq!(
            base.map(|r| r.entries["k"].json.clone()).as_deref(),
            Some("1")
        );
        assert_eq!(
            held(&mut slots),
            None,
            "no copy is served while the write is in flight"
        );
        let (_, none) = slots.begin(KEY, true);
        assert!(none.is_none(), "an overlapping write has no base");
        slots.release(KEY);
        written(&mut slots, write, Some(record("2")));
    }

    #[test]
    fn a_cancelled_write_keeps_any_reply_out_until_its_command_is_done() {
        let mut slots = slots();
        hold(&mut slots, "1");
        // The request went away: its ticket is gone, its command still queued or running.
        let (write, _) = slots.begin(KEY, true);
        slots.finish(KEY, write, None, 10);
        // A read sent now may run before the write (or after): its reply is not kept.
        let (read, _) = slots.begin(KEY, false);
        slots.finish(KEY, read, Some(record("1, or 2")), 10);
        assert_eq!(held(&mut slots), None);
        // Once the command is done, a read sent afterwards sees its effect.
        slots.release(KEY);
        hold(&mut slots, "2");
        assert_eq!(held(&mut slots).as_deref(), Some("2"));
        slots.invalidate(KEY);
        assert!(slots.map.is_empty(), "an idle, empty slot must not stay");
    }

    #[test]
    fn overlapping_writes_keep_neither_reply() {
        let mut slots = slots();
        let (first, _) = slots.begin(KEY, true);
        let (second, _) = slots.begin(KEY, true);
        // On two pooled connections they may have run in either order.
        written(&mut slots, second, Some(record("2")));
        written(&mut slots, first, Some(record("1")));
        assert_eq!(held(&mut slots), None);
    }

    #[test]
    fn a_write_drops_the_copy_until_its_reply() {
        let mut slots = slots();
        hold(&mut slots, "1");
        let (write, _) = slots.begin(KEY, true);
        assert_eq!(held(&mut slots), None);
        // A failed write keeps nothing.
        written(&mut slots, write, None);
        assert_eq!(held(&mut slots), None);
    }

    #[test]
    fn a_reset_or_tracking_off_forgets_everything_in_flight_too() {
        let mut slots = slots();
        hold(&mut slots, "1");
        let (in_flight, _) = slots.begin(KEY, false);
        slots.reset();
        assert_eq!(held(&mut slots), None);
        slots.finish(KEY, in_flight, Some(record("2")), 10);
        assert_eq!(held(&mut slots), None);

        slots.set_tracking(false);
        let (untracked, _) = slots.begin(KEY, false);
        slots.set_tracking(true);
        slots.finish(KEY, untracked, Some(record("3")), 10);
        assert_eq!(held(&mut slots), None, "a read sent while tracking was off");
    }

    #[test]
    fn expired_copies_are_not_served_and_capacity_is_kept() {
        let mut slots = slots();
        let mut expired = record("old");
        expired.expires = SystemTime::now() - Duration::from_secs(1);
        let (claim, _) = slots.begin(KEY, false);
        slots.finish(KEY, claim, Some(expired), 10);
        assert_eq!(held(&mut slots), None);

        for n in 0..5 {
            let key = format!("session:{n}");
            let (claim, _) = slots.begin(&key, false);
            slots.finish(&key, claim, Some(record("1")), 3);
            assert!(
                slots.get(&key, SystemTime::now()).is_some(),
                "the newest copy makes room for itself"
            );
        }
        assert_eq!(slots.cached, 3);
        assert_eq!(slots.map.len(), 3);
    }
}
