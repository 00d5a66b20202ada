//! Plain hyper 1, no framework: `SessionLayer` around a `service_fn`.
//!
//! ```sh
//! cargo run -p cloakroom-examples --example hyper_service_fn
//! ```
//!
//! Each request counts the visits of its session; the `Session` comes from the request's
//! extensions, where the layer put it. `PORT` picks the port (default 3000; 0 for any free
//! one); one it cannot listen on is an error naming it.

use std::convert::Infallible;

use bytes::Bytes;
use cloakroom::{MemoryStore, Session, SessionCookie, SessionLayer};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

async fn count(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(session) = request.extensions().get::<Session>() else {
        let mut response = Response::new(Full::from("SessionLayer is not installed"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(response);
    };
    let visits = match session.get::<u64>("visits") {
        Ok(visits) => visits.unwrap_or(0) + 1,
        Err(_) => 1,
    };
    let body = match session.set("visits", visits) {
        Ok(()) => format!("visit {visits}\n"),
        Err(error) => format!("could not count: {error}\n"),
    };
    Ok(Response::new(Full::from(body)))
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
    // Plain http on loopback; keep Secure on behind TLS.
    let cookie = cookie.secure(false);
    let service = tower::ServiceBuilder::new()
        .layer(SessionLayer::new(cookie, MemoryStore::new())?)
        .service_fn(count);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    println!(
        "cloakroom hyper example listening on http://{}/",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = connection
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
