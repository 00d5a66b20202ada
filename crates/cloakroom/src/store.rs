//! The store contract: what the layer asks of a place that keeps sessions.
//!
//! Every adapter in this workspace implements [`SessionStore`], and so can any application for its
//! own database. The contract is id-based and change-based, so stores can be fast (one round
//! trip per request) and safe under concurrency (no lost updates).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::SessionId;

/// One value in a session: its JSON text and whether it is a flash value (removed by the
/// first read).
///
/// Values are kept as JSON text so that stores pass them through without re-encoding, and a
/// handler only pays for (de)serialising the keys it touches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value, as JSON text written by `serde_json`.
    pub json: String,
    /// Whether the value is a flash: read once, then gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flash: bool,
}

/// Everything a store keeps for one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The session's values by key.
    pub entries: HashMap<String, Entry>,
    /// When the session was first saved.
    pub created: SystemTime,
    /// When the session expires unless a request refreshes it.
    pub expires: SystemTime,
    /// How long the session lives without requests; every request moves `expires` to
    /// `now + idle_timeout` (but never past `deadline`).
    pub idle_timeout: Duration,
    /// The absolute end of the session, however active it is, if the layer sets one.
    pub deadline: Option<SystemTime>,
    /// Whose session it is, once a handler said so ([`Session::set_owner`]). Set when the
    /// record is created and never changed under the same id: a new owner means a new id.
    ///
    /// [`Session::set_owner`]: crate::Session::set_owner
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// Whose session a record is, and what the layer noted when it was given its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owner's name, as the application gave it (`"user:42"`): 1 to [`MAX_OWNER_LEN`]
    /// bytes.
    pub name: String,
    /// When the session was given this owner: the login.
    pub since: SystemTime,
    /// The client's `User-Agent` at login, if the layer keeps it
    /// ([`SessionLayer::keep_user_agent`](crate::SessionLayer::keep_user_agent)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's address at login, if the layer keeps it
    /// ([`SessionLayer::keep_address`](crate::SessionLayer::keep_address)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The longest owner name, in bytes: names are keys of a store's index, not documents.
pub const MAX_OWNER_LEN: usize = 256;

impl Record {
    /// A new, empty record created at `now`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use cloakroom::store::Record;
    ///
    /// let now = SystemTime::now();
    /// let record = Record::new(now, Duration::from_secs(60), Some(Duration::from_secs(30)));
    /// assert_eq!(record.expires, now + Duration::from_secs(30)); // the deadline comes first
    /// ```
    /// Durations are taken at most [`FOREVER`].
    pub fn new(now: SystemTime, idle_timeout: Duration, lifetime: Option<Duration>) -> Self {
        let idle_timeout = idle_timeout.min(FOREVER);
        let deadline = lifetime.map(|lifetime| later(now, lifetime));
        Self {
            entries: HashMap::new(),
            created: now,
            expires: expiry(now, idle_timeout, deadline),
            idle_timeout,
            deadline,
            owner: None,
        }
    }

    /// Whether the record is dead at `now`: past its idle expiry or its absolute deadline.
    /// Stores never return a dead record.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires <= now || self.deadline.is_some_and(|deadline| deadline <= now)
    }

    /// Refreshes the idle expiry as a load does: `expires = min(now + idle_timeout, deadline)`.
    /// Returns `false`, changing nothing, if the record is already dead.
    pub fn touch(&mut self, now: SystemTime) -> bool {
        if self.is_expired(now) {
            return false;
        }
        self.expires = expiry(now, self.idle_timeout, self.deadline);
        true
    }

    /// Applies one request's changes at `now`: sets and removes the changed keys (all other
    /// keys stay as they are), takes a new idle timeout and an earlier deadline if there are
    /// any, and refreshes the expiry (whatever [`Changes::touch`] says: refreshing is always allowed). Stores that hold whole records use this inside their lock or CAS loop.
    pub fn apply(&mut self, changes: &Changes, now: SystemTime) {
        for (key, entry) in &changes.entries {
            match entry {
                Some(entry) => self.entries.insert(key.clone(), entry.clone()),
                None => self.entries.remove(key),
            };
        }
        self.apply_times(changes, now);
    }

    /// What [`apply`](Self::apply) does to everything but the entries: for a store that
    /// changes its own copy of the entries in place.
    pub(crate) fn apply_times(&mut self, changes: &Changes, now: SystemTime) {
        if let Some(idle_timeout) = changes.idle_timeout {
            self.idle_timeout = idle_timeout.min(FOREVER);
        }
        if let Some(deadline) = changes.deadline {
            self.deadline = Some(earlier(self.deadline, deadline));
        }
        self.expires = expiry(now, self.idle_timeout, self.deadline);
    }
}

/// The earlier of a record's deadline (if it has one) and `deadline`.
pub(crate) fn earlier(current: Option<SystemTime>, deadline: SystemTime) -> SystemTime {
    current.map_or(deadline, |current| current.min(deadline))
}

/// `min(now + idle_timeout, deadline)`.
pub(crate) fn expiry(
    now: SystemTime,
    idle_timeout: Duration,
    deadline: Option<SystemTime>,
) -> SystemTime {
    let idle = later(now, idle_timeout);
    deadline.map_or(idle, |deadline| idle.min(deadline))
}

/// The longest duration a session counts with: 10,000 years is "forever" to a session, and
/// `SystemTime` holds `now` plus it on every platform, so a handler asking for
/// `Duration::MAX` gets a session that lasts, not a panic. The layer, [`Session`] and
/// [`Record`] clamp every duration they take to it; a store doing its own arithmetic with a
/// record's durations uses [`later`] (or saturating arithmetic) all the same, since records
/// can be made elsewhere.
///
/// [`Session`]: crate::Session
pub const FOREVER: Duration = Duration::from_secs(10_000 * 365 * 86_400);

/// `time + duration`, with `duration` at most [`FOREVER`]: never a panic.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cloakroom::store::{FOREVER, later};
///
/// let now = SystemTime::now();
/// assert_eq!(later(now, Duration::MAX), later(now, FOREVER));
/// ```
pub fn later(time: SystemTime, duration: Duration) -> SystemTime {
    let duration = duration.min(FOREVER);
    time.checked_add(duration).unwrap_or(time)
}

/// What one request changed in an existing session.
///
/// Only the keys the request set or removed are here, so two concurrent requests that change
/// different keys both survive when a store applies each to what it currently holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed keys in no particular order: `Some` sets the entry, `None` removes the key.
    pub entries: Vec<(String, Option<Entry>)>,
    /// A new idle timeout for this session ("remember me"), if the handler chose one.
    pub idle_timeout: Option<Duration>,
    /// A new absolute deadline for this session, if the handler set one: the record's
    /// deadline becomes the earlier of the two (a deadline only ever comes closer).
    pub deadline: Option<SystemTime>,
    /// Whether the expiry must be refreshed too, as [`SessionStore::load`] does. When `false`
    /// the store may leave the expiry where it is (or refresh it anyway: [`Record::apply`]
    /// does): this request's load already did, or the refresh is not due yet.
    pub touch: bool,
}

/// What [`SessionStore::update`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// The changes were applied to the existing record.
    Applied,
    /// The changes were applied and the session now goes by this id, which the cookie must
    /// carry from now on: the answer of a store whose ids are [`Ids::Sealed`].
    Reissued(SessionId),
    /// There was no live record (destroyed, expired or never saved); nothing was written.
    Missing,
}

/// How a failed store call should be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The store cannot be reached or failed: try again later (503 by default).
    Unavailable,
    /// The store refused what the app asked (a session too large to keep, say): an error in
    /// the app, not a passing outage (500 by default).
    Rejected,
}

/// The error of a store: what went wrong, and whether retrying can help.
///
/// ```
/// use cloakroom::store::{FailureKind, StoreError};
///
/// #[derive(Debug, thiserror::Error)]
/// enum MyStoreError {
///     #[error("the database did not answer")]
///     Unreachable,
///     #[error("a session of {0} bytes is over the row limit")]
///     TooLarge(usize),
/// }
///
/// impl StoreError for MyStoreError {
///     fn failure_kind(&self) -> FailureKind {
///         match self {
///             Self::Unreachable => FailureKind::Unavailable,
///             Self::TooLarge(_) => FailureKind::Rejected,
///         }
///     }
/// }
/// ```
pub trait StoreError: StdError + Send + Sync + 'static {
    /// How the layer answers this error: [`FailureKind::Unavailable`] (a 503, retry later)
    /// unless the error is one no retry fixes.
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Unavailable
    }
}

impl StoreError for std::convert::Infallible {}

impl StoreError for std::io::Error {}

/// How a store names its sessions: [`SessionStore::IDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ids {
    /// Random ids of [`SessionId::generate`]'s making name records the store keeps. Only a
    /// value of exactly that shape ever reaches the store, so an id is safe as a key or a
    /// file name. Every server-side store.
    Generated,
    /// The session itself travels sealed in the id, and the store keeps nothing. `create`
    /// and `update` seal the record into a new id (made with [`SessionId::opaque`]; `update`
    /// answers [`Update::Reissued`]), and since a load cannot move an expiry kept in the
    /// cookie, the layer calls `update` after every request that loaded a session and re-sends
    /// the cookie. Any base64url value of up to [`MAX_SEALED_LEN`] bytes reaches the store,
    /// which must treat it as untrusted input. Such a store cannot keep the promises that need
    /// server state: a `delete` that revokes, concurrent writers that merge.
    Sealed,
}

/// The longest sealed id the layer passes to a store: browsers keep no longer cookie.
pub const MAX_SEALED_LEN: usize = 4096;

impl Ids {
    /// The id a verified cookie value stands for under this scheme, or `None` if it is not
    /// one.
    ///
    /// ```
    /// use cloakroom::SessionId;
    /// use cloakroom::store::Ids;
    ///
    /// let id = SessionId::generate();
    /// assert_eq!(Ids::Generated.parse(id.as_str()), Some(id));
    /// assert_eq!(Ids::Generated.parse("../../etc/passwd"), None);
    /// assert!(Ids::Sealed.parse("c2VhbGVk").is_some());
    /// ```
    pub fn parse(self, value: &str) -> Option<SessionId> {
        match self {
            Self::Generated => SessionId::parse(value),
            Self::Sealed => {
                let plausible = !value.is_empty()
                    && value.len() <= MAX_SEALED_LEN
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                plausible.then(|| SessionId::opaque(value))
            }
        }
    }
}

/// A place that keeps sessions: memory, files, Redis, memcached, or your own database.
///
/// Before the handler, the layer asks [`read_now`](Self::read_now) and, if the store cannot
/// answer at once, calls one of `load` or `read`; after it, at most one of `create`, `update`
/// or `delete` (or `create` then `delete` when the id is regenerated). Implementations must
/// keep these promises, which the conformance suite in `cloakroom-testkit` checks:
///
/// - **Load refreshes in the same round trip.** [`load`](Self::load) returns the live record
///   and, in the same call, moves its expiry to `min(now + idle_timeout, deadline)` (see
///   [`Record::touch`]). A dead record (see [`Record::is_expired`]) is never returned, whatever
///   the backend still holds.
/// - **Read is a load that need not refresh.** The layer refreshes a session's expiry at most
///   once per refresh interval (when its cookie is older than that); in between it calls
///   [`read`](Self::read), which returns the live record like `load` and may skip the
///   refresh. The default calls `load`, which is always correct; a store where the refresh
///   costs something (a write, a second command) skips it. When `read_now` answers for a
///   session that is due, the layer refreshes it through `update` with [`Changes::touch`]
///   after the handler instead.
/// - **At once means as read.** [`read_now`](Self::read_now), when it answers, answers as
///   `read` would, and never blocks.
/// - **Writes are changes.** [`update`](Self::update) sets and removes only the keys in
///   [`Changes`], leaving every other key as the store currently holds it, so concurrent
///   requests that change different keys all survive. A store that can only write whole
///   records must re-read and re-apply (a lock, CAS or transaction), never overwrite.
/// - **No resurrection.** `update` on an id with no live record writes nothing and returns
///   [`Update::Missing`]: a late write never brings back a destroyed session.
/// - **Creation cannot collide.** [`create`](Self::create) generates the id (normally with
///   [`SessionId::generate`]) and inserts only if the id is free (SET NX, memcached `add`,
///   `O_EXCL`), trying a fresh id otherwise. An existing session is never overwritten.
/// - **Ids are of one scheme.** [`IDS`](Self::IDS) says how the store names sessions:
///   [`Ids::Generated`] (the default: only generated ids reach the store) or [`Ids::Sealed`]
///   (the session travels in the id).
///
/// Failures are returned as `Self::Error`, a [`StoreError`] that says whether retrying can
/// help; the layer turns them into an error response and a `tracing` event and never treats
/// them as "no session".
///
/// # Example
///
/// A complete store over a `HashMap` behind a mutex:
///
/// ```
/// use std::collections::HashMap;
/// use std::convert::Infallible;
/// use std::sync::Mutex;
/// use std::time::SystemTime;
///
/// use cloakroom::SessionId;
/// use cloakroom::store::{Changes, Record, SessionStore, Update};
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<SessionId, Record>>);
///
/// impl SessionStore for MapStore {
///     type Error = Infallible;
///
///     async fn load(&self, id: &SessionId) -> Result<Option<Record>, Infallible> {
///         let mut map = self.0.lock().unwrap();
///         let now = SystemTime::now();
///         let Some(record) = map.get_mut(id) else { return Ok(None) };
///         if record.touch(now) {
///             return Ok(Some(record.clone()));
///         }
///         map.remove(id); // dead: never returned, and gone for good
///         Ok(None)
///     }
///
///     async fn create(&self, record: &Record) -> Result<SessionId, Infallible> {
///         let mut map = self.0.lock().unwrap();
///         loop {
///             let id = SessionId::generate();
///             if !map.contains_key(&id) {
///                 map.insert(id.clone(), record.clone());
///                 return Ok(id);
///             }
///         }
///     }
///
///     async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Infallible> {
///         let mut map = self.0.lock().unwrap();
///         let now = SystemTime::now();
///         match map.get_mut(id) {
///             Some(record) if !record.is_expired(now) => {
///                 record.apply(changes, now);
///                 Ok(Update::Applied)
///             }
///             _ => Ok(Update::Missing),
///         }
///     }
///
///     async fn delete(&self, id: &SessionId) -> Result<(), Infallible> {
///         self.0.lock().unwrap().remove(id);
///         Ok(())
///     }
/// }
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// The error a failed store call returns.
    type Error: StoreError;

    /// How this store names its sessions: [`Ids::Generated`] unless it keeps the session in
    /// the id itself.
    const IDS: Ids = Ids::Generated;

    /// Loads the live record for `id` and refreshes its idle expiry in the same round trip.
    /// `Ok(None)` if there is none or it is dead.
    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Record>, Self::Error>> + Send;

    /// Like [`load`](Self::load), but without the need to refresh the expiry: the layer calls
    /// this while the session's cookie is younger than the refresh interval. The record's
    /// `expires` is the expiry as the store holds it. The default calls `load`.
    fn read(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Record>, Self::Error>> + Send {
        self.load(id)
    }

    /// The answer [`read`](Self::read) would give, if the store has it at hand without
    /// waiting (the promise *at once means as read*); `None` to have the layer await `read`
    /// instead (the default). A store that keeps sessions in process, or a copy of them,
    /// answers here: the layer then runs the handler straight from `call`, without boxing a
    /// store future or cloning the inner service.
    ///
    /// ```
    /// use cloakroom::{MemoryStore, SessionId, SessionStore};
    ///
    /// let store = MemoryStore::new();
    /// let unknown = SessionId::generate();
    /// assert!(matches!(store.read_now(&unknown), Some(Ok(None))));
    /// ```
    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, Self::Error>> {
        let _ = id;
        None
    }

    /// Saves a new session under a fresh id that no other session has, and returns that id.
    /// A record already dead (a zero idle timeout, a deadline in the past) may be stored or
    /// not: either way the id loads nothing, and creating it is no error.
    fn create(
        &self,
        record: &Record,
    ) -> impl Future<Output = Result<SessionId, Self::Error>> + Send;

    /// Applies one request's changes to the live record for `id`; writes nothing and returns
    /// [`Update::Missing`] if there is none.
    fn update(
        &self,
        id: &SessionId,
        changes: &Changes,
    ) -> impl Future<Output = Result<Update, Self::Error>> + Send;

    /// Removes the session. Deleting an id that does not exist is not an error.
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The optional capability of a store that knows the sessions of each owner: what
/// [`Owners`](crate::Owners) (listing a user's devices, "log out everywhere") is built on.
///
/// A store that implements it keeps these promises on top of [`SessionStore`]'s, which the
/// `owners` section of the conformance suite in `cloakroom-testkit` checks:
///
/// - **Owned records are indexed by the time `create` returns.** [`create`] of a record with
///   an [`owner`](Record::owner) stores the record first and then adds its id to the owner's
///   index, and returns only once both are done: the layer sends the new cookie only after
///   that, so a session anyone holds is always in the index. (A record whose index entry was
///   never written, because the second step failed, is one nobody has the id of.) An owner
///   never changes under an id, so `update` never touches the index.
/// - **A list is exact.** [`owned`](Self::owned) returns every live record of the owner, and
///   nothing that is gone: an index entry whose record was deleted or expired is skipped
///   (and may be removed then; ids are never reused, so a missing record is gone for good).
///   A store that cannot list exactly (memcached evicts what it likes) returns an error that
///   says so, a [`FailureKind::Rejected`].
/// - **A revoke is final.** [`revoke_all`](Self::revoke_all) ends every session of the owner
///   but `except`, as [`delete`] would (on every instance, local copies included), and says
///   which it ended ([`Revoked`]). A session created while it runs is either ended or still
///   listed afterwards. The default lists and deletes; a store that cannot list ends them all
///   another way (memcached: a new generation for the owner, which every session of an older
///   one fails, fail-closed).
/// - **The index does not grow without bound.** Entries of sessions that ended leave it
///   without anyone listing (with the record, at a sweep, or when the owner logs in again).
///
/// [`create`]: SessionStore::create
/// [`delete`]: SessionStore::delete
pub trait OwnerIndex: SessionStore {
    /// Every live session of `owner`, with its record, in no particular order.
    fn owned(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<(SessionId, Record)>, Self::Error>> + Send;

    /// Ends every session of `owner` except `except`. The default ends each listed session
    /// with [`delete`](SessionStore::delete).
    fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> impl Future<Output = Result<Revoked, Self::Error>> + Send {
        async move {
            let mut revoked = Vec::new();
            for (id, _) in self.owned(owner).await? {
                if Some(&id) != except {
                    self.delete(&id).await?;
                    revoked.push(id);
                }
            }
            Ok(Revoked::Sessions(revoked))
        }
    }
}

/// What [`OwnerIndex::revoke_all`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// These sessions: every one of the owner's but the one excepted.
    Sessions(Vec<SessionId>),
    /// Every session of the owner but the one excepted, which the store cannot name one by
    /// one (memcached ends them by giving the owner a new generation).
    Unnamed,
}

impl Revoked {
    /// How many sessions were ended, if the store could say.
    pub fn count(&self) -> Option<usize> {
        match self {
            Self::Sessions(ids) => Some(ids.len()),
            Self::Unnamed => None,
        }
    }
}
