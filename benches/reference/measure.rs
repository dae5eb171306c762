//! One configuration of the reference step in a fresh process, for the examples that compare
//! time and peak memory (`gram_path`, `step_vs_torch`): two warm-up steps, then `STEP_STEPS`
//! timed steps (default 10), printed as one line
//!
//! ```text
//! <name> <median wall ms> <median process CPU ms> <peak before MiB> <peak after MiB>
//! ```
//!
//! where the peaks are the process's `VmHWM` (peak resident set, Linux; 0 elsewhere) after the
//! model and the batch are built and after the last step.
//!
//! Configurations: `ew` (equal weighting, one backward pass), `mgda` (MGDA on the materialised
//! `T × P` gradients of one batched sweep, the default) and `mgda-gram` (MGDA on the Gramian-only
//! path, `GradMode::Gram`).

use std::time::Instant;

use tapestry::kernels::clock::process_cpu_seconds;
use tapestry::mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry::mtl::task_grads::GradMode;
use tapestry::mtl::weighting::{EqualWeighting, Mgda, Weighting};
use tapestry::nn::optim::Adam;

use crate::reference::{random_batch, reference_model};

/// The peak resident set size so far, in MiB (`VmHWM`; 0 where `/proc` has none).
pub fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The median (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs configuration `name` and prints its line.
///
/// # Panics
/// On a name that is not a configuration.
pub fn run_one(name: &str) {
    let steps: usize = std::env::var("STEP_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let (model, mut params) = reference_model(0);
    let batch = random_batch(1);
    let (mut weighting, grad_mode): (Box<dyn Weighting>, GradMode) = match name {
        "ew" => (Box::new(EqualWeighting), GradMode::Batched),
        "mgda" => (Box::new(Mgda::default()), GradMode::Batched),
        "mgda-gram" => (Box::new(Mgda::default()), GradMode::Gram),
        other => panic!("unknown configuration {other}; expected ew, mgda or mgda-gram"),
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
