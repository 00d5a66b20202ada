//! `SessionService`: finds the request's session cookie, reads the session it names, and
//! hands the request to the [`ResponseFuture`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{HeaderMap, Request, Response};
use tokio::sync::Semaphore;
use tower_service::Service;

use crate::call::{CallError, StoreOperation, boxed, span, within};
use crate::client::Client;
use crate::failure::{FailureStatus, OnStoreError};
use crate::future::{RequestSession, ResponseFuture, Start};
use crate::layer::Config;
use crate::plan::{CookieSeen, Refresh};
use crate::session::State;
use crate::store::{Record, SessionStore};
use crate::transport::Via;
use crate::{Session, SessionId};

/// The service [`SessionLayer`](crate::SessionLayer) wraps around an inner service.
pub struct SessionService<S, St, H = FailureStatus> {
    inner: S,
    shared: Arc<Shared<St, H>>,
}

/// What every request of one service shares.
pub(crate) struct Shared<St, H> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Arc<Config>,
    pub(crate) on_store_error: H,
    /// Permits for logouts and regenerates that run as tasks, shared by the layer's services.
    pub(crate) detached: Arc<Semaphore>,
    /// Whether this service has found another layer's session in a request (and said so).
    pub(crate) nested: AtomicBool,
}

impl<S, St, H> SessionService<S, St, H> {
    pub(crate) fn new(inner: S, shared: Shared<St, H>) -> Self {
        Self {
            inner,
            shared: Arc::new(shared),
        }
    }
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
        let shared = &self.shared;
        let config = &shared.config;
        // The request's one clock reading: its refresh decision, and every time it stores or
        // signs, are taken from it.
        let now = SystemTime::now();
        if let Some(outer) = request.extensions().get::<Session>() {
            // The layer is applied twice to this route (a nested router, say): the outer one
            // loaded the session and will save it, so this one only passes the request on.
            // Two layers saving one session would undo each other's cookies.
            warn_if_foreign(shared, outer);
            let session = RequestSession::new(
                Arc::clone(shared),
                now,
                CookieSeen::Absent,
                Client::default(),
                Via::Cookie,
            );
            return ResponseFuture::new(&mut self.inner, request, session, Start::PassOn);
        }
        let via = config.transport.via(request.headers(), &config.cookie);
        let (cookie, named) = find::<St>(config, via, request.headers(), now);
        let client = config.notes.of(request.headers(), request.extensions());
        let mut session = RequestSession::new(Arc::clone(shared), now, cookie, client, via);
        let start = match named {
            None => Start::Run(made(config, State::new(None, fresh(config, now)))),
            Some((id, refresh)) => {
                // A store that has the record at hand answers at once, due or not: a due
                // refresh then rides on the update after the handler, so a writing request
                // makes one store call instead of a load and an update.
                let read = span(StoreOperation::Read, Some(&id));
                let at_once = read.in_scope(|| shared.store.read_now(&id));
                let operation = refresh.fetch();
                session.refresh = match at_once {
                    Some(_) => refresh,
                    None => refresh.after(operation),
                };
                match at_once {
                    Some(Ok(record)) => Start::Run(found(config, id, record, now)),
                    Some(Err(error)) => {
                        let failed = Err(CallError::Store(StoreOperation::Read, error));
                        Start::Load(boxed(std::future::ready(failed), read), id)
                    }
                    None => {
                        let store = Arc::clone(&shared.store);
                        let key = id.clone();
                        let call = async move {
                            let loaded = match operation {
                                StoreOperation::Load => store.load(&key).await,
                                _ => store.read(&key).await,
                            };
                            loaded.map_err(|error| CallError::Store(operation, error))
                        };
                        let limit = config.store_timeout;
                        let span = match operation {
                            StoreOperation::Read => read,
                            _ => span(operation, Some(&id)),
                        };
                        Start::Load(boxed(within(limit, move || operation, call), span), id)
                    }
                }
            }
        };
        ResponseFuture::new(&mut self.inner, request, session, start)
    }
}

/// What the request's cookies (or token header, `via` it) say: whether one of ours came, and
/// the session it names with the refresh it asks for. The first value that verifies and names
/// an id of the store's scheme wins (a browser sends the most specific path's cookie first).
fn find<St: SessionStore>(
    config: &Config,
    via: Via,
    headers: &HeaderMap,
    now: SystemTime,
) -> (CookieSeen, Option<(SessionId, Refresh)>) {
    match via {
        Via::Cookie => first_ours::<St>(config, config.cookie.candidates(headers), now),
        Via::Header => first_ours::<St>(config, config.transport.tokens(headers), now),
    }
}

/// [`find`] over the values `raws` the request offered.
fn first_ours<'h, St: SessionStore>(
    config: &Config,
    raws: impl Iterator<Item = &'h str>,
    now: SystemTime,
) -> (CookieSeen, Option<(SessionId, Refresh)>) {
    let mut seen = CookieSeen::Absent;
    for raw in raws {
        seen = CookieSeen::NotOurs;
        let Some(verified) = config.cookie.verify(raw) else {
            continue;
        };
        if let Some(id) = St::IDS.parse(verified.value) {
            let refresh = Refresh::at_arrival(config, verified.issued, verified.current, now);
            let seen = CookieSeen::Ours {
                issued: verified.issued,
                chosen: verified.chosen,
            };
            return (seen, Some((id, refresh)));
        }
    }
    (seen, None)
}

/// The session of a request whose cookie named `id`, from the record the store found for it.
pub(crate) fn found(
    config: &Config,
    id: SessionId,
    record: Option<Record>,
    now: SystemTime,
) -> Session {
    let state = match record {
        Some(record) => State::new(Some(id), record),
        None => {
            tracing::debug!(session = %id, "session cookie names no live session; starting a new one");
            State::new(None, fresh(config, now))
        }
    };
    made(config, state)
}

/// The session of a request whose session the store could not load, for a handler that runs
/// anyway ([`LoadFailure::RunHandler`](crate::LoadFailure::RunHandler)): empty, and failing
/// every use that can fail.
pub(crate) fn unavailable(config: &Config, now: SystemTime) -> Session {
    let mut state = State::new(None, fresh(config, now));
    state.unavailable = true;
    made(config, state)
}

/// The session of `state`, marked as this layer's.
fn made(config: &Config, mut state: State) -> Session {
    state.layer = identity(config);
    Session::from_state(state)
}

/// A layer's identity: its configuration's address, shared by its clones.
fn identity(config: &Config) -> usize {
    std::ptr::from_ref(config) as usize
}

/// Logs, once per layer, that `outer` (already in the request) is another layer's session:
/// two different session layers on one route, of which only the outer one works.
fn warn_if_foreign<St, H>(shared: &Shared<St, H>, outer: &Session) {
    if outer.lock().layer == identity(&shared.config) {
        return;
    }
    if !shared.nested.swap(true, Ordering::Relaxed) {
        tracing::error!(
            cookie = shared.config.cookie.name(),
            "a SessionLayer runs inside another SessionLayer on the same route; the inner one \
             is ignored and handlers see the outer one's session. Apply one SessionLayer, on \
             the outermost router (axum: Router::layer once, after merging or nesting)"
        );
    }
}

fn fresh(config: &Config, now: SystemTime) -> Record {
    Record::new(now, config.idle_timeout, config.lifetime)
}
