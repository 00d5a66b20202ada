//! The security suite (`cloakroom_testkit::security`: what an attacker can send, and what they
//! must never get) against every server-side store; a new store adds one test here.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use cloakroom_testkit::{MemcachedServer, RedisCluster, RedisServer, security};
use cloakroom_tests::cluster_url;

#[tokio::test]
async fn memory() {
    assert_eq!(security(cloakroom::MemoryStore::new()).await, Ok(()));
}

#[tokio::test]
async fn fs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A directory of the store's own making: private (0700).
    let store = cloakroom_fs::FsStore::new(dir.path().join("sessions")).expect("the store");
    assert_eq!(security(store).await, Ok(()));
}

#[tokio::test]
async fn memcache() {
    let server = MemcachedServer::start().await.expect("memcached starts");
    let store = cloakroom_memcache::MemcacheStore::builder()
        .servers([server.addr()])
        .build()
        .expect("the store");
    assert_eq!(security(store).await, Ok(()));
}

async fn redis_store(url: &str) -> cloakroom_redis::RedisStore {
    cloakroom_redis::RedisStore::builder()
        .url(url)
        .build()
        .await
        .expect("the store connects")
}

#[tokio::test]
async fn redis() {
    let server = RedisServer::start().await.expect("redis-server starts");
    assert_eq!(security(redis_store(&server.url()).await).await, Ok(()));
}

#[tokio::test]
async fn redis_cluster() {
    let cluster = RedisCluster::start().await.expect("the cluster starts");
    assert_eq!(
        security(redis_store(&cluster_url(&cluster)).await).await,
        Ok(())
    );
}

#[tokio::test]
async fn postgres() {
    let server = cloakroom_testkit::PostgresServer::start()
        .await
        .expect("PostgreSQL starts");
    let store = cloakroom_sql::PostgresStore::builder()
        .url(server.url())
        .build()
        .await
        .expect("the store connects");
    store.migrate().await.expect("migrate");
    assert_eq!(security(store).await, Ok(()));
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = cloakroom_sql::SqliteStore::builder()
        .path(dir.path().join("sessions.db"))
        .build()
        .await
        .expect("the store opens");
    store.migrate().await.expect("migrate");
    assert_eq!(security(store).await, Ok(()));
}
