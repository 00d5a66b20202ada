//! What a user's sessions cost on each store: a login with an owner against one without, and
//! listing and revoking all of an owner's 100 sessions (wall time, the median of 20 rounds
//! each, on servers this program starts on loopback; on Redis, the commands each sends too).
//!
//! ```sh
//! cargo run --release -p cloakroom-bench --bin owners
//! ```

#![allow(clippy::print_stdout, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use cloakroom::store::{Owner, OwnerIndex, Record};
use cloakroom::{MemoryStore, SessionStore};
use cloakroom_fs::FsStore;
use cloakroom_memcache::MemcacheStore;
use cloakroom_redis::RedisStore;
use cloakroom_testkit::{MemcachedServer, RedisServer};
use fred::clients::Client;
use fred::interfaces::ClientLike;

const ROUNDS: usize = 20;
const SESSIONS: usize = 100;

fn record(owner: Option<&str>) -> Record {
    let mut record = Record::new(SystemTime::now(), Duration::from_secs(600), None);
    record.owner = owner.map(|name| Owner {
        name: name.to_owned(),
        since: SystemTime::now(),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".to_owned()),
        address: None,
    });
    record
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The figures of one store.
struct Costs {
    anonymous: Duration,
    login: Duration,
    list: Option<Duration>,
    revoke_all: Duration,
}

async fn measure<St: OwnerIndex>(store: &St, can_list: bool) -> Costs {
    let (mut anonymous, mut login, mut list, mut revoke) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let owner = format!("bench:{round}");
        let started = Instant::now();
        store.create(&record(None)).await.expect("create");
        anonymous.push(started.elapsed());
        for _ in 0..SESSIONS - 1 {
            store.create(&record(Some(&owner))).await.expect("create");
        }
        let started = Instant::now();
        store.create(&record(Some(&owner))).await.expect("login");
        login.push(started.elapsed());
        if can_list {
            let started = Instant::now();
            let listed = store.owned(&owner).await.expect("list");
            list.push(started.elapsed());
            assert_eq!(listed.len(), SESSIONS);
        }
        let started = Instant::now();
        store.revoke_all(&owner, None).await.expect("revoke");
        revoke.push(started.elapsed());
    }
    Costs {
        anonymous: median(anonymous),
        login: median(login),
        list: can_list.then(|| median(list)),
        revoke_all: median(revoke),
    }
}

fn row(name: &str, costs: &Costs) {
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    println!(
        "| {name} | {} | {} | {} | {} |",
        us(costs.anonymous),
        us(costs.login),
        costs.list.map_or_else(|| "unsupported".to_owned(), us),
        us(costs.revoke_all)
    );
}

async fn command_counts(client: &Client) -> HashMap<String, u64> {
    let info: String = client
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The commands one call sends to Redis.
async fn commands<F: std::future::Future>(client: &Client, call: F) -> String {
    let before = command_counts(client).await;
    call.await;
    let after = command_counts(client).await;
    let mut spent: Vec<String> = after
        .iter()
        .filter_map(|(name, calls)| {
            let n = calls - before.get(name).copied().unwrap_or(0);
            (n > 0 && name != "info").then(|| format!("{name} {n}"))
        })
        .collect();
    spent.sort();
    spent.join(", ")
}

#[tokio::main]
async fn main() {
    println!(
        "| store | create, anonymous | login (create with an owner of {SESSIONS}) | list {SESSIONS} | revoke all {SESSIONS} |"
    );
    println!("| --- | --- | --- | --- | --- |");
    row("MemoryStore", &measure(&MemoryStore::new(), true).await);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let fs = FsStore::new(dir.path().join("sessions")).expect("the file store");
    row("FsStore", &measure(&fs, true).await);

    let redis = RedisServer::start().await.expect("redis-server starts");
    let store = RedisStore::builder()
        .url(redis.url())
        .build()
        .await
        .expect("Redis");
    row("RedisStore", &measure(&store, true).await);

    let memcached = MemcachedServer::start().await.expect("memcached starts");
    let store = MemcacheStore::builder()
        .servers([memcached.addr()])
        .build()
        .expect("memcached");
    row("MemcacheStore", &measure(&store, false).await);

    // Redis's commands, per call, with 100 sessions of the owner.
    let client = Client::new(
        fred::types::config::Config::from_url(&redis.url()).expect("a URL"),
        None,
        None,
        None,
    );
    client.init().await.expect("an inspector connects");
    let store = RedisStore::builder()
        .url(redis.url())
        .local_cache(0)
        .build()
        .await
        .expect("Redis");
    for _ in 0..SESSIONS - 1 {
        store
            .create(&record(Some("counted")))
            .await
            .expect("create");
    }
    println!();
    println!("Redis commands (local copy off), with {SESSIONS} sessions of the owner:");
    let anonymous = commands(&client, store.create(&record(None))).await;
    println!("- create, anonymous: {anonymous}");
    let login = commands(&client, store.create(&record(Some("counted")))).await;
    println!("- login: {login}");
    let id = store
        .create(&record(Some("counted")))
        .await
        .expect("create");
    let read = commands(&client, store.read(&id)).await;
    println!("- read of a signed-in session: {read}");
    let list = commands(&client, store.owned("counted")).await;
    println!("- list: {list}");
    let revoke = commands(&client, store.revoke_all("counted", None)).await;
    println!("- revoke all: {revoke}");
}
