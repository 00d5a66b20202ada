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
//! `before_acquire` check. Its `idle_timeout` and `max_lifetime` apply here too, checked by
//! a task of the store's as often as sqlx checks its own, and closing the pool closes these
//! connections as well (once the task sees it, a moment after `close()` returns; calls fail
//! from the start). Its `after_release` hook never runs: they are never released to it.
//! sqlx does not say when it made a connection, so a lifetime counts from when the store
//! took it from the pool: up to twice `max_lifetime` from its making, and a check period.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::{Database, Pool};
use tokio::sync::Semaphore;

use crate::age::{Age, Limits};
use crate::task;

/// How many connections one call tries when each is found dead.
const ATTEMPTS: u32 = 3;

/// Up to `max` connections taken from `pool`.
pub(crate) struct Connections<DB: Database> {
    pool: Pool<DB>,
    idle: Arc<IdleList<DB::Connection>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
    _reaper: Option<task::Owned>,
}

/// The connections waiting for their next call, the most recently used last.
struct IdleList<C> {
    connections: Mutex<Vec<(C, Age)>>,
    limits: Limits,
}

impl<DB: Database> Connections<DB> {
    /// At most as many connections as `pool` may have, with its timeouts.
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        let options = pool.options();
        let max = usize::try_from(options.get_max_connections().max(1)).unwrap_or(1);
        let idle = Arc::new(IdleList {
            connections: Mutex::new(Vec::with_capacity(max)),
            limits: Limits::of(&pool),
        });
        Self {
            permits: Arc::new(Semaphore::new(max)),
            acquire_timeout: options.get_acquire_timeout(),
            _reaper: task::spawn(
                reap(pool.clone(), Arc::clone(&idle)),
                "idle connections are not closed for the pool's idle_timeout, max_lifetime or close()",
            ),
            idle,
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
            if self.pool.is_closed() {
                // Before the reaper has seen it: no call runs on a closed pool's connection.
                self.idle.list().clear();
                return Err(sqlx::Error::PoolClosed);
            }
            let (connection, mut age) = match self.idle.take() {
                Some(idle) => idle,
                None => {
                    let connection = bounded(
                        tokio::time::timeout(self.acquire_timeout, self.pool.acquire()).await,
                    )?;
                    (connection.detach(), Age::new())
                }
            };
            let (connection, result) = call(connection).await;
            match &result {
                Err(error) if connection_lost(error) => {
                    drop(connection);
                    let again = repeatable || never_ran(error);
                    if again && attempts < ATTEMPTS {
                        self.idle.list().clear();
                        continue;
                    }
                }
                _ => {
                    age.used();
                    // Checked under the lock the reaper clears the list with, so a pool closed
                    // while this call ran never keeps this connection.
                    let mut list = self.idle.list();
                    if !self.pool.is_closed() {
                        list.push((connection, age));
                    }
                }
            }
            return result;
        }
    }
}

impl<C> IdleList<C> {
    /// The most recently used idle connection, after dropping those past the pool's limits.
    fn take(&self) -> Option<(C, Age)> {
        let mut list = self.list();
        self.drop_expired(&mut list);
        list.pop()
    }

    fn drop_expired(&self, list: &mut Vec<(C, Age)>) {
        let now = Instant::now();
        list.retain(|(_, age)| !self.limits.expired(age, now));
    }

    fn list(&self) -> MutexGuard<'_, Vec<(C, Age)>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes idle connections past the pool's limits as they pass them (not at the next call:
/// a burst must not keep its server processes open until traffic returns), and every idle
/// connection once the pool is closed.
async fn reap<DB: Database>(pool: Pool<DB>, idle: Arc<IdleList<DB::Connection>>) {
    let mut closed = pool.close_event();
    drop(pool);
    let checks = async {
        let Some(period) = idle.limits.period() else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(period).await;
            let expired = {
                let mut list = idle.list();
                let before = list.len();
                idle.drop_expired(&mut list);
                before - list.len()
            };
            if expired > 0 {
                tracing::debug!(expired, "closed idle session store connections");
            }
        }
    };
    // `checks` never ends: this returns when the pool is closed.
    let _: Result<(), _> = closed.do_until(checks).await;
    idle.list().clear();
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
