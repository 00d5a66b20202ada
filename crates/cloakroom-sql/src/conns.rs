//! The store's own connections: a small pool without a round trip per call.
//!
//! sqlx's `Pool` pings every connection when it is released (to catch one left mid-query by a
//! cancelled future), so each statement through it costs two round trips (`BENCHMARKS.md`
//! has the figures). This pool skips the ping and keeps the safety another way: a connection
//! goes back only when its statement ran to an answer; one whose call was cancelled
//! half-way, or whose connection failed, is dropped, and the next call opens a fresh one.
//!
//! Connections are taken from the application's sqlx pool and detached from it (the pool
//! opens others in their place), so they are made the pool's way: its connect options, its
//! `after_connect` hook (a `search_path`, a role, a statement timeout) and its
//! `before_acquire` check. Its `idle_timeout` and `max_lifetime` apply here too. Its
//! `after_release` hook never runs: they are never released to it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::{Database, Pool};
use tokio::sync::Semaphore;

/// How many connections one call tries when each is found dead.
const ATTEMPTS: u32 = 3;

/// Up to `max` connections taken from `pool`.
pub(crate) struct Connections<DB: Database> {
    pool: Pool<DB>,
    idle: Mutex<Vec<Idle<DB::Connection>>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
}

/// A connection waiting for its next call.
struct Idle<C> {
    connection: C,
    made: Instant,
    since: Instant,
}

impl<DB: Database> Connections<DB> {
    /// At most as many connections as `pool` may have, with its timeouts.
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        let options = pool.options();
        let max = usize::try_from(options.get_max_connections().max(1)).unwrap_or(1);
        Self {
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Arc::new(Semaphore::new(max)),
            acquire_timeout: options.get_acquire_timeout(),
            idle_timeout: options.get_idle_timeout(),
            max_lifetime: options.get_max_lifetime(),
            pool,
        }
    }

    /// The pool connections are taken from.
    pub(crate) fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Runs `call` on a connection (an idle one, or a new one): `call` gets the connection
    /// and hands it back with its result. It returns to the idle list only then, and only if
    /// the result is not a failure of the connection itself: a call cancelled half-way drops
    /// its connection with it (the socket closes, and PostgreSQL ends that session), so no
    /// connection is ever reused with a statement still on the wire. Waiting for a
    /// connection ends in `PoolTimedOut` after the acquire timeout.
    ///
    /// An idle connection found dead (the server restarted, or closed it for idleness) would
    /// fail a request for nothing: then every idle connection is dropped (they are likely
    /// dead of the same cause) and `call` runs again on another, when that is safe, up to
    /// [`ATTEMPTS`] times in all (the pool's own idle connections may be dead too). A
    /// lost connection does not say whether the statement ran: it may have committed and
    /// only its answer been lost. So only a `repeatable` call (a read, a load's refresh, a
    /// delete) runs again on any lost connection; a write runs again only when the server
    /// said, before the statement, that it had ended the session ([`never_ran`]): a second
    /// run of an update that did apply could undo what another request wrote in between (a
    /// consumed flash back, a removed key back), and of a create or a revoke would misreport.
    pub(crate) async fn with<T, F, Fut>(&self, repeatable: bool, call: F) -> Result<T, sqlx::Error>
    where
        F: Fn(DB::Connection) -> Fut,
        Fut: Future<Output = (DB::Connection, Result<T, sqlx::Error>)>,
    {
        // The acquire timeout bounds the wait for a connection and the making of one; a
        // statement slow to answer is bounded by the layer's store timeout.
        let permit = Arc::clone(&self.permits).acquire_owned();
        let _permit = bounded(
            tokio::time::timeout(self.acquire_timeout, async {
                permit.await.map_err(|_| sqlx::Error::PoolClosed)
            })
            .await,
        )?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (connection, made) = match self.take_idle() {
                Some(idle) => (idle.connection, idle.made),
                None => {
                    let connection = bounded(
                        tokio::time::timeout(self.acquire_timeout, self.pool.acquire()).await,
                    )?;
                    (connection.detach(), Instant::now())
                }
            };
            let (connection, result) = call(connection).await;
            match &result {
                Err(error) if connection_lost(error) => {
                    drop(connection);
                    let again = repeatable || never_ran(error);
                    if again && attempts < ATTEMPTS {
                        self.idle().clear();
                        continue;
                    }
                }
                _ => self.idle().push(Idle {
                    connection,
                    made,
                    since: Instant::now(),
                }),
            }
            return result;
        }
    }

    /// The most recently used idle connection, after dropping those past the pool's idle
    /// timeout or lifetime (the least used first: they sit at the bottom).
    fn take_idle(&self) -> Option<Idle<DB::Connection>> {
        let now = Instant::now();
        let expired = |idle: &Idle<DB::Connection>| {
            self.idle_timeout
                .is_some_and(|timeout| now.duration_since(idle.since) >= timeout)
                || self
                    .max_lifetime
                    .is_some_and(|lifetime| now.duration_since(idle.made) >= lifetime)
        };
        let mut idle = self.idle();
        idle.retain(|connection| !expired(connection));
        idle.pop()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle<DB::Connection>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The result of a wait bounded by the acquire timeout: `PoolTimedOut` if it ran out.
fn bounded<T>(
    waited: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
) -> Result<T, sqlx::Error> {
    waited.unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Whether `error` is the server's word that it ended the session before this statement (an
/// administrator's or a shutdown's termination, an idle-session timeout), read as the reply:
/// then the statement was never run.
fn never_ran(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            let code = error.code().unwrap_or_default();
            matches!(&*code, "57P01" | "57P02" | "57P03" | "57P05")
        }
        _ => false,
    }
}

/// Whether an error leaves the connection unusable.
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            // PostgreSQL: connection exceptions and the server shutting down.
            let code = error.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => true,
        _ => false,
    }
}
