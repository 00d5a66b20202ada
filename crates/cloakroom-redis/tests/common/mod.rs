//! Helpers the Redis test files share: servers, stores, and a client for commands of our own.
//! (Each test file uses some of them.)
#![allow(dead_code)]
// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use cloakroom_redis::RedisStore;
use cloakroom_testkit::{RedisCluster, RedisServer};
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::Value;
use fred::types::config::{Config, ReconnectPolicy};

/// The arguments of a server that keeps its data across a restart (an append-only file,
/// synced per write).
pub(crate) const DURABLE: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

/// A standalone `redis-server` on loopback.
pub(crate) async fn redis() -> RedisServer {
    RedisServer::start().await.expect("redis-server starts")
}

/// A server that keeps its data across a restart ([`DURABLE`]).
pub(crate) async fn durable_redis() -> RedisServer {
    RedisServer::start_with_args(DURABLE)
        .await
        .expect("redis-server starts")
}

/// A 3-master Redis Cluster on loopback.
pub(crate) async fn cluster() -> RedisCluster {
    RedisCluster::start().await.expect("the cluster starts")
}

/// A `RedisStore` on `url` with the defaults (local copy on).
pub(crate) async fn store(url: &str) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .build()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"))
}

/// A `RedisStore` on `url` without the local copy: every read goes to Redis.
pub(crate) async fn uncached_store(url: &str) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .local_cache(0)
        .build()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"))
}

/// A plain fred client on `url` (one server or node) for inspecting it and injecting faults;
/// it reconnects, so a restarted server does not take it along.
pub(crate) async fn admin(url: &str) -> Client {
    let config = Config::from_url(url).expect("a Redis URL");
    let policy = ReconnectPolicy::new_constant(0, 100);
    let client = Client::new(config, None, None, Some(policy));
    client
        .init()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
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
    run(client, args)
        .await
        .unwrap_or_else(|error| panic!("{args:?}: {error}"));
}
