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

/// Runs the app; a configuration or connection error ends it with that error's message (not
/// its `Debug` form) and a failure status.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)] // the one line a failed start-up prints
            {
                eprintln!("axum_redis: {error}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let redis_url =
        std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL, e.g. redis://127.0.0.1:6379")?;
    let insecure = std::env::var("INSECURE_COOKIES").is_ok_and(|v| v == "1");

    // The configuration first: a wrong secret is reported before anything connects.
    let cookie = SessionCookie::new(if insecure {
        "__session"
    } else {
        "__Host-session"
    })
    .secrets_from_env("SESSION_SECRETS")?
    .secure(!insecure);
    let store = RedisStore::builder()
        .url(redis_url)
        .prefix("myapp:session:")
        .build()
        .await?;
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
