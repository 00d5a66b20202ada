//! Errors: of the configuration, and of a handler's use of a session.

/// A problem with the layer's configuration, found when the layer is built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No secret to sign cookies with.
    #[error(
        "no cookie secret configured: give SessionCookie::secrets at least one secret of 32 bytes or more"
    )]
    NoSecret,
    /// A secret is too short to be a safe HMAC key.
    #[error("cookie secret #{position} is {len} bytes long; secrets must be at least {min} bytes")]
    SecretTooShort {
        /// The secret's position in the list, from 1 (the newest).
        position: usize,
        /// Its length in bytes.
        len: usize,
        /// The minimum length.
        min: usize,
    },
    /// The environment variable [`SessionCookie::secrets_from_env`] reads has no secrets.
    ///
    /// [`SessionCookie::secrets_from_env`]: crate::SessionCookie::secrets_from_env
    #[error(
        "{variable} {reason}: set it to a comma-separated list of secrets, newest first, each at least 32 bytes (make one with `openssl rand -hex 32`)"
    )]
    SecretsNotSet {
        /// The variable.
        variable: String,
        /// `is not set`, or `is not UTF-8 text`.
        reason: &'static str,
    },
    /// A secret in the environment variable is empty or too short.
    #[error(
        "secret #{position} of {variable} is {len} bytes long; each must be at least {min} bytes{}",
        if *.len == 0 { " (an empty one comes from a trailing or doubled comma)" } else { "" }
    )]
    SecretFromEnv {
        /// The variable.
        variable: String,
        /// The secret's position in the list, from 1.
        position: usize,
        /// Its length in bytes.
        len: usize,
        /// The minimum length.
        min: usize,
    },
    /// The cookie name has characters a cookie name cannot have.
    #[error("cookie name {name:?} is not a valid cookie name (RFC 6265 token characters only)")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// A `Path` or `Domain` that is empty or would break the `Set-Cookie` header.
    #[error(
        "cookie {attribute} {value:?} is invalid: it must be non-empty printable ASCII without ';'"
    )]
    InvalidAttribute {
        /// `Path` or `Domain`.
        attribute: &'static str,
        /// The value given.
        value: String,
    },
    /// A `__Host-` cookie must be `Secure`, have `Path=/` and no `Domain`; browsers drop it otherwise.
    #[error("cookie {name:?} uses the __Host- prefix, which requires Secure, Path=/ and no Domain")]
    HostPrefix {
        /// The name given.
        name: String,
    },
    /// A `__Secure-` cookie must be `Secure`; browsers drop it otherwise.
    #[error("cookie {name:?} uses the __Secure- prefix, which requires Secure")]
    SecurePrefix {
        /// The name given.
        name: String,
    },
    /// A token header ([`Transport`](crate::Transport)) that browsers or proxies give another
    /// meaning, or that a page may send cross-site without asking.
    #[error(
        "{name:?} cannot carry the session token: browsers or proxies give it another meaning, or send it cross-site unasked; choose a header of your own, such as x-session-token"
    )]
    TokenHeader {
        /// The header's name.
        name: String,
    },
    /// Browsers reject a `Partitioned` cookie without `Secure`.
    #[error("a Partitioned cookie requires Secure; browsers drop it otherwise")]
    PartitionedWithoutSecure,
    /// Browsers reject `SameSite=None` without `Secure`.
    #[error("SameSite=None requires Secure; browsers drop such a cookie")]
    SameSiteNoneWithoutSecure,
}

/// A handler's use of a [`Session`](crate::Session) that could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The value given to `set` or `flash` could not be turned into JSON.
    #[error("session value {key:?} could not be serialized: {source}")]
    Serialize {
        /// The key being set.
        key: String,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The stored value could not be read as the type asked for.
    #[error("session value {key:?} is not a valid {type_name}: {source}")]
    Deserialize {
        /// The key being read.
        key: String,
        /// The type asked for.
        type_name: &'static str,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The session could not be loaded: the store failed, and the layer runs handlers anyway
    /// ([`LoadFailure::RunHandler`](crate::LoadFailure::RunHandler)). Whatever the handler
    /// answers, the client gets the layer's store-error response.
    #[error("the session store is unavailable, so the session could not be loaded")]
    Unavailable,
    /// The session was destroyed earlier in this request and can no longer be changed.
    #[error("the session was destroyed in this request and cannot be changed")]
    Destroyed,
    /// An owner name that is empty or too long for a store's index.
    #[error("a session owner must be 1 to {max} bytes long; this one is {len}")]
    InvalidOwner {
        /// Its length in bytes.
        len: usize,
        /// The longest allowed, [`MAX_OWNER_LEN`](crate::store::MAX_OWNER_LEN).
        max: usize,
    },
}
