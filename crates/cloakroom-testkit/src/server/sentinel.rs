//! A master, a replica and three Sentinels, for failover tests.

use std::fmt;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    Process, Program, READY_TIMEOUT, REDIS_SERVER, ServerError, ask, contains, redis_args,
    temp_dir, with_fresh_ports,
};

const REDIS_SENTINEL: Program = Program {
    binary: "redis-sentinel",
    package: "redis-sentinel",
    versions: None,
};

/// The name the Sentinels monitor the master under.
pub const SENTINEL_SERVICE: &str = "mymaster";

/// A Redis master, two replicas and three `redis-sentinel` processes watching them, on free
/// loopback ports, without persistence. The Sentinels agree a master is down after one
/// second.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), cloakroom_testkit::ServerError> {
/// let sentinels = cloakroom_testkit::RedisSentinel::start().await?;
/// let url = sentinels.url(); // redis-sentinel://127.0.0.1:<port>?node=...&sentinelServiceName=mymaster
/// sentinels.failover().await?;
/// # Ok(()) }
/// ```
pub struct RedisSentinel {
    /// The master first, then the replicas (as started; failovers move the role).
    servers: Vec<Process>,
    sentinels: Vec<Process>,
    _dir: TempDir,
}

impl RedisSentinel {
    /// Starts the master, its replicas and three Sentinels, and waits until the replicas are
    /// in sync and every Sentinel knows them and the two other Sentinels.
    pub async fn start() -> Result<Self, ServerError> {
        REDIS_SENTINEL.path()?;
        with_fresh_ports(6, |ports| async move {
            let dir = temp_dir(REDIS_SERVER)?;
            let master = ports[0];
            let replica_of = || vec!["--replicaof".to_owned(), format!("127.0.0.1 {master}")];
            let mut servers = Vec::new();
            for (port, extra) in [
                (master, Vec::new()),
                (ports[1], replica_of()),
                (ports[2], replica_of()),
            ] {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir(&node_dir).map_err(REDIS_SERVER.io())?;
                let mut args = redis_args(port);
                args.extend(extra);
                servers.push(Process::spawn(REDIS_SERVER, port, args, &node_dir)?);
            }
            for server in &mut servers {
                server.wait_ready(b"PING\r\n", b"+PONG").await?;
            }
            let mut sentinels = Vec::new();
            for &port in &ports[3..] {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir(&node_dir).map_err(REDIS_SENTINEL.io())?;
                // Sentinel rewrites its configuration file as it learns: one of its own.
                let config = node_dir.join("sentinel.conf");
                let text = format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
                     sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                     sentinel failover-timeout {SENTINEL_SERVICE} 5000\n\
                     sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
                );
                std::fs::write(&config, text).map_err(REDIS_SENTINEL.io())?;
                let args = vec![config.to_string_lossy().into_owned()];
                sentinels.push(Process::spawn(REDIS_SENTINEL, port, args, &node_dir)?);
            }
            for sentinel in &mut sentinels {
                sentinel.wait_ready(b"PING\r\n", b"+PONG").await?;
            }
            let deployment = Self {
                servers,
                sentinels,
                _dir: dir,
            };
            deployment.settled().await?;
            Ok(deployment)
        })
        .await
    }

    /// Waits until every Sentinel sees two replicas and two other Sentinels, and every
    /// replica is in sync.
    async fn settled(&self) -> Result<(), ServerError> {
        let started = Instant::now();
        let probe = format!("SENTINEL MASTER {SENTINEL_SERVICE}\r\n");
        loop {
            let mut ready = true;
            for sentinel in &self.sentinels {
                let reply = ask(sentinel.port, probe.as_bytes())
                    .await
                    .unwrap_or_default();
                ready &= contains(&reply, b"num-slaves\r\n$1\r\n2\r\n")
                    && contains(&reply, b"num-other-sentinels\r\n$1\r\n2\r\n");
            }
            for server in &self.servers {
                let info = ask(server.port, b"INFO replication\r\n")
                    .await
                    .unwrap_or_default();
                ready &= contains(&info, b"role:master") && contains(&info, b"connected_slaves:2")
                    || contains(&info, b"master_link_status:up");
            }
            if ready {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT * 2 {
                let sentinel = &self.sentinels[0];
                return Err(sentinel.not_ready("the Sentinels never agreed".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `redis-sentinel://` with every Sentinel, for fred (and so for `RedisStore`).
    pub fn url(&self) -> String {
        let mut ports = self.sentinels.iter().map(|s| s.port);
        let first = ports.next().unwrap_or_default();
        let nodes: String = ports
            .map(|port| format!("node=127.0.0.1:{port}&"))
            .collect();
        format!("redis-sentinel://127.0.0.1:{first}?{nodes}sentinelServiceName={SENTINEL_SERVICE}")
    }

    /// The port of the current master, as the first Sentinel reports it.
    pub async fn master_port(&self) -> Option<u16> {
        let probe = format!("SENTINEL GET-MASTER-ADDR-BY-NAME {SENTINEL_SERVICE}\r\n");
        let reply = ask(self.sentinels.first()?.port, probe.as_bytes()).await?;
        let text = String::from_utf8_lossy(&reply);
        text.split("\r\n").nth(4)?.parse().ok()
    }

    /// Kills the master (`SIGKILL`, a crash) and waits until the Sentinels have promoted a
    /// replica; [`restart_crashed`](Self::restart_crashed) brings the old master back, as a
    /// replica of the new one.
    pub async fn crash_master(&mut self) -> Result<(), ServerError> {
        self.settled().await?;
        let before = self.master_port().await;
        if let Some(master) = self.servers.iter_mut().find(|s| Some(s.port) == before) {
            master.kill();
        }
        let started = Instant::now();
        while self.master_port().await == before {
            if started.elapsed() > READY_TIMEOUT {
                let sentinel = &self.sentinels[0];
                return Err(sentinel.not_ready("no replica was promoted".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts every server [`crash_master`](Self::crash_master) killed, and waits until the
    /// Sentinels have made it a replica in sync.
    pub async fn restart_crashed(&mut self) -> Result<(), ServerError> {
        for server in &mut self.servers {
            if server.child.is_none() {
                server.start()?;
                server.wait_ready(b"PING\r\n", b"+PONG").await?;
            }
        }
        self.settled().await
    }

    /// Fails the master over to a replica (`SENTINEL FAILOVER`), once the replica is in sync
    /// and every Sentinel knows it (after an earlier failover, the old master has to rejoin as
    /// the new one's replica first), and waits until the Sentinels name the new master.
    pub async fn failover(&self) -> Result<(), ServerError> {
        self.settled().await?;
        let before = self.master_port().await;
        let probe = format!("SENTINEL FAILOVER {SENTINEL_SERVICE}\r\n");
        let sentinel = &self.sentinels[0];
        let started = Instant::now();
        while !ask(sentinel.port, probe.as_bytes())
            .await
            .is_some_and(|reply| reply.starts_with(b"+OK"))
        {
            // A failover still in progress refuses another ("-INPROG").
            if started.elapsed() > READY_TIMEOUT {
                return Err(sentinel.not_ready("SENTINEL FAILOVER was refused".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while self.master_port().await == before {
            if started.elapsed() > READY_TIMEOUT {
                return Err(sentinel.not_ready("the master never changed".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisSentinel({})", self.url())
    }
}
