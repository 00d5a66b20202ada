//! The store calls the layer makes: their names (one vocabulary for spans, events and
//! failures), their `tracing` spans, and the deadline the layer keeps on them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tracing::Instrument as _;

use crate::SessionId;
use crate::failure::StoreFailure;
use crate::store::{FailureKind, StoreError};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A store call the layer makes: the names of `tracing` spans and events, and of the call
/// that failed in a [`StoreFailure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Reading the session before the handler, within the refresh interval; or, before a
    /// signed-in session moves to a new id, checking that it is still there.
    Read,
    /// Loading the session before the handler and refreshing its expiry.
    Load,
    /// Saving a new session, or the moved session of `regenerate_id`.
    Create,
    /// Writing a request's changes (and a refresh that is due).
    Update,
    /// Deleting a destroyed session, or the old id after `regenerate_id`.
    Delete,
    /// Listing the sessions of an owner ([`Owners`](crate::Owners)).
    List,
    /// Ending sessions of an owner ([`Owners`](crate::Owners)).
    Revoke,
}

impl StoreOperation {
    /// The operation's name: `read`, `load`, `create`, `update`, `delete`, `list` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Load => "load",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::List => "list",
            Self::Revoke => "revoke",
        }
    }
}

impl fmt::Display for StoreOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The layer stopped waiting for the store: the call took longer than
/// [`SessionLayer::store_timeout`](crate::SessionLayer::store_timeout). The store may have
/// done it all the same (a write in flight is not undone); retrying later may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session store did not answer the {operation} within {after:?}")]
pub struct StoreTimedOut {
    operation: StoreOperation,
    after: Duration,
}

impl StoreTimedOut {
    pub(crate) fn new(operation: StoreOperation, after: Duration) -> Self {
        Self { operation, after }
    }

    /// The call that took too long.
    pub fn operation(&self) -> StoreOperation {
        self.operation
    }

    /// How long the layer waited.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// Why a store call the layer made failed: the store said so, or the layer stopped waiting.
pub(crate) enum CallError<E> {
    Store(StoreOperation, E),
    TimedOut(StoreTimedOut),
}

impl<E: StoreError> CallError<E> {
    /// The failure as a hook sees it.
    pub(crate) fn failure(&self) -> StoreFailure<'_> {
        match self {
            Self::Store(operation, error) => {
                StoreFailure::new(*operation, error.failure_kind(), error)
            }
            Self::TimedOut(timed_out) => {
                StoreFailure::new(timed_out.operation, FailureKind::Unavailable, timed_out)
            }
        }
    }
}

/// Runs a store call, giving up after `limit`; `operation` names the call under way when the
/// limit passes. Without a Tokio runtime there is no timer to keep the limit, and the call runs
/// as long as it takes.
pub(crate) async fn within<T, E, F>(
    limit: Option<Duration>,
    operation: impl FnOnce() -> StoreOperation,
    call: F,
) -> Result<T, CallError<E>>
where
    F: Future<Output = Result<T, CallError<E>>>,
{
    match limit {
        Some(limit) if tokio::runtime::Handle::try_current().is_ok() => {
            match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Err(CallError::TimedOut(StoreTimedOut::new(operation(), limit))),
            }
        }
        _ => call.await,
    }
}

/// The span of a store call about `session` (by its short hash, as every id in a log).
pub(crate) fn span(operation: StoreOperation, session: Option<&SessionId>) -> tracing::Span {
    tracing::debug_span!(
        "session_store",
        operation = operation.as_str(),
        session = session.map(tracing::field::display),
        keys = tracing::field::Empty
    )
}

/// Boxes a store call, inside `span` when something listens to it (the wrapper costs a
/// little on every poll even when disabled).
pub(crate) fn boxed<F>(future: F, span: tracing::Span) -> BoxFuture<F::Output>
where
    F: Future + Send + 'static,
{
    if span.is_disabled() {
        Box::pin(future)
    } else {
        Box::pin(future.instrument(span))
    }
}
