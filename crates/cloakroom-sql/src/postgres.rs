//! [`PostgresStore`]: sessions in a PostgreSQL table, one statement per call.

use std::fmt;
use std::sync::Arc;

use cloakroom::SessionId;
use cloakroom::store::{Changes, OwnerIndex, Record, Revoked, SessionStore, Update};
use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::SqlStoreError;
use crate::codec::{self, Columns};
use crate::conns::Connections;
use crate::error;
use crate::error::POSTGRES;
use crate::rows::{OwnedRow, Rows};
use crate::settings::{Settings, setters};
use crate::sweep::{self, Batches};
use crate::table::Table;
use crate::task;

/// Runs one statement on a connection of the store's own (see `conns.rs`): `$body` uses
/// `&mut $c` and awaits; `$repeatable` says whether it may run again after a lost connection
/// (reads, refreshes, deletes) or only when it surely never ran (writes).
macro_rules! on_connection {
    ($conns:expr, $repeatable:expr, |$c:ident| $body:expr) => {
        $conns
            .with($repeatable, |mut $c| async move {
                let result = $body;
                ($c, result)
            })
            .await
    };
}

/// The database's clock in milliseconds, one value for the whole statement.
const NOW: &str = "floor(extract(epoch from statement_timestamp()) * 1000)::int8";

/// Sessions in a PostgreSQL table. See the [crate documentation](crate) for the schema and
/// what each call does.
///
/// Cloning is cheap: clones share the pool and the sweeper, which stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// For every call but `migrate`: connections made by the pool, without its round trip
    /// per call (see `conns.rs`).
    conns: Arc<Connections<Postgres>>,
    rows: Rows,
    sql: Statements,
    expired: Expired,
    sweep_batch: u32,
    _sweeper: Option<task::Owned>,
}

/// The sweeper's statement and connections, without the store (which holds the sweeper).
#[derive(Clone)]
struct Expired {
    conns: Arc<Connections<Postgres>>,
    sweep: Arc<str>,
}

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
    sweep: Arc<str>,
    migrate: Vec<String>,
}

impl Statements {
    fn new(table: &Table) -> Self {
        let t = table.quoted();
        let returning = codec::returning("entries::text");
        let max = i64::MAX;
        Self {
            // The refresh and the read in one statement; the row lock makes concurrent
            // refreshes of one session take turns.
            load: format!(
                "UPDATE {t} SET expires_ms = LEAST({NOW} + idle_ms, COALESCE(deadline_ms, {max})) \
                 WHERE id = $1 AND expires_ms > {NOW} RETURNING {returning}"
            ),
            read: format!("SELECT {returning} FROM {t} WHERE id = $1 AND expires_ms > {NOW}"),
            create: format!(
                "INSERT INTO {t} (id, entries, created_ms, idle_ms, deadline_ms, expires_ms, \
                 owner, owner_since_ms, user_agent, address) \
                 VALUES ($1, $2::jsonb, $3, $4, $5, LEAST({NOW} + $4, COALESCE($5, {max})), \
                 $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING"
            ),
            // The merge happens in the database, on the row as it is now: `||` sets this
            // request's keys, and the `null`s of removed keys are stripped (values are
            // strings, so no other null exists). LEAST ignores NULLs: the earlier deadline.
            update: format!(
                "UPDATE {t} SET entries = jsonb_strip_nulls(entries || $2::jsonb), \
                 idle_ms = COALESCE($3, idle_ms), \
                 deadline_ms = LEAST(deadline_ms, $4), \
                 expires_ms = LEAST({NOW} + COALESCE($3, idle_ms), \
                 COALESCE(LEAST(deadline_ms, $4), {max})) \
                 WHERE id = $1 AND expires_ms > {NOW}"
            ),
            merge: format!(
                "UPDATE {t} SET entries = jsonb_strip_nulls(entries || $2::jsonb) \
                 WHERE id = $1 AND expires_ms > {NOW}"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            owned: format!(
                "SELECT id, {returning} FROM {t} WHERE owner = $1 AND expires_ms > {NOW}"
            ),
            revoke: format!(
                "DELETE FROM {t} WHERE owner = $1 AND id IS DISTINCT FROM $2 \
                 RETURNING id, expires_ms > {NOW}"
            ),
            // SKIP LOCKED: instances sweeping at once take different rows, and a row a
            // request holds is left for the next sweep.
            sweep: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_ms <= {NOW} \
                 ORDER BY expires_ms LIMIT $1 FOR UPDATE SKIP LOCKED)"
            )
            .into(),
            migrate: vec![
                // Instances starting at once would race on the catalog: one at a time.
                format!(
                    "SELECT pg_advisory_xact_lock(hashtext('cloakroom-sql migrate {}'))",
                    t.replace('\'', "")
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id TEXT PRIMARY KEY, \
                     entries JSONB NOT NULL, \
                     created_ms BIGINT NOT NULL, \
                     idle_ms BIGINT NOT NULL, \
                     deadline_ms BIGINT, \
                     expires_ms BIGINT NOT NULL, \
                     owner TEXT, \
                     owner_since_ms BIGINT, \
                     user_agent TEXT, \
                     address TEXT)"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_ms)",
                    table.index("expires_idx")
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} (owner) WHERE owner IS NOT NULL",
                    table.index("owner_idx")
                ),
            ],
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.rows.table())
            .finish_non_exhaustive()
    }
}

/// Where a store's connections come from.
enum Source {
    None,
    Url(String),
    Pool(PgPool),
}

/// Builds a [`PostgresStore`]: [`PostgresStore::builder`].
#[must_use]
pub struct PostgresStoreBuilder {
    source: Source,
    settings: Settings,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::None => "none",
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("PostgresStoreBuilder")
            .field("source", &source)
            .field("settings", &self.settings)
            .finish()
    }
}

impl PostgresStoreBuilder {
    /// Connects to `url` (`postgres://user:password@host:port/database`) with a pool of
    /// [`max_connections`](Self::max_connections).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Uses a pool the application already has (the one its handlers use, say), and its
    /// settings: [`max_connections`](Self::max_connections) and
    /// [`acquire_timeout`](Self::acquire_timeout) are the pool's. `migrate` runs on the
    /// pool. Session calls and the sweeper run on up to the pool's `max_connections`
    /// connections that the store takes from the pool once and keeps, detached (the pool
    /// opens others in their place), since a call through a sqlx pool costs a second round
    /// trip (see the crate docs). They are made the pool's way: its connect options, its
    /// `after_connect` hook (a `search_path`, `SET ROLE`, a `statement_timeout`), its
    /// `idle_timeout` and `max_lifetime` (checked as often as sqlx checks its own); closing
    /// the pool closes them too. Its `after_release` hook never runs on them.
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.source = Source::Pool(pool);
        self
    }

    setters!(
        "PostgresStore",
        "the schema must exist",
        "a [`url`](Self::url)"
    );

    /// Checks the table name, connects (for a [`url`](Self::url)) and starts the sweeper.
    /// Run [`PostgresStore::migrate`] once to create the table.
    pub async fn build(self) -> Result<PostgresStore, SqlStoreError> {
        let settings = self.settings;
        let table = Table::parse(&settings.table)?;
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                // Session calls do not go through the pool (see `conns.rs`): it only makes
                // their connections, so a ping before handing one out costs no request a
                // round trip and keeps the dead ones a restart left from being handed out.
                .test_before_acquire(true)
                .connect(&url)
                .await
                .map_err(|source| match source {
                    sqlx::Error::Configuration(error) => {
                        SqlStoreError::Config(format!("the PostgreSQL URL: {error}"))
                    }
                    source => SqlStoreError::Database {
                        database: POSTGRES,
                        operation: "connect",
                        source,
                    },
                })?,
            Source::None => {
                return Err(SqlStoreError::Config(
                    "PostgresStore needs a url() or a pool()".to_owned(),
                ));
            }
        };
        let conns = Arc::new(Connections::new(pool));
        let sql = Statements::new(&table);
        let expired = Expired {
            conns: Arc::clone(&conns),
            sweep: Arc::clone(&sql.sweep),
        };
        let sweeper = sweep::start(expired.clone(), settings.sweep, POSTGRES);
        let inner = Arc::new(Inner {
            conns,
            sql,
            rows: Rows::new(POSTGRES, &table),
            expired,
            sweep_batch: settings.sweep.batch,
            _sweeper: sweeper,
        });
        Ok(PostgresStore { inner })
    }
}

impl PostgresStore {
    /// A builder: [`url`](PostgresStoreBuilder::url) or
    /// [`pool`](PostgresStoreBuilder::pool), a [`table`](PostgresStoreBuilder::table).
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            source: Source::None,
            settings: Settings::default(),
        }
    }

    /// Creates the table and its indexes if they do not exist (see the crate docs for the
    /// schema). Safe to run on every start, from several instances at once.
    pub async fn migrate(&self) -> Result<(), SqlStoreError> {
        let mut tx = self.pool().begin().await.map_err(failed("migrate"))?;
        for statement in &self.inner.sql.migrate {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(failed("migrate"))?;
        }
        tx.commit().await.map_err(failed("migrate"))?;
        tracing::debug!(table = %self.inner.rows.table(), "PostgreSQL session table ready");
        Ok(())
    }

    /// Deletes every expired row now, in batches; how many. The sweeper calls this on its
    /// interval.
    pub async fn sweep(&self) -> Result<u64, SqlStoreError> {
        sweep::sweep_all(&self.inner.expired, self.inner.sweep_batch).await
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        self.inner.conns.pool()
    }
}

/// The error of a statement of `operation` ([`error::failed`]).
fn failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> SqlStoreError {
    error::failed(POSTGRES, operation)
}

impl Batches for Expired {
    async fn sweep_batch(&self, batch: u32) -> Result<u64, SqlStoreError> {
        let sql = &*self.sweep;
        // Deleting expired rows again does no harm: repeatable.
        let done = on_connection!(self.conns, true, |c| sqlx::query(sql)
            .bind(i64::from(batch))
            .execute(&mut c)
            .await)
        .map_err(failed("sweep"))?;
        Ok(done.rows_affected())
    }
}

impl SessionStore for PostgresStore {
    type Error = SqlStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, SqlStoreError> {
        let sql = &self.inner.sql.load;
        let row: Option<Columns> = on_connection!(self.inner.conns, true, |c| sqlx::query_as(sql)
            .bind(id.as_str())
            .fetch_optional(&mut c)
            .await)
        .map_err(failed("load"))?;
        self.inner.rows.record(row)
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Record>, SqlStoreError> {
        let sql = &self.inner.sql.read;
        let row: Option<Columns> = on_connection!(self.inner.conns, true, |c| sqlx::query_as(sql)
            .bind(id.as_str())
            .fetch_optional(&mut c)
            .await)
        .map_err(failed("read"))?;
        self.inner.rows.record(row)
    }

    async fn create(&self, record: &Record) -> Result<SessionId, SqlStoreError> {
        let entries = codec::entries(record);
        let (owner, since, user_agent, address) = codec::owner(record);
        let (entries, owner, user_agent, address) = (&entries, &owner, &user_agent, &address);
        let sql = &self.inner.sql.create;
        self.inner
            .rows
            .create(|id| async move {
                let fresh = id.as_str();
                let done = on_connection!(self.inner.conns, false, |c| sqlx::query(sql)
                    .bind(fresh)
                    .bind(entries)
                    .bind(codec::millis(record.created))
                    .bind(codec::duration_millis(record.idle_timeout))
                    .bind(record.deadline.map(codec::millis))
                    .bind(owner)
                    .bind(since)
                    .bind(user_agent)
                    .bind(address)
                    .execute(&mut c)
                    .await)
                .map_err(failed("create"))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, SqlStoreError> {
        let entries_only = codec::entries_only(changes);
        let sql = if entries_only {
            &self.inner.sql.merge
        } else {
            &self.inner.sql.update
        };
        let patch = codec::patch(changes);
        let patch = &patch;
        let done = on_connection!(self.inner.conns, false, |c| {
            let query = sqlx::query(sql).bind(id.as_str()).bind(patch);
            let query = if entries_only {
                query
            } else {
                query
                    .bind(changes.idle_timeout.map(codec::duration_millis))
                    .bind(changes.deadline.map(codec::millis))
            };
            query.execute(&mut c).await
        })
        .map_err(failed("update"))?;
        Ok(if done.rows_affected() == 1 {
            Update::Applied
        } else {
            Update::Missing
        })
    }

    async fn delete(&self, id: &SessionId) -> Result<(), SqlStoreError> {
        let sql = &self.inner.sql.delete;
        on_connection!(self.inner.conns, true, |c| sqlx::query(sql)
            .bind(id.as_str())
            .execute(&mut c)
            .await)
        .map_err(failed("delete"))?;
        Ok(())
    }
}

/// The owner column is the index: a session is indexed in the same row it is created in,
/// and leaves with it.
impl OwnerIndex for PostgresStore {
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, SqlStoreError> {
        let sql = &self.inner.sql.owned;
        let owner = codec::escape(owner);
        let owner = owner.as_ref();
        let rows: Vec<OwnedRow> = on_connection!(self.inner.conns, true, |c| sqlx::query_as(sql)
            .bind(owner)
            .fetch_all(&mut c)
            .await)
        .map_err(failed("owned"))?;
        self.inner.rows.owned(rows)
    }

    async fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Revoked, SqlStoreError> {
        let sql = &self.inner.sql.revoke;
        let owner = codec::escape(owner);
        let owner = owner.as_ref();
        let rows: Vec<(String, bool)> =
            on_connection!(self.inner.conns, false, |c| sqlx::query_as(sql)
                .bind(owner)
                .bind(except.map(SessionId::as_str))
                .fetch_all(&mut c)
                .await)
            .map_err(failed("revoke_all"))?;
        Ok(self
            .inner
            .rows
            .ended(rows.into_iter().map(|(id, live)| (Some(id), live))))
    }
}
