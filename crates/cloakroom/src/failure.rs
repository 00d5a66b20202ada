//! What the client gets when the store fails.

use std::error::Error as StdError;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};

use crate::call::StoreOperation;
use crate::store::FailureKind;

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

    /// The store's error, or a [`StoreTimedOut`](crate::StoreTimedOut) when the layer stopped waiting; downcast it
    /// for details.
    pub fn error(&self) -> &'a (dyn StdError + Send + Sync + 'static) {
        self.error
    }
}

/// Turns a store failure into the response the client gets instead of the handler's.
///
/// Implemented by [`FailureStatus`] (the default) and by every
/// `Fn(&StoreFailure<'_>) -> Response<B>` closure, which
/// [`SessionLayer::on_store_error`](crate::SessionLayer::on_store_error) takes; a type of your
/// own goes to [`SessionLayer::on_store_error_with`](crate::SessionLayer::on_store_error_with):
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use cloakroom::{MemoryStore, SessionCookie, SessionLayer};
///
/// # fn main() -> Result<(), cloakroom::ConfigError> {
/// # unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };
/// let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
/// let layer = SessionLayer::new(cookie, MemoryStore::new())?.on_store_error(|failure| {
///     let page = format!("sessions are unavailable ({} failed)", failure.operation());
///     (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "5")], page).into_response()
/// });
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
        FailureStatus::response(failure.kind())
    }
}

impl FailureStatus {
    /// The response for a failure of `kind`.
    pub(crate) fn response<B: Default>(kind: FailureKind) -> Response<B> {
        let mut response = Response::new(B::default());
        match kind {
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
