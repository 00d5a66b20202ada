//! `Session` as an axum extractor (the `axum` feature).

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::failure::FailureStatus;
use crate::store::StoreError;
use crate::{OwnersError, Session, SessionError};

/// The rejection when a handler asks for a [`Session`] on a route without [`SessionLayer`]:
/// a `500` whose body names the missing layer, because this is a wiring mistake in the app,
/// not the client's.
///
/// [`SessionLayer`]: crate::SessionLayer
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "cloakroom::Session was requested but cloakroom::SessionLayer is not installed on this route; \
     add .layer(SessionLayer::new(cookie, store)?) to the Router"
)]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// ```
/// use cloakroom::Session;
///
/// async fn handler(session: Session) -> Result<String, cloakroom::SessionError> {
///     Ok(session.get::<String>("user")?.unwrap_or_default())
/// }
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// A `500` with a generic body; the details (key, type) go to the log, not to the client.
/// [`SessionError::Unavailable`] is a `503` with `Retry-After` (the layer then answers with
/// its store-error response in its place).
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Unavailable) {
            return FailureStatus::response(crate::store::FailureKind::Unavailable);
        }
        tracing::error!(error = %self, "session error in handler");
        (StatusCode::INTERNAL_SERVER_ERROR, "session error").into_response()
    }
}

/// The layer's default store-error response: `503` with `Retry-After` when a retry may help,
/// `500` otherwise (and for [`OwnersError::NoOwner`], a mistake in the app); the error goes to
/// the log, not to the client.
impl<E: StoreError> IntoResponse for OwnersError<E> {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "the sessions of an owner could not be reached");
        FailureStatus::response(self.failure_kind())
    }
}
