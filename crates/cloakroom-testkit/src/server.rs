//! Real `redis-server`, `memcached` and PostgreSQL processes for tests, on free loopback ports.
//!
//! Each server runs in its own temporary directory with persistence off, on ports nobody else
//! holds, and is killed when its handle is dropped, so tests can run in parallel and never
//! depend on a server that happens to be running. A missing binary is an error naming the
//! Debian package to install.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod postgres;
mod sentinel;
mod tls;

pub use self::postgres::PostgresServer;
pub use self::sentinel::{RedisSentinel, SENTINEL_SERVICE};
pub use self::tls::RedisTls;

/// How long a server may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a start is retried when another process took the chosen port first.
const START_ATTEMPTS: usize = 5;

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The program is not installed.
    #[error(
        "`{binary}` was not found on PATH: install it with `apt-get install {package}` (Debian package {package})"
    )]
    Missing {
        /// The program looked for.
        binary: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The program could not be run, or its temporary directory not made.
    #[error("could not run `{binary}`: {source}")]
    Io {
        /// The program.
        binary: &'static str,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The program ran but never answered on its port.
    #[error("`{binary}` on 127.0.0.1:{port} did not become ready: {reason}")]
    NotReady {
        /// The program.
        binary: &'static str,
        /// The port it was given.
        port: u16,
        /// What went wrong, with the end of its log.
        reason: String,
    },
}

/// A program to run, found on `PATH`.
#[derive(Clone, Copy)]
struct Program {
    binary: &'static str,
    package: &'static str,
    /// A directory of versioned installs to look in too, newest version first: Debian puts
    /// PostgreSQL's programs in `/usr/lib/postgresql/<version>/bin`, off `PATH`.
    versions: Option<&'static str>,
}

const REDIS_SERVER: Program = Program {
    binary: "redis-server",
    package: "redis-server",
    versions: None,
};
const REDIS_CLI: Program = Program {
    binary: "redis-cli",
    package: "redis-tools",
    versions: None,
};
const INITDB: Program = Program {
    binary: "initdb",
    package: "postgresql",
    versions: Some(POSTGRES_VERSIONS),
};
const POSTGRES: Program = Program {
    binary: "postgres",
    package: "postgresql",
    versions: Some(POSTGRES_VERSIONS),
};
/// Where Debian's `postgresql-<version>` packages install their programs.
const POSTGRES_VERSIONS: &str = "/usr/lib/postgresql";
const MEMCACHED: Program = Program {
    binary: "memcached",
    package: "memcached",
    versions: None,
};

impl Program {
    fn path(self) -> Result<PathBuf, ServerError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
            .chain(self.versions.map(versioned_bins).unwrap_or_default())
            .map(|dir| dir.join(self.binary))
            .find(|candidate| candidate.is_file())
            .ok_or(ServerError::Missing {
                binary: self.binary,
                package: self.package,
            })
    }

    fn io(self) -> impl FnOnce(std::io::Error) -> ServerError {
        move |source| ServerError::Io {
            binary: self.binary,
            source,
        }
    }
}

/// `<root>/<version>/bin` of every version installed under `root`, newest first.
fn versioned_bins(root: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .filter_map(|part| part.parse().ok())
                .collect();
            (version, entry.path().join("bin"))
        })
        .collect();
    versions.sort();
    versions.into_iter().rev().map(|(_, bin)| bin).collect()
}

/// `count` distinct loopback ports that were free a moment ago.
fn free_ports(count: usize) -> Result<Vec<u16>, ServerError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(REDIS_SERVER.io())?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect::<Result<_, _>>()
        .map_err(REDIS_SERVER.io())
}

/// One running server process, killed on drop.
struct Process {
    program: Program,
    port: u16,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// The user to run it as (`uid`, `gid`), through `setpriv` (which execs, so the child is
    /// the server itself): PostgreSQL refuses to run as root.
    user: Option<(u32, u32)>,
    /// The signal that shuts it down in an orderly way, waited for before a `SIGKILL`:
    /// PostgreSQL's children outlive a killed postmaster for a moment, and a start
    /// meanwhile finds its shared memory still in use.
    shutdown: Option<&'static str>,
}

impl Process {
    /// Starts `program` with `args`, its output in `dir/<binary>.log`.
    fn spawn(
        program: Program,
        port: u16,
        args: Vec<String>,
        dir: &Path,
    ) -> Result<Self, ServerError> {
        let mut process = Self {
            program,
            port,
            args,
            dir: dir.to_owned(),
            child: None,
            user: None,
            shutdown: None,
        };
        process.start()?;
        Ok(process)
    }

    /// Starts `program` as the user `user` (`uid`, `gid`) when there is one, to be shut down
    /// with `SIGQUIT` (PostgreSQL's immediate shutdown) before a kill.
    fn spawn_as(
        program: Program,
        port: u16,
        args: Vec<String>,
        dir: &Path,
        user: Option<(u32, u32)>,
    ) -> Result<Self, ServerError> {
        let mut process = Self {
            program,
            port,
            args,
            dir: dir.to_owned(),
            child: None,
            user,
            shutdown: Some("QUIT"),
        };
        process.start()?;
        Ok(process)
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}-{}.log", self.program.binary, self.port))
    }

    fn start(&mut self) -> Result<(), ServerError> {
        let log = std::fs::File::create(self.log_path()).map_err(self.program.io())?;
        let err = log.try_clone().map_err(self.program.io())?;
        let binary = self.program.path()?;
        let mut command = match self.user {
            Some((uid, gid)) => {
                let mut setpriv = Command::new("setpriv");
                setpriv
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(binary);
                setpriv
            }
            None => Command::new(binary),
        };
        let child = command
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(self.program.io())?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(signal) = self.shutdown {
            if self.signal(signal).is_ok() {
                if let Some(child) = self.child.as_mut() {
                    let started = Instant::now();
                    while matches!(child.try_wait(), Ok(None)) && started.elapsed() < READY_TIMEOUT
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) -> Result<(), ServerError> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .map_err(self.program.io())?;
        if status.success() {
            Ok(())
        } else {
            Err(self.not_ready(format!("kill -{signal} failed: {status}")))
        }
    }

    /// Waits until the server answers `probe` with a reply starting with `expect`.
    async fn wait_ready(&mut self, probe: &[u8], expect: &[u8]) -> Result<(), ServerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(self.not_ready(format!("it exited with {status}")));
                }
            }
            if ask(self.port, probe)
                .await
                .is_some_and(|reply| reply.starts_with(expect))
            {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready(format!("no answer within {READY_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn not_ready(&self, reason: String) -> ServerError {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        ServerError::NotReady {
            binary: self.program.binary,
            port: self.port,
            reason: format!("{reason}; log: {}", tail.join(" | ")),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `probe` to `127.0.0.1:port` and returns the first bytes of the reply.
async fn ask(port: u16, probe: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(probe).await.ok()?;
        let mut reply = vec![0u8; 4096];
        let read = stream.read(&mut reply).await.ok()?;
        reply.truncate(read);
        Some(reply)
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

/// Retries `start` on fresh ports when another process took a port first.
async fn with_fresh_ports<T, F, Fut>(count: usize, mut start: F) -> Result<T, ServerError>
where
    F: FnMut(Vec<u16>) -> Fut,
    Fut: std::future::Future<Output = Result<T, ServerError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start(free_ports(count)?).await {
            Err(ServerError::NotReady { .. }) if attempt < START_ATTEMPTS => continue,
            result => return result,
        }
    }
}

fn temp_dir(program: Program) -> Result<TempDir, ServerError> {
    tempfile::Builder::new()
        .prefix(&format!("cloakroom-{}-", program.binary))
        .tempdir()
        .map_err(program.io())
}

fn redis_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A standalone `redis-server` on a free loopback port, without persistence.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), cloakroom_testkit::ServerError> {
/// let redis = cloakroom_testkit::RedisServer::start().await?;
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// # Ok(()) }
/// ```
pub struct RedisServer {
    process: Process,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts one.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with_args(&[]).await
    }

    /// Starts one with extra arguments (`["--appendonly", "yes", "--appendfsync", "always"]` to
    /// keep data across [`restart`](Self::restart), say).
    pub async fn start_with_args(extra: &[&str]) -> Result<Self, ServerError> {
        with_fresh_ports(1, |ports| async move {
            let dir = temp_dir(REDIS_SERVER)?;
            let mut args = redis_args(ports[0]);
            args.extend(extra.iter().map(|arg| (*arg).to_owned()));
            let mut process = Process::spawn(REDIS_SERVER, ports[0], args, dir.path())?;
            process.wait_ready(b"PING\r\n", b"+PONG").await?;
            Ok(Self { process, _dir: dir })
        })
        .await
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// The server's process id while it runs (a benchmark reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.process.child.as_ref().map(Child::id)
    }

    /// Kills the server (to test what clients do when Redis is down). Its data is gone unless
    /// it was started with persistence.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port after [`stop`](Self::stop).
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.process.kill();
        self.process.start()?;
        self.process.wait_ready(b"PING\r\n", b"+PONG").await
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and commands queue unanswered,
    /// as with a server stuck on a slow disk or a long fork.
    pub fn pause(&self) -> Result<(), ServerError> {
        self.process.signal("STOP")
    }

    /// Lets a [paused](Self::pause) server run again: it answers what queued meanwhile.
    pub fn resume(&self) -> Result<(), ServerError> {
        self.process.signal("CONT")
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisServer({})", self.url())
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports.
pub struct RedisCluster {
    nodes: Vec<Process>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts three `redis-server --cluster-enabled yes` nodes and joins them with
    /// `redis-cli --cluster create`, then waits for `cluster_state:ok` on every node.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with_args(&[]).await
    }

    /// [`start`](Self::start) with extra arguments for every node (`["--appendonly", "yes",
    /// "--appendfsync", "always"]` to keep data across [`restart`](Self::restart), say).
    pub async fn start_with_args(extra: &[&str]) -> Result<Self, ServerError> {
        REDIS_CLI.path()?;
        with_fresh_ports(6, |ports| async move {
            let dir = temp_dir(REDIS_SERVER)?;
            let mut nodes = Vec::with_capacity(3);
            for (port, bus) in ports[..3].iter().zip(&ports[3..]) {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir(&node_dir).map_err(REDIS_SERVER.io())?;
                let mut args = redis_args(*port);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--cluster-port",
                        &bus.to_string(),
                    ]
                    .map(str::to_owned),
                );
                args.extend(extra.iter().map(|arg| (*arg).to_owned()));
                nodes.push(Process::spawn(REDIS_SERVER, *port, args, &node_dir)?);
            }
            for node in &mut nodes {
                node.wait_ready(b"PING\r\n", b"+PONG").await?;
            }
            let mut create = Command::new(REDIS_CLI.path()?);
            create.args(["--cluster", "create"]);
            create.args(ports[..3].iter().map(|port| format!("127.0.0.1:{port}")));
            create.args(["--cluster-replicas", "0", "--cluster-yes"]);
            let output = create.output().map_err(REDIS_CLI.io())?;
            if !output.status.success() {
                return Err(ServerError::NotReady {
                    binary: REDIS_CLI.binary,
                    port: ports[0],
                    reason: format!(
                        "redis-cli --cluster create failed: {}",
                        String::from_utf8_lossy(&output.stdout)
                    ),
                });
            }
            for node in &mut nodes {
                node.wait_ready(b"CLUSTER INFO\r\n", b"$").await?;
                cluster_ok(node).await?;
            }
            Ok(Self { nodes, _dir: dir })
        })
        .await
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// Kills node `index` and starts it again on the same ports, with its cluster
    /// configuration (and its data, if the cluster was started with persistence), and waits
    /// until it answers and the cluster is ok again.
    pub async fn restart(&mut self, index: usize) -> Result<(), ServerError> {
        let Some(node) = self.nodes.get_mut(index) else {
            return Ok(());
        };
        node.kill();
        node.start()?;
        node.wait_ready(b"PING\r\n", b"+PONG").await?;
        cluster_ok(node).await
    }

    /// Freezes node `index` (`SIGSTOP`); see [`RedisServer::pause`].
    pub fn pause(&self, index: usize) -> Result<(), ServerError> {
        self.nodes
            .get(index)
            .map_or(Ok(()), |node| node.signal("STOP"))
    }

    /// Lets node `index` run again after [`pause`](Self::pause).
    pub fn resume(&self, index: usize) -> Result<(), ServerError> {
        self.nodes
            .get(index)
            .map_or(Ok(()), |node| node.signal("CONT"))
    }

    /// `redis://127.0.0.1:<port>` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisCluster({:?})", self.ports())
    }
}

/// Waits until `node` reports `cluster_state:ok`.
async fn cluster_ok(node: &Process) -> Result<(), ServerError> {
    let started = Instant::now();
    while !ask(node.port, b"CLUSTER INFO\r\n")
        .await
        .is_some_and(|reply| contains(&reply, b"cluster_state:ok"))
    {
        if started.elapsed() > READY_TIMEOUT {
            return Err(node.not_ready("cluster_state never became ok".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A `memcached` on a free loopback port (TCP only).
pub struct MemcachedServer {
    process: Process,
    _dir: TempDir,
}

impl MemcachedServer {
    /// Starts one with 64 MB of memory and the default 1 MB item size.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with_args(&[]).await
    }

    /// Starts one with extra command-line arguments (`["-I", "2m"]` for 2 MB items, say).
    pub async fn start_with_args(extra: &[&str]) -> Result<Self, ServerError> {
        with_fresh_ports(1, |ports| async move {
            let dir = temp_dir(MEMCACHED)?;
            let mut args: Vec<String> = [
                "-l",
                "127.0.0.1",
                "-p",
                &ports[0].to_string(),
                "-U",
                "0",
                "-m",
                "64",
                // memcached refuses to run as root without a user; as anyone else it ignores -u.
                "-u",
                "root",
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend(extra.iter().map(|arg| (*arg).to_owned()));
            let mut process = Process::spawn(MEMCACHED, ports[0], args, dir.path())?;
            process.wait_ready(b"version\r\n", b"VERSION").await?;
            Ok(Self { process, _dir: dir })
        })
        .await
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// Kills the server. Its data is gone.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port after [`stop`](Self::stop).
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.process.kill();
        self.process.start()?;
        self.process.wait_ready(b"version\r\n", b"VERSION").await
    }
}

impl fmt::Debug for MemcachedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemcachedServer({})", self.addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_redis_server_starts_answers_stops_and_restarts() -> Result<(), ServerError> {
        let mut redis = RedisServer::start().await?;
        assert!(redis.url().starts_with("redis://127.0.0.1:"));
        assert_eq!(
            ask(redis.port(), b"PING\r\n").await.as_deref(),
            Some(&b"+PONG\r\n"[..])
        );
        redis.stop();
        assert_eq!(ask(redis.port(), b"PING\r\n").await, None);
        redis.restart().await?;
        assert_eq!(
            ask(redis.port(), b"PING\r\n").await.as_deref(),
            Some(&b"+PONG\r\n"[..])
        );
        Ok(())
    }

    #[tokio::test]
    async fn two_redis_servers_get_different_ports() -> Result<(), ServerError> {
        let (a, b) = tokio::try_join!(RedisServer::start(), RedisServer::start())?;
        assert_ne!(a.port(), b.port());
        Ok(())
    }

    #[tokio::test]
    async fn a_redis_cluster_of_three_masters_is_ok() -> Result<(), ServerError> {
        let cluster = RedisCluster::start().await?;
        assert_eq!(cluster.ports().len(), 3);
        for port in cluster.ports() {
            let info = ask(port, b"CLUSTER INFO\r\n").await.unwrap_or_default();
            assert!(
                contains(&info, b"cluster_state:ok"),
                "{}",
                String::from_utf8_lossy(&info)
            );
            assert!(
                contains(&info, b"cluster_known_nodes:3"),
                "{}",
                String::from_utf8_lossy(&info)
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_memcached_starts_answers_stops_and_restarts() -> Result<(), ServerError> {
        let mut memcached = MemcachedServer::start().await?;
        let version = ask(memcached.port(), b"version\r\n")
            .await
            .unwrap_or_default();
        assert!(version.starts_with(b"VERSION "));
        memcached.stop();
        assert_eq!(ask(memcached.port(), b"version\r\n").await, None);
        memcached.restart().await?;
        assert!(ask(memcached.port(), b"version\r\n").await.is_some());
        Ok(())
    }

    #[tokio::test]
    async fn a_postgres_starts_answers_stops_and_restarts() -> Result<(), ServerError> {
        let mut postgres = PostgresServer::start().await?;
        assert!(postgres.url().starts_with("postgres://postgres@127.0.0.1:"));
        let probe = postgres::startup_message();
        let ready = |reply: Option<Vec<u8>>| reply.is_some_and(|r| r.first() == Some(&b'R'));
        assert!(ready(ask(postgres.port(), &probe).await));
        postgres.stop();
        assert_eq!(ask(postgres.port(), &probe).await, None);
        postgres.restart().await?;
        assert!(ready(ask(postgres.port(), &probe).await));
        Ok(())
    }

    #[test]
    fn postgres_is_found_where_debian_puts_it() {
        // Debian's packages install initdb in /usr/lib/postgresql/<version>/bin, off PATH.
        let bins = versioned_bins(POSTGRES_VERSIONS);
        if let Some(newest) = bins.first() {
            assert!(newest.starts_with(POSTGRES_VERSIONS), "{newest:?}");
        }
        let missing_root = versioned_bins("/nonexistent-cloakroom");
        assert!(missing_root.is_empty());
        assert!(
            INITDB.path().is_ok(),
            "initdb not found: install postgresql"
        );
    }

    #[test]
    fn a_missing_binary_names_the_package_to_install() {
        let missing = Program {
            binary: "cloakroom-no-such-server",
            package: "no-such-package",
            versions: None,
        };
        let message = missing
            .path()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            message,
            "`cloakroom-no-such-server` was not found on PATH: install it with `apt-get install no-such-package` (Debian package no-such-package)"
        );
    }
}
