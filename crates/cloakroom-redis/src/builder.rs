//! Configuring a [`RedisStore`] and connecting it.
//!
//! The builder takes where to connect (a URL, a fred `Config`, or a `Client` or `Pool` made
//! elsewhere) and the store's options, then [`build`](RedisStoreBuilder::build) opens the
//! connections (for a URL or `Config`: a fred pool that speaks RESP3, so the local copy works,
//! and reconnects forever), starts the local copy and hands both to the store. Standalone,
//! cluster, Sentinel and TLS are all fred's to set up from the URL.

use std::collections::HashMap;
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, ConfigInterface};
use fred::types::RespVersion;
use fred::types::config::{Config, ReconnectPolicy};

use crate::batch::Batcher;
use crate::cache::Cache;
use crate::replicas::Replicas;
use crate::{RedisStore, RedisStoreError};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "session:";

/// How many sessions the local cache holds when nothing else is configured.
pub const DEFAULT_LOCAL_CACHE: usize = 10_000;

/// How many connections a URL or `Config` gets unless [`RedisStoreBuilder::pool_size`] says.
const DEFAULT_POOL_SIZE: usize = 4;

/// How long a command may take unless [`RedisStoreBuilder::command_timeout`] says (or the
/// `Client` or `Pool` handed over has a timeout of its own).
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Where the store's connections come from.
enum Source {
    Url(String),
    Config(Box<Config>),
    Client(Client),
    Pool(Pool),
}

impl RedisStoreBuilder {
    /// A builder with the defaults and nowhere to connect yet.
    pub(crate) fn new() -> Self {
        Self {
            source: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            local_cache: DEFAULT_LOCAL_CACHE,
            replicas: None,
        }
    }

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
                let invalid = |source| RedisStoreError::Url {
                    url: redact(&url),
                    source,
                };
                known_scheme(&url).map_err(invalid)?;
                let mut config = Config::from_url(&url).map_err(invalid)?;
                config.version = RespVersion::RESP3;
                connect(config, self.pool_size, self.command_timeout).await?
            }
            Some(Source::Config(config)) => {
                connect(*config, self.pool_size, self.command_timeout).await?
            }
        };
        // Connections made elsewhere keep their own timeout, which bounds `WAIT` too.
        let command_timeout = match source_timeout {
            Some(timeout) => timeout,
            None => clients
                .first()
                .map(|client| client.perf_config().default_command_timeout)
                .filter(|timeout| !timeout.is_zero())
                .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        };
        let replicas = self
            .replicas
            .map(|replicas| replicas.within(command_timeout));
        let evicting = match clients.first() {
            Some(client) => evicting_policy(client).await,
            None => None,
        };
        let cache = Cache::start(self.local_cache, clients.clone()).await;
        // Before 7.2 a tracking connection's script tracks all its keys at every read (see
        // `batch::max_script_calls`); an unknown version is taken to be one of those.
        let tracks_all_keys = cache.is_some()
            && clients
                .first()
                .and_then(|client| client.server_version())
                .is_none_or(|version| (version.major, version.minor) < (7, 2));
        Ok(RedisStore::new(
            Batcher::new(clients, replicas, tracks_all_keys),
            self.prefix,
            cache,
            evicting,
        ))
    }
}

/// A fred pool of `pool_size` connections for `config`, connected.
async fn connect(
    config: Config,
    pool_size: usize,
    command_timeout: Duration,
) -> Result<Vec<Client>, RedisStoreError> {
    let servers: Vec<String> = config
        .server
        .hosts()
        .iter()
        .map(ToString::to_string)
        .collect();
    let failed = |source: fred::error::Error| RedisStoreError::Connect {
        servers: servers.join(","),
        reason: reason(&source),
        source,
    };
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
        .map_err(failed)?;
    pool.init().await.map_err(failed)?;
    Ok(pool.clients().to_vec())
}

/// The server's `maxmemory-policy` if it may evict keys without a TTL (`allkeys-*`). A server
/// that refuses `CONFIG` (managed services often do) is taken at its word that it does not:
/// the crate docs say which policies to use.
async fn evicting_policy(client: &Client) -> Option<String> {
    let reply: Result<HashMap<String, String>, _> = client.config_get("maxmemory-policy").await;
    let policy = match reply {
        Ok(mut config) => config.remove("maxmemory-policy")?,
        Err(error) => {
            tracing::warn!(%error, "could not read Redis's maxmemory-policy; it must be noeviction or volatile-* for a user's sessions");
            return None;
        }
    };
    if !policy.starts_with("allkeys-") {
        return None;
    }
    tracing::error!(
        %policy,
        "Redis may evict keys without a TTL: logins with an owner, lists and revokes of a user's sessions will fail; set maxmemory-policy to noeviction or volatile-*"
    );
    Some(policy)
}

/// What went wrong, in words: fred keeps an I/O error only as its `Debug` text
/// (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`, or `Custom {
/// kind: Uncategorized, error: "failed to lookup address information: ..." }` for a name that
/// does not resolve), whose `message` or `error` is what a person wants to read.
fn reason(error: &fred::error::Error) -> String {
    let details = error.details();
    ["message: \"", "error: \""]
        .iter()
        .find_map(|field| details.split_once(field))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| error.to_string(), |(message, _)| message.to_owned())
}

/// The URL schemes of Redis: fred reads some others (an `http://` URL, say) as a server too.
const SCHEMES: [&str; 6] = [
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
];

/// `Ok` if `url` has one of the [`SCHEMES`].
fn known_scheme(url: &str) -> Result<(), fred::error::Error> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    if SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    Err(fred::error::Error::new(
        fred::error::ErrorKind::Config,
        format!(
            "{scheme:?} is not a Redis URL scheme: use redis://, rediss://, redis-cluster://, \
             rediss-cluster://, redis-sentinel:// or rediss-sentinel://"
        ),
    ))
}

/// `url` with any password masked: everything between the start of the user information and
/// the last `@` after its first `:` (all of it, with no `:`, since some clients read a lone
/// user as a password), whether or not the scheme is well formed (`:pw@host`, `redis:/:pw@h`).
fn redact(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let start = url
        .find("://")
        .map(|i| i + 3)
        .or_else(|| url.find("//").map(|i| i + 2))
        .filter(|&start| start <= at)
        .unwrap_or(0);
    let masked = match url[start..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{masked}{}", &url[..start], &url[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_redis_schemes_are_urls_of_redis() {
        for url in [
            "redis://h:6379",
            "REDISS://h",
            "redis-cluster://h?node=g",
            "rediss-sentinel://h",
        ] {
            assert!(known_scheme(url).is_ok(), "{url}");
        }
        for url in ["http://h:6379", "h:6379", "", "memcache://h", "redis:/h"] {
            let error = known_scheme(url).err().map(|e| e.details().to_owned());
            assert!(error.is_some_and(|e| e.contains("redis://")), "{url}");
        }
    }

    #[test]
    fn a_connection_error_reads_as_words() {
        use fred::error::{Error, ErrorKind};
        let refused = r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#;
        let unknown = r#"Custom { kind: Uncategorized, error: "failed to lookup address information: Name or service not known" }"#;
        assert_eq!(
            reason(&Error::new(ErrorKind::IO, refused)),
            "Connection refused"
        );
        assert_eq!(
            reason(&Error::new(ErrorKind::IO, unknown)),
            "failed to lookup address information: Name or service not known"
        );
        let auth = Error::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair");
        assert!(reason(&auth).contains("WRONGPASS"), "{}", reason(&auth));
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        // A mistyped scheme or none at all must not show the password either.
        for (url, shown) in [
            (":hunter2@127.0.0.1:6379", ":***@127.0.0.1:6379"),
            ("redis:/:hunter2@host", "redis:***@host"),
            ("redis//:hunter2@host", "redis//:***@host"),
            ("redis://hunter2@host", "redis://***@host"),
            ("redis://u:p@ss@host", "redis://u:***@host"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
