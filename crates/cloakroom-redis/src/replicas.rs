//! Making a write count as done only once replicas have it (`WAIT`).
//!
//! Redis replicates asynchronously: without this, a failover can lose writes, and deletes (a
//! logout), that the old primary had acknowledged. With
//! [`RedisStoreBuilder::replicas`](crate::RedisStoreBuilder::replicas), the batcher follows
//! every batch of writes with `WAIT` on the connection that sent them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::error::{Error, ErrorKind};
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

/// How many replicas must have a write before it counts as done, and how long to wait for
/// them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Replicas {
    pub(crate) count: u32,
    pub(crate) timeout: Duration,
}

impl Replicas {
    /// The same, with the timeout cut to three quarters of `command_timeout`: `WAIT` holds its
    /// connection, so it must end well before the commands queued behind it time out (and
    /// Redis takes only so large a timeout).
    pub(crate) fn within(self, command_timeout: Duration) -> Self {
        Self {
            timeout: self
                .timeout
                .min(command_timeout * 3 / 4)
                .max(Duration::from_millis(1)),
            ..self
        }
    }
}

/// The `WAIT` after writes, when replicas were asked for.
pub(crate) struct Replication {
    replicas: Option<Replicas>,
    /// A reconnection after an unreplicated write is under way.
    reconnecting: Arc<AtomicBool>,
}

impl Replication {
    /// `WAIT` for `replicas`, or nothing to wait for.
    pub(crate) fn new(replicas: Option<Replicas>) -> Self {
        Self {
            replicas,
            reconnecting: Arc::default(),
        }
    }

    /// With [`Replicas`], waits until that many replicas have this connection's writes so far
    /// (`WAIT`, on the same connection, or the same node on a cluster: `route` is the writes'
    /// route); fewer in time is an error: the write happened on the primary, but a failover
    /// could still lose it.
    pub(crate) async fn wait(&self, client: &Client, route: u16) -> Result<(), Error> {
        let Some(replicas) = self.replicas else {
            return Ok(());
        };
        let millis = u64::try_from(replicas.timeout.as_millis()).unwrap_or(u64::MAX);
        let wait = CustomCommand::new_static("WAIT", ClusterHash::Custom(route), true);
        let args = vec![
            Value::from(i64::from(replicas.count)),
            Value::from(millis.to_string()),
        ];
        let acknowledged: i64 = client.custom(wait, args).await?;
        if acknowledged < i64::from(replicas.count) {
            // The likeliest cause is a failover that left this connection on the old primary
            // (its replica was promoted): reconnect, which asks Sentinel or the cluster anew.
            // One reconnection at a time: while a replica is down every write lands here.
            if !self.reconnecting.swap(true, Ordering::AcqRel) {
                let client = client.clone();
                let reconnecting = Arc::clone(&self.reconnecting);
                tokio::spawn(async move {
                    if let Err(error) = client.force_reconnection().await {
                        tracing::warn!(%error, "reconnecting after an unreplicated write failed");
                    }
                    reconnecting.store(false, Ordering::Release);
                });
            }
            return Err(Error::new(
                ErrorKind::Unknown,
                format!(
                    "{acknowledged} of {} replicas acknowledged the write within {:?}: a failover could lose it",
                    replicas.count, replicas.timeout
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_wait_well_within_the_command_timeout() {
        let asked = Replicas {
            count: 1,
            timeout: Duration::from_secs(10),
        };
        let capped = asked.within(Duration::from_secs(2));
        assert_eq!(capped.timeout, Duration::from_millis(1_500));
        assert_eq!(capped.count, 1);
        // Never 0, which would make WAIT block forever.
        let tiny = asked.within(Duration::ZERO);
        assert_eq!(tiny.timeout, Duration::from_millis(1));
    }
}
