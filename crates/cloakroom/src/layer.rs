//! `SessionLayer`: the layer and its configuration. The request path reads top to bottom in
//! `service` (the cookie, and what to read before the handler) → `plan` (what the request does
//! to its session) → `future` (load, handler, save) → `save` (the store call after the
//! handler) → `headers` (the cookie and caching headers).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;

use crate::audit::{Audit, AuditEvent};
use crate::client::Notes;
use crate::cookie::SessionCookie;
use crate::error::ConfigError;
use crate::failure::{FailureStatus, StoreFailure};
use crate::owners::Owners;
use crate::save::MAX_DETACHED;
use crate::service::{SessionService, Shared};
use crate::signer::CookieSigner;
use crate::store::{FOREVER, OwnerIndex, SessionStore};
use crate::transport::Transport;

/// The idle timeout when none is configured: 7 days.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How often a session in use has its expiry refreshed when none is configured: 60 seconds
/// (at most a tenth of the idle timeout).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How long the layer waits for the store when none is configured: 10 seconds, for the load
/// before the handler and again for the save after it.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds sessions to a Tower service: loads the session named by the request's signed cookie
/// into the request's extensions, runs the inner service, then saves what the handler changed
/// and sets the cookie.
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use cloakroom::{MemoryStore, Session, SessionCookie, SessionLayer};
///
/// async fn home(Extension(session): Extension<Session>) -> String {
///     let visits: u64 = session.get("visits").ok().flatten().unwrap_or(0) + 1;
///     let _ = session.set("visits", visits);
///     format!("visit {visits}")
/// }
///
/// # fn main() -> Result<(), cloakroom::ConfigError> {
/// # unsafe { std::env::set_var("SESSION_SECRETS", "0123456789abcdef".repeat(4)) };
/// // SESSION_SECRETS="$(openssl rand -hex 32)": a comma-separated list, newest first
/// let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
/// let app: Router = Router::new()
///     .route("/", get(home))
///     .layer(SessionLayer::new(cookie, MemoryStore::new())?);
/// # Ok(()) }
/// ```
///
/// After the handler, exactly one thing happens to the session:
///
/// - a new session nobody wrote to is not stored and gets no cookie (unless
///   [`save_uninitialized`](Self::save_uninitialized));
/// - changed keys are written (only those keys);
/// - a destroyed session is deleted and its cookie cleared;
/// - a regenerated session moves to a new id and the old one is deleted.
///
/// Every request keeps the session alive for the idle timeout, with a granularity of the
/// [`refresh_interval`](Self::refresh_interval): once the cookie is older than that (60 s by
/// default), the request refreshes the store's expiry and the response re-sends the cookie with
/// a fresh `Max-Age`. The refresh rides on the load's round trip, or, when the store has the
/// session at hand ([`read_now`](SessionStore::read_now)), on the update after the handler,
/// together with the handler's changes. Requests in between only read, and
/// their responses carry no `Set-Cookie`, which saves the store a write and every response
/// its largest header. The browser's cookie and the store's record therefore expire together,
/// at most one interval before a refresh on every request would have put them.
///
/// Apply it once per route. A layer that finds a [`Session`](crate::Session) in the request
/// already (the same layer on a nested router and the outer one, an easy mistake) passes the
/// request on untouched, so the outer one alone loads and saves the session; if the outer one
/// is a different layer (another cookie or store), it is the one handlers see, and the inner
/// one logs an error, once, naming its cookie.
///
/// When the store fails, the client gets the [`OnStoreError`](crate::OnStoreError) response (503 by default)
/// instead of the handler's, with a `tracing` error event; a failed load never runs the
/// handler with an empty session, and a failed save never sends a cookie.
pub struct SessionLayer<St, H = FailureStatus> {
    store: Arc<St>,
    config: Arc<Config>,
    on_store_error: H,
    detached: Arc<Semaphore>,
}

/// The layer's settings, shared by every request.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) cookie: CookieSigner,
    pub(crate) idle_timeout: Duration,
    pub(crate) refresh_interval: Duration,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) save_uninitialized: bool,
    pub(crate) save_on_server_error: bool,
    pub(crate) store_timeout: Option<Duration>,
    pub(crate) load_failure: LoadFailure,
    pub(crate) transport: Transport,
    /// What is noted of the client when a session is given an owner.
    pub(crate) notes: Notes,
    pub(crate) audit: Audit,
}

impl Config {
    /// The defaults, with `cookie`.
    pub(crate) fn new(cookie: CookieSigner) -> Self {
        Self {
            cookie,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            lifetime: None,
            save_uninitialized: false,
            save_on_server_error: false,
            store_timeout: Some(DEFAULT_STORE_TIMEOUT),
            load_failure: LoadFailure::Respond,
            transport: Transport::Cookie,
            notes: Notes::default(),
            audit: Audit::default(),
        }
    }
}

impl<St: SessionStore> SessionLayer<St> {
    /// A layer keeping sessions in `store`, named by `cookie`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the cookie has no secret, a secret shorter than 32 bytes, an
    /// invalid name or attribute, or a `__Host-`/`__Secure-` name whose rules it breaks.
    pub fn new(cookie: SessionCookie, store: St) -> Result<Self, ConfigError> {
        Ok(Self {
            store: Arc::new(store),
            config: Arc::new(Config::new(cookie.into_signer()?)),
            on_store_error: FailureStatus,
            detached: Arc::new(Semaphore::new(MAX_DETACHED)),
        })
    }
}

/// What a request gets when the store cannot load its session
/// ([`SessionLayer::load_failure`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The store-error response ([`on_store_error`](SessionLayer::on_store_error), a `503`
    /// by default), without running the handler. The default: no handler ever sees a
    /// session that is not the user's, whatever it calls.
    #[default]
    Respond,
    /// Run the handler with a session that cannot be used: every method that returns a
    /// `Result` answers [`SessionError::Unavailable`](crate::SessionError::Unavailable), and if
    /// the handler used the session at all, its response is replaced by the store-error
    /// response, so a route that uses the session fails closed (never "logged out") and one
    /// that does not (a health check, an asset) answers as usual. Nothing is written and no
    /// cookie is sent.
    ///
    /// The methods that cannot fail (`owner`, `id`, `has`, `is_empty`, `idle_timeout`,
    /// `deadline`, `destroy`) answer as for an empty session until the response is replaced:
    /// a handler that acts on one of them before it answers (writes to a database as an
    /// anonymous user, say) acts on that. So this is not the default: opt in where handlers
    /// read the session through `get` or `data` (with `?`) before they act. The check is made
    /// when the handler returns: a session used later, by a streaming body or a task the
    /// handler spawned, gets the empty session's answers without the response being replaced.
    RunHandler,
}

impl<St, H> SessionLayer<St, H> {
    /// How long a session lives without requests ([`DEFAULT_IDLE_TIMEOUT`], 7 days, unless
    /// set). Every request restarts it (at the granularity of the
    /// [`refresh_interval`](Self::refresh_interval)), and the cookie's `Max-Age` follows it. A
    /// handler can give one session its own with [`Session::set_idle_timeout`](crate::Session::set_idle_timeout).
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).idle_timeout = idle_timeout.min(FOREVER);
        self
    }

    /// How old a session's cookie may get before a request refreshes the session's expiry
    /// (in the store, with the load or the update it makes anyway) and re-sends the cookie with
    /// a fresh `Max-Age` ([`DEFAULT_REFRESH_INTERVAL`], 60 s, unless set). Never more than a tenth of
    /// the session's idle timeout, so a session in use keeps at least nine tenths of it.
    /// [`Duration::ZERO`] refreshes on every request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
    /// let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?
    ///     .idle_timeout(Duration::from_secs(30 * 60))
    ///     .refresh_interval(Duration::from_secs(10));
    /// # Ok(()) }
    /// ```
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.config).refresh_interval = interval;
        self
    }

    /// The longest a session can live, however active it is; none by default. Applies to
    /// sessions created from now on (it is stored with each session).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        Arc::make_mut(&mut self.config).lifetime = Some(lifetime.min(FOREVER));
        self
    }

    /// Whether a new session that no handler wrote to is stored and given a cookie anyway. Off
    /// by default, so anonymous traffic and bots cost no store writes.
    pub fn save_uninitialized(mut self, save: bool) -> Self {
        Arc::make_mut(&mut self.config).save_uninitialized = save;
        self
    }

    /// Whether changes are saved when the inner service answers with a 5xx status. Off by
    /// default: a handler that failed half-way should not leave half its changes behind. Such
    /// a response re-sends no cookie either, and a refresh that was due is left to the next
    /// request unless the load already made it (it rides on the update when the store had the
    /// session at hand). A [`Session::destroy`](crate::Session::destroy) is never dropped: a logout handler that fails
    /// after it still logs the user out (the session is deleted and the cookie cleared). A
    /// [`Session::regenerate_id`](crate::Session::regenerate_id) is dropped with the changes: the login it belongs to failed.
    pub fn save_on_server_error(mut self, save: bool) -> Self {
        Arc::make_mut(&mut self.config).save_on_server_error = save;
        self
    }

    /// Where the session's token travels: the cookie ([`Transport::Cookie`], the default), a
    /// header (APIs, mobile apps, gRPC metadata), or the header for requests that carry it and
    /// the cookie for the others. The same signing, rotation, refresh and regeneration apply.
    ///
    /// ```
    /// use cloakroom::{MemoryStore, SessionCookie, SessionLayer, Transport};
    /// use http::HeaderName;
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
    /// let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
    /// let token = HeaderName::from_static("x-session-token");
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?
    ///     .transport(Transport::CookieOrHeader(token))?;
    /// # Ok(()) }
    /// ```
    ///
    /// The header's value is the token alone, with no scheme (not `Bearer ...`). A browser app
    /// on another origin must list the header in `Access-Control-Expose-Headers`, or it cannot
    /// read the token a login gives it (and loses its session with the old id).
    ///
    /// # Errors
    ///
    /// [`ConfigError::TokenHeader`] for a header browsers or proxies give another meaning
    /// (`Cookie`, `Set-Cookie`, `Authorization`, hop-by-hop ones) or that a page may send
    /// cross-site unasked (the CORS-safelisted `Accept`, `Content-Type` and the like).
    pub fn transport(mut self, transport: Transport) -> Result<Self, ConfigError> {
        transport.check()?;
        Arc::make_mut(&mut self.config).transport = transport;
        Ok(self)
    }

    /// What a request gets when the store cannot load its session (down, or slower than the
    /// [`store_timeout`](Self::store_timeout)): the store-error response at once
    /// ([`LoadFailure::Respond`], the default), or its handler, run with a session that
    /// answers every use with an error ([`LoadFailure::RunHandler`]), so routes that never
    /// touch the session (a health check, an asset) keep working while the store is down.
    ///
    /// ```
    /// use cloakroom::{LoadFailure, MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
    /// let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?
    ///     .load_failure(LoadFailure::RunHandler);
    /// # Ok(()) }
    /// ```
    pub fn load_failure(mut self, load_failure: LoadFailure) -> Self {
        Arc::make_mut(&mut self.config).load_failure = load_failure;
        self
    }

    /// How long a request waits for the store: for the load before the handler, and again for
    /// the save after it ([`DEFAULT_STORE_TIMEOUT`], 10 s, unless set; `None` waits as long as
    /// the store takes). When it passes, the client gets the store-error response (a 503 by
    /// default, the failure a [`StoreTimedOut`](crate::StoreTimedOut)) and nothing is assumed
    /// of the call: a write in flight may still land. A logout or a regenerate runs on to
    /// the end as a task of its own, so the old id is gone once its delete succeeds even when
    /// the response said otherwise; if it fails after the response gave up, the task logs
    /// the failure. At most 1,024 such tasks of one layer wait on the store at once; past
    /// that, logouts and regenerates run in place, so a store that never answers cannot pile
    /// them up.
    ///
    /// The stores of this workspace bound their own calls too (the Redis command timeout,
    /// memcached's call timeout, the file store's lock timeout), some more loosely than this
    /// (a memcached update losing compare-and-swap rounds gives up after ten call timeouts);
    /// this is the outer bound, and the one for a store that has none. It interrupts a store
    /// call at an `.await`: a store that blocks the thread cannot be cut short.
    ///
    /// # Panics
    ///
    /// The timer is Tokio's. In a Tokio runtime built without its time driver (a `Builder`
    /// without `enable_time` or `enable_all`; `#[tokio::main]` and `#[tokio::test]` have it)
    /// the first request that waits on the store panics: turn the timeout off there with
    /// `store_timeout(None)`. Outside a Tokio runtime no timeout applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
    /// let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?
    ///     .store_timeout(Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn store_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        Arc::make_mut(&mut self.config).store_timeout = timeout.into();
        self
    }

    /// Keeps the client's `User-Agent` (its first 256 bytes) with a session when a handler
    /// gives it an owner ([`Session::set_owner`](crate::Session::set_owner)), for a list of
    /// the owner's devices ([`Owners::list`]). Off by default: it is personal data, and
    /// nothing of it is kept for anonymous sessions either way.
    pub fn keep_user_agent(mut self, keep: bool) -> Self {
        Arc::make_mut(&mut self.config).notes.user_agent = keep;
        self
    }

    /// Keeps the client's address (what `address_of` finds for the request, its first 64
    /// bytes) with a session when a handler gives it an owner, for [`Owners::list`]. Off by
    /// default, as personal data. The layer cannot know how the application sees addresses:
    /// behind a proxy, from a header the proxy sets; otherwise from the connection, as axum's
    /// `ConnectInfo` puts it in the extensions. `address_of` runs for every request.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    /// use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// # let cookie = SessionCookie::new("__session").secret([7; 32]);
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?
    ///     .keep_user_agent(true)
    ///     .keep_address(|_headers, extensions| {
    ///         let ConnectInfo(peer) = extensions.get::<ConnectInfo<SocketAddr>>()?;
    ///         Some(peer.ip().to_string())
    ///     });
    /// # Ok(()) }
    /// ```
    pub fn keep_address<F>(mut self, address_of: F) -> Self
    where
        F: Fn(&http::HeaderMap, &http::Extensions) -> Option<String> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).notes.address = Some(Arc::new(address_of));
        self
    }

    /// Calls `hook` with every [`AuditEvent`]: a session created, regenerated (a login),
    /// destroyed (a logout) or revoked ([`Owners`]), with its owner and short hash, once the
    /// store has done it. The same events go to `tracing` (target `cloakroom::audit`, level
    /// `INFO`) with or without a hook. The hook runs on the request's task, after the store
    /// call: send the event to a channel rather than block.
    ///
    /// ```
    /// use cloakroom::{AuditKind, MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// # let cookie = SessionCookie::new("__session").secret([7; 32]);
    /// let (events, _audit_log) = std::sync::mpsc::channel();
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?.on_audit(move |event| {
    ///     if event.kind != AuditKind::Created || event.owner.is_some() {
    ///         let _ = events.send(event.clone());
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn on_audit<F>(mut self, hook: F) -> Self
    where
        F: Fn(&AuditEvent) + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).audit = Audit(Some(Arc::new(hook)));
        self
    }

    /// The response the client gets when the store fails, instead of the empty `503` (or
    /// `500` for what no retry fixes) of [`FailureStatus`]. The layer has already logged the
    /// failure; the hook only builds the response.
    ///
    /// The response's body must be the app's own body type: in an axum app, build it with
    /// `IntoResponse` (a `Response<String>` there fails to compile with E0271 at `.layer`).
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use axum::response::{IntoResponse, Response};
    /// use axum::{Router, routing::get};
    /// use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # unsafe { std::env::set_var("SESSION_SECRETS", "a secret of at least thirty-two bytes") };
    /// let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?.on_store_error(|failure| {
    ///     let retry = [("retry-after", "5")];
    ///     let page = format!("Sessions are unavailable ({} failed). Try again soon.", failure.operation());
    ///     (StatusCode::SERVICE_UNAVAILABLE, retry, page).into_response()
    /// });
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(layer);
    /// # Ok(()) }
    /// ```
    pub fn on_store_error<F, B>(self, on_store_error: F) -> SessionLayer<St, F>
    where
        F: Fn(&StoreFailure<'_>) -> http::Response<B>,
    {
        self.on_store_error_with(on_store_error)
    }

    /// [`on_store_error`](Self::on_store_error) with any [`OnStoreError`](crate::OnStoreError)
    /// (a type of your own, or [`FailureStatus`] for the default), where a closure will not do.
    pub fn on_store_error_with<H2>(self, on_store_error: H2) -> SessionLayer<St, H2> {
        SessionLayer {
            store: self.store,
            config: self.config,
            on_store_error,
            detached: self.detached,
        }
    }
}

impl<St: OwnerIndex, H> SessionLayer<St, H> {
    /// A handle on the sessions of each owner, for this layer's store: list a user's devices,
    /// sign one out, or all ("log out everywhere"), from a handler or from anywhere else (an
    /// admin tool, a password reset). Only for stores that keep an index of owners
    /// ([`OwnerIndex`]); with one that cannot (the cookie store), this does not compile.
    pub fn owners(&self) -> Owners<St> {
        Owners::new(Arc::clone(&self.store), Arc::clone(&self.config))
    }
}

impl<St, H: Clone> Clone for SessionLayer<St, H> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
            on_store_error: self.on_store_error.clone(),
            detached: Arc::clone(&self.detached),
        }
    }
}

impl<St, H: fmt::Debug> fmt::Debug for SessionLayer<St, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("store", &std::any::type_name::<St>())
            .field("config", &self.config)
            .field("on_store_error", &self.on_store_error)
            .finish()
    }
}

impl<S, St, H: Clone> Layer<S> for SessionLayer<St, H> {
    type Service = SessionService<S, St, H>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Shared {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
            on_store_error: self.on_store_error.clone(),
            detached: Arc::clone(&self.detached),
            nested: AtomicBool::new(false),
        };
        SessionService::new(inner, shared)
    }
}
