//! The production setup: axum with sessions in Redis, secrets from the environment, `Secure`
//! cookies, and one idle timeout that drives both Redis's TTL and the cookie's `Max-Age`.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 \
//! SESSION_SECRETS="$(openssl rand -hex 32),$(openssl rand -hex 32)" \
//! cargo run -p cloakroom-examples --example axum_redis
//! ```
//!
//! `SESSION_SECRETS` is a comma-separated list, newest first: put a new secret in front to
//! rotate, and drop the last one once its cookies have expired. `INSECURE_COOKIES=1` turns
//! `Secure` off for plain-http development; never set it in production.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use cloakroom::{Session, SessionCookie, SessionError, SessionLayer};
use cloakroom_redis::RedisStore;

/// A week without a request ends a session; Redis's TTL and the cookie's Max-Age follow it.
const IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// However active, a session ends after 30 days.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

async fn visits(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(format!("visit {visits}\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let redis_url =
        std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL, e.g. redis://127.0.0.1:6379")?;
    let secrets: Vec<String> = std::env::var("SESSION_SECRETS")
        .map_err(|_| "set SESSION_SECRETS to a comma-separated list of secrets of 32+ bytes")?
        .split(',')
        .map(|secret| secret.trim().to_owned())
        .collect();
    let insecure = std::env::var("INSECURE_COOKIES").is_ok_and(|v| v == "1");

    let store = RedisStore::builder()
        .url(redis_url)
        .prefix("myapp:session:")
        .build()
        .await?;
    let cookie = SessionCookie::new(if insecure {
        "__session"
    } else {
        "__Host-session"
    })
    .secrets(&secrets)
    .secure(!insecure);
    let layer = SessionLayer::new(cookie, store)?
        .idle_timeout(IDLE)
        .lifetime(LIFETIME);
    let app = Router::new().route("/", get(visits)).layer(layer);

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    #[allow(clippy::print_stdout)] // an example tells its user where to go
    {
        println!(
            "cloakroom axum + Redis example listening on http://{}/",
            listener.local_addr()?
        );
    }
    axum::serve(listener, app).await?;
    Ok(())
}
