//! The tonic example as a client sees it: calls over one channel share a session when the
//! client sends back the token metadata it was given.

use cloakroom_tests::Example;
use tonic::Request;
use tonic::metadata::MetadataValue;

#[path = "../tonic_counter.rs"]
#[allow(dead_code, unreachable_pub)] // the example's `main` and server are not used here
mod example;

// The generated stubs name the messages by their path in the example's crate root.
use example::counter::counter_client::CounterClient;
pub use example::{VisitReply, VisitRequest};

#[tokio::test]
async fn calls_that_send_back_the_token_metadata_share_a_session() {
    let server = Example::start("tonic_counter").await;
    let mut client = CounterClient::connect(format!("http://{}", server.addr))
        .await
        .expect("a client connects to the tonic example");
    let token_of = |metadata: &tonic::metadata::MetadataMap| {
        let value = metadata.get("x-session-token")?;
        value.to_str().ok().map(str::to_owned)
    };

    let first = client
        .visit(Request::new(VisitRequest {}))
        .await
        .expect("the first call");
    assert_eq!(first.get_ref().visits, 1);
    assert!(
        first.metadata().get("set-cookie").is_none(),
        "a gRPC reply carried a cookie"
    );
    let mut token = token_of(first.metadata()).expect("a token in the reply's metadata");

    for expected in [2, 3] {
        let mut request = Request::new(VisitRequest {});
        let value = MetadataValue::try_from(token.as_str()).expect("the token as metadata");
        request.metadata_mut().insert("x-session-token", value);
        let reply = client.visit(request).await.expect("the call");
        assert_eq!(
            reply.get_ref().visits,
            expected,
            "the session did not persist"
        );
        // A renewed token, when the reply carries one, replaces the one kept.
        if let Some(renewed) = token_of(reply.metadata()) {
            token = renewed;
        }
    }

    let fresh = client.visit(Request::new(VisitRequest {})).await;
    assert_eq!(
        fresh.map(|r| r.get_ref().visits).ok(),
        Some(1),
        "a call without the token shared a session"
    );
}
