//! The quick start: an axum app with sessions in memory.
//!
//! ```sh
//! cargo run -p cloakroom-quickstart --bin quickstart
//! ```
//!
//! Then open the printed URL. The page counts your visits, shows a message once after you
//! post it (Post/Redirect/Get with a flash), logs you in (moving the session to a new id) and
//! out (destroying it). `PORT` picks the port (default 3000; 0 for any free one) and
//! `SESSION_SECRETS` the signing secrets (default: a random one, so sessions end on restart).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Form;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use cloakroom::{MemoryStore, Session, SessionCookie, SessionError, SessionLayer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Message {
    message: String,
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn home(session: Session) -> Result<Html<String>, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    let notice = session
        .get::<String>("notice")?
        .map(|notice| format!(r#"<p class="notice">{}</p>"#, escape(&notice)))
        .unwrap_or_default();
    let account = match session.get::<String>("user")? {
        Some(user) => format!(
            r#"<p>Logged in as <b class="user">{}</b></p>
<form method="post" action="/logout"><button>Log out</button></form>"#,
            escape(&user)
        ),
        None => r#"<form method="post" action="/login">
<input name="username" placeholder="your name"> <button>Log in</button></form>"#
            .to_owned(),
    };
    Ok(Html(format!(
        r#"<!doctype html><title>cloakroom quick start</title>
{notice}<p>Visit <b class="visits">{visits}</b> in this session.</p>
<form method="post" action="/message">
<input name="message" placeholder="a message"> <button>Post</button></form>
{account}"#
    )))
}

/// Post/Redirect/Get: the message survives the redirect as a flash and shows once.
async fn message(session: Session, Form(form): Form<Message>) -> Result<Redirect, SessionError> {
    session.flash("notice", form.message)?;
    Ok(Redirect::to("/"))
}

/// A new id on login, so an id seen or planted before login is worthless after it.
async fn login(session: Session, Form(form): Form<Login>) -> Result<Redirect, SessionError> {
    session.set("user", form.username)?;
    session.regenerate_id()?;
    session.flash("notice", "Welcome!")?;
    Ok(Redirect::to("/"))
}

/// Logout deletes the session and clears the cookie.
async fn logout(session: Session) -> Redirect {
    session.destroy();
    Redirect::to("/")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cloakroom=debug".into()),
        )
        .init();
    // SESSION_SECRETS; a development build without it gets a random secret (sessions end
    // when the demo does), a release build without it refuses to start.
    let cookie = if cfg!(debug_assertions) && std::env::var_os("SESSION_SECRETS").is_none() {
        SessionCookie::new("__session").random_secret()
    } else {
        SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?
    };
    // Plain http on localhost: the browser would drop a Secure cookie. Keep Secure in production.
    let cookie = cookie.secure(false);
    let app = Router::new()
        .route("/", get(home))
        .route("/message", post(message))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(cookie, MemoryStore::new())?);

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().unwrap_or_else(|_| {
            // Said as it is: `?` here would print the message in its `Debug` form.
            eprintln!("PORT must be a port number (0 to 65535), not {port:?}");
            std::process::exit(2)
        }),
        Err(_) => 3000,
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let url = format!("http://{}/", listener.local_addr()?);
    println!("cloakroom quick start listening on {url}");
    axum::serve(listener, app).await?;
    Ok(())
}
