//! What the security suite drives: a small app behind a real `SessionLayer`, and a client that
//! keeps the session cookie as a browser does. Requests go straight into the service, in
//! process: what the suite checks is the layer and the store, not an HTTP server.

use std::convert::Infallible;
use std::future::{Ready, poll_fn, ready};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use cloakroom::store::{Changes, Ids, Record, SessionStore, Update};
use cloakroom::{Session, SessionError, SessionId, SessionLayer, SessionService};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer as _;
use tower_service::Service;

/// The cookie name the suite's apps use.
pub(super) const NAME: &str = "__session";
/// The newest signing secret.
pub(super) const SECRET: &[u8] = b"security suite secret number one, 32+ bytes";
/// A retired signing secret.
pub(super) const OLD_SECRET: &[u8] = b"security suite secret number zero, 32+ bytes";
/// Another application's secret.
pub(super) const FOREIGN_SECRET: &[u8] = b"another application's secret, 32+ bytes";

/// The store under test, shared by the suite's several layers (one per app configuration).
pub(super) struct Shared<St>(pub(super) Arc<St>);

impl<St> Clone for Shared<St> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<St: SessionStore> SessionStore for Shared<St> {
    type Error = St::Error;

    const IDS: Ids = St::IDS;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, St::Error> {
        self.0.load(id).await
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Record>, St::Error> {
        self.0.read(id).await
    }

    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, St::Error>> {
        self.0.read_now(id)
    }

    async fn create(&self, record: &Record) -> Result<SessionId, St::Error> {
        self.0.create(record).await
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, St::Error> {
        self.0.update(id, changes).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), St::Error> {
        self.0.delete(id).await
    }
}

/// The handlers, one per path:
///
/// - `/count`: increments `visits` and answers it;
/// - `/peek`: answers `visits`, or `none`;
/// - `/login`: sets `user` to `ada` and regenerates the id;
/// - `/whoami`: answers `user`, or `anonymous`;
/// - `/logout`: destroys the session;
/// - `/forever`: logs in as `ada` with an idle timeout of `u64::MAX` seconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct App;

impl Service<Request<String>> for App {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        let answer = match request.extensions().get::<Session>() {
            Some(session) => handle(session, request.uri().path()),
            None => Err(Failure::NoSession),
        };
        let (status, body) = match answer {
            Ok(body) => (StatusCode::OK, body),
            Err(Failure::NotFound) => (StatusCode::NOT_FOUND, String::new()),
            Err(failure) => (StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        ready(Ok(response))
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no session in the request: the layer did not run")]
    NoSession,
    #[error("no such path")]
    NotFound,
    #[error(transparent)]
    Session(#[from] SessionError),
}

fn handle(session: &Session, path: &str) -> Result<String, Failure> {
    Ok(match path {
        "/count" => {
            let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
            session.set("visits", visits)?;
            visits.to_string()
        }
        "/peek" => session
            .get::<u64>("visits")?
            .map_or_else(|| "none".to_owned(), |visits| visits.to_string()),
        "/login" => {
            session.set("user", "ada")?;
            session.regenerate_id()?;
            "logged in".to_owned()
        }
        "/whoami" => session
            .get::<String>("user")?
            .unwrap_or_else(|| "anonymous".to_owned()),
        "/logout" => {
            session.destroy();
            "logged out".to_owned()
        }
        "/forever" => {
            session.set("user", "ada")?;
            session.set_idle_timeout(Duration::from_secs(u64::MAX))?;
            "remembered".to_owned()
        }
        _ => return Err(Failure::NotFound),
    })
}

/// The app behind `layer`.
pub(super) type Served<St> = SessionService<App, Shared<St>>;

pub(super) fn serve<St: SessionStore>(layer: &SessionLayer<Shared<St>>) -> Served<St> {
    layer.layer(App)
}

/// The header the suite's token-carrying layer uses ([`cloakroom::Transport::Header`]).
pub(super) const TOKEN: HeaderName = HeaderName::from_static("x-session-token");

/// A response, as the suite reads it.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: String,
    /// Every `Set-Cookie` the response carried.
    pub(super) set_cookies: Vec<String>,
    /// The [`TOKEN`] header the response carried, if any.
    pub(super) token: Option<String>,
}

impl Answer {
    /// The `Set-Cookie` for the session cookie, if any.
    pub(super) fn session_cookie(&self) -> Option<&str> {
        self.set_cookies
            .iter()
            .map(String::as_str)
            .find(|set_cookie| set_cookie.starts_with(&format!("{NAME}=")))
    }

    /// Whether the response cleared the session cookie.
    pub(super) fn cleared(&self) -> bool {
        self.session_cookie()
            .is_some_and(|set_cookie| max_age(set_cookie) == Some(0))
    }
}

/// The `Max-Age` of a `Set-Cookie` value.
pub(super) fn max_age(set_cookie: &str) -> Option<u64> {
    set_cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .and_then(|value| value.parse().ok())
}

/// A browser of one app: it keeps the session cookie the app sets, and sends it back.
pub(super) struct Browser<St: SessionStore> {
    app: Served<St>,
    cookie: Mutex<Option<String>>,
}

impl<St: SessionStore> Browser<St> {
    pub(super) fn new(app: &Served<St>) -> Self {
        Self {
            app: app.clone(),
            cookie: Mutex::new(None),
        }
    }

    /// The session cookie's value, if the browser has one.
    pub(super) fn cookie(&self) -> Option<String> {
        self.cookie
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `value` in the jar as the session cookie (an attacker choosing what to send).
    pub(super) fn set_cookie(&self, value: &str) {
        *self.cookie.lock().unwrap_or_else(PoisonError::into_inner) = Some(value.to_owned());
    }

    /// A request for `path` with the jar's cookie; the response's cookie goes into the jar.
    pub(super) async fn get(&self, path: &str) -> Answer {
        let cookie = self.cookie().map(|value| format!("{NAME}={value}"));
        let headers: Vec<Vec<u8>> = cookie.into_iter().map(String::into_bytes).collect();
        let answer = self.send(path, &headers).await;
        if let Some(set_cookie) = answer.session_cookie() {
            let value = set_cookie
                .split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
                .map(|(_, value)| value.to_owned());
            let mut jar = self.cookie.lock().unwrap_or_else(PoisonError::into_inner);
            *jar = value.filter(|_| max_age(set_cookie) != Some(0));
        }
        answer
    }

    /// A request for `path` with exactly these `Cookie` header values (the jar is neither sent
    /// nor changed).
    pub(super) async fn send(&self, path: &str, cookie_headers: &[Vec<u8>]) -> Answer {
        let mut request = Request::new(String::new());
        *request.uri_mut() = path.parse().unwrap_or_default();
        for value in cookie_headers {
            // Bytes `http` itself refuses (a newline, say) never reach a server either.
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request.headers_mut().append(COOKIE, value);
            }
        }
        self.exchange(request).await
    }

    /// A request for `path` with `token` in the [`TOKEN`] header and no cookie.
    pub(super) async fn send_token(&self, path: &str, token: &str) -> Answer {
        let mut request = Request::new(String::new());
        *request.uri_mut() = path.parse().unwrap_or_default();
        if let Ok(value) = HeaderValue::from_str(token) {
            request.headers_mut().insert(TOKEN, value);
        }
        self.exchange(request).await
    }

    /// A request for `path` with exactly these values of the [`TOKEN`] header and, if given,
    /// `cookie` as the session cookie (the jar is neither sent nor changed).
    pub(super) async fn send_tokens(
        &self,
        path: &str,
        tokens: &[Vec<u8>],
        cookie: Option<&str>,
    ) -> Answer {
        let mut request = Request::new(String::new());
        *request.uri_mut() = path.parse().unwrap_or_default();
        for value in tokens {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request.headers_mut().append(TOKEN, value);
            }
        }
        if let Some(value) = cookie.and_then(|c| HeaderValue::try_from(format!("{NAME}={c}")).ok())
        {
            request.headers_mut().append(COOKIE, value);
        }
        self.exchange(request).await
    }

    /// Sends `request` to the app and reads its answer.
    async fn exchange(&self, request: Request<String>) -> Answer {
        let mut app = self.app.clone();
        let response = match poll_fn(|cx| app.poll_ready(cx)).await {
            Ok(()) => app.call(request).await,
            Err(never) => match never {},
        };
        let response = match response {
            Ok(response) => response,
            Err(never) => match never {},
        };
        Answer {
            status: response.status(),
            set_cookies: response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect(),
            token: response
                .headers()
                .get(TOKEN)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
            body: response.into_body(),
        }
    }
}
