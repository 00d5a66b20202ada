//! Your own store: a `HashMap` behind a mutex, implementing `SessionStore`, checked by the
//! conformance suite that every cloakroom store passes.
//!
//! ```sh
//! cargo run -p cloakroom-examples --example custom_store
//! ```
//!
//! Swap the map for your database: the four methods and their promises stay the same (and
//! drop `read_now`, which only a store that never waits implements).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use cloakroom::SessionId;
use cloakroom::store::{Changes, Record, SessionStore, Update};

/// Sessions in a map. A real store would talk to a database here.
#[derive(Default)]
pub struct MapStore {
    sessions: Mutex<HashMap<SessionId, Record>>,
}

impl MapStore {
    fn sessions(&self) -> MutexGuard<'_, HashMap<SessionId, Record>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionStore for MapStore {
    type Error = Infallible;

    /// Load and refresh the expiry in one step; a dead record is removed, never returned.
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, Infallible> {
        let mut sessions = self.sessions();
        let Some(record) = sessions.get_mut(id) else {
            return Ok(None);
        };
        if record.touch(SystemTime::now()) {
            return Ok(Some(record.clone()));
        }
        sessions.remove(id);
        Ok(None)
    }

    /// Optional: the map is in process, so a plain read (no refresh) can answer at once and
    /// spare the request a boxed future. A database-backed store leaves this out.
    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, Infallible>> {
        let sessions = self.sessions();
        let live = sessions
            .get(id)
            .filter(|record| !record.is_expired(SystemTime::now()));
        Some(Ok(live.cloned()))
    }

    /// A fresh id that no session has; never overwrite.
    async fn create(&self, record: &Record) -> Result<SessionId, Infallible> {
        let mut sessions = self.sessions();
        loop {
            let id = SessionId::generate();
            if let std::collections::hash_map::Entry::Vacant(slot) = sessions.entry(id.clone()) {
                slot.insert(record.clone());
                return Ok(id);
            }
        }
    }

    /// Only the changed keys, applied to what is stored now; never recreate a missing session.
    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Infallible> {
        let now = SystemTime::now();
        match self.sessions().get_mut(id) {
            Some(record) if !record.is_expired(now) => {
                record.apply(changes, now);
                Ok(Update::Applied)
            }
            _ => Ok(Update::Missing),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), Infallible> {
        self.sessions().remove(id);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), cloakroom_testkit::Violation> {
    // In-process, so short ticks are safe; `cloakroom_testkit::conformance(store)` uses 1 s.
    cloakroom_testkit::Conformance::new()
        .tick(Duration::from_millis(20))
        .run(MapStore::default())
        .await?;
    println!("MapStore keeps every promise of the cloakroom store contract");
    Ok(())
}
