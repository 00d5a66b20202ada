//! What can go wrong, and whether retrying helps.

use cloakroom::store::{FailureKind, StoreError};

/// The `database` of [`SqlStoreError`]s of [`PostgresStore`](crate::PostgresStore).
pub(crate) const POSTGRES: &str = "PostgreSQL";
/// The `database` of [`SqlStoreError`]s of [`SqliteStore`](crate::SqliteStore).
pub(crate) const SQLITE: &str = "SQLite";

/// A failed call of [`PostgresStore`](crate::PostgresStore) or
/// [`SqliteStore`](crate::SqliteStore). Session ids are never part of one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlStoreError {
    /// The store's configuration is unusable (a table name that is not an identifier, a URL
    /// that does not parse): an error when the store is built.
    #[error("invalid SQL session store configuration: {0}")]
    Config(String),
    /// The database could not be reached, timed out, or refused a statement.
    #[error("{database} session store: {operation} failed: {source}")]
    Database {
        /// `PostgreSQL` or `SQLite`.
        database: &'static str,
        /// The store operation (`load`, `update`, `migrate`, ...).
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The transaction a SQLite write was committed in failed (its statement was fine): see
    /// [`SqliteStore`](crate::SqliteStore)'s writes, committed together.
    #[error(
        "{database} session store: {operation} failed with the transaction it was part of: {source}"
    )]
    Batch {
        /// `SQLite`.
        database: &'static str,
        /// The store operation.
        operation: &'static str,
        /// What sqlx said of the transaction.
        #[source]
        source: std::sync::Arc<sqlx::Error>,
    },
    /// A row of the table holds something this store did not write.
    #[error("{database} session store: a row of {table} is not a cloakroom session: {reason}")]
    Corrupt {
        /// `PostgreSQL` or `SQLite`.
        database: &'static str,
        /// The table.
        table: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every fresh id tried was taken (never happens with random ids: a broken generator).
    #[error("{database} session store: {attempts} fresh session ids were all taken")]
    Collision {
        /// `PostgreSQL` or `SQLite`.
        database: &'static str,
        /// How many were tried.
        attempts: usize,
    },
}

/// The error of a statement of `operation`, logged (without the id) at debug: the layer logs
/// the failed request.
pub(crate) fn failed(
    database: &'static str,
    operation: &'static str,
) -> impl FnOnce(sqlx::Error) -> SqlStoreError {
    move |source| {
        tracing::debug!(database, operation, error = %source, "SQL session store call failed");
        SqlStoreError::Database {
            database,
            operation,
            source,
        }
    }
}

impl StoreError for SqlStoreError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Database {
                database, source, ..
            } if retryable(database, source) => FailureKind::Unavailable,
            Self::Batch {
                database, source, ..
            } if retryable(database, source) => FailureKind::Unavailable,
            Self::Collision { .. } => FailureKind::Unavailable,
            _ => FailureKind::Rejected,
        }
    }
}

/// Whether a retry may succeed: the database was unreachable, busy or shutting down, as
/// opposed to a statement it will refuse again (bad data, a missing table, a value too large).
fn retryable(database: &str, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            let code = error.code().unwrap_or_default();
            if database == POSTGRES {
                postgres_retryable(&code)
            } else {
                sqlite_retryable(&code)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// PostgreSQL's SQLSTATE classes that pass: connection exceptions (`08`), transaction
/// rollbacks such as deadlocks and serialization failures (`40`), insufficient resources
/// (`53`), operator intervention: shutting down, starting up, a cancelled statement (`57`),
/// system errors (`58`), and a lock not available (`55P03`).
fn postgres_retryable(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("08" | "40" | "53" | "57" | "58")) || sqlstate == "55P03"
}

/// SQLite's result codes (sqlx gives the extended code) that pass: busy and locked (another
/// connection holds the database past the busy timeout), out of memory, I/O errors, a full
/// disk, a file that cannot be opened.
fn sqlite_retryable(code: &str) -> bool {
    let primary = code.parse::<i32>().map_or(0, |code| code & 0xff);
    matches!(primary, 5 | 6 | 7 | 10 | 13 | 14 | 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_database_states_are_retryable() {
        assert!(postgres_retryable("08006"));
        assert!(postgres_retryable("57P01"));
        assert!(postgres_retryable("40P01"));
        assert!(!postgres_retryable("22P05"), "an untranslatable character");
        assert!(!postgres_retryable("42P01"), "a missing table");
        assert!(sqlite_retryable("5"));
        assert!(sqlite_retryable("517"), "SQLITE_BUSY_SNAPSHOT");
        assert!(!sqlite_retryable("1"));
        assert!(!sqlite_retryable("18"), "SQLITE_TOOBIG");
        assert!(!retryable(POSTGRES, &sqlx::Error::RowNotFound));
        assert!(retryable(SQLITE, &sqlx::Error::PoolTimedOut));
    }
}
