//! A real PostgreSQL server: `initdb` into a temporary directory, then `postgres` on a free
//! loopback port, as an unprivileged user when the tests run as root (PostgreSQL refuses to
//! run as root).

use std::fmt;
use std::process::Command;

use tempfile::TempDir;

use super::{INITDB, POSTGRES, Process, ServerError, temp_dir, with_fresh_ports};

/// The superuser `initdb` makes, and the database it connects to.
const SUPERUSER: &str = "postgres";
/// Users to run PostgreSQL as when the tests run as root, in order of preference: Debian's
/// `postgresql` package makes `postgres`; `nobody` exists everywhere.
const UNPRIVILEGED: [&str; 2] = ["postgres", "nobody"];

/// A PostgreSQL server on a free loopback port: its own cluster in a temporary directory
/// (`initdb`, trust authentication on loopback, `fsync` off), stopped when dropped. Finds
/// `initdb` and `postgres` on `PATH` or in Debian's `/usr/lib/postgresql/<version>/bin`.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), cloakroom_testkit::ServerError> {
/// let postgres = cloakroom_testkit::PostgresServer::start().await?;
/// let url = postgres.url(); // postgres://postgres@127.0.0.1:<port>/postgres
/// # Ok(()) }
/// ```
pub struct PostgresServer {
    process: Process,
    _dir: TempDir,
}

impl PostgresServer {
    /// Makes a cluster and starts a server on it.
    pub async fn start() -> Result<Self, ServerError> {
        let dir = temp_dir(POSTGRES)?;
        let user = unprivileged_user()?;
        if let Some((uid, gid)) = user {
            run(
                Command::new("chown")
                    .arg(format!("{uid}:{gid}"))
                    .arg(dir.path()),
                "chown",
            )?;
        }
        let data = dir.path().join("data");
        let mut initdb = match user {
            Some((uid, gid)) => {
                let mut setpriv = Command::new("setpriv");
                setpriv
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(INITDB.path()?);
                setpriv
            }
            None => Command::new(INITDB.path()?),
        };
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", SUPERUSER, "--auth", "trust", "--no-sync"])
            .args(["--encoding", "UTF8", "--locale", "C"])
            .current_dir(dir.path());
        run(&mut initdb, INITDB.binary)?;
        with_fresh_ports(1, |ports| {
            let (data, dir_path) = (data.clone(), dir.path().to_owned());
            async move {
                let port = ports[0];
                let args: Vec<String> = vec![
                    "-D".to_owned(),
                    data.to_string_lossy().into_owned(),
                    "-p".to_owned(),
                    port.to_string(),
                    "-c".to_owned(),
                    "listen_addresses=127.0.0.1".to_owned(),
                    // No Unix socket: the temporary directory is the only place it may write.
                    "-c".to_owned(),
                    "unix_socket_directories=".to_owned(),
                    "-c".to_owned(),
                    "fsync=off".to_owned(),
                    "-c".to_owned(),
                    "max_connections=300".to_owned(),
                ];
                let mut process = Process::spawn_as(POSTGRES, port, args, &dir_path, user)?;
                wait_ready(&mut process).await?;
                Ok(process)
            }
        })
        .await
        .map(|process| Self { process, _dir: dir })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{SUPERUSER}",
            self.port()
        )
    }

    /// Stops the server at once (`SIGQUIT`, an immediate shutdown: connections are cut, as
    /// in a crash). Its data stays and is recovered by [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Stops it (if it runs) and starts it again on the same port with the same data.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.process.kill();
        self.process.start()?;
        wait_ready(&mut self.process).await
    }

    /// Freezes the server (`SIGSTOP`, the postmaster only: sessions already connected go on).
    pub fn pause(&self) -> Result<(), ServerError> {
        self.process.signal("STOP")
    }

    /// Lets a [paused](Self::pause) server run again.
    pub fn resume(&self) -> Result<(), ServerError> {
        self.process.signal("CONT")
    }
}

impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresServer({})", self.url())
    }
}

/// A startup message for the superuser: a server ready for queries answers `R`
/// (authentication), one still starting or recovering answers `E`.
pub(super) fn startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes()); // protocol 3.0
    for part in ["user", SUPERUSER, "database", SUPERUSER] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut message = len.to_be_bytes().to_vec();
    message.extend(body);
    message
}

async fn wait_ready(process: &mut Process) -> Result<(), ServerError> {
    // The port answers `E` while the server starts up or recovers: wait for `R`.
    process.wait_ready(&startup_message(), b"R").await
}

/// `Some((uid, gid))` of a user to run PostgreSQL as when this process is root; `None`
/// when it is not (then PostgreSQL runs as the current user).
fn unprivileged_user() -> Result<Option<(u32, u32)>, ServerError> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    for user in UNPRIVILEGED {
        if let (Ok(uid), Ok(gid)) = (id(&["-u", user]), id(&["-g", user])) {
            return Ok(Some((uid, gid)));
        }
    }
    Err(ServerError::NotReady {
        binary: POSTGRES.binary,
        port: 0,
        reason: format!(
            "running as root, and none of the users {UNPRIVILEGED:?} exists to run PostgreSQL as (it refuses root)"
        ),
    })
}

/// The number `id <args>` prints.
fn id(args: &[&str]) -> Result<u32, ServerError> {
    let output = Command::new("id")
        .args(args)
        .output()
        .map_err(POSTGRES.io())?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| ServerError::NotReady {
            binary: POSTGRES.binary,
            port: 0,
            reason: format!("`id {}` printed no number", args.join(" ")),
        })
}

fn run(command: &mut Command, what: &'static str) -> Result<(), ServerError> {
    let output = command.output().map_err(POSTGRES.io())?;
    if output.status.success() {
        return Ok(());
    }
    Err(ServerError::NotReady {
        binary: POSTGRES.binary,
        port: 0,
        reason: format!(
            "`{what}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}
