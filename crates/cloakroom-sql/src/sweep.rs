//! The sweeper: expired rows are deleted in batches on an interval, by a task of the store's
//! own, off the request path. Requests never depend on it (every statement checks the
//! expiry itself); it only keeps the table from growing.

use std::future::Future;
use std::time::Duration;

use crate::SqlStoreError;
use crate::task;

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

/// Starts the sweeper on `batches` if there is a Tokio runtime (there is one wherever a pool
/// was made); it runs until the returned task is dropped. `batches` must not hold the store:
/// the store holds the task.
pub(crate) fn start<S: Batches>(
    batches: S,
    sweep: Sweep,
    database: &'static str,
) -> Option<task::Owned> {
    let interval = sweep.interval?;
    task::spawn(
        periodically(batches, interval, sweep.batch, database),
        "expired rows are not swept; call sweep()",
    )
}

async fn periodically<S: Batches>(
    batches: S,
    interval: Duration,
    batch: u32,
    database: &'static str,
) {
    loop {
        tokio::time::sleep(interval).await;
        // No timeout: a sweep cut off while it waits on a lock would leave its statement
        // waiting in the server (which does not notice a closed client then) and start
        // another; the next sweep waits for this one instead.
        match sweep_all(&batches, batch).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(database, deleted, "swept expired sessions"),
            Err(error) => tracing::warn!(database, %error, "sweeping expired sessions failed"),
        }
    }
}
