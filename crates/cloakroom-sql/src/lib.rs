//! PostgreSQL and SQLite session stores for [cloakroom](https://docs.rs/cloakroom), on the
//! [sqlx](https://docs.rs/sqlx) pools an axum app already has: [`PostgresStore`] (feature
//! `postgres`) and [`SqliteStore`] (feature `sqlite`), both on by default.
//!
//! ```no_run
//! use std::time::Duration;
//! use cloakroom::{SessionCookie, SessionLayer};
//! use cloakroom_sql::PostgresStore;
//!
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::builder()
//!     .url(std::env::var("DATABASE_URL")?) // or .pool(the_pool_your_handlers_use)
//!     .table("sessions")                    // the default; "app.sessions" for a schema
//!     .build()
//!     .await?;
//! store.migrate().await?; // creates the table and its indexes if they are missing
//! let cookie = SessionCookie::new("__session").secret(std::env::var("SESSION_SECRET")?);
//! let layer = SessionLayer::new(cookie, store)?.idle_timeout(Duration::from_secs(7 * 86400));
//! # Ok(()) }
//! ```
//!
//! SQLite, on one machine (several processes may share the file):
//!
//! ```no_run
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let store = cloakroom_sql::SqliteStore::builder()
//!     .path("/var/lib/myapp/sessions.db") // WAL mode, created if missing
//!     .busy_timeout(std::time::Duration::from_secs(2))
//!     .build()
//!     .await?;
//! store.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! Every store call is one statement, so it is atomic on its own and costs one round trip:
//!
//! | call | statement |
//! | --- | --- |
//! | `load` | `UPDATE … SET expires_ms = least(now + idle_ms, deadline_ms) WHERE id = $1 AND expires_ms > now RETURNING …`: the read and the refresh at once |
//! | `read` | `SELECT … WHERE id = $1 AND expires_ms > now` |
//! | `create` | `INSERT … ON CONFLICT (id) DO NOTHING`: an existing session is never overwritten (a taken id, never seen with random ids, is retried with a fresh one) |
//! | `update` | `UPDATE … SET entries = <merge of this request's keys> … WHERE id = $1 AND expires_ms > now`: only the changed keys, merged into the row as it is now, so concurrent requests changing different keys all survive; no row, no write (a deleted session is never recreated). When the layer does not ask for a refresh (`Changes::touch`) and sets no new timeout or deadline, it sets `entries` alone: no indexed column changes, so PostgreSQL updates the row in place (HOT) and SQLite touches no index |
//! | `delete` | `DELETE … WHERE id = $1` |
//! | `owned` | `SELECT … WHERE owner = $1 AND expires_ms > now` (the owner index) |
//! | `revoke_all` | `DELETE … WHERE owner = $1 AND id IS DISTINCT FROM $2 RETURNING id` |
//!
//! - **Expiry on the database's clock.** `now` in every statement is the database's
//!   (`statement_timestamp()`, SQLite's `'now'`), so app servers with skewed clocks agree,
//!   and an expired row is never served, whether or not it was swept yet.
//! - **The merge**: PostgreSQL `jsonb_strip_nulls(entries || $patch)`, SQLite
//!   `json_patch(entries, $patch)`; the patch holds each set key's value and `null` for each
//!   removed key.
//! - **Values are kept exactly**: each value is a JSON string holding the value's own JSON
//!   text (tagged `v`, or `f` for a flash), so the database never re-encodes it and anything
//!   round-trips, `\u0000` included (which `jsonb` refuses as a character). Keys and owner
//!   names have `%`, `"`, `\` and control characters escaped as `%XX`.
//! - **The sweeper**: a task of the store deletes expired rows in batches
//!   ([`sweep_batch`](PostgresStoreBuilder::sweep_batch), by the `expires_ms` index) on an
//!   [interval](PostgresStoreBuilder::sweep_interval), off the request path; the next sweep
//!   starts an interval after the last one ended, and the sweeper stops when the store is
//!   dropped, even in the middle of a statement. PostgreSQL's takes rows with `FOR UPDATE SKIP LOCKED`, so
//!   instances sweeping at once do not wait on each other.
//! - **A user's sessions** ([`Owners`](cloakroom::Owners): list, revoke one, log out
//!   everywhere): the `owner` column and its partial index; a session is indexed in the same
//!   row it is created in, so there is no index to keep in step.
//! - **Failures**: [`SqlStoreError`]; [`failure_kind`](cloakroom::store::StoreError::failure_kind)
//!   says `Unavailable` (503) for what may pass (connection lost, pool timeout, the server
//!   shutting down or starting up, SQLite busy past its timeout) and `Rejected` (500) for
//!   what will not (a missing table, a row this store did not write). The pool reconnects
//!   by itself: after PostgreSQL restarts, requests get the error response until it is back,
//!   then work again.
//! - **SQLite** runs in WAL mode (readers never wait for the writer) with a
//!   [busy timeout](SqliteStoreBuilder::busy_timeout): a database locked by another process
//!   fails the call after that long, never hangs it. A store's writes go to a task of its
//!   own that commits everything waiting in one transaction (`BEGIN IMMEDIATE` … `COMMIT`,
//!   one `fsync` for all of them; each statement as it would run alone, in arrival order).
//!   A write SQLite refuses fails alone; a failed commit, or a failure that ended the
//!   transaction whatever its code (an application's trigger raising `ROLLBACK`), fails the
//!   writes committed with it. Several processes may share the file: each one's store is
//!   one writer, and they take turns at the lock. SQLite keeps no queue across processes,
//!   so under writes from several processes at once a turn is not guaranteed within the
//!   busy timeout: give it seconds (the default is 2 s), not milliseconds. The store cannot
//!   see a database file replaced under it (a restore): its connections are renewed within
//!   the pool's limits (see below), the writer's once the pool has a connection to give,
//!   and until then writes fail; restart the application instead.
//! - **Rows this store did not write** are never served: a load or a list that meets one
//!   fails with a 500 (`Rejected`: [`SqlStoreError::Corrupt`] naming the table, or the
//!   database's decode error for a column of another type), never naming the id. A "log out
//!   everywhere" deletes every row of the owner, those included, and succeeds; they are left
//!   out of the sessions it names, since no client holds such an id.
//! - **PostgreSQL connections**: [`migrate`](PostgresStore::migrate) uses the sqlx pool;
//!   session calls and the sweeper use up to the pool's `max_connections` connections that
//!   the store takes from the pool once and keeps (detached: the pool opens others in their
//!   place). So they are made the pool's way, its `after_connect` hook (`search_path`, `SET
//!   ROLE`) included, without the round trip a sqlx pool adds to every call by pinging each
//!   connection it takes back (`BENCHMARKS.md` has the figures). The pool's `idle_timeout`
//!   and `max_lifetime` apply to them, checked by a task of the store's as often as sqlx
//!   checks its own (so idle connections close without waiting for a call; sqlx does not
//!   say when it made a connection, so a lifetime counts from when the store took it, at
//!   most twice `max_lifetime` from its making), and closing the pool closes them (a moment
//!   after `close()` returns; calls fail from the start). A call cut off half-way (the
//!   layer's store timeout, a client gone) drops its connection instead of keeping it, which
//!   is what the ping guards against; an idle connection found dead (a restart, an idle
//!   timeout) drops the idle ones and the call runs again on a new one when that is safe
//!   (reads, refreshes, deletes; a write only if the server said it never ran it).
//!
//! # The schema
//!
//! [`migrate`](PostgresStore::migrate) creates it (idempotently, in one transaction;
//! PostgreSQL's under an advisory lock, so instances starting at once do not race):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "sessions" (
//!     id             TEXT PRIMARY KEY,  -- the session id (192 random bits, 32 characters)
//!     entries        JSONB NOT NULL,    -- SQLite: TEXT. {"<key>": "v<json>" | "f<json>"}
//!     created_ms     BIGINT NOT NULL,   -- times: milliseconds since the Unix epoch
//!     idle_ms        BIGINT NOT NULL,   -- the idle timeout
//!     deadline_ms    BIGINT,            -- the absolute deadline, if any
//!     expires_ms     BIGINT NOT NULL,   -- least(last refresh + idle_ms, deadline_ms)
//!     owner          TEXT,              -- whose session (Session::set_owner), if anyone's
//!     owner_since_ms BIGINT,            -- the login
//!     user_agent     TEXT,              -- at login, if the layer keeps it
//!     address        TEXT               -- at login, if the layer keeps it
//! );
//! CREATE INDEX IF NOT EXISTS "sessions_expires_idx" ON "sessions" (expires_ms);
//! CREATE INDEX IF NOT EXISTS "sessions_owner_idx" ON "sessions" (owner) WHERE owner IS NOT NULL;
//! ```
//!
//! To manage the schema with your own migrations instead, create the same table and skip
//! `migrate`. The table name is checked when the store is built: identifiers only
//! (`[A-Za-z_][A-Za-z0-9_]*`, one optional `schema.` prefix), anything else an error naming
//! it; it is quoted in every statement (so it is case-sensitive).

#![forbid(unsafe_code)]
// With one database's feature off, the other's share of the common code goes unused.
#![cfg_attr(not(all(feature = "postgres", feature = "sqlite")), allow(dead_code))]

mod age;
mod codec;
#[cfg(feature = "postgres")]
mod conns;
mod error;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod settings;
#[cfg(feature = "sqlite")]
mod sqlite;
mod sweep;
mod table;
mod task;

pub use crate::error::SqlStoreError;
#[cfg(feature = "postgres")]
pub use crate::postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "sqlite")]
pub use crate::sqlite::{SqliteStore, SqliteStoreBuilder};

/// The table a store uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "sessions";

/// Fresh ids `create` tries before giving up.
const CREATE_ATTEMPTS: usize = 8;
