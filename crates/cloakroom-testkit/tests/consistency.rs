//! The consistency checker against `MemoryStore` (many tasks, one instance), and its ability
//! to catch the mistakes multi-instance stores make: a local copy nobody invalidates, and a
//! write of the whole record built from that copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cloakroom::store::{Changes, Record, SessionStore, Update};
use cloakroom::{MemoryStore, SessionId};
use cloakroom_testkit::{Consistency, Faults, Violation};

fn quick() -> Consistency {
    Consistency::new()
        .duration(Duration::from_millis(600))
        .expiry(Duration::from_millis(200))
}

/// (The report is printed: `scripts/soak.sh`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_is_consistent_under_many_tasks() -> Result<(), Violation> {
    let report = quick()
        .concurrency(16)
        .soak_from_env()
        .run(vec![MemoryStore::new()])
        .await?;
    println!("MemoryStore, 16 tasks: {report}");
    assert!(report.operations > 1_000, "{report}");
    assert_eq!(report.stale_reads, 0, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    Ok(())
}

/// A memory store that can lose everything at once, as a restarted memcached does.
#[derive(Clone, Default)]
struct Wipeable(Arc<Mutex<MemoryStore>>);

impl Wipeable {
    fn store(&self) -> MemoryStore {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn wipe(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = MemoryStore::new();
    }
}

impl SessionStore for Wipeable {
    type Error = cloakroom::MemoryStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, Self::Error> {
        self.store().load(id).await
    }

    async fn create(&self, record: &Record) -> Result<SessionId, Self::Error> {
        self.store().create(record).await
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Self::Error> {
        self.store().update(id, changes).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.store().delete(id).await
    }
}

/// Runs the checker on a store wiped 200 ms in, telling it of the wipe or not.
async fn wiped(told: bool) -> Result<(), Violation> {
    let store = Wipeable::default();
    let faults = Faults::new();
    let wiper = {
        let (store, faults) = (store.clone(), faults.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if told {
                faults.wipe(async { store.wipe() }).await;
            } else {
                store.wipe();
            }
        }
    };
    let checker = quick().faults(faults);
    let (report, ()) = tokio::join!(checker.run(vec![store.clone(), store]), wiper);
    report.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wipe_the_checker_is_told_of_is_no_violation() -> Result<(), Violation> {
    wiped(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wipe_the_checker_is_not_told_of_is_a_lost_session() {
    assert_eq!(
        wiped(false).await.err().map(|v| v.promise),
        Some(
            "a live session nobody deleted is never missing, to a read or an update (nothing lost)"
        )
    );
}

/// One shared map, and per instance a copy of what it last read that nothing invalidates.
#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    /// Reads come from the copy.
    StaleCopy,
    /// Reads are fresh, but an update writes the copy plus its changes over the record.
    WholeRecordWrites,
    /// A stale copy, and every write applies but answers with an error (its reply lost), so
    /// no write ever completes in the history.
    StaleCopyRepliesLost,
    /// Every call fails.
    Down,
}

struct Flawed {
    flaw: Flaw,
    shared: MemoryStore,
    copy: Mutex<HashMap<SessionId, Record>>,
}

impl Flawed {
    fn instances(flaw: Flaw, count: usize) -> Vec<Self> {
        let shared = MemoryStore::new();
        (0..count)
            .map(|_| Self {
                flaw,
                shared: shared.clone(),
                copy: Mutex::default(),
            })
            .collect()
    }

    fn copy(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Record>> {
        self.copy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lost() -> std::io::Error {
    std::io::Error::other("the reply was lost")
}

impl SessionStore for Flawed {
    type Error = std::io::Error;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, Self::Error> {
        if self.flaw == Flaw::Down {
            return Err(lost());
        }
        if matches!(self.flaw, Flaw::StaleCopy | Flaw::StaleCopyRepliesLost) {
            // Expired copies are dropped: the flaw is staleness alone.
            let now = std::time::SystemTime::now();
            if let Some(record) = self.copy().get(id).filter(|r| !r.is_expired(now)) {
                return Ok(Some(record.clone()));
            }
        }
        let record = self.shared.load(id).await.map_err(std::io::Error::other)?;
        if let Some(record) = &record {
            self.copy().insert(id.clone(), record.clone());
        }
        Ok(record)
    }

    async fn create(&self, record: &Record) -> Result<SessionId, Self::Error> {
        self.shared
            .create(record)
            .await
            .map_err(std::io::Error::other)
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Self::Error> {
        if self.flaw == Flaw::Down {
            return Err(lost());
        }
        let base = self.copy().get(id).cloned();
        let applied = match (self.flaw, base) {
            (Flaw::WholeRecordWrites, Some(mut record)) => {
                let live = self.shared.load(id).await.map_err(std::io::Error::other)?;
                if live.is_none() {
                    return Ok(Update::Missing);
                }
                record.apply(changes, std::time::SystemTime::now());
                // Every key, changed or not: the other instances' writes are lost.
                let all = Changes {
                    entries: record
                        .entries
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect(),
                    ..Changes::default()
                };
                self.shared.update(id, &all).await
            }
            _ => self.shared.update(id, changes).await,
        };
        let applied = applied.map_err(std::io::Error::other)?;
        if self.flaw == Flaw::StaleCopyRepliesLost {
            return Err(lost());
        }
        Ok(applied)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), Self::Error> {
        if self.flaw == Flaw::Down {
            return Err(lost());
        }
        if self.flaw != Flaw::StaleCopyRepliesLost {
            self.copy().remove(id);
        }
        self.shared
            .delete(id)
            .await
            .map_err(std::io::Error::other)?;
        if self.flaw == Flaw::StaleCopyRepliesLost {
            return Err(lost());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_nobody_invalidates_is_caught() {
    let result = quick().run(Flawed::instances(Flaw::StaleCopy, 3)).await;
    let promise = result.err().map(|violation| violation.promise);
    assert!(
        matches!(
            promise,
            Some(
                "nothing reads a session after a delete of it has completed (or a read found it gone)"
                    | "no read returns a value older than the newest write of that key completed before it"
                    // The final reads go through the instances too: a stale copy shows there.
                    | "at the end, every key holds the value of a write no later completed write overwrote"
            )
        ),
        "{promise:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_record_writes_from_a_copy_are_caught() {
    let result = quick()
        .run(Flawed::instances(Flaw::WholeRecordWrites, 3))
        .await;
    assert!(result.is_err(), "lost updates went unseen: {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_names_the_calls_and_the_seed() {
    let result = quick()
        .seed(7)
        .run(Flawed::instances(Flaw::StaleCopy, 3))
        .await;
    let detail = result
        .err()
        .map(|violation| violation.detail)
        .unwrap_or_default();
    assert!(detail.contains("instance "), "{detail}");
    assert!(detail.contains("session s"), "{detail}");
    assert!(detail.ends_with("(seed 7)"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_is_caught_even_when_no_write_ever_answers() {
    let result = quick()
        .run(Flawed::instances(Flaw::StaleCopyRepliesLost, 3))
        .await;
    assert!(
        result.is_err(),
        "failed writes hid a copy nobody invalidates: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_answers_nothing_does_not_pass() {
    let result = quick().run(Flawed::instances(Flaw::Down, 3)).await;
    assert_eq!(
        result.err().map(|violation| violation.promise),
        Some("store calls succeed against a healthy store")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_is_consistent_with_revokes() -> Result<(), Violation> {
    let store = MemoryStore::new();
    let report = quick()
        .concurrency(8)
        .run_with_revokes(vec![store.clone(), store])
        .await?;
    assert!(report.operations > 500, "{report}");
    Ok(())
}

/// A store whose "log out everywhere" answers without ending anything.
struct IdleRevoke(MemoryStore);

impl SessionStore for IdleRevoke {
    type Error = cloakroom::MemoryStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, Self::Error> {
        self.0.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<SessionId, Self::Error> {
        self.0.create(record).await
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Self::Error> {
        self.0.update(id, changes).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.0.delete(id).await
    }
}

impl cloakroom::OwnerIndex for IdleRevoke {
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, Self::Error> {
        self.0.owned(owner).await
    }

    async fn revoke_all(
        &self,
        _owner: &str,
        _except: Option<&SessionId>,
    ) -> Result<cloakroom::Revoked, Self::Error> {
        Ok(cloakroom::Revoked::Sessions(Vec::new()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_that_ends_nothing_is_caught() {
    let store = MemoryStore::new();
    let violation = quick()
        .concurrency(8)
        .run_with_revokes(vec![IdleRevoke(store.clone()), IdleRevoke(store)])
        .await
        .err()
        .map(|violation| violation.promise);
    let ended = [
        "nothing reads a session after a delete of it has completed (or a read found it gone)",
        "no update of a deleted session applies",
    ];
    assert!(
        violation.is_some_and(|promise| ended.contains(&promise)),
        "{violation:?}"
    );
}
