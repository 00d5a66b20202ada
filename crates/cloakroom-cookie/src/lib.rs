//! Cookie session storage for [cloakroom](https://docs.rs/cloakroom): the whole session lives
//! in the cookie, sealed, so the server keeps nothing.
//!
//! ```
//! use cloakroom::{SessionCookie, SessionLayer};
//! use cloakroom_cookie::CookieStore;
//!
//! # fn main() -> Result<(), cloakroom::ConfigError> {
//! # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
//! let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
//! let store = CookieStore::new(&cookie)?;
//! let layer = SessionLayer::new(cookie, store)?;
//! # Ok(()) }
//! ```
//!
//! # Sealing
//!
//! The session (values, flash flags, creation time, idle timeout, deadline and expiry) is
//! serialised as JSON and sealed with ChaCha20-Poly1305 from ring, with a fresh random nonce
//! for every seal. Keys are derived by HKDF from the layer's secrets
//! ([`SessionCookie::derive_keys`](cloakroom::SessionCookie::derive_keys)): the newest seals,
//! every one opens, and since the session is re-sealed on every request (its expiry moves),
//! a cookie sealed with an older secret comes back sealed with the newest. The sealed value is
//! `version byte || nonce || ciphertext`, base64url; the version byte and the cookie name are
//! the associated data, so a payload cannot move to another cookie name or app. Anything that
//! does not open (tampered, truncated, another app's, random bytes) is a fresh empty session,
//! and an expired payload replayed later loads nothing.
//!
//! # Size
//!
//! Browsers silently drop cookies over 4096 bytes. A session whose cookie would exceed
//! [`MAX_COOKIE_BYTES`] is a [`CookieStoreError::TooLarge`] when it is saved: the client gets a
//! `500` (the store reports it as [`FailureKind::Rejected`])
//! and a `tracing` error names the size and the limit, instead of a cookie the browser would
//! quietly discard. Keep cookie sessions small (ids, flags, a flash message); for more, move to
//! a server-side store (`MemoryStore`, `FsStore`, `RedisStore`, `MemcacheStore`): only the
//! store passed to `SessionLayer::new` changes.
//!
//! # What cookie sessions cannot do
//!
//! There is no server-side state, so nothing can be revoked: `destroy` clears the browser's
//! cookie and `regenerate_id` issues a new one, but a copy of an old cookie (stolen, or kept
//! by the client) stays valid until its idle timeout or absolute lifetime ends. Keep
//! [`SessionLayer::lifetime`](cloakroom::SessionLayer::lifetime) short, and use a server-side
//! store where logout must end the session everywhere at once. Concurrent requests of one
//! session each get their own cookie back, and the browser keeps the last one, so their
//! changes do not merge.
//!
//! For the same reason there is no list of a user's sessions and no "log out everywhere":
//! [`Session::set_owner`](cloakroom::Session::set_owner) keeps the owner in the cookie, but
//! [`SessionLayer::owners`](cloakroom::SessionLayer::owners) needs a store that implements
//! [`OwnerIndex`](cloakroom::OwnerIndex), and with this one it does not compile:
//!
//! ```compile_fail,E0277
//! # use cloakroom::{SessionCookie, SessionLayer};
//! # use cloakroom_cookie::CookieStore;
//! # fn main() -> Result<(), cloakroom::ConfigError> {
//! # let cookie = SessionCookie::new("__Host-session").secrets([[1u8; 32], [2u8; 32]]);
//! # let store = CookieStore::new(&cookie)?;
//! let layer = SessionLayer::new(cookie, store)?;
//! let owners = layer.owners(); // CookieStore: OwnerIndex is not satisfied
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom::store::{Changes, FailureKind, Ids, Record, SessionStore, StoreError, Update};
use cloakroom::{ConfigError, SessionCookie, SessionId};
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The largest cookie (name, value and signature) the store will produce; browsers drop
/// cookies over 4096 bytes, and attributes take the rest.
pub const MAX_COOKIE_BYTES: usize = 3900;
/// The first byte of every sealed value.
const VERSION: u8 = 1;
const NONCE_LEN: usize = aead::NONCE_LEN;
/// Signature the layer appends: `.` and 43 base64url characters.
const SIGNATURE_LEN: usize = 44;

/// Why a session could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieStoreError {
    /// The sealed session would make a cookie browsers drop.
    #[error(
        "session cookie would be {size} bytes, over the {limit}-byte limit browsers keep; store less in the session or use a server-side store"
    )]
    TooLarge {
        /// The cookie's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Sealing failed (the random generator or the cipher).
    #[error("could not seal the session: {0}")]
    Seal(String),
}

/// Sessions sealed in the cookie. See the [crate documentation](crate).
pub struct CookieStore {
    /// Newest first.
    keys: Vec<LessSafeKey>,
    name: String,
    random: SystemRandom,
}

impl std::fmt::Debug for CookieStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieStore")
            .field("cookie", &self.name)
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

impl CookieStore {
    /// A store sealing with keys derived from `cookie`'s secrets, bound to its name. Give the
    /// layer the same `SessionCookie`.
    ///
    /// # Errors
    ///
    /// As [`SessionCookie::derive_keys`]: no secret, or one shorter than 32 bytes.
    pub fn new(cookie: &SessionCookie) -> Result<Self, ConfigError> {
        let keys = cookie
            .derive_keys("cookie store seal v1")?
            .iter()
            .filter_map(|key| UnboundKey::new(&CHACHA20_POLY1305, key).ok())
            .map(LessSafeKey::new)
            .collect();
        Ok(Self {
            keys,
            name: cookie.name().to_owned(),
            random: SystemRandom::new(),
        })
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.name.len() + 1);
        aad.push(VERSION);
        aad.extend_from_slice(self.name.as_bytes());
        aad
    }

    /// Seals `record` with the newest key into a sealed id.
    fn seal(&self, record: &Record) -> Result<SessionId, CookieStoreError> {
        let mut payload = serde_json::to_vec(record)
            .map_err(|error| CookieStoreError::Seal(error.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CookieStoreError::Seal("the random generator failed".to_owned()))?;
        let Some(key) = self.keys.first() else {
            return Err(CookieStoreError::Seal("no key".to_owned()));
        };
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.aad()),
            &mut payload,
        )
        .map_err(|_| CookieStoreError::Seal("the cipher failed".to_owned()))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + payload.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&payload);
        let value = URL_SAFE_NO_PAD.encode(sealed);
        let size = self.name.len() + 1 + value.len() + SIGNATURE_LEN;
        if size > MAX_COOKIE_BYTES {
            return Err(CookieStoreError::TooLarge {
                size,
                limit: MAX_COOKIE_BYTES,
            });
        }
        Ok(SessionId::opaque(value))
    }

    /// The live session sealed in `id`, its expiry refreshed (the layer re-seals it through
    /// `update` after the request).
    fn live(&self, id: &SessionId) -> Option<Record> {
        let mut record = self.open(id)?;
        record.touch(SystemTime::now()).then_some(record)
    }

    /// Opens a sealed id with any key; `None` if it does not open.
    fn open(&self, id: &SessionId) -> Option<Record> {
        let sealed = URL_SAFE_NO_PAD.decode(id.as_str()).ok()?;
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buffer = ciphertext.to_vec();
            let plain = key
                .open_in_place(nonce, Aad::from(self.aad()), &mut buffer)
                .ok()?;
            serde_json::from_slice(plain).ok()
        })
    }
}

impl SessionStore for CookieStore {
    type Error = CookieStoreError;

    const IDS: Ids = Ids::Sealed;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, CookieStoreError> {
        Ok(self.live(id))
    }

    /// The session is in the id: always at hand.
    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, CookieStoreError>> {
        Some(Ok(self.live(id)))
    }

    async fn create(&self, record: &Record) -> Result<SessionId, CookieStoreError> {
        self.seal(record)
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, CookieStoreError> {
        let now = SystemTime::now();
        match self.open(id) {
            Some(mut record) if !record.is_expired(now) => {
                record.apply(changes, now);
                self.seal(&record).map(Update::Reissued)
            }
            _ => Ok(Update::Missing),
        }
    }

    /// Nothing to delete on the server: the layer clears the cookie.
    async fn delete(&self, _id: &SessionId) -> Result<(), CookieStoreError> {
        Ok(())
    }
}

/// A session too large for a cookie is refused (500): no retry makes it fit.
impl StoreError for CookieStoreError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::TooLarge { .. } => FailureKind::Rejected,
            _ => FailureKind::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloakroom::store::Entry;
    use proptest::prelude::*;

    use super::*;

    fn store(name: &str, secrets: &[[u8; 32]]) -> CookieStore {
        CookieStore::new(&SessionCookie::new(name).secrets(secrets)).expect("the store")
    }

    fn record(pairs: &[(&str, &str)]) -> Record {
        let mut record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
        for (key, json) in pairs {
            record.entries.insert(
                (*key).to_owned(),
                Entry {
                    json: (*json).to_owned(),
                    flash: false,
                },
            );
        }
        record
    }

    proptest! {
        #[test]
        fn seal_then_open_round_trips(key in "\\\\PC{0,20}", value in "[ -~]{0,200}", flash in any::<bool>()) {
            let store = store("sid", &[[3u8; 32]]);
            let mut original = record(&[]);
            original.entries.insert(key, Entry { json: serde_json::json!(value).to_string(), flash });
            let sealed = store.seal(&original);
            prop_assert!(sealed.is_ok());
            let sealed = sealed.unwrap_or_else(|_| SessionId::generate());
            let parsed = Ids::Sealed.parse(sealed.as_str());
            prop_assert_eq!(parsed.as_ref(), Some(&sealed));
            prop_assert_eq!(store.open(&sealed), Some(original));
        }

        #[test]
        fn nothing_but_a_sealed_value_opens(raw in "[A-Za-z0-9_-]{0,400}") {
            let store = store("sid", &[[3u8; 32]]);
            prop_assert_eq!(store.open(&SessionId::opaque(raw.as_str())), None);
        }
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let store = store("sid", &[[3u8; 32]]);
        let record = record(&[("a", "1")]);
        let first = store.seal(&record).expect("seal");
        let second = store.seal(&record).expect("seal");
        assert_ne!(first, second);
    }

    #[test]
    fn tampered_truncated_foreign_or_renamed_values_do_not_open() {
        let ours = store("sid", &[[3u8; 32]]);
        let sealed = ours.seal(&record(&[("user", "\"ada\"")])).expect("seal");
        let value = sealed.as_str();
        let mut flipped = value.as_bytes().to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        for bad in [
            &value[..value.len() - 1],
            &value[..20],
            flipped.as_str(),
            "",
            "AAAA",
        ] {
            assert_eq!(ours.open(&SessionId::opaque(bad)), None, "{bad:?} opened");
        }
        assert_eq!(
            store("sid", &[[4u8; 32]]).open(&sealed),
            None,
            "another app's key opened it"
        );
        assert_eq!(
            store("other", &[[3u8; 32]]).open(&sealed),
            None,
            "it opened under another cookie name"
        );
    }

    #[test]
    fn an_older_secret_opens_and_the_newest_reseals() {
        let old = store("sid", &[[3u8; 32]]);
        let rotated = store("sid", &[[9u8; 32], [3u8; 32]]);
        let sealed = old.seal(&record(&[("n", "1")])).expect("seal");
        assert!(rotated.open(&sealed).is_some());
        let resealed = rotated.seal(&record(&[("n", "1")])).expect("seal");
        assert!(store("sid", &[[9u8; 32]]).open(&resealed).is_some());
        assert!(old.open(&resealed).is_none());
    }

    #[test]
    fn a_session_too_large_for_a_cookie_is_an_error_naming_size_and_limit() {
        let store = store("sid", &[[3u8; 32]]);
        let big = format!("\"{}\"", "x".repeat(4000));
        let error = store.seal(&record(&[("big", &big)])).err();
        assert!(matches!(
            error,
            Some(CookieStoreError::TooLarge {
                limit: MAX_COOKIE_BYTES,
                ..
            })
        ));
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("over the 3900-byte limit"), "{message}");
        assert_eq!(
            CookieStoreError::TooLarge { size: 1, limit: 1 }.failure_kind(),
            FailureKind::Rejected
        );
    }
}
