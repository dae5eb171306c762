//! The Gramian-only path against the materialised one: time per step and peak memory of MGDA on
//! the reference model of the benchmarks (`benches/reference/mod.rs`), each configuration in a
//! fresh process, Adam. Configurations:
//!
//! - `ew`: equal weighting, one backward pass (the floor);
//! - `mgda-gram`: MGDA with `GradMode::Gram`, on the Gram alone (one batched sweep that reduces
//!   each parameter's block to `T × T` as it completes, the Gram identity on the linear layer,
//!   then one weighted backward);
//! - `mgda-materialised`: MGDA with `GradMode::Batched`, the default (the `T × P` gradients
//!   formed, their Gram taken, the shared update combined from them, the heads from one more
//!   backward that skips the trunk).
//!
//! Each configuration runs in its own process (`--one NAME`): two warm-up steps, then
//! `GRAM_STEPS` timed steps (default 10); it prints the median wall time and process CPU time
//! per step and the peak resident memory (`VmHWM` of `/proc/self/status`, Linux) before the
//! first step and after the last. The parent runs the configurations in turn for
//! `GRAM_ROUNDS` rounds (default 3) and prints the medians.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example gram_path
//! RAYON_NUM_THREADS=1 cargo run --release --example gram_path -- --one mgda-gram   # one config
//! ```

use std::process::Command;
use std::time::Instant;

use tapestry::kernels::clock::process_cpu_seconds;
use tapestry::mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry::mtl::task_grads::GradMode;
use tapestry::mtl::weighting::{EqualWeighting, Mgda, Weighting};
use tapestry::nn::optim::Adam;

const CONFIGS: [&str; 3] = ["ew", "mgda-gram", "mgda-materialised"];

#[path = "../benches/reference/mod.rs"]
mod reference;

/// The peak resident set size so far, in MiB (`VmHWM`; 0 where `/proc` has none).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs one configuration; prints `name wall_ms cpu_ms peak_before_mib peak_after_mib`.
fn one(name: &str) {
    let steps: usize = std::env::var("GRAM_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let (model, mut params) = reference::reference_model(0);
    let batch = reference::random_batch(1);
    let (mut weighting, grad_mode): (Box<dyn Weighting>, GradMode) = match name {
        "ew" => (Box::new(EqualWeighting), GradMode::Batched),
        "mgda-gram" => (Box::new(Mgda::default()), GradMode::Gram),
        "mgda-materialised" => (Box::new(Mgda::default()), GradMode::Batched),
        other => panic!("unknown configuration {other}; expected one of {CONFIGS:?}"),
    };
    let options = StepOptions { grad_mode, ..StepOptions::default() };
    let step = TrainStep::new(&model, &params, weighting.as_ref(), options).unwrap();
    let mut adam = Adam::new(1e-4);
    let before = peak_mib();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for s in 0..steps + 2 {
        let counters = StepCounters { step: s as u64, ..StepCounters::default() };
        let (t0, c0) = (Instant::now(), process_cpu_seconds().unwrap_or(0.0));
        step.run(&model, &mut params, &mut adam, weighting.as_mut(), &batch, counters).unwrap();
        if s >= 2 {
            wall.push(t0.elapsed().as_secs_f64() * 1e3);
            cpu.push((process_cpu_seconds().unwrap_or(0.0) - c0) * 1e3);
        }
    }
    println!("{name} {:.1} {:.1} {before:.1} {:.1}", median(wall), median(cpu), peak_mib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name] = &args[..] {
        assert_eq!(flag, "--one", "usage: gram_path [--one NAME]");
        one(name);
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
