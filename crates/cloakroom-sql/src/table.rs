//! The table name: checked once, when the store is built, and quoted into every statement.
//!
//! A table name cannot be a bound parameter in SQL, so it is spliced into the statements'
//! text. Only plain identifiers are accepted (`[A-Za-z_][A-Za-z0-9_]*`, with one optional
//! `schema.` prefix), so nothing a name holds can change what a statement does; each part is
//! quoted too, so a name that is a keyword (`user`, `order`) still works.

use crate::SqlStoreError;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); SQLite has no limit, and
/// takes the same one here so a name means one thing on both.
const MAX_IDENTIFIER: usize = 63;

/// A checked table name, `table` or `schema.table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    schema: Option<String>,
    name: String,
}

impl Table {
    /// Checks `value`; an error names it.
    pub(crate) fn parse(value: &str) -> Result<Self, SqlStoreError> {
        let invalid = |why: &str| {
            SqlStoreError::Config(format!(
                "table name {value:?} is not accepted: {why} (identifiers are [A-Za-z_][A-Za-z0-9_]* of at most {MAX_IDENTIFIER} bytes, with one optional `schema.` prefix)"
            ))
        };
        let mut parts = value.split('.');
        let (schema, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => (None, name),
            (Some(schema), Some(name), None) => (Some(schema), name),
            _ => return Err(invalid("more than one `.`")),
        };
        for part in schema.iter().chain([&name]) {
            if !is_identifier(part) {
                return Err(invalid(&format!("{part:?} is not an identifier")));
            }
        }
        // The indexes are named after the table with a suffix, within the same limit.
        if name.len() + INDEX_SUFFIX_LEN > MAX_IDENTIFIER {
            return Err(invalid("the name is too long for its indexes' names"));
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The table, quoted: `"sessions"` or `"app"."sessions"`.
    pub(crate) fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }

    /// The name of one of the table's indexes, quoted (an index lives in its table's schema,
    /// so PostgreSQL takes it unqualified at `CREATE INDEX`).
    pub(crate) fn index(&self, suffix: &str) -> String {
        format!("\"{}_{suffix}\"", self.name)
    }

    /// The index name for SQLite, where an index is qualified by its schema (an attached
    /// database) at `CREATE INDEX`, and the table is not.
    pub(crate) fn sqlite_index(&self, suffix: &str) -> (String, String) {
        let index = match &self.schema {
            Some(schema) => format!("\"{schema}\".{}", self.index(suffix)),
            None => self.index(suffix),
        };
        (index, format!("\"{}\"", self.name))
    }
}

/// The longest suffix of an index name: `_expires_idx`.
const INDEX_SUFFIX_LEN: usize = "_expires_idx".len();

fn is_identifier(part: &str) -> bool {
    let mut bytes = part.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && part.len() <= MAX_IDENTIFIER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_one_schema_are_accepted_and_quoted() {
        let plain = Table::parse("sessions").map(|t| t.quoted());
        assert_eq!(plain.ok().as_deref(), Some("\"sessions\""));
        let qualified = Table::parse("app_1.User_Sessions").map(|t| t.quoted());
        assert_eq!(
            qualified.ok().as_deref(),
            Some("\"app_1\".\"User_Sessions\"")
        );
        assert!(Table::parse("_x").is_ok());
    }

    #[test]
    fn anything_else_is_refused_naming_the_value() {
        for hostile in [
            "",
            "sessions; DROP TABLE users",
            "sessions\"; --",
            "a.b.c",
            ".sessions",
            "sessions.",
            "1sessions",
            "séssions",
            "sessions\0",
            "ses sions",
            "sessions--",
            "\"sessions\"",
            &"x".repeat(60),
        ] {
            let error = Table::parse(hostile).err().map(|e| e.to_string());
            let message = error.unwrap_or_default();
            assert!(
                message.contains(&format!("{hostile:?}")),
                "{hostile:?} was accepted or not named: {message}"
            );
        }
    }
}
