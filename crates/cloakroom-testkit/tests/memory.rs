//! The conformance suite against `MemoryStore`, and the suite's own ability to catch stores that
//! break a promise and to name the promise.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use cloakroom::store::{Changes, OwnerIndex, Record, SessionStore, Update};
use cloakroom::{MemoryStore, SessionId};
use cloakroom_testkit::{Conformance, Violation};

fn quick() -> Conformance {
    Conformance::new()
        .tick(Duration::from_millis(50))
        .sessions(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_every_promise() -> Result<(), Violation> {
    Conformance::new()
        .tick(Duration::from_millis(50))
        .run(MemoryStore::new())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_owner_index_promises() -> Result<(), Violation> {
    Conformance::new()
        .tick(Duration::from_millis(50))
        .sessions(5_000)
        .run_owner_index(MemoryStore::new())
        .await
}

/// The mistakes real stores make.
#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    /// `update` writes the whole record: only the changed keys survive.
    Overwrites,
    /// Records never expire.
    Immortal,
    /// `update` of a missing id creates it.
    Resurrects,
    /// `owned` lists nothing: the index was never written.
    Unlisted,
    /// `owned` lists expired sessions too.
    ListsTheDead,
    /// `owned` lists every owned session, whoever owns it.
    ListsStrangers,
}

struct Flawed {
    flaw: Flaw,
    map: Mutex<HashMap<SessionId, Record>>,
}

impl Flawed {
    fn new(flaw: Flaw) -> Self {
        Self {
            flaw,
            map: Mutex::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Record>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self, record: &Record) -> bool {
        self.flaw == Flaw::Immortal || !record.is_expired(SystemTime::now())
    }
}

impl SessionStore for Flawed {
    type Error = Infallible;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, Infallible> {
        let mut map = self.map();
        let record = map.get_mut(id).filter(|record| self.live(record));
        Ok(record.map(|record| {
            record.touch(SystemTime::now());
            record.clone()
        }))
    }

    async fn create(&self, record: &Record) -> Result<SessionId, Infallible> {
        let id = SessionId::generate();
        self.map().insert(id.clone(), record.clone());
        Ok(id)
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Infallible> {
        let now = SystemTime::now();
        let mut map = self.map();
        let fresh = || Record::new(now, Duration::from_secs(60), None);
        let record = match map.get_mut(id) {
            Some(record) if self.live(record) => record,
            _ if self.flaw == Flaw::Resurrects => map.entry(id.clone()).or_insert_with(fresh),
            _ => return Ok(Update::Missing),
        };
        if self.flaw == Flaw::Overwrites {
            record.entries.clear();
        }
        record.apply(changes, now);
        Ok(Update::Applied)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), Infallible> {
        self.map().remove(id);
        Ok(())
    }
}

impl OwnerIndex for Flawed {
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, Infallible> {
        let now = SystemTime::now();
        let map = self.map();
        let listed = map.iter().filter(|(_, record)| {
            let mine = record.owner.as_ref().is_some_and(|o| o.name == owner);
            let live = !record.is_expired(now);
            match self.flaw {
                Flaw::Unlisted => false,
                Flaw::ListsTheDead => mine,
                Flaw::ListsStrangers => record.owner.is_some() && live,
                _ => mine && live,
            }
        });
        Ok(listed
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect())
    }
}

async fn broken_owner_promise(flaw: Flaw) -> String {
    quick()
        .run_owner_index(Flawed::new(flaw))
        .await
        .expect_err("a flawed store passed the owner index checks")
        .promise
        .to_owned()
}

#[tokio::test]
async fn a_store_that_does_not_index_owners_is_caught() {
    assert_eq!(
        broken_owner_promise(Flaw::Unlisted).await,
        "owned lists every live session of the owner, and only those"
    );
}

#[tokio::test]
async fn a_store_that_lists_the_dead_is_caught() {
    assert_eq!(
        broken_owner_promise(Flaw::ListsTheDead).await,
        "owned never lists a session that was deleted or expired"
    );
}

#[tokio::test]
async fn a_store_that_lists_other_owners_sessions_is_caught() {
    assert_eq!(
        broken_owner_promise(Flaw::ListsStrangers).await,
        "owned lists every live session of the owner, and only those"
    );
}

async fn broken_promise(flaw: Flaw) -> String {
    let violation = quick()
        .run(Flawed::new(flaw))
        .await
        .expect_err("a flawed store passed the conformance suite");
    assert!(
        violation
            .to_string()
            .starts_with("store broke the promise \"")
    );
    violation.promise.to_owned()
}

#[tokio::test]
async fn a_store_that_overwrites_whole_records_is_caught() {
    assert_eq!(
        broken_promise(Flaw::Overwrites).await,
        "update sets and removes only the changed keys"
    );
}

#[tokio::test]
async fn a_store_that_never_expires_is_caught() {
    assert_eq!(
        broken_promise(Flaw::Immortal).await,
        "a dead record is never returned"
    );
}

#[tokio::test]
async fn a_store_that_resurrects_on_update_is_caught() {
    assert_eq!(
        broken_promise(Flaw::Resurrects).await,
        "update of a missing record writes nothing and returns Update::Missing"
    );
}
