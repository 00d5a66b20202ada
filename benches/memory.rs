//! Memory per session in `MemoryStore`: 100,000 sessions of a given payload, measured as the
//! growth of the process's resident memory (so allocator overhead counts, as it does in a
//! real service), next to the payload itself.
//!
//! ```sh
//! cargo run --release -p cloakroom-bench --bin memory
//! ```
#![allow(clippy::print_stdout)] // a command-line report

use std::time::Duration;

use cloakroom::MemoryStore;
use cloakroom::store::SessionStore;

const SESSIONS: usize = 100_000;

/// Resident memory of this process in bytes.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Measures `items` in this process: `(payload, bytes per session)`.
fn measure(items: usize) -> (usize, f64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    let (record, payload) = cloakroom_bench::web_session(items, Duration::from_secs(3600));
    let store = MemoryStore::new();
    let before = resident();
    runtime.block_on(async {
        for _ in 0..SESSIONS {
            if let Err(error) = store.create(&record).await {
                panic!("{error}");
            }
        }
    });
    let grown = resident().saturating_sub(before);
    (payload, grown as f64 / SESSIONS as f64)
}

fn main() {
    // Each size runs in a fresh process, so memory freed by one cannot be reused by the next.
    if let Some(items) = std::env::args().nth(1).and_then(|arg| arg.parse().ok()) {
        let (payload, per_session) = measure(items);
        println!("{payload} {per_session}");
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|error| panic!("{error}"));
    println!(
        "MemoryStore, {SESSIONS} sessions each; resident memory growth per session vs payload"
    );
    println!(
        "{:>14} {:>18} {:>10}",
        "payload bytes", "RAM per session", "ratio"
    );
    for items in [0, 40, 120, 400] {
        let output = std::process::Command::new(&exe)
            .arg(items.to_string())
            .output()
            .unwrap_or_else(|error| panic!("{error}"));
        let line = String::from_utf8_lossy(&output.stdout);
        let mut fields = line.split_whitespace();
        let payload: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let per_session: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        println!(
            "{:>14.0} {:>16.0} B {:>9.2}x",
            payload,
            per_session,
            per_session / payload
        );
    }
}
