//! A gRPC service behind `SessionLayer`: the session's token travels in the
//! `x-session-token` metadata (`Transport::Header`), no cookies involved.
//!
//! ```sh
//! cargo run -p cloakroom-examples --example tonic_counter
//! ```
//!
//! A gRPC client keeps the session by sending back, as `x-session-token` metadata, the last
//! token a reply carried in the same metadata (see `examples/tests/tonic_counter.rs`); its
//! first call sends the metadata empty, or none at all. `PORT` picks the port (default 50051;
//! 0 for any free one); one it cannot listen on is an error naming it.

use cloakroom::{MemoryStore, Session, SessionCookie, SessionLayer, Transport};
use tonic::{Request, Response, Status};

/// The generated server and client (see `build.rs`).
pub mod counter {
    include!(concat!(env!("OUT_DIR"), "/counter.Counter.rs"));
}

/// `Visit` takes no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VisitRequest {}

/// How many times this session has called `Visit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VisitReply {
    /// The count, this call included.
    #[prost(uint64, tag = "1")]
    pub visits: u64,
}

#[derive(Default)]
struct Counter;

#[tonic::async_trait]
impl counter::counter_server::Counter for Counter {
    async fn visit(&self, request: Request<VisitRequest>) -> Result<Response<VisitReply>, Status> {
        let session = request
            .extensions()
            .get::<Session>()
            .ok_or_else(|| Status::internal("SessionLayer is not installed"))?;
        let visits = session
            .get::<u64>("visits")
            .map_err(|error| Status::internal(error.to_string()))?
            .unwrap_or(0)
            + 1;
        session
            .set("visits", visits)
            .map_err(|error| Status::internal(error.to_string()))?;
        Ok(Response::new(VisitReply { visits }))
    }
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
    // The token in gRPC metadata instead of a cookie.
    let token = http::HeaderName::from_static("x-session-token");
    let layer =
        SessionLayer::new(cookie, MemoryStore::new())?.transport(Transport::Header(token))?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "50051".to_owned());
    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    let addr = listener.local_addr()?;
    println!("cloakroom tonic example listening on http://{addr}/");
    tonic::transport::Server::builder()
        .layer(layer)
        .add_service(counter::counter_server::CounterServer::new(Counter))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
