//! Hearing `FLUSHALL` and `FLUSHDB`, so that a flush empties every instance's local copy.
//!
//! A flush empties Redis's tracking table and sends every tracking connection one invalidation
//! without keys (its key list is null). On a RESP3 connection fred drops that push, so the
//! store's own connections never hear of a flush. fred does pass the same message on when it
//! arrives as a RESP2 pubsub message on `__redis__:invalidate`, as an
//! [`Invalidation`](fred::types::client::Invalidation) with no keys. So the cache keeps one
//! more connection per primary: RESP2, tracking on with its invalidations redirected to itself,
//! subscribed to that channel. It reads no key, so the only invalidations it ever gets are
//! flushes.
//!
//! A watcher that loses its connection may miss a flush: the cache treats its errors and
//! reconnections like its own connections' (drop everything, stop caching) and builds new
//! watchers before it caches again.

use fred::clients::Client;
use fred::error::{Error, ErrorKind};
use fred::interfaces::{ClientInterface, ClientLike, ClusterInterface, PubsubInterface};
use fred::types::RespVersion;
use fred::types::config::{Config, ServerConfig};

/// The channel Redis publishes redirected invalidations on.
const INVALIDATIONS: &str = "__redis__:invalidate";

/// One watcher connection per primary of the store's deployment.
pub(crate) struct Watchers {
    clients: Vec<Client>,
}

impl Watchers {
    /// Watchers for the servers `store` talks to (each primary of a cluster; the one server,
    /// or the master behind Sentinel, otherwise), not yet connected: take their notifications
    /// ([`clients`](Self::clients)) before [`connect`](Self::connect).
    pub(crate) fn new(store: &Client) -> Self {
        let mut config = store.client_config();
        config.version = RespVersion::RESP2;
        let servers = match &config.server {
            ServerConfig::Clustered { .. } => store
                .cached_cluster_state()
                .map(|state| state.unique_primary_nodes())
                .unwrap_or_default()
                .into_iter()
                .map(|server| ServerConfig::Centralized { server })
                .collect(),
            other => vec![other.clone()],
        };
        let clients = servers
            .into_iter()
            .map(|server| {
                Client::new(
                    Config {
                        server,
                        ..config.clone()
                    },
                    Some(store.perf_config()),
                    Some(store.connection_config().clone()),
                    // A watcher that drops is replaced, not reconnected: the new connection
                    // would have neither tracking nor the subscription.
                    None,
                )
            })
            .collect();
        Self { clients }
    }

    /// The watchers' clients, for their notifications.
    pub(crate) fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// Connects every watcher, turns tracking on (redirected to itself) and subscribes it.
    /// None at all (a cluster whose primaries fred does not know yet) is an error: no one would
    /// hear a flush.
    pub(crate) async fn connect(&self) -> Result<(), Error> {
        if self.clients.is_empty() {
            return Err(Error::new(
                ErrorKind::Cluster,
                "no primaries known to watch for FLUSHALL",
            ));
        }
        for client in &self.clients {
            client.init().await?;
            let id: i64 = client.client_id().await?;
            client
                .client_tracking::<(), _, _>(
                    "on",
                    Some(id),
                    Vec::<String>::new(),
                    false,
                    false,
                    false,
                    false,
                )
                .await?;
            client.subscribe(INVALIDATIONS).await?;
        }
        Ok(())
    }

    /// Closes every watcher's connection.
    pub(crate) async fn close(self) {
        for client in self.clients {
            // A watcher whose connection is already gone has nothing to close.
            let _ = client.quit().await;
        }
    }
}
