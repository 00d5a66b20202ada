//! A small server-rendered login page on the memory store: a login form that moves the session
//! to a new id, a flash message after the redirect, a page only a logged-in user sees, and
//! logout that destroys the session.
//!
//! ```sh
//! cargo run -p cloakroom-examples --example login_page
//! ```

use axum::Router;
use axum::extract::Form;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cloakroom::{MemoryStore, Session, SessionCookie, SessionError, SessionLayer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn flash_html(session: &Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("flash")?
        .map(|message| format!(r#"<p id="flash">{}</p>"#, escape(&message)))
        .unwrap_or_default())
}

async fn login_form(session: Session) -> Result<Html<String>, SessionError> {
    let flash = flash_html(&session)?;
    Ok(page(
        "Log in",
        &format!(
            r#"{flash}<form method="post" action="/login">
<input id="username" name="username" placeholder="username">
<input id="password" name="password" type="password" placeholder="password">
<button id="login" type="submit">Log in</button></form>"#
        ),
    ))
}

/// Any non-empty username with the password `secret` logs in (a demo, not an auth system).
async fn login(session: Session, Form(form): Form<Credentials>) -> Result<Redirect, SessionError> {
    if form.username.trim().is_empty() || form.password != "secret" {
        session.flash("flash", "Wrong username or password.")?;
        return Ok(Redirect::to("/login"));
    }
    // A new id at every privilege change: an id seen or planted before login is worthless.
    session.regenerate_id()?;
    session.set("user", form.username.trim())?;
    session.flash("flash", format!("Welcome, {}!", form.username.trim()))?;
    Ok(Redirect::to("/account"))
}

async fn account(session: Session) -> Result<Response, SessionError> {
    let Some(user) = session.get::<String>("user")? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let flash = flash_html(&session)?;
    Ok(page(
        "Account",
        &format!(
            r#"{flash}<p>Signed in as <b id="user">{}</b>.</p>
<form method="post" action="/logout"><button id="logout" type="submit">Log out</button></form>"#,
            escape(&user)
        ),
    )
    .into_response())
}

async fn logout(session: Session) -> Redirect {
    session.destroy();
    Redirect::to("/login")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("SESSION_SECRET")
        .unwrap_or_else(|_| cloakroom::SessionId::generate().as_str().repeat(2));
    // Plain http on loopback for the demo; behind TLS keep the default (Secure on).
    let cookie = SessionCookie::new("__session").secret(secret).secure(false);
    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_form).post(login))
        .route("/account", get(account))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(cookie, MemoryStore::new())?);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    #[allow(clippy::print_stdout)] // an example tells its user where to go
    {
        println!(
            "cloakroom login page listening on http://{}/",
            listener.local_addr()?
        );
    }
    axum::serve(listener, app).await?;
    Ok(())
}
