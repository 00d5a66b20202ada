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

/// Spawns `task` on the current Tokio runtime; `None` outside one.
pub(crate) fn spawn<F>(task: F) -> Option<Owned>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    Some(Owned(runtime.spawn(task).abort_handle()))
}
