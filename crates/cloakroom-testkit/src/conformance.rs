//! The store conformance suite: every promise of the `SessionStore` contract, checked against a
//! real store.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cloakroom::SessionId;
use cloakroom::store::{
    Changes, Entry, Ids, Owner, OwnerIndex, Record, Revoked, SessionStore, Update,
};
use tokio::task::JoinSet;

/// A promise of the store contract that the store broke, and how.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("store broke the promise \"{promise}\": {detail}")]
pub struct Violation {
    /// The promise, as the `SessionStore` documentation states it.
    pub promise: &'static str,
    /// What happened instead.
    pub detail: String,
}

/// Runs the whole conformance suite against `store` with the default settings (see
/// [`Conformance`]). Returns the first broken promise.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
/// use std::time::Duration;
/// use cloakroom::MemoryStore;
/// use cloakroom_testkit::Conformance;
///
/// // An in-process store can use short ticks; the default (1 s) suits any store.
/// Conformance::new()
///     .tick(Duration::from_millis(50))
///     .sessions(1_000)
///     .run(MemoryStore::new())
///     .await?;
/// # Ok(()) }
/// ```
pub async fn conformance<St: SessionStore>(store: St) -> Result<(), Violation> {
    Conformance::new().run(store).await
}

/// The conformance suite with its settings.
///
/// A store whose ids are [`Ids::Sealed`] (the session travels in the id) has its expiry
/// refreshed through `update`, ids returned as [`Update::Reissued`] followed, and the promises
/// that need server state (a delete that revokes, concurrent writers that merge) left out.
///
/// Expiry checks sleep in multiples of `tick` (default 1 second, which suits stores that keep
/// time in whole seconds, like memcached); an in-process store can use a few milliseconds.
#[derive(Clone, Debug)]
pub struct Conformance {
    tick: Duration,
    sessions: usize,
    large_value: usize,
}

impl Default for Conformance {
    fn default() -> Self {
        Self::new()
    }
}

const ROUND_TRIP: &str = "create then load returns the record that was created";
const OWN_IDS: &str = "create returns an id of the store's scheme (SessionStore::IDS)";
const UNKNOWN: &str = "an unknown id loads nothing";
const NO_RESURRECTION: &str =
    "update of a missing record writes nothing and returns Update::Missing";
const TOUCH: &str = "load refreshes the idle expiry in the same call";
const TOUCH_UPDATE: &str = "update with Changes::touch refreshes the idle expiry";
const READ: &str = "read returns the live record as load does";
const EXPIRED: &str = "a dead record is never returned";
const EXTREMES: &str = "any duration, from zero to Duration::MAX, is taken without a panic or an error, and a huge one lasts";
const DEADLINE: &str = "a record past its absolute deadline is never returned";
const OWN_DEADLINE: &str =
    "update with Changes::deadline brings the deadline closer (never later) and it is kept";
const CHANGES: &str = "update sets and removes only the changed keys";
const CONCURRENT: &str = "concurrent updates of different keys all survive";
const DESTROY_WINS: &str = "a deleted session is not recreated by a late update";
const NO_COLLISION: &str = "create never reuses an id or overwrites a session";
const LARGE: &str = "large values round-trip unchanged";
const UNICODE: &str = "unicode keys and values round-trip unchanged";
const STORE_CALL: &str = "store calls succeed against a healthy store";
const READ_NOW: &str = "read_now, when it answers, answers as read does";
const OWNER_KEPT: &str = "a record's owner round-trips unchanged";
const LISTED: &str = "owned lists every live session of the owner, and only those";
const LIST_GONE: &str = "owned never lists a session that was deleted or expired";
const REVOKED: &str =
    "revoke_all ends every session of the owner but the one excepted, and returns them";
const REVOKE_RACE: &str =
    "a session created while revoke_all runs is either revoked or listed afterwards";
const INDEX_CLEANED: &str = "expired sessions leave the owner's list, thousands of them";

impl Conformance {
    /// The default settings: a 1 second tick, 10,000 sessions, a 256 KiB large value.
    pub fn new() -> Self {
        Self {
            tick: Duration::from_secs(1),
            sessions: 10_000,
            large_value: 256 * 1024,
        }
    }

    /// The unit of time for the expiry checks.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// How many sessions the bulk check creates, loads and deletes.
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions;
        self
    }

    /// The size in bytes of the large value.
    pub fn large_value(mut self, bytes: usize) -> Self {
        self.large_value = bytes;
        self
    }

    /// Runs every check against `store`; returns the first broken promise.
    pub async fn run<St: SessionStore>(&self, store: St) -> Result<(), Violation> {
        let store = Arc::new(store);
        self.round_trip(store.as_ref()).await?;
        self.owner_round_trip(store.as_ref()).await?;
        self.unknown_ids(store.as_ref()).await?;
        self.changes(store.as_ref()).await?;
        if St::IDS == Ids::Generated {
            self.concurrent_changes(&store).await?;
            self.destroy_wins(&store).await?;
        }
        self.unicode(store.as_ref()).await?;
        self.large(store.as_ref()).await?;
        self.many_sessions(&store).await?;
        self.touch(store.as_ref()).await?;
        self.expiry(store.as_ref()).await?;
        self.deadline(store.as_ref()).await?;
        self.own_deadline(store.as_ref()).await?;
        self.extremes(store.as_ref()).await?;
        Ok(())
    }

    /// Runs the checks of the optional [`OwnerIndex`] capability against `store` (the
    /// sessions of each owner: listing, revoking, and an index that cleans itself), after
    /// checking that owners round-trip. Run [`run`](Self::run) too: this assumes the rest of
    /// the contract holds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
    /// use std::time::Duration;
    /// use cloakroom::MemoryStore;
    /// use cloakroom_testkit::Conformance;
    ///
    /// Conformance::new()
    ///     .tick(Duration::from_millis(50))
    ///     .sessions(1_000)
    ///     .run_owner_index(MemoryStore::new())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_owner_index<St: OwnerIndex>(&self, store: St) -> Result<(), Violation> {
        let store = Arc::new(store);
        self.owner_round_trip(store.as_ref()).await?;
        self.listed(store.as_ref()).await?;
        self.revoked(store.as_ref(), true).await?;
        self.revoke_race(&store).await?;
        self.index_cleaned(&store).await
    }

    /// The checks of [`run_owner_index`](Self::run_owner_index) that hold for a store that
    /// revokes without listing (memcached, which may evict any item and so cannot list
    /// exactly): owners round-trip, and `revoke_all` ends every session of the owner but the
    /// one excepted, and no other owner's, while new logins work.
    pub async fn run_revocation<St: OwnerIndex>(&self, store: St) -> Result<(), Violation> {
        self.owner_round_trip(&store).await?;
        self.revoked(&store, false).await
    }

    fn owned_record(&self, owner: &str, idle_ticks: u32) -> Record {
        let mut record = self.record(idle_ticks, &[("user", "\"ada\"")]);
        record.owner = Some(Owner {
            name: owner.to_owned(),
            since: SystemTime::now(),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) ✓".to_owned()),
            address: Some("2001:db8::1".to_owned()),
        });
        record
    }

    /// A fresh owner name, so checks never see each other's sessions (or an earlier run's).
    fn owner(&self, what: &str) -> String {
        format!(
            "conformance {what} ✓ {}",
            SessionId::generate().short_hash()
        )
    }

    async fn owner_round_trip<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let record = self.owned_record(&self.owner("round trip"), 600);
        let mut id = call(store.create(&record).await)?;
        let loaded = load(store, &id, OWNER_KEPT).await?;
        let same = |loaded: &Record| {
            let (Some(a), Some(b)) = (&loaded.owner, &record.owner) else {
                return false;
            };
            a.name == b.name
                && a.user_agent == b.user_agent
                && a.address == b.address
                && close(a.since, b.since)
        };
        ensure(same(&loaded), OWNER_KEPT, || {
            format!("owner {:?} came back as {:?}", record.owner, loaded.owner)
        })?;
        id = applied(store, &id, &set("k", "1"), OWNER_KEPT).await?;
        let loaded = load(store, &id, OWNER_KEPT).await?;
        ensure(same(&loaded), OWNER_KEPT, || {
            format!(
                "after an update, owner {:?} came back as {:?}",
                record.owner, loaded.owner
            )
        })?;
        call(store.delete(&id).await)
    }

    async fn listed<St: OwnerIndex>(&self, store: &St) -> Result<(), Violation> {
        let (owner, other) = (self.owner("listed"), self.owner("other"));
        let mut ids = HashSet::new();
        for _ in 0..3 {
            ids.insert(call(store.create(&self.owned_record(&owner, 600)).await)?);
        }
        let short = call(store.create(&self.owned_record(&owner, 1)).await)?;
        let others = call(store.create(&self.owned_record(&other, 600)).await)?;
        let anonymous = call(store.create(&self.record(600, &[])).await)?;
        let mut expected = ids.clone();
        expected.insert(short.clone());
        self.ensure_listed(store, &owner, &expected, LISTED).await?;
        let deleted = ids.iter().next().cloned();
        if let Some(deleted) = &deleted {
            call(store.delete(deleted).await)?;
            ids.remove(deleted);
            expected.remove(deleted);
        }
        self.ensure_listed(store, &owner, &expected, LIST_GONE)
            .await?;
        tokio::time::sleep(self.tick * 5 / 2).await;
        self.ensure_listed(store, &owner, &ids, LIST_GONE).await?;
        let listed = call(store.owned(&other).await)?;
        ensure(listed.len() == 1 && listed[0].0 == others, LISTED, || {
            format!(
                "another owner's one session was listed as {} sessions",
                listed.len()
            )
        })?;
        for id in ids.iter().chain([&others, &anonymous]) {
            call(store.delete(id).await)?;
        }
        Ok(())
    }

    async fn ensure_listed<St: OwnerIndex>(
        &self,
        store: &St,
        owner: &str,
        expected: &HashSet<SessionId>,
        promise: &'static str,
    ) -> Result<(), Violation> {
        let listed = call(store.owned(owner).await)?;
        let ids: HashSet<SessionId> = listed.iter().map(|(id, _)| id.clone()).collect();
        ensure(
            ids == *expected && ids.len() == listed.len(),
            promise,
            || {
                format!(
                    "{} sessions were live, {} listed, {} of them live ones",
                    expected.len(),
                    listed.len(),
                    ids.intersection(expected).count()
                )
            },
        )?;
        let strays = listed
            .iter()
            .filter(|(_, record)| record.owner.as_ref().is_none_or(|o| o.name != owner))
            .count();
        ensure(strays == 0, promise, || {
            format!("{strays} listed records are not of the owner listed")
        })?;
        Ok(())
    }

    /// `listed`: whether the store lists owners' sessions, for the lists to be checked too.
    async fn revoked<St: OwnerIndex>(&self, store: &St, listed: bool) -> Result<(), Violation> {
        let (owner, other) = (self.owner("revoked"), self.owner("bystander"));
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(call(store.create(&self.owned_record(&owner, 600)).await)?);
        }
        let bystander = call(store.create(&self.owned_record(&other, 600)).await)?;
        let kept = ids[0].clone();
        let revoked = call(store.revoke_all(&owner, Some(&kept)).await)?;
        ensure_named(&revoked, &ids[1..])?;
        for id in &ids[1..] {
            ensure(call(store.load(id).await)?.is_none(), REVOKED, || {
                "a revoked session still loaded".to_owned()
            })?;
            ensure(read(store, id).await?.is_none(), REVOKED, || {
                "a revoked session was still read".to_owned()
            })?;
        }
        load(store, &kept, REVOKED).await?;
        load(store, &bystander, REVOKED).await?;
        if listed {
            self.ensure_listed(store, &owner, &HashSet::from([kept.clone()]), REVOKED)
                .await?;
        }
        let revoked = call(store.revoke_all(&owner, None).await)?;
        ensure_named(&revoked, std::slice::from_ref(&kept))?;
        ensure(call(store.load(&kept).await)?.is_none(), REVOKED, || {
            "revoke_all left the excepted session of before alive".to_owned()
        })?;
        load(store, &bystander, REVOKED).await?;
        let again = call(store.create(&self.owned_record(&owner, 600)).await)?;
        load(store, &again, REVOKED).await?;
        call(store.delete(&again).await)?;
        call(store.delete(&bystander).await)
    }

    async fn revoke_race<St: OwnerIndex>(&self, store: &Arc<St>) -> Result<(), Violation> {
        const LOGINS: usize = 40;
        let owner = self.owner("race");
        let mut tasks = JoinSet::new();
        for i in 0..LOGINS {
            let (store, record) = (Arc::clone(store), self.owned_record(&owner, 600));
            let owner = owner.clone();
            tasks.spawn(async move {
                if i % 10 == 5 {
                    store.revoke_all(&owner, None).await.map(|_| None)
                } else {
                    store.create(&record).await.map(Some)
                }
            });
        }
        let mut created = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Some(id) = call(call(joined.map_err(|e| e.to_string()))?)? {
                created.push(id);
            }
        }
        let listed: HashSet<SessionId> = call(store.owned(&owner).await)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in &created {
            let alive = call(store.load(id).await)?.is_some();
            ensure(!alive || listed.contains(id), REVOKE_RACE, || {
                "a session created during revoke_all is alive but not listed".to_owned()
            })?;
        }
        call(store.revoke_all(&owner, None).await).map(drop)
    }

    async fn index_cleaned<St: OwnerIndex>(&self, store: &Arc<St>) -> Result<(), Violation> {
        const PARALLEL: usize = 32;
        let owner = self.owner("many");
        let count = self.sessions.min(5_000);
        for batch in (0..count).collect::<Vec<_>>().chunks(PARALLEL) {
            let mut creators = JoinSet::new();
            for _ in batch {
                let (store, record) = (Arc::clone(store), self.owned_record(&owner, 2));
                creators.spawn(async move { store.create(&record).await });
            }
            while let Some(joined) = creators.join_next().await {
                call(call(joined.map_err(|e| e.to_string()))?)?;
            }
        }
        // Past their expiry, measured from the last create.
        tokio::time::sleep(self.tick * 5).await;
        let live = call(store.create(&self.owned_record(&owner, 600)).await)?;
        self.ensure_listed(
            store.as_ref(),
            &owner,
            &HashSet::from([live.clone()]),
            INDEX_CLEANED,
        )
        .await?;
        let revoked = call(store.revoke_all(&owner, None).await)?;
        ensure(
            revoked == Revoked::Sessions(vec![live]),
            INDEX_CLEANED,
            || {
                format!(
                    "after {count} expired sessions and 1 live one, revoke_all ended {revoked:?}"
                )
            },
        )
    }

    fn record(&self, idle_ticks: u32, entries: &[(&str, &str)]) -> Record {
        let mut record = Record::new(SystemTime::now(), self.tick * idle_ticks, None);
        record.entries = entries
            .iter()
            .map(|(key, json)| ((*key).to_owned(), entry(json)))
            .collect();
        record
    }

    async fn round_trip<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let mut record = self.record(600, &[("user", "\"ada\""), ("n", "1")]);
        record.entries.insert(
            "notice".to_owned(),
            Entry {
                json: "\"saved\"".to_owned(),
                flash: true,
            },
        );
        let id = call(store.create(&record).await)?;
        ensure(
            St::IDS.parse(id.as_str()).as_ref() == Some(&id),
            OWN_IDS,
            || format!("the id {id} that create returned is not of the store's scheme"),
        )?;
        let loaded = load(store, &id, ROUND_TRIP).await?;
        ensure(loaded.entries == record.entries, ROUND_TRIP, || {
            format!(
                "entries {:?} came back as {:?}",
                record.entries, loaded.entries
            )
        })?;
        ensure(close(loaded.created, record.created), ROUND_TRIP, || {
            format!(
                "created {:?} came back as {:?}",
                record.created, loaded.created
            )
        })?;
        ensure(
            loaded.idle_timeout.as_secs() == record.idle_timeout.as_secs()
                && loaded.deadline.is_none(),
            ROUND_TRIP,
            || {
                format!(
                    "idle timeout {:?} / deadline None came back as {:?} / {:?}",
                    record.idle_timeout, loaded.idle_timeout, loaded.deadline
                )
            },
        )?;
        let read = read(store, &id).await?;
        ensure(
            read.as_ref().map(|read| &read.entries) == Some(&record.entries),
            READ,
            || format!("load found {:?}, read found {read:?}", loaded.entries),
        )?;
        ensure(
            read.is_some_and(|read| read.expires > SystemTime::now()),
            READ,
            || "read returned a live record whose expiry has passed".to_owned(),
        )?;
        let empty = call(store.create(&self.record(600, &[])).await)?;
        let loaded = load(store, &empty, ROUND_TRIP).await?;
        ensure(loaded.entries.is_empty(), ROUND_TRIP, || {
            format!("an empty session came back with {:?}", loaded.entries)
        })?;
        call(store.delete(&id).await)?;
        call(store.delete(&empty).await)
    }

    async fn unknown_ids<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let unknown = SessionId::generate();
        ensure(call(store.load(&unknown).await)?.is_none(), UNKNOWN, || {
            "a never-created id loaded a record".to_owned()
        })?;
        ensure(read(store, &unknown).await?.is_none(), UNKNOWN, || {
            "a never-created id was read".to_owned()
        })?;
        let update = call(store.update(&unknown, &set("k", "1")).await)?;
        ensure(update == Update::Missing, NO_RESURRECTION, || {
            format!("update of a never-created id returned {update:?}")
        })?;
        ensure(
            call(store.load(&unknown).await)?.is_none(),
            NO_RESURRECTION,
            || "update of a never-created id created it".to_owned(),
        )?;
        call(store.delete(&unknown).await)
    }

    async fn changes<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let id = call(
            store
                .create(&self.record(600, &[("a", "1"), ("b", "2")]))
                .await,
        )?;
        let changes = Changes {
            entries: vec![("c".to_owned(), Some(entry("3"))), ("a".to_owned(), None)],
            idle_timeout: Some(self.tick * 900),
            deadline: None,
            touch: false,
        };
        let id = applied(store, &id, &changes, CHANGES).await?;
        let loaded = load(store, &id, CHANGES).await?;
        let expected = entries(&[("b", "2"), ("c", "3")]);
        ensure(loaded.entries == expected, CHANGES, || {
            format!("expected {expected:?}, found {:?}", loaded.entries)
        })?;
        ensure(
            loaded.idle_timeout.as_secs() == (self.tick * 900).as_secs(),
            CHANGES,
            || {
                format!(
                    "a new idle timeout {:?} was stored as {:?}",
                    self.tick * 900,
                    loaded.idle_timeout
                )
            },
        )?;
        call(store.delete(&id).await)
    }

    async fn concurrent_changes<St: SessionStore>(&self, store: &Arc<St>) -> Result<(), Violation> {
        const WRITERS: usize = 50;
        let id = call(store.create(&self.record(600, &[("base", "0")])).await)?;
        let mut writers = JoinSet::new();
        for i in 0..WRITERS {
            let (store, id) = (Arc::clone(store), id.clone());
            writers.spawn(async move { store.update(&id, &set(&format!("k{i}"), "1")).await });
        }
        while let Some(joined) = writers.join_next().await {
            let update = call(joined.map_err(|e| e.to_string()))?;
            let update = call(update)?;
            ensure(update == Update::Applied, CONCURRENT, || {
                format!("a concurrent update returned {update:?}")
            })?;
        }
        let loaded = load(store.as_ref(), &id, CONCURRENT).await?;
        let missing: Vec<String> = (0..WRITERS)
            .map(|i| format!("k{i}"))
            .chain(["base".to_owned()])
            .filter(|key| !loaded.entries.contains_key(key))
            .collect();
        ensure(missing.is_empty(), CONCURRENT, || {
            format!("after {WRITERS} concurrent updates these keys were lost: {missing:?}")
        })?;
        call(store.delete(&id).await)
    }

    async fn destroy_wins<St: SessionStore>(&self, store: &Arc<St>) -> Result<(), Violation> {
        let id = call(
            store
                .create(&self.record(600, &[("user", "\"ada\"")]))
                .await,
        )?;
        call(store.delete(&id).await)?;
        let mut late = JoinSet::new();
        for i in 0..20 {
            let (store, id) = (Arc::clone(store), id.clone());
            late.spawn(async move { store.update(&id, &set(&format!("late{i}"), "1")).await });
        }
        while let Some(joined) = late.join_next().await {
            let update = call(call(joined.map_err(|e| e.to_string()))?)?;
            ensure(update == Update::Missing, DESTROY_WINS, || {
                format!("an update after delete returned {update:?}")
            })?;
        }
        ensure(call(store.load(&id).await)?.is_none(), DESTROY_WINS, || {
            "updates after delete brought the session back".to_owned()
        })?;
        ensure(
            read(store.as_ref(), &id).await?.is_none(),
            DESTROY_WINS,
            || "a deleted session was read".to_owned(),
        )
    }

    async fn unicode<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let pairs = [
            ("ключ", "\"значение\""),
            ("🔑", "\"🗝️ and 🍪\""),
            ("キー", "\"値\""),
            ("مفتاح", "\"قيمة\""),
            ("a key with spaces\nand a newline", "\"tab\\tquote\\\"\""),
            ("", "\"empty key\""),
        ];
        let id = call(store.create(&self.record(600, &pairs)).await)?;
        let loaded = load(store, &id, UNICODE).await?;
        ensure(loaded.entries == entries(&pairs), UNICODE, || {
            format!("{:?} came back as {:?}", entries(&pairs), loaded.entries)
        })?;
        let id = applied(store, &id, &set("ü", "\"ö\""), UNICODE).await?;
        let loaded = load(store, &id, UNICODE).await?;
        ensure(
            loaded.entries.get("ü").map(|e| e.json.as_str()) == Some("\"ö\""),
            UNICODE,
            || "a unicode key set by update was lost".to_owned(),
        )?;
        call(store.delete(&id).await)
    }

    async fn large<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let big = format!("\"{}\"", "x".repeat(self.large_value));
        let id = call(store.create(&self.record(600, &[("big", &big)])).await)?;
        let id = applied(store, &id, &set("big2", &big), LARGE).await?;
        let loaded = load(store, &id, LARGE).await?;
        for key in ["big", "big2"] {
            let len = loaded.entries.get(key).map(|e| e.json.len());
            ensure(
                loaded.entries.get(key).map(|e| &e.json) == Some(&big),
                LARGE,
                || {
                    format!(
                        "a {}-byte value {key:?} came back as {len:?} bytes",
                        big.len()
                    )
                },
            )?;
        }
        call(store.delete(&id).await)
    }

    async fn many_sessions<St: SessionStore>(&self, store: &Arc<St>) -> Result<(), Violation> {
        const PARALLEL: usize = 32;
        let mut ids = Vec::with_capacity(self.sessions);
        for batch in (0..self.sessions).collect::<Vec<_>>().chunks(PARALLEL) {
            let mut creators = JoinSet::new();
            for &i in batch {
                let store = Arc::clone(store);
                let record = self.record(600, &[("n", &i.to_string())]);
                creators.spawn(async move { (i, store.create(&record).await) });
            }
            while let Some(joined) = creators.join_next().await {
                let (i, created) = call(joined.map_err(|e| e.to_string()))?;
                ids.push((i, call(created)?));
            }
        }
        let distinct: HashSet<&SessionId> = ids.iter().map(|(_, id)| id).collect();
        ensure(distinct.len() == ids.len(), NO_COLLISION, || {
            format!(
                "{} creates returned only {} distinct ids",
                ids.len(),
                distinct.len()
            )
        })?;
        for (i, id) in &ids {
            let loaded = load(store.as_ref(), id, NO_COLLISION).await?;
            let n = loaded.entries.get("n").map(|e| e.json.clone());
            ensure(
                n.as_deref() == Some(i.to_string().as_str()),
                NO_COLLISION,
                || format!("session #{i} loaded the data of another session: n = {n:?}"),
            )?;
        }
        for (_, id) in &ids {
            call(store.delete(id).await)?;
        }
        Ok(())
    }

    async fn touch<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        // Refreshed every 2.5 ticks with a 4-tick idle timeout, the session outlives 5 ticks
        // only if each refresh worked; the margins cover stores that count whole seconds.
        let mut id = call(store.create(&self.record(4, &[("k", "1")])).await)?;
        for round in 1..=2 {
            tokio::time::sleep(self.tick * 5 / 2).await;
            let loaded = call(store.load(&id).await)?;
            if St::IDS == Ids::Sealed && loaded.is_some() {
                // The layer re-seals after every request; so does this check.
                id = applied(store, &id, &Changes::default(), TOUCH).await?;
            }
            ensure(loaded.is_some(), TOUCH, || {
                format!(
                    "a session with a {:?} idle timeout, loaded every {:?}, was gone at load #{round}",
                    self.tick * 4,
                    self.tick * 5 / 2
                )
            })?;
        }
        // The layer refreshes through update when only the handler's answer shows it is due.
        tokio::time::sleep(self.tick * 5 / 2).await;
        let touch = Changes {
            touch: true,
            ..Changes::default()
        };
        id = applied(store, &id, &touch, TOUCH_UPDATE).await?;
        tokio::time::sleep(self.tick * 5 / 2).await;
        ensure(read(store, &id).await?.is_some(), TOUCH_UPDATE, || {
            format!(
                "a session with a {:?} idle timeout, touched by update, was gone {:?} later",
                self.tick * 4,
                self.tick * 5 / 2
            )
        })?;
        call(store.delete(&id).await)
    }

    async fn expiry<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let id = call(store.create(&self.record(1, &[("k", "1")])).await)?;
        tokio::time::sleep(self.tick * 5 / 2).await;
        ensure(read(store, &id).await?.is_none(), EXPIRED, || {
            format!(
                "a session with a {:?} idle timeout was read after {:?}",
                self.tick,
                self.tick * 5 / 2
            )
        })?;
        ensure(call(store.load(&id).await)?.is_none(), EXPIRED, || {
            format!(
                "a session with a {:?} idle timeout loaded after {:?}",
                self.tick,
                self.tick * 5 / 2
            )
        })?;
        let update = call(store.update(&id, &set("k", "2")).await)?;
        ensure(update == Update::Missing, EXPIRED, || {
            format!("update of an expired session returned {update:?}")
        })?;
        ensure(call(store.load(&id).await)?.is_none(), EXPIRED, || {
            "an update brought an expired session back".to_owned()
        })
    }

    /// "Remember me forever" (`u64::MAX` seconds, `Duration::MAX`) as an idle timeout, a new
    /// one and a lifetime: the session lasts (past a century); zero and a millisecond: a
    /// session that is dead at once or soon, and no error either way.
    async fn extremes<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let century = Duration::from_secs(100 * 365 * 86_400);
        let lasts = |record: &Option<Record>| {
            record.as_ref().is_some_and(|record| {
                record
                    .expires
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > century)
            })
        };
        for huge in [Duration::from_secs(u64::MAX), Duration::MAX] {
            let record = Record::new(SystemTime::now(), huge, None);
            let id = call(store.create(&record).await)?;
            let loaded = call(store.load(&id).await)?;
            ensure(lasts(&loaded), EXTREMES, || {
                format!("created with a {huge:?} idle timeout, it loaded as {loaded:?}")
            })?;
            let short = Record::new(SystemTime::now(), self.tick * 600, None);
            let id = call(store.create(&short).await)?;
            let changes = Changes {
                idle_timeout: Some(huge),
                touch: true,
                ..set("k", "2")
            };
            let id = applied(store, &id, &changes, EXTREMES).await?;
            let loaded = call(store.load(&id).await)?;
            ensure(lasts(&loaded), EXTREMES, || {
                format!("given a {huge:?} idle timeout, it loaded as {loaded:?}")
            })?;
            let forever = Record::new(SystemTime::now(), self.tick * 600, Some(huge));
            let id = call(store.create(&forever).await)?;
            let loaded = call(store.load(&id).await)?;
            ensure(loaded.is_some(), EXTREMES, || {
                format!("created with a {huge:?} lifetime, it did not load")
            })?;
        }
        // A record made elsewhere, its durations never clamped.
        let mut raw = Record::new(SystemTime::now(), self.tick * 600, None);
        raw.idle_timeout = Duration::MAX;
        let id = call(store.create(&raw).await)?;
        let loaded = call(store.load(&id).await)?;
        ensure(loaded.is_some(), EXTREMES, || {
            "a record whose idle_timeout field is Duration::MAX did not load".to_owned()
        })?;
        let _ = call(store.read(&id).await)?;
        for tiny in [Duration::ZERO, Duration::from_millis(1)] {
            let id = call(
                store
                    .create(&Record::new(SystemTime::now(), tiny, None))
                    .await,
            )?;
            tokio::time::sleep(self.tick * 5 / 2).await;
            let loaded = call(store.load(&id).await)?;
            ensure(loaded.is_none(), EXTREMES, || {
                format!("created with a {tiny:?} idle timeout, it still loaded")
            })?;
        }
        Ok(())
    }

    /// A deadline set by `update` ends the session then; a later one than it had changes
    /// nothing.
    async fn own_deadline<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let soon = SystemTime::now() + self.tick;
        let record = Record::new(SystemTime::now(), self.tick * 600, None);
        let mut id = call(store.create(&record).await)?;
        let earlier = Changes {
            deadline: Some(soon),
            ..set("k", "1")
        };
        let later = Changes {
            deadline: Some(soon + self.tick * 600),
            ..Changes::default()
        };
        for (changes, what) in [(earlier, "set by update"), (later, "after a later one")] {
            id = applied(store, &id, &changes, OWN_DEADLINE).await?;
            let loaded = load(store, &id, OWN_DEADLINE).await?;
            let kept = loaded
                .deadline
                .is_some_and(|deadline| close(deadline, soon));
            ensure(kept, OWN_DEADLINE, || {
                format!(
                    "a deadline {soon:?}, {what}, came back as {:?}",
                    loaded.deadline
                )
            })?;
        }
        tokio::time::sleep(self.tick * 5 / 2).await;
        ensure(read(store, &id).await?.is_none(), OWN_DEADLINE, || {
            format!(
                "a session whose own deadline passed {:?} ago was read",
                self.tick * 3 / 2
            )
        })?;
        ensure(call(store.load(&id).await)?.is_none(), OWN_DEADLINE, || {
            "a session whose own deadline passed still loaded".to_owned()
        })
    }

    async fn deadline<St: SessionStore>(&self, store: &St) -> Result<(), Violation> {
        let record = Record::new(SystemTime::now(), self.tick * 600, Some(self.tick));
        let id = call(store.create(&record).await)?;
        tokio::time::sleep(self.tick * 5 / 2).await;
        ensure(read(store, &id).await?.is_none(), DEADLINE, || {
            format!(
                "a session with a {:?} lifetime was read after {:?}",
                self.tick,
                self.tick * 5 / 2
            )
        })?;
        ensure(call(store.load(&id).await)?.is_none(), DEADLINE, || {
            format!(
                "a session with a {:?} lifetime loaded after {:?}",
                self.tick,
                self.tick * 5 / 2
            )
        })
    }
}

/// The sessions `revoked` names are `expected`, if it names any.
fn ensure_named(revoked: &Revoked, expected: &[SessionId]) -> Result<(), Violation> {
    let Revoked::Sessions(ids) = revoked else {
        return Ok(());
    };
    let ids: HashSet<&SessionId> = ids.iter().collect();
    let expected: HashSet<&SessionId> = expected.iter().collect();
    ensure(ids == expected, REVOKED, || {
        format!(
            "of {} sessions to revoke, {} were named, {} of them right",
            expected.len(),
            ids.len(),
            ids.intersection(&expected).count()
        )
    })
}

fn entry(json: &str) -> Entry {
    Entry {
        json: json.to_owned(),
        flash: false,
    }
}

fn entries(pairs: &[(&str, &str)]) -> HashMap<String, Entry> {
    pairs
        .iter()
        .map(|(key, json)| ((*key).to_owned(), entry(json)))
        .collect()
}

fn set(key: &str, json: &str) -> Changes {
    Changes {
        entries: vec![(key.to_owned(), Some(entry(json)))],
        ..Changes::default()
    }
}

/// Stores may keep times to the second; the contract needs no more.
fn close(a: SystemTime, b: SystemTime) -> bool {
    let difference = a.duration_since(b).or_else(|e| Ok::<_, ()>(e.duration()));
    difference.is_ok_and(|d| d <= Duration::from_secs(1))
}

/// `Err(Violation)` for `promise` unless `holds`.
pub(crate) fn ensure(
    holds: bool,
    promise: &'static str,
    detail: impl FnOnce() -> String,
) -> Result<(), Violation> {
    if holds {
        Ok(())
    } else {
        Err(Violation {
            promise,
            detail: detail(),
        })
    }
}

fn call<T, E: Display>(result: Result<T, E>) -> Result<T, Violation> {
    result.map_err(|error| Violation {
        promise: STORE_CALL,
        detail: error.to_string(),
    })
}

/// `read`, after checking that `read_now` answers the same when it answers at all.
async fn read<St: SessionStore>(store: &St, id: &SessionId) -> Result<Option<Record>, Violation> {
    let now = store.read_now(id).map(call).transpose()?;
    let read = call(store.read(id).await)?;
    let entries = |record: &Option<Record>| record.as_ref().map(|record| record.entries.clone());
    if let Some(now) = now {
        ensure(entries(&now) == entries(&read), READ_NOW, || {
            format!("read_now found {now:?}, read found {read:?}")
        })?;
    }
    Ok(read)
}

/// Applies `changes`, which must find the session, and returns the id it goes by afterwards.
async fn applied<St: SessionStore>(
    store: &St,
    id: &SessionId,
    changes: &Changes,
    promise: &'static str,
) -> Result<SessionId, Violation> {
    match call(store.update(id, changes).await)? {
        Update::Applied => Ok(id.clone()),
        Update::Reissued(id) => Ok(id),
        other => Err(Violation {
            promise,
            detail: format!("update of a live session returned {other:?}"),
        }),
    }
}

async fn load<St: SessionStore>(
    store: &St,
    id: &SessionId,
    promise: &'static str,
) -> Result<Record, Violation> {
    match call(store.load(id).await)? {
        Some(record) => Ok(record),
        None => Err(Violation {
            promise,
            detail: format!("session {id} loaded nothing right after it was written"),
        }),
    }
}
