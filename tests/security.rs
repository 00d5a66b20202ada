//! The security suite (`cloakroom_testkit::security`: what an attacker can send, and what they
//! must never get) against every server-side store; a new store adds one test here.

use cloakroom_testkit::{MemcachedServer, RedisCluster, RedisServer, security};

#[tokio::test]
async fn memory() {
    assert_eq!(security(cloakroom::MemoryStore::new()).await, Ok(()));
}

#[tokio::test]
async fn fs() {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("no temporary directory: {error}"));
    // A directory of the store's own making: private (0700).
    let store = cloakroom_fs::FsStore::new(dir.path().join("sessions"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(security(store).await, Ok(()));
}

#[tokio::test]
async fn memcache() {
    let server = MemcachedServer::start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let store = cloakroom_memcache::MemcacheStore::builder()
        .servers([server.addr()])
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(security(store).await, Ok(()));
}

async fn redis_store(url: &str) -> cloakroom_redis::RedisStore {
    cloakroom_redis::RedisStore::builder()
        .url(url)
        .build()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"))
}

#[tokio::test]
async fn redis() {
    let server = RedisServer::start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(security(redis_store(&server.url()).await).await, Ok(()));
}

#[tokio::test]
async fn redis_cluster() {
    let cluster = RedisCluster::start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let ports = cluster.ports();
    let url = format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    assert_eq!(security(redis_store(&url).await).await, Ok(()));
}
