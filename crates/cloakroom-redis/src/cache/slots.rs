//! The local copy's bookkeeping, free of fred: each key's copy, generation and calls in
//! flight, and the rules for when a reply may be kept.

use std::collections::HashMap;
use std::time::SystemTime;

use cloakroom::store::Record;

use super::LocalCacheStats;

/// What a call saw of its key when it was sent.
#[derive(Clone, Copy, Debug)]
pub(super) struct Claim {
    pub(super) generation: u64,
    /// Caching was on and no write of the key was in flight.
    pub(super) clean: bool,
}

/// The bookkeeping itself, free of fred.
#[derive(Default)]
pub(super) struct Slots {
    map: HashMap<String, Slot>,
    /// The last generation handed out.
    generation: u64,
    /// How many slots hold a record.
    cached: usize,
    tracking: bool,
    stats: LocalCacheStats,
}

#[derive(Default)]
struct Slot {
    record: Option<Record>,
    generation: u64,
    /// Tickets alive, and writes whose commands may still run (see [`InFlight`](super::InFlight)).
    calls: u32,
    writes: u32,
}

impl Slots {
    pub(super) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The copy of `key`, if one is held and live; a hit is counted here, a miss when the
    /// read goes to Redis (its [`begin`](Self::begin)), so a caller may look twice.
    pub(super) fn get(&mut self, key: &str, now: SystemTime) -> Option<Record> {
        if !self.tracking {
            return None;
        }
        let slot = self.map.get_mut(key)?;
        match &slot.record {
            Some(record) if !record.is_expired(now) => {
                self.stats.hits += 1;
                Some(record.clone())
            }
            Some(_) => {
                self.invalidated(key);
                None
            }
            None => None,
        }
    }

    /// The counters, and how many copies are held now.
    pub(super) fn stats(&self) -> LocalCacheStats {
        LocalCacheStats {
            held: self.cached,
            ..self.stats
        }
    }

    /// A call on `key` starts; a write takes the copy out (and returns it).
    pub(super) fn begin(&mut self, key: &str, write: bool) -> (Claim, Option<Record>) {
        let generation = if write {
            Some(self.next_generation())
        } else {
            self.stats.misses += 1;
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

    /// A write's last command is done (see [`InFlight`](super::InFlight)).
    pub(super) fn release(&mut self, key: &str) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        slot.writes -= 1;
        if slot.calls == 0 && slot.writes == 0 && slot.record.is_none() {
            self.map.remove(key);
        }
    }

    pub(super) fn finish(
        &mut self,
        key: &str,
        claim: Claim,
        record: Option<Record>,
        capacity: usize,
    ) {
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
    pub(super) fn evict_other_than(&mut self, key: &str) {
        let victim = self
            .map
            .iter()
            .find(|(k, slot)| slot.record.is_some() && k.as_str() != key)
            .map(|(k, _)| k.clone());
        if let Some(victim) = victim {
            self.invalidate(&victim);
            self.stats.evicted += 1;
        }
    }

    /// Redis says `key` changed (or its copy expired here): forgets it, and any reply in
    /// flight for it.
    pub(super) fn invalidated(&mut self, key: &str) {
        if self.invalidate(key) {
            self.stats.invalidated += 1;
        }
    }

    /// Forgets `key`, and any reply in flight for it; whether a copy was held.
    fn invalidate(&mut self, key: &str) -> bool {
        let generation = self.next_generation();
        let Some(slot) = self.map.get_mut(key) else {
            return false;
        };
        slot.generation = generation;
        let held = slot.record.take().is_some();
        if held {
            self.cached -= 1;
        }
        if slot.calls == 0 && slot.writes == 0 {
            self.map.remove(key);
        }
        held
    }

    /// Forgets everything, and every reply in flight.
    pub(super) fn reset(&mut self) {
        let generation = self.next_generation();
        self.stats.invalidated += self.cached as u64;
        self.map.retain(|_, slot| {
            slot.generation = generation;
            slot.record = None;
            slot.calls > 0 || slot.writes > 0
        });
        self.cached = 0;
    }

    pub(super) fn set_tracking(&mut self, tracking: bool) {
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
    fn the_counters_follow_hits_misses_invalidations_expiry_and_evictions() {
        let mut slots = slots();
        hold(&mut slots, "1");
        assert_eq!(held(&mut slots).as_deref(), Some("1"));
        assert_eq!(held(&mut slots).as_deref(), Some("1"));
        let (write, _) = slots.begin(KEY, true);
        written(&mut slots, write, Some(record("2")));
        let stats = slots.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.held),
            (2, 1, 1),
            "a read sent is a miss, a copy served a hit, a write neither"
        );

        slots.invalidated(KEY);
        slots.invalidated(KEY);
        assert_eq!(slots.stats().invalidated, 1, "only a held copy counts");
        assert_eq!(held(&mut slots), None);
        assert_eq!(slots.stats().hits, 2, "no copy, no hit");

        let mut expired = record("old");
        expired.expires = SystemTime::now() - Duration::from_secs(1);
        let (read, _) = slots.begin(KEY, false);
        slots.finish(KEY, read, Some(expired), 10);
        assert_eq!(held(&mut slots), None);
        assert_eq!(
            slots.stats().invalidated,
            2,
            "a copy found expired is dropped too"
        );

        for n in 0..12 {
            let key = format!("session:{n}");
            let (read, _) = slots.begin(&key, false);
            slots.finish(&key, read, Some(record("1")), 10);
        }
        let stats = slots.stats();
        assert_eq!((stats.held, stats.evicted), (10, 2), "{stats:?}");
        slots.reset();
        let stats = slots.stats();
        assert_eq!(
            (stats.held, stats.invalidated),
            (0, 12),
            "a reset drops every copy"
        );
        assert_eq!(stats.misses, 14);
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
