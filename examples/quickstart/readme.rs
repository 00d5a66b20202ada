use std::process::ExitCode;
use std::time::Duration;

use axum::{Router, routing::get};
use cloakroom::{MemoryStore, Session, SessionCookie, SessionError, SessionLayer};

async fn home(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(format!("visit {visits}\n"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}"); // the message, not the Debug form `?` in main prints
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // SESSION_SECRETS: comma-separated, newest first, each at least 32 bytes, used as raw bytes.
    // Make one with `openssl rand -hex 32`.
    let cookie = SessionCookie::new("session")
        .secrets_from_env("SESSION_SECRETS")?
        .secure(false); // plain http://localhost only: keep Secure (the default) in production
    let sessions =
        SessionLayer::new(cookie, MemoryStore::new())?.idle_timeout(Duration::from_secs(24 * 3600));
    let app = Router::new().route("/", get(home)).layer(sessions);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
