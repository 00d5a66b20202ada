//! [`SqliteStore`]: sessions in a SQLite table, one statement per call.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cloakroom::SessionId;
use cloakroom::store::{Changes, OwnerIndex, Record, Revoked, SessionStore, Update};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use self::writer::{Answer, Failure, Write, Writer};
use crate::SqlStoreError;
use crate::codec::{self, Columns};
use crate::error;
use crate::error::SQLITE;
use crate::rows::{OwnedRow, Rows};
use crate::settings::{Settings, setters};
use crate::sweep::{self, Batches};
use crate::table::Table;
use crate::task;

mod writer;

/// The database's clock in milliseconds: SQLite gives `'now'` one value for the whole
/// statement. (`julianday` rather than `unixepoch('subsec')`, which older SQLite lacks.)
const NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// Sessions in a SQLite database file (WAL mode). See the [crate documentation](crate) for the schema and
/// what each call does.
///
/// Cloning is cheap: clones share the pool and the sweeper, which stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Reads, and `migrate`.
    pool: SqlitePool,
    /// Every write, committed together (see `sqlite/writer.rs`).
    writer: Writer,
    rows: Rows,
    sql: Statements,
    sweep_batch: u32,
    _sweeper: Option<task::Owned>,
}

/// The sweeper's way to the writer, without the store (which holds the sweeper).
struct Expired(Writer);

/// Every statement, made once from the checked table name.
struct Statements {
    load: String,
    read: String,
    create: String,
    update: String,
    /// `update` of the entries alone ([`codec::entries_only`]).
    merge: String,
    delete: String,
    owned: String,
    revoke: String,
    sweep: String,
    migrate: Vec<String>,
}

impl Statements {
    fn new(table: &Table) -> Self {
        let t = table.quoted();
        let returning = codec::returning("entries");
        let max = i64::MAX;
        let (expires_idx, on) = table.sqlite_index("expires_idx");
        let (owner_idx, _) = table.sqlite_index("owner_idx");
        Self {
            // The refresh and the read in one statement, which takes the write lock first
            // (a bounded wait: the busy timeout).
            load: format!(
                "UPDATE {t} SET expires_ms = min({NOW} + idle_ms, coalesce(deadline_ms, {max})) \
                 WHERE id = ?1 AND expires_ms > {NOW} RETURNING {returning}"
            ),
            read: format!("SELECT {returning} FROM {t} WHERE id = ?1 AND expires_ms > {NOW}"),
            create: format!(
                "INSERT INTO {t} (id, entries, created_ms, idle_ms, deadline_ms, expires_ms, \
                 owner, owner_since_ms, user_agent, address) \
                 VALUES (?1, ?2, ?3, ?4, ?5, min({NOW} + ?4, coalesce(?5, {max})), \
                 ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING"
            ),
            // The merge happens in the statement, on the row as it is now: `json_patch`
            // (RFC 7396) sets this request's keys and removes those it gives as `null`.
            // SQLite's two-argument min() is NULL if either is: the earlier deadline is
            // spelled out.
            update: format!(
                "UPDATE {t} SET entries = json_patch(entries, ?2), \
                 idle_ms = coalesce(?3, idle_ms), \
                 deadline_ms = coalesce(min(deadline_ms, ?4), deadline_ms, ?4), \
                 expires_ms = min({NOW} + coalesce(?3, idle_ms), \
                 coalesce(min(deadline_ms, ?4), deadline_ms, ?4, {max})) \
                 WHERE id = ?1 AND expires_ms > {NOW}"
            ),
            merge: format!(
                "UPDATE {t} SET entries = json_patch(entries, ?2) \
                 WHERE id = ?1 AND expires_ms > {NOW}"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            owned: format!(
                "SELECT id, {returning} FROM {t} WHERE owner = ?1 AND expires_ms > {NOW}"
            ),
            revoke: format!(
                "DELETE FROM {t} WHERE owner = ?1 AND id IS NOT ?2 \
                 RETURNING CASE WHEN typeof(id) = 'text' THEN id END, expires_ms > {NOW}"
            ),
            sweep: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_ms <= {NOW} \
                 ORDER BY expires_ms LIMIT ?1)"
            ),
            migrate: vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id TEXT PRIMARY KEY NOT NULL, \
                     entries TEXT NOT NULL, \
                     created_ms INTEGER NOT NULL, \
                     idle_ms INTEGER NOT NULL, \
                     deadline_ms INTEGER, \
                     expires_ms INTEGER NOT NULL, \
                     owner TEXT, \
                     owner_since_ms INTEGER, \
                     user_agent TEXT, \
                     address TEXT)"
                ),
                format!("CREATE INDEX IF NOT EXISTS {expires_idx} ON {on} (expires_ms)"),
                format!(
                    "CREATE INDEX IF NOT EXISTS {owner_idx} ON {on} (owner) WHERE owner IS NOT NULL"
                ),
            ],
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.inner.rows.table())
            .finish_non_exhaustive()
    }
}

/// Where a store's connections come from.
enum Source {
    None,
    Url(String),
    Path(PathBuf),
    Pool(SqlitePool),
}

/// Builds a [`SqliteStore`]: [`SqliteStore::builder`].
#[must_use]
pub struct SqliteStoreBuilder {
    source: Source,
    settings: Settings,
    busy_timeout: Duration,
}

impl fmt::Debug for SqliteStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::None => "none",
            Source::Url(_) => "url",
            Source::Path(_) => "path",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("SqliteStoreBuilder")
            .field("source", &source)
            .field("settings", &self.settings)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

impl SqliteStoreBuilder {
    /// Opens the database file at `path`, creating it if missing, in WAL mode with the
    /// [`busy_timeout`](Self::busy_timeout), with a pool of
    /// [`max_connections`](Self::max_connections).
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Source::Path(path.into());
        self
    }

    /// Opens the database at `url` (`sqlite://sessions.db?mode=rwc`) like
    /// [`path`](Self::path): WAL mode, the busy timeout.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Uses a pool the application already has (the one its handlers use, say); the pool's
    /// own settings apply (set WAL mode and a busy timeout on its connect options: sqlx's
    /// default busy timeout is 5 s), and [`max_connections`](Self::max_connections),
    /// [`acquire_timeout`](Self::acquire_timeout) and
    /// [`busy_timeout`](Self::busy_timeout) are not used.
    pub fn pool(mut self, pool: SqlitePool) -> Self {
        self.source = Source::Pool(pool);
        self
    }

    setters!(
        "SqliteStore",
        "`schema` an attached database",
        "a path or URL"
    );

    /// How long a statement waits for another connection's (or process's) write to finish
    /// before it fails with "database is locked", a store error (503) (default 2 s): a bounded
    /// wait, never a hang.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Checks the table name, connects (for a [`url`](Self::url)) and starts the sweeper.
    /// Run [`SqliteStore::migrate`] once to create the table.
    pub async fn build(self) -> Result<SqliteStore, SqlStoreError> {
        let settings = self.settings;
        let table = Table::parse(&settings.table)?;
        let options = match self.source {
            Source::Pool(pool) => Ok(pool),
            Source::Path(path) => Err(SqliteConnectOptions::new().filename(path)),
            Source::Url(url) => Err(SqliteConnectOptions::from_str(&url)
                .map_err(|error| SqlStoreError::Config(format!("the SQLite URL: {error}")))?),
            Source::None => {
                return Err(SqlStoreError::Config(
                    "SqliteStore needs a path(), url() or pool()".to_owned(),
                ));
            }
        };
        let pool = match options {
            Ok(pool) => pool,
            Err(options) => {
                let options = options
                    .create_if_missing(true)
                    // Readers never wait for a writer, and a writer never for readers.
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(self.busy_timeout);
                SqlitePoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    // The pool tests every connection when it is released; testing again
                    // when it is taken would cost every call a round trip to its thread.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .map_err(|source| SqlStoreError::Database {
                        database: SQLITE,
                        operation: "connect",
                        source,
                    })?
            }
        };
        let sql = Statements::new(&table);
        let writer = Writer::start(
            pool.clone(),
            writer::Statements {
                load: sql.load.clone(),
                create: sql.create.clone(),
                update: sql.update.clone(),
                merge: sql.merge.clone(),
                delete: sql.delete.clone(),
                revoke: sql.revoke.clone(),
                sweep: sql.sweep.clone(),
            },
        )
        .ok_or_else(|| {
            SqlStoreError::Config("SqliteStore must be built inside a Tokio runtime".to_owned())
        })?;
        let sweeper = sweep::start(Expired(writer.clone()), settings.sweep, SQLITE);
        let inner = Arc::new(Inner {
            pool,
            writer,
            sql,
            rows: Rows::new(SQLITE, &table),
            sweep_batch: settings.sweep.batch,
            _sweeper: sweeper,
        });
        Ok(SqliteStore { inner })
    }
}

impl SqliteStore {
    /// A builder: [`path`](SqliteStoreBuilder::path), [`url`](SqliteStoreBuilder::url) or
    /// [`pool`](SqliteStoreBuilder::pool), a [`table`](SqliteStoreBuilder::table).
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            source: Source::None,
            settings: Settings::default(),
            busy_timeout: Duration::from_secs(2),
        }
    }

    /// Creates the table and its indexes if they do not exist (see the crate docs for the
    /// schema), in one transaction. Safe to run on every start, from several processes at
    /// once.
    pub async fn migrate(&self) -> Result<(), SqlStoreError> {
        let mut tx = self.inner.pool.begin().await.map_err(failed("migrate"))?;
        for statement in &self.inner.sql.migrate {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(failed("migrate"))?;
        }
        tx.commit().await.map_err(failed("migrate"))?;
        tracing::debug!(table = %self.inner.rows.table(), "SQLite session table ready");
        Ok(())
    }

    /// Deletes every expired row now, in batches; how many. The sweeper calls this on its
    /// interval.
    pub async fn sweep(&self) -> Result<u64, SqlStoreError> {
        sweep::sweep_all(&Expired(self.inner.writer.clone()), self.inner.sweep_batch).await
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }
}

/// The error of a statement of `operation` ([`error::failed`]).
fn failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> SqlStoreError {
    error::failed(SQLITE, operation)
}

impl Batches for Expired {
    async fn sweep_batch(&self, batch: u32) -> Result<u64, SqlStoreError> {
        let write = Write::Sweep {
            batch: i64::from(batch),
        };
        match self.0.write(write).await.map_err(written("sweep"))? {
            Answer::Affected(rows) => Ok(rows),
            _ => Ok(0),
        }
    }
}

/// The error of a write of `operation` (see [`failed`]).
fn written(operation: &'static str) -> impl FnOnce(Failure) -> SqlStoreError {
    move |failure| match failure {
        Failure::Own(source) => failed(operation)(source),
        Failure::Batch(source) => {
            tracing::debug!(operation, error = %source, "SQLite session store transaction failed");
            SqlStoreError::Batch {
                database: SQLITE,
                operation,
                source,
            }
        }
    }
}

/// An answer a write of its kind never gives.
fn unexpected(operation: &'static str) -> SqlStoreError {
    SqlStoreError::Batch {
        database: SQLITE,
        operation,
        source: Arc::new(sqlx::Error::Protocol(format!(
            "the writer answered {operation} with another call's answer"
        ))),
    }
}

impl SessionStore for SqliteStore {
    type Error = SqlStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, SqlStoreError> {
        let write = Write::Load {
            id: id.as_str().to_owned(),
        };
        match self
            .inner
            .writer
            .write(write)
            .await
            .map_err(written("load"))?
        {
            Answer::Row(row) => self.inner.rows.record(row),
            _ => Err(unexpected("load")),
        }
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Record>, SqlStoreError> {
        let row: Option<Columns> = sqlx::query_as(&self.inner.sql.read)
            .bind(id.as_str())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(failed("read"))?;
        self.inner.rows.record(row)
    }

    async fn create(&self, record: &Record) -> Result<SessionId, SqlStoreError> {
        let entries = codec::entries(record);
        let (owner, since, user_agent, address) = codec::owner(record);
        self.inner
            .rows
            .create(|id| {
                let write = Write::Create {
                    id: id.as_str().to_owned(),
                    entries: entries.clone(),
                    created: codec::millis(record.created),
                    idle: codec::duration_millis(record.idle_timeout),
                    deadline: record.deadline.map(codec::millis),
                    owner: (owner.clone(), since, user_agent.clone(), address.clone()),
                };
                async move {
                    match self
                        .inner
                        .writer
                        .write(write)
                        .await
                        .map_err(written("create"))?
                    {
                        Answer::Affected(rows) => Ok(rows == 1),
                        _ => Err(unexpected("create")),
                    }
                }
            })
            .await
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, SqlStoreError> {
        let (id, patch) = (id.as_str().to_owned(), codec::patch(changes));
        let write = if codec::entries_only(changes) {
            Write::Merge { id, patch }
        } else {
            Write::Update {
                id,
                patch,
                idle: changes.idle_timeout.map(codec::duration_millis),
                deadline: changes.deadline.map(codec::millis),
            }
        };
        match self
            .inner
            .writer
            .write(write)
            .await
            .map_err(written("update"))?
        {
            Answer::Affected(1) => Ok(Update::Applied),
            Answer::Affected(_) => Ok(Update::Missing),
            _ => Err(unexpected("update")),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), SqlStoreError> {
        let write = Write::Delete {
            id: id.as_str().to_owned(),
        };
        self.inner
            .writer
            .write(write)
            .await
            .map_err(written("delete"))?;
        Ok(())
    }
}

/// The owner column is the index: a session is indexed in the same row it is created in,
/// and leaves with it.
impl OwnerIndex for SqliteStore {
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, SqlStoreError> {
        let rows: Vec<OwnedRow> = sqlx::query_as(&self.inner.sql.owned)
            .bind(codec::escape(owner).as_ref())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(failed("owned"))?;
        self.inner.rows.owned(rows)
    }

    async fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Revoked, SqlStoreError> {
        let write = Write::Revoke {
            owner: codec::escape(owner).into_owned(),
            except: except.map(|id| id.as_str().to_owned()),
        };
        let rows = match self
            .inner
            .writer
            .write(write)
            .await
            .map_err(written("revoke_all"))?
        {
            Answer::Ended(rows) => rows,
            _ => return Err(unexpected("revoke_all")),
        };
        Ok(self
            .inner
            .rows
            .ended(rows.into_iter().map(|(id, live)| (id, live != 0))))
    }
}
