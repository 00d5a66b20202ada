//! An API for clients without cookies (a mobile app, a CLI, a single-page app on another
//! origin): the session's token travels in the `x-session-token` header, both ways.
//!
//! ```sh
//! cargo run -p cloakroom-examples --example api_token
//! # log in, keeping the token the response carries:
//! TOKEN=$(curl -s -D - -o /dev/null -X POST 'http://127.0.0.1:3000/login?user=ada' \
//!     | tr -d '\r' | sed -n 's/^x-session-token: //p')
//! curl -H "x-session-token: $TOKEN" http://127.0.0.1:3000/me
//! curl -X POST -H "x-session-token: $TOKEN" http://127.0.0.1:3000/logout
//! ```
//!
//! A client keeps the newest token it was given: a response that renews the session (once
//! per refresh interval) or replaces it (at login) carries the new one, and a logout answers
//! with the header empty. `PORT` picks the port (default 3000; 0 for any free one).

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloakroom::{MemoryStore, Session, SessionCookie, SessionError, SessionLayer, Transport};
use serde::Deserialize;

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// A demo login: any non-empty name (a real one checks a password first).
async fn login(session: Session, Query(login): Query<Login>) -> Result<Response, SessionError> {
    let user = login.user.trim();
    if user.is_empty() || user.len() > cloakroom::store::MAX_OWNER_LEN {
        return Ok((StatusCode::BAD_REQUEST, "a user name, please\n").into_response());
    }
    // The login: the session gets its owner and a new id, so the response carries a new token.
    session.set_owner(user)?;
    session.set("user", user)?;
    Ok(format!("signed in as {user}\n").into_response())
}

async fn me(session: Session) -> Result<Response, SessionError> {
    Ok(match session.get::<String>("user")? {
        Some(user) => format!("{user}\n").into_response(),
        None => (StatusCode::UNAUTHORIZED, "not signed in\n").into_response(),
    })
}

async fn logout(session: Session) -> &'static str {
    session.destroy();
    "signed out\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SESSION_SECRETS; a development build without it gets a random secret (sessions end
    // when the demo does), a release build without it refuses to start.
    let cookie = if cfg!(debug_assertions) && std::env::var_os("SESSION_SECRETS").is_none() {
        SessionCookie::new("__session").random_secret()
    } else {
        SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?
    };
    let token = axum::http::HeaderName::from_static("x-session-token");
    let layer =
        SessionLayer::new(cookie, MemoryStore::new())?.transport(Transport::Header(token))?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .layer(layer);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    println!(
        "cloakroom API example listening on http://{}/",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
