//! What the client gets when the store fails.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};

use crate::store::{FailureKind, StoreError};

/// A store call the layer makes: the names of `tracing` spans and events, and of the call
/// that failed in a [`StoreFailure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Reading the session before the handler, within the refresh interval.
    Read,
    /// Loading the session before the handler and refreshing its expiry.
    Load,
    /// Saving a new session, or the moved session of `regenerate_id`.
    Create,
    /// Writing a request's changes (and a refresh that is due).
    Update,
    /// Deleting a destroyed session, or the old id after `regenerate_id`.
    Delete,
}

impl StoreOperation {
    /// The operation's name: `read`, `load`, `create`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Load => "load",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
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

/// Runs a store call for `operation`, giving up after `limit`. Without a Tokio runtime there
/// is no timer to keep the limit, and the call runs as long as it takes.
pub(crate) async fn within<T, E, F>(
    limit: Option<Duration>,
    operation: StoreOperation,
    call: F,
) -> Result<T, CallError<E>>
where
    F: Future<Output = Result<T, CallError<E>>>,
{
    match limit {
        Some(limit) if tokio::runtime::Handle::try_current().is_ok() => {
            match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Err(CallError::TimedOut(StoreTimedOut::new(operation, limit))),
            }
        }
        _ => call.await,
    }
}

/// A failed store call, as an [`OnStoreError`] hook sees it.
#[derive(Debug)]
pub struct StoreFailure<'a> {
    operation: StoreOperation,
    kind: FailureKind,
    error: &'a (dyn StdError + Send + Sync + 'static),
}

impl<'a> StoreFailure<'a> {
    pub(crate) fn new(
        operation: StoreOperation,
        kind: FailureKind,
        error: &'a (dyn StdError + Send + Sync + 'static),
    ) -> Self {
        Self {
            operation,
            kind,
            error,
        }
    }

    /// Which call failed.
    pub fn operation(&self) -> StoreOperation {
        self.operation
    }

    /// Whether the store was unavailable or refused the request.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The store's error, or a [`StoreTimedOut`] when the layer stopped waiting; downcast it
    /// for details.
    pub fn error(&self) -> &'a (dyn StdError + Send + Sync + 'static) {
        self.error
    }
}

/// Turns a store failure into the response the client gets instead of the handler's.
///
/// Implemented by [`FailureStatus`] (the default) and by every
/// `Fn(&StoreFailure<'_>) -> Response<B>` closure:
///
/// ```
/// use cloakroom::{MemoryStore, SessionCookie, SessionLayer, StoreFailure};
/// use http::{Response, StatusCode};
///
/// # fn main() -> Result<(), cloakroom::ConfigError> {
/// let cookie = SessionCookie::new("__session").secret([7u8; 32]);
/// let layer = SessionLayer::new(cookie, MemoryStore::new())?
///     .on_store_error(|failure: &StoreFailure<'_>| {
///         Response::builder()
///             .status(StatusCode::SERVICE_UNAVAILABLE)
///             .header("retry-after", "5")
///             .body(format!("sessions are unavailable ({} failed)", failure.operation()))
///             .unwrap_or_default()
///     });
/// # Ok(()) }
/// ```
pub trait OnStoreError<B> {
    /// The response for `failure`. The layer has already logged it.
    fn on_store_error(&self, failure: &StoreFailure<'_>) -> Response<B>;
}

/// The default store-failure response: the status that says whether to retry, with an empty
/// body (the body type is the app's, so the layer cannot write text into it; a page of your
/// own is one [`OnStoreError`] closure away).
///
/// - [`FailureKind::Unavailable`]: `503 Service Unavailable` with `Retry-After: 1`, so the
///   client can retry and nothing pretends the user is logged out;
/// - [`FailureKind::Rejected`]: `500 Internal Server Error`, for what no retry fixes (a
///   session too large for the store, data under a session's key that is not the store's).
#[derive(Clone, Copy, Debug, Default)]
pub struct FailureStatus;

impl<B: Default> OnStoreError<B> for FailureStatus {
    fn on_store_error(&self, failure: &StoreFailure<'_>) -> Response<B> {
        let mut response = Response::new(B::default());
        match failure.kind() {
            FailureKind::Rejected => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
            _ => {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
        }
        response
    }
}

impl<B, F> OnStoreError<B> for F
where
    F: Fn(&StoreFailure<'_>) -> Response<B>,
{
    fn on_store_error(&self, failure: &StoreFailure<'_>) -> Response<B> {
        self(failure)
    }
}
