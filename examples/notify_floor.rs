//! The floor under a notified push: the notify call alone, through the same agent and code a
//! delivery uses (`Downstream::send`), against a fluxd, from several threads at once. Prints the
//! calls made, calls per second and this process's CPU (user + system) per call, for
//! `bench/bench.py` to set beside a push's.
//!
//!     notify_floor API THREADS SECONDS      (API as the config's `api:`, e.g. http://127.0.0.1:3030/api/flux)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flux_recv::change::Change;
use flux_recv::downstream::{Downstream, Filter, Kind, OnConnectionRefused, Sent};

/// This process's user + system CPU, in seconds (`/proc/self/stat`, at the usual 100 ticks a
/// second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0)) as f64 / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api, threads, seconds] = args.as_slice() else {
        eprintln!("usage: notify_floor API THREADS SECONDS");
        std::process::exit(2);
    };
    let threads: usize = threads.parse().expect("THREADS is a number");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let downstream = Arc::new(Downstream::new(
        "fluxd",
        Kind::Fluxd { api: api.clone() },
        Filter::default(),
    ));
    let change = Change::git("git@github.com:acme/app.git", "refs/heads/main");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (downstream, change) = (Arc::clone(&downstream), change.clone());
            let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let sent =
                        downstream.send(&change, deadline, OnConnectionRefused::GiveUp, None);
                    assert!(matches!(sent, Sent::Accepted), "fluxd did not accept");
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let (cpu, took) = (cpu_seconds() - cpu, started.elapsed().as_secs_f64());
    let calls = calls.load(Ordering::Relaxed);
    println!(
        "{calls} calls, {:.0} calls/s, {:.1} us CPU per call",
        calls as f64 / took,
        cpu * 1e6 / calls.max(1) as f64
    );
}
