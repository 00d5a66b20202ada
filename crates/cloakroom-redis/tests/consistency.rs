//! The consistency checker on three `RedisStore` instances (each with its own connections, as
//! three app processes have), with and without the local copy, standalone and on a cluster,
//! and with faults while it runs: killed connections, a restart, a pause past the command
//! timeout, a flush.
//!
//! `CLOAKROOM_SOAK_SECS=600 cargo test -p cloakroom-redis --test consistency` soaks instead
//! (see `scripts/soak.sh`).

mod common;

use std::future::Future;
use std::time::Duration;

use cloakroom_redis::RedisStore;
use cloakroom_testkit::{Consistency, Faults, RedisCluster, Report};
use cloakroom_tests::cluster_url;
use common::{DURABLE, admin, cluster, command, durable_redis, redis};

/// The tolerance for the local copy: the time an invalidation takes to arrive after the
/// write that caused it returned (the README states it).
const STALENESS: Duration = Duration::from_millis(100);
const INSTANCES: usize = 3;
const TIMEOUT: Duration = Duration::from_millis(500);

async fn instances(url: &str, cached: bool) -> Vec<RedisStore> {
    let mut stores = Vec::new();
    for _ in 0..INSTANCES {
        let builder = RedisStore::builder()
            .url(url)
            .command_timeout(TIMEOUT)
            .local_cache(if cached { 10_000 } else { 0 });
        let store = builder.build().await;
        stores.push(store.unwrap_or_else(|error| panic!("cannot connect to {url}: {error}")));
    }
    stores
}

fn checker(cached: bool) -> Consistency {
    Consistency::new()
        .duration(Duration::from_secs(3))
        .staleness(if cached { STALENESS } else { Duration::ZERO })
        .call_timeout(Duration::from_secs(5))
        .soak_from_env()
}

/// Checks `instances` while `faults` runs, and returns the report (printed: the soak's
/// result). Not a test function, so clippy.toml's `allow-print-in-tests` does not reach it.
#[allow(clippy::print_stdout)]
async fn check(
    checker: Consistency,
    instances: Vec<RedisStore>,
    faults: impl Future<Output = ()>,
    what: &str,
) -> Report {
    let started = std::time::Instant::now();
    let (report, ()) = tokio::join!(checker.run(instances), faults);
    let report = report.unwrap_or_else(|violation| panic!("{what}: {violation}"));
    println!("{what}: {report}, in {:?}", started.elapsed());
    report
}

/// Every `every`, `fault` once more, for the checker's run (`duration`).
async fn repeatedly<F, Fut>(duration: Duration, every: Duration, mut fault: F)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let end = tokio::time::Instant::now() + duration - every.min(duration);
    let mut round = 0;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(every).await;
        fault(round).await;
        round += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_standalone_with_and_without_the_local_copy() {
    let server = redis().await;
    for cached in [true, false] {
        let report = check(
            checker(cached),
            instances(&server.url(), cached).await,
            async {},
            &format!("standalone, local copy {cached}"),
        )
        .await;
        assert!(report.operations > 1_000, "{report}");
        assert_eq!(report.failed, 0, "calls failed without a fault: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_on_a_cluster_with_and_without_the_local_copy() {
    let cluster = cluster().await;
    for cached in [true, false] {
        let report = check(
            checker(cached),
            instances(&cluster_url(&cluster), cached).await,
            async {},
            &format!("cluster, local copy {cached}"),
        )
        .await;
        assert!(report.operations > 1_000, "{report}");
        assert_eq!(report.failed, 0, "calls failed without a fault: {report}");
    }
}

/// Killed connections (the store's and the flush watchers'), a flush and a pause past the
/// command timeout, in turn, while the checker runs on a server that keeps its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_through_killed_connections_flushes_and_pauses() {
    let server = durable_redis().await;
    let admin = admin(&server.url()).await;
    for cached in [true, false] {
        let checker = checker(cached);
        let faults = Faults::new();
        let injected = repeatedly(
            checker.planned_duration(),
            Duration::from_millis(700),
            |round| {
                let (admin, faults, server) = (&admin, faults.clone(), &server);
                async move {
                    match round % 3 {
                        0 => {
                            command(
                                admin,
                                &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
                            )
                            .await;
                            command(admin, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
                        }
                        1 => faults.wipe(command(admin, &["FLUSHALL"])).await,
                        _ => {
                            server.pause().expect("redis-server pauses");
                            tokio::time::sleep(TIMEOUT * 2).await;
                            server.resume().expect("redis-server resumes");
                        }
                    }
                }
            },
        );
        let report = check(
            checker.faults(faults.clone()),
            instances(&server.url(), cached).await,
            injected,
            &format!("standalone with faults, local copy {cached}"),
        )
        .await;
        assert!(
            report.indeterminate > 0,
            "the pause made no call fail: nothing was tested ({report})"
        );
    }
}

/// A restart of a server with persistence on: connections drop, the copy is dropped, tracking
/// and the watchers come back on the new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_through_a_restart() {
    let server = durable_redis().await;
    let server = std::sync::Arc::new(tokio::sync::Mutex::new(server));
    let url = server.lock().await.url();
    let restarts = repeatedly(
        checker(true).planned_duration(),
        Duration::from_secs(1),
        |_| {
            let server = std::sync::Arc::clone(&server);
            async move {
                let restarted = server.lock().await.restart().await;
                restarted.expect("redis-server restarts");
            }
        },
    );
    check(
        checker(true),
        instances(&url, true).await,
        restarts,
        "restarts",
    )
    .await;
}

/// The same on a 3-master cluster that keeps its data, plus a restart of one node at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_on_a_cluster_through_killed_connections_flushes_pauses_and_restarts()
{
    let cluster = RedisCluster::start_with_args(DURABLE)
        .await
        .expect("the cluster starts");
    let url = cluster_url(&cluster);
    let mut nodes = Vec::new();
    for url in cluster.urls() {
        nodes.push(admin(&url).await);
    }
    let cluster = tokio::sync::Mutex::new(cluster);
    let faults = Faults::new();
    let run_for = checker(true).planned_duration();
    let injected = repeatedly(run_for, Duration::from_millis(600), |round| {
        let (nodes, faults, cluster) = (&nodes, faults.clone(), &cluster);
        async move {
            let node = round as usize / 4 % 3;
            match round % 4 {
                0 => {
                    for node in nodes {
                        command(node, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]).await;
                    }
                }
                1 => {
                    faults
                        .wipe(async {
                            for node in nodes {
                                command(node, &["FLUSHALL"]).await;
                            }
                        })
                        .await;
                }
                2 => {
                    let cluster = cluster.lock().await;
                    cluster.pause(node).expect("the node pauses");
                    tokio::time::sleep(TIMEOUT * 2).await;
                    cluster.resume(node).expect("the node resumes");
                }
                _ => {
                    let restarted = cluster.lock().await.restart(node).await;
                    restarted.expect("the node restarts");
                }
            }
        }
    });
    check(
        checker(true).faults(faults.clone()),
        instances(&url, true).await,
        injected,
        "cluster with faults",
    )
    .await;
}

/// "Log out everywhere" racing every other call, through any of three instances with their
/// local copies, standalone (with killed connections meanwhile) and on a cluster, where an
/// owner's sessions and its set live on different nodes: once a revoke has returned, no
/// instance serves a session it ended (within the copy's tolerance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revokes_hold_on_every_instance_standalone_and_on_a_cluster() {
    let server = redis().await;
    let admin = admin(&server.url()).await;
    let cluster = cluster().await;
    for (url, killing) in [(server.url(), true), (cluster_url(&cluster), false)] {
        for cached in [true, false] {
            let checker = checker(cached);
            let kills = repeatedly(
                checker.planned_duration(),
                Duration::from_millis(700),
                |_| {
                    let admin = &admin;
                    async move {
                        if killing {
                            command(
                                admin,
                                &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
                            )
                            .await;
                        }
                    }
                },
            );
            let stores = instances(&url, cached).await;
            let (report, ()) = tokio::join!(checker.run_with_revokes(stores), kills);
            let what = format!("revokes, {url}, local copy {cached}");
            let report = report.unwrap_or_else(|violation| panic!("{what}: {violation}"));
            assert!(report.operations > 1_000, "{what}: {report}");
        }
    }
}
