//! The tonic example as a client sees it: two calls over one channel share a session when the
//! client sends back the cookie it was given.

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
async fn two_calls_with_the_returned_cookie_share_a_session() {
    let server = Example::start("tonic_counter").await;
    let mut client = CounterClient::connect(format!("http://{}", server.addr))
        .await
        .expect("a client connects to the tonic example");

    let first = client
        .visit(Request::new(VisitRequest {}))
        .await
        .expect("the first call");
    let set_cookie = first
        .metadata()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(first.get_ref().visits, 1);
    assert!(
        set_cookie.starts_with("__session=") && set_cookie.contains("HttpOnly"),
        "{set_cookie:?}"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default();

    for expected in [2, 3] {
        let mut request = Request::new(VisitRequest {});
        let value = MetadataValue::try_from(cookie).expect("the cookie as metadata");
        request.metadata_mut().insert("cookie", value);
        let reply = client.visit(request).await.expect("the call");
        assert_eq!(
            reply.get_ref().visits,
            expected,
            "the session did not persist"
        );
    }

    let fresh = client.visit(Request::new(VisitRequest {})).await;
    assert_eq!(
        fresh.map(|r| r.get_ref().visits).ok(),
        Some(1),
        "a call without the cookie shared a session"
    );
}
