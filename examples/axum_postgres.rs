//! Sessions in PostgreSQL, shown in README.md's "PostgreSQL" section character for character
//! (from the first `use`; a test keeps the two the same).
//!
//! ```sh
//! DATABASE_URL=postgres://app@127.0.0.1/app \
//! SESSION_SECRETS="$(openssl rand -hex 32)" \
//! cargo run -p cloakroom-examples --example axum_postgres
//! ```

use std::process::ExitCode;

use axum::{Router, routing::get};
use cloakroom::{Session, SessionCookie, SessionError, SessionLayer};
use cloakroom_sql::PostgresStore;

async fn home(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(format!("visit {visits}\n"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let store = PostgresStore::builder()
        .url(url) // or .pool(pool): your app's sqlx PgPool
        .table("sessions") // the default; "app.sessions" for a schema (checked: identifiers only)
        .build()
        .await?;
    store.migrate().await?; // creates the table and indexes if missing; or use your migrations
    let app = Router::new()
        .route("/", get(home))
        .layer(SessionLayer::new(cookie, store)?);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let addr = format!("0.0.0.0:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
