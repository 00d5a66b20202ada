//! Sessions for unit tests of handlers: no layer, no store, no HTTP.
//!
//! ```
//! use cloakroom::testing::{Ending, TestSession};
//! use cloakroom::{Session, SessionError};
//!
//! /// The handler under test.
//! async fn add_to_cart(session: Session, item: u32) -> Result<usize, SessionError> {
//!     let mut cart: Vec<u32> = session.get("cart")?.unwrap_or_default();
//!     cart.push(item);
//!     session.set("cart", &cart)?;
//!     session.flash("notice", "Added!")?;
//!     Ok(cart.len())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), SessionError> {
//! let test = TestSession::stored().with("cart", [7])?;
//! assert_eq!(add_to_cart(test.session(), 8).await?, 2);
//! let changes = test.changes();
//! assert_eq!(changes.get("cart"), Some(&Some(serde_json::json!([7, 8]))));
//! assert!(changes.contains_key("notice"));
//! assert_eq!(test.ending(), Ending::Kept);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::session::{Fate, State};
use crate::store::{Entry, Owner, Record};
use crate::{DEFAULT_IDLE_TIMEOUT, Session, SessionError, SessionId};

/// A [`Session`] made for a test, and what the handler did to it.
///
/// Make one as the layer would hand it to a handler (new, or stored with the values it
/// holds), give [`session`](Self::session) to the handler, then ask what the handler changed
/// ([`changes`](Self::changes)) and how the session ends ([`ending`](Self::ending)): what the
/// layer would write after the handler. The session behaves exactly as in a request (flash
/// values, `set(key, None)`, errors after `destroy`), with the layer's defaults (a 7-day idle
/// timeout, no lifetime).
#[derive(Clone, Debug)]
pub struct TestSession {
    session: Session,
}

/// How the handler left the session: what the layer would do after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// Kept under its id (a new session is stored if the handler wrote to it).
    Kept,
    /// Moved to a new id: [`Session::regenerate_id`] or [`Session::set_owner`].
    Regenerated,
    /// Ended: [`Session::destroy`].
    Destroyed,
}

impl Default for TestSession {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSession {
    /// A first visit: a session that is not stored yet and holds nothing.
    pub fn new() -> Self {
        Self::made(None)
    }

    /// A session the store holds already (it has an id), empty until [`with`](Self::with).
    pub fn stored() -> Self {
        Self::made(Some(SessionId::generate()))
    }

    fn made(id: Option<SessionId>) -> Self {
        let record = Record::new(SystemTime::now(), DEFAULT_IDLE_TIMEOUT, None);
        Self {
            session: Session::from_state(State::new(id, record)),
        }
    }

    /// The session holds `value` under `key` before the handler runs (not a change of the
    /// handler's).
    ///
    /// # Errors
    ///
    /// [`SessionError::Serialize`] if `value` cannot be turned into JSON.
    pub fn with(self, key: impl Into<String>, value: impl Serialize) -> Result<Self, SessionError> {
        let key = key.into();
        let json = match serde_json::to_string(&value) {
            Ok(json) => json,
            Err(source) => return Err(SessionError::Serialize { key, source }),
        };
        let entry = Entry { json, flash: false };
        self.session.lock().record.entries.insert(key, entry);
        Ok(self)
    }

    /// The session belongs to `owner` already (a signed-in user), since a minute ago.
    pub fn owned_by(self, owner: impl Into<String>) -> Self {
        self.session.lock().record.owner = Some(Owner {
            name: owner.into(),
            since: SystemTime::now() - Duration::from_secs(60),
            user_agent: None,
            address: None,
        });
        self
    }

    /// The session to hand to the handler (clones share the state, as in a request).
    pub fn session(&self) -> Session {
        self.session.clone()
    }

    /// The keys the handler set (`Some`, with the value as JSON) or removed (`None`), as the
    /// layer would write them. A flash value the handler read is removed; `destroy` leaves
    /// nothing to write.
    pub fn changes(&self) -> BTreeMap<String, Option<serde_json::Value>> {
        let state = self.session.lock();
        state
            .changed
            .iter()
            .map(|(key, entry)| {
                let value = entry.as_ref().map(|entry| {
                    serde_json::from_str(&entry.json).unwrap_or(serde_json::Value::Null)
                });
                (key.clone(), value)
            })
            .collect()
    }

    /// How the handler left the session.
    pub fn ending(&self) -> Ending {
        match self.session.lock().fate {
            Fate::Keep => Ending::Kept,
            Fate::Regenerate => Ending::Regenerated,
            Fate::Destroy => Ending::Destroyed,
        }
    }

    /// Whether the handler touched the session at all (the response then depends on it, and
    /// gets `Vary: Cookie`).
    pub fn accessed(&self) -> bool {
        self.session.lock().accessed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_a_logout_and_untouched() -> Result<(), SessionError> {
        let test = TestSession::new();
        assert!(!test.accessed());
        assert_eq!(test.session().id(), None);
        test.session().set_owner("user:1")?;
        assert_eq!(test.ending(), Ending::Regenerated);

        let test = TestSession::stored()
            .with("user", "ada")?
            .owned_by("user:7");
        assert!(test.session().id().is_some());
        assert_eq!(test.session().owner().as_deref(), Some("user:7"));
        assert!(test.changes().is_empty(), "initial values are no changes");
        test.session().destroy();
        assert_eq!(test.ending(), Ending::Destroyed);
        assert!(test.changes().is_empty());
        assert!(test.accessed());

        let test = TestSession::stored().with("a", 1)?;
        assert_eq!(test.session().remove::<u32>("a")?, Some(1));
        test.session().set("b", None::<u8>)?;
        let changes = test.changes();
        assert_eq!(changes.get("a"), Some(&None));
        assert_eq!(changes.get("b"), Some(&None));
        Ok(())
    }
}
