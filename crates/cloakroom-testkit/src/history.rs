//! What the consistency checker saw, and the checks it makes of it.
//!
//! Every store call is one [`Op`]: which instance, when it started and ended, and what it
//! returned. Values are unique numbers, so an observed value names the write that made it. A
//! call that failed or timed out is indeterminate: it may or may not have applied, now or
//! later (a write that timed out against a paused Redis can land when it resumes), so it is
//! never taken as having ended, and its values may show up at any time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use crate::conformance::Violation;

/// The name of the reads the driver makes at the end, once every call has returned.
pub(crate) const FINAL: &str = "final read";

/// A session's index in the history (ids never appear in reports).
pub(crate) type Session = usize;
/// A key's value: a unique number, or `None` for "not there".
pub(crate) type Value = Option<u64>;

/// What a call did, and what it returned.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// `read`, `read_now` (only when it answered) or `load`: what the session held, if anything.
    Read {
        call: &'static str,
        seen: Option<BTreeMap<String, u64>>,
    },
    /// `create` with these values (every other key absent).
    Create {
        values: BTreeMap<String, u64>,
    },
    /// `update` setting or removing these keys; `applied` as the store answered.
    Update {
        changes: BTreeMap<String, Value>,
        applied: Option<bool>,
    },
    Delete,
    /// Everything in the store destroyed (a flush, a restart without persistence).
    Wipe,
}

/// One call.
#[derive(Clone, Debug)]
pub(crate) struct Op {
    pub(crate) instance: usize,
    pub(crate) session: Session,
    pub(crate) start: Instant,
    /// `None`: the call failed or timed out, and may or may not have applied.
    pub(crate) end: Option<Instant>,
    pub(crate) kind: Kind,
}

/// The recorded history, and the time it started.
pub(crate) struct History {
    pub(crate) origin: Instant,
    pub(crate) ops: Vec<Op>,
    pub(crate) keys: Vec<String>,
    /// Sessions created to expire: reading them as gone is no loss (the driver checks that
    /// they do expire).
    pub(crate) expiring: Vec<Session>,
}

/// What the checks found, besides violations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Store calls made and checked.
    pub operations: usize,
    /// Of those, calls that failed, timed out or were cut short (indeterminate).
    pub indeterminate: usize,
    /// Of those, calls the checker cut short on purpose, as a client that goes away.
    pub cut: usize,
    /// Of those, calls the store failed or did not answer in time.
    pub failed: usize,
    /// Reads that returned a session, each of whose keys was checked.
    pub reads_checked: usize,
    /// The stalest answer within the tolerance: how long after a newer write (or a delete)
    /// had returned a read still saw the older state. Zero when no read was stale.
    pub worst_staleness: Duration,
    /// Reads that were stale (within the tolerance).
    pub stale_reads: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations ({} indeterminate: {} failed, {} cut short), {} reads checked, {} \
             stale (worst {:?})",
            self.operations,
            self.indeterminate,
            self.failed,
            self.cut,
            self.reads_checked,
            self.stale_reads,
            self.worst_staleness
        )
    }
}

pub(crate) const DELETED: &str =
    "nothing reads a session after a delete of it has completed (or a read found it gone)";
pub(crate) const NO_LATE_UPDATE: &str = "no update of a deleted session applies";
pub(crate) const FRESH: &str =
    "no read returns a value older than the newest write of that key completed before it";
pub(crate) const ORIGIN: &str = "every value read was written to that session by some call";
pub(crate) const NOT_LOST: &str =
    "at the end, every key holds the value of a write no later completed write overwrote";
pub(crate) const AGREE: &str =
    "once every call has returned, every instance reads every session the same";
pub(crate) const KEPT: &str =
    "a live session nobody deleted is never missing, to a read or an update (nothing lost)";

/// A write of one key, as the checks need it.
#[derive(Clone, Copy)]
struct Write {
    op: usize,
    value: Value,
    start: Instant,
    end: Option<Instant>,
}

/// The writes of one session's key, sorted by end, with the latest start among those that
/// ended so far: whether a write was overwritten before some moment is a binary search.
struct Writes {
    all: Vec<Write>,
    /// Writes that ended, by end.
    ended: Vec<Write>,
    /// `latest_start[i]`: the latest start among `ended[..=i]`.
    latest_start: Vec<Instant>,
}

impl Writes {
    fn new(mut all: Vec<Write>) -> Self {
        all.sort_by_key(|write| write.start);
        let mut ended: Vec<Write> = all.iter().filter(|w| w.end.is_some()).copied().collect();
        ended.sort_by_key(|write| write.end);
        let mut latest = None;
        let latest_start = ended
            .iter()
            .map(|write| {
                let start = latest.map_or(write.start, |l: Instant| l.max(write.start));
                latest = Some(start);
                start
            })
            .collect();
        Self {
            all,
            ended,
            latest_start,
        }
    }

    /// The first write that ended before `before` and started after `write` ended: it
    /// overwrote `write`. `None` if there is none, or `write` is indeterminate (it may have
    /// applied after any other).
    fn overwriter(&self, write: &Write, before: Instant) -> Option<&Write> {
        let end = write.end?;
        let count = self
            .ended
            .partition_point(|w| w.end.is_some_and(|e| e < before));
        if count == 0 || self.latest_start[count - 1] <= end {
            return None;
        }
        // The earliest-ending one: how long the overwritten value has been stale.
        self.ended[..count].iter().find(|w| w.start > end)
    }
}

impl History {
    fn op(&self, index: usize) -> String {
        let op = &self.ops[index];
        let at = |t: Instant| t.duration_since(self.origin).as_secs_f64() * 1000.0;
        let end = op
            .end
            .map_or_else(|| "failed".to_owned(), |e| format!("{:.1} ms", at(e)));
        let what = match &op.kind {
            Kind::Read { call, seen } => match seen {
                Some(values) => format!("{call} -> {values:?}"),
                None => format!("{call} -> none"),
            },
            Kind::Create { values } => format!("create {values:?}"),
            Kind::Update { changes, applied } => {
                let answer = match applied {
                    Some(true) => "applied",
                    Some(false) => "missing",
                    None => "?",
                };
                format!("update {changes:?} -> {answer}")
            }
            Kind::Delete => "delete".to_owned(),
            Kind::Wipe => "wipe (every session)".to_owned(),
        };
        format!(
            "#{index} instance {} session s{} [{:.1} ms .. {end}] {what}",
            op.instance,
            op.session,
            at(op.start)
        )
    }

    fn violation(&self, promise: &'static str, ops: &[usize], why: &str) -> Violation {
        let ops: Vec<String> = ops.iter().map(|&i| self.op(i)).collect();
        Violation {
            promise,
            detail: format!("{why}: {}", ops.join("; ")),
        }
    }

    /// Checks the whole history; `staleness` is how long after a write or delete returned a
    /// read may still see the state before it.
    pub(crate) fn check(&self, staleness: Duration) -> Result<Report, Violation> {
        let mut report = Report {
            operations: self
                .ops
                .iter()
                .filter(|op| !matches!(op.kind, Kind::Wipe))
                .count(),
            indeterminate: self
                .ops
                .iter()
                .filter(|op| op.end.is_none() && !matches!(op.kind, Kind::Wipe))
                .count(),
            ..Report::default()
        };
        let wipes: Vec<usize> = (0..self.ops.len())
            .filter(|&i| matches!(self.ops[i].kind, Kind::Wipe))
            .collect();
        let mut sessions: HashMap<Session, Vec<usize>> = HashMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            if !matches!(op.kind, Kind::Wipe) {
                sessions.entry(op.session).or_default().push(index);
            }
        }
        for ops in sessions.values() {
            self.check_session(ops, &wipes, staleness, &mut report)?;
            self.check_agreement(ops)?;
        }
        Ok(report)
    }

    /// Once every call has returned, every instance shows the session the same way.
    fn check_agreement(&self, ops: &[usize]) -> Result<(), Violation> {
        let mut finals = ops.iter().copied().filter(|&i| {
            let op = &self.ops[i];
            op.end.is_some() && matches!(op.kind, Kind::Read { call: FINAL, .. })
        });
        let Some(first) = finals.next() else {
            return Ok(());
        };
        let seen = |i: usize| match &self.ops[i].kind {
            Kind::Read { seen, .. } => seen.clone(),
            _ => None,
        };
        match finals.find(|&other| seen(other) != seen(first)) {
            Some(other) => Err(self.violation(
                AGREE,
                &[first, other],
                "two instances disagree once every call has returned",
            )),
            None => Ok(()),
        }
    }

    fn check_session(
        &self,
        ops: &[usize],
        wipes: &[usize],
        staleness: Duration,
        report: &mut Report,
    ) -> Result<(), Violation> {
        let Some(&created) = ops
            .iter()
            .find(|&&i| matches!(self.ops[i].kind, Kind::Create { .. }))
        else {
            return Ok(());
        };
        let create = &self.ops[created];
        // The deletes of this session: its own, and every wipe after its creation started.
        let deletes: Vec<usize> = ops
            .iter()
            .copied()
            .filter(|&i| matches!(self.ops[i].kind, Kind::Delete))
            .chain(
                wipes
                    .iter()
                    .copied()
                    .filter(|&w| self.ops[w].end.is_none_or(|end| end > create.start)),
            )
            .collect();
        // The first moment the session is certainly gone: a delete that completed, a wipe
        // that began after it was created, or a read that found it gone (a session never
        // comes back: ids are not reused, and an update never recreates one).
        let found_gone = ops.iter().copied().filter(|&i| {
            let op = &self.ops[i];
            op.end.is_some() && matches!(op.kind, Kind::Read { seen: None, .. })
        });
        let deleted = deletes
            .iter()
            .copied()
            .filter(|&d| {
                let op = &self.ops[d];
                op.end.is_some()
                    && (matches!(op.kind, Kind::Delete)
                        || create.end.is_some_and(|end| end < op.start))
            })
            .chain(found_gone)
            .min_by_key(|&d| self.ops[d].end);

        // Whether the session may have gone by the end of `op`: a delete or wipe had begun,
        // or it was made to expire.
        let expiring = self.expiring.contains(&create.session);
        let may_be_gone = |op: &Op| {
            expiring
                || deletes
                    .iter()
                    .any(|&d| op.end.is_none_or(|end| self.ops[d].start < end))
        };
        let writes = self.writes(ops);
        for &index in ops {
            let op = &self.ops[index];
            match &op.kind {
                Kind::Update { applied, .. } => {
                    if let (Some(delete), Some(true)) = (deleted, applied) {
                        if self.ops[delete].end.is_some_and(|end| end < op.start) {
                            return Err(self.violation(
                                NO_LATE_UPDATE,
                                &[delete, index],
                                "an update that began after the delete returned applied",
                            ));
                        }
                    }
                    if *applied == Some(false) && !may_be_gone(op) {
                        return Err(self.violation(
                            KEPT,
                            &[created, index],
                            "no delete had begun, yet the update found no session",
                        ));
                    }
                }
                // A read that failed saw nothing.
                Kind::Read { seen: None, .. } if op.end.is_some() && !may_be_gone(op) => {
                    return Err(self.violation(
                        KEPT,
                        &[created, index],
                        "no delete had begun, yet the read found no session",
                    ));
                }
                Kind::Read {
                    seen: Some(values), ..
                } => {
                    report.reads_checked += 1;
                    if let Some(delete) = deleted {
                        let gone = self.ops[delete].end.unwrap_or(op.start);
                        if gone < op.start {
                            let late = op.start.duration_since(gone);
                            if late > staleness {
                                return Err(self.violation(
                                    DELETED,
                                    &[created, delete, index],
                                    &format!("read {late:?} after the session was gone"),
                                ));
                            }
                            report.stale(late);
                        }
                    }
                    self.check_read(index, values, &writes, staleness, report)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether op `index` wrote `value` (a number) under `key`, to any session.
    fn wrote(&self, index: usize, key: &str, value: Value) -> bool {
        let Some(value) = value else {
            return false;
        };
        match &self.ops[index].kind {
            Kind::Create { values } => values.get(key) == Some(&value),
            Kind::Update { changes, .. } => changes.get(key) == Some(&Some(value)),
            _ => false,
        }
    }

    /// Every write of each key of the session's ops. A write that failed has no end, unless a
    /// read saw its value: then it had applied by the time that read returned.
    fn writes(&self, ops: &[usize]) -> HashMap<&str, Writes> {
        let mut first_seen: HashMap<(&str, u64), Instant> = HashMap::new();
        for &index in ops {
            let op = &self.ops[index];
            if let (
                Kind::Read {
                    seen: Some(values), ..
                },
                Some(end),
            ) = (&op.kind, op.end)
            {
                for (key, value) in values {
                    let seen = first_seen.entry((key.as_str(), *value)).or_insert(end);
                    *seen = (*seen).min(end);
                }
            }
        }
        let mut writes: HashMap<&str, Vec<Write>> = HashMap::new();
        for &index in ops {
            let op = &self.ops[index];
            let changed: Vec<(&str, Value)> = match &op.kind {
                // A new session holds its values, and no other key.
                Kind::Create { values } => self
                    .keys
                    .iter()
                    .map(|key| (key.as_str(), values.get(key).copied()))
                    .collect(),
                Kind::Update {
                    changes,
                    applied: Some(true) | None,
                } => changes.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
                _ => continue,
            };
            for (key, value) in changed {
                let seen = value.and_then(|value| first_seen.get(&(key, value)).copied());
                writes.entry(key).or_default().push(Write {
                    op: index,
                    value,
                    start: op.start,
                    end: op.end.or(seen),
                });
            }
        }
        writes
            .into_iter()
            .map(|(key, all)| (key, Writes::new(all)))
            .collect()
    }

    fn check_read(
        &self,
        index: usize,
        values: &BTreeMap<String, u64>,
        writes: &HashMap<&str, Writes>,
        staleness: Duration,
        report: &mut Report,
    ) -> Result<(), Violation> {
        let read = &self.ops[index];
        let read_end = read.end.unwrap_or(read.start);
        if let Some(key) = values.keys().find(|key| !self.keys.contains(key)) {
            return Err(self.violation(
                ORIGIN,
                &[index],
                &format!("key {key:?} was never written"),
            ));
        }
        for key in &self.keys {
            let seen = values.get(key).copied();
            let Some(writes) = writes.get(key.as_str()) else {
                continue;
            };
            // The writes that could have made what was read: of this value (values are
            // unique; "absent" has many), begun before the read ended.
            let candidates: Vec<&Write> = writes
                .all
                .iter()
                .filter(|w| w.value == seen && w.start < read_end)
                .collect();
            if candidates.is_empty() {
                // Whatever wrote the value, to this session or another.
                let mut involved: Vec<usize> = (0..self.ops.len())
                    .filter(|&i| self.wrote(i, key, seen))
                    .collect();
                involved.push(index);
                return Err(self.violation(
                    ORIGIN,
                    &involved,
                    &format!("key {key:?}: no call wrote {seen:?} to this session before the read"),
                ));
            }
            // The value is fresh if any write that made it was not overwritten before the
            // read began; else it is as stale as its freshest maker allows.
            let mut least: Option<(Duration, usize, usize)> = None;
            for write in candidates {
                match writes.overwriter(write, read.start) {
                    None => {
                        least = None;
                        break;
                    }
                    Some(newer) => {
                        let age = newer.end.map_or(Duration::ZERO, |end| read.start - end);
                        if least.is_none_or(|(a, _, _)| age < a) {
                            least = Some((age, write.op, newer.op));
                        }
                    }
                }
            }
            if let Some((age, old, newer)) = least {
                if age > staleness {
                    let promise = match read.kind {
                        Kind::Read { call: FINAL, .. } => NOT_LOST,
                        _ => FRESH,
                    };
                    return Err(self.violation(
                        promise,
                        &[old, newer, index],
                        &format!("key {key:?}: read {seen:?} {age:?} after a newer write returned"),
                    ));
                }
                report.stale(age);
            }
        }
        Ok(())
    }
}

impl Report {
    fn stale(&mut self, age: Duration) {
        self.stale_reads += 1;
        self.worst_staleness = self.worst_staleness.max(age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    fn history(ops: Vec<Op>) -> History {
        let origin = ops.first().map_or_else(Instant::now, |op| op.start);
        History {
            origin,
            ops,
            keys: vec!["k".to_owned()],
            expiring: Vec::new(),
        }
    }

    fn op(origin: Instant, start: u64, end: Option<u64>, kind: Kind) -> Op {
        Op {
            instance: 0,
            session: 0,
            start: at(origin, start),
            end: end.map(|end| at(origin, end)),
            kind,
        }
    }

    fn create(value: u64) -> Kind {
        Kind::Create {
            values: BTreeMap::from([("k".to_owned(), value)]),
        }
    }

    fn update(value: Value, applied: Option<bool>) -> Kind {
        Kind::Update {
            changes: BTreeMap::from([("k".to_owned(), value)]),
            applied,
        }
    }

    fn read(value: Option<u64>) -> Kind {
        Kind::Read {
            call: "read",
            seen: Some(
                value
                    .map(|v| BTreeMap::from([("k".to_owned(), v)]))
                    .unwrap_or_default(),
            ),
        }
    }

    fn gone() -> Kind {
        Kind::Read {
            call: "read",
            seen: None,
        }
    }

    fn check(ops: Vec<Op>, staleness: u64) -> Result<Report, &'static str> {
        history(ops)
            .check(Duration::from_millis(staleness))
            .map_err(|violation| violation.promise)
    }

    #[test]
    fn a_read_of_the_newest_value_or_of_a_concurrent_write_is_fine() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            op(o, 2, Some(3), update(Some(2), Some(true))),
            op(o, 4, Some(8), update(Some(3), Some(true))),
            // Concurrent with the write of 3: either value.
            op(o, 5, Some(6), read(Some(2))),
            op(o, 6, Some(7), read(Some(3))),
            op(o, 9, Some(10), read(Some(3))),
        ];
        assert_eq!(check(ops, 0).map(|r| r.stale_reads), Ok(0));
    }

    #[test]
    fn a_value_overwritten_before_the_read_began_is_stale() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            op(o, 2, Some(3), update(Some(2), Some(true))),
            op(o, 13, Some(14), read(Some(1))),
        ];
        assert_eq!(check(ops.clone(), 0).err(), Some(FRESH));
        let report = check(ops, 20);
        assert_eq!(
            report.map(|r| (r.stale_reads, r.worst_staleness)),
            Ok((1, Duration::from_millis(10)))
        );
    }

    #[test]
    fn a_failed_write_may_land_at_any_time_but_a_value_from_nowhere_may_not() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            op(o, 2, None, update(Some(2), None)),
            op(o, 4, Some(5), update(Some(3), Some(true))),
            // The failed write applied late: it was never "overwritten".
            op(o, 9, Some(10), read(Some(2))),
        ];
        assert!(check(ops.clone(), 0).is_ok());
        let mut from_nowhere = ops;
        from_nowhere.push(op(o, 11, Some(12), read(Some(99))));
        assert_eq!(check(from_nowhere, 0).err(), Some(ORIGIN));
    }

    #[test]
    fn a_removed_key_reads_as_absent_and_a_lost_removal_is_caught() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            op(o, 2, Some(3), update(None, Some(true))),
            op(o, 4, Some(5), read(None)),
        ];
        assert!(check(ops.clone(), 0).is_ok());
        let mut lost = ops;
        lost.push(op(o, 6, Some(7), read(Some(1))));
        assert_eq!(check(lost, 0).err(), Some(FRESH));
    }

    #[test]
    fn nothing_reads_or_updates_a_session_after_its_delete_returned() {
        let o = Instant::now();
        let base = vec![
            op(o, 0, Some(1), create(1)),
            op(o, 2, Some(3), Kind::Delete),
        ];
        let mut read_late = base.clone();
        read_late.push(op(o, 10, Some(11), read(Some(1))));
        assert_eq!(check(read_late.clone(), 0).err(), Some(DELETED));
        assert!(check(read_late, 20).is_ok(), "within the tolerance");
        let mut update_late = base.clone();
        update_late.push(op(o, 10, Some(11), update(Some(2), Some(true))));
        assert_eq!(check(update_late, 20).err(), Some(NO_LATE_UPDATE));
        let mut fine = base;
        fine.push(op(o, 10, Some(11), gone()));
        fine.push(op(o, 10, Some(11), update(Some(2), Some(false))));
        assert!(check(fine, 0).is_ok());
    }

    #[test]
    fn an_update_of_a_live_session_must_find_it_unless_a_delete_or_wipe_began() {
        let o = Instant::now();
        let base = vec![op(o, 0, Some(1), create(1))];
        let mut lost = base.clone();
        lost.push(op(o, 2, Some(3), update(Some(2), Some(false))));
        assert_eq!(check(lost, 0).err(), Some(KEPT));
        let mut wiped = base;
        wiped.push(op(o, 2, Some(3), Kind::Wipe));
        wiped.push(op(o, 2, Some(4), update(Some(2), Some(false))));
        wiped.push(op(o, 20, Some(21), gone()));
        assert!(check(wiped.clone(), 0).is_ok());
        wiped.push(op(o, 22, Some(23), read(Some(1))));
        assert_eq!(check(wiped, 0).err(), Some(DELETED));
    }

    #[test]
    fn a_session_read_as_gone_that_nobody_deleted_is_a_lost_session() {
        let o = Instant::now();
        let failed = vec![op(o, 0, Some(1), create(1)), op(o, 5, None, gone())];
        assert!(check(failed, 0).is_ok(), "a failed read is no answer");
        let ops = vec![op(o, 0, Some(1), create(1)), op(o, 5, Some(6), gone())];
        assert_eq!(check(ops, 0).err(), Some(KEPT));
    }

    fn on(instance: usize, op: Op) -> Op {
        Op { instance, ..op }
    }

    fn final_read(origin: Instant, at: u64, value: u64) -> Op {
        Op {
            kind: Kind::Read {
                call: FINAL,
                seen: Some(BTreeMap::from([("k".to_owned(), value)])),
            },
            ..op(origin, at, Some(at + 1), gone())
        }
    }

    #[test]
    fn a_failed_write_a_read_saw_has_applied_and_can_be_overwritten() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            // Its reply was lost, but instance 1 reads it: it had applied by then.
            op(o, 2, None, update(Some(2), None)),
            on(1, op(o, 3, Some(4), read(Some(2)))),
            op(o, 10, Some(11), update(Some(3), Some(true))),
            // The failed write's value, long after a newer write returned.
            on(0, op(o, 5000, Some(5001), read(Some(2)))),
        ];
        assert_eq!(check(ops, 0).err(), Some(FRESH));
    }

    #[test]
    fn instances_that_still_disagree_at_the_end_are_caught() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            op(o, 2, None, update(Some(2), None)),
            on(0, final_read(o, 9000, 1)),
            on(1, final_read(o, 9000, 2)),
        ];
        assert_eq!(check(ops, 0).err(), Some(AGREE));
    }

    #[test]
    fn once_a_read_found_the_session_gone_nothing_serves_it_again() {
        let o = Instant::now();
        let ops = vec![
            op(o, 0, Some(1), create(1)),
            // A delete whose reply was lost; instance 1 finds the session gone.
            op(o, 2, None, Kind::Delete),
            on(1, op(o, 3, Some(4), gone())),
            on(0, op(o, 9000, Some(9001), read(Some(1)))),
        ];
        assert_eq!(check(ops.clone(), 0).err(), Some(DELETED));
        assert!(check(ops[..3].to_vec(), 0).is_ok());
    }
}
