//! Background tasks a store owns (its sweeper, its connections' reaper): each ends when the
//! store is dropped, even in the middle of a statement, so a server that hangs never keeps a
//! dropped store's connections open.

use std::future::Future;

/// A running task of the store's; dropping it ends the task.
pub(crate) struct Owned(tokio::task::AbortHandle);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `task` on the current Tokio runtime; outside one, `None`, with a warning that says
/// what goes undone (`without`).
pub(crate) fn spawn<F>(task: F, without: &'static str) -> Option<Owned>
where
    F: Future<Output = ()> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("SQL session store built outside a Tokio runtime: {without}");
        return None;
    };
    Some(Owned(runtime.spawn(task).abort_handle()))
}
