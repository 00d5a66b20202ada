//! The app the end-to-end tests drive: a handler for each session operation.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cloakroom::{
    MemoryStore, OwnerIndex, Owners, OwnersError, Revoked, Session, SessionCookie, SessionError,
    SessionHandle, SessionId, SessionLayer, SessionStore,
};

use crate::TestServer;

/// The session cookie name the test apps use.
pub const NAME: &str = "__session";
/// The newest signing secret of the test apps.
pub const SECRET: &[u8] = b"test secret number one, 32+ bytes long";
/// A retired signing secret.
pub const OLD_SECRET: &[u8] = b"test secret number zero, also 32+ bytes";

/// The test cookie: our name and secret, `Secure` off for plain-HTTP loopback.
pub fn cookie() -> SessionCookie {
    SessionCookie::new(NAME).secret(SECRET).secure(false)
}

/// `SessionLayer::new`, panicking with the reason if the configuration is rejected.
pub fn layer<St: SessionStore>(cookie: SessionCookie, store: St) -> SessionLayer<St> {
    SessionLayer::new(cookie, store).expect("the test layer's configuration")
}

/// `GET /count`: increments and returns `visits`.
pub async fn count(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(visits.to_string())
}

async fn peek(session: Session) -> Result<String, SessionError> {
    let visits: Option<u64> = session.get("visits")?;
    Ok(visits.map_or_else(|| "none".to_owned(), |v| v.to_string()))
}

async fn set(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<(), SessionError> {
    session.set(key, value)
}

async fn keys(session: Session) -> Result<String, SessionError> {
    let mut keys: Vec<String> = session.data()?.keys().cloned().collect();
    keys.sort();
    Ok(keys.join(","))
}

async fn flash(session: Session) -> Result<Redirect, SessionError> {
    session.flash("notice", "saved")?;
    Ok(Redirect::to("/show-flash"))
}

async fn show_flash(session: Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("notice")?
        .unwrap_or_else(|| "no notice".to_owned()))
}

async fn login(session: Session) -> Result<String, SessionError> {
    session.set("user", "ada")?;
    session.regenerate_id()?;
    Ok("logged in".to_owned())
}

async fn whoami(session: Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".to_owned()))
}

async fn logout(session: Session) -> &'static str {
    session.destroy();
    "logged out"
}

async fn destroy_then_set(session: Session) -> String {
    session.destroy();
    match session.set("x", 1) {
        Ok(()) => "changed".to_owned(),
        Err(error) => error.to_string(),
    }
}

async fn own_cookie(session: Session) -> Result<Response, SessionError> {
    session.set("k", "v")?;
    Ok(([(header::SET_COOKIE, "theme=dark; Path=/")], "ok").into_response())
}

async fn own_cache_control(session: Session) -> Result<Response, SessionError> {
    session.set("k", "v")?;
    Ok(([(header::CACHE_CONTROL, "private, max-age=60")], "ok").into_response())
}

/// `GET /public`: writes the session and asks shared caches to keep the response.
async fn public(session: Session) -> Result<Response, SessionError> {
    session.set("k", "v")?;
    Ok((
        [(header::CACHE_CONTROL, "public, s-maxage=600, max-age=60")],
        "ok",
    )
        .into_response())
}

/// `POST /logout-then-fail`: logs out, then fails.
async fn logout_then_fail(session: Session) -> StatusCode {
    session.destroy();
    StatusCode::INTERNAL_SERVER_ERROR
}

/// `POST /login-then-fail`: logs in (a new id), then fails.
async fn login_then_fail(session: Session) -> Result<StatusCode, SessionError> {
    session.set("user", "mallory")?;
    session.regenerate_id()?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `GET /slow-write`: a request that takes its time, then writes.
async fn slow_write(session: Session) -> Result<(), SessionError> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.set("late", 1)
}

async fn fail(session: Session) -> Result<StatusCode, SessionError> {
    session.set("half-done", true)?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn remember(session: Session) -> Result<(), SessionError> {
    session.set("user", "ada")?;
    session.set_idle_timeout(Duration::from_secs(60 * 24 * 60 * 60))
}

/// `POST /stay-signed-in/{yes|no}`: logs in as `ada` (a new id), with a cookie that outlives
/// the browser or not ("remember me").
async fn stay_signed_in(
    session: Session,
    axum::extract::Path(choice): axum::extract::Path<String>,
) -> Result<(), SessionError> {
    session.set("user", "ada")?;
    session.regenerate_id()?;
    session.set_persistent(choice == "yes")
}

/// `POST /forever`: logs in as `ada` with an idle timeout of `u64::MAX` seconds, a careless
/// "remember me forever".
async fn forever(session: Session) -> Result<(), SessionError> {
    session.set("user", "ada")?;
    session.set_idle_timeout(Duration::from_secs(u64::MAX))
}

/// `POST /take/{key}`: removes `key` and answers the string it held, or `none`.
async fn take(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    Ok(session
        .remove::<String>(&key)?
        .unwrap_or_else(|| "none".to_owned()))
}

/// `POST /set-none/{key}`: sets `key` to `None`.
async fn set_none(session: Session, Path(key): Path<String>) -> Result<(), SessionError> {
    session.set(key, None::<String>)
}

/// `GET /get/{key}`: `key` read as a string, or `none`.
async fn get_string(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    Ok(session
        .get::<String>(&key)?
        .unwrap_or_else(|| "none".to_owned()))
}

/// `POST /clear`: removes every key, keeping the session.
async fn clear(session: Session) -> Result<(), SessionError> {
    session.clear()
}

/// `GET /empty`: whether the session holds no key.
async fn empty(session: Session) -> String {
    session.is_empty().to_string()
}

/// `GET /expiry`: the idle timeout in seconds, and whether there is a deadline.
async fn expiry(session: Session) -> String {
    let deadline = session.deadline().map_or("none", |_| "set");
    format!("{} {deadline}", session.idle_timeout().as_secs())
}

/// `POST /deadline/{secs}`: the session ends `secs` seconds from now at the latest.
async fn deadline(session: Session, Path(secs): Path<u64>) -> Result<(), SessionError> {
    session.set_deadline(std::time::SystemTime::now() + Duration::from_secs(secs))
}

async fn noop() -> &'static str {
    "nothing"
}

/// `GET /signed-in`: whether the session has a user, through a method that cannot fail.
async fn signed_in(session: Session) -> &'static str {
    if session.has("user") { "yes" } else { "no" }
}

/// Every route the tests use; see each handler.
pub fn routes() -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/peek", get(peek))
        .route("/set/{key}/{value}", post(set))
        .route("/keys", get(keys))
        .route("/flash", post(flash))
        .route("/show-flash", get(show_flash))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .route("/destroy-then-set", post(destroy_then_set))
        .route("/own-cookie", get(own_cookie))
        .route("/own-cache-control", get(own_cache_control))
        .route("/public", get(public))
        .route("/fail", get(fail))
        .route("/slow-write", get(slow_write))
        .route("/logout-then-fail", post(logout_then_fail))
        .route("/login-then-fail", post(login_then_fail))
        .route("/remember", post(remember))
        .route("/stay-signed-in/{choice}", post(stay_signed_in))
        .route("/forever", post(forever))
        .route("/noop", get(noop))
        .route("/signed-in", get(signed_in))
        .route("/take/{key}", post(take))
        .route("/clear", post(clear))
        .route("/set-none/{key}", post(set_none))
        .route("/get/{key}", get(get_string))
        .route("/empty", get(empty))
        .route("/expiry", get(expiry))
        .route("/deadline/{secs}", post(deadline))
}

/// `POST /sign-in/{owner}`: logs in as `owner` (a new id, the owner noted).
async fn sign_in(session: Session, Path(owner): Path<String>) -> Result<String, SessionError> {
    session.set("user", &owner)?;
    session.set_owner(owner)?;
    Ok("signed in".to_owned())
}

/// `GET /owner`: the session's owner, or `anonymous`.
async fn owner(session: Session) -> String {
    session.owner().unwrap_or_else(|| "anonymous".to_owned())
}

/// What the owner routes answer when a handler needs an owner and the session has none.
const NOT_SIGNED_IN: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "not signed in");

/// The routes of an owner's sessions, on `owners`:
///
/// - `POST /sign-in/{owner}`, `GET /owner`;
/// - `GET /devices`: one line per session of the session's owner, the most recent login
///   first: `handle current user-agent address`;
/// - `POST /revoke/{handle}`: `true` if it ended one of the owner's sessions;
/// - `POST /revoke-others`: how many other sessions of the owner it ended (`all` when the
///   store cannot say);
/// - `POST /revoke-all/{owner}`: how many sessions of `owner` it ended (an admin's route).
pub fn owner_routes<St: OwnerIndex>(owners: Owners<St>) -> Router {
    let devices = {
        let owners = owners.clone();
        move |session: Session| async move {
            let Some(owner) = session.owner() else {
                return Ok::<_, OwnersError<St::Error>>(NOT_SIGNED_IN.into_response());
            };
            let lines: Vec<String> = owners
                .list(&owner, Some(&session))
                .await?
                .iter()
                .map(|info| {
                    let ua = info.user_agent.as_deref().unwrap_or("-");
                    let address = info.address.as_deref().unwrap_or("-");
                    format!("{} {} {ua} {address}", info.handle, info.current)
                })
                .collect();
            Ok(lines.join("\n").into_response())
        }
    };
    let revoke = {
        let owners = owners.clone();
        move |session: Session, Path(handle): Path<String>| async move {
            let (Some(owner), Ok(handle)) = (session.owner(), handle.parse::<SessionHandle>())
            else {
                return Ok::<_, OwnersError<St::Error>>(NOT_SIGNED_IN.into_response());
            };
            Ok(owners
                .revoke(&owner, &handle)
                .await?
                .to_string()
                .into_response())
        }
    };
    let revoke_others = {
        let owners = owners.clone();
        move |session: Session| async move {
            Ok::<_, OwnersError<St::Error>>(shown(&owners.revoke_others(&session).await?))
        }
    };
    let revoke_all = move |Path(owner): Path<String>| async move {
        Ok::<_, OwnersError<St::Error>>(shown(&owners.revoke_all(&owner).await?))
    };
    Router::new()
        .route("/sign-in/{owner}", post(sign_in))
        .route("/owner", get(owner))
        .route("/devices", get(devices))
        .route("/revoke/{handle}", post(revoke))
        .route("/revoke-others", post(revoke_others))
        .route("/revoke-all/{owner}", post(revoke_all))
}

/// How many sessions a revoke ended, or `all` when the store cannot name them.
fn shown(revoked: &Revoked) -> String {
    revoked
        .count()
        .map_or_else(|| "all".to_owned(), |n| n.to_string())
}

/// The test routes and the owner routes behind `layer`, on a loopback port.
pub async fn serve_owned<St: OwnerIndex>(layer: SessionLayer<St>) -> TestServer {
    let owners = layer.owners();
    TestServer::start(routes().merge(owner_routes(owners)).layer(layer)).await
}

/// The test routes behind `layer`, on a loopback port.
pub async fn serve<St: SessionStore>(layer: SessionLayer<St>) -> TestServer {
    TestServer::start(routes().layer(layer)).await
}

/// The test routes on a fresh memory store with the test cookie.
pub async fn memory_server() -> (TestServer, MemoryStore) {
    let store = MemoryStore::new();
    (serve(layer(cookie(), store.clone())).await, store)
}

/// The `Max-Age` of a `Set-Cookie` value.
pub fn max_age(set_cookie: &str) -> Option<u64> {
    set_cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .and_then(|value| value.parse().ok())
}

/// The session id a session cookie's value carries (the part before its signature); panics if
/// there is none.
pub fn id_from(cookie_value: &str) -> SessionId {
    let id = cookie_value.split('.').next().unwrap_or_default();
    SessionId::parse(id).unwrap_or_else(|| panic!("no session id in {cookie_value:?}"))
}

/// `count` concurrent requests of one session, spread over `browsers` (which share its
/// cookie), each setting its own key `k000`, `k001`, ...; panics on any answer but 200.
/// Returns the session's keys afterwards, as `/keys` lists them.
pub async fn write_concurrently(browsers: &[crate::Browser], count: usize) -> String {
    let writers: Vec<_> = (0..count)
        .map(|i| {
            let browser = browsers[i % browsers.len()].clone();
            tokio::spawn(async move {
                browser
                    .post_form(&format!("/set/k{i:03}/{i}"), "")
                    .await
                    .status
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(
            writer.await.ok(),
            Some(StatusCode::OK),
            "a concurrent writer failed"
        );
    }
    browsers[0].get("/keys").await.body
}
