//! A write that ran on the server but whose answer was lost with its connection is never run
//! again (which could undo another request's write, or misreport): it fails, as a call whose
//! outcome is unknown does (503). A proxy delays the server's answers and cuts the link.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloakroom::store::{OwnerIndex, SessionStore};
use cloakroom_sql::PostgresStore;
use cloakroom_testkit::PostgresServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A proxy whose server-to-client direction is delayed, and whose open links can be cut
/// (new connections still go through).
struct CutProxy {
    port: u16,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl CutProxy {
    async fn start(target: u16, down_delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let l = Arc::clone(&links);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let mut b = vec![0u8; 16384];
                    loop {
                        let n = match cr.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if sw.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let down = tokio::spawn(async move {
                    let mut b = vec![0u8; 16384];
                    loop {
                        let n = match sr.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        tokio::time::sleep(down_delay).await;
                        if cw.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut links = l.lock().unwrap();
                links.push(up.abort_handle());
                links.push(down.abort_handle());
            }
        });
        Self { port, links }
    }

    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

async fn setup() -> (PostgresServer, CutProxy, PostgresStore, PostgresStore) {
    let server = PostgresServer::start().await.expect("PostgreSQL starts");
    let direct = PostgresStore::builder()
        .url(server.url())
        .build()
        .await
        .unwrap();
    direct.migrate().await.unwrap();
    let proxy = CutProxy::start(server.port(), Duration::from_millis(400)).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port);
    let store = PostgresStore::builder()
        .url(url)
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    (server, proxy, store, direct)
}

/// A revoke whose answer is lost fails (its outcome is unknown) rather than run again and
/// report that it ended nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_whose_answer_is_lost_fails_rather_than_misreport() {
    let (_server, proxy, store, direct) = setup().await;
    direct
        .create(&cloakroom_tests::owned("user:1", Duration::from_secs(600)))
        .await
        .unwrap();
    direct
        .create(&cloakroom_tests::owned("user:1", Duration::from_secs(600)))
        .await
        .unwrap();
    // Warm the store's one connection, so the next call reuses it.
    assert_eq!(store.owned("user:1").await.unwrap().len(), 2);
    let revoke = tokio::spawn({
        let store = store.clone();
        async move { store.revoke_all("user:1", None).await }
    });
    // The DELETE reaches the server at once and commits; its answer sits in the proxy.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        direct.owned("user:1").await.unwrap().len(),
        0,
        "the DELETE has run"
    );
    proxy.cut();
    match revoke.await.unwrap() {
        Err(_) => {}
        Ok(revoked) => assert_eq!(
            revoked.count(),
            Some(2),
            "ended 2 sessions, says {revoked:?}"
        ),
    }
}

/// A create whose answer is lost fails rather than run again and leave a second owned row
/// (a device in the list that nobody holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_does_not_run_twice() {
    let (_server, proxy, store, direct) = setup().await;
    assert_eq!(store.owned("user:1").await.unwrap().len(), 0);
    let create = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .create(&cloakroom_tests::owned("user:1", Duration::from_secs(600)))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.cut();
    let created = create.await.unwrap();
    let listed = direct.owned("user:1").await.unwrap();
    assert!(
        listed.len() <= 1,
        "one create, {} owned sessions",
        listed.len()
    );
    if let Ok(id) = created {
        assert!(listed.iter().any(|(listed, _)| *listed == id));
    }
}

/// An update whose answer is lost is not run again: a flash it set, which another request
/// then consumed, does not come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_answer_is_lost_is_not_run_again() {
    use cloakroom::store::{Changes, Entry};
    let (_server, proxy, store, direct) = setup().await;
    let id = direct
        .create(&cloakroom_tests::owned("user:1", Duration::from_secs(600)))
        .await
        .unwrap();
    // Warm (and prepare the update statement on) the store's one connection.
    store.update(&id, &Changes::default()).await.unwrap();
    let set_flash = Changes {
        entries: vec![(
            "notice".to_owned(),
            Some(Entry {
                json: "\"saved\"".to_owned(),
                flash: true,
            }),
        )],
        ..Changes::default()
    };
    let update = tokio::spawn({
        let (store, id) = (store.clone(), id.clone());
        async move { store.update(&id, &set_flash).await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Another instance's request shows the flash and removes it, as a read of a flash does.
    let seen = direct.load(&id).await.unwrap().unwrap();
    assert!(seen.entries.contains_key("notice"), "the first run applied");
    let consume = Changes {
        entries: vec![("notice".to_owned(), None)],
        ..Changes::default()
    };
    direct.update(&id, &consume).await.unwrap();
    proxy.cut();
    let _unknown = update.await.unwrap(); // an error: its outcome is unknown
    let after = direct.load(&id).await.unwrap().unwrap();
    assert!(
        !after.entries.contains_key("notice"),
        "the consumed flash is back: shown twice"
    );
}
