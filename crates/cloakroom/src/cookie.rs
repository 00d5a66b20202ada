//! The session cookie's configuration: its name, attributes and secrets, checked once into a
//! [`CookieSigner`].

use std::fmt;

use crate::error::ConfigError;
use crate::signer::{CookieSigner, derive};

/// The shortest secret accepted, in bytes: the size of an HMAC-SHA256 key.
pub const MIN_SECRET_LEN: usize = 32;

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on requests from the same site.
    Strict,
    /// Sent on same-site requests and top-level navigations from other sites (the default).
    #[default]
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// The `Priority` attribute of the session cookie (Chromium's): which cookies a browser evicts
/// last when a site has too many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Evicted first.
    Low,
    /// What browsers assume without the attribute.
    Medium,
    /// Evicted last: a session cookie lost to eviction logs the user out.
    High,
}

impl Priority {
    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
        }
    }
}

/// A secret that signs or verifies session cookies. Its `Debug` shows only its length.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// How the session cookie looks and how it is signed.
///
/// Defaults: name `__session`, `Path=/`, no `Domain`, `HttpOnly`, `Secure`, `SameSite=Lax`,
/// and `Max-Age` following the session's idle timeout on every response. Secrets are a list:
/// the first signs, every one verifies, so a new secret can be put first while cookies signed
/// with the old one keep working (and are re-signed with the new one as they come back).
///
/// The configuration is checked when the layer is built ([`SessionLayer::new`]): no secret, a
/// secret shorter than [`MIN_SECRET_LEN`] bytes, an invalid name, or a `__Host-`/`__Secure-`
/// name whose rules are broken is a [`ConfigError`] naming the problem.
///
/// [`SessionLayer::new`]: crate::SessionLayer::new
///
/// ```
/// use cloakroom::{SameSite, SessionCookie};
///
/// /// Your app's configuration, read at start-up.
/// struct Config {
///     session_secret: String,
///     previous_session_secret: String,
/// }
///
/// fn cookie(config: &Config) -> SessionCookie {
///     SessionCookie::new("__Host-session")
///         .secrets([&config.session_secret, &config.previous_session_secret]) // newest first
///         .same_site(SameSite::Strict)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct SessionCookie {
    name: String,
    domain: Option<String>,
    path: String,
    http_only: bool,
    secure: bool,
    same_site: SameSite,
    priority: Option<Priority>,
    persistent: bool,
    partitioned: bool,
    secrets: Vec<Secret>,
}

impl Default for SessionCookie {
    fn default() -> Self {
        Self::new("__session")
    }
}

impl SessionCookie {
    /// A cookie called `name` with the secure defaults and no secret yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            domain: None,
            path: "/".to_owned(),
            http_only: true,
            secure: true,
            same_site: SameSite::Lax,
            priority: None,
            persistent: true,
            partitioned: false,
            secrets: Vec::new(),
        }
    }

    /// The signing secrets, newest first: the first signs, all verify. Each must be at least
    /// [`MIN_SECRET_LEN`] random bytes; keep them out of source code.
    pub fn secrets<I>(mut self, secrets: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.secrets = secrets
            .into_iter()
            .map(|secret| Secret(secret.as_ref().to_vec()))
            .collect();
        self
    }

    /// The signing secrets from the environment variable `variable`: a comma-separated list,
    /// newest first, each at least [`MIN_SECRET_LEN`] bytes. The text of each is the secret,
    /// byte for byte (spaces around a comma are trimmed); make one with
    /// `openssl rand -hex 32`. To rotate, put a new secret in front and drop the last one
    /// after an idle timeout.
    ///
    /// ```
    /// use cloakroom::{ConfigError, SessionCookie};
    ///
    /// // SESSION_SECRETS="$(openssl rand -hex 32),$(openssl rand -hex 32)"
    /// # unsafe { std::env::set_var("DOC_SECRETS", format!("{},{}", "a".repeat(64), "b".repeat(64))) };
    /// let cookie = SessionCookie::new("__Host-session").secrets_from_env("DOC_SECRETS")?;
    ///
    /// let missing = SessionCookie::new("s").secrets_from_env("NO_SUCH_VARIABLE");
    /// assert!(matches!(missing, Err(ConfigError::SecretsNotSet { .. })));
    /// # Ok::<(), ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::SecretsNotSet`] naming the variable if it is not set (or not UTF-8);
    /// [`ConfigError::SecretFromEnv`] naming the variable and the position of a secret that is
    /// empty (a trailing or doubled comma) or too short.
    pub fn secrets_from_env(self, variable: &str) -> Result<Self, ConfigError> {
        self.secrets_from(variable, std::env::var(variable))
    }

    /// [`secrets_from_env`](Self::secrets_from_env) of what reading `variable` gave.
    fn secrets_from(
        self,
        variable: &str,
        read: Result<String, std::env::VarError>,
    ) -> Result<Self, ConfigError> {
        let not_set = |reason: &'static str| ConfigError::SecretsNotSet {
            variable: variable.to_owned(),
            reason,
        };
        let value = match read {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Err(not_set("is not set")),
            Err(std::env::VarError::NotUnicode(_)) => return Err(not_set("is not UTF-8 text")),
        };
        let secrets: Vec<&str> = value.split(',').map(str::trim).collect();
        for (index, secret) in secrets.iter().enumerate() {
            if secret.len() < MIN_SECRET_LEN {
                return Err(ConfigError::SecretFromEnv {
                    variable: variable.to_owned(),
                    position: index + 1,
                    len: secret.len(),
                    min: MIN_SECRET_LEN,
                });
            }
        }
        Ok(self.secrets(secrets))
    }

    /// A random secret of 32 bytes, made now: for demos, development and tests. Cookies it
    /// signs are worthless once the process exits, and no other instance accepts them; in
    /// production give every instance the same secrets
    /// ([`secrets_from_env`](Self::secrets_from_env)).
    ///
    /// ```
    /// use cloakroom::{ConfigError, SessionCookie};
    ///
    /// // A development build without SESSION_SECRETS gets a random secret (sessions end on
    /// // restart); a release build without it fails to start, as it should.
    /// let cookie = if cfg!(debug_assertions) && std::env::var_os("SESSION_SECRETS").is_none() {
    ///     SessionCookie::new("__session").random_secret()
    /// } else {
    ///     SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?
    /// };
    /// # Ok::<(), ConfigError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails, as
    /// [`SessionId::generate`](crate::SessionId::generate) does.
    pub fn random_secret(self) -> Self {
        self.secret(crate::id::random::<32>("a cookie secret"))
    }

    /// A single signing secret; shorthand for `secrets([secret])`.
    pub fn secret(self, secret: impl AsRef<[u8]>) -> Self {
        self.secrets([secret])
    }

    /// The `Domain` attribute. Unset (the default) means this host only.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The `Path` attribute, `/` by default.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Whether page scripts are kept from reading the cookie (`HttpOnly`, on by default).
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Whether the cookie is only sent over HTTPS (`Secure`, on by default). Turn it off only
    /// for development on `http://localhost`.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether the cookie outlives the browser: `true` (the default) sends `Max-Age`, following
    /// the session's idle timeout; `false` sends none, a browser-session cookie that the
    /// browser drops when it closes ("don't remember me"). The server-side idle timeout and
    /// lifetime apply either way. A handler can choose per session, at login say, with
    /// [`Session::set_persistent`](crate::Session::set_persistent), and the choice stays with
    /// that browser's cookie.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// The `Partitioned` attribute (CHIPS, off by default): for an app embedded in other
    /// sites (an iframe), the browser keeps a separate cookie per top-level site, so the
    /// session cannot follow the user from one embedding site to another. Needs
    /// [`secure`](Self::secure) (browsers drop a `Partitioned` cookie without it) and, to be
    /// sent in a cross-site iframe at all, [`SameSite::None`]. Switching a live site to it
    /// needs a new cookie name: browsers keep the old unpartitioned cookie beside the new one,
    /// and a logout or login would only reach the partitioned one.
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// The `SameSite` attribute, [`SameSite::Lax`] by default.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The `Priority` attribute; none by default (browsers then assume `Medium`). Browsers that
    /// do not know the attribute ignore it.
    ///
    /// ```
    /// use cloakroom::{Priority, SessionCookie};
    ///
    /// let cookie = SessionCookie::new("__Host-session").priority(Priority::High);
    /// ```
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One 32-byte key per secret, newest first, derived for `purpose` with HKDF: for a store
    /// that seals sessions with the layer's secrets (the newest seals, all open).
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoSecret`] or [`ConfigError::SecretTooShort`].
    pub fn derive_keys(&self, purpose: &str) -> Result<Vec<[u8; 32]>, ConfigError> {
        self.check_secrets()?;
        Ok(self
            .secrets
            .iter()
            .map(|secret| derive(&secret.0, purpose))
            .collect())
    }

    fn check_secrets(&self) -> Result<(), ConfigError> {
        if self.secrets.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        match self
            .secrets
            .iter()
            .enumerate()
            .find(|(_, secret)| secret.0.len() < MIN_SECRET_LEN)
        {
            Some((index, secret)) => Err(ConfigError::SecretTooShort {
                position: index + 1,
                len: secret.0.len(),
                min: MIN_SECRET_LEN,
            }),
            None => Ok(()),
        }
    }

    /// Checks the configuration and derives the signing keys, for signing or verifying a
    /// session cookie outside the layer (a WebSocket upgrade handled elsewhere, say). The
    /// layer does this itself.
    ///
    /// # Errors
    ///
    /// As [`SessionLayer::new`](crate::SessionLayer::new).
    ///
    /// ```
    /// # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
    /// let cookie = cloakroom::SessionCookie::new("sid").secrets_from_env("SESSION_SECRETS")?;
    /// let signer = cookie.into_signer()?;
    /// let signed = signer.sign("some-id", std::time::SystemTime::now());
    /// assert_eq!(signer.verify(&signed).map(|v| v.value()), Some("some-id"));
    /// # Ok::<(), cloakroom::ConfigError>(())
    /// ```
    pub fn into_signer(self) -> Result<CookieSigner, ConfigError> {
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return Err(ConfigError::InvalidName { name: self.name });
        }
        for (attribute, value) in [("Path", Some(&self.path)), ("Domain", self.domain.as_ref())] {
            if let Some(value) = value {
                if value.is_empty() || !value.bytes().all(is_attribute_byte) {
                    return Err(ConfigError::InvalidAttribute {
                        attribute,
                        value: value.clone(),
                    });
                }
            }
        }
        if self.name.starts_with("__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(ConfigError::HostPrefix { name: self.name });
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return Err(ConfigError::SecurePrefix { name: self.name });
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        if self.partitioned && !self.secure {
            return Err(ConfigError::PartitionedWithoutSecure);
        }
        self.check_secrets()?;
        let mut attributes = format!("; Path={}", self.path);
        if let Some(domain) = &self.domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        if self.http_only {
            attributes.push_str("; HttpOnly");
        }
        if self.secure {
            attributes.push_str("; Secure");
        }
        attributes.push_str("; SameSite=");
        attributes.push_str(self.same_site.as_str());
        if let Some(priority) = self.priority {
            attributes.push_str("; Priority=");
            attributes.push_str(priority.as_str());
        }
        if self.partitioned {
            attributes.push_str("; Partitioned");
        }
        let secrets: Vec<&[u8]> = self.secrets.iter().map(|secret| &secret.0[..]).collect();
        Ok(CookieSigner::new(
            self.name,
            attributes,
            self.persistent,
            &secrets,
        ))
    }
}

/// RFC 6265 `token` characters, the ones a cookie name may use.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Printable ASCII other than `;`, so an attribute cannot inject another attribute.
fn is_attribute_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b';'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_the_environment_name_the_variable_and_the_position() {
        let from = |value: Result<String, std::env::VarError>| {
            SessionCookie::new("s")
                .secrets_from("SESSION_SECRETS", value)
                .err()
                .map(|error| error.to_string())
        };
        let good = format!("{} , {}", "a".repeat(32), "b".repeat(40));
        assert_eq!(from(Ok(good)), None);
        let missing = from(Err(std::env::VarError::NotPresent));
        assert!(missing.is_some_and(
            |e| e.starts_with("SESSION_SECRETS is not set") && e.contains("openssl rand")
        ));
        let trailing = from(Ok(format!("{},", "a".repeat(32))));
        assert!(trailing.is_some_and(
            |e| e.contains("secret #2 of SESSION_SECRETS is 0 bytes") && e.contains("comma")
        ));
        let short = from(Ok("hunter2".to_owned()));
        assert!(short.is_some_and(
            |e| e.contains("secret #1 of SESSION_SECRETS is 7 bytes") && !e.contains("comma")
        ));
        let secrets = SessionCookie::new("s")
            .secrets_from("V", Ok(format!(" {} ", "c".repeat(32))))
            .map(|cookie| cookie.secrets.len());
        assert_eq!(secrets, Ok(1));
    }

    #[test]
    fn a_random_secret_is_long_enough_and_new_each_time() {
        let first = SessionCookie::new("s").random_secret().secrets;
        let second = SessionCookie::new("s").random_secret().secrets;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0.len(), MIN_SECRET_LEN);
        assert_ne!(first[0].0, second[0].0);
    }

    const NEW: &[u8] = b"0123456789abcdef0123456789abcdef-new";

    #[test]
    fn configuration_errors_name_the_problem() {
        let err = |cookie: SessionCookie| cookie.into_signer().err().map(|e| e.to_string());
        let ok = SessionCookie::new("sid").secret(NEW);
        assert_eq!(
            err(SessionCookie::new("sid")),
            Some("no cookie secret configured: give SessionCookie::secrets at least one secret of 32 bytes or more".into())
        );
        assert_eq!(
            err(ok.clone().secrets([NEW, b"short"])),
            Some("cookie secret #2 is 5 bytes long; secrets must be at least 32 bytes".into())
        );
        assert!(
            err(ok.clone().name_for_test("bad name")).is_some_and(|e| e.contains("\"bad name\""))
        );
        assert!(err(ok.clone().path("/a;b")).is_some_and(|e| e.contains("\"/a;b\"")));
        let host = ok.clone().name_for_test("__Host-sid");
        assert!(err(host.clone()).is_none());
        assert!(err(host.clone().secure(false)).is_some_and(|e| e.contains("__Host-")));
        assert!(err(host.clone().path("/app")).is_some_and(|e| e.contains("__Host-")));
        assert!(err(host.domain("example.com")).is_some_and(|e| e.contains("__Host-")));
        assert!(
            err(ok.clone().name_for_test("__Secure-sid").secure(false))
                .is_some_and(|e| e.contains("__Secure-"))
        );
        assert!(err(ok.same_site(SameSite::None).secure(false)).is_some());
    }

    #[test]
    fn debug_redacts_secrets() {
        let cookie = SessionCookie::new("sid").secret(NEW);
        let shown = format!("{cookie:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        let signer = SessionCookie::new("sid").secret(NEW).into_signer();
        let shown = format!("{signer:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }

    impl SessionCookie {
        fn name_for_test(mut self, name: &str) -> Self {
            self.name = name.to_owned();
            self
        }
    }
}
