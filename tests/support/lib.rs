//! Helpers for the end-to-end tests: a real HTTP server on an ephemeral loopback port, a small
//! browser-like client that keeps the session cookie, a store wrapper that counts calls and
//! can be switched off, and the small helpers the store crates' tests share.

// Only ever a dev-dependency (`publish = false`): its helpers are test code, which clippy
// cannot tell from library code (clippy.toml's allowances reach only `#[test]` functions and
// `#[cfg(test)]` modules), so a failed `expect` here is a failed test.
#![allow(clippy::expect_used)]

pub mod app;

/// Every Rust snippet of the READMEs, compiled and run as a doctest (`build.rs` makes the
/// copies these include).
#[cfg(doctest)]
mod readmes {
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/README.md"))]
    struct Readme;
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/cloakroom-redis.md"))]
    struct Redis;
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/cloakroom-memcache.md"))]
    struct Memcache;
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/cloakroom-fs.md"))]
    struct Fs;
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/cloakroom-cookie.md"))]
    struct Cookie;
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/cloakroom-testkit.md"))]
    struct Testkit;
    #[doc = include_str!(concat!(env!("OUT_DIR"), "/cloakroom-sql.md"))]
    struct Sql;
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cloakroom::SessionId;
use cloakroom::store::{Changes, Entry, FailureKind, Record, SessionStore, StoreError, Update};
use cloakroom_testkit::RedisCluster;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Asserts that README.md shows the program `path` (from the repository's root) character for
/// character: the code block right after the line `<!-- {path}: a test keeps the two the same -->`
/// is the file from its first line that is not `//!` documentation or blank.
pub fn assert_readme_shows(path: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let file = std::fs::read_to_string(format!("{root}/{path}")).expect("the program");
    let program: String = file
        .split_inclusive('\n')
        .skip_while(|line| line.starts_with("//!") || line.trim().is_empty())
        .collect();
    let marker = format!("<!-- {path}: a test keeps the two the same -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md lost the line {marker:?}"))
        .1;
    let block = after
        .trim_start()
        .strip_prefix("```rust,no_run\n")
        .and_then(|code| code.split_once("\n```\n"))
        .map(|(code, _)| format!("{code}\n"));
    assert_eq!(
        block.as_deref(),
        Some(program.as_str()),
        "README.md's example differs from {path}: copy one over the other"
    );
}

/// The `redis-cluster://` URL of a test cluster.
pub fn cluster_url(cluster: &RedisCluster) -> String {
    let ports = cluster.ports();
    format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    )
}

/// The changes that set `key` to the JSON `json` (not a flash), and nothing else.
pub fn set(key: &str, json: &str) -> Changes {
    Changes {
        entries: vec![(
            key.to_owned(),
            Some(Entry {
                json: json.to_owned(),
                flash: false,
            }),
        )],
        ..Changes::default()
    }
}

/// A new session's record of `owner`, signed in now, that lives `idle` without requests.
pub fn owned(owner: &str, idle: std::time::Duration) -> cloakroom::store::Record {
    let now = std::time::SystemTime::now();
    let mut record = cloakroom::store::Record::new(now, idle, None);
    record.owner = Some(cloakroom::store::Owner {
        name: owner.to_owned(),
        since: now,
        user_agent: None,
        address: None,
    });
    record
}

/// A server on `127.0.0.1:<ephemeral>` serving `service`, stopped when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `service` over HTTP/1.1 on a free loopback port.
    pub async fn start<S, B>(service: S) -> Self
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port to bind");
        let addr = listener.local_addr().expect("the listener's address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// A new browser (with an empty cookie jar) pointed at this server.
    pub fn browser(&self) -> Browser {
        Browser::new(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A compiled example of `cloakroom-examples`, running on a free loopback port; killed when
/// dropped.
pub struct Example {
    /// Where it listens, as it printed.
    pub addr: SocketAddr,
    _child: Child,
}

impl Example {
    /// Starts example `name` with `PORT=0` and a fixed secret, and waits for the URL it prints.
    ///
    /// `cargo test -p cloakroom-examples` builds the package's examples into the directory next
    /// to the test binaries' `deps`, which is where this looks.
    pub async fn start(name: &str) -> Self {
        Self::start_with_env(name, &[]).await
    }

    /// As [`Example::start`], with more environment variables.
    pub async fn start_with_env(name: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(Self::binary(name))
            .env("PORT", "0")
            .env(
                "SESSION_SECRETS",
                "a test secret that is longer than 32 bytes",
            )
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start example {name}: {error}"));
        let stdout = child.stdout.take().expect("the example's stdout, piped");
        let mut lines = BufReader::new(stdout).lines();
        // The first line naming a URL: log lines may come before it.
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let addr = line
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix("http://"))
                    .and_then(|rest| rest.trim_end_matches('/').parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    return Some(addr);
                }
            }
            None
        })
        .await;
        let Ok(Some(mut addr)) = addr else {
            panic!("{name} printed no URL");
        };
        // Keep reading, so that an app which logs to stdout never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // An app listening on every interface (0.0.0.0) is reached on loopback.
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Self {
            addr,
            _child: child,
        }
    }
}

impl Example {
    /// The built binary of example `name`: `cargo test -p cloakroom-examples` builds the
    /// package's examples into the directory next to the test binaries' `deps`, and a
    /// package's own binaries (the quick start's) into the one above it.
    fn binary(name: &str) -> std::path::PathBuf {
        let exe = std::env::current_exe().unwrap_or_default();
        let profile = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        // A package's own binary first: a stale example of the same name (the quick start
        // was one once) must not stand in for it.
        let candidates = [profile.join(name), profile.join("examples").join(name)];
        let found = candidates.iter().find(|path| path.exists());
        if let Some(found) = found.filter(|binary| !Self::older_than_its_source(name, binary)) {
            return found.clone();
        }
        // `cargo test --test NAME` builds no examples: build this one where the others go.
        Self::build(name, &profile);
        candidates
            .iter()
            .find(|path| path.exists())
            .cloned()
            .unwrap_or_else(|| panic!("example binary {name} missing in {profile:?}"))
    }

    /// Whether `binary` was built before one of its sources last changed (the files cargo's
    /// dep-info `NAME.d` beside it lists: the example's and every library crate's), so that
    /// `cargo test --test NAME` would run an old program.
    fn older_than_its_source(name: &str, binary: &std::path::Path) -> bool {
        let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified());
        // A package's own binary has no dep-info beside it; cargo builds those for every
        // integration test run anyway.
        let Ok(built) = modified(binary) else {
            return false;
        };
        let Ok(dep_info) = std::fs::read_to_string(binary.with_file_name(format!("{name}.d")))
        else {
            return false;
        };
        // `target: source source ...`, spaces in a path escaped as `\ `.
        let sources = dep_info
            .lines()
            .next()
            .and_then(|line| line.split_once(": "));
        let sources = sources.map(|(_, sources)| sources.replace("\\ ", "\0"));
        sources
            .unwrap_or_default()
            .split_whitespace()
            .any(|source| {
                let source = std::path::PathBuf::from(source.replace('\0', " "));
                modified(&source).is_ok_and(|changed| changed > built)
            })
    }

    /// `cargo build --example name` for the package under test, into `profile`'s directory.
    fn build(name: &str, profile: &std::path::Path) {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock();
        let package = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
        let manifest = std::path::Path::new(&package).join("Cargo.toml");
        let mut build =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        build
            .args(["build", "--locked", "--example", name, "--manifest-path"])
            .arg(&manifest);
        // What cargo set for this test run is not the nested build's: a build script that
        // tracks one (ring's reads CARGO_MANIFEST_DIR) would rebuild half the workspace.
        for (variable, _) in std::env::vars_os() {
            let variable = variable.to_string_lossy();
            let of_the_run = [
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_MANIFEST_",
            ]
            .iter()
            .any(|prefix| variable.starts_with(prefix));
            if of_the_run
                || variable == "CARGO_TARGET_TMPDIR"
                || variable == "CARGO_PRIMARY_PACKAGE"
            {
                build.env_remove(&*variable);
            }
        }
        if let Some(target_dir) = profile.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        if profile.ends_with("release") {
            build.arg("--release");
        }
        #[allow(clippy::print_stderr)] // a build of a minute or two must not look hung
        {
            eprintln!("building example {name} (cargo test --test builds no examples)");
        }
        let status = build
            .status()
            .unwrap_or_else(|error| panic!("cannot run cargo to build example {name}: {error}"));
        assert!(status.success(), "cargo could not build example {name}");
    }

    /// Runs example `name` with `env` (and without the fixed secret) until it exits, which it
    /// must within 30 s; its exit status and what it printed to stderr.
    pub async fn exit(name: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
        let run = Command::new(Self::binary(name))
            .env("PORT", "0")
            .env("RUST_LOG", "off")
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit"))
            .unwrap_or_else(|error| panic!("cannot run example {name}: {error}"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status, stderr)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body as text.
    pub body: String,
}

impl TestResponse {
    /// Every `Set-Cookie` header, as text.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    }

    /// The `Set-Cookie` header for cookie `name`, if there is one.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    }
}

/// A client that keeps cookies like a browser does (by name; `Max-Age=0` deletes).
#[derive(Clone)]
pub struct Browser {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    jar: Arc<Mutex<HashMap<String, String>>>,
    user_agent: Option<Arc<str>>,
}

impl Browser {
    /// The server it talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A browser with an empty jar talking to `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            jar: Arc::default(),
            user_agent: None,
        }
    }

    /// This browser, sending `User-Agent: user_agent` with every request.
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The value of cookie `name` in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().ok()?.get(name).cloned()
    }

    /// Puts a cookie into the jar by hand (a forged or replayed one, say).
    pub fn set_cookie(&self, name: &str, value: &str) {
        if let Ok(mut jar) = self.jar.lock() {
            jar.insert(name.to_owned(), value.to_owned());
        }
    }

    /// `GET path` with the jar's cookies.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a form body.
    pub async fn post_form(&self, path: &str, form: &str) -> TestResponse {
        self.send(Method::POST, path, Some(form.to_owned())).await
    }

    async fn send(&self, method: Method, path: &str, form: Option<String>) -> TestResponse {
        let cookie_header = {
            let jar = self.jar.lock().map(|jar| jar.clone()).unwrap_or_default();
            jar.iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        if !cookie_header.is_empty() {
            request = request.header(COOKIE, cookie_header);
        }
        if form.is_some() {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        if let Some(user_agent) = &self.user_agent {
            request = request.header("user-agent", user_agent.as_ref());
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .expect("a valid test request");
        let response = self.raw(request).await;
        for set_cookie in response.set_cookies() {
            self.remember(&set_cookie);
        }
        response
    }

    /// Sends `request` as it is (no jar), and reads the whole response.
    pub async fn raw(&self, request: Request<Full<Bytes>>) -> TestResponse {
        let response = self.client.request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the response body").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn remember(&self, set_cookie: &str) {
        let Some((pair, attributes)) = set_cookie.split_once(';').or(Some((set_cookie, ""))) else {
            return;
        };
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        let Ok(mut jar) = self.jar.lock() else { return };
        if attributes.contains("Max-Age=0") {
            jar.remove(name);
        } else {
            jar.insert(name.to_owned(), value.to_owned());
        }
    }
}

/// Which store calls an [`Instrumented`] store has seen.
#[derive(Debug, Default)]
pub struct Calls {
    load: AtomicUsize,
    read: AtomicUsize,
    create: AtomicUsize,
    update: AtomicUsize,
    delete: AtomicUsize,
    /// The keys of the last `update`.
    pub last_update_keys: Mutex<Vec<String>>,
    /// Whether the last `update` asked for the expiry to be refreshed.
    pub last_update_touch: AtomicBool,
    /// Calls waiting out their delay right now.
    pub waiting: AtomicUsize,
}

/// How many calls of each kind a store saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `load` calls (read and refresh the expiry).
    pub load: usize,
    /// `read` calls (read only).
    pub read: usize,
    /// `create` calls.
    pub create: usize,
    /// `update` calls.
    pub update: usize,
    /// `delete` calls.
    pub delete: usize,
}

impl Calls {
    /// The calls so far.
    pub fn counts(&self) -> Counts {
        Counts {
            load: self.load.load(Ordering::SeqCst),
            read: self.read.load(Ordering::SeqCst),
            create: self.create.load(Ordering::SeqCst),
            update: self.update.load(Ordering::SeqCst),
            delete: self.delete.load(Ordering::SeqCst),
        }
    }
}

/// Counts a call in [`Calls::waiting`] while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::SeqCst);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error of an [`Instrumented`] store.
#[derive(Debug, thiserror::Error)]
pub enum TestStoreError<E> {
    /// The test switched the store off.
    #[error("store is down (switched off by the test)")]
    Down,
    /// The wrapped store failed.
    #[error(transparent)]
    Inner(E),
}

/// Down is an outage (503); the wrapped store's errors keep their kind.
impl<E: StoreError> StoreError for TestStoreError<E> {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Down => FailureKind::Unavailable,
            Self::Inner(error) => error.failure_kind(),
        }
    }
}

/// Wraps a real store, counting its calls; [`Instrumented::set_down`] makes every call fail as
/// a store that is unreachable would, and [`Instrumented::set_delay`] makes calls wait as a
/// slow or hung one does.
#[derive(Clone)]
pub struct Instrumented<St> {
    inner: St,
    /// The calls seen.
    pub calls: Arc<Calls>,
    down: Arc<AtomicBool>,
    delays: Arc<Mutex<Delays>>,
    at_once: bool,
}

/// How long an [`Instrumented`] store's calls wait before they go on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delays {
    /// Before `load` and `read` (the ones that wait: `read_now` never does).
    pub reads: Duration,
    /// Before `create` and `update`.
    pub writes: Duration,
    /// Before `delete`.
    pub deletes: Duration,
}

impl<St> Instrumented<St> {
    /// Wraps `inner`.
    pub fn new(inner: St) -> Self {
        Self {
            inner,
            calls: Arc::default(),
            down: Arc::default(),
            delays: Arc::default(),
            at_once: true,
        }
    }

    /// Never answers `read_now`, as a store that must always wait (a database) does, so the
    /// layer takes its boxed path even where the wrapped store could answer at once.
    pub fn always_waiting(mut self) -> Self {
        self.at_once = false;
        self
    }

    /// Switches the store off (`true`) or back on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes calls wait (`Duration::MAX`: for ever, a hung store); calls already waiting keep
    /// their delay.
    pub fn set_delay(&self, delays: Delays) {
        if let Ok(mut current) = self.delays.lock() {
            *current = delays;
        }
    }

    /// Waits the delay `pick` chooses, then counts the call.
    async fn enter<E>(
        &self,
        pick: fn(&Delays) -> Duration,
        counter: &AtomicUsize,
    ) -> Result<(), TestStoreError<E>> {
        let delay = pick(&self.delays.lock().map(|d| *d).unwrap_or_default());
        if !delay.is_zero() {
            let _waiting = Waiting::new(&self.calls.waiting);
            if delay == Duration::MAX {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(delay).await;
            }
        }
        self.check(counter)
    }

    fn check<E>(&self, counter: &AtomicUsize) -> Result<(), TestStoreError<E>> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(TestStoreError::Down)
        } else {
            Ok(())
        }
    }
}

impl<St: SessionStore> SessionStore for Instrumented<St> {
    type Error = TestStoreError<St::Error>;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, Self::Error> {
        self.enter(|d| d.reads, &self.calls.load).await?;
        self.inner.load(id).await.map_err(TestStoreError::Inner)
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Record>, Self::Error> {
        self.enter(|d| d.reads, &self.calls.read).await?;
        self.inner.read(id).await.map_err(TestStoreError::Inner)
    }

    /// Answers when the wrapped store does, counted as a `read` (and failing when down).
    fn read_now(&self, id: &SessionId) -> Option<Result<Option<Record>, Self::Error>> {
        if !self.at_once {
            return None;
        }
        let answer = self.inner.read_now(id)?;
        Some(
            self.check(&self.calls.read)
                .and_then(|()| answer.map_err(TestStoreError::Inner)),
        )
    }

    async fn create(&self, record: &Record) -> Result<SessionId, Self::Error> {
        self.enter(|d| d.writes, &self.calls.create).await?;
        self.inner
            .create(record)
            .await
            .map_err(TestStoreError::Inner)
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, Self::Error> {
        self.enter(|d| d.writes, &self.calls.update).await?;
        if let Ok(mut keys) = self.calls.last_update_keys.lock() {
            *keys = changes.entries.iter().map(|(key, _)| key.clone()).collect();
        }
        self.calls
            .last_update_touch
            .store(changes.touch, Ordering::SeqCst);
        self.inner
            .update(id, changes)
            .await
            .map_err(TestStoreError::Inner)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.enter(|d| d.deletes, &self.calls.delete).await?;
        self.inner.delete(id).await.map_err(TestStoreError::Inner)
    }
}
