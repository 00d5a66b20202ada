//! The batch: a call left unpolled after its first poll, or dropped off any runtime, holds up
//! no one else (every call of an instance shares one queue).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cloakroom::SessionId;
use cloakroom::store::SessionStore;
use common::{redis, uncached_store};

/// A future that was polled once and is then kept, unpolled, for a while (a `select!` branch
/// that lost, a `futures::select` loser kept for later, a buffered stream whose consumer is
/// busy): every other caller of the store must still be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_polled_once_then_left_alone_holds_up_no_one_else() {
    let server = redis().await;
    let store = uncached_store(&server.url()).await;
    let parked_id = SessionId::generate();
    let mut parked = Box::pin(store.read(&parked_id));
    // One poll queues the call. (On a loaded machine the batch may even be answered before
    // this poll returns; then nothing is parked, and the rest holds trivially.)
    std::future::poll_fn(|cx| Poll::Ready(parked.as_mut().poll(cx).is_pending())).await;

    let other = store.clone();
    let answered = tokio::spawn(async move {
        let id = SessionId::generate();
        tokio::time::timeout(Duration::from_secs(3), other.read(&id)).await
    })
    .await
    .unwrap();
    // Held until after the check: the caller this is about keeps its future.
    let still_parked = parked;
    assert!(
        answered.is_ok(),
        "another task's read was not answered within 3 s while an unrelated future sat unpolled"
    );
    drop(still_parked);
}

/// Off any runtime (a plain thread), a call given up on after one poll (`now_or_never`, a
/// `select` against a ready future) must leave the store usable for everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_given_up_off_any_runtime_leaves_the_store_usable() {
    let server = redis().await;
    let store = uncached_store(&server.url()).await;
    let off = store.clone();
    // Whatever the call does off a runtime (it may even panic in fred), the thread ends.
    let _ = std::thread::spawn(move || {
        let id = SessionId::generate();
        let mut call = pin!(off.read(&id));
        let mut cx = Context::from_waker(Waker::noop());
        let _ = call.as_mut().poll(&mut cx);
        // Dropped here, unfinished, with no runtime around.
    })
    .join();

    let id = SessionId::generate();
    let answered = tokio::time::timeout(Duration::from_secs(3), store.read(&id)).await;
    assert!(
        answered.is_ok(),
        "after one call was dropped off a runtime, no read on the runtime is ever answered"
    );
}
