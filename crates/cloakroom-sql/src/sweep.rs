//! The sweeper: expired rows are deleted in batches on an interval, by a task of the store's
//! own, off the request path. Requests never depend on it (every statement checks the
//! expiry itself); it only keeps the table from growing.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::SqlStoreError;

/// How the sweeper is configured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sweep {
    /// The pause between sweeps; `None`: no sweeper (the app calls `sweep` itself).
    pub(crate) interval: Option<Duration>,
    /// Rows deleted per statement: a sweep of many expired rows holds no long lock.
    pub(crate) batch: u32,
}

impl Default for Sweep {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(300)),
            batch: 1000,
        }
    }
}

/// A store whose expired rows can be deleted a batch at a time.
pub(crate) trait Batches: Send + Sync + 'static {
    /// Deletes up to `batch` expired rows; how many it deleted.
    fn sweep_batch(&self, batch: u32) -> impl Future<Output = Result<u64, SqlStoreError>> + Send;
}

/// Deletes every expired row, a batch at a time; how many.
pub(crate) async fn sweep_all<S: Batches>(store: &S, batch: u32) -> Result<u64, SqlStoreError> {
    let mut total = 0;
    loop {
        let deleted = store.sweep_batch(batch).await?;
        total += deleted;
        if deleted < u64::from(batch) {
            return Ok(total);
        }
        // Let requests in between batches.
        tokio::task::yield_now().await;
    }
}

/// Starts the sweeper for `store` if there is a Tokio runtime (there is one wherever a pool
/// was made); it ends when the last handle of the store is dropped.
pub(crate) fn start<S: Batches>(store: &Arc<S>, sweep: Sweep, database: &'static str) {
    let Some(interval) = sweep.interval else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            database,
            "SQL session store built outside a Tokio runtime: expired rows are not swept; call sweep()"
        );
        return;
    };
    runtime.spawn(periodically(
        Arc::downgrade(store),
        interval,
        sweep.batch,
        database,
    ));
}

async fn periodically<S: Batches>(
    store: Weak<S>,
    interval: Duration,
    batch: u32,
    database: &'static str,
) {
    loop {
        tokio::time::sleep(interval).await;
        // Holding the store only while sweeping, so dropping it ends this task.
        let Some(store) = store.upgrade() else {
            return;
        };
        match sweep_all(store.as_ref(), batch).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(database, deleted, "swept expired sessions"),
            Err(error) => tracing::warn!(database, %error, "sweeping expired sessions failed"),
        }
    }
}
