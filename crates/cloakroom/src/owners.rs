//! `Owners`: the sessions of each owner, listed and revoked from a handler or from anywhere
//! else, on a store that keeps an index of owners ([`OwnerIndex`]).

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing::Instrument as _;

use crate::audit::AuditKind;
use crate::call::{CallError, StoreOperation, StoreTimedOut, span, within};
use crate::layer::Config;
use crate::store::{FailureKind, OwnerIndex, Record, Revoked, StoreError};
use crate::{Session, SessionId};

/// The sessions of each owner in one layer's store: what a "your devices" page, "sign out
/// everywhere" and an admin's "end this user's sessions" are made of. From
/// [`SessionLayer::owners`](crate::SessionLayer::owners); cheap to clone, and usable inside a
/// request and outside one (a background job, a password reset).
///
/// A revoke has taken effect on every instance of the application when it returns: it is a
/// delete, which no instance serves past, local copies included. A session whose login is
/// racing a revoke is either revoked or listed afterwards, never alive and unlisted. Each
/// call waits at most the layer's [`store_timeout`](crate::SessionLayer::store_timeout); a
/// revoke runs on to the end as a task of its own even when the caller stops waiting, and an
/// error says it may have ended some sessions (retry it).
///
/// ```
/// use cloakroom::{MemoryStore, Owners, Session, SessionCookie, SessionLayer};
///
/// async fn sign_out_other_devices(
///     owners: &Owners<MemoryStore>,
///     session: &Session,
/// ) -> Result<Option<usize>, cloakroom::OwnersError<cloakroom::MemoryStoreError>> {
///     Ok(owners.revoke_others(session).await?.count())
/// }
///
/// # fn main() -> Result<(), cloakroom::ConfigError> {
/// # let cookie = SessionCookie::new("__session").secret([7; 32]);
/// let layer = SessionLayer::new(cookie, MemoryStore::new())?;
/// let owners = layer.owners(); // for the handlers, e.g. as axum state or an Extension
/// # Ok(()) }
/// ```
pub struct Owners<St> {
    store: Arc<St>,
    config: Arc<Config>,
}

impl<St> Clone for Owners<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
        }
    }
}

impl<St> fmt::Debug for Owners<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owners")
            .field("store", &std::any::type_name::<St>())
            .finish_non_exhaustive()
    }
}

impl<St: OwnerIndex> Owners<St> {
    pub(crate) fn new(store: Arc<St>, config: Arc<Config>) -> Self {
        Self { store, config }
    }

    /// The live sessions of `owner`, the most recent login first; `current` (the request's
    /// session, if any) is marked as such.
    ///
    /// # Errors
    ///
    /// [`OwnersError::Store`] when the store fails, or cannot list (memcached);
    /// [`OwnersError::TimedOut`] past the store timeout.
    pub async fn list(
        &self,
        owner: &str,
        current: Option<&Session>,
    ) -> Result<Vec<SessionInfo>, OwnersError<St::Error>> {
        let current = current.and_then(Session::id);
        let owned = self
            .call(StoreOperation::List, self.store.owned(owner))
            .await?;
        let mut sessions: Vec<SessionInfo> = owned
            .iter()
            .filter_map(|(id, record)| SessionInfo::of(id, record, current.as_ref()))
            .collect();
        sessions.sort_by_key(|session| std::cmp::Reverse(session.signed_in));
        Ok(sessions)
    }

    /// Ends the session of `owner` that `handle` names (from [`list`](Self::list)); `false`
    /// if there is none (already ended, or not this owner's).
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list).
    pub async fn revoke(
        &self,
        owner: &str,
        handle: &SessionHandle,
    ) -> Result<bool, OwnersError<St::Error>> {
        let owned = self
            .call(StoreOperation::List, self.store.owned(owner))
            .await?;
        let Some((id, _)) = owned
            .iter()
            .find(|(id, _)| SessionHandle::of(id) == *handle)
        else {
            return Ok(false);
        };
        self.call(StoreOperation::Revoke, self.store.delete(id))
            .await?;
        self.config
            .audit
            .report(AuditKind::Revoked, Some(owner), Some(id), None);
        Ok(true)
    }

    /// Ends every session of `owner` ("log out everywhere") and says which it ended (how many,
    /// on a store that can say: not memcached). From a handler of one of them, that request's
    /// session ends too: call [`Session::destroy`] as well to clear its cookie now.
    ///
    /// # Errors
    ///
    /// [`OwnersError::Store`] when the store fails; [`OwnersError::TimedOut`] past the store
    /// timeout (some sessions may be ended: retry).
    pub async fn revoke_all(&self, owner: &str) -> Result<Revoked, OwnersError<St::Error>> {
        self.revoke_except(owner, None).await
    }

    /// Ends every other session of `current`'s owner ("sign out all other devices"). Two
    /// devices that do this at the same moment may both be signed out: each ends the other.
    ///
    /// # Errors
    ///
    /// [`OwnersError::NoOwner`] if `current` has no owner; otherwise as
    /// [`revoke_all`](Self::revoke_all).
    pub async fn revoke_others(
        &self,
        current: &Session,
    ) -> Result<Revoked, OwnersError<St::Error>> {
        let owner = current.owner().ok_or(OwnersError::NoOwner)?;
        self.revoke_except(&owner, current.id().as_ref()).await
    }

    async fn revoke_except(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Revoked, OwnersError<St::Error>> {
        let store = Arc::clone(&self.store);
        let (name, kept) = (owner.to_owned(), except.cloned());
        let revoke = async move { store.revoke_all(&name, kept.as_ref()).await };
        // A revoke runs as a task of its own, as a logout does: a caller that stops waiting
        // (the store timeout, a client gone) does not leave it half done.
        let revoked = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(revoke);
                let joined = async move {
                    match task.await {
                        Ok(revoked) => revoked.map(Some),
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        // The runtime is shutting down.
                        Err(_) => Ok(None),
                    }
                };
                self.call(StoreOperation::Revoke, joined)
                    .await?
                    .ok_or(OwnersError::Interrupted)?
            }
            Err(_) => self.call(StoreOperation::Revoke, revoke).await?,
        };
        let audit = &self.config.audit;
        match &revoked {
            Revoked::Sessions(ids) => {
                for id in ids {
                    audit.report(AuditKind::Revoked, Some(owner), Some(id), None);
                }
            }
            _ => audit.report(AuditKind::Revoked, Some(owner), None, None),
        }
        Ok(revoked)
    }

    /// Runs one store call within the layer's store timeout, in a `session_store` span.
    async fn call<T>(
        &self,
        operation: StoreOperation,
        call: impl Future<Output = Result<T, St::Error>>,
    ) -> Result<T, OwnersError<St::Error>> {
        let call = async {
            call.await
                .map_err(|error| CallError::Store(operation, error))
        };
        let result = within(self.config.store_timeout, || operation, call)
            .instrument(span(operation, None))
            .await;
        result.map_err(|error| match error {
            CallError::Store(operation, source) => {
                tracing::error!(%operation, error = %source, store = std::any::type_name::<St>(), "session store failed");
                OwnersError::Store { operation, source }
            }
            CallError::TimedOut(timed_out) => OwnersError::TimedOut(timed_out),
        })
    }
}

/// One session of an owner, as [`Owners::list`] shows it: never its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Names the session for [`Owners::revoke`]; safe to show and to send to the browser.
    pub handle: SessionHandle,
    /// Whether it is the session of the request that listed.
    pub current: bool,
    /// When the session was first stored (it may predate the login).
    pub created: SystemTime,
    /// When it was given its owner: the login.
    pub signed_in: SystemTime,
    /// When it was last used, to within the layer's refresh interval: the last refresh of
    /// its expiry. (The time the session's idle timeout runs from; with a lifetime that has
    /// cut the expiry short, it reads earlier.)
    pub last_active: SystemTime,
    /// When it ends unless it is used again.
    pub expires: SystemTime,
    /// The client's user agent at login, if the layer keeps it.
    pub user_agent: Option<String>,
    /// The client's address at login, if the layer keeps it.
    pub address: Option<String>,
}

impl SessionInfo {
    fn of(id: &SessionId, record: &Record, current: Option<&SessionId>) -> Option<Self> {
        let owner = record.owner.as_ref()?;
        let last_active = record
            .expires
            .checked_sub(record.idle_timeout)
            .unwrap_or(record.created)
            .max(owner.since);
        Some(Self {
            handle: SessionHandle::of(id),
            current: current == Some(id),
            created: record.created,
            signed_in: owner.since,
            last_active,
            expires: record.expires,
            user_agent: owner.user_agent.clone(),
            address: owner.address.clone(),
        })
    }
}

/// Bytes of a handle's hash: 128 bits, no collision among one owner's sessions.
const HANDLE_BYTES: usize = 16;
/// Characters of a handle in base64url.
const HANDLE_LEN: usize = 22;

/// Names one session of an owner for [`Owners::revoke`], without being its id: a hash of the
/// id, from which the id cannot be recovered, so it may be shown, logged and put in a form.
/// It is 22 characters of base64url (`Display`, [`FromStr`], serde as a string).
///
/// ```
/// use cloakroom::SessionHandle;
///
/// let handle: SessionHandle = "AAAAAAAAAAAAAAAAAAAAAA".parse()?;
/// assert_eq!(handle.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
/// assert!("../etc/passwd".parse::<SessionHandle>().is_err());
/// # Ok::<(), cloakroom::InvalidHandle>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionHandle([u8; HANDLE_LEN]);

impl SessionHandle {
    /// The handle of `id`: SHA-256 of the id in a domain of its own (unlike the short hash in
    /// logs), cut to 128 bits.
    pub(crate) fn of(id: &SessionId) -> Self {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"cloakroom session handle\0");
        context.update(id.as_str().as_bytes());
        let digest = context.finish();
        let mut text = [0; HANDLE_LEN];
        let bytes = digest.as_ref().get(..HANDLE_BYTES).unwrap_or_default();
        let _ = URL_SAFE_NO_PAD.encode_slice(bytes, &mut text);
        Self(text)
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        // Always ASCII: encoded to, or checked as, base64url.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A value that is not a [`SessionHandle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a session handle: handles are {HANDLE_LEN} characters of base64url")]
pub struct InvalidHandle;

impl FromStr for SessionHandle {
    type Err = InvalidHandle;

    fn from_str(value: &str) -> Result<Self, InvalidHandle> {
        let text: [u8; HANDLE_LEN] = value.as_bytes().try_into().map_err(|_| InvalidHandle)?;
        let mut bytes = [0; HANDLE_BYTES + 2];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            // Only the text `encode_slice` writes: 128 bits leave the last character's low
            // bits zero, and a value with them set is not the handle of any session.
            Ok(HANDLE_BYTES) if Self::encodes(&bytes[..HANDLE_BYTES], &text) => Ok(Self(text)),
            _ => Err(InvalidHandle),
        }
    }
}

impl SessionHandle {
    fn encodes(bytes: &[u8], text: &[u8; HANDLE_LEN]) -> bool {
        let mut again = [0; HANDLE_LEN];
        URL_SAFE_NO_PAD.encode_slice(bytes, &mut again).is_ok() && again == *text
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.as_str())
    }
}

impl Serialize for SessionHandle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionHandle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an [`Owners`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnersError<E> {
    /// The store failed, or cannot do this (memcached cannot list).
    #[error("the session store failed to {operation} an owner's sessions: {source}")]
    Store {
        /// `list` or `revoke`.
        operation: StoreOperation,
        /// The store's error.
        source: E,
    },
    /// The layer stopped waiting for the store; a revoke may have ended some sessions.
    #[error(transparent)]
    TimedOut(StoreTimedOut),
    /// [`Owners::revoke_others`] with a session that has no owner.
    #[error("this session has no owner; give it one at login with Session::set_owner")]
    NoOwner,
    /// The runtime shut down while a revoke ran; it may have ended some sessions.
    #[error("the runtime shut down during a revoke; it may have ended some sessions")]
    Interrupted,
}

impl<E: StoreError> OwnersError<E> {
    /// Whether a retry may help ([`FailureKind::Unavailable`]) or not.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Store { source, .. } => source.failure_kind(),
            Self::TimedOut(_) | Self::Interrupted => FailureKind::Unavailable,
            Self::NoOwner => FailureKind::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_ids_without_showing_them_and_parse_back() {
        let id = SessionId::generate();
        let handle = SessionHandle::of(&id);
        assert_eq!(handle, SessionHandle::of(&id));
        assert_ne!(handle, SessionHandle::of(&SessionId::generate()));
        let text = handle.to_string();
        assert_eq!(text.len(), HANDLE_LEN);
        assert!(!text.contains(id.as_str()) && !id.as_str().contains(&text));
        assert!(!text.starts_with(&id.short_hash()));
        assert_eq!(text.parse::<SessionHandle>(), Ok(handle.clone()));
        let json = serde_json::to_string(&handle).ok();
        assert_eq!(json, Some(format!("\"{text}\"")));
        let back: Option<SessionHandle> = json.and_then(|json| serde_json::from_str(&json).ok());
        assert_eq!(back, Some(handle));
    }

    #[test]
    fn anything_else_is_not_a_handle() {
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA/",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAAÄ",
        ] {
            assert_eq!(bad.parse::<SessionHandle>(), Err(InvalidHandle), "{bad:?}");
        }
        assert!(serde_json::from_str::<SessionHandle>("\"nope\"").is_err());
    }
}
