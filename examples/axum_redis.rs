//! The production setup, shown in README.md's "Production" section character for character
//! (from the first `use`; a test keeps the two the same): axum with sessions in Redis, the
//! secrets and Redis's URL from the environment, a `Secure` `__Host-` cookie, and one idle
//! timeout that drives both Redis's TTL and the cookie's `Max-Age`.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 \
//! SESSION_SECRETS="$(openssl rand -hex 32),$(openssl rand -hex 32)" \
//! cargo run -p cloakroom-examples --example axum_redis
//! ```
//!
//! The cookie is `Secure`: a browser sends it back only over HTTPS, so put it behind your TLS
//! terminator (or try it with `curl -c jar -b jar`).

use std::process::ExitCode;
use std::time::Duration;

use axum::{Router, routing::get};
use cloakroom::{Session, SessionCookie, SessionError, SessionLayer};
use cloakroom_redis::RedisStore;

async fn home(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(format!("visit {visits}\n"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt::init(); // store failures are ERROR events; RUST_LOG=info for more
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // e.g. "could not connect to Redis at 127.0.0.1:6379: Connection refused"
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // `__Host-`: only over HTTPS, only for this host, Path=/ (the layer refuses it without Secure).
    let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
    let url =
        std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL, e.g. redis://127.0.0.1:6379")?;
    let store = RedisStore::builder()
        .url(url) // redis://, rediss://, redis-cluster://, redis-sentinel://
        .prefix("myapp:session:")
        .build()
        .await?; // Redis down at start-up: an error naming the servers it tried
    let sessions = SessionLayer::new(cookie, store)?
        .idle_timeout(Duration::from_secs(7 * 86400)) // Redis's TTL and the cookie's Max-Age follow it
        .lifetime(Duration::from_secs(30 * 86400)); // however active, a login lasts 30 days at most
    let app = Router::new().route("/", get(home)).layer(sessions);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let addr = format!("0.0.0.0:{port}"); // where the load balancer sends requests
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
