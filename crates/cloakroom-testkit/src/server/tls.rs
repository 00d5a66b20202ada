//! A `redis-server` that speaks TLS only, with a certificate authority made for the test.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{Process, Program, REDIS_SERVER, ServerError, redis_args, temp_dir, with_fresh_ports};

const OPENSSL: Program = Program {
    binary: "openssl",
    package: "openssl",
    versions: None,
};

/// A standalone `redis-server` whose clients must speak TLS, with a certificate for
/// `localhost` and `127.0.0.1` signed by a CA made for it ([`ca_file`](Self::ca_file), to
/// trust in the client). Its plain port stays on loopback for readiness checks only.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), cloakroom_testkit::ServerError> {
/// let redis = cloakroom_testkit::RedisTls::start().await?;
/// let url = redis.url(); // rediss://localhost:<port>
/// let ca = std::fs::read(redis.ca_file()); // PEM, for the client's root store
/// # Ok(()) }
/// ```
pub struct RedisTls {
    process: Process,
    tls_port: u16,
    dir: TempDir,
}

impl RedisTls {
    /// Makes the certificates (with `openssl`) and starts the server.
    pub async fn start() -> Result<Self, ServerError> {
        OPENSSL.path()?;
        with_fresh_ports(2, |ports| async move {
            let dir = temp_dir(REDIS_SERVER)?;
            certificates(dir.path())?;
            let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
            let mut args = redis_args(ports[0]);
            args.extend([
                "--tls-port".to_owned(),
                ports[1].to_string(),
                "--tls-cert-file".to_owned(),
                file("server.crt"),
                "--tls-key-file".to_owned(),
                file("server.key"),
                "--tls-ca-cert-file".to_owned(),
                file("ca.crt"),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ]);
            let mut process = Process::spawn(REDIS_SERVER, ports[0], args, dir.path())?;
            process.wait_ready(b"PING\r\n", b"+PONG").await?;
            Ok(Self {
                process,
                tls_port: ports[1],
                dir,
            })
        })
        .await
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.tls_port
    }

    /// `rediss://localhost:<tls port>`.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTls({}, plain {})", self.url(), self.process.port)
    }
}

/// A CA and a server certificate it signed, in `dir`: `ca.crt`, `server.crt`, `server.key`.
fn certificates(dir: &Path) -> Result<(), ServerError> {
    let extensions = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                      extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::fs::write(dir.join("server.ext"), extensions).map_err(OPENSSL.io())?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat()
        .into_iter()
        .chain(["-days", "2", "-subj", "/CN=cloakroom test CA"])
        .collect(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat()
        .into_iter()
        .chain(["-subj", "/CN=localhost"])
        .collect(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for step in steps {
        let output = Command::new(OPENSSL.path()?)
            .args(&step)
            .current_dir(dir)
            .output()
            .map_err(OPENSSL.io())?;
        if !output.status.success() {
            return Err(ServerError::NotReady {
                binary: OPENSSL.binary,
                port: 0,
                reason: format!(
                    "openssl {} failed: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
    }
    Ok(())
}
