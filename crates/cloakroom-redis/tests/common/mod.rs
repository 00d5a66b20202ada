//! Helpers the Redis test files share: stores, a client for commands of our own, and the
//! cluster URL. (Each test file uses some of them.)
#![allow(dead_code)]

use cloakroom_redis::RedisStore;
use cloakroom_testkit::RedisCluster;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::Value;
use fred::types::config::{Config, ReconnectPolicy};

/// A `RedisStore` on `url` with the defaults (local copy on).
pub(crate) async fn store(url: &str) -> RedisStore {
    match RedisStore::builder().url(url).build().await {
        Ok(store) => store,
        Err(error) => panic!("cannot connect to {url}: {error}"),
    }
}

/// A `RedisStore` on `url` without the local copy: every read goes to Redis.
pub(crate) async fn uncached_store(url: &str) -> RedisStore {
    match RedisStore::builder().url(url).local_cache(0).build().await {
        Ok(store) => store,
        Err(error) => panic!("cannot connect to {url}: {error}"),
    }
}

/// The `redis-cluster://` URL of a test cluster.
pub(crate) fn cluster_url(cluster: &RedisCluster) -> String {
    let ports = cluster.ports();
    format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    )
}

/// A plain fred client on `url` (one server or node) for inspecting it and injecting faults;
/// it reconnects, so a restarted server does not take it along.
pub(crate) async fn admin(url: &str) -> Client {
    let config = Config::from_url(url).unwrap_or_else(|error| panic!("{url}: {error}"));
    let policy = ReconnectPolicy::new_constant(0, 100);
    let client = Client::new(config, None, None, Some(policy));
    if let Err(error) = client.init().await {
        panic!("cannot connect to {url}: {error}");
    }
    client
}

/// `args` through `client`: Redis's answer or error.
pub(crate) async fn run(client: &Client, args: &[&str]) -> Result<Value, fred::error::Error> {
    let (name, args) = args.split_first().unwrap_or((&"PING", &[]));
    let custom = fred::types::CustomCommand::new(
        name.to_string(),
        fred::types::ClusterHash::FirstKey,
        false,
    );
    client.custom(custom, args.to_vec()).await
}

/// `args` through `client`, failing the test if Redis refuses.
pub(crate) async fn command(client: &Client, args: &[&str]) {
    if let Err(error) = run(client, args).await {
        panic!("{args:?}: {error}");
    }
}
