//! A million sessions in `MemoryStore`: the latency of reads while a sweep removes half of
//! them, against the same reads with no sweep.
//!
//! ```sh
//! cargo run --release -p cloakroom-bench --bin sweep
//! ```
//!
//! Half the sessions (a web app's typical 86-byte payload) expire a second after they are
//! made, the other half in an hour. Once the first half has expired, one thread reads random
//! live sessions (`read_now`, what a request within the refresh interval costs the store) for
//! two seconds with no sweep, then again while another thread runs the store's sweep (the
//! work the background sweeper does once per interval) until it has removed the expired
//! half. Reported: p50, p99 and the slowest read of each phase, and how long the sweep took.
//!
//! Then the background sweeper itself, on a one-thread Tokio runtime (a `current_thread`
//! app): the same million sessions, and a task that yields in a loop while the sweeper runs;
//! reported: the longest the task waited for the thread, which is how long a request on that
//! runtime can be held up by a sweep.
#![allow(clippy::print_stdout)] // a command-line report

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cloakroom::store::SessionStore;
use cloakroom::{MemoryStore, SessionId};

const SESSIONS: usize = 1_000_000;

fn main() {
    // Swept only when this says: not by a background task (no runtime) nor inline (a day).
    let store = MemoryStore::builder()
        .sweep_interval(Duration::from_secs(24 * 3600))
        .build();
    let live = fill(&store);
    let quiet = reads(&store, &live, || std::thread::sleep(Duration::from_secs(2)));
    let mut swept = (0, Duration::ZERO);
    let sweeping = reads(&store, &live, || {
        let began = Instant::now();
        swept = (store.sweep(), began.elapsed());
    });
    assert_eq!(swept.0, SESSIONS / 2, "the sweep removed the expired half");
    println!(
        "sweep: removed {} sessions in {:.0} ms; {} left",
        swept.0,
        swept.1.as_secs_f64() * 1e3,
        store.len()
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>11}",
        "reads of live sessions", "p50", "p99", "slowest", "reads"
    );
    for (phase, latencies) in [("no sweep", &quiet), ("during the sweep", &sweeping)] {
        println!(
            "{:<22} {:>6.2} us {:>6.2} us {:>6.0} us {:>11}",
            phase,
            micros(percentile(latencies, 50)),
            micros(percentile(latencies, 99)),
            micros(latencies.last().copied().unwrap_or_default()),
            latencies.len()
        );
    }
    println!(
        "p99 during the sweep / p99 with none: {:.2}x",
        micros(percentile(&sweeping, 99)) / micros(percentile(&quiet, 99))
    );
    drop(store);
    background_sweep_on_one_thread();
}

/// The background sweeper on a one-thread runtime: how long another task on it waits.
fn background_sweep_on_one_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    runtime.block_on(async {
        let interval = Duration::from_secs(4);
        let store = MemoryStore::builder().sweep_interval(interval).build();
        let built = Instant::now();
        // The sweeper waits for the runtime meanwhile: its interval starts when it is first
        // polled, at this task's first yield after the fill.
        fill(&store);
        let (mut longest, mut last) = (Duration::ZERO, Instant::now());
        while store.len() > SESSIONS / 2 && built.elapsed() < 4 * interval {
            tokio::task::yield_now().await;
            let now = Instant::now();
            longest = longest.max(now - last);
            last = now;
        }
        assert_eq!(
            store.len(),
            SESSIONS / 2,
            "the sweeper removed the expired half"
        );
        println!(
            "background sweep on a one-thread runtime: another task waited at most {:.2} ms",
            longest.as_secs_f64() * 1e3
        );
    });
}

/// Fills `store` with a million sessions, half of them expiring after a second, and returns
/// the ids of the other half once the first half has expired.
fn fill(store: &MemoryStore) -> Vec<SessionId> {
    let (short, _) = cloakroom_bench::web_session(3, Duration::from_secs(1));
    let (long, _) = cloakroom_bench::web_session(3, Duration::from_secs(3600));
    let made = Instant::now();
    let mut live = Vec::with_capacity(SESSIONS / 2);
    for i in 0..SESSIONS {
        let record = if i % 2 == 0 { &short } else { &long };
        let created = cloakroom_bench::ready(store.create(record));
        let id = created.and_then(Result::ok);
        let id = id.unwrap_or_else(|| panic!("create failed"));
        if i % 2 == 1 {
            live.push(id);
        }
    }
    println!(
        "MemoryStore: {SESSIONS} sessions made in {:.1} s; half expire after 1 s",
        made.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(made.elapsed()));
    live
}

/// The latencies, sorted, of reads of random `live` sessions on one thread for as long as
/// `meanwhile` runs on this one.
fn reads(store: &MemoryStore, live: &[SessionId], meanwhile: impl FnOnce()) -> Vec<Duration> {
    let done = AtomicBool::new(false);
    let mut latencies = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut latencies = Vec::with_capacity(4_000_000);
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            while !done.load(Ordering::Relaxed) {
                // xorshift: a random session each time, so reads land on every shard.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let id = &live[(seed % live.len() as u64) as usize];
                let began = Instant::now();
                let found = store.read_now(id);
                latencies.push(began.elapsed());
                assert!(
                    matches!(found, Some(Ok(Some(_)))),
                    "a live session was lost"
                );
            }
            latencies
        });
        meanwhile();
        done.store(true, Ordering::Relaxed);
        reader
            .join()
            .unwrap_or_else(|_| panic!("the reader panicked"))
    });
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted
        .get(sorted.len() * percent / 100)
        .copied()
        .unwrap_or_default()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
