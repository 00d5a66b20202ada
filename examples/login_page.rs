//! A small server-rendered login page on the memory store: a login form that gives the session
//! its owner (and so a new id), a flash message after the redirect, a page only a logged-in
//! user sees ("Keep me signed in" chooses whether its cookie outlives the browser), a "Your
//! devices" page (each session of the user with when it signed in, when it
//! was last active and its browser, a "Sign out" per device and "Sign out all other
//! devices"), and logout that destroys the session.
//!
//! ```sh
//! cargo run -p cloakroom-examples --example login_page
//! ```
//!
//! `PORT` picks the port (default 3000; 0 for any free one); one it cannot listen on is an
//! error naming it.

use std::time::SystemTime;

use axum::extract::{Form, Path};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use cloakroom::{
    MemoryStore, MemoryStoreError, Owners, OwnersError, Session, SessionCookie, SessionError,
    SessionHandle, SessionLayer,
};
use serde::Deserialize;

type Devices = Owners<MemoryStore>;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    /// "Keep me signed in": the checkbox is sent only when ticked.
    remember: Option<String>,
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
<label><input id="remember" name="remember" type="checkbox" value="yes"> Keep me signed in</label>
<button id="login" type="submit">Log in</button></form>"#
        ),
    ))
}

/// Any non-empty username with the password `secret` logs in (a demo, not an auth system).
async fn login(session: Session, Form(form): Form<Credentials>) -> Result<Redirect, SessionError> {
    let too_long = form.username.trim().len() > cloakroom::store::MAX_OWNER_LEN;
    if form.username.trim().is_empty() || too_long || form.password != "secret" {
        session.flash("flash", "Wrong username or password.")?;
        return Ok(Redirect::to("/login"));
    }
    // Whose session it is: this moves it to a new id (an id seen or planted before login is
    // worthless) and lists it among the user's devices.
    session.set_owner(form.username.trim())?;
    // Ticked: the cookie outlives the browser; otherwise it ends when the browser closes.
    session.set_persistent(form.remember.is_some())?;
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
<p><a id="devices" href="/devices">Your devices</a></p>
<form method="post" action="/logout"><button id="logout" type="submit">Log out</button></form>"#,
            escape(&user)
        ),
    )
    .into_response())
}

/// How long ago `time` was, roughly.
fn ago(time: SystemTime) -> String {
    let seconds = SystemTime::now()
        .duration_since(time)
        .map_or(0, |since| since.as_secs());
    match seconds {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// Why a devices page failed: the session, or the store behind the list.
enum DevicesError {
    Session(SessionError),
    Owners(OwnersError<MemoryStoreError>),
}

impl From<SessionError> for DevicesError {
    fn from(error: SessionError) -> Self {
        Self::Session(error)
    }
}

impl From<OwnersError<MemoryStoreError>> for DevicesError {
    fn from(error: OwnersError<MemoryStoreError>) -> Self {
        Self::Owners(error)
    }
}

impl IntoResponse for DevicesError {
    fn into_response(self) -> Response {
        match self {
            Self::Session(error) => error.into_response(),
            Self::Owners(error) => error.into_response(),
        }
    }
}

/// "Your devices": every session of the signed-in user, this one marked.
async fn devices(
    session: Session,
    Extension(owners): Extension<Devices>,
) -> Result<Response, DevicesError> {
    let Some(owner) = session.owner() else {
        return Ok(Redirect::to("/login").into_response());
    };
    let flash = flash_html(&session)?;
    let mut rows = String::new();
    for device in owners.list(&owner, Some(&session)).await? {
        let browser = escape(device.user_agent.as_deref().unwrap_or("unknown browser"));
        let action = if device.current {
            r#"<b class="current">this device</b>"#.to_owned()
        } else {
            format!(
                r#"<form method="post" action="/devices/{handle}/sign-out"><button class="sign-out" type="submit">Sign out</button></form>"#,
                handle = device.handle
            )
        };
        rows.push_str(&format!(
            r#"<tr class="device"><td class="browser">{browser}</td><td>signed in {}</td><td>active {}</td><td>{action}</td></tr>"#,
            ago(device.signed_in),
            ago(device.last_active),
        ));
    }
    Ok(page(
        "Your devices",
        &format!(
            r#"{flash}<table id="devices">{rows}</table>
<form method="post" action="/devices/sign-out-others"><button id="sign-out-others" type="submit">Sign out all other devices</button></form>
<p><a href="/account">Back</a></p>"#
        ),
    )
    .into_response())
}

/// Signs out the device `handle` names, if it is one of this user's.
async fn sign_out_device(
    session: Session,
    Extension(owners): Extension<Devices>,
    Path(handle): Path<String>,
) -> Result<Redirect, DevicesError> {
    let (Some(owner), Ok(handle)) = (session.owner(), handle.parse::<SessionHandle>()) else {
        return Ok(Redirect::to("/login"));
    };
    if owners.revoke(&owner, &handle).await? {
        session.flash("flash", "Signed out that device.")?;
    }
    Ok(Redirect::to("/devices"))
}

async fn sign_out_others(
    session: Session,
    Extension(owners): Extension<Devices>,
) -> Result<Redirect, DevicesError> {
    if session.owner().is_none() {
        return Ok(Redirect::to("/login"));
    }
    owners.revoke_others(&session).await?;
    session.flash("flash", "Signed out every other device.")?;
    Ok(Redirect::to("/devices"))
}

async fn logout(session: Session) -> Redirect {
    session.destroy();
    Redirect::to("/login")
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
    // Plain http on loopback for the demo; behind TLS keep the default (Secure on). Until a
    // login says "keep me signed in", the cookie ends when the browser closes.
    let cookie = cookie.secure(false).persistent(false);
    // The devices page shows each session's browser: kept at login, for signed-in sessions
    // only.
    let layer = SessionLayer::new(cookie, MemoryStore::new())?.keep_user_agent(true);
    let owners = layer.owners();
    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_form).post(login))
        .route("/account", get(account))
        .route("/devices", get(devices))
        .route("/devices/{handle}/sign-out", post(sign_out_device))
        .route("/devices/sign-out-others", post(sign_out_others))
        .route("/logout", post(logout))
        .layer(Extension(owners))
        .layer(layer);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    println!(
        "cloakroom login page listening on http://{}/",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
