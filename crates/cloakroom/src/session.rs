//! The `Session` handle that handlers read and write.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SessionId;
use crate::client::Client;
use crate::error::SessionError;
use crate::store::{Changes, Entry, FOREVER, MAX_OWNER_LEN, Owner, Record};

/// One user's session: a key-value map that survives across requests.
///
/// The layer puts a `Session` into every request's extensions; handlers take it with
/// `Extension<Session>` (or, with the `axum` feature, as `Session` directly). Every method is
/// synchronous and works on this request's copy of the data; the layer writes what changed to
/// the store after the handler returns, so no lock is ever held across an `.await`.
///
/// Values are anything serde can handle, stored as JSON. Cloning is cheap (an `Arc`), and
/// clones share the same state. On a layer that runs handlers when the store cannot load the
/// session ([`LoadFailure::RunHandler`](crate::LoadFailure::RunHandler)), every method that
/// returns a `Result` answers [`SessionError::Unavailable`] then.
///
/// ```
/// # fn handler(session: cloakroom::Session) -> Result<String, cloakroom::SessionError> {
/// let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
/// session.set("visits", visits)?;
/// session.flash("notice", "Saved!")?;
/// Ok(format!("visit {visits}"))
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    state: Arc<Mutex<State>>,
}

/// What happens to the session when the request ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Keep it under its id, writing any changes.
    Keep,
    /// Move it to a fresh id; the old id must load nothing afterwards.
    Regenerate,
    /// Delete it and clear the cookie.
    Destroy,
}

pub(crate) struct State {
    /// The id it was loaded under; `None` for a session that is not stored yet.
    pub(crate) id: Option<SessionId>,
    /// The record as loaded (or a fresh one), with this request's changes applied.
    pub(crate) record: Record,
    /// The keys this request set (`Some`) or removed (`None`).
    pub(crate) changed: HashMap<String, Option<Entry>>,
    /// A new idle timeout chosen by the handler.
    pub(crate) idle_timeout: Option<Duration>,
    /// A new absolute deadline set by the handler (already in `record.deadline`).
    pub(crate) deadline: Option<SystemTime>,
    pub(crate) fate: Fate,
    /// Whether the handler called any method, so the response depends on the cookie.
    pub(crate) accessed: bool,
    /// What the layer noted of the client, for [`Session::set_owner`] to keep.
    pub(crate) client: Client,
    /// Which layer made the session (its configuration's address), so a layer that finds a
    /// session in the request already can tell its own clone from another layer.
    pub(crate) layer: usize,
    /// Whether the handler gave the session its owner in this request ([`Session::set_owner`]).
    pub(crate) logged_in: bool,
    /// Whether the handler chose a cookie that outlives the browser, or a browser-session one
    /// ([`Session::set_persistent`]).
    pub(crate) persistent: Option<bool>,
    /// Whether the store failed to load the session ([`LoadFailure::RunHandler`]): every
    /// fallible method then answers [`SessionError::Unavailable`].
    ///
    /// [`LoadFailure::RunHandler`]: crate::LoadFailure::RunHandler
    pub(crate) unavailable: bool,
}

impl State {
    pub(crate) fn new(id: Option<SessionId>, record: Record) -> Self {
        Self {
            id,
            record,
            changed: HashMap::new(),
            idle_timeout: None,
            deadline: None,
            fate: Fate::Keep,
            accessed: false,
            client: Client::default(),
            layer: 0,
            logged_in: false,
            persistent: None,
            unavailable: false,
        }
    }

    /// Whether the handler changed anything the store keeps.
    pub(crate) fn is_modified(&self) -> bool {
        !self.changed.is_empty() || self.idle_timeout.is_some() || self.deadline.is_some()
    }

    /// This request's changes, as the store contract wants them; `touch` asks the store to
    /// refresh the expiry too.
    pub(crate) fn changes(&self, touch: bool) -> Changes {
        Changes {
            entries: self
                .changed
                .iter()
                .map(|(key, entry)| (key.clone(), entry.clone()))
                .collect(),
            idle_timeout: self.idle_timeout,
            deadline: self.deadline,
            touch,
        }
    }

    fn write(&mut self, key: String, entry: Option<Entry>) -> Result<(), SessionError> {
        if self.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        match &entry {
            Some(entry) => self.record.entries.insert(key.clone(), entry.clone()),
            None => self.record.entries.remove(&key),
        };
        self.changed.insert(key, entry);
        Ok(())
    }
}

impl Session {
    pub(crate) fn from_state(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The state, even if a handler panicked while holding the lock: every method leaves the
    /// state consistent before it could panic, so a poisoned lock holds nothing half-written.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn access(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.accessed = true;
        state
    }

    /// [`access`](Self::access), failing when the store could not load the session.
    fn usable(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let state = self.access();
        if state.unavailable {
            return Err(SessionError::Unavailable);
        }
        Ok(state)
    }

    /// Reads `key` as a `T`; `Ok(None)` if it is not set. A flash value is removed by this read.
    ///
    /// # Errors
    ///
    /// [`SessionError::Deserialize`] if the stored value is not a valid `T`; a flash value is
    /// then kept.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.read(key, |entry| entry.flash)
    }

    /// Reads `key` as a `T`, and removes it if `then_remove` says so of its entry.
    fn read<T: DeserializeOwned>(
        &self,
        key: &str,
        then_remove: fn(&Entry) -> bool,
    ) -> Result<Option<T>, SessionError> {
        let mut state = self.usable()?;
        let Some(entry) = state.record.entries.get(key) else {
            return Ok(None);
        };
        let value =
            serde_json::from_str(&entry.json).map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                type_name: std::any::type_name::<T>(),
                source,
            })?;
        if then_remove(entry) {
            state.write(key.to_owned(), None)?;
        }
        Ok(Some(value))
    }

    /// Sets `key` to `value`. A value that serializes to JSON `null` (`None`, `()`) removes the
    /// key instead, as [`unset`](Self::unset) does: "no value" reads back as not set, so `has`
    /// is `false` and `get` answers `Ok(None)` for any type, rather than a stored `null` that
    /// most types fail to read.
    ///
    /// ```
    /// # fn handler(session: cloakroom::Session) -> Result<(), cloakroom::SessionError> {
    /// let theme: Option<String> = None;
    /// session.set("theme", theme)?;
    /// assert!(!session.has("theme"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Serialize`] if `value` cannot be turned into JSON (a map with non-string
    /// keys, say); [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn set(&self, key: impl Into<String>, value: impl Serialize) -> Result<(), SessionError> {
        self.put(key.into(), value, false)
    }

    /// Sets `key` to a value that is read once: the next [`get`](Self::get) of it, in this
    /// request or a later one, returns it and removes it. For messages after a redirect.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn flash(&self, key: impl Into<String>, value: impl Serialize) -> Result<(), SessionError> {
        self.put(key.into(), value, true)
    }

    fn put(&self, key: String, value: impl Serialize, flash: bool) -> Result<(), SessionError> {
        let json = match serde_json::to_string(&value) {
            Ok(json) => json,
            Err(source) => return Err(SessionError::Serialize { key, source }),
        };
        let entry = (json != "null").then_some(Entry { json, flash });
        self.usable()?.write(key, entry)
    }

    /// Whether `key` is set. Does not consume a flash value.
    pub fn has(&self, key: &str) -> bool {
        self.access().record.entries.contains_key(key)
    }

    /// Removes `key`. Removing a key that is not set is not an error.
    ///
    /// # Errors
    ///
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn unset(&self, key: &str) -> Result<(), SessionError> {
        self.usable()?.write(key.to_owned(), None)
    }

    /// Removes `key` and returns the value it had as a `T` (`Ok(None)` if it was not set).
    ///
    /// # Errors
    ///
    /// [`SessionError::Deserialize`] if the stored value is not a valid `T` (the key is then
    /// kept); [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        if self.lock().fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        self.read(key, |_| true)
    }

    /// Removes every key, keeping the session (its id, cookie and expiry); unlike
    /// [`destroy`](Self::destroy), the user stays in the same session, now empty.
    ///
    /// # Errors
    ///
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn clear(&self) -> Result<(), SessionError> {
        let mut state = self.usable()?;
        if state.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        let keys: Vec<String> = state.record.entries.keys().cloned().collect();
        keys.into_iter().try_for_each(|key| state.write(key, None))
    }

    /// Whether the session holds no key. Does not consume flash values.
    pub fn is_empty(&self) -> bool {
        self.access().record.entries.is_empty()
    }

    /// How long the session lives without requests: its own
    /// ([`set_idle_timeout`](Self::set_idle_timeout)) or the layer's. Every request (at the
    /// granularity of the refresh interval) moves its end to that long from now.
    pub fn idle_timeout(&self) -> Duration {
        let state = self.access();
        state.idle_timeout.unwrap_or(state.record.idle_timeout)
    }

    /// When the session ends however active it is, if it has an end: the layer's
    /// [`lifetime`](crate::SessionLayer::lifetime) from its creation, or its own
    /// ([`set_deadline`](Self::set_deadline)), whichever comes first.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.access().record.deadline
    }

    /// Ends the session at `at` at the latest, however active it is: the end of a
    /// subscription, of a shift, of an elevated "sudo" mode. Kept for the session's later
    /// requests, by every store; the cookie's `Max-Age` follows. A deadline only comes closer:
    /// the layer's lifetime, or an earlier deadline, still applies, and a time already past
    /// ends the session when this request does.
    ///
    /// ```
    /// # fn handler(session: cloakroom::Session) -> Result<(), cloakroom::SessionError> {
    /// use std::time::{Duration, SystemTime};
    /// let shift_ends = SystemTime::now() + Duration::from_secs(8 * 3600);
    /// session.set_deadline(shift_ends)?;
    /// assert!(session.deadline().is_some_and(|end| end <= shift_ends));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn set_deadline(&self, at: SystemTime) -> Result<(), SessionError> {
        let mut state = self.usable()?;
        if state.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        let deadline = crate::store::earlier(state.record.deadline, at);
        state.record.deadline = Some(deadline);
        state.deadline = Some(deadline);
        Ok(())
    }

    /// Ends the session: after this request its record is deleted and the browser's cookie is
    /// cleared, and the old cookie, even replayed, loads nothing. Further changes in this
    /// request are errors. For logout.
    pub fn destroy(&self) {
        let mut state = self.access();
        state.fate = Fate::Destroy;
        state.record.entries.clear();
        state.changed.clear();
        state.idle_timeout = None;
        state.deadline = None;
    }

    /// Moves the session to a fresh id when this request ends, keeping its data; the old id
    /// then loads nothing. Call it whenever privileges change (login, sudo) so an id an
    /// attacker planted or saw earlier is worthless.
    ///
    /// # Errors
    ///
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn regenerate_id(&self) -> Result<(), SessionError> {
        let mut state = self.usable()?;
        if state.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        state.fate = Fate::Regenerate;
        Ok(())
    }

    /// Gives this session its own idle timeout, kept for its later requests too: a long one
    /// for "remember me", a short one for a sensitive session. The cookie's `Max-Age` follows.
    /// The layer's absolute lifetime, if set, still applies.
    ///
    /// # Errors
    ///
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn set_idle_timeout(&self, idle_timeout: Duration) -> Result<(), SessionError> {
        let mut state = self.usable()?;
        if state.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        state.idle_timeout = Some(idle_timeout.min(FOREVER));
        Ok(())
    }

    /// Whether this session's cookie outlives the browser (`true`: "remember me", with
    /// `Max-Age`) or is a browser-session cookie, gone when the browser closes (`false`).
    /// The choice stays with this browser's cookie for the session's later requests, and
    /// across [`regenerate_id`](Self::regenerate_id) and [`set_owner`](Self::set_owner) in the
    /// same request; a new id in a later request keeps `false` but leaves `true` behind (a
    /// login on a shared computer does not inherit the last user's "remember me", and no new
    /// id makes a cookie outlive the browser that chose otherwise). The layer's
    /// [`SessionCookie::persistent`](crate::SessionCookie::persistent) is the default.
    /// The server-side idle timeout applies either way. The response re-sends the cookie.
    ///
    /// ```
    /// # fn login(session: cloakroom::Session, remember_me: bool) -> Result<(), cloakroom::SessionError> {
    /// session.set_owner("user:42")?;
    /// session.set_persistent(remember_me)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn set_persistent(&self, persistent: bool) -> Result<(), SessionError> {
        let mut state = self.usable()?;
        if state.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        state.persistent = Some(persistent);
        Ok(())
    }

    /// Marks whose session this is (`"user:42"`): the login. Like
    /// [`regenerate_id`](Self::regenerate_id), this moves the session to a fresh id when the
    /// request ends, keeping its data, since a login changes privileges; so this one call is
    /// the whole login. The session is then listed among the owner's and ended by a revoke
    /// ([`Owners`](crate::Owners)); the layer notes the time and, if configured, the client's
    /// user agent and address ([`SessionLayer::keep_user_agent`](crate::SessionLayer::keep_user_agent),
    /// [`keep_address`](crate::SessionLayer::keep_address)). Logging out is
    /// [`destroy`](Self::destroy), which ends the session with its owner.
    ///
    /// ```
    /// # fn login(session: cloakroom::Session) -> Result<(), cloakroom::SessionError> {
    /// session.set_owner("user:42")?;
    /// assert_eq!(session.owner().as_deref(), Some("user:42"));
    /// # Ok(()) }
    /// ```
    ///
    /// An owner never changes under one id: calling this again (for another user, say) gives
    /// the session yet another id, so an index of an owner's sessions never goes stale by a
    /// write it did not see.
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidOwner`] for an empty name or one over [`MAX_OWNER_LEN`] bytes;
    /// [`SessionError::Destroyed`] after [`destroy`](Self::destroy).
    pub fn set_owner(&self, owner: impl Into<String>) -> Result<(), SessionError> {
        let name = owner.into();
        if name.is_empty() || name.len() > MAX_OWNER_LEN {
            return Err(SessionError::InvalidOwner {
                len: name.len(),
                max: MAX_OWNER_LEN,
            });
        }
        let mut state = self.usable()?;
        if state.fate == Fate::Destroy {
            return Err(SessionError::Destroyed);
        }
        let owner = Owner {
            name,
            since: SystemTime::now(),
            user_agent: state.client.user_agent(),
            address: state.client.address.clone(),
        };
        state.record.owner = Some(owner);
        state.fate = Fate::Regenerate;
        state.logged_in = true;
        Ok(())
    }

    /// Whose session this is ([`set_owner`](Self::set_owner)); `None` for an anonymous
    /// session, and after [`destroy`](Self::destroy).
    pub fn owner(&self) -> Option<String> {
        let state = self.access();
        let owner = state
            .record
            .owner
            .as_ref()
            .filter(|_| state.fate != Fate::Destroy);
        owner.map(|owner| owner.name.clone())
    }

    /// The id the session was loaded under, or `None` for a session that is not stored yet
    /// (a new id is chosen when it is first saved, after the handler returns). After
    /// [`regenerate_id`](Self::regenerate_id) this is still the old id until the request ends.
    pub fn id(&self) -> Option<SessionId> {
        self.access().id.clone()
    }

    /// A snapshot of every value, decoded as JSON. Does not consume flash values.
    ///
    /// # Errors
    ///
    /// [`SessionError::Deserialize`] naming the key whose stored text is not valid JSON (which
    /// only a store that was written by something else can produce).
    pub fn data(&self) -> Result<serde_json::Map<String, serde_json::Value>, SessionError> {
        self.usable()?
            .record
            .entries
            .iter()
            .map(|(key, entry)| {
                serde_json::from_str(&entry.json)
                    .map(|value| (key.clone(), value))
                    .map_err(|source| SessionError::Deserialize {
                        key: key.clone(),
                        type_name: "serde_json::Value",
                        source,
                    })
            })
            .collect()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("id", &state.id)
            .field("keys", &state.record.entries.len())
            .field("fate", &state.fate)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn session() -> Session {
        let record = Record::new(SystemTime::now(), Duration::from_secs(60), None);
        Session::from_state(State::new(None, record))
    }

    #[test]
    fn set_get_has_unset() -> Result<(), SessionError> {
        let session = session();
        assert_eq!(session.get::<u32>("n")?, None);
        session.set("n", 7)?;
        assert!(session.has("n"));
        assert_eq!(session.get::<u32>("n")?, Some(7));
        assert_eq!(
            session.get::<u32>("n")?,
            Some(7),
            "a plain value is not consumed"
        );
        session.unset("n")?;
        assert!(!session.has("n"));
        assert_eq!(
            session.lock().changes(false).entries,
            vec![("n".to_owned(), None)]
        );
        Ok(())
    }

    #[test]
    fn flash_is_read_exactly_once() -> Result<(), SessionError> {
        let session = session();
        session.flash("notice", "saved")?;
        assert!(session.has("notice"), "has() must not consume a flash");
        assert_eq!(session.get::<String>("notice")?.as_deref(), Some("saved"));
        assert_eq!(session.get::<String>("notice")?, None);
        Ok(())
    }

    #[test]
    fn wrong_type_is_an_error_naming_key_and_type_and_keeps_a_flash() -> Result<(), SessionError> {
        let session = session();
        session.flash("count", "not a number")?;
        let error = session.get::<u64>("count").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("\"count\"") && e.contains("u64")));
        assert!(session.has("count"));
        Ok(())
    }

    #[test]
    fn unserializable_values_are_errors() {
        let session = session();
        let map: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
        let error = session.set("map", map).err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("\"map\"")));
        assert!(!session.has("map"));
    }

    #[test]
    fn a_destroyed_session_is_empty_and_cannot_change() -> Result<(), SessionError> {
        let session = session();
        session.set("user", "ada")?;
        session.destroy();
        assert!(!session.has("user"));
        assert!(matches!(session.set("x", 1), Err(SessionError::Destroyed)));
        assert!(matches!(session.unset("x"), Err(SessionError::Destroyed)));
        assert!(matches!(
            session.flash("x", 1),
            Err(SessionError::Destroyed)
        ));
        assert!(matches!(
            session.regenerate_id(),
            Err(SessionError::Destroyed)
        ));
        assert!(matches!(
            session.set_idle_timeout(Duration::from_secs(1)),
            Err(SessionError::Destroyed)
        ));
        Ok(())
    }

    #[test]
    fn an_owner_is_a_login_and_leaves_with_the_session() -> Result<(), SessionError> {
        let session = session();
        assert_eq!(session.owner(), None);
        session.set_owner("user:ü")?;
        assert_eq!(session.owner().as_deref(), Some("user:ü"));
        assert_eq!(
            session.lock().fate,
            Fate::Regenerate,
            "a login keeps the old id"
        );
        assert!(matches!(
            session.set_owner(""),
            Err(SessionError::InvalidOwner { len: 0, .. })
        ));
        let long = "é".repeat(MAX_OWNER_LEN / 2 + 1);
        assert!(matches!(
            session.set_owner(long),
            Err(SessionError::InvalidOwner { len, max: MAX_OWNER_LEN }) if len == MAX_OWNER_LEN + 2
        ));
        assert_eq!(
            session.owner().as_deref(),
            Some("user:ü"),
            "a refused owner replaced one"
        );
        session.destroy();
        assert_eq!(session.owner(), None);
        assert!(matches!(
            session.set_owner("user:2"),
            Err(SessionError::Destroyed)
        ));
        Ok(())
    }

    #[test]
    fn data_is_a_snapshot_of_everything() -> Result<(), SessionError> {
        let session = session();
        session.set("a", 1)?;
        session.flash("b", [true])?;
        let data = session.data()?;
        assert_eq!(data.get("a"), Some(&serde_json::json!(1)));
        assert_eq!(data.get("b"), Some(&serde_json::json!([true])));
        assert!(session.has("b"), "data() must not consume a flash");
        Ok(())
    }

    #[test]
    fn session_is_send_sync_and_clones_share_state() -> Result<(), SessionError> {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Session>();
        let session = session();
        session.clone().set("k", "v")?;
        assert!(session.has("k"));
        Ok(())
    }
}
