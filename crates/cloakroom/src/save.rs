//! The store call after the handler: the one an [`Outcome`] asks for, within the layer's
//! store timeout, ending in what the response does to the cookie.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::SessionId;
use crate::audit::{Audit, AuditKind};
use crate::call::{BoxFuture, CallError, StoreOperation, boxed, span, within};
use crate::plan::{Outcome, SetCookie};
use crate::store::{Record, SessionStore, Update};

/// How many logouts and regenerates of one layer may run as tasks of their own at once. Past
/// it (a store that hangs, and clients that retry), they run in place: a store that does not
/// answer cannot make the layer hold an unbounded number of calls.
pub(crate) const MAX_DETACHED: usize = 1024;

/// An outcome set in motion.
pub(crate) enum Saved<E> {
    /// Nothing to store: the cookie at once.
    Now(SetCookie),
    /// The store call, ending in the cookie.
    Later(BoxFuture<Result<SetCookie, CallError<E>>>),
}

/// Starts the store call `outcome` asks for.
///
/// A logout, and a regenerate (whose check, create and delete are three calls), run as a task of their
/// own: a client that goes away mid-save drops the response future, and must not leave the
/// session reachable under its old id. The timeout is on the wait for the task, which runs on
/// to the end and logs a failure no response reported. Other writes run in place (a cut one
/// leaves the store as it was, or applied, either of which is a state the session may be in),
/// and so do detached ones past [`MAX_DETACHED`].
pub(crate) fn start<St: SessionStore>(
    outcome: Outcome,
    store: &Arc<St>,
    limit: Option<Duration>,
    detached: &Arc<Semaphore>,
    audit: &Audit,
) -> Saved<St::Error> {
    let (first, span, detach) = match &outcome {
        Outcome::Nothing | Outcome::Clear | Outcome::Resend { .. } => {
            return Saved::Now(outcome.cookie(None));
        }
        Outcome::Create { .. } => (
            StoreOperation::Create,
            span(StoreOperation::Create, None),
            false,
        ),
        Outcome::Update { id, changes, .. } => {
            let span = span(StoreOperation::Update, Some(id));
            span.record("keys", changes.entries.len());
            (StoreOperation::Update, span, false)
        }
        // Opened here, in the request's span; its two calls have a `session_store` span each
        // inside it.
        Outcome::Regenerate { old, .. } => (
            StoreOperation::Create,
            tracing::debug_span!(
                "session_regenerate",
                replaces = old.as_ref().map(tracing::field::display)
            ),
            true,
        ),
        Outcome::Delete { id, .. } => (
            StoreOperation::Delete,
            span(StoreOperation::Delete, Some(id)),
            true,
        ),
    };
    // Only a regenerate has steps to tell apart.
    let step = match &outcome {
        Outcome::Regenerate { check, .. } => {
            let step = Step::default();
            step.enter(if *check {
                StoreOperation::Read
            } else {
                StoreOperation::Create
            });
            Some(step)
        }
        _ => None,
    };
    let operation = {
        let step = step.clone();
        move || step.map_or(first, |step| step.operation())
    };
    // What the cookie becomes if a detached call ends without an answer: a logout still
    // clears it, anything else leaves it alone.
    let interrupted = outcome.cookie(None);
    let store = Arc::clone(store);
    // An update is no audit event: the hot path clones no hook.
    let audit = (!matches!(outcome, Outcome::Update { .. })).then(|| audit.clone());
    let save = async move {
        let saved_as = call(store.as_ref(), &outcome, step.as_ref()).await?;
        if let Some(audit) = audit {
            report(&audit, &outcome, saved_as.as_ref());
        }
        Ok(outcome.cookie(saved_as))
    };
    let runtime = tokio::runtime::Handle::try_current();
    let permit = if detach {
        detached.clone().try_acquire_owned().ok()
    } else {
        None
    };
    match (runtime, permit) {
        (Ok(runtime), Some(permit)) => {
            let waited = Arc::new(AtomicBool::new(true));
            let task = runtime.spawn({
                let waited = Arc::clone(&waited);
                async move {
                    let _permit = permit;
                    let saved: Result<SetCookie, CallError<St::Error>> = save.await;
                    if let Err(error) = &saved {
                        if !waited.load(Ordering::Acquire) {
                            let failure = error.failure();
                            let (operation, error) = (failure.operation(), failure.error());
                            tracing::error!(
                                %operation, %error, store = std::any::type_name::<St>(),
                                "session store failed after the response had given up on it"
                            );
                        }
                    }
                    saved
                }
                .instrument(span)
            });
            Saved::Later(Box::pin(within(limit, operation, async move {
                let _waiting = Waiting(waited);
                match task.await {
                    Ok(saved) => saved,
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    // The runtime is shutting down: no answer.
                    Err(_) => Ok(interrupted),
                }
            })))
        }
        _ => Saved::Later(boxed(within(limit, operation, save), span)),
    }
}

/// Marks, when dropped, that no response waits for a detached save any longer.
struct Waiting(Arc<AtomicBool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Which call of a regenerate is under way, for a timeout to name: the check that the old
/// session is still there, the create, or the delete of the old id.
#[derive(Clone, Default)]
struct Step(Arc<AtomicU8>);

impl Step {
    const OPERATIONS: [StoreOperation; 3] = [
        StoreOperation::Read,
        StoreOperation::Create,
        StoreOperation::Delete,
    ];

    fn operation(&self) -> StoreOperation {
        let at = usize::from(self.0.load(Ordering::Acquire));
        Self::OPERATIONS
            .get(at)
            .copied()
            .unwrap_or(StoreOperation::Delete)
    }

    fn enter(&self, operation: StoreOperation) {
        if let Some(at) = Self::OPERATIONS.iter().position(|op| *op == operation) {
            self.0.store(at as u8, Ordering::Release);
        }
    }
}

/// Makes the store call of `outcome`; returns the id the session goes by afterwards (`None`
/// when it is gone, or was deleted).
async fn call<St: SessionStore>(
    store: &St,
    outcome: &Outcome,
    step: Option<&Step>,
) -> Result<Option<SessionId>, CallError<St::Error>> {
    let failed = |operation| move |error| CallError::Store(operation, error);
    match outcome {
        Outcome::Nothing | Outcome::Clear | Outcome::Resend { .. } => Ok(None),
        Outcome::Create { record, .. } => store
            .create(record)
            .await
            .map(Some)
            .map_err(failed(StoreOperation::Create)),
        Outcome::Update { id, changes, .. } => match store.update(id, changes).await {
            Ok(Update::Applied) => Ok(Some(id.clone())),
            Ok(Update::Reissued(id)) => Ok(Some(id)),
            Ok(_) => Ok(None),
            Err(error) => Err(CallError::Store(StoreOperation::Update, error)),
        },
        Outcome::Regenerate {
            old, record, check, ..
        } => {
            let enter = |operation| {
                if let Some(step) = step {
                    step.enter(operation);
                }
            };
            if let (Some(old), true) = (old, check) {
                // The signed-in session may have ended since this request loaded it (a revoke,
                // a logout elsewhere): then it must not live on under a new id.
                let live = store
                    .read(old)
                    .instrument(span(StoreOperation::Read, Some(old)))
                    .await
                    .map_err(failed(StoreOperation::Read))?;
                if live.is_none() {
                    tracing::info!(session = %old, "the session ended during the request; not moving it to a new id");
                    return Ok(None);
                }
            }
            enter(StoreOperation::Create);
            let id = store
                .create(record)
                .instrument(span(StoreOperation::Create, None))
                .await
                .map_err(failed(StoreOperation::Create))?;
            if let Some(old) = old {
                enter(StoreOperation::Delete);
                store
                    .delete(old)
                    .instrument(span(StoreOperation::Delete, Some(old)))
                    .await
                    .map_err(failed(StoreOperation::Delete))?;
            }
            Ok(Some(id))
        }
        Outcome::Delete { id, .. } => store
            .delete(id)
            .await
            .map(|()| None)
            .map_err(failed(StoreOperation::Delete)),
    }
}

/// The owner's name of `record`, if it has one.
fn name(record: &Record) -> Option<&str> {
    record.owner.as_ref().map(|owner| owner.name.as_str())
}

/// The audit event of an outcome whose store call succeeded, the session now going by
/// `saved_as`.
fn report(audit: &Audit, outcome: &Outcome, saved_as: Option<&SessionId>) {
    match (outcome, saved_as) {
        (
            Outcome::Create { record, .. }
            | Outcome::Regenerate {
                old: None, record, ..
            },
            Some(id),
        ) => {
            audit.report(AuditKind::Created, name(record), Some(id), None);
        }
        (
            Outcome::Regenerate {
                old: Some(old),
                record,
                ..
            },
            Some(id),
        ) => {
            audit.report(AuditKind::Regenerated, name(record), Some(id), Some(old));
        }
        (Outcome::Delete { id, owner }, _) => {
            audit.report(AuditKind::Destroyed, owner.as_deref(), Some(id), None);
        }
        _ => {}
    }
}
