//! Instructions per request, counted by callgrind (deterministic, where timings drift with the
//! machine): each app of [`Flavor::ALL`] on the memory store, in process, for a read within the
//! refresh interval and a write of one key.
//!
//! ```sh
//! cargo run --release -p cloakroom-bench --bin instructions
//! ```
//!
//! It runs itself under `valgrind --tool=callgrind` twice per case, with `N` and `2N`
//! requests, and reports the difference divided by `N`: the cost of one request, without the
//! start-up. The figure "added by the layer" is an app's count minus no layer's.

use std::process::Command;

use cloakroom_bench::{Flavor, app, call, serving};

const N: usize = 2_000;
const SCENARIOS: [&str; 2] = ["read", "write"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run") {
        let flavor = args.get(2).and_then(|name| Flavor::parse(name));
        let flavor = flavor.unwrap_or_else(|| panic!("run needs a flavor: {args:?}"));
        let path = format!("/{}", args.get(3).map_or("read", String::as_str));
        let requests = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(N);
        return run(flavor, &path, requests);
    }
    let exe = std::env::current_exe().unwrap_or_else(|error| panic!("{error}"));
    let mut rows = Vec::new();
    for flavor in Flavor::ALL {
        let counts: Vec<u64> = SCENARIOS
            .iter()
            .map(|scenario| {
                let count = |n: usize| collected(&exe, flavor, scenario, n);
                (count(2 * N) - count(N)) / N as u64
            })
            .collect();
        rows.push((flavor, counts));
    }
    let base = rows[0].1.clone();
    report(&rows, &base);
}

/// Requests `path` `requests` times on `flavor`'s app, with a cookie from one write first.
fn run(flavor: Flavor, path: &str, requests: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    runtime.block_on(async {
        let app = serving(app(flavor, None).await);
        let cookie = call(&app, "/write", None).await;
        for _ in 0..requests {
            std::hint::black_box(call(&app, path, cookie.as_deref()).await);
        }
    });
}

/// The instructions callgrind collected for one `run`.
fn collected(exe: &std::path::Path, flavor: Flavor, scenario: &str, requests: usize) -> u64 {
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(["run", flavor.name(), scenario, &requests.to_string()])
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run valgrind ({error}): install the Debian package valgrind")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in valgrind's output:\n{stderr}"))
}

#[allow(clippy::print_stdout)]
fn report(rows: &[(Flavor, Vec<u64>)], base: &[u64]) {
    println!("| app | read | write | added: read | added: write |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (flavor, counts) in rows {
        let added: Vec<i64> = counts
            .iter()
            .zip(base)
            .map(|(count, base)| *count as i64 - *base as i64)
            .collect();
        println!(
            "| {} | {} | {} | {} | {} |",
            flavor.name(),
            counts[0],
            counts[1],
            added[0],
            added[1]
        );
    }
}
