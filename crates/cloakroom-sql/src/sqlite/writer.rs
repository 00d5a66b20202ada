//! SQLite's writes, committed together: one transaction (one `fsync`) for every write that is
//! waiting when the last commit ends.
//!
//! SQLite has one writer at a time and each commit waits for the disk, so concurrent writes
//! through a pool take turns at one commit each, and while they wait for the lock they sleep
//! in SQLite's busy handler (1, 2, 5, 10 ms...), not in a queue. Here the writes of one store
//! go to a task of its own that takes everything queued, runs it inside one `BEGIN
//! IMMEDIATE` … `COMMIT` on one connection, and answers each: the same statements, in the
//! order they arrived, each seeing the ones before, at the cost of one commit.
//!
//! The writer keeps one connection, taken from the pool and detached from it (the pool opens
//! another in its place). The pool's `idle_timeout` and `max_lifetime` apply to it, checked
//! before each batch (it is replaced only when the pool has a connection to give at once,
//! so writes never wait on handlers that hold the whole pool), and after the pool is closed
//! it writes no more. SQLite's busy handler is off on it: it waits for the write lock
//! itself, trying every millisecond up to the connection's busy timeout. SQLite's handler
//! sleeps longer and longer (up to 100 ms a try), and against writers of other processes
//! that commit back to back it rarely finds the lock free: three processes on one file left
//! a writer waiting out its whole timeout.
//!
//! A statement that fails on its own (a value SQLite refuses, a row it returns that this
//! store did not write) fails alone: SQLite undoes just that statement, or kept it whole. A
//! failure that may have undone the transaction (busy past the timeout, I/O, a full disk),
//! one after which the transaction is found ended whatever its code said (a trigger's
//! `RAISE(ROLLBACK)`: a savepoint set at `BEGIN` is gone then), or a failed commit, fails
//! every write of the batch, since none of them is known to be kept. A write whose caller
//! went away still runs, as a statement already sent to a server would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use crate::age::{Age, Limits};
use crate::codec::Columns;

/// The most writes of one transaction: a bound on how long one commit keeps the lock.
const MAX_BATCH: usize = 256;

/// How often a writer waiting for the write lock tries again.
const RETRY: Duration = Duration::from_millis(1);

/// One write: the statement (an index into the store's statements) and its values.
pub(super) enum Write {
    Load {
        id: String,
    },
    Create {
        id: String,
        entries: String,
        created: i64,
        idle: i64,
        deadline: Option<i64>,
        owner: (Option<String>, Option<i64>, Option<String>, Option<String>),
    },
    Update {
        id: String,
        patch: String,
        idle: Option<i64>,
        deadline: Option<i64>,
    },
    /// An update of the entries alone.
    Merge {
        id: String,
        patch: String,
    },
    Delete {
        id: String,
    },
    Revoke {
        owner: String,
        except: Option<String>,
    },
    Sweep {
        batch: i64,
    },
}

/// What a write answered.
pub(super) enum Answer {
    /// `load`'s row, if the session was live.
    Row(Option<Columns>),
    /// Rows written.
    Affected(u64),
    /// `revoke_all`'s deleted ids (`None` for one that is not text), and whether each was
    /// live.
    Ended(Vec<(Option<String>, i64)>),
}

/// Why a write failed: its own statement, or the transaction it was part of.
pub(super) enum Failure {
    Own(sqlx::Error),
    Batch(Arc<sqlx::Error>),
}

type Reply = oneshot::Sender<Result<Answer, Failure>>;

/// The statements the writer runs, in the store's text.
pub(super) struct Statements {
    pub(super) load: String,
    pub(super) create: String,
    pub(super) update: String,
    pub(super) merge: String,
    pub(super) delete: String,
    pub(super) revoke: String,
    pub(super) sweep: String,
}

/// A handle on the store's writer task; the task ends when every handle is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<(Write, Reply)>,
}

impl Writer {
    /// Starts the writer on `pool`, in the current Tokio runtime; `None` outside one.
    pub(super) fn start(pool: SqlitePool, statements: Statements) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (queue, jobs) = mpsc::unbounded_channel();
        runtime.spawn(run(pool, Arc::new(statements), jobs));
        Some(Self { queue })
    }

    /// Queues `write` and waits for its answer.
    pub(super) async fn write(&self, write: Write) -> Result<Answer, Failure> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((write, reply))
            .map_err(|_| Failure::Own(sqlx::Error::PoolClosed))?;
        answer
            .await
            .unwrap_or(Err(Failure::Own(sqlx::Error::WorkerCrashed)))
    }
}

async fn run(
    pool: SqlitePool,
    statements: Arc<Statements>,
    mut jobs: mpsc::UnboundedReceiver<(Write, Reply)>,
) {
    let limits = Limits::of(&pool);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut held: Option<Held> = None;
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // The pool's limits and its closing apply to this connection as to the pool's own.
        if pool.is_closed() {
            held = None;
        } else if held
            .as_ref()
            .is_some_and(|held| limits.expired(&held.age, Instant::now()))
        {
            match replacement(&pool).await {
                Some(Ok(new)) => held = Some(new),
                Some(Err(error)) => tracing::debug!(
                    %error,
                    "renewing the SQLite writer's connection failed; it keeps the one it has"
                ),
                // The application's handlers hold the whole pool: the old connection serves
                // these writes rather than make them wait, and renewal waits for room.
                None => {}
            }
        }
        if held.is_none() {
            match connect(&pool).await {
                Ok(connection) => held = Some(connection),
                Err(error) => {
                    fail_all(&mut batch, error);
                    continue;
                }
            }
        }
        if let Some(Held {
            connection,
            busy,
            age,
        }) = &mut held
        {
            match commit(connection, *busy, &statements, &mut batch).await {
                Ok(()) => age.used(),
                Err(error) => {
                    // It may have left the connection in a transaction, or broken: a new one
                    // next time.
                    held = None;
                    fail_all(&mut batch, error);
                }
            }
        }
        batch.clear();
    }
}

/// The writer's connection, the busy timeout the pool gave it, and its age.
struct Held {
    connection: SqliteConnection,
    busy: Duration,
    age: Age,
}

/// The writer's connection, detached from `pool` and [prepared](prepare).
async fn connect(pool: &SqlitePool) -> Result<Held, sqlx::Error> {
    prepare(pool.acquire().await?.detach()).await
}

/// A connection to replace the writer's expired one, if the pool can give one without
/// waiting: an idle one, or a new one while the pool is below its size.
async fn replacement(pool: &SqlitePool) -> Option<Result<Held, sqlx::Error>> {
    let connection = match pool.try_acquire() {
        Some(connection) => connection,
        None if pool.size() < pool.options().get_max_connections() => match pool.acquire().await {
            Ok(connection) => connection,
            Err(error) => return Some(Err(error)),
        },
        None => return None,
    };
    Some(prepare(connection.detach()).await)
}

/// `connection` with the busy timeout the pool gave it read, and SQLite's own waiting then
/// switched off on it (see [`locking`]).
async fn prepare(mut connection: SqliteConnection) -> Result<Held, sqlx::Error> {
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut connection)
        .await?;
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut connection)
        .await?;
    Ok(Held {
        connection,
        busy: Duration::from_millis(u64::try_from(busy).unwrap_or(0)),
        age: Age::new(),
    })
}

/// Runs `statement` (`BEGIN IMMEDIATE`, `COMMIT`), trying again every [`RETRY`] for up to
/// `busy` while SQLite answers that another connection holds the lock. (`COMMIT` waits too
/// outside WAL mode, for readers to finish; a busy `COMMIT` leaves the transaction open, so
/// trying again is sound.)
async fn locking(
    connection: &mut SqliteConnection,
    statement: &str,
    busy: Duration,
) -> Result<(), sqlx::Error> {
    let deadline = Instant::now() + busy;
    loop {
        match sqlx::query(statement).execute(&mut *connection).await {
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                tokio::time::sleep(RETRY).await;
            }
            done => return done.map(drop),
        }
    }
}

/// Runs `batch` in one transaction and answers every write of it; the error that failed
/// the transaction, with the writes still to answer, if one did.
async fn commit(
    connection: &mut SqliteConnection,
    busy: Duration,
    statements: &Statements,
    batch: &mut Vec<(Write, Reply)>,
) -> Result<(), sqlx::Error> {
    locking(connection, "BEGIN IMMEDIATE", busy).await?;
    if let Err(error) = mark(connection).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
        return Err(error);
    }
    let mut answers = Vec::with_capacity(batch.len());
    for (write, _) in batch.iter() {
        match execute_whole(connection, statements, write).await {
            Err(error) if undoes_transaction(&error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                return Err(error);
            }
            // Its code may not say that it ended the transaction (an application's trigger
            // raising ROLLBACK): the writes after it would then commit one by one.
            Err(error) if still_open(connection).await.is_err() => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                return Err(error);
            }
            answer => answers.push(answer),
        }
    }
    if let Err(error) = locking(connection, "COMMIT", busy).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
        return Err(error);
    }
    for ((_, reply), answer) in batch.drain(..).zip(answers) {
        let _ = reply.send(answer.map_err(Failure::Own));
    }
    Ok(())
}

/// Sets the savepoint [`still_open`] asks for.
async fn mark(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SAVEPOINT batch")
        .execute(&mut *connection)
        .await
        .map(drop)
}

/// Whether the batch's transaction is still open: releasing its savepoint fails if the
/// transaction has ended, and keeps everything written if not (then it is set again).
async fn still_open(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("RELEASE batch")
        .execute(&mut *connection)
        .await?;
    mark(connection).await
}

fn fail_all(batch: &mut Vec<(Write, Reply)>, error: sqlx::Error) {
    let error = Arc::new(error);
    for (_, reply) in batch.drain(..) {
        let _ = reply.send(Err(Failure::Batch(Arc::clone(&error))));
    }
}

/// Whether `error` is SQLite's `SQLITE_BUSY` (another connection holds the lock).
fn is_busy(error: &sqlx::Error) -> bool {
    primary_code(error) == Some(5)
}

/// SQLite's primary result code of `error` (sqlx gives the extended one), if SQLite's.
fn primary_code(error: &sqlx::Error) -> Option<i32> {
    match error {
        sqlx::Error::Database(error) => error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff),
        _ => None,
    }
}

/// Whether SQLite may have rolled the whole transaction back after `error` (its docs: on
/// `SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_BUSY`, `SQLITE_NOMEM`), or the connection is gone.
fn undoes_transaction(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(_) => {
            matches!(primary_code(error), Some(5 | 6 | 7 | 10 | 11 | 13 | 26))
        }
        // Raised here, not by SQLite: a value that would not bind, or a returned row this
        // store did not write (text where a time belongs). The statement ran or never did;
        // the transaction is untouched, so only that write fails.
        sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => false,
        _ => true,
    }
}

/// Runs `write` so that a revoke is kept whole or not at all: a statement that fails half-way
/// with `RAISE(FAIL)` (an application's trigger) keeps the rows it deleted before, and a
/// "log out everywhere" would fail having logged some sessions out. Other writes change one
/// row, or are sweeps, which may stop anywhere.
async fn execute_whole(
    connection: &mut SqliteConnection,
    statements: &Statements,
    write: &Write,
) -> Result<Answer, sqlx::Error> {
    if !matches!(write, Write::Revoke { .. }) {
        return execute(connection, statements, write).await;
    }
    sqlx::query("SAVEPOINT revoke")
        .execute(&mut *connection)
        .await?;
    let answer = execute(connection, statements, write).await;
    if answer.is_err() {
        // If this fails too, the transaction is gone, and `still_open` fails the batch.
        let _ = sqlx::query("ROLLBACK TO revoke")
            .execute(&mut *connection)
            .await;
    }
    let _ = sqlx::query("RELEASE revoke")
        .execute(&mut *connection)
        .await;
    answer
}

async fn execute(
    connection: &mut SqliteConnection,
    statements: &Statements,
    write: &Write,
) -> Result<Answer, sqlx::Error> {
    Ok(match write {
        Write::Load { id } => Answer::Row(
            sqlx::query_as(&statements.load)
                .bind(id)
                .fetch_optional(connection)
                .await?,
        ),
        Write::Create {
            id,
            entries,
            created,
            idle,
            deadline,
            owner: (owner, since, user_agent, address),
        } => Answer::Affected(
            sqlx::query(&statements.create)
                .bind(id)
                .bind(entries)
                .bind(created)
                .bind(idle)
                .bind(deadline)
                .bind(owner)
                .bind(since)
                .bind(user_agent)
                .bind(address)
                .execute(connection)
                .await?
                .rows_affected(),
        ),
        Write::Update {
            id,
            patch,
            idle,
            deadline,
        } => Answer::Affected(
            sqlx::query(&statements.update)
                .bind(id)
                .bind(patch)
                .bind(idle)
                .bind(deadline)
                .execute(connection)
                .await?
                .rows_affected(),
        ),
        Write::Merge { id, patch } => Answer::Affected(
            sqlx::query(&statements.merge)
                .bind(id)
                .bind(patch)
                .execute(connection)
                .await?
                .rows_affected(),
        ),
        Write::Delete { id } => Answer::Affected(
            sqlx::query(&statements.delete)
                .bind(id)
                .execute(connection)
                .await?
                .rows_affected(),
        ),
        Write::Revoke { owner, except } => Answer::Ended(
            sqlx::query_as(&statements.revoke)
                .bind(owner)
                .bind(except)
                .fetch_all(connection)
                .await?,
        ),
        Write::Sweep { batch } => Answer::Affected(
            sqlx::query(&statements.sweep)
                .bind(batch)
                .execute(connection)
                .await?
                .rows_affected(),
        ),
    })
}
