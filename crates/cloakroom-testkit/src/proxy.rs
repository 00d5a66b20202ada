//! A TCP proxy on loopback that can freeze or slow its connections, for partition tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::server::ServerError;

/// Forwards connections from a free loopback port to `127.0.0.1:<target>`. While
/// [frozen](Self::freeze), nothing crosses in either direction and nothing is closed: what
/// was sent waits, as packets do behind a partition, and arrives on [`thaw`](Self::thaw).
/// With a [`delay`](Self::delay), each chunk read is held that long before it is forwarded, in
/// order (chunks sent back to back queue behind each other, as on a slow link).
/// Dropping the proxy closes every connection.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), cloakroom_testkit::ServerError> {
/// let redis = cloakroom_testkit::RedisServer::start().await?;
/// let proxy = cloakroom_testkit::Proxy::start(redis.port()).await?;
/// let url = format!("redis://127.0.0.1:{}", proxy.port()); // for the instance to cut off
/// proxy.freeze();
/// # Ok(()) }
/// ```
pub struct Proxy {
    port: u16,
    frozen: watch::Sender<bool>,
    delay: Arc<Mutex<Duration>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    /// Starts forwarding to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Result<Self, ServerError> {
        let io = |source| ServerError::Io {
            binary: "proxy",
            source,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
        let port = listener.local_addr().map_err(io)?.port();
        let (frozen, _) = watch::channel(false);
        let delay: Arc<Mutex<Duration>> = Arc::default();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (frozen, delay, tasks) = (frozen.clone(), Arc::clone(&delay), Arc::clone(&tasks));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let target = SocketAddr::from(([127, 0, 0, 1], target));
                    let Ok(server) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let link = || Link {
                        frozen: frozen.subscribe(),
                        delay: Arc::clone(&delay),
                    };
                    let up = tokio::spawn(forward(client_read, server_write, link()));
                    let down = tokio::spawn(forward(server_read, client_write, link()));
                    let mut tasks = tasks.lock().unwrap_or_else(PoisonError::into_inner);
                    tasks.push(up.abort_handle());
                    tasks.push(down.abort_handle());
                }
            })
        };
        tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(accept.abort_handle());
        Ok(Self {
            port,
            frozen,
            delay,
            tasks,
        })
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops all traffic, keeping every connection open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Lets traffic flow again, delivering what waited.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Holds each chunk that crosses from now on for `delay` before forwarding it, in each
    /// direction ([`Duration::ZERO`] to stop).
    pub fn delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.port)
    }
}

/// What one direction of a connection obeys.
struct Link {
    frozen: watch::Receiver<bool>,
    delay: Arc<Mutex<Duration>>,
}

/// Copies `from` to `to`, holding each chunk while frozen, and for the delay.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    Link { mut frozen, delay }: Link,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let delay = *delay.lock().unwrap_or_else(PoisonError::into_inner);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
