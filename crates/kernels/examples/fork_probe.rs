//! How long the rayon pool takes to start a task and to report it done, seen from a thread
//! outside the pool (where the kernels are called from): with rayon's own join, which puts the
//! caller to sleep until a worker wakes it, and with the caller spinning on a flag instead (as
//! `par::fork` in this crate does). Each fork follows a pause of `gap` µs, during which an idle
//! worker may fall asleep.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p tapestry-kernels --example fork_probe`

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Busy-waits for `us` microseconds.
fn spin_for(us: f64) {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() * 1e6 < us {}
}

/// The median and 90th percentile of `v`.
fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

fn main() {
    const ROUNDS: usize = 2000;
    println!("# rayon threads: {}", rayon::current_num_threads());
    for spin_join in [false, true] {
        for gap in [0.0, 20.0, 100.0, 1000.0] {
            let mut start_latency = Vec::with_capacity(ROUNDS);
            let mut fork_join = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                spin_for(gap);
                let t0 = Instant::now();
                let mut started = 0.0;
                let done = AtomicBool::new(false);
                rayon::in_place_scope(|s| {
                    let (started, done) = (&mut started, &done);
                    s.spawn(move |_| {
                        *started = t0.elapsed().as_secs_f64() * 1e6;
                        done.store(true, Ordering::Release);
                    });
                    if spin_join {
                        while !done.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                    }
                });
                fork_join.push(t0.elapsed().as_secs_f64() * 1e6);
                start_latency.push(started);
            }
            let (s50, s90) = quantiles(start_latency);
            let (f50, f90) = quantiles(fork_join);
            println!(
                "join by {:5}  gap {gap:5.0} µs: task starts after {s50:5.1} µs (p90 {s90:5.1}), \
                 fork + join {f50:5.1} µs (p90 {f90:5.1})",
                if spin_join { "spin" } else { "sleep" }
            );
        }
    }
}
