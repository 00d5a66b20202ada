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
//! - [`security`]: what an attacker can send (forged, replayed and planted cookies, cookies of
//!   other secrets, hostile headers) and must never get (another user's session, a fixed id, a
//!   logged-out session back), checked through a `SessionLayer` over a real store. Every
//!   server-side store in the workspace runs it; run it against yours:
//!
//!   ```
//!   # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
//!   cloakroom_testkit::security(cloakroom::MemoryStore::new()).await?; // your store here
//!   # Ok(()) }
//!   ```
//!
//! - [`Consistency`]: several instances of a store (one per app process, each with its own
//!   connections), random concurrent calls over a handful of sessions, and a check of the
//!   history: nothing is read after its delete returned, no read is older than a write that
//!   returned before it began (within a [`staleness`](Consistency::staleness) you state), no
//!   update is lost, nothing expired is served. [`Faults`] tells it of the sessions a fault
//!   destroyed (a flush, a restart without persistence); calls that fail are indeterminate.
//!
//!   ```
//!   # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
//!   # let url = ();
//!   // With Redis: `vec![RedisStore::builder().url(&url).build().await?, ...]`, one per app.
//!   let instances = vec![cloakroom::MemoryStore::new()];
//!   let report = cloakroom_testkit::Consistency::new()
//!       .duration(std::time::Duration::from_millis(200))
//!       .expiry(std::time::Duration::from_millis(100))
//!       .run(instances)
//!       .await?;
//!   println!("{report}");
//!   # Ok(()) }
//!   ```
//!
//! - [`RedisServer`], [`RedisCluster`], [`RedisSentinel`], [`RedisTls`], [`MemcachedServer`]: real servers on free loopback
//!   ports for a test, stopped when dropped; a missing binary is a [`ServerError`] naming the
//!   Debian package to install. [`Proxy`]: a loopback TCP proxy that can freeze its
//!   connections without closing them, as a partition does.

#![forbid(unsafe_code)]

mod conformance;
mod consistency;
mod history;
mod proxy;
mod security;
mod server;

pub use crate::conformance::{Conformance, Violation, conformance};
pub use crate::consistency::{Consistency, Faults};
pub use crate::history::Report;
pub use crate::proxy::Proxy;
pub use crate::security::security;
pub use crate::server::{
    MemcachedServer, PostgresServer, RedisCluster, RedisSentinel, RedisServer, RedisTls,
    SENTINEL_SERVICE, ServerError,
};
