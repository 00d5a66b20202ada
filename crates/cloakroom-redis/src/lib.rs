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
//! let cookie = SessionCookie::new("__Host-session").secret(std::env::var("SESSION_SECRET")?);
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
//! `CLIENT TRACKING` is retried, from 0.5 s up to every 30 s). The periodic refresh always goes to Redis: for a
//! held session, as the request's update after the handler (one script call, whether or not
//! the handler wrote). A `FLUSHALL` or `FLUSHDB` empties the copy too: the store keeps one
//! more connection per primary that hears it (fred drops the flush's message on RESP3
//! connections). Redis 7 or later: every script call ends by reading its key again, and only
//! from Redis 7 on does a read inside a script make Redis track the key for the caller.
//!
//! # Concurrent requests share commands
//!
//! Under load, a system call per command is most of what a session costs, in the app and in
//! Redis. So the store queues its calls until the requests that are ready at the same time
//! have had their turn (one task yield), then sends them together: the reads and deletes as
//! one pipelined write, and every script call as a single `EVALSHA` with all their keys (at
//! most 128; on a cluster, one per hash slot, since a script's keys must share a slot; with a
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

mod batch;
mod cache;
mod flush;
mod lua;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloakroom::SessionId;
use cloakroom::store::{
    Changes, Entry, FOREVER, FailureKind, Record, SessionStore, StoreError, Update,
};
use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::{RespVersion, Value};

use crate::batch::{Batcher, Operation, Replicas, is_noscript};
use crate::cache::Cache;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "session:";

/// How many sessions the local cache holds when nothing else is configured.
pub const DEFAULT_LOCAL_CACHE: usize = 10_000;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// No URL, client or pool was given to the builder.
    #[error("RedisStore needs a URL, a fred Config, a Client or a Pool")]
    NoConnection,
    /// The URL could not be parsed.
    #[error("invalid Redis URL {url:?}: {source}")]
    Url {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What fred said.
        source: fred::error::Error,
    },
    /// Connecting failed.
    #[error("could not connect to Redis: {0}")]
    Connect(#[source] fred::error::Error),
    /// A command failed (Redis down, timeout, script error).
    #[error("Redis {operation} of {key:?} failed: {source}")]
    Command {
        /// The store operation.
        operation: &'static str,
        /// The Redis key, its session id replaced by the id's short hash (`session:#1a2b3c4d`):
        /// an id is a credential and never reaches a log.
        key: String,
        /// What fred said.
        source: fred::error::Error,
    },
    /// The key holds something this store did not write (another program's data, or a
    /// different type).
    #[error("Redis key {key:?} does not hold a cloakroom session: {reason}")]
    Foreign {
        /// The Redis key, its session id replaced by the id's short hash.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Sessions in Redis. See the [crate documentation](crate).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    batcher: Batcher,
    prefix: String,
    cache: Option<Arc<Cache>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("local_cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`].
#[must_use]
pub struct RedisStoreBuilder {
    source: Option<Source>,
    prefix: String,
    pool_size: usize,
    command_timeout: Duration,
    local_cache: usize,
    replicas: Option<Replicas>,
}

enum Source {
    Url(String),
    Config(Box<Config>),
    Client(Client),
    Pool(Pool),
}

impl RedisStoreBuilder {
    /// Connect with a URL (see the table in the [crate documentation](crate)).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(Source::Url(url.into()));
        self
    }

    /// Connect with a fred `Config` (for options a URL cannot express).
    pub fn config(mut self, config: Config) -> Self {
        self.source = Some(Source::Config(Box::new(config)));
        self
    }

    /// Use a fred `Client` you created and connected yourself.
    pub fn client(mut self, client: Client) -> Self {
        self.source = Some(Source::Client(client));
        self
    }

    /// Use a fred `Pool` you created and connected yourself.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.source = Some(Source::Pool(pool));
        self
    }

    /// The prefix of every session key, `session:` by default. Use a different one per app
    /// when apps share a Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many connections the store opens for a URL or `Config` (4 by default).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a command may take before it fails (2 s by default); applies to URL and
    /// `Config` connections. This bounds how long a request waits when Redis is down.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How many sessions this instance keeps a local copy of ([`DEFAULT_LOCAL_CACHE`] unless set; 0
    /// turns the cache off; when full, a new copy replaces an arbitrary other). Redis's client-side
    /// caching (`CLIENT TRACKING`, RESP3) tells the store when another instance, another program or
    /// expiry changes one, so the copy stays true: reads within the refresh interval cost no round
    /// trip, and a writing request only its write. URL connections speak RESP3; a `Config`,
    /// `Client` or `Pool` you bring must be set to RESP3 for the cache to work (it is off
    /// otherwise, with an `info` event).
    ///
    /// A change made through another instance is seen here once Redis's invalidation
    /// message has arrived, which Redis sends before it answers the instance that made the
    /// change. Once the client has seen the connection drop, nothing is served from the copy
    /// until tracking is on again.
    ///
    /// ```no_run
    /// # async fn store() -> Result<(), cloakroom_redis::RedisStoreError> {
    /// let store = cloakroom_redis::RedisStore::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .local_cache(100_000)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn local_cache(mut self, sessions: usize) -> Self {
        self.local_cache = sessions;
        self
    }

    /// A write counts as done only once `count` replicas have it (`WAIT count timeout` after
    /// every write, on the same connection); fewer within `timeout` fails the call (503).
    /// Off by default. Redis replicates asynchronously, so behind Sentinel, or on a cluster
    /// with replicas, a failover can lose writes the old primary had acknowledged, a logout
    /// included (the session comes back). With one replica per primary and `replicas(1,
    /// ..)`, an acknowledged write is on the replica a failover promotes. It costs a round
    /// trip per batch of writes and the replication delay. `WAIT` holds its connection, so
    /// `timeout` is cut to three quarters of the command timeout.
    ///
    /// ```no_run
    /// # async fn store() -> Result<(), cloakroom_redis::RedisStoreError> {
    /// let store = cloakroom_redis::RedisStore::builder()
    ///     .url("redis-sentinel://10.0.0.1:26379?node=10.0.0.2:26379&sentinelServiceName=mymaster")
    ///     .replicas(1, std::time::Duration::from_millis(500))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn replicas(mut self, count: u32, timeout: Duration) -> Self {
        self.replicas = (count > 0).then_some(Replicas { count, timeout });
        self
    }

    /// Connects (for a URL or `Config`) and returns the store.
    ///
    /// # Errors
    ///
    /// [`RedisStoreError::NoConnection`] without a URL, config, client or pool;
    /// [`RedisStoreError::Url`] for a URL fred cannot parse; [`RedisStoreError::Connect`] if
    /// Redis cannot be reached.
    pub async fn build(self) -> Result<RedisStore, RedisStoreError> {
        let source_timeout = match self.source {
            Some(Source::Url(_) | Source::Config(_)) => Some(self.command_timeout),
            _ => None,
        };
        let clients = match self.source {
            None => return Err(RedisStoreError::NoConnection),
            Some(Source::Client(client)) => vec![client],
            Some(Source::Pool(pool)) => pool.clients().to_vec(),
            Some(Source::Url(url)) => {
                let mut config = Config::from_url(&url).map_err(|source| RedisStoreError::Url {
                    url: redact(&url),
                    source,
                })?;
                config.version = RespVersion::RESP3;
                connect(config, self.pool_size, self.command_timeout).await?
            }
            Some(Source::Config(config)) => {
                connect(*config, self.pool_size, self.command_timeout).await?
            }
        };
        // WAIT holds its connection: it must end well before the commands queued behind it
        // time out (and Redis takes only so large a timeout).
        let command_timeout = match source_timeout {
            Some(timeout) => timeout,
            None => clients
                .first()
                .map(|client| client.perf_config().default_command_timeout)
                .filter(|timeout| !timeout.is_zero())
                .unwrap_or(Duration::from_secs(2)),
        };
        let replicas = self.replicas.map(|replicas| Replicas {
            timeout: replicas
                .timeout
                .min(command_timeout * 3 / 4)
                .max(Duration::from_millis(1)),
            ..replicas
        });
        let cache = Cache::start(self.local_cache, clients.clone()).await;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                batcher: Batcher::new(clients, replicas),
                prefix: self.prefix,
                cache,
            }),
        })
    }
}

async fn connect(
    config: Config,
    pool_size: usize,
    command_timeout: Duration,
) -> Result<Vec<Client>, RedisStoreError> {
    let pool = fred::types::Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = command_timeout;
            // Invalidations queue here between two store calls; losing some empties the cache.
            performance.broadcast_channel_capacity = 1024;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = command_timeout;
            connection.internal_command_timeout = command_timeout;
        })
        // Reconnect forever, backing off to one attempt a second, so the store recovers by
        // itself when Redis comes back.
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 1000, 2))
        .build_pool(pool_size)
        .map_err(RedisStoreError::Connect)?;
    pool.init().await.map_err(RedisStoreError::Connect)?;
    Ok(pool.clients().to_vec())
}

/// The URL with its password, if any, replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl RedisStore {
    /// A builder: give it a URL, config, client or pool.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            source: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            pool_size: 4,
            command_timeout: Duration::from_secs(2),
            local_cache: DEFAULT_LOCAL_CACHE,
            replicas: None,
        }
    }

    /// The Redis key of a session.
    pub fn key(&self, id: &SessionId) -> String {
        format!("{}{}", self.inner.prefix, id.as_str())
    }

    /// The local copy of the live session under `key`, if the cache holds it.
    fn cached(&self, key: &str) -> Option<Record> {
        let cache = self.inner.cache.as_ref()?;
        cache.get(key, SystemTime::now())
    }

    /// A ticket for a call on `key`, when the cache is on.
    fn ticket<'a>(&'a self, key: &'a str, write: bool) -> Option<cache::Ticket<'a>> {
        Some(self.inner.cache.as_ref()?.begin(key, write))
    }

    /// `operation` of the session script on `key`, with the arguments `args` builds, sent once
    /// more after a `NOSCRIPT` (the batch has loaded the script by then).
    async fn script(
        &self,
        operation: Operation,
        key: &str,
        args: impl Fn() -> Vec<Value>,
        ticket: Option<&cache::Ticket<'_>>,
    ) -> Result<Value, RedisStoreError> {
        let mut attempts = 0;
        loop {
            let in_flight = ticket.and_then(cache::Ticket::in_flight);
            let reply = self
                .inner
                .batcher
                .script(operation, key, args(), in_flight)
                .await;
            attempts += 1;
            match reply {
                Err(error) if is_noscript(&error) && attempts < SCRIPT_ATTEMPTS => continue,
                reply => {
                    return reply.map_err(|source| self.failed(operation.name(), key, source));
                }
            }
        }
    }

    /// The error of a failed call. A timeout may mean a connection that stalled without
    /// closing, which delivers no invalidations either: the local copy stops until tracking is
    /// confirmed again.
    fn failed(
        &self,
        operation: &'static str,
        key: &str,
        source: fred::error::Error,
    ) -> RedisStoreError {
        if *source.kind() == fred::error::ErrorKind::Timeout {
            if let Some(cache) = &self.inner.cache {
                cache.suspect();
            }
        }
        failure(operation, key, source)
    }
}

/// Keeps a copy of `record` through `ticket` (when the cache is on and may keep it) and
/// returns it.
fn keep(ticket: Option<cache::Ticket<'_>>, record: Option<Record>) -> Option<Record> {
    if let Some(ticket) = ticket {
        let copy = record.as_ref().filter(|_| ticket.may_keep()).cloned();
        ticket.finish(copy);
    }
    record
}

/// A failed command; `WRONGTYPE` means the key holds another program's data.
fn failure(operation: &'static str, key: &str, source: fred::error::Error) -> RedisStoreError {
    if source.details().contains("WRONGTYPE") {
        RedisStoreError::Foreign {
            key: SessionId::redact(key, ""),
            reason: "it is not a hash".to_owned(),
        }
    } else {
        RedisStoreError::Command {
            operation,
            key: SessionId::redact(key, ""),
            source,
        }
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A duration in milliseconds, at most [`FOREVER`]: the script adds it to Redis's clock in a
/// Lua number, exact below 2^53 (`FOREVER` is about 2^48 ms); beyond, `PEXPIREAT` would get a
/// negative time and delete the key.
fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.min(FOREVER).as_millis()).unwrap_or(u64::MAX)
}

/// An entry as a hash value: `v` or `f` (flash), then the JSON text.
fn encode(entry: &Entry) -> String {
    let tag = if entry.flash { 'f' } else { 'v' };
    let mut value = String::with_capacity(entry.json.len() + 1);
    value.push(tag);
    value.push_str(&entry.json);
    value
}

/// The create script's arguments: idle timeout and deadline, then the hash fields.
fn record_fields(record: &Record) -> Vec<Value> {
    let idle = duration_millis(record.idle_timeout).to_string();
    let deadline = record
        .deadline
        .map(|d| millis(d).to_string())
        .unwrap_or_default();
    let mut fields = Vec::with_capacity(record.entries.len() * 2 + 8);
    fields.push(Value::from(idle.clone()));
    fields.push(Value::from(deadline));
    for (key, entry) in &record.entries {
        fields.push(Value::from(format!(".{key}")));
        fields.push(Value::from(encode(entry)));
    }
    fields.push("@created".into());
    fields.push(Value::from(millis(record.created).to_string()));
    fields.push("@idle".into());
    fields.push(Value::from(
        duration_millis(record.idle_timeout).to_string(),
    ));
    if let Some(deadline) = record.deadline {
        fields.push("@deadline".into());
        fields.push(Value::from(millis(deadline).to_string()));
    }
    fields
}

/// The update script's arguments: a new idle timeout or '', '1' to refresh the expiry or '',
/// '1' to return the session as it now is or '', then field, value pairs where an empty value
/// removes the field.
fn update_args(changes: &Changes, returned: bool) -> Vec<Value> {
    let flag = |on: bool| Value::from_static_str(if on { "1" } else { "" });
    let mut args = Vec::with_capacity(changes.entries.len() * 2 + 3);
    args.push(Value::from(
        changes
            .idle_timeout
            .map(|idle| duration_millis(idle).to_string())
            .unwrap_or_default(),
    ));
    args.push(flag(changes.touch));
    args.push(flag(returned));
    for (name, entry) in &changes.entries {
        args.push(Value::from(format!(".{name}")));
        args.push(Value::from(entry.as_ref().map(encode).unwrap_or_default()));
    }
    args
}

/// A live record from the hash's fields and values, as `HGETALL` returns them (a map) or the
/// load script does (an array of field, value, ...). A record already dead by this clock is
/// none: Redis expires the key on its own clock, to the millisecond, and a dead record is
/// never returned.
fn decode(key: &str, reply: Value) -> Result<Option<Record>, RedisStoreError> {
    let record = decode_any(key, reply)?;
    Ok(record.filter(|record| !record.is_expired(SystemTime::now())))
}

fn decode_any(key: &str, reply: Value) -> Result<Option<Record>, RedisStoreError> {
    match reply {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let count = items.len() / 2;
            let mut items = items.into_iter();
            let pairs = std::iter::from_fn(|| Some((items.next()?, items.next()?)));
            decode_fields(key, count, pairs)
        }
        Value::Map(map) => {
            let map = map.inner();
            let count = map.len();
            let pairs = map
                .into_iter()
                .map(|(field, value)| (Value::Bytes(field.into_bytes()), value));
            decode_fields(key, count, pairs)
        }
        other => Err(foreign(key, format!("Redis returned {:?}", other.kind()))),
    }
}

/// The held copy `record` with `changes` applied and the expiry Redis holds.
fn applied(mut record: Record, changes: &Changes, expires: SystemTime) -> Record {
    record.apply(changes, SystemTime::now());
    record.expires = expires;
    record
}

/// The error for a key that does not hold what the store writes.
fn foreign(key: &str, reason: String) -> RedisStoreError {
    RedisStoreError::Foreign {
        key: SessionId::redact(key, ""),
        reason,
    }
}

/// A record from the `count` fields of its hash; none for a key that does not exist.
fn decode_fields(
    key: &str,
    count: usize,
    fields: impl Iterator<Item = (Value, Value)>,
) -> Result<Option<Record>, RedisStoreError> {
    if count == 0 {
        return Ok(None);
    }
    let foreign = |reason: String| foreign(key, reason);
    let mut entries = HashMap::with_capacity(count);
    let (mut created, mut idle, mut deadline, mut expires) = (None, None, None, None);
    for (field, value) in fields {
        let (Some(field), Some(value)) = (field.as_str(), value.as_str()) else {
            return Err(foreign("a field or value is not UTF-8 text".to_owned()));
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| foreign(format!("field {field:?} does not hold a number")))
        };
        match field.as_ref() {
            "@created" => created = Some(number()?),
            "@idle" => idle = Some(number()?),
            "@deadline" => deadline = Some(number()?),
            "@expires" => expires = Some(number()?),
            _ => {
                let Some(name) = field.strip_prefix('.') else {
                    return Err(foreign(format!("unexpected field {field:?}")));
                };
                let flash = match value.as_bytes().first() {
                    Some(b'v') => false,
                    Some(b'f') => true,
                    // The value is the user's data: not for a log.
                    _ => return Err(foreign(format!("field {field:?} holds no tagged value"))),
                };
                entries.insert(
                    name.to_owned(),
                    Entry {
                        json: value[1..].to_owned(),
                        flash,
                    },
                );
            }
        }
    }
    let (Some(created), Some(idle), Some(expires)) = (created, idle, expires) else {
        return Err(foreign(
            "it lacks the @created, @idle and @expires fields".to_owned(),
        ));
    };
    Ok(Some(Record {
        entries,
        created: from_millis(created),
        expires: from_millis(expires),
        idle_timeout: Duration::from_millis(idle),
        deadline: deadline.map(from_millis),
    }))
}

/// How many times a script call is sent when Redis lacked the script (a restarted or
/// failed-over server; the batch that got `NOSCRIPT` has loaded it since).
const SCRIPT_ATTEMPTS: usize = 2;

/// How many fresh ids `create` tries before giving up; a collision of 192-bit ids does not
/// happen, so a second failure means something else writes our keys.
const CREATE_ATTEMPTS: usize = 3;

/// Data no retry can fix is refused (500): another program's data under a session key;
/// everything else is an outage (503).
impl StoreError for RedisStoreError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Foreign { .. } => FailureKind::Rejected,
            _ => FailureKind::Unavailable,
        }
    }
}

impl SessionStore for RedisStore {
    type Error = RedisStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, RedisStoreError> {
        let key = self.key(id);
        let ticket = self.ticket(&key, false);
        let reply = self
            .script(Operation::Load, &key, Vec::new, ticket.as_ref())
            .await?;
        let record = decode(&key, reply)?;
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
        let record = decode(
            &key,
            reply.map_err(|source| self.failed("read", &key, source))?,
        )?;
        Ok(keep(ticket, record))
    }

    /// The local copy when there is one, without a command or a wait; otherwise the layer
    /// awaits [`read`](Self::read).
    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, RedisStoreError>> {
        self.cached(&self.key(id)).map(|record| Ok(Some(record)))
    }

    async fn create(&self, record: &Record) -> Result<SessionId, RedisStoreError> {
        let mut last_key = String::new();
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::generate();
            let key = self.key(&id);
            match self
                .script(Operation::Create, &key, || record_fields(record), None)
                .await?
            {
                Value::Integer(0) => {
                    tracing::warn!(session = %id, "new session id already taken; trying another");
                    last_key = key;
                }
                _ => return Ok(id),
            }
        }
        Err(RedisStoreError::Foreign {
            key: SessionId::redact(&last_key, ""),
            reason: format!("{CREATE_ATTEMPTS} fresh random ids were all taken"),
        })
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
        let returned = base.is_none() && ticket.as_ref().is_some_and(cache::Ticket::may_keep);
        let reply = self
            .script(
                Operation::Update,
                &key,
                || update_args(changes, returned),
                ticket.as_ref(),
            )
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
                let expires = reply.as_str().and_then(|text| text.parse::<u64>().ok());
                if let (Some(ticket), Some(record), Some(expires)) = (ticket, base, expires) {
                    ticket.finish(Some(applied(record, changes, from_millis(expires))));
                }
                Ok(Update::Applied)
            }
            fields => {
                // The write is done whatever the copy becomes: a reply that cannot be read
                // (another program raced us to the key) is simply not kept.
                keep(ticket, decode(&key, fields).ok().flatten());
                Ok(Update::Applied)
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), RedisStoreError> {
        let key = self.key(id);
        let ticket = self.ticket(&key, true);
        let in_flight = ticket.as_ref().and_then(cache::Ticket::in_flight);
        let reply = self.inner.batcher.delete(&key, in_flight).await;
        drop(ticket);
        reply
            .map(drop)
            .map_err(|source| self.failed("delete", &key, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn entries_encode_with_a_flash_tag() {
        let plain = Entry {
            json: "1".into(),
            flash: false,
        };
        let flash = Entry {
            json: "\"hi\"".into(),
            flash: true,
        };
        assert_eq!(encode(&plain), "v1");
        assert_eq!(encode(&flash), "f\"hi\"");
    }

    #[test]
    fn a_hash_that_is_not_ours_is_a_clear_error_naming_the_key() {
        let reply = Value::Array(vec!["name".into(), "bob".into()]);
        let error = decode("session:abc", reply).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "Redis key \"session:abc\" does not hold a cloakroom session: unexpected field \"name\""
            )
        );
    }
}
