//! Server-side HTTP sessions for any [Tower](https://docs.rs/tower) service.
//!
//! `SessionLayer::new(cookie, store)` wraps an axum `Router`, a hyper service or a tonic
//! server. Handlers take [`Session`] from the request's extensions and read and write a
//! per-user key-value map that survives across requests; the browser holds only a signed
//! cookie with the session id, and the data lives in a [`SessionStore`]: [`MemoryStore`] here,
//! or the filesystem, Redis or memcached through the adapter crates.
//!
#![cfg_attr(feature = "axum", doc = "```")]
#![cfg_attr(not(feature = "axum"), doc = "```ignore")]
//! use axum::{Router, routing::get};
//! use cloakroom::{MemoryStore, Session, SessionCookie, SessionError, SessionLayer};
//!
//! async fn home(session: Session) -> Result<String, SessionError> {
//!     let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
//!     session.set("visits", visits)?;
//!     Ok(format!("visit {visits}"))
//! }
//!
//! # fn main() -> Result<(), cloakroom::ConfigError> {
//! # unsafe { std::env::set_var("SESSION_SECRETS", "0123456789abcdef".repeat(4)) };
//! // SESSION_SECRETS="$(openssl rand -hex 32)": a comma-separated list, newest first
//! let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
//! let app: Router = Router::new()
//!     .route("/", get(home))
//!     .layer(SessionLayer::new(cookie, MemoryStore::new())?);
//! # Ok(()) }
//! ```
//!
//! `Session` is an axum extractor with the `axum` feature (on by default), and `?` on a
//! [`SessionError`] answers with the right status. Without axum, a handler finds the
//! `Session` in the request's extensions.
//!
//! What the layer guarantees, in short (each is a test; the repository's `ARCHITECTURE.md` says
//! where each lives):
//!
//! - a missing, forged, truncated or unknown cookie is a fresh empty session, never an error
//!   and never someone else's data; ids are 192 random bits and are never chosen by a client;
//! - only the keys a request changed are written, so concurrent requests of one session do not
//!   lose each other's writes; a destroyed session is never brought back by a late write;
//! - a session in use stays alive: once its cookie is older than the
//!   [`refresh_interval`](SessionLayer::refresh_interval), a request refreshes the expiry with
//!   a store call it makes anyway (the load, or the update after the handler);
//! - a store failure is an error response (503 or 500, see [`FailureStatus`]), never an empty
//!   session, and no request waits on the store longer than the
//!   [`store_timeout`](SessionLayer::store_timeout);
//! - a login ([`Session::set_owner`]) makes the session one of its owner's: [`Owners`] lists
//!   them and revokes one, the others or all, on every instance once the call returns
//!   (stores that keep an index of owners, [`OwnerIndex`]).
//!
//! What a store must promise is written once, in [`store::SessionStore`]; the
//! `cloakroom-testkit` crate checks it (`conformance`) and what an attacker can try through
//! the layer (`security`) against any store.
//!
//! # Features
//!
//! - `axum` (default): [`Session`] is an axum extractor by itself, and [`SessionError`] and
//!   [`OwnersError`] are responses.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod call;
mod client;
mod cookie;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod failure;
mod future;
mod headers;
mod id;
mod layer;
mod memory;
mod owners;
mod plan;
mod save;
mod service;
mod session;
mod signer;
pub mod store;
pub mod testing;
mod transport;

pub use crate::audit::{AuditEvent, AuditKind};
pub use crate::call::{StoreOperation, StoreTimedOut};
pub use crate::cookie::{MIN_SECRET_LEN, Priority, SameSite, SessionCookie};
pub use crate::error::{ConfigError, SessionError};
#[cfg(feature = "axum")]
pub use crate::extract::MissingSessionLayer;
pub use crate::failure::{FailureStatus, OnStoreError, StoreFailure};
pub use crate::future::ResponseFuture;
pub use crate::id::SessionId;
pub use crate::layer::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_REFRESH_INTERVAL, DEFAULT_STORE_TIMEOUT, LoadFailure,
    SessionLayer,
};
pub use crate::memory::{MemoryStore, MemoryStoreBuilder, MemoryStoreError};
pub use crate::owners::{InvalidHandle, Owners, OwnersError, SessionHandle, SessionInfo};
pub use crate::service::SessionService;
pub use crate::session::Session;
pub use crate::signer::{CookieSigner, Verified};
pub use crate::store::{FailureKind, OwnerIndex, Revoked, SessionStore, StoreError};
pub use crate::transport::Transport;
