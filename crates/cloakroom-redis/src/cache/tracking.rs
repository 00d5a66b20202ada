//! Keeping tracking on: after every reconnection `CLIENT TRACKING` again (with new flush
//! watchers), and a heartbeat that catches a connection stalled without closing.

use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::clients::Client;
use fred::error::Error;
use fred::interfaces::{ClientLike, TrackingInterface};
use tokio::sync::Notify;

use super::{Cache, Listener};
use crate::flush::Watchers;

/// `CLIENT TRACKING on NOLOOP` on every connection (this instance's own writes keep its copy
/// up to date through their replies instead), then the flush watchers.
pub(super) async fn track(clients: &[Client], watchers: &Watchers) -> Result<(), Error> {
    for client in clients {
        client
            .start_tracking(Vec::<String>::new(), false, false, false, true)
            .await?;
    }
    watchers.connect().await
}

/// How long the retracking task waits after a failed `CLIENT TRACKING` before it tries again,
/// at first and at most (it doubles in between).
const RETRACK_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRACK_DELAY: Duration = Duration::from_secs(30);

/// How often every connection is asked for a `PING`, and how long it has to answer. A
/// connection that stalls without closing (a partition dropping packets) delivers no
/// invalidations and no error; reads from the copy send no command that could time out, so
/// this is what bounds how long such a copy is served.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// Turns tracking on again after every reconnection, until the cache is dropped, with new
/// flush watchers (a cluster's primaries may have changed, and a watcher's new connection would
/// be neither tracking nor subscribed). A failed attempt (the server refusing the command, or
/// dropping again) is retried with a growing delay, so the copy does not stay off until some
/// later reconnection.
pub(super) async fn retrack(
    cache: Weak<Cache>,
    wake: Arc<Notify>,
    clients: Vec<Client>,
    watchers: Watchers,
) {
    let mut delay = RETRACK_DELAY;
    let mut current = Some(watchers);
    loop {
        let woken = tokio::select! {
            () = wake.notified() => true,
            () = tokio::time::sleep(HEARTBEAT) => false,
        };
        let Some(cache) = cache.upgrade() else {
            break;
        };
        if !woken {
            if let Err(error) = heartbeat(&clients).await {
                tracing::warn!(%error, "a Redis connection did not answer PING: no local session copies until tracking is confirmed again");
                cache.suspect();
            }
            continue;
        }
        let watchers = {
            let mut state = cache.lock();
            if !state.retrack_pending {
                continue;
            }
            state.retrack_pending = false;
            let Some(first) = clients.first() else {
                break;
            };
            let watchers = Watchers::new(first);
            state.watchers = watchers.clients().iter().map(Listener::of).collect();
            watchers
        };
        if let Some(old) = current.replace(watchers) {
            old.close().await;
        }
        let Some(watchers) = current.as_ref() else {
            break;
        };
        match track(&clients, watchers).await {
            Ok(()) => {
                delay = RETRACK_DELAY;
                let mut state = cache.lock();
                // Another reconnection in the meantime needs its own round.
                if !state.retrack_pending {
                    state.slots.set_tracking(true);
                    tracing::debug!("Redis client tracking is on again: caching sessions");
                }
            }
            Err(error) => {
                cache.lock().retrack_pending = true;
                tracing::warn!(%error, retry_in = ?delay, "CLIENT TRACKING failed after a reconnection: no local session copies until it is on again");
                // Waiting must not keep the cache alive.
                drop(cache);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRACK_DELAY);
                wake.notify_one();
            }
        }
    }
    if let Some(watchers) = current {
        watchers.close().await;
    }
}

/// A `PING` on every connection, each within [`HEARTBEAT_TIMEOUT`].
async fn heartbeat(clients: &[Client]) -> Result<(), Error> {
    for client in clients {
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.ping::<()>(None)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(Error::new(
                    fred::error::ErrorKind::Timeout,
                    format!("no PONG within {HEARTBEAT_TIMEOUT:?}"),
                ));
            }
        }
    }
    Ok(())
}
