//! The custom-store example passes the conformance suite.

#[path = "../custom_store.rs"]
#[allow(dead_code, unreachable_pub)] // the example's `main` is not used here
mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_store_example_keeps_every_promise() -> Result<(), cloakroom_testkit::Violation> {
    cloakroom_testkit::Conformance::new()
        .tick(std::time::Duration::from_millis(50))
        .run(example::MapStore::default())
        .await
}
