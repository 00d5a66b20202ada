//! What both stores make of the rows their statements return: records, ids, a user's
//! sessions. Anything this crate did not write is [`SqlStoreError::Corrupt`], naming the
//! table and never the row's id.

use std::future::Future;

use cloakroom::SessionId;
use cloakroom::store::{Record, Revoked};

use crate::codec::{self, Columns};
use crate::table::Table;
use crate::{CREATE_ATTEMPTS, SqlStoreError};

/// `id` and the [`Columns`] of one row: what `owned` returns.
pub(crate) type OwnedRow = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// The rows of one store's table.
pub(crate) struct Rows {
    database: &'static str,
    table: String,
}

impl Rows {
    pub(crate) fn new(database: &'static str, table: &Table) -> Self {
        Self {
            database,
            table: table.quoted(),
        }
    }

    /// The table, quoted as in the statements.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// The record of a row, if a statement returned one.
    pub(crate) fn record(&self, row: Option<Columns>) -> Result<Option<Record>, SqlStoreError> {
        row.map(|columns| self.decode(columns)).transpose()
    }

    /// A user's sessions, from `owned`'s rows.
    pub(crate) fn owned(
        &self,
        rows: Vec<OwnedRow>,
    ) -> Result<Vec<(SessionId, Record)>, SqlStoreError> {
        rows.into_iter()
            .map(|row| {
                let (id, entries, created, expires, idle, deadline, owner, since, agent, address) =
                    row;
                let columns = (
                    entries, created, expires, idle, deadline, owner, since, agent, address,
                );
                Ok((self.id(&id)?, self.decode(columns)?))
            })
            .collect()
    }

    /// The sessions `revoke_all` ended, from its rows (each id, if the row's id was text, and
    /// whether it was live: expired rows are deleted too, but were no live session to end).
    /// A row whose id is not a session id (one this store did not write) is deleted with the
    /// rest, since it is the owner's, but no client holds its id: it is left out of the list,
    /// and the call still succeeds (failing it would say no session ended when all had).
    pub(crate) fn ended(&self, rows: impl IntoIterator<Item = (Option<String>, bool)>) -> Revoked {
        let mut foreign = 0_usize;
        let ended = rows
            .into_iter()
            .filter(|(_, live)| *live)
            .filter_map(|(id, _)| {
                let id = id.as_deref().and_then(SessionId::parse);
                foreign += usize::from(id.is_none());
                id
            })
            .collect();
        if foreign > 0 {
            tracing::warn!(
                database = self.database,
                table = %self.table,
                foreign,
                "revoke_all deleted rows whose id is not a session id"
            );
        }
        Revoked::Sessions(ended)
    }

    /// Runs `insert` with fresh ids until one is not taken (`insert` answers whether its row
    /// went in): a taken id is never overwritten, and with random ids never seen.
    pub(crate) async fn create<F, Fut>(&self, insert: F) -> Result<SessionId, SqlStoreError>
    where
        F: Fn(SessionId) -> Fut,
        Fut: Future<Output = Result<bool, SqlStoreError>>,
    {
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::generate();
            if insert(id.clone()).await? {
                return Ok(id);
            }
            tracing::warn!(session = %id, "new session id already taken; trying another");
        }
        Err(SqlStoreError::Collision {
            database: self.database,
            attempts: CREATE_ATTEMPTS,
        })
    }

    fn decode(&self, columns: Columns) -> Result<Record, SqlStoreError> {
        codec::record(columns).map_err(|corrupt| self.corrupt(corrupt.0))
    }

    fn id(&self, id: &str) -> Result<SessionId, SqlStoreError> {
        SessionId::parse(id).ok_or_else(|| self.corrupt("an id that is not a session id".into()))
    }

    fn corrupt(&self, reason: String) -> SqlStoreError {
        SqlStoreError::Corrupt {
            database: self.database,
            table: self.table.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_names_the_live_sessions_it_ended_and_skips_rows_that_are_not_sessions() {
        let rows = Rows {
            database: "test",
            table: "\"sessions\"".to_owned(),
        };
        let live = SessionId::generate();
        let expired = SessionId::generate();
        let ended = rows.ended([
            (Some(live.as_str().to_owned()), true),
            (Some(expired.as_str().to_owned()), false),
            (Some("legacy-session-7".to_owned()), true),
            (None, true),
        ]);
        assert_eq!(ended, Revoked::Sessions(vec![live]));
    }
}
