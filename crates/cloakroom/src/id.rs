//! Session ids: random, unguessable, and validated before they reach a store.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// Random bytes in a generated id: 192 bits, well above the 128 the OWASP session guidance asks for.
pub(crate) const ID_BYTES: usize = 24;
/// Length of a generated id in base64url without padding.
pub(crate) const ID_LEN: usize = ID_BYTES / 3 * 4;

/// The identifier of one session: 192 bits from the operating system's CSPRNG, in base64url.
///
/// A `SessionId` is only ever made by [`SessionId::generate`] or by [`SessionId::parse`], which
/// accepts exactly the shape `generate` produces. A cookie value that is not of that shape is
/// never turned into a `SessionId` and so never reaches a store, a file name or a Redis key.
///
/// `Debug` and `Display` print only a short hash of the id, so logs can correlate requests of one
/// session without leaking a credential. [`SessionId::as_str`] gives the real value to stores.
///
/// ```
/// use cloakroom::SessionId;
///
/// let id = SessionId::generate();
/// assert_eq!(id.as_str().len(), 32);
/// assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
/// assert_eq!(SessionId::parse("../../etc/passwd"), None);
/// assert!(!format!("{id:?}").contains(id.as_str()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Repr);

/// Ids of the generated shape are kept inline with their bytes: parsing the cookie of every
/// request allocates nothing, and a store keyed by bytes does not decode again. Only a store's
/// own opaque ids are shared strings, and [`SessionId::opaque`] never makes one of the generated
/// shape, so equal ids have equal representations.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Generated {
        bytes: [u8; ID_BYTES],
        text: [u8; ID_LEN],
    },
    Opaque(Arc<str>),
}

/// `N` bytes from the operating system's generator, for `what`.
///
/// # Panics
///
/// If the generator fails (it does not on any supported platform): there is no weaker
/// fallback, since a guessable id or secret would hand accounts to attackers.
pub(crate) fn random<const N: usize>(what: &str) -> [u8; N] {
    let mut bytes = [0u8; N];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the operating system's random number generator failed; refusing to make {what}");
    }
    bytes
}

impl SessionId {
    /// Generates a fresh id from ring's `SystemRandom`.
    ///
    /// # Panics
    ///
    /// If the operating system's generator fails (it does not on any supported platform).
    /// There is no weaker fallback: a guessable id would hand accounts to attackers.
    pub fn generate() -> Self {
        Self::from_bytes(&Self::random_bytes())
    }

    /// The random bytes of a fresh id (see [`generate`](Self::generate), which panics the same
    /// way), for a store that keys by bytes and makes the id only once the bytes are free.
    pub(crate) fn random_bytes() -> [u8; ID_BYTES] {
        random("a session id")
    }

    /// The id that stands for `bytes`: the inverse of [`bytes`](Self::bytes).
    pub(crate) fn from_bytes(bytes: &[u8; ID_BYTES]) -> Self {
        let mut text = [0; ID_LEN];
        let written = URL_SAFE_NO_PAD.encode_slice(bytes, &mut text);
        debug_assert_eq!(
            written.ok(),
            Some(ID_LEN),
            "24 bytes are 32 base64url characters"
        );
        Self(Repr::Generated {
            bytes: *bytes,
            text,
        })
    }

    /// Accepts `value` only if it has exactly the shape of a generated id: 32 characters of the
    /// base64url alphabet (`A-Z a-z 0-9 - _`). Anything else (paths, NUL, non-ASCII, too long,
    /// too short) is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let text: [u8; ID_LEN] = value.as_bytes().try_into().ok()?;
        // Decoding is the check: every 32 characters of the alphabet (and nothing else, not
        // even padding) decode to exactly 24 bytes.
        let mut bytes = [0; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) => Some(Self(Repr::Generated { bytes, text })),
            _ => None,
        }
    }

    /// An id a store made itself that is not of the generated shape: the sealed session of a
    /// store whose ids are [`Ids::Sealed`](crate::store::Ids::Sealed). Stores that use ids as
    /// keys or file names must accept only [`SessionId::parse`]d ids.
    /// A value of the generated shape gives the same id as [`parse`](Self::parse).
    pub fn opaque(value: impl Into<Arc<str>>) -> Self {
        let value = value.into();
        Self::parse(&value).unwrap_or(Self(Repr::Opaque(value)))
    }

    /// The id itself, for stores to use as a key or file name. Treat it as a credential.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always ASCII: it was decoded from, or encoded to, base64url.
            Repr::Generated { text, .. } => std::str::from_utf8(text).unwrap_or_default(),
            Repr::Opaque(value) => value,
        }
    }

    /// `prefix` followed by the id: the key a store files the session under (a Redis or
    /// memcached key, say). Treat it as a credential too.
    ///
    /// ```
    /// # use cloakroom::SessionId;
    /// let id = SessionId::generate();
    /// assert_eq!(id.prefixed("session:"), format!("session:{}", id.as_str()));
    /// ```
    pub fn prefixed(&self, prefix: &str) -> String {
        // Stores make one on every call: no formatting machinery.
        let id = self.as_str();
        let mut key = String::with_capacity(prefix.len() + id.len());
        key.push_str(prefix);
        key.push_str(id);
        key
    }

    /// The random bytes a generated or parsed id stands for (`None` for an opaque id). Every
    /// 32-character base64url string decodes to exactly one 24-byte value, so distinct ids
    /// never share their bytes.
    pub(crate) fn bytes(&self) -> Option<[u8; ID_BYTES]> {
        match &self.0 {
            Repr::Generated { bytes, .. } => Some(*bytes),
            Repr::Opaque(_) => None,
        }
    }

    /// A short, stable hash of the id (8 hex digits of SHA-256) that names the session in logs.
    pub fn short_hash(&self) -> String {
        let digest = digest::digest(&digest::SHA256, self.as_str().as_bytes());
        digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `key` (a store's key or file name for a session) with the id it ends with, if it ends
    /// with one, replaced by the id's `#` and short hash: what store errors and logs carry,
    /// since an id is a credential. `ends_with` is what follows the id in `key` (`".json"`,
    /// or `""`).
    ///
    /// ```
    /// use cloakroom::SessionId;
    ///
    /// let id = SessionId::generate();
    /// let key = format!("session:{}", id.as_str());
    /// assert_eq!(SessionId::redact(&key, ""), format!("session:{id}"));
    /// assert_eq!(SessionId::redact("session:short", ""), "session:short");
    /// ```
    pub fn redact(key: &str, ends_with: &str) -> String {
        let Some(rest) = key.strip_suffix(ends_with) else {
            return key.to_owned();
        };
        let Some(split) = rest.len().checked_sub(ID_LEN) else {
            return key.to_owned();
        };
        match rest.get(split..).and_then(Self::parse) {
            Some(id) => format!("{}{id}{ends_with}", &rest[..split]),
            None => key.to_owned(),
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(#{})", self.short_hash())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.short_hash())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_ids_are_distinct_long_and_base64url() {
        let ids: HashSet<_> = (0..10_000).map(|_| SessionId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.as_str().len(), ID_LEN);
            assert_eq!(SessionId::parse(id.as_str()).as_ref(), Some(id));
        }
        let bytes: HashSet<_> = ids.iter().map(SessionId::bytes).collect();
        assert_eq!(bytes.len(), 10_000);
        assert!(!bytes.contains(&None));
    }

    #[test]
    fn only_ids_of_the_generated_shape_have_bytes() {
        let id = SessionId::generate();
        let bytes = id.bytes();
        assert_eq!(bytes.map(|bytes| SessionId::from_bytes(&bytes)), Some(id));
        for opaque in [
            "",
            "short",
            "not base64url but 32 characters!",
            &"A".repeat(36),
        ] {
            assert_eq!(SessionId::opaque(opaque).bytes(), None, "{opaque:?}");
        }
    }

    #[test]
    fn parse_rejects_everything_not_shaped_like_an_id() {
        let good = SessionId::generate();
        let long = format!("{}A", good.as_str());
        let short = &good.as_str()[1..];
        let with_slash = format!("../{}", &good.as_str()[3..]);
        let with_nul = format!("\0{}", &good.as_str()[1..]);
        let with_dot = format!(".{}", &good.as_str()[1..]);
        let non_ascii = format!("é{}", &good.as_str()[2..]);
        for bad in [
            "",
            short,
            &long,
            &with_slash,
            &with_nul,
            &with_dot,
            &non_ascii,
            "/etc/passwd",
        ] {
            assert_eq!(SessionId::parse(bad), None, "accepted {bad:?}");
        }
    }

    #[test]
    fn an_opaque_value_of_the_generated_shape_is_the_parsed_id() {
        let id = SessionId::generate();
        let opaque = SessionId::opaque(id.as_str());
        assert_eq!(opaque, id);
        assert_eq!(opaque.bytes(), id.bytes());
        assert_eq!(SessionId::opaque("sealed.value").as_str(), "sealed.value");
    }

    proptest::proptest! {
        #[test]
        fn parse_accepts_exactly_32_base64url_characters(
            value in "[A-Za-z0-9_-]{32}|[A-Za-z0-9_=+/.\\-]{30,34}|\\PC{0,40}",
        ) {
            let shaped = value.len() == ID_LEN
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let parsed = SessionId::parse(&value);
            proptest::prop_assert_eq!(parsed.is_some(), shaped, "{:?}", value);
            if let Some(id) = parsed {
                proptest::prop_assert_eq!(id.as_str(), value.as_str());
                let bytes = id.bytes();
                proptest::prop_assert_eq!(bytes.map(|bytes| SessionId::from_bytes(&bytes)), Some(id));
            }
        }
    }

    #[test]
    fn debug_and_display_do_not_reveal_the_id() {
        let id = SessionId::generate();
        for shown in [format!("{id:?}"), id.to_string()] {
            assert!(!shown.contains(id.as_str()));
            assert!(shown.contains(&id.short_hash()));
        }
        assert_eq!(id.short_hash().len(), 8);
    }
}
