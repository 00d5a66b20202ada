//! The consistency checker: several instances of a store, random concurrent calls over a
//! handful of sessions, and a check of everything they saw.
//!
//! Each instance stands for one app process: give each its own connections (its own
//! `RedisStore`, its own `FsStore` on the shared directory), as separate processes would have.
//! The checker records every call with its start and end and then checks the history (see
//! [`Report`] and the promises in the crate documentation); faults injected while it runs
//! (killed connections, a restarted or paused server) must not break any of them for the calls
//! that succeeded.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use cloakroom::SessionId;
use cloakroom::store::{Changes, Entry, Owner, OwnerIndex, Record, SessionStore, Update};
use tokio::task::JoinSet;

use crate::conformance::Violation;
use crate::history::{FINAL, History, Kind, Op, Report, Session, Value};

/// The keys every session's values go under.
const KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// The idle timeout of the sessions that are not made to expire.
const LONG: Duration = Duration::from_secs(600);
/// How many sessions are made to expire.
const EXPIRING: usize = 2;
/// How many times each of the first sessions is tried.
const SETUP_ATTEMPTS: usize = 30;

/// How many owners the sessions belong to, when the run revokes.
const OWNERS: usize = 2;

const EXPIRED: &str = "nothing expired is served";
const HEALTHY: &str = "store calls succeed against a healthy store";

/// The consistency checker with its settings.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
/// use std::time::Duration;
/// use cloakroom::MemoryStore;
/// use cloakroom_testkit::Consistency;
///
/// let store = MemoryStore::new(); // one process: many tasks on one instance
/// let report = Consistency::new()
///     .duration(Duration::from_millis(300))
///     .expiry(Duration::from_millis(100))
///     .run(vec![store])
///     .await?;
/// assert!(report.operations > 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Consistency {
    duration: Duration,
    sessions: usize,
    concurrency: usize,
    staleness: Duration,
    call_timeout: Duration,
    expiry: Duration,
    seed: Option<u64>,
    faults: Faults,
}

/// Faults a test injects while the checker runs that destroy sessions, so the history knows
/// of them. Clones share the record.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let faults = cloakroom_testkit::Faults::new();
/// // While `Consistency::new().faults(faults.clone()).run(..)` runs:
/// faults.wipe(async { /* FLUSHALL, or restart a memcached */ }).await;
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Faults {
    wipes: Arc<Mutex<Vec<Span>>>,
}

/// When a fault began and, once it is over, ended.
type Span = (Instant, Option<Instant>);

impl Faults {
    /// No faults yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `wipe`, which destroys every session (a `FLUSHALL`, a restart of a server that
    /// keeps nothing): a session created before it ended may be gone after it began.
    pub async fn wipe<F: Future>(&self, wipe: F) -> F::Output {
        let start = Instant::now();
        let index = {
            let mut wipes = lock(&self.wipes);
            wipes.push((start, None));
            wipes.len() - 1
        };
        let output = wipe.await;
        lock(&self.wipes)[index].1 = Some(Instant::now());
        output
    }
}

impl Default for Consistency {
    fn default() -> Self {
        Self::new()
    }
}

impl Consistency {
    /// The defaults: 2 seconds, 4 sessions, 4 concurrent tasks per instance, no staleness,
    /// a 5 second call timeout, expiring sessions with a 1 second idle timeout.
    pub fn new() -> Self {
        Self {
            duration: Duration::from_secs(2),
            sessions: 4,
            concurrency: 4,
            staleness: Duration::ZERO,
            call_timeout: Duration::from_secs(5),
            expiry: Duration::from_secs(1),
            seed: None,
            faults: Faults::new(),
        }
    }

    /// How long the random calls go on.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// For a soak: run for `CLOAKROOM_SOAK_SECS` seconds instead, when that is set (see
    /// `scripts/soak.sh`).
    pub fn soak_from_env(self) -> Self {
        match std::env::var("CLOAKROOM_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(secs) => self.duration(Duration::from_secs(secs)),
            None => self,
        }
    }

    /// How long the calls go on, as set (for fault injectors that run as long).
    pub fn planned_duration(&self) -> Duration {
        self.duration
    }

    /// How many sessions the calls share (a handful makes them collide).
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }

    /// How many tasks call each instance at once.
    pub fn concurrency(mut self, tasks: usize) -> Self {
        self.concurrency = tasks.max(1);
        self
    }

    /// How long after a write or delete returned a read may still see the state before it
    /// (zero by default). A store with a local copy kept true by messages (Redis's) needs the
    /// time a message takes to arrive; the report says how much was used.
    pub fn staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// How long one call may take before it is abandoned (and counts as indeterminate).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The idle timeout of the sessions made to expire; they must be gone within it plus one
    /// second (stores may keep time to the second) of their last read.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// The seed of the random calls (from the clock unless set); a violation names it.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The faults the test injects meanwhile (see [`Faults`]).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Runs the calls through `instances` and checks what they saw; returns the first broken
    /// promise, naming the calls involved and the seed.
    pub async fn run<St: SessionStore>(&self, instances: Vec<St>) -> Result<Report, Violation> {
        let instances = instances.into_iter().map(Arc::new).collect();
        self.run_with(instances, None).await
    }

    /// As [`run`](Self::run), with every session belonging to one of two owners, and now and
    /// then a "log out everywhere" of one ([`OwnerIndex::revoke_all`]), or "all but this
    /// session", through some instance, racing the other calls: once a revoke has returned,
    /// no instance serves a session of that owner created before it began but the one it kept
    /// (within the [`staleness`](Self::staleness)), and a session created while it ran may be
    /// gone or not.
    pub async fn run_with_revokes<St: OwnerIndex>(
        &self,
        instances: Vec<St>,
    ) -> Result<Report, Violation> {
        let instances: Vec<Arc<St>> = instances.into_iter().map(Arc::new).collect();
        let revokers = instances.clone();
        let revoke: Revoke = Arc::new(move |instance: usize, owner: String, except| {
            let store = revokers.get(instance).cloned();
            Box::pin(async move {
                let Some(store) = store else { return false };
                store.revoke_all(&owner, except.as_ref()).await.is_ok()
            })
        });
        self.run_with(instances, Some(revoke)).await
    }

    async fn run_with<St: SessionStore>(
        &self,
        instances: Vec<Arc<St>>,
        revoke: Option<Revoke>,
    ) -> Result<Report, Violation> {
        let seed = self.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        self.run_seeded(instances, seed, revoke)
            .await
            .map_err(|violation| Violation {
                detail: format!("{} (seed {seed})", violation.detail),
                ..violation
            })
    }

    async fn run_seeded<St: SessionStore>(
        &self,
        instances: Vec<Arc<St>>,
        seed: u64,
        revoke: Option<Revoke>,
    ) -> Result<Report, Violation> {
        let Some(first) = instances.first() else {
            return Ok(Report::default());
        };
        let run = Arc::new(Run {
            origin: Instant::now(),
            settings: self.clone(),
            state: Mutex::new(State::default()),
            revoke,
        });
        let mut rng = Rng(seed);
        for n in 0..self.sessions + EXPIRING {
            let idle = if n < self.sessions { LONG } else { self.expiry };
            // A fault may already be under way: a few tries, a tenth of a second apart.
            let mut session = None;
            for _ in 0..SETUP_ATTEMPTS {
                session = run.create(first.as_ref(), 0, idle, &mut rng).await;
                if session.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let Some(session) = session else {
                return Err(Violation {
                    promise: HEALTHY,
                    detail: format!(
                        "the first sessions could not be created in {SETUP_ATTEMPTS} tries"
                    ),
                });
            };
            let mut state = run.state();
            if n < self.sessions {
                state.slots.push(session);
            } else {
                state.expiring.push(session);
            }
        }
        let deadline = run.origin + self.duration;
        let mut tasks = JoinSet::new();
        for (i, instance) in instances.iter().enumerate() {
            for c in 0..self.concurrency {
                let (run, instance) = (Arc::clone(&run), Arc::clone(instance));
                let rng = Rng(seed ^ ((i as u64) << 32 | c as u64).wrapping_mul(0x9E37_79B9));
                tasks.spawn(async move { run.work(instance.as_ref(), i, rng, deadline).await });
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(violation)) = done {
                return Err(violation);
            }
        }

        // Every call has returned; once the tolerance has passed, every instance must show
        // the final state.
        tokio::time::sleep(self.staleness * 2 + Duration::from_millis(50)).await;
        let sessions = run.state().ids.len();
        let stripes = self.concurrency;
        for (i, instance) in instances.iter().enumerate() {
            for stripe in 0..stripes {
                let (run, instance) = (Arc::clone(&run), Arc::clone(instance));
                tasks.spawn(async move {
                    for session in (stripe..sessions).step_by(stripes) {
                        if !run.state().expiring.contains(&session) {
                            run.read(instance.as_ref(), i, session, FINAL).await?;
                        }
                    }
                    Ok(())
                });
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(violation)) = done {
                return Err(violation);
            }
        }
        self.check_expired(&run, &instances).await?;

        let revokes = run.revokes();
        let (revoked, possible) = (revokes.len(), revokes.iter().filter(|op| op.end.is_none()));
        let possible = possible.count();
        let state = run.state();
        let mut ops = state.ops.clone();
        ops.extend(revokes);
        for &(start, end) in lock(&self.faults.wipes).iter() {
            ops.push(Op {
                instance: usize::MAX,
                session: usize::MAX,
                start,
                end,
                kind: Kind::Wipe,
            });
        }
        let mut report = History {
            origin: run.origin,
            ops,
            keys: KEYS.map(str::to_owned).to_vec(),
            expiring: state.expiring.clone(),
        }
        .check(self.staleness)?;
        // A revoke is one call, though the history holds a delete per session it may have
        // ended; the possible ones are no failures.
        report.operations = report.operations - revoked + state.revokes.len();
        report.indeterminate = report.indeterminate.saturating_sub(possible);
        let failed_revokes = state
            .revokes
            .iter()
            .filter(|(_, op)| op.end.is_none())
            .count();
        report.indeterminate += failed_revokes;
        report.cut = state.cut;
        report.failed = report.indeterminate.saturating_sub(state.cut);
        // A store that answers nothing breaks no promise about its answers.
        if report.reads_checked == 0 || report.failed * 2 > report.operations {
            return Err(Violation {
                promise: HEALTHY,
                detail: format!("most calls failed, so little was checked: {report}"),
            });
        }
        Ok(report)
    }

    /// The expiring sessions, last read half-way through, are gone on every instance.
    async fn check_expired<St: SessionStore>(
        &self,
        run: &Run,
        instances: &[Arc<St>],
    ) -> Result<(), Violation> {
        let quiet = run.origin + self.duration / 2;
        let gone_by = quiet + self.expiry + Duration::from_secs(1) + self.staleness;
        tokio::time::sleep_until(gone_by.into()).await;
        let expiring = run.state().expiring.clone();
        for session in expiring {
            let id = run.state().ids[session].clone();
            for (i, instance) in instances.iter().enumerate() {
                let now = instance.read_now(&id).and_then(Result::ok).flatten();
                let read = instance.read(&id).await.ok().flatten();
                if now.is_some() || read.is_some() {
                    return Err(Violation {
                        promise: EXPIRED,
                        detail: format!(
                            "instance {i} still served session s{session} ({:?} idle timeout) \
                             {:?} after its last read",
                            self.expiry,
                            gone_by.duration_since(quiet)
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `revoke_all` of an owner (but one session, maybe) through an instance: whether it
/// succeeded.
type Revoke = Arc<dyn Fn(usize, String, Option<SessionId>) -> BoxFuture<bool> + Send + Sync>;

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// One run: its settings and what it has seen.
struct Run {
    origin: Instant,
    settings: Consistency,
    state: Mutex<State>,
    /// When the run revokes: how.
    revoke: Option<Revoke>,
}

#[derive(Default)]
struct State {
    ops: Vec<Op>,
    /// Every session created, by index.
    ids: Vec<SessionId>,
    /// The sessions users are on now (regenerating or logging in again replaces one).
    slots: Vec<Session>,
    expiring: Vec<Session>,
    last_value: u64,
    /// Calls the checker cut short on purpose.
    cut: usize,
    /// When the run revokes, each session's owner and when its create began and ended.
    created: Vec<(usize, Instant, Instant)>,
    /// The revokes made, each as an op whose `session` is the owner, with the session it
    /// kept, if it kept one.
    revokes: Vec<(Option<Session>, Op)>,
}

impl Run {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn record(&self, instance: usize, session: Session, start: Instant, ok: bool, kind: Kind) {
        let end = ok.then(Instant::now);
        self.state().ops.push(Op {
            instance,
            session,
            start,
            end,
            kind,
        });
    }

    fn value(&self) -> u64 {
        let mut state = self.state();
        state.last_value += 1;
        state.last_value
    }

    /// Runs `call` within the call timeout, sometimes cut short as a client that goes away
    /// mid-request; `None` if it did not finish.
    async fn call<T>(&self, rng: &mut Rng, call: impl Future<Output = T>) -> Option<T> {
        let cut = rng.below(50) == 0;
        let limit = if cut {
            Duration::from_micros(rng.below(3000))
        } else {
            self.settings.call_timeout
        };
        let answer = tokio::time::timeout(limit, call).await.ok();
        if cut && answer.is_none() {
            self.state().cut += 1;
        }
        answer
    }

    async fn work<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        mut rng: Rng,
        deadline: Instant,
    ) -> Result<(), Violation> {
        let half = self.origin + self.settings.duration / 2;
        while Instant::now() < deadline {
            let (slot, session) = {
                let state = self.state();
                let slot = rng.below(state.slots.len() as u64) as usize;
                let session = match rng.below(100) {
                    // Now and then an old id: deleted, regenerated away, or still alive.
                    0..2 => rng.below(state.ids.len() as u64) as usize,
                    2..6 if Instant::now() < half => {
                        state.expiring[rng.below(EXPIRING as u64) as usize]
                    }
                    _ => state.slots[slot],
                };
                // The expiring sessions are left alone after half-time, so they can expire.
                let session = if state.expiring.contains(&session) && Instant::now() >= half {
                    state.slots[slot]
                } else {
                    session
                };
                (slot, session)
            };
            if self.state().expiring.contains(&session) {
                let call = if rng.below(2) == 0 {
                    "read"
                } else {
                    "read_now"
                };
                self.read(store, instance, session, call).await?;
                continue;
            }
            match rng.below(100) {
                0..30 => self.read(store, instance, session, "read").await?,
                30..40 => self.read(store, instance, session, "read_now").await?,
                40..50 => self.read(store, instance, session, "load").await?,
                50..88 => self.update(store, instance, session, &mut rng).await,
                88..92 => {
                    self.regenerate(store, instance, slot, session, &mut rng)
                        .await?
                }
                92..94 if self.revoke.is_some() => {
                    let keep = rng.below(2) == 0;
                    self.revoke(instance, session, keep).await;
                }
                _ => {
                    // Log out, then in again.
                    self.delete(store, instance, session, &mut rng).await;
                    if let Some(new) = self.create(store, instance, LONG, &mut rng).await {
                        self.state().slots[slot] = new;
                    }
                }
            }
        }
        Ok(())
    }

    /// A read of `session` through `call` (`read`, `read_now`, `load`, or [`FINAL`], a
    /// `read_now` when it answers and then a `read`).
    async fn read<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        session: Session,
        call: &'static str,
    ) -> Result<(), Violation> {
        let id = self.state().ids[session].clone();
        if matches!(call, "read_now" | FINAL) {
            let start = Instant::now();
            if let Some(answer) = store.read_now(&id) {
                self.seen(instance, session, start, call, answer.ok())?;
            }
            if call == "read_now" {
                return Ok(());
            }
        }
        let start = Instant::now();
        let limit = self.settings.call_timeout;
        let answer = match call {
            "load" => tokio::time::timeout(limit, store.load(&id)).await,
            _ => tokio::time::timeout(limit, store.read(&id)).await,
        };
        self.seen(
            instance,
            session,
            start,
            call,
            answer.ok().and_then(Result::ok),
        )
    }

    /// Records what a read returned (`None`: it failed).
    fn seen(
        &self,
        instance: usize,
        session: Session,
        start: Instant,
        call: &'static str,
        answer: Option<Option<Record>>,
    ) -> Result<(), Violation> {
        let Some(record) = answer else {
            self.record(
                instance,
                session,
                start,
                false,
                Kind::Read { call, seen: None },
            );
            return Ok(());
        };
        // The store weighed expiry at some moment after the call began: dead at the start is
        // the most the checker can hold against it.
        let began = SystemTime::now()
            .checked_sub(start.elapsed())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(record) = &record {
            if record.is_expired(began) {
                return Err(Violation {
                    promise: EXPIRED,
                    detail: format!(
                        "{call} on instance {instance} returned session s{session}, dead by \
                         its own expiry"
                    ),
                });
            }
        }
        let seen = record.map(|record| {
            record
                .entries
                .iter()
                .map(|(key, entry)| (key.clone(), entry.json.parse().unwrap_or(u64::MAX)))
                .collect()
        });
        self.record(instance, session, start, true, Kind::Read { call, seen });
        Ok(())
    }

    /// Creates a session with a value under some keys; its index, if the store said.
    async fn create<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        idle: Duration,
        rng: &mut Rng,
    ) -> Option<Session> {
        let mut values = BTreeMap::new();
        for key in KEYS {
            if rng.below(2) == 0 {
                values.insert(key.to_owned(), self.value());
            }
        }
        self.create_with(store, instance, idle, values).await
    }

    async fn create_with<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        idle: Duration,
        values: BTreeMap<String, u64>,
    ) -> Option<Session> {
        let mut record = Record::new(SystemTime::now(), idle, None);
        for (key, value) in &values {
            record.entries.insert(key.clone(), entry(*value));
        }
        let owner = self.state().ids.len() % OWNERS;
        if self.revoke.is_some() {
            record.owner = Some(Owner {
                name: owner_name(owner),
                since: SystemTime::now(),
                user_agent: None,
                address: None,
            });
        }
        let start = Instant::now();
        // A create whose id never came back is invisible to every later call: not recorded,
        // and not cut short either (that would test nothing).
        let limit = self.settings.call_timeout;
        let id = tokio::time::timeout(limit, store.create(&record))
            .await
            .ok()?
            .ok()?;
        let end = Instant::now();
        let mut state = self.state();
        state.ids.push(id);
        let session = state.ids.len() - 1;
        state.created.push((owner, start, end));
        state.ops.push(Op {
            instance,
            session,
            start,
            end: Some(end),
            kind: Kind::Create { values },
        });
        Some(session)
    }

    async fn update<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        session: Session,
        rng: &mut Rng,
    ) {
        let id = self.state().ids[session].clone();
        let mut changes = BTreeMap::new();
        for _ in 0..=rng.below(2) {
            let key = KEYS[rng.below(KEYS.len() as u64) as usize];
            let value: Value = (rng.below(4) != 0).then(|| self.value());
            changes.insert(key.to_owned(), value);
        }
        let request = Changes {
            entries: changes
                .iter()
                .map(|(key, value)| (key.clone(), value.map(entry)))
                .collect(),
            idle_timeout: None,
            deadline: None,
            touch: rng.below(5) == 0,
        };
        let start = Instant::now();
        let answer = self.call(rng, store.update(&id, &request)).await;
        let applied = match answer {
            Some(Ok(Update::Missing)) => Some(false),
            Some(Ok(_)) => Some(true),
            _ => None,
        };
        let kind = Kind::Update { changes, applied };
        self.record(instance, session, start, applied.is_some(), kind);
    }

    async fn delete<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        session: Session,
        rng: &mut Rng,
    ) {
        let id = self.state().ids[session].clone();
        let start = Instant::now();
        let ok = matches!(self.call(rng, store.delete(&id)).await, Some(Ok(())));
        self.record(instance, session, start, ok, Kind::Delete);
    }

    /// "Log out everywhere" for the owner of `session`: to the history, a delete of each of
    /// the owner's sessions, certain for those created before it began, possible for those
    /// created while it ran.
    /// (`keep`: "all but this one", the revoke keeping `session`.)
    async fn revoke(&self, instance: usize, session: Session, keep: bool) {
        let Some(revoke) = &self.revoke else { return };
        let (owner, except) = {
            let state = self.state();
            let Some(&(owner, _, _)) = state.created.get(session) else {
                return;
            };
            (owner, keep.then(|| state.ids[session].clone()))
        };
        let start = Instant::now();
        let limit = self.settings.call_timeout;
        let ok = tokio::time::timeout(limit, revoke(instance, owner_name(owner), except))
            .await
            .unwrap_or(false);
        let end = ok.then(Instant::now);
        self.state().revokes.push((
            keep.then_some(session),
            Op {
                instance,
                session: owner,
                start,
                end,
                kind: Kind::Delete,
            },
        ));
    }

    /// The revokes as the history sees them, once every call has returned (a create that
    /// began before a revoke ended may have been recorded after it): a delete of each session
    /// of the owner, certain for those created before the revoke began, possible for those
    /// whose create overlapped it.
    fn revokes(&self) -> Vec<Op> {
        let state = self.state();
        let mut deletes = Vec::new();
        for (kept, revoke) in &state.revokes {
            let owner = revoke.session;
            let ended = revoke.end.unwrap_or_else(Instant::now);
            for (session, &(of, began, created)) in state.created.iter().enumerate() {
                if of == owner && began < ended && *kept != Some(session) {
                    deletes.push(Op {
                        session,
                        end: revoke.end.filter(|_| created < revoke.start),
                        ..revoke.clone()
                    });
                }
            }
        }
        deletes
    }

    /// What a login does: read the session, copy it to a new id, delete the old one.
    async fn regenerate<St: SessionStore>(
        &self,
        store: &St,
        instance: usize,
        slot: usize,
        session: Session,
        rng: &mut Rng,
    ) -> Result<(), Violation> {
        let id = self.state().ids[session].clone();
        let start = Instant::now();
        let answer = self.call(rng, store.read(&id)).await.and_then(Result::ok);
        let record = answer.clone().flatten();
        self.seen(instance, session, start, "read", answer)?;
        let Some(record) = record else {
            return Ok(());
        };
        let values = record
            .entries
            .iter()
            .map(|(key, entry)| (key.clone(), entry.json.parse().unwrap_or(u64::MAX)))
            .collect();
        if let Some(new) = self.create_with(store, instance, LONG, values).await {
            self.state().slots[slot] = new;
            self.delete(store, instance, session, rng).await;
        }
        Ok(())
    }
}

/// The name of owner `n`.
fn owner_name(n: usize) -> String {
    format!("consistency owner {n}")
}

fn entry(value: u64) -> Entry {
    Entry {
        json: value.to_string(),
        flash: false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// splitmix64: small, seedable, good enough to pick calls.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}
