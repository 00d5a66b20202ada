//! `ResponseFuture`: read the session (if the store could not answer at once), run the
//! handler, then save what [`plan`](crate::plan) decided and set the cookie.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::call::{BoxFuture, CallError};
use crate::client::Client;
use crate::failure::OnStoreError;
use crate::layer::LoadFailure;
use crate::plan::{CookieSeen, Facts, Refresh, SetCookie};
use crate::save::Saved;
use crate::service::{Shared, found, unavailable};
use crate::store::{Ids, Record, SessionStore};
use crate::transport::Via;
use crate::{Session, SessionId, headers, plan, save};

/// How a request begins.
pub(crate) enum Start<E> {
    /// The session is at hand: run the handler now.
    Run(Session),
    /// Read the session of this id first.
    Load(BoxFuture<Result<Option<Record>, CallError<E>>>, SessionId),
    /// Another layer handles the session: call the inner service, touch nothing.
    PassOn,
}

pin_project! {
    /// The response future of [`SessionService`](crate::SessionService): load, call the inner
    /// service, save.
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
            save: BoxFuture<Result<SetCookie, CallError<E>>>,
            response: Option<S::Response>,
        },
    }
}

/// What the future knows of its request besides the step it is at.
pub(crate) struct RequestSession<St: SessionStore, H> {
    shared: Arc<Shared<St, H>>,
    /// When the request came: the time the session's expiry and cookie are reckoned from.
    now: SystemTime,
    cookie: CookieSeen,
    /// The refresh the cookie asked for, and whether the load before the handler made it.
    pub(crate) refresh: Refresh,
    /// The handler's session, once it has one.
    session: Option<Session>,
    /// What was noted of the client, for the session once there is one.
    client: Client,
    /// Why the session could not be loaded, when the handler runs anyway
    /// ([`LoadFailure::RunHandler`]): the response if the handler used the session.
    load_failed: Option<CallError<St::Error>>,
    /// Whether the token came, and goes back, in the cookie or the header.
    via: Via,
}

impl<S, ReqB, St, H> ResponseFuture<S, ReqB, St, H>
where
    S: Service<Request<ReqB>> + Clone,
    St: SessionStore,
{
    pub(crate) fn new(
        inner: &mut S,
        request: Request<ReqB>,
        mut session: RequestSession<St, H>,
        start: Start<St::Error>,
    ) -> Self {
        let step = match start {
            Start::Run(handed) => Step::Calling {
                future: session.run(inner, request, handed),
            },
            Start::PassOn => Step::Calling {
                future: inner.call(request),
            },
            Start::Load(load, id) => {
                // Drive the service that was polled ready; leave a clone for the next request.
                let clone = inner.clone();
                let inner = std::mem::replace(inner, clone);
                Step::Loading {
                    load,
                    pending: Some((inner, request, id)),
                }
            }
        };
        Self {
            step,
            request: session,
        }
    }
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
                    let config = &this.request.shared.config;
                    let session = match loaded {
                        Ok(record) => found(config, id, record, this.request.now),
                        Err(error) if config.load_failure == LoadFailure::RunHandler => {
                            this.request.log(&error);
                            let session = unavailable(config, this.request.now);
                            this.request.load_failed = Some(error);
                            session
                        }
                        Err(error) => return Poll::Ready(Ok(this.request.failed(&error))),
                    };
                    let future = this.request.run(&mut inner, request, session);
                    this.step.set(Step::Calling { future });
                }
                StepProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    if let Some(error) = &this.request.load_failed {
                        // Nothing to save; a handler that used the session answers with the
                        // store's failure, whatever it made of a session it could not read.
                        let used = this
                            .request
                            .session
                            .as_ref()
                            .is_some_and(|s| s.lock().accessed);
                        return Poll::Ready(Ok(match used {
                            true => this.request.respond(error),
                            false => response,
                        }));
                    }
                    let shared = &this.request.shared;
                    let outcome = this.request.outcome(&response);
                    let limit = shared.config.store_timeout;
                    let audit = &shared.config.audit;
                    match save::start(outcome, &shared.store, limit, &shared.detached, audit) {
                        Saved::Now(set_cookie) => {
                            return Poll::Ready(Ok(this.request.finish(response, &set_cookie)));
                        }
                        Saved::Later(save) => this.step.set(Step::Saving {
                            save,
                            response: Some(response),
                        }),
                    }
                }
                StepProj::Saving { save, response } => {
                    let saved = ready!(save.poll(cx));
                    let Some(response) = response.take() else {
                        unreachable!("ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(match saved {
                        Ok(set_cookie) => this.request.finish(response, &set_cookie),
                        Err(error) => this.request.failed(&error),
                    }));
                }
            }
        }
    }
}

impl<St: SessionStore, H> RequestSession<St, H> {
    pub(crate) fn new(
        shared: Arc<Shared<St, H>>,
        now: SystemTime,
        cookie: CookieSeen,
        client: Client,
        via: Via,
    ) -> Self {
        Self {
            shared,
            now,
            cookie,
            refresh: Refresh::NotDue,
            session: None,
            client,
            load_failed: None,
            via,
        }
    }

    /// Hands `session` to the handler: into the request's extensions, and kept here for after.
    fn run<S, ReqB>(
        &mut self,
        inner: &mut S,
        mut request: Request<ReqB>,
        session: Session,
    ) -> S::Future
    where
        S: Service<Request<ReqB>>,
    {
        if !self.client.is_empty() {
            session.lock().client = std::mem::take(&mut self.client);
        }
        request.extensions_mut().insert(session.clone());
        self.session = Some(session);
        inner.call(request)
    }

    /// What the request does to its session, now that the handler has answered.
    fn outcome<B>(&self, response: &Response<B>) -> plan::Outcome {
        let Some(session) = &self.session else {
            return plan::Outcome::Nothing;
        };
        let state = session.lock();
        let facts = Facts {
            now: self.now,
            cookie: self.cookie,
            refresh: self.refresh,
            session: &state,
            status: response.status(),
            sealed: St::IDS == Ids::Sealed,
        };
        plan::decide(&self.shared.config, &facts)
    }

    /// Sets the cookie and caching headers on the handler's response.
    fn finish<B>(&self, mut response: Response<B>, set_cookie: &SetCookie) -> Response<B> {
        let accessed = self.session.as_ref().is_some_and(|s| s.lock().accessed);
        let config = &self.shared.config;
        let token = match self.via {
            Via::Cookie => None,
            Via::Header => config.transport.header(),
        };
        let also = config.transport.also_varies();
        let carriers = headers::Carriers { token, also };
        let headers = response.headers_mut();
        headers::apply(headers, &config.cookie, carriers, set_cookie, accessed);
        response
    }

    /// Logs a store failure and builds the error response.
    fn failed<B>(&self, error: &CallError<St::Error>) -> Response<B>
    where
        H: OnStoreError<B>,
    {
        self.log(error);
        self.respond(error)
    }

    /// Logs a store failure.
    fn log(&self, error: &CallError<St::Error>) {
        let failure = error.failure();
        let (operation, error) = (failure.operation(), failure.error());
        tracing::error!(%operation, %error, store = std::any::type_name::<St>(), "session store failed");
    }

    /// The error response for a store failure.
    fn respond<B>(&self, error: &CallError<St::Error>) -> Response<B>
    where
        H: OnStoreError<B>,
    {
        self.shared.on_store_error.on_store_error(&error.failure())
    }
}
