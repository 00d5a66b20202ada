//! Sentinel and TLS against real servers: a master, a replica and three `redis-sentinel`
//! processes failed over while the consistency checker runs; a TLS-only `redis-server` with a
//! certificate authority the test makes, through the `tls` feature.

// Helpers outside the `#[test]` functions (the TLS ones) are test code too; clippy.toml's
// allowances do not reach them.
#![allow(clippy::expect_used)]

use std::time::Duration;

use cloakroom::store::{Record, SessionStore};
use cloakroom_redis::RedisStore;
#[cfg(feature = "tls")]
use cloakroom_testkit::{Conformance, RedisTls};
use cloakroom_testkit::{Consistency, RedisSentinel};
#[cfg(feature = "tls")]
use fred::clients::Client;
#[cfg(feature = "tls")]
use fred::interfaces::ClientLike;
#[cfg(feature = "tls")]
use fred::types::config::Config;

/// Three stores through the Sentinels (a master and two replicas); the master crashes while
/// the checker runs (once in the suite; in a soak, every few seconds, each time restarted to
/// rejoin as a replica). Calls around a failover fail or succeed; every successful one agrees,
/// nothing acknowledged is lost (`replicas(1, ..)`: a write counts once a replica has it), and
/// the stores recover on the new master by themselves (its tracking state starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failovers_lose_nothing_and_serve_nothing_stale() {
    let sentinels = RedisSentinel::start().await.expect("the sentinels start");
    let url = sentinels.url();
    let mut instances = Vec::new();
    for _ in 0..3 {
        // Without waiting for a replica, a failover loses writes the old master had
        // acknowledged (the soak found a lost session); see `replicas`.
        let store = RedisStore::builder()
            .url(&url)
            .command_timeout(Duration::from_millis(500))
            .replicas(1, Duration::from_millis(200))
            .build()
            .await
            .expect("the store connects through the Sentinels");
        instances.push(store);
    }
    let probe = instances[0].clone();
    let checker = Consistency::new()
        .duration(Duration::from_secs(5))
        .staleness(Duration::from_millis(100))
        .soak_from_env();
    let soak = checker.planned_duration() > Duration::from_secs(5);
    let end = tokio::time::Instant::now() + checker.planned_duration();
    let sentinels = tokio::sync::Mutex::new(sentinels);
    let mut rounds = 0;
    let crashes = async {
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut sentinels = sentinels.lock().await;
            let before = sentinels.master_port().await;
            sentinels.crash_master().await.expect("the master crashes");
            assert_ne!(sentinels.master_port().await, before);
            rounds += 1;
            if !soak || tokio::time::Instant::now() + Duration::from_secs(15) > end {
                break;
            }
            sentinels
                .restart_crashed()
                .await
                .expect("the crashed master restarts");
        }
    };
    let (report, ()) = tokio::join!(checker.run(instances), crashes);
    let report = report.expect("the instances agree");
    assert!(report.operations > 1_000, "{report}");
    assert!(report.indeterminate > 0, "no call saw a failover: {report}");
    println!("Sentinel, 3 instances, {rounds} master crashes: {report}");

    // After the failovers a store works on the new master, copy included.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let id = loop {
        match probe.create(&minute()).await {
            Ok(id) => break id,
            Err(error) if tokio::time::Instant::now() > deadline => {
                panic!("no create after the failover: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(matches!(probe.read(&id).await, Ok(Some(_))));
}

/// A new session's record, good for a minute.
fn minute() -> Record {
    Record::new(std::time::SystemTime::now(), Duration::from_secs(60), None)
}

/// A rustls client configuration that trusts the CA in `ca_file`.
#[cfg(feature = "tls")]
fn trusting(ca_file: &std::path::Path) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .unwrap_or_else(|error| panic!("{}: {error}", ca_file.display()));
    for certificate in certificates {
        roots
            .add(certificate.expect("the CA certificate"))
            .expect("the CA certificate trusted");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(feature = "tls")]
fn tls_config(server: &RedisTls) -> Config {
    let mut config = Config::from_url(&server.url()).expect("a Redis URL");
    config.tls = Some(fred::types::config::TlsConnector::from(trusting(&server.ca_file())).into());
    config.version = fred::types::RespVersion::RESP3;
    config
}

/// Over TLS (`rediss://`, the `tls` feature): every promise, a local copy that follows another
/// instance's change, and a FLUSHALL heard by the flush watcher (which connects with the
/// store's own TLS settings).
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_every_promise_holds_and_the_copy_follows_changes_and_flushes() {
    let server = RedisTls::start()
        .await
        .expect("redis-server starts with TLS");
    let connect = || async {
        RedisStore::builder()
            .config(tls_config(&server))
            .build()
            .await
            .expect("the store connects over TLS")
    };
    let result = Conformance::new()
        .tick(Duration::from_millis(200))
        .sessions(500)
        .run(connect().await)
        .await;
    assert_eq!(result, Ok(()));

    let (here, there) = (connect().await, connect().await);
    let id = here.create(&minute()).await.expect("create");
    assert!(matches!(here.read(&id).await, Ok(Some(_))));
    assert!(here.read_now(&id).is_some(), "no local copy over TLS");
    there.delete(&id).await.expect("delete");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        here.read_now(&id).is_none(),
        "the copy missed a delete over TLS"
    );

    let id = here.create(&minute()).await.expect("create");
    let _ = here.load(&id).await;
    assert!(here.read_now(&id).is_some());
    let admin = Client::new(tls_config(&server), None, None, None);
    admin.init().await.expect("the admin client connects");
    let flush = fred::types::CustomCommand::new_static("FLUSHALL", None, false);
    let _: fred::types::Value = admin
        .custom(flush, Vec::<String>::new())
        .await
        .expect("FLUSHALL");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        here.read_now(&id).is_none(),
        "the copy kept a flushed session over TLS"
    );
}
