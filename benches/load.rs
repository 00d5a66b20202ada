//! The side-by-side load comparison: the same routes with no session layer, with cloakroom and
//! with tower-sessions, on the memory store, Redis, PostgreSQL and SQLite (tower-sessions on
//! tower-sessions-sqlx-store, on a pool of the same settings as cloakroom-sql's), driven in
//! alternation with the same load on this machine, in one run.
//!
//! ```sh
//! cargo run --release -p cloakroom-bench --bin load            # defaults: 3 rounds of 3 s
//! cargo run --release -p cloakroom-bench --bin load -- --seconds 5 --rounds 5 --connections 32
//! cargo run --release -p cloakroom-bench --bin load -- --only postgres   # or memory, redis, sqlite
//! cargo run --release -p cloakroom-bench --bin load -- --workers 1        # or 0: one per core; default both
//! cargo run --release -p cloakroom-bench --bin load -- --only redis --scenario two   # names' starts
//! ```
//!
//! Each app runs in its own process, in each of two settings: on one Tokio worker thread, and
//! on the multi-thread runtime with a worker per core (what `#[tokio::main]` gives, as users
//! deploy it). The load generator runs on one thread with `--connections` keep-alive HTTP/1.1
//! connections, each its own user (its own session cookie). The command starts its own `redis-server` and PostgreSQL (see
//! cloakroom-testkit); SQLite is a file in a temporary directory, one per app.
//! Scenarios: a read, a write of one key, a create, a write of one key into a session that
//! holds 1 KB and 16 KB more (cloakroom sends the changed key, tower-sessions the record), and
//! on Redis two instances of each app, each user's requests alternating between them, one in
//! four a write (the writes alternate instances too, so each invalidates the other's copy; the
//! local copy's hit rate is reported).
//! Reported: requests per second (median of the rounds), p99 latency, server CPU time per
//! request, and the ratios cloakroom / tower-sessions and cloakroom / no layer, for cloakroom as
//! configured by default (expiry refreshed once per 60 s refresh interval) and refreshing on
//! every request (as tower-sessions' `always_save`).
#![allow(clippy::print_stdout)] // a command-line report

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloakroom_bench::{Flavor, app, set_cookie};
use http::header::COOKIE;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A read-only request on an existing session (idle expiry refreshed).
    Read,
    /// A request that writes one key of an existing session.
    Write,
    /// A request that creates a session (no cookie sent).
    Create,
    /// A request that writes one key of a session that holds this many more bytes.
    WriteBig(u32),
    /// Two instances of each app on one store: each user's requests alternate between them,
    /// one in four a write (so every write invalidates the other instance's copy).
    TwoInstances,
    /// Requests spread at random over this many sessions, reading (or writing one key);
    /// run only when `--scenario many` chooses it.
    Many { sessions: usize, write: bool },
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::Read,
        Scenario::Write,
        Scenario::Create,
        Scenario::WriteBig(1024),
        Scenario::WriteBig(16 * 1024),
        Scenario::TwoInstances,
    ];

    /// The scenarios `--scenario many` adds: a working set of ten thousand sessions, then a
    /// million (each app creates them first, over HTTP, about a minute a million).
    const MANY: [Scenario; 4] = [
        Scenario::Many {
            sessions: 10_000,
            write: false,
        },
        Scenario::Many {
            sessions: 10_000,
            write: true,
        },
        Scenario::Many {
            sessions: 1_000_000,
            write: false,
        },
        Scenario::Many {
            sessions: 1_000_000,
            write: true,
        },
    ];

    /// The instance (0 or 1) and path of a user's `n`th measured request.
    fn step(self, n: u64) -> (usize, &'static str) {
        match self {
            Self::Read | Self::Many { write: false, .. } => (0, "/read"),
            Self::Many { write: true, .. } => (0, "/write"),
            Self::Write | Self::WriteBig(_) => (0, "/write"),
            Self::Create => (0, "/create"),
            // A, B, A, B, then B, A, B, A: the writes (every fourth) alternate instances.
            Self::TwoInstances => {
                let instance = ((n + n / 4) % 2) as usize;
                let path = if n.is_multiple_of(4) {
                    "/write"
                } else {
                    "/read"
                };
                (instance, path)
            }
        }
    }

    /// How many instances of each app the scenario drives (the others idle meanwhile).
    fn instances(self) -> usize {
        if self == Self::TwoInstances { 2 } else { 1 }
    }

    /// Whether the scenario runs on `store`: two instances share a store only where the
    /// store is a server (the memory store and SQLite are each app's own).
    fn runs_on(self, store: &str) -> bool {
        match self {
            Self::TwoInstances | Self::Many { .. } => store == "redis",
            _ => true,
        }
    }

    /// The request that makes the user's session before the measured ones.
    fn setup(self) -> Option<String> {
        match self {
            Self::Create | Self::Many { .. } => None,
            Self::Read | Self::Write | Self::TwoInstances => Some("/write".to_owned()),
            Self::WriteBig(bytes) => Some(format!("/pad/{bytes}")),
        }
    }

    fn name(self) -> String {
        match self {
            Self::Read => "read (TTL refresh)".to_owned(),
            Self::Write => "write one key".to_owned(),
            Self::Create => "create session".to_owned(),
            Self::WriteBig(bytes) => format!("write one, {} KB", bytes / 1024),
            Self::TwoInstances => "two instances".to_owned(),
            Self::Many { sessions, write } => {
                let what = if write { "write" } else { "read" };
                match sessions {
                    1_000_000 => format!("many: {what}, 1M"),
                    n => format!("many: {what}, {}k", n / 1000),
                }
            }
        }
    }
}

struct Options {
    seconds: f64,
    rounds: usize,
    connections: usize,
    only: Option<String>,
    /// Only the scenarios whose name starts with this.
    scenario: Option<String>,
    /// The apps' worker threads, one setting after another; `None`: one per core.
    workers: Vec<Option<usize>>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 3.0,
        rounds: 3,
        connections: 16,
        only: None,
        scenario: None,
        workers: vec![Some(1), None],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let (flag, value) = (
            pair[0].as_str(),
            pair.get(1).map(String::as_str).unwrap_or_default(),
        );
        match flag {
            "--seconds" => options.seconds = parse(flag, value),
            "--rounds" => options.rounds = parse(flag, value),
            "--connections" => options.connections = parse(flag, value),
            "--only" => options.only = Some(value.to_owned()),
            "--scenario" => options.scenario = Some(value.to_owned()),
            "--workers" => {
                options.workers = vec![Some(parse(flag, value)).filter(|&n: &usize| n > 0)]
            }
            other => panic!(
                "unknown option {other:?}: use --seconds, --rounds, --connections, --workers N, --only memory|redis|postgres|sqlite, --scenario NAME (or its start: read, write, create, two)"
            ),
        }
    }
    options
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad value {value:?} for {flag}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let flavor = args.get(2).and_then(|name| Flavor::parse(name));
        let flavor = flavor.unwrap_or_else(|| panic!("serve needs a flavor: {args:?}"));
        let workers = args.get(3).and_then(|workers| workers.parse().ok());
        serve(flavor, workers, args.get(4).cloned());
        return;
    }
    let options = options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    runtime.block_on(compare(options));
}

/// The app of one flavor, on `workers` worker threads (one per core if `None`, as
/// `#[tokio::main]`); prints its port.
fn serve(flavor: Flavor, workers: Option<usize>, redis_url: Option<String>) {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    runtime.block_on(async move {
        let app = app(flavor, redis_url.as_deref()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.unwrap_or_else(|error| panic!("bind: {error}"));
        let port = listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default();
        println!("{port}");
        let _ = axum::serve(listener, app).await;
    });
}

/// A server child process, killed on drop.
struct Server {
    addr: SocketAddr,
    child: Child,
}

impl Server {
    fn start(flavor: Flavor, workers: Option<usize>, redis_url: Option<&str>) -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|error| panic!("current_exe: {error}"));
        let mut command = Command::new(exe);
        let workers = workers.map_or_else(|| "cores".to_owned(), |n| n.to_string());
        command.arg("serve").arg(flavor.name()).arg(workers);
        if let Some(url) = redis_url {
            command.arg(url);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the {} app: {error}", flavor.name()));
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        }
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the {} app printed {line:?}", flavor.name()));
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Default)]
struct Measurement {
    rps: f64,
    p99: Duration,
    errors: u64,
    /// Server CPU time (user + system) per request, from `/proc/<pid>/stat`.
    cpu_per_request: Duration,
    /// The store server's CPU time per request, where it is one process (`redis-server`).
    store_cpu_per_request: Option<Duration>,
}

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

async fn compare(options: Options) {
    let redis = match cloakroom_testkit::RedisServer::start().await {
        Ok(redis) => redis,
        Err(error) => panic!("the Redis comparison needs redis-server: {error}"),
    };
    println!(
        "load: {} connections, {} rounds of {} s per app and scenario, apps in alternation; {} cores",
        options.connections,
        options.rounds,
        options.seconds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "tower-sessions runs with with_always_save(true): without it, it does not refresh the idle expiry on reads."
    );
    println!(
        "cloakroom refreshes the idle expiry (store TTL and cookie Max-Age) once per refresh interval (60 s);"
    );
    println!(
        "within it a read is one store read and sends no Set-Cookie. cloakroom-every refreshes on every request.\n"
    );
    println!("each cell: req/s (p99 latency, server CPU time per request [+ the Redis server's])");
    println!(
        "ratios in req/s (median of the per-round ratios): cloakroom / tower-sessions, cloakroom /"
    );
    println!(
        "no layer, cloakroom-every / tower-sessions, no layer / tower-sessions (the most any layer"
    );
    println!(
        "could reach against tower-sessions); cpu: tower-sessions' server CPU per request / cloakroom's\n"
    );
    println!(
        "{:<8} {:<7} {:<19} {:>36} {:>36} {:>36} {:>36} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "store",
        "workers",
        "scenario",
        "no layer",
        "cloakroom",
        "cloakroom-every",
        "tower-sessions",
        "/theirs",
        "/none",
        "every/t",
        "none/t",
        "cpu"
    );
    let postgres = match cloakroom_testkit::PostgresServer::start().await {
        Ok(postgres) => postgres,
        Err(error) => panic!("the PostgreSQL comparison needs postgresql: {error}"),
    };
    let sqlite =
        tempfile::tempdir().unwrap_or_else(|error| panic!("a temporary directory: {error}"));
    let (redis_url, postgres_url) = (redis.url(), postgres.url());
    let target = |store, url, store_pid| Target {
        store,
        url,
        store_pid,
    };
    let targets = [
        target("memory", None, None),
        target("redis", Some(redis_url.as_str()), redis.pid()),
        target("postgres", Some(postgres_url.as_str()), None),
        target("sqlite", Some(""), None),
    ];
    for target in &targets {
        if options
            .only
            .as_deref()
            .is_some_and(|only| only != target.store)
        {
            continue;
        }
        for workers in &options.workers {
            setting(target, *workers, sqlite.path(), &options).await;
        }
    }
}

/// A store the apps run on.
struct Target<'a> {
    store: &'a str,
    url: Option<&'a str>,
    /// The store server's process, if it is one (its CPU time is reported too).
    store_pid: Option<u32>,
}

/// Every scenario of `target` with the apps on `workers` worker threads, a row each.
async fn setting(
    target: &Target<'_>,
    workers: Option<usize>,
    sqlite: &std::path::Path,
    options: &Options,
) {
    let label = workers.map_or_else(|| "cores".to_owned(), |n| format!("{n}"));
    let url = |flavor: Flavor| match target.store {
        // One SQLite file per app: the apps take turns, but each starts afresh.
        "sqlite" => Some(format!(
            "sqlite:{}",
            sqlite
                .join(format!("{}-{label}.db", flavor.name()))
                .display()
        )),
        _ => target.url.map(str::to_owned),
    };
    // Each flavor's instances: a second one only where a scenario uses it.
    let twins = Scenario::TwoInstances.runs_on(target.store);
    let servers: Vec<Vec<Server>> = Flavor::ALL
        .into_iter()
        .map(|flavor| {
            let url = url(flavor);
            let count = if twins { 2 } else { 1 };
            (0..count)
                .map(|_| Server::start(flavor, workers, url.as_deref()))
                .collect()
        })
        .collect();
    // Each app's sessions for the `Many` scenarios, made as they are needed.
    let mut pools: Vec<Arc<Vec<String>>> = vec![Arc::default(); servers.len()];
    let chosen: Vec<Scenario> = match options.scenario.as_deref() {
        None => Scenario::ALL.to_vec(),
        Some(name) => Scenario::ALL
            .into_iter()
            .chain(Scenario::MANY)
            .filter(|scenario| scenario.name().starts_with(name))
            .collect(),
    };
    for scenario in chosen {
        if !scenario.runs_on(target.store) {
            continue;
        }
        if let Scenario::Many { sessions, .. } = scenario {
            for (instances, pool) in servers.iter().zip(&mut pools) {
                populate(&instances[0], Arc::make_mut(pool), sessions).await;
            }
        }
        let hits_before = cache_stats(&servers).await;
        let mut runs: Vec<Vec<Measurement>> = vec![Vec::new(); servers.len()];
        for _ in 0..options.rounds {
            for (i, instances) in servers.iter().enumerate() {
                let pool = Arc::clone(&pools[i]);
                let instances = &instances[..scenario.instances().min(instances.len())];
                let run = drive(instances, &pool, target.store_pid, scenario, options);
                runs[i].push(run.await);
            }
        }
        let hits_after = cache_stats(&servers).await;
        // Ratios per round (apps measured back to back) are steadier than ratios of
        // medians when the machine's speed drifts.
        let ratio = |a: usize, b: usize| {
            let mut per_round: Vec<f64> = runs[a]
                .iter()
                .zip(&runs[b])
                .map(|(x, y)| x.rps / y.rps)
                .collect();
            per_round.sort_by(f64::total_cmp);
            per_round.get(per_round.len() / 2).copied().unwrap_or(0.0)
        };
        let (vs_theirs, vs_none, every_vs_theirs) = (ratio(1, 3), ratio(1, 0), ratio(2, 3));
        let ceiling = ratio(0, 3);
        let medians: Vec<Measurement> = runs.into_iter().map(median).collect();
        let cell = |m: &Measurement| {
            let errors = if m.errors > 0 {
                format!(" {}err", m.errors)
            } else {
                String::new()
            };
            let store = m.store_cpu_per_request.map_or_else(String::new, |cpu| {
                format!(" +{:.1}", cpu.as_secs_f64() * 1e6)
            });
            format!(
                "{:.0} ({:.2} ms, {:.1}{store} us){errors}",
                m.rps,
                m.p99.as_secs_f64() * 1000.0,
                m.cpu_per_request.as_secs_f64() * 1e6
            )
        };
        println!(
            "{:<8} {:<7} {:<19} {:>36} {:>36} {:>36} {:>36} {:>6.2}x {:>6.2}x {:>6.2}x {:>6.2}x {:>6.2}x",
            target.store,
            label,
            scenario.name(),
            cell(&medians[0]),
            cell(&medians[1]),
            cell(&medians[2]),
            cell(&medians[3]),
            vs_theirs,
            vs_none,
            every_vs_theirs,
            ceiling,
            medians[3].cpu_per_request.as_secs_f64() / medians[1].cpu_per_request.as_secs_f64(),
        );
        if matches!(scenario, Scenario::TwoInstances | Scenario::Many { .. }) {
            let rates: Vec<String> = Flavor::ALL
                .iter()
                .zip(hits_before.iter().zip(&hits_after))
                .filter_map(|(flavor, (before, after))| {
                    let ((hits, misses), (hits_then, misses_then)) =
                        (after.as_ref()?, before.as_ref()?);
                    let (hits, misses) = (hits - hits_then, misses - misses_then);
                    let rate = hits as f64 / (hits + misses).max(1) as f64;
                    Some(format!("{} {:.0}%", flavor.name(), rate * 100.0))
                })
                .collect();
            println!(
                "{:<36} local copy hit rate (all instances): {}",
                "",
                rates.join(", ")
            );
        }
    }
}

/// Each app's local-copy hits and misses, summed over its instances, where it reports them
/// (`/stats`: cloakroom on Redis).
async fn cache_stats(apps: &[Vec<Server>]) -> Vec<Option<(u64, u64)>> {
    let mut stats = Vec::new();
    for instances in apps {
        stats.push(app_cache_stats(instances).await);
    }
    stats
}

async fn app_cache_stats(instances: &[Server]) -> Option<(u64, u64)> {
    let mut total = None;
    for server in instances {
        let mut sender = connect(server.addr).await;
        let request = http::Request::builder()
            .uri("/stats")
            .header("host", "127.0.0.1")
            .body(Empty::new())
            .unwrap_or_else(|error| panic!("request: {error}"));
        let response = sender.send_request(request).await.ok()?;
        if response.status() != http::StatusCode::OK {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        let (hits, misses) = text.split_once(' ')?;
        let (sum_hits, sum_misses) = total.unwrap_or((0, 0));
        total = Some((
            sum_hits + hits.parse::<u64>().ok()?,
            sum_misses + misses.parse::<u64>().ok()?,
        ));
    }
    total
}

/// Creates sessions on `server` until `pool` holds `count` cookies (none for an app without
/// sessions), over 64 connections.
async fn populate(server: &Server, pool: &mut Vec<String>, count: usize) {
    const CONNECTIONS: usize = 64;
    let missing = count.saturating_sub(pool.len());
    if missing == 0 {
        return;
    }
    let began = Instant::now();
    let creators: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let share = missing / CONNECTIONS + usize::from(n < missing % CONNECTIONS);
            let addr = server.addr;
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let mut cookies = Vec::with_capacity(share);
                for _ in 0..share {
                    cookies.extend(send(&mut sender, "/create", None).await.1);
                }
                cookies
            })
        })
        .collect();
    for creator in creators {
        pool.extend(creator.await.unwrap_or_default());
    }
    if !pool.is_empty() {
        println!(
            "  {} sessions on {} in {:.1} s",
            pool.len(),
            server.addr,
            began.elapsed().as_secs_f64()
        );
    }
}

/// A keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await;
    let stream = stream.unwrap_or_else(|error| panic!("connect {addr}: {error}"));
    let _ = stream.set_nodelay(true);
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await;
    let (sender, connection) = handshake.unwrap_or_else(|error| panic!("handshake: {error}"));
    tokio::spawn(connection);
    sender
}

fn median(mut runs: Vec<Measurement>) -> Measurement {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    runs.get(runs.len() / 2).copied().unwrap_or_default()
}

/// `connections` users hammer an app's `instances` for the configured time after a short
/// warm-up. `store_pid`: the store server's process, whose CPU time per request is measured
/// too.
async fn drive(
    instances: &[Server],
    pool: &Arc<Vec<String>>,
    store_pid: Option<u32>,
    scenario: Scenario,
    options: &Options,
) -> Measurement {
    let warmup = Duration::from_millis(300);
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs_f64(options.seconds);
    let addrs: Vec<SocketAddr> = instances.iter().map(|server| server.addr).collect();
    let users: Vec<_> = (0..options.connections)
        .map(|n| {
            let sessions = Sessions {
                pool: Arc::clone(pool),
                seed: n as u64 + 1,
            };
            tokio::spawn(user(addrs.clone(), sessions, scenario, start, end))
        })
        .collect();
    let app_cpu = || -> Duration { instances.iter().map(|s| cpu_time(s.child.id())).sum() };
    tokio::time::sleep_until(start.into()).await;
    let cpu_before = app_cpu();
    let store_cpu_before = store_pid.map(cpu_time);
    let mut latencies = Vec::new();
    let mut errors = 0;
    tokio::time::sleep_until(end.into()).await;
    let cpu = app_cpu().saturating_sub(cpu_before);
    let store_cpu = store_pid
        .zip(store_cpu_before)
        .map(|(pid, before)| cpu_time(pid).saturating_sub(before));
    for user in users {
        if let Ok((mut mine, failed)) = user.await {
            latencies.append(&mut mine);
            errors += failed;
        }
    }
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    let requests = latencies.len().max(1) as u32;
    Measurement {
        rps: latencies.len() as f64 / options.seconds,
        p99,
        errors,
        cpu_per_request: cpu / requests,
        store_cpu_per_request: store_cpu.map(|cpu| cpu / requests),
    }
}

/// One user on one keep-alive connection to each of `addrs`: latencies measured between
/// `start` and `end`, and the number of non-200 answers.
async fn user(
    addrs: Vec<SocketAddr>,
    mut sessions: Sessions,
    scenario: Scenario,
    start: Instant,
    end: Instant,
) -> (Vec<Duration>, u64) {
    let mut senders = Vec::new();
    for addr in addrs {
        senders.push(connect(addr).await);
    }
    let mut cookie: Option<String> = None;
    if let Some((setup, sender)) = scenario.setup().zip(senders.first_mut()) {
        cookie = send(sender, &setup, None).await.1;
    }
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    for n in 0.. {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let sent = match scenario {
            Scenario::Create => None,
            Scenario::Many { sessions: n, .. } => sessions.pick(n),
            _ => cookie.as_deref(),
        };
        let (instance, path) = scenario.step(n);
        let Some(sender) = senders.get_mut(instance) else {
            panic!("{} needs instance {instance}", scenario.name());
        };
        let (ok, set_cookie) = send(sender, path, sent).await;
        if began >= start {
            latencies.push(began.elapsed());
            errors += u64::from(!ok);
        }
        if scenario != Scenario::Create && set_cookie.is_some() {
            cookie = set_cookie;
        }
    }
    (latencies, errors)
}

/// The sessions a user of a `Many` scenario spreads its requests over, at random.
struct Sessions {
    pool: Arc<Vec<String>>,
    /// A xorshift generator's state (never 0).
    seed: u64,
}

impl Sessions {
    /// The cookie of one of the pool's first `n` sessions.
    fn pick(&mut self, n: usize) -> Option<&str> {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let len = self.pool.len().min(n);
        let index = (self.seed % len.max(1) as u64) as usize;
        self.pool.get(index).map(String::as_str)
    }
}

/// One request; whether it answered 200, and the `name=value` of its `Set-Cookie`.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
    cookie: Option<&str>,
) -> (bool, Option<String>) {
    let mut request = http::Request::builder()
        .uri(path)
        .header("host", "127.0.0.1");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let request = request
        .body(Empty::new())
        .unwrap_or_else(|error| panic!("request: {error}"));
    let Ok(response) = sender.send_request(request).await else {
        return (false, None);
    };
    let ok = response.status() == http::StatusCode::OK;
    let set_cookie = set_cookie(response.headers());
    let _ = response.into_body().collect().await;
    (ok, set_cookie)
}
