//! Testing tools for cloakroom stores.
//!
//! - [`conformance`] / [`Conformance`]: every promise of the
//!   [`SessionStore`](cloakroom::SessionStore) contract, checked against a real store. Every
//!   store in the workspace runs it; run it against your own store too:
//!
//!   ```
//!   # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
//!   let my_store = cloakroom::MemoryStore::new(); // your store here
//!   // `conformance(my_store)` uses 1-second ticks, safe for any store; in-process
//!   // stores can go faster.
//!   cloakroom_testkit::Conformance::new()
//!       .tick(std::time::Duration::from_millis(20))
//!       .run(my_store)
//!       .await?;
//!   # Ok(()) }
//!   ```
//!
//! - [`RedisServer`], [`RedisCluster`], [`MemcachedServer`]: real servers on free loopback
//!   ports for a test, stopped when dropped; a missing binary is a [`ServerError`] naming the
//!   Debian package to install.

#![forbid(unsafe_code)]

mod conformance;
mod server;

pub use crate::conformance::{Conformance, Violation, conformance};
pub use crate::server::{MemcachedServer, RedisCluster, RedisServer, ServerError};
