//! `SessionLayer`: the Tower middleware that loads the session before the handler and saves it
//! after.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::cookie::{CookieSigner, SessionCookie};
use crate::error::ConfigError;
use crate::failure::{CallError, FailureStatus, OnStoreError, StoreOperation, within};
use crate::session::{Fate, State};
use crate::store::{Changes, FOREVER, Record, SessionStore, Update};
use crate::{Session, SessionId};

/// The idle timeout when none is configured: 7 days.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How often a session in use has its expiry refreshed when none is configured: 60 seconds
/// (at most a tenth of the idle timeout).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How long the layer waits for the store when none is configured: 10 seconds, for the load
/// before the handler and again for the save after it.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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
/// let secret = std::env::var("SESSION_SECRET").unwrap_or_else(|_| "x".repeat(32));
/// let cookie = SessionCookie::new("__session").secret(secret);
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
/// When the store fails, the client gets the [`OnStoreError`] response (503 by default)
/// instead of the handler's, with a `tracing` error event; a failed load never runs the
/// handler with an empty session, and a failed save never sends a cookie.
pub struct SessionLayer<St, H = FailureStatus> {
    store: Arc<St>,
    config: Arc<Config>,
    on_store_error: H,
}

#[derive(Clone, Debug)]
struct Config {
    cookie: CookieSigner,
    idle_timeout: Duration,
    refresh_interval: Duration,
    lifetime: Option<Duration>,
    save_uninitialized: bool,
    save_on_server_error: bool,
    store_timeout: Option<Duration>,
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
            config: Arc::new(Config {
                cookie: cookie.into_signer()?,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                refresh_interval: DEFAULT_REFRESH_INTERVAL,
                lifetime: None,
                save_uninitialized: false,
                save_on_server_error: false,
                store_timeout: Some(DEFAULT_STORE_TIMEOUT),
            }),
            on_store_error: FailureStatus,
        })
    }
}

impl<St, H> SessionLayer<St, H> {
    /// How long a session lives without requests ([`DEFAULT_IDLE_TIMEOUT`], 7 days, unless
    /// set). Every request restarts it (at the granularity of the
    /// [`refresh_interval`](Self::refresh_interval)), and the cookie's `Max-Age` follows it. A
    /// handler can give one session its own with [`Session::set_idle_timeout`].
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
    /// let cookie = SessionCookie::new("__session").secret([7; 32]);
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
    /// session at hand). A [`Session::destroy`] is never dropped: a logout handler that fails
    /// after it still logs the user out (the session is deleted and the cookie cleared). A
    /// [`Session::regenerate_id`] is dropped with the changes: the login it belongs to failed.
    pub fn save_on_server_error(mut self, save: bool) -> Self {
        Arc::make_mut(&mut self.config).save_on_server_error = save;
        self
    }

    /// How long a request waits for the store: for the load before the handler, and again for
    /// the save after it ([`DEFAULT_STORE_TIMEOUT`], 10 s, unless set; `None` waits as long as
    /// the store takes). When it passes, the client gets the store-error response (a 503 by
    /// default, the failure a [`StoreTimedOut`](crate::StoreTimedOut)) and nothing is assumed
    /// of the call: a write in flight may still land. A logout or a regenerate runs on to
    /// the end regardless, so the old id is gone even when the response said otherwise.
    ///
    /// The stores of this workspace bound each call themselves, more tightly by default (the
    /// Redis command timeout, memcached's call timeout, the file store's lock timeout); this
    /// is the bound for a store that has none, or that waits past its own. The timer is
    /// Tokio's: in a Tokio runtime it must be built with its time driver (as `#[tokio::main]`
    /// and `#[tokio::test]` build it, and `enable_all` or `enable_time` do); outside a Tokio
    /// runtime no timeout applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom::ConfigError> {
    /// let cookie = SessionCookie::new("__session").secret([7; 32]);
    /// let layer = SessionLayer::new(cookie, MemoryStore::new())?
    ///     .store_timeout(Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn store_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        Arc::make_mut(&mut self.config).store_timeout = timeout.into();
        self
    }

    /// The response the client gets when the store fails, instead of an empty `503`.
    pub fn on_store_error<H2>(self, on_store_error: H2) -> SessionLayer<St, H2> {
        SessionLayer {
            store: self.store,
            config: self.config,
            on_store_error,
        }
    }
}

impl<St, H: Clone> Clone for SessionLayer<St, H> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
            on_store_error: self.on_store_error.clone(),
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
        SessionService {
            inner,
            shared: Arc::new(Shared {
                store: Arc::clone(&self.store),
                config: Arc::clone(&self.config),
                on_store_error: self.on_store_error.clone(),
            }),
        }
    }
}

/// What every request of one service shares.
struct Shared<St, H> {
    store: Arc<St>,
    config: Arc<Config>,
    on_store_error: H,
}

/// The service [`SessionLayer`] wraps around an inner service.
pub struct SessionService<S, St, H = FailureStatus> {
    inner: S,
    shared: Arc<Shared<St, H>>,
}

impl<S: Clone, St, H> Clone for SessionService<S, St, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, St, H> fmt::Debug for SessionService<S, St, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("store", &std::any::type_name::<St>())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Whether a cookie issued at `issued` is due for a refresh at `now`, for a session that
    /// lives `idle` without requests.
    fn refresh_due(&self, issued: SystemTime, now: SystemTime, idle: Duration) -> bool {
        let interval = self.refresh_interval.min(idle / 10);
        match now.duration_since(issued) {
            Ok(age) => age >= interval,
            // Issued "in the future": another instance's clock runs a little ahead, or this
            // clock was set back, in which case waiting for it would let sessions expire.
            Err(ahead) => ahead.duration() > interval,
        }
    }
}

impl<S, St, H, ReqB, ResB> Service<Request<ReqB>> for SessionService<S, St, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    St: SessionStore,
    H: OnStoreError<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, St, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let config = &self.shared.config;
        // The request's one clock reading: its refresh decision, and every time it stores or
        // signs, are taken from it.
        let now = SystemTime::now();
        let mut cookie_sent = false;
        let mut loaded = None;
        for raw in config.cookie.candidates(request.headers()) {
            cookie_sent = true;
            let Some(verified) = config.cookie.verify(raw) else {
                continue;
            };
            if let Some(id) = St::IDS.parse(verified.value) {
                loaded = Some((id, verified.issued, verified.current));
                break;
            }
        }
        let mut session = RequestSession {
            shared: Arc::clone(&self.shared),
            session: None,
            arrived: now,
            issued: None,
            due: false,
            touched: false,
            cookie_sent,
        };
        let Some((id, issued, current)) = loaded else {
            let fresh = Session::from_state(State::new(None, fresh_record(config, now)));
            let future = session.start(&mut self.inner, request, fresh);
            return ResponseFuture {
                step: Step::Calling { future },
                request: session,
            };
        };
        // A cookie signed with an older secret is re-signed, so its session is refreshed too.
        let due = !current || config.refresh_due(issued, now, config.idle_timeout);
        session.issued = Some(issued);
        session.due = due;
        // A store that has the record at hand answers at once, due or not: a due refresh then
        // rides on the update after the handler, so a writing request makes one store call
        // instead of a load and an update.
        let read = tracing::debug_span!("session_store", operation = "read", session = %id);
        let at_once = read.in_scope(|| self.shared.store.read_now(&id));
        let load = match at_once {
            Some(Ok(record)) => {
                let found = found(config, id, record, now);
                let future = session.start(&mut self.inner, request, found);
                return ResponseFuture {
                    step: Step::Calling { future },
                    request: session,
                };
            }
            Some(Err(error)) => boxed(
                std::future::ready(Err(CallError::Store(StoreOperation::Load, error))),
                read,
            ),
            None => {
                session.touched = due;
                let span = if due {
                    tracing::debug_span!("session_store", operation = "load", session = %id)
                } else {
                    read
                };
                let store = Arc::clone(&self.shared.store);
                let id = id.clone();
                let call = async move {
                    let loaded = if due {
                        store.load(&id).await
                    } else {
                        store.read(&id).await
                    };
                    loaded.map_err(|error| CallError::Store(StoreOperation::Load, error))
                };
                let limit = config.store_timeout;
                boxed(within(limit, StoreOperation::Load, call), span)
            }
        };
        // Drive the service that was polled ready; leave a clone for the next request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            step: Step::Loading {
                load,
                pending: Some((inner, request, id)),
            },
            request: session,
        }
    }
}

/// The session of a request whose cookie named `id`, from the record the store found for it.
fn found(config: &Config, id: SessionId, record: Option<Record>, now: SystemTime) -> Session {
    let state = match record {
        Some(record) => State::new(Some(id), record),
        None => {
            tracing::debug!(session = %id, "session cookie names no live session; starting a new one");
            State::new(None, fresh_record(config, now))
        }
    };
    Session::from_state(state)
}

/// Boxes a store call, inside `span` when something listens to it (the wrapper costs a
/// little on every poll even when disabled).
fn boxed<F>(future: F, span: tracing::Span) -> BoxFuture<F::Output>
where
    F: Future + Send + 'static,
{
    if span.is_disabled() {
        Box::pin(future)
    } else {
        Box::pin(future.instrument(span))
    }
}

fn fresh_record(config: &Config, now: SystemTime) -> Record {
    Record::new(now, config.idle_timeout, config.lifetime)
}

pin_project! {
    /// The response future of [`SessionService`]: load, call the inner service, save.
    ///
    /// A hand-written state machine; only store calls that wait are boxed, so a request that
    /// needs no such call (no session cookie, or one the store answers with
    /// [`read_now`](SessionStore::read_now), and nothing written) boxes no future.
    pub struct ResponseFuture<S, ReqB, St, H>
    where
        S: Service<Request<ReqB>>,
        St: SessionStore,
    {
        #[pin]
        step: Step<S, ReqB, St::Error>,
        request: RequestSession<St, H>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<S, ReqB, E>
    where
        S: Service<Request<ReqB>>,
    {
        Loading {
            #[pin]
            load: BoxFuture<Result<Option<Record>, CallError<E>>>,
            pending: Option<(S, Request<ReqB>, SessionId)>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Saving {
            #[pin]
            save: BoxFuture<Result<Written, CallError<E>>>,
            pending: Option<(S::Response, CookieAfter)>,
        },
    }
}

/// The per-request part of the future that is not a step.
struct RequestSession<St, H> {
    shared: Arc<Shared<St, H>>,
    session: Option<Session>,
    /// When the request came: the time the session's expiry and cookie are reckoned from.
    arrived: SystemTime,
    /// When the request's cookie was issued, if it named a session.
    issued: Option<SystemTime>,
    /// Whether the cookie asked for a refresh when the request came (old enough, or signed
    /// with an older secret).
    due: bool,
    /// Whether the load refreshed the session's expiry (or else the update must).
    touched: bool,
    /// Whether the request carried a cookie with our name, ours or not.
    cookie_sent: bool,
}

impl<S, ReqB, ResB, St, H> Future for ResponseFuture<S, ReqB, St, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: SessionStore,
    H: OnStoreError<ResB>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.step.as_mut().project() {
                StepProj::Loading { load, pending } => {
                    let loaded = ready!(load.poll(cx));
                    let Some((mut inner, request, id)) = pending.take() else {
                        unreachable!("ResponseFuture polled after completion");
                    };
                    let record = match loaded {
                        Ok(record) => record,
                        Err(error) => return Poll::Ready(Ok(this.request.failed(&error))),
                    };
                    let config = &this.request.shared.config;
                    let session = found(config, id, record, this.request.arrived);
                    let future = this.request.start(&mut inner, request, session);
                    this.step.set(Step::Calling { future });
                }
                StepProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    let (write, after) = this.request.plan(&response);
                    let Some(write) = write else {
                        return Poll::Ready(Ok(this.request.finish(
                            response,
                            after,
                            Written::Done,
                        )));
                    };
                    let shared = &this.request.shared;
                    let save = write.start(Arc::clone(&shared.store), shared.config.store_timeout);
                    this.step.set(Step::Saving {
                        save,
                        pending: Some((response, after)),
                    });
                }
                StepProj::Saving { save, pending } => {
                    let written = ready!(save.poll(cx));
                    let Some((response, after)) = pending.take() else {
                        unreachable!("ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(match written {
                        Ok(written) => this.request.finish(response, after, written),
                        Err(error) => this.request.failed(&error),
                    }));
                }
            }
        }
    }
}

/// The store call to make after the handler.
enum Write {
    Create(Record),
    Update(SessionId, Changes),
    Regenerate {
        old: Option<SessionId>,
        record: Record,
    },
    Delete(SessionId),
}

/// What the store call found.
enum Written {
    Done,
    Created(SessionId),
    Missing,
    /// A detached write whose task ended without an answer (the runtime is shutting down).
    Interrupted,
}

/// What to do with the browser's cookie once the store call (if any) succeeded.
enum CookieAfter {
    /// Leave it alone.
    Keep,
    /// Send the session's id, signed with its issue time, with a fresh `Max-Age`.
    Send {
        id: Option<SessionId>,
        max_age: Duration,
        /// The issue time signed into the cookie: when the request came, as for `max_age`.
        issued: SystemTime,
    },
    /// Clear it.
    Remove,
}

impl Write {
    fn span(&self) -> tracing::Span {
        match self {
            Self::Create(_) => tracing::debug_span!("session_store", operation = "create"),
            Self::Update(id, changes) => tracing::debug_span!(
                "session_store",
                operation = "update",
                session = %id,
                keys = changes.entries.len()
            ),
            Self::Regenerate { old, .. } => tracing::debug_span!(
                "session_store",
                operation = "regenerate",
                session = old.as_ref().map(tracing::field::display)
            ),
            Self::Delete(id) => {
                tracing::debug_span!("session_store", operation = "delete", session = %id)
            }
        }
    }

    /// The write as a future for the response to await. A logout, and a regenerate (whose
    /// create and delete are two calls), run as a task of their own: a client that goes away
    /// mid-save drops the response future, and must not leave the session reachable under
    /// its old id. Other writes run in place (a cut one leaves the store as it was, or
    /// applied, either of which is a state the session may be in).
    fn start<St: SessionStore>(
        self,
        store: Arc<St>,
        limit: Option<Duration>,
    ) -> BoxFuture<Result<Written, CallError<St::Error>>> {
        let span = self.span();
        let operation = match self {
            Self::Create(_) | Self::Regenerate { .. } => StoreOperation::Create,
            Self::Update(..) => StoreOperation::Update,
            Self::Delete(_) => StoreOperation::Delete,
        };
        let detach = matches!(self, Self::Regenerate { .. } | Self::Delete(_));
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if detach => {
                // The limit is on the wait, not on the task: the task runs on to the end.
                let task = runtime.spawn(self.run(store).instrument(span));
                Box::pin(within(limit, operation, async move {
                    match task.await {
                        Ok(written) => written,
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        Err(_) => Ok(Written::Interrupted),
                    }
                }))
            }
            _ => boxed(within(limit, operation, self.run(store)), span),
        }
    }

    async fn run<St: SessionStore>(self, store: Arc<St>) -> Result<Written, CallError<St::Error>> {
        let fail = |operation| move |error| CallError::Store(operation, error);
        match self {
            Self::Create(record) => store
                .create(&record)
                .await
                .map(Written::Created)
                .map_err(fail(StoreOperation::Create)),
            Self::Update(id, changes) => match store.update(&id, &changes).await {
                Ok(Update::Applied) => Ok(Written::Done),
                Ok(Update::Reissued(id)) => Ok(Written::Created(id)),
                Ok(_) => Ok(Written::Missing),
                Err(error) => Err(CallError::Store(StoreOperation::Update, error)),
            },
            Self::Regenerate { old, record } => {
                let id = store
                    .create(&record)
                    .await
                    .map_err(fail(StoreOperation::Create))?;
                if let Some(old) = old {
                    store
                        .delete(&old)
                        .await
                        .map_err(fail(StoreOperation::Delete))?;
                }
                Ok(Written::Created(id))
            }
            Self::Delete(id) => store
                .delete(&id)
                .await
                .map(|()| Written::Done)
                .map_err(fail(StoreOperation::Delete)),
        }
    }
}

impl<St: SessionStore, H> RequestSession<St, H> {
    /// Hands `session` to the handler: into the request's extensions, and kept here for after.
    fn start<S, ReqB>(
        &mut self,
        inner: &mut S,
        mut request: Request<ReqB>,
        session: Session,
    ) -> S::Future
    where
        S: Service<Request<ReqB>>,
    {
        request.extensions_mut().insert(session.clone());
        self.session = Some(session);
        inner.call(request)
    }

    /// Decides, from the session's state and the response status, the store call and the
    /// cookie change.
    fn plan<B>(&self, response: &Response<B>) -> (Option<Write>, CookieAfter) {
        let config = &self.shared.config;
        let Some(session) = &self.session else {
            return (None, CookieAfter::Keep);
        };
        let state = session.lock();
        if response.status().is_server_error() && !config.save_on_server_error {
            // A logout always happens, even from a handler that failed after `destroy`; the
            // rest (its changes, and a regenerate, whose login failed with it) is dropped.
            return match (state.fate, &state.id) {
                (Fate::Destroy, Some(id)) => (Some(Write::Delete(id.clone())), CookieAfter::Remove),
                _ => (None, CookieAfter::Keep),
            };
        }
        let now = self.arrived;
        let idle = state.idle_timeout.unwrap_or(state.record.idle_timeout);
        let max_age = state.record.deadline.map_or(idle, |deadline| {
            deadline.duration_since(now).unwrap_or_default().min(idle)
        });
        let remove_if = |remove: bool| {
            if remove {
                CookieAfter::Remove
            } else {
                CookieAfter::Keep
            }
        };
        // Without a logout, only a cookie that is not ours (no session loaded from it) is
        // cleared: a valid one whose session is gone was ended by another request (a logout, a
        // login's new id), which cleared it, and a removal from here could land after that
        // request's new cookie and log the user out. A logout clears any cookie of ours, even
        // when its session was gone already (a retried logout).
        let removal = remove_if(self.cookie_sent && self.issued.is_none());
        match (state.fate, &state.id) {
            (Fate::Destroy, Some(id)) => (Some(Write::Delete(id.clone())), CookieAfter::Remove),
            (Fate::Destroy, None) => (None, remove_if(self.cookie_sent)),
            (Fate::Regenerate, old) => (
                Some(Write::Regenerate {
                    old: old.clone(),
                    record: record_to_save(&state, idle, now),
                }),
                CookieAfter::Send {
                    id: None,
                    max_age,
                    issued: now,
                },
            ),
            (Fate::Keep, None) if state.is_modified() || config.save_uninitialized => (
                Some(Write::Create(record_to_save(&state, idle, now))),
                CookieAfter::Send {
                    id: None,
                    max_age,
                    issued: now,
                },
            ),
            (Fate::Keep, None) => (None, removal),
            (Fate::Keep, Some(id)) => {
                // Due now if it was when the request came, or if the session's own idle timeout
                // (known only now) makes the cookie old enough; a new idle timeout needs a new
                // Max-Age.
                let refresh = self.due
                    || state.idle_timeout.is_some()
                    || self
                        .issued
                        .is_some_and(|issued| config.refresh_due(issued, now, idle));
                // A stateless store refreshes the expiry by writing: always update.
                let stateless = St::IDS == crate::store::Ids::Sealed;
                let touch = refresh && !self.touched;
                let write = (state.is_modified() || stateless || touch)
                    .then(|| Write::Update(id.clone(), state.changes(refresh)));
                let after = if refresh || stateless {
                    CookieAfter::Send {
                        id: Some(id.clone()),
                        max_age,
                        issued: now,
                    }
                } else {
                    CookieAfter::Keep
                };
                (write, after)
            }
        }
    }

    /// Sets the cookie and caching headers on the handler's response.
    fn finish<B>(
        &self,
        mut response: Response<B>,
        after: CookieAfter,
        written: Written,
    ) -> Response<B> {
        let cookie = &self.shared.config.cookie;
        let set_cookie = match (after, written) {
            (CookieAfter::Remove, _) => Some(cookie.removal()),
            // The session was gone when the update came: another request ended it and cleared
            // the cookie (or gave it a new one, which a removal from here could override).
            (_, Written::Missing | Written::Interrupted) => None,
            (CookieAfter::Keep, _) => None,
            (
                CookieAfter::Send {
                    max_age, issued, ..
                },
                Written::Created(id),
            )
            | (
                CookieAfter::Send {
                    id: Some(id),
                    max_age,
                    issued,
                },
                Written::Done,
            ) => Some(cookie.set_cookie(&cookie.sign(id.as_str(), issued), max_age)),
            (CookieAfter::Send { id: None, .. }, Written::Done) => None,
        };
        let headers = response.headers_mut();
        let accessed = self.session.as_ref().is_some_and(|s| s.lock().accessed);
        if let Some(set_cookie) = set_cookie {
            match HeaderValue::try_from(set_cookie) {
                Ok(value) => {
                    headers.append(SET_COOKIE, value);
                    keep_from_shared_caches(headers);
                    add_vary_cookie(headers);
                }
                // Unreachable with a validated configuration and base64url values.
                Err(error) => tracing::error!(%error, "session cookie is not a valid header value"),
            }
        } else if accessed {
            add_vary_cookie(headers);
        }
        response
    }

    /// Logs a store failure and builds the error response.
    fn failed<B>(&self, error: &CallError<St::Error>) -> Response<B>
    where
        H: OnStoreError<B>,
    {
        let failure = error.failure();
        let (operation, error) = (failure.operation(), failure.error());
        tracing::error!(%operation, %error, store = std::any::type_name::<St>(), "session store failed");
        self.shared.on_store_error.on_store_error(&failure)
    }
}

/// The record to create: the session's current data, with the handler's idle timeout.
fn record_to_save(state: &State, idle: Duration, now: SystemTime) -> Record {
    let mut record = state.record.clone();
    record.idle_timeout = idle;
    record.expires = crate::store::expiry(now, idle, record.deadline);
    record
}

/// A response that sets or clears the session cookie must never be stored by a shared cache
/// (a CDN would hand one user's session to everyone). Without a `Cache-Control` of the
/// handler's it gets `no-store`; with one that a shared cache may act on, `private` takes the
/// place of `public` and `s-maxage`, and the handler's other directives stay (`max-age` for
/// the browser's own cache, say).
const CDN_CACHE_CONTROL: http::HeaderName = http::HeaderName::from_static("cdn-cache-control");
const SURROGATE_CONTROL: http::HeaderName = http::HeaderName::from_static("surrogate-control");

fn keep_from_shared_caches(headers: &mut http::HeaderMap) {
    // CDN-specific controls (RFC 9213, and the older Surrogate-Control) take precedence over
    // Cache-Control at the CDN: they must not let it store the cookie either.
    for cdn in [CDN_CACHE_CONTROL, SURROGATE_CONTROL] {
        if headers.contains_key(&cdn) {
            headers.insert(cdn, HeaderValue::from_static("no-store"));
        }
    }
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .flat_map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|d| d.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|directive| !directive.is_empty())
        .collect();
    if directives.is_empty() {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return;
    }
    let name = |directive: &str| {
        let name = directive.split('=').next().unwrap_or_default().trim();
        name.to_ascii_lowercase()
    };
    // Only a bare `private` keeps shared caches out: `private="X"` lets them store the rest.
    if directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
    {
        return;
    }
    let kept = directives
        .iter()
        .filter(|d| !matches!(name(d).as_str(), "public" | "s-maxage" | "proxy-revalidate"))
        .map(String::as_str);
    let value = std::iter::once("private")
        .chain(kept)
        .collect::<Vec<_>>()
        .join(", ");
    match HeaderValue::try_from(value) {
        Ok(value) => {
            headers.insert(CACHE_CONTROL, value);
        }
        Err(_) => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

fn add_vary_cookie(headers: &mut http::HeaderMap) {
    let already = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|v| v.trim() == "*" || v.trim().eq_ignore_ascii_case("cookie"))
        })
    });
    if !already {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Cache-Control` a response gets when the layer sets the cookie, given the handler's.
    fn cache_control(handler: &[&'static str]) -> String {
        let mut headers = http::HeaderMap::new();
        for value in handler {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(value));
        }
        keep_from_shared_caches(&mut headers);
        let values: Vec<&str> = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        values.join(" | ")
    }

    #[test]
    fn a_response_that_sets_the_cookie_is_never_stored_by_a_shared_cache() {
        assert_eq!(cache_control(&[]), "no-store");
        assert_eq!(
            cache_control(&["public, max-age=600"]),
            "private, max-age=600"
        );
        assert_eq!(
            cache_control(&["s-maxage=600, max-age=60"]),
            "private, max-age=60"
        );
        assert_eq!(cache_control(&["max-age=60"]), "private, max-age=60");
        assert_eq!(cache_control(&["Public", "no-cache"]), "private, no-cache");
        assert_eq!(
            cache_control(&["public, proxy-revalidate, must-revalidate"]),
            "private, must-revalidate"
        );
        // Already kept from shared caches: the handler's choice stands.
        assert_eq!(
            cache_control(&["private, max-age=60"]),
            "private, max-age=60"
        );
        assert_eq!(cache_control(&["no-store"]), "no-store");
        // A qualified private lets shared caches store the rest.
        assert_eq!(
            cache_control(&["private=\"X-Foo\", public, s-maxage=600"]),
            "private, private=\"X-Foo\""
        );
    }

    #[test]
    fn cdn_specific_controls_cannot_store_the_cookie_either() {
        let mut headers = http::HeaderMap::new();
        headers.insert(CDN_CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
        headers.insert(SURROGATE_CONTROL, HeaderValue::from_static("max-age=600"));
        keep_from_shared_caches(&mut headers);
        for cdn in [CDN_CACHE_CONTROL, SURROGATE_CONTROL] {
            let value = headers.get(&cdn).map(HeaderValue::as_bytes);
            assert_eq!(value, Some(&b"no-store"[..]), "{cdn}");
        }
        assert_eq!(
            headers.get(CACHE_CONTROL).map(HeaderValue::as_bytes),
            Some(&b"no-store"[..])
        );
    }
}
