//! A Redis session store for [cloakroom](https://docs.rs/cloakroom), on
//! [fred](https://docs.rs/fred).
//!
//! For services that run on more than one instance: every instance sees the same sessions.
//!
//! ```no_run
//! use cloakroom::{SessionCookie, SessionLayer};
//! use cloakroom_redis::RedisStore;
//!
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::builder()
//!     .url("redis://127.0.0.1:6379")
//!     .prefix("session:")
//!     .build()
//!     .await?;
//! let cookie = SessionCookie::new("__Host-session").secrets_from_env("SESSION_SECRETS")?;
//! let layer = SessionLayer::new(cookie, store)?;
//! # Ok(()) }
//! ```
//!
//! # One round trip per request
//!
//! Each session is one Redis hash, one field per session key. Loading a session and refreshing
//! its TTL is one call of the session script, which the layer asks for once per refresh
//! interval (60 s by default, see [`SessionLayer::refresh_interval`]); in between, reading it
//! is one plain `HGETALL`, or nothing when the local copy below has it. Writing a request's
//! changes is one script call that sets and deletes only the fields that request changed; a
//! new session is one script call that writes only if the key is free (NX). The script is
//! loaded on first use and again after a `NOSCRIPT` (a restarted or failed-over server).
//! Deleting is one `DEL`.
//!
//! # A local copy, kept true by Redis
//!
//! The store keeps the sessions it has read in memory ([`RedisStoreBuilder::local_cache`],
//! 10,000 by default; when it is full, a new copy replaces an arbitrary other). With RESP3,
//! `CLIENT TRACKING` (NOLOOP) makes Redis push an invalidation when another connection changes
//! or deletes one of them, or when it expires, so a read within the refresh interval is served
//! without a command, and a writing request costs only its update (the new copy is the held one
//! with the request's changes, or the session as the script sends it back when none was held).
//! A reply is kept only when nothing could have made it stale on the way: no invalidation of
//! that key and no write of it from this instance since the call was sent, nor in flight. A
//! change made through another instance is seen here once its invalidation has arrived (Redis
//! sends it before it answers that instance; the tests hold every instance to 100 ms after the
//! other's call returned). A connection error, a command timeout or an unanswered heartbeat
//! `PING` (every connection, once a second: a stalled connection delivers no invalidations)
//! drops the copy; after a reconnection nothing is kept until tracking is on again (a refused
//! `CLIENT TRACKING` is retried, from 0.5 s up to every 30 s). The periodic refresh always
//! goes to Redis: for a held session, as the request's update after the handler (one script
//! call, whether or not the handler wrote). A `FLUSHALL` or `FLUSHDB` empties the copy too:
//! the store keeps one more connection per primary that hears it (fred drops the flush's
//! message on RESP3 connections). Redis 7 or later: every script call but a create ends by
//! reading its key again (a new session is not tracked until it is read), and only from
//! Redis 7 on does a read inside a script make Redis track the key for the caller.
//!
//! # Concurrent requests share commands
//!
//! Under load, a system call per command is most of what a session costs, in the app and in
//! Redis. So the store queues its calls until the requests that are ready at the same time
//! have had their turn (one task yield), then sends them together: the reads and deletes as
//! one pipelined write, and every script call as a single `EVALSHA` with all their keys (at
//! most 128, or 16 when the local copy is on and Redis is older than 7.2, which tracks every key
//! of a script at each read inside it, a cost that grows with the square of the keys; on a
//! cluster, one per hash slot, since a script's keys must share a slot; with a
//! pool, one per connection, since a session's calls keep to one connection). Each key's
//! result is its own: a key that holds another program's data fails only its own call.
//! With 16 concurrent users this about halves Redis's CPU time per request; a lone request
//! pays only the yield.
//!
//! # No lost updates
//!
//! Because only the changed fields are written, concurrent requests of one session that change
//! different keys all survive, and because the update script writes nothing when the key does
//! not exist, a request that finishes after logout cannot bring the session back.
//!
//! # A user's sessions
//!
//! [`OwnerIndex`](cloakroom::OwnerIndex) (listing and revoking the sessions of an owner,
//! through [`Owners`](cloakroom::Owners)): one sorted set per owner,
//! [`owner_key`](RedisStore::owner_key) (`<prefix>owner:<name>`), of the ids of its
//! sessions. A login costs, after its create script, one `ZADD`, and a prune of up to 64 of
//! the set's expired ids (`ZRANGEBYSCORE`, a `PTTL` each, `ZREM`); a list, a `ZRANGE` and a
//! read of each session (from the local copy when it has them); a revoke, a `DEL` of each
//! session (invalidating every instance's copy) and a `ZREM`. Other requests cost nothing
//! more. The set has no TTL (a session in use outlives any TTL it could be given), so use a
//! `maxmemory-policy` that never evicts keys without one: `noeviction` (the default) or a
//! `volatile-*` policy; under `allkeys-*` Redis could evict a set and a "log out everywhere"
//! would miss its sessions.
//!
//! # Expiry
//!
//! The session's idle timeout is the layer's ([`SessionLayer::idle_timeout`], or the
//! session's own from [`Session::set_idle_timeout`]); it is stored in the hash and every
//! refresh moves the key's TTL (`PEXPIREAT`, from Redis's clock) to `min(now + idle,
//! deadline)`. The layer re-sends the cookie with `Max-Age` computed from the same values in
//! the same request, so the two agree: there is no separate store TTL to keep in step.
//!
//! [`SessionLayer::idle_timeout`]: cloakroom::SessionLayer::idle_timeout
//! [`SessionLayer::refresh_interval`]: cloakroom::SessionLayer::refresh_interval
//! [`Session::set_idle_timeout`]: cloakroom::Session::set_idle_timeout
//!
//! # Connecting
//!
//! | URL | topology |
//! | --- | --- |
//! | `redis://user:pass@host:6379/0` | one server |
//! | `redis-cluster://host1:6379?node=host2:6379&node=host3:6379` | Redis Cluster |
//! | `redis-sentinel://host:26379?node=host2:26379&sentinelServiceName=mymaster` | behind Sentinel |
//! | `rediss://host:6380` (and `rediss-cluster://`, `rediss-sentinel://`) | TLS, with the `tls` feature |
//!
//! Or hand over a fred [`Client`] or [`Pool`] you configured yourself
//! ([`RedisStoreBuilder::client`], [`RedisStoreBuilder::pool`]).
//!
//! [`Client`]: fred::clients::Client
//! [`Pool`]: fred::clients::Pool
//!
//! # When Redis is down
//!
//! Every call fails after the [command timeout](RedisStoreBuilder::command_timeout) (2 s by
//! default) and the layer answers with its store-error response (503 by default; a read in the
//! instant before the client has seen the connection drop may still come from the local
//! copy): requests are never served as if the user were logged out. A call that timed out may
//! still apply: a paused or slow Redis runs the command it has already been sent once it
//! answers again, so treat the error as "unknown" (retry a logout). Script calls are sent once
//! (fred would re-send one whose connection closed, and a second run could hide the first's
//! answer), so a call whose connection closes fails, and on a cluster a redirected script call
//! fails while slots move. fred reconnects in the background, so requests succeed again as soon
//! as Redis is back, without a restart.
//!
//! # Several instances
//!
//! `cloakroom_testkit::Consistency` runs three stores (as three app processes) through random
//! concurrent calls with killed connections, flushes, pauses and restarts, with and without the
//! copy, standalone and on a cluster: nothing is read after its delete returned, no read is
//! older than a write that returned before it (by more than 100 ms with the copy, at all
//! without), no update is lost, nothing expired is served.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// One job per module: `builder` configures and connects; `codec` lays a record out as a hash
// and reads it back; `lua` is the script and what its replies mean; `batch` sends the calls
// of concurrent requests together and re-sends after a `NOSCRIPT`; `replicas` waits for
// replicas after writes; `cache` and `flush` keep the local copy true; `error` is what a call
// reports. This file is the store itself: each call is a key, a ticket of the local copy, one
// batched command, and the codec.

mod batch;
mod builder;
mod cache;
mod codec;
mod error;
mod flush;
mod lua;
mod owners;
mod replicas;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use cloakroom::SessionId;
use cloakroom::store::{Changes, Record, SessionStore, Update};
use fred::types::Value;

pub use crate::builder::{DEFAULT_LOCAL_CACHE, DEFAULT_PREFIX, RedisStoreBuilder};
pub use crate::cache::LocalCacheStats;
pub use crate::error::RedisStoreError;

use crate::batch::{Batcher, Failure};
use crate::cache::{Cache, Ticket};
use crate::lua::Operation;

/// How many fresh ids `create` tries before giving up; a collision of 192-bit ids does not
/// happen, so a second failure means something else writes our keys.
const CREATE_ATTEMPTS: usize = 3;

/// Sessions in Redis. See the [crate documentation](crate).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    batcher: Batcher,
    prefix: String,
    cache: Option<Arc<Cache>>,
    /// The server's `maxmemory-policy` when it may evict keys without a TTL (`allkeys-*`),
    /// which refuses what needs the owner index (see [`RedisStoreError::EvictingPolicy`]).
    evicting: Option<String>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("local_cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder: give it a URL, config, client or pool.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// The Redis key of a session.
    pub fn key(&self, id: &SessionId) -> String {
        id.prefixed(&self.inner.prefix)
    }

    /// What the local copy has served and dropped so far, or `None` when it is off
    /// ([`local_cache(0)`](RedisStoreBuilder::local_cache), RESP2, Redis before 7, or
    /// `CLIENT TRACKING` refused at start-up). Each clone of the store shares one copy and
    /// one set of counters.
    ///
    /// ```no_run
    /// # async fn report(store: cloakroom_redis::RedisStore) {
    /// if let Some(stats) = store.local_cache_stats() {
    ///     let reads = (stats.hits + stats.misses).max(1);
    ///     tracing::info!(
    ///         hit_rate = stats.hits as f64 / reads as f64,
    ///         held = stats.held,
    ///         evicted = stats.evicted,
    ///         "session cache"
    ///     );
    /// }
    /// # }
    /// ```
    pub fn local_cache_stats(&self) -> Option<LocalCacheStats> {
        Some(self.inner.cache.as_ref()?.stats())
    }

    /// The store the builder has connected: calls go out through `batcher`, under `prefix`,
    /// with the local copy `cache` if it is on.
    pub(crate) fn new(
        batcher: Batcher,
        prefix: String,
        cache: Option<Arc<Cache>>,
        evicting: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                batcher,
                prefix,
                cache,
                evicting,
            }),
        }
    }

    /// The local copy of the live session under `key`, if the cache holds it.
    fn cached(&self, key: &str) -> Option<Record> {
        let cache = self.inner.cache.as_ref()?;
        cache.get(key, SystemTime::now())
    }

    /// A ticket for a call on `key`, when the cache is on.
    fn ticket<'a>(&'a self, key: &'a str, write: bool) -> Option<Ticket<'a>> {
        Some(self.inner.cache.as_ref()?.begin(key, write))
    }

    /// `operation` of the session script on `key`, with the arguments `args` builds (more than
    /// once after a `NOSCRIPT`, see [`Batcher::script`]).
    async fn script(
        &self,
        operation: Operation,
        key: &str,
        args: impl Fn() -> Vec<Value>,
        ticket: Option<&Ticket<'_>>,
    ) -> Result<Value, RedisStoreError> {
        let in_flight = ticket.and_then(Ticket::in_flight);
        self.inner
            .batcher
            .script(operation, key, args, in_flight)
            .await
            .map_err(|failure| self.failed(operation.name(), key, failure))
    }

    /// The error of a failed call. A timeout may mean a connection that stalled without
    /// closing, which delivers no invalidations either: the local copy stops until tracking is
    /// confirmed again.
    fn failed(&self, operation: &'static str, key: &str, failure: Failure) -> RedisStoreError {
        if failure.is_timeout() {
            if let Some(cache) = &self.inner.cache {
                cache.suspect();
            }
        }
        RedisStoreError::failed(operation, key, failure)
    }
}

/// Keeps a copy of `record` through `ticket` (when the cache is on and may keep it) and
/// returns it.
fn keep(ticket: Option<Ticket<'_>>, record: Option<Record>) -> Option<Record> {
    if let Some(ticket) = ticket {
        let copy = record.as_ref().filter(|_| ticket.may_keep()).cloned();
        ticket.finish(copy);
    }
    record
}

/// The held copy `record` with `changes` applied and the expiry Redis holds.
fn applied(mut record: Record, changes: &Changes, expires: SystemTime) -> Record {
    record.apply(changes, SystemTime::now());
    record.expires = expires;
    record
}

impl SessionStore for RedisStore {
    type Error = RedisStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, RedisStoreError> {
        let key = self.key(id);
        let ticket = self.ticket(&key, false);
        let reply = self
            .script(Operation::Load, &key, Vec::new, ticket.as_ref())
            .await?;
        let record = codec::decode(&key, reply, SystemTime::now())?;
        Ok(keep(ticket, record))
    }

    /// The local copy if there is one; otherwise one plain `HGETALL` (Redis drops the key when
    /// it expires, so a key that exists is live).
    async fn read(&self, id: &SessionId) -> Result<Option<Record>, RedisStoreError> {
        let key = self.key(id);
        if let Some(record) = self.cached(&key) {
            return Ok(Some(record));
        }
        let ticket = self.ticket(&key, false);
        let reply = self.inner.batcher.read(&key).await;
        let reply = reply.map_err(|failure| self.failed("read", &key, failure))?;
        let record = codec::decode(&key, reply, SystemTime::now())?;
        Ok(keep(ticket, record))
    }

    /// The local copy when there is one, without a command or a wait; otherwise the layer
    /// awaits [`read`](Self::read).
    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, RedisStoreError>> {
        self.cached(&self.key(id)).map(|record| Ok(Some(record)))
    }

    async fn create(&self, record: &Record) -> Result<SessionId, RedisStoreError> {
        if record.owner.is_some() {
            self.owner_index_kept()?;
        }
        let mut last_key = String::new();
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::generate();
            let key = self.key(&id);
            let args = || codec::record_fields(record);
            match self.script(Operation::Create, &key, args, None).await? {
                Value::Integer(0) => {
                    tracing::warn!(session = %id, "new session id already taken; trying another");
                    last_key = key;
                }
                _ => {
                    if let Some(owner) = &record.owner {
                        self.index(&owner.name, &id, record.expires).await?;
                    }
                    return Ok(id);
                }
            }
        }
        let reason = format!("{CREATE_ATTEMPTS} fresh random ids were all taken");
        Err(RedisStoreError::foreign(&last_key, reason))
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, RedisStoreError> {
        let key = self.key(id);
        let mut ticket = self.ticket(&key, true);
        // When the idle timeout stays, the copy this write starts from plus its changes (and
        // the new expiry, if the script moved it) is the new copy, and the script need not
        // send the session back.
        let base = match &mut ticket {
            Some(ticket) if changes.idle_timeout.is_none() => ticket.take_base(),
            _ => None,
        };
        let returned = base.is_none() && ticket.as_ref().is_some_and(Ticket::may_keep);
        let args = || codec::update_args(changes, returned);
        let reply = self
            .script(Operation::Update, &key, args, ticket.as_ref())
            .await?;
        match reply {
            Value::Integer(0) | Value::Null => Ok(Update::Missing),
            Value::Integer(_) => {
                if let (Some(ticket), Some(record)) = (ticket, base) {
                    let expires = record.expires;
                    ticket.finish(Some(applied(record, changes, expires)));
                }
                Ok(Update::Applied)
            }
            Value::String(_) | Value::Bytes(_) => {
                let expires = codec::decode_expires(&reply);
                if let (Some(ticket), Some(record), Some(expires)) = (ticket, base, expires) {
                    ticket.finish(Some(applied(record, changes, expires)));
                }
                Ok(Update::Applied)
            }
            fields => {
                // The write is done whatever the copy becomes: a reply that cannot be read
                // (another program raced us to the key) is simply not kept.
                let record = codec::decode(&key, fields, SystemTime::now());
                keep(ticket, record.ok().flatten());
                Ok(Update::Applied)
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), RedisStoreError> {
        let key = self.key(id);
        let ticket = self.ticket(&key, true);
        let in_flight = ticket.as_ref().and_then(Ticket::in_flight);
        let reply = self.inner.batcher.delete(&key, in_flight).await;
        drop(ticket);
        reply
            .map(drop)
            .map_err(|failure| self.failed("delete", &key, failure))
    }
}
