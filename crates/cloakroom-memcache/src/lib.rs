//! A memcached session store for [cloakroom](https://docs.rs/cloakroom), for apps that run on
//! several servers and already use memcached.
//!
//! ```no_run
//! use std::time::Duration;
//! use cloakroom::{SessionCookie, SessionLayer};
//! use cloakroom_memcache::MemcacheStore;
//!
//! # fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let week = Duration::from_secs(7 * 86400);
//! let store = MemcacheStore::builder()
//!     .servers(["10.0.0.1:11211", "10.0.0.2:11211"])
//!     .ttl(week)
//!     .build()?;
//! let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
//! let layer = SessionLayer::new(cookie, store)?.idle_timeout(week);
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **Client**: [async-memcached](https://docs.rs/async-memcached) (Shopify's maintained
//!   tokio client) speaking the meta protocol, with a small pool of connections per server.
//! - **Several servers**: keys are spread over the servers by consistent hashing (160 points
//!   per server on a SHA-256 ring), so adding a server moves only about 1/n of the sessions.
//! - **Read + touch in one round trip**: `mg <key> v c f T<ttl>` returns the session and
//!   refreshes its expiry with the store's [`ttl`](MemcacheStoreBuilder::ttl). Set that to the
//!   layer's idle timeout; a session with its own (a "remember me" of 60 days) or near its
//!   absolute deadline costs one more touch. Expiries over 30 days are sent as absolute Unix
//!   times, as memcached requires.
//! - **No lost updates**: memcached stores whole values, so an update reads the session with
//!   its CAS token, applies only this request's changes and writes with `C<cas>`, retrying on
//!   a conflict. A deleted session is not recreated (the CAS write of a missing key fails).
//! - **Creation never overwrites**: new sessions are written in add mode (`ME`).
//! - **Limits**: keys are checked against memcached's rules (at most 250 bytes, no spaces or
//!   control characters) when the store is built; a session larger than the item size limit
//!   ([`max_item_size`](MemcacheStoreBuilder::max_item_size), 1 MiB like memcached's default
//!   `-I`) is a [`MemcacheStoreError::TooLarge`] naming the size, never a silent drop.
//! - **A user's sessions**: "log out everywhere" ([`Owners`](cloakroom::Owners)) works, and
//!   fails closed under eviction: each owner has a generation in an item of its own, a
//!   session is served only while its owner's item holds the generation of its login, and a
//!   revoke writes a new one. Reading a session with an owner costs one more `mg`. Listing an
//!   owner's sessions cannot be exact when any item may be evicted, so it is
//!   [`MemcacheStoreError::Unsupported`] (see the `owners` module in the source).
//! - **When memcached is down** a call fails after the
//!   [timeout](MemcacheStoreBuilder::timeout) and the layer answers 503; connections are made
//!   again on the next request, so service resumes as soon as memcached is back.

#![forbid(unsafe_code)]

mod owners;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_memcached::{Client, Error as McError, MetaProtocol, MetaValue, Status};
use cloakroom::SessionId;
use cloakroom::store::{
    Changes, FOREVER, FailureKind, Record, SessionStore, StoreError, Update, later,
};
use serde::{Deserialize, Serialize};

/// memcached's limit on key length.
const MAX_KEY_LEN: usize = 250;
/// Expiries longer than this are read by memcached as absolute Unix times.
const RELATIVE_TTL_LIMIT: u64 = 30 * 24 * 3600;
/// Points per server on the hash ring.
const POINTS_PER_SERVER: usize = 160;
/// CAS attempts before an update gives up.
const CAS_ATTEMPTS: usize = 1000;
/// An update's rounds stop after this many call timeouts, however many attempts are left:
/// bounded, with room for a session that hundreds of requests write at once.
const UPDATE_TIMEOUTS: u32 = 10;
/// The on-memcached format version.
const FORMAT: u32 = 1;

/// What went wrong talking to memcached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcacheStoreError {
    /// The configuration is unusable.
    #[error("invalid memcached store configuration: {0}")]
    Config(String),
    /// A server could not be reached or answered with an error.
    #[error("memcached {server} failed during {operation}: {source}")]
    Server {
        /// `host:port`.
        server: String,
        /// The store operation.
        operation: &'static str,
        /// What the client said.
        source: McError,
    },
    /// A server did not answer in time.
    #[error("memcached {server} did not answer {operation} within {timeout:?}")]
    Timeout {
        /// `host:port`.
        server: String,
        /// The store operation.
        operation: &'static str,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The session is larger than memcached stores.
    #[error(
        "session {key:?} is {size} bytes, more than memcached's item size limit of {limit} bytes"
    )]
    TooLarge {
        /// The memcached key, its session id replaced by the id's short hash.
        key: String,
        /// The encoded session size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The key holds something this store did not write.
    #[error("memcached key {key:?} does not hold a cloakroom session: {reason}")]
    Corrupt {
        /// The memcached key, its session id replaced by the id's short hash.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// What memcached cannot do exactly, since it may evict any item: listing an owner's
    /// sessions (and so revoking one by its handle). Revoking all of them works.
    #[error(
        "memcached cannot do this: {operation} (it may evict any item, so a list would not be exact); revoke_all and revoke_others work"
    )]
    Unsupported {
        /// What was asked.
        operation: &'static str,
    },
    /// Another revoke of the same owner held its lock for longer than a revoke takes (it was
    /// cut short); retrying after a while helps.
    #[error("another revoke of this owner held its lock for {waited:?}")]
    Locked {
        /// How long this one waited.
        waited: Duration,
    },
    /// Concurrent writers kept winning the CAS race.
    #[error("session {key:?} changed under {attempts} consecutive update attempts")]
    Contention {
        /// The memcached key, its session id replaced by the id's short hash.
        key: String,
        /// How many times it tried.
        attempts: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct Stored {
    cloakroom_memcache: u32,
    record: Record,
    /// For a session with an owner, the owner's generation it belongs to (see [`owners`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
}

/// One memcached server and its idle connections.
struct Server {
    addr: String,
    idle: Mutex<Vec<Client>>,
}

/// Sessions in memcached. See the [crate documentation](crate).
#[derive(Clone)]
pub struct MemcacheStore {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Server>,
    /// `(point, server index)`, sorted by point.
    ring: Vec<(u32, usize)>,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    max_item_size: usize,
    max_idle_connections: usize,
}

impl fmt::Debug for MemcacheStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&str> = self.inner.servers.iter().map(|s| s.addr.as_str()).collect();
        f.debug_struct("MemcacheStore")
            .field("servers", &servers)
            .field("prefix", &self.inner.prefix)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MemcacheStore`].
#[derive(Debug)]
#[must_use]
pub struct MemcacheStoreBuilder {
    servers: Vec<String>,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    max_item_size: usize,
    max_idle_connections: usize,
}

impl MemcacheStoreBuilder {
    /// The servers, as `host:port` (or `memcache://host:port`).
    pub fn servers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, servers: I) -> Self {
        self.servers = servers
            .into_iter()
            .map(|server| {
                let server: String = server.into();
                server
                    .strip_prefix("memcache://")
                    .map(str::to_owned)
                    .unwrap_or(server)
            })
            .collect();
        self
    }

    /// Servers from one URL: `memcache://host1:11211,host2:11211`.
    pub fn url(self, url: &str) -> Self {
        let list = url.strip_prefix("memcache://").unwrap_or(url);
        self.servers(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        )
    }

    /// The key prefix, `session:` by default.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The TTL a load refreshes in its single round trip; 604800 s (7 days) by default. Set it
    /// to the layer's idle timeout.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long one call may take (2 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest session memcached stores, 1 MiB by default (memcached's `-I`).
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = bytes;
        self
    }

    /// Idle connections kept per server (16 by default).
    pub fn max_idle_connections(mut self, connections: usize) -> Self {
        self.max_idle_connections = connections;
        self
    }

    /// The store. Connections are made on first use.
    ///
    /// # Errors
    ///
    /// [`MemcacheStoreError::Config`] without servers, or with a prefix that would make keys
    /// memcached rejects (spaces, control characters, longer than 250 bytes with an id).
    pub fn build(self) -> Result<MemcacheStore, MemcacheStoreError> {
        if self.servers.is_empty() {
            return Err(MemcacheStoreError::Config(
                "no memcached servers given".to_owned(),
            ));
        }
        // A session's key is the prefix and an id of 32 characters; an owner's revoke lock,
        // the prefix, `owner:`, 64 hex digits and `:lock`.
        let longest_key = self.prefix.len() + 75;
        if longest_key > MAX_KEY_LEN {
            return Err(MemcacheStoreError::Config(format!(
                "prefix {:?} makes keys of {longest_key} bytes; memcached allows {MAX_KEY_LEN}",
                self.prefix
            )));
        }
        if self.prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(MemcacheStoreError::Config(format!(
                "prefix {:?} has spaces or control characters, which memcached keys cannot",
                self.prefix
            )));
        }
        let mut ring = Vec::with_capacity(self.servers.len() * POINTS_PER_SERVER);
        for (index, server) in self.servers.iter().enumerate() {
            for point in 0..POINTS_PER_SERVER {
                ring.push((hash(format!("{server}-{point}").as_bytes()), index));
            }
        }
        ring.sort_unstable();
        Ok(MemcacheStore {
            inner: Arc::new(Inner {
                servers: self
                    .servers
                    .into_iter()
                    .map(|addr| Server {
                        addr,
                        idle: Mutex::new(Vec::new()),
                    })
                    .collect(),
                ring,
                prefix: self.prefix,
                ttl: self.ttl,
                timeout: self.timeout,
                max_item_size: self.max_item_size,
                max_idle_connections: self.max_idle_connections,
            }),
        })
    }
}

fn hash(bytes: &[u8]) -> u32 {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let d = digest.as_ref();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The expiry argument for memcached: seconds, or an absolute Unix time beyond 30 days, at
/// most the last second memcached's 32-bit times hold (January 2038): a longer session is
/// kept that long.
fn ttl_arg(ttl: Duration) -> String {
    let seconds = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    if seconds > RELATIVE_TTL_LIMIT {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        format!("T{}", now.saturating_add(seconds).min(LAST_EXPTIME))
    } else {
        format!("T{}", seconds.max(1))
    }
}

/// The latest absolute expiry memcached takes (`i32::MAX`, 2038-01-19).
const LAST_EXPTIME: u64 = i32::MAX as u64;

/// The time the record has left: `min(idle timeout, time to its deadline)`.
fn remaining(record: &Record, now: SystemTime) -> Duration {
    // The record may have been made elsewhere, with any duration in it.
    let idle = record.idle_timeout.min(FOREVER);
    record.deadline.map_or(idle, |deadline| {
        deadline.duration_since(now).unwrap_or_default().min(idle)
    })
}

impl MemcacheStore {
    /// A builder; give it at least one server.
    pub fn builder() -> MemcacheStoreBuilder {
        MemcacheStoreBuilder {
            servers: Vec::new(),
            prefix: "session:".to_owned(),
            ttl: Duration::from_secs(604_800),
            timeout: Duration::from_secs(2),
            max_item_size: 1024 * 1024,
            max_idle_connections: 16,
        }
    }

    /// The memcached key of a session.
    pub fn key(&self, id: &SessionId) -> String {
        id.prefixed(&self.inner.prefix)
    }

    /// The server (`host:port`) that holds `key`.
    pub fn server_of(&self, key: &str) -> &str {
        &self.inner.servers[self.inner.server_index(key)].addr
    }

    /// Runs `operation` with a connection to the server of `key`, within the timeout. The
    /// connection goes back to the pool only after a call that completed.
    async fn with_client<T, F>(
        &self,
        key: &str,
        name: &'static str,
        operation: F,
    ) -> Result<T, MemcacheStoreError>
    where
        F: AsyncFnOnce(&mut Client) -> Result<T, McError>,
    {
        let server = &self.inner.servers[self.inner.server_index(key)];
        let failed = |source| MemcacheStoreError::Server {
            server: server.addr.clone(),
            operation: name,
            source,
        };
        let call = async {
            let pooled = server
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut client = match pooled {
                Some(client) if !client.is_closed() => client,
                _ => Client::new(format!("tcp://{}", server.addr))
                    .await
                    .map_err(failed)?,
            };
            let result = operation(&mut client).await;
            // A protocol answer (NF, EX, NS) leaves the connection usable; other errors do not.
            if matches!(result, Ok(_) | Err(McError::Protocol(_))) && !client.is_closed() {
                let mut idle = server.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < self.inner.max_idle_connections {
                    idle.push(client);
                }
            }
            result.map_err(failed)
        };
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(MemcacheStoreError::Timeout {
                server: server.addr.clone(),
                operation: name,
                timeout: self.inner.timeout,
            }),
        }
    }

    fn encode(
        &self,
        key: &str,
        record: &Record,
        generation: Option<u64>,
    ) -> Result<Vec<u8>, MemcacheStoreError> {
        let bytes = serde_json::to_vec(&Stored {
            cloakroom_memcache: FORMAT,
            record: record.clone(),
            generation,
        })
        .map_err(|error| MemcacheStoreError::Corrupt {
            key: SessionId::redact(key, ""),
            reason: error.to_string(),
        })?;
        if bytes.len() > self.inner.max_item_size {
            return Err(MemcacheStoreError::TooLarge {
                key: SessionId::redact(key, ""),
                size: bytes.len(),
                limit: self.inner.max_item_size,
            });
        }
        Ok(bytes)
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Stored, MemcacheStoreError> {
        let corrupt = |reason: String| MemcacheStoreError::Corrupt {
            key: SessionId::redact(key, ""),
            reason,
        };
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if stored.cloakroom_memcache != FORMAT {
            return Err(corrupt(format!(
                "unknown format {}",
                stored.cloakroom_memcache
            )));
        }
        Ok(stored)
    }

    /// A large value the server refused is reported with its size, not as a server error.
    fn refused(&self, key: &str, size: usize, error: MemcacheStoreError) -> MemcacheStoreError {
        match &error {
            MemcacheStoreError::Server {
                source: McError::Protocol(Status::Error(_)),
                ..
            } if size > 1024 => MemcacheStoreError::TooLarge {
                key: SessionId::redact(key, ""),
                size,
                limit: self.inner.max_item_size,
            },
            _ => error,
        }
    }

    /// The record in a `mg` reply and how long it may live from now, or `None` (deleting it)
    /// if it is missing, past its deadline, or of an owner's generation that is gone (a
    /// revoke, or an eviction of the owner's state: fail closed).
    async fn live(
        &self,
        id: &SessionId,
        key: &str,
        found: Option<MetaValue>,
    ) -> Result<Option<(Record, Duration)>, MemcacheStoreError> {
        let Some(data) = found.and_then(|value| value.data) else {
            return Ok(None);
        };
        let stored = Self::decode(key, &data)?;
        let left = remaining(&stored.record, SystemTime::now());
        if left.is_zero() {
            let _ = self.delete(id).await;
            return Ok(None);
        }
        let Some(owner) = &stored.record.owner else {
            return Ok(Some((stored.record, left)));
        };
        let owner = owner.name.clone();
        let mut seen = stored;
        for _ in 0..4 {
            if self.belongs(&owner, seen.generation).await? {
                let left = remaining(&seen.record, SystemTime::now());
                return Ok(Some((seen.record, left)));
            }
            // A revoke that keeps this session may have moved it to the owner's new generation
            // between the two reads: read it again, after the owner's item. Unmoved, it was
            // revoked (a move is written before the owner's item drops the old generation).
            let found = self
                .with_client(key, "load", async |client| {
                    client.meta_get(key, false, None, Some(&["v"])).await
                })
                .await?;
            let Some(data) = found.and_then(|value| value.data) else {
                return Ok(None);
            };
            let again = Self::decode(key, &data)?;
            if again.generation == seen.generation {
                let _ = self.delete(id).await;
                return Ok(None);
            }
            seen = again;
        }
        // Revokes keep moving it: not served this time, and left as it is.
        Ok(None)
    }
}

impl MemcacheStore {
    /// Rewrites the live session under `key` with `change` applied, by compare-and-swap:
    /// read it with its CAS token, change it, write it only if nobody wrote in between, and
    /// otherwise start again. A missing or dead session is [`Update::Missing`], and stays
    /// missing (a CAS write of a missing key fails).
    async fn rewrite(
        &self,
        key: &str,
        operation: &'static str,
        mut change: impl FnMut(&mut Stored, SystemTime),
    ) -> Result<Update, MemcacheStoreError> {
        // However many CAS rounds the writers of one session need, the call ends in bounded time.
        let deadline =
            tokio::time::Instant::now() + self.inner.timeout.saturating_mul(UPDATE_TIMEOUTS);
        // The generation of a session with an owner found revoked on the round before.
        let mut revoked = None;
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 0 && tokio::time::Instant::now() >= deadline {
                return Err(MemcacheStoreError::Contention {
                    key: SessionId::redact(key, ""),
                    attempts: attempt,
                });
            }
            let found = self
                .with_client(key, operation, async |client| {
                    client.meta_get(key, false, None, Some(&["v", "c"])).await
                })
                .await?;
            let Some((data, cas)) = found.and_then(|value| value.data.zip(value.cas)) else {
                return Ok(Update::Missing);
            };
            let mut stored = Self::decode(key, &data)?;
            let now = SystemTime::now();
            if remaining(&stored.record, now).is_zero() {
                return Ok(Update::Missing);
            }
            if let Some(owner) = &stored.record.owner {
                if !self.belongs(&owner.name, stored.generation).await? {
                    // A revoked session is missing to a write too. Unless a revoke that keeps it
                    // is moving it to the new generation: then the next round reads it moved.
                    if revoked == Some(stored.generation) {
                        return Ok(Update::Missing);
                    }
                    revoked = Some(stored.generation);
                    continue;
                }
            }
            change(&mut stored, now);
            let bytes = self.encode(key, &stored.record, stored.generation)?;
            let cas_flag = format!("C{cas}");
            let ttl = ttl_arg(remaining(&stored.record, now));
            let flags = [cas_flag.as_str(), ttl.as_str()];
            let written = self
                .with_client(key, operation, async |client| {
                    client
                        .meta_set(key, bytes.as_slice(), false, None, Some(&flags))
                        .await
                })
                .await;
            match written {
                Ok(_) => return Ok(Update::Applied),
                Err(MemcacheStoreError::Server {
                    source: McError::Protocol(Status::Exists),
                    ..
                }) => {
                    // Another request wrote first: re-read and re-apply, with a little jitter so
                    // the writers do not collide in lockstep.
                    let jitter = u64::from(hash(format!("{key}{attempt}").as_bytes()) % 200);
                    tokio::time::sleep(Duration::from_micros(jitter * (attempt as u64 % 8 + 1)))
                        .await;
                }
                Err(MemcacheStoreError::Server {
                    source: McError::Protocol(Status::NotFound),
                    ..
                }) => {
                    return Ok(Update::Missing);
                }
                Err(error) => return Err(self.refused(key, bytes.len(), error)),
            }
        }
        Err(MemcacheStoreError::Contention {
            key: SessionId::redact(key, ""),
            attempts: CAS_ATTEMPTS,
        })
    }
}

impl Inner {
    fn server_index(&self, key: &str) -> usize {
        let point = hash(key.as_bytes());
        let at = self.ring.partition_point(|(p, _)| *p < point);
        self.ring
            .get(at)
            .or_else(|| self.ring.first())
            .map_or(0, |(_, index)| *index)
    }
}

/// Data no retry can fix is refused (500): a session larger than memcached's item size, or a
/// key holding something this store did not write; everything else is an outage (503).
impl StoreError for MemcacheStoreError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::TooLarge { .. } | Self::Corrupt { .. } | Self::Unsupported { .. } => {
                FailureKind::Rejected
            }
            _ => FailureKind::Unavailable,
        }
    }
}

impl SessionStore for MemcacheStore {
    type Error = MemcacheStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, MemcacheStoreError> {
        let key = self.key(id);
        let touch = ttl_arg(self.inner.ttl);
        let flags = ["v", touch.as_str()];
        let found = self
            .with_client(&key, "load", async |client| {
                client.meta_get(&key, false, None, Some(&flags)).await
            })
            .await?;
        let Some((mut record, left)) = self.live(id, &key, found).await? else {
            return Ok(None);
        };
        record.expires = later(SystemTime::now(), left);
        if left != self.inner.ttl {
            // The session has its own idle timeout or is near its deadline: one more touch.
            let touch = ttl_arg(left);
            let flags = [touch.as_str()];
            self.with_client(&key, "load", async |client| {
                client.meta_get(&key, false, None, Some(&flags)).await
            })
            .await?;
        }
        Ok(Some(record))
    }

    /// One `mg` for the value and its remaining time to live, touching nothing.
    async fn read(&self, id: &SessionId) -> Result<Option<Record>, MemcacheStoreError> {
        let key = self.key(id);
        let found = self
            .with_client(&key, "read", async |client| {
                client.meta_get(&key, false, None, Some(&["v", "t"])).await
            })
            .await?;
        let ttl = found.as_ref().and_then(|found| found.ttl_remaining);
        let Some((mut record, left)) = self.live(id, &key, found).await? else {
            return Ok(None);
        };
        let ttl = ttl
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(left, |seconds| Duration::from_secs(seconds).min(left));
        record.expires = later(SystemTime::now(), ttl);
        Ok(Some(record))
    }

    /// A session with an owner is made in the owner's current generation (see the crate docs).
    async fn create(&self, record: &Record) -> Result<SessionId, MemcacheStoreError> {
        let generation = match &record.owner {
            Some(owner) => Some(self.generation(&owner.name).await?),
            None => None,
        };
        loop {
            let id = SessionId::generate();
            let key = self.key(&id);
            let bytes = self.encode(&key, record, generation)?;
            let ttl = ttl_arg(remaining(record, SystemTime::now()));
            let flags = ["ME", ttl.as_str()];
            let added = self
                .with_client(&key, "create", async |client| {
                    client
                        .meta_set(&key, bytes.as_slice(), false, None, Some(&flags))
                        .await
                })
                .await;
            match added {
                Ok(_) => return Ok(id),
                Err(MemcacheStoreError::Server {
                    source: McError::Protocol(Status::NotStored),
                    ..
                }) => {
                    tracing::warn!(session = %id, "new session id already taken; trying another");
                }
                Err(error) => return Err(self.refused(&key, bytes.len(), error)),
            }
        }
    }

    async fn update(
        &self,
        id: &SessionId,
        changes: &Changes,
    ) -> Result<Update, MemcacheStoreError> {
        self.rewrite(&self.key(id), "update", |stored, now| {
            stored.record.apply(changes, now);
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), MemcacheStoreError> {
        let key = self.key(id);
        let deleted = self
            .with_client(&key, "delete", async |client| {
                client.meta_delete(&key, false, None, None).await
            })
            .await;
        match deleted {
            Err(MemcacheStoreError::Server {
                source: McError::Protocol(Status::NotFound),
                ..
            }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_beyond_thirty_days_are_absolute_unix_times() {
        assert_eq!(ttl_arg(Duration::from_secs(604_800)), "T604800");
        assert_eq!(ttl_arg(Duration::from_millis(1500)), "T2");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sixty_days = ttl_arg(Duration::from_secs(60 * 86400));
        let absolute: u64 = sixty_days[1..].parse().unwrap_or(0);
        assert!(
            absolute >= now + 60 * 86400 && absolute <= now + 60 * 86400 + 5,
            "{sixty_days}"
        );
    }

    #[test]
    fn bad_prefixes_and_empty_server_lists_are_refused() {
        let build = |builder: MemcacheStoreBuilder| builder.build().err().map(|e| e.to_string());
        assert!(
            build(MemcacheStore::builder()).is_some_and(|e| e.contains("no memcached servers"))
        );
        let servers = MemcacheStore::builder().servers(["127.0.0.1:11211"]);
        assert!(build(servers.prefix("a b")).is_some_and(|e| e.contains("\"a b\"")));
        let servers = MemcacheStore::builder().servers(["127.0.0.1:11211"]);
        assert!(build(servers.prefix("x".repeat(230))).is_some_and(|e| e.contains("250")));
    }

    #[test]
    fn keys_spread_over_servers_and_move_little_when_one_is_added() {
        let three = MemcacheStore::builder()
            .url("memcache://a:1,b:2,c:3")
            .build()
            .expect("a valid configuration");
        let four = MemcacheStore::builder()
            .url("memcache://a:1,b:2,c:3,d:4")
            .build()
            .expect("a valid configuration");
        let keys: Vec<String> = (0..3000)
            .map(|_| three.key(&SessionId::generate()))
            .collect();
        let mut per_server = std::collections::HashMap::new();
        for key in &keys {
            *per_server
                .entry(three.server_of(key).to_owned())
                .or_insert(0) += 1;
        }
        assert!(
            per_server.values().all(|&n| n > 700),
            "uneven spread: {per_server:?}"
        );
        let moved = keys
            .iter()
            .filter(|k| three.server_of(k) != four.server_of(k))
            .count();
        assert!(
            moved < 1100,
            "{moved} of 3000 keys moved when one server was added"
        );
    }
}
