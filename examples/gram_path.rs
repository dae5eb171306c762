//! The Gramian-only path against the materialised one: time per step and peak memory of MGDA on
//! the reference model of the benchmarks (`benches/reference/mod.rs`), each configuration in a
//! fresh process, Adam. Configurations:
//!
//! - `ew`: equal weighting, one backward pass (the floor);
//! - `mgda-gram`: MGDA with `GradMode::Gram`, on the Gram alone (one batched sweep that reduces
//!   each parameter's block to `T × T` as it completes, the Gram identity on the linear layer,
//!   then one weighted backward);
//! - `mgda`: MGDA with `GradMode::Batched`, the default (the `T × P` gradients
//!   formed, their Gram taken, the shared update combined from them, the heads from one more
//!   backward that skips the trunk).
//!
//! Each configuration runs in its own process (`--one NAME`, see `benches/reference/measure.rs`):
//! two warm-up steps, then `STEP_STEPS` timed steps (default 10); it prints the median wall time
//! and process CPU time per step and the peak resident memory (`VmHWM` of `/proc/self/status`,
//! Linux) before the first step and after the last. The parent runs the configurations in turn for
//! `GRAM_ROUNDS` rounds (default 3) and prints the medians.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example gram_path
//! RAYON_NUM_THREADS=1 cargo run --release --example gram_path -- --one mgda-gram   # one config
//! ```

use std::process::Command;

#[path = "../benches/reference/measure.rs"]
mod measure;
#[path = "../benches/reference/mod.rs"]
mod reference;

use measure::median;

const CONFIGS: [&str; 3] = ["ew", "mgda-gram", "mgda"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name] = &args[..] {
        assert_eq!(flag, "--one", "usage: gram_path [--one NAME]");
        measure::run_one(name);
        return;
    }
    let rounds: usize = std::env::var("GRAM_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let exe = std::env::current_exe().unwrap();
    let mut rows: Vec<Vec<[f64; 4]>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        for (c, name) in CONFIGS.iter().enumerate() {
            let out = Command::new(&exe).args(["--one", name]).output().unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let line = String::from_utf8(out.stdout).unwrap();
            eprintln!("round {round}: {}", line.trim());
            let f: Vec<f64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
            rows[c].push([f[0], f[1], f[2], f[3]]);
        }
    }
    println!("| configuration | wall ms/step | CPU ms/step | peak RSS before steps (MiB) | peak RSS after (MiB) | growth (MiB) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, r) in CONFIGS.iter().zip(&rows) {
        let m = |k: usize| median(r.iter().map(|x| x[k]).collect());
        let growth = median(r.iter().map(|x| x[3] - x[2]).collect());
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {growth:.1} |",
            m(0),
            m(1),
            m(2),
            m(3)
        );
    }
}
