//! What both builders take beside where the database is: the table, the size of the pool
//! they make and how long a call waits for it, and the sweeper.

use std::time::Duration;

use crate::DEFAULT_TABLE;
use crate::sweep::Sweep;

/// The settings of [`setters!`].
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) table: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) sweep: Sweep,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            sweep: Sweep::default(),
        }
    }
}

/// The setters of [`Settings`], for a builder with a `settings` field: `$store` is the
/// store's type (for links), `$schema` what the `schema.` of a table name is, `$made` the
/// sources whose pool the store makes itself.
macro_rules! setters {
    ($store:literal, $schema:literal, $made:literal) => {
        #[doc = concat!(
            "The table: `sessions` by default, or `schema.table` (", $schema, "). Only ",
            "identifiers are accepted (`[A-Za-z_][A-Za-z0-9_]*`); anything else is an error ",
            "of [`build`](Self::build) naming it. Names are quoted, so they are case-sensitive."
        )]
        pub fn table(mut self, table: impl Into<String>) -> Self {
            self.settings.table = table.into();
            self
        }

        #[doc = concat!("The most connections of the pool made from ", $made, " (default 10).")]
        pub fn max_connections(mut self, max: u32) -> Self {
            self.settings.max_connections = max.max(1);
            self
        }

        #[doc = concat!(
            "How long a call waits for a connection of the pool made from ", $made,
            " before it fails (default 5 s): while the database is unreachable, requests get ",
            "the store-error response after this long."
        )]
        pub fn acquire_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.acquire_timeout = timeout;
            self
        }

        #[doc = concat!(
            "How often expired rows are deleted (default every 5 minutes); `None` for no ",
            "sweeper (call [`", $store, "::sweep`] from a job of your own)."
        )]
        pub fn sweep_interval(mut self, interval: Option<std::time::Duration>) -> Self {
            self.settings.sweep.interval =
                interval.map(|i| i.max(std::time::Duration::from_millis(1)));
            self
        }

        /// Rows deleted per statement of a sweep (default 1,000).
        pub fn sweep_batch(mut self, rows: u32) -> Self {
            self.settings.sweep.batch = rows.max(1);
            self
        }
    };
}
pub(crate) use setters;
