//! The harness the fuzz targets share: the real layer over a memory store holding one
//! victim's session, driven in process.

use std::convert::Infallible;
use std::sync::OnceLock;

use cloakroom::{MemoryStore, Session, SessionCookie, SessionLayer};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use tower::ServiceExt;

pub const NAME: &str = "__session";
const SECRET: &[u8] = b"fuzzing secret, at least thirty-two bytes";

/// The layer, a runtime to drive it, and the victim's cookie value.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    service: tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>,
    /// The victim's signed cookie value; nothing the fuzzer sends may load their data
    /// without it.
    pub victim: String,
}

async fn handler(request: Request<String>) -> Result<Response<String>, Infallible> {
    let body = match request.extensions().get::<Session>() {
        None => "no session".to_owned(),
        Some(session) => {
            if request.uri().path() == "/victim" {
                let _ = session.set("owner", "victim");
            }
            session.get::<String>("owner").ok().flatten().unwrap_or_default()
        }
    };
    Ok(Response::new(body))
}

impl Harness {
    /// The one harness of this process.
    pub fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Harness::new)
    }

    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|error| panic!("runtime: {error}"));
        let service = runtime.block_on(async {
            let cookie = SessionCookie::new(NAME).secret(SECRET);
            let layer = SessionLayer::new(cookie, MemoryStore::new())
                .unwrap_or_else(|error| panic!("layer: {error}"));
            tower::util::BoxCloneSyncService::new(
                tower::ServiceBuilder::new()
                    .layer(layer)
                    .service_fn(handler),
            )
        });
        let mut harness = Self {
            runtime,
            service,
            victim: String::new(),
        };
        let response = harness.send("/victim", Vec::new());
        let set_cookie = response
            .headers()
            .get(SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        harness.victim = set_cookie
            .split(';')
            .next()
            .and_then(|pair| pair.strip_prefix("__session="))
            .unwrap_or_default()
            .to_owned();
        assert!(!harness.victim.is_empty(), "the victim got no cookie: {set_cookie:?}");
        harness
    }

    /// Sends `GET path` with the given `Cookie` header values.
    pub fn send(&self, path: &str, cookies: Vec<HeaderValue>) -> Response<String> {
        let mut request = Request::new(String::new());
        *request.uri_mut() = path.parse().unwrap_or_default();
        for cookie in cookies {
            request.headers_mut().append(COOKIE, cookie);
        }
        let service = self.service.clone();
        self.runtime
            .block_on(service.oneshot(request))
            .unwrap_or_else(|never| match never {})
    }

    /// Sends the headers and checks what must hold for any input: a 200, and the victim's
    /// data only if the input carried the victim's cookie.
    pub fn check(&self, cookies: Vec<HeaderValue>) {
        let carries_victim = cookies
            .iter()
            .any(|value| contains(value.as_bytes(), self.victim.as_bytes()));
        let response = self.send("/", cookies);
        assert_eq!(response.status(), StatusCode::OK);
        if !carries_victim {
            assert_ne!(response.body(), "victim", "fuzzed cookie loaded the victim's session");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
