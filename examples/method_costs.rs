//! The cost of one training step for every registered weighting, on the reference model of the
//! benchmarks (`benches/reference/mod.rs`), against each method's cost class:
//!
//! - methods that need only the losses: at most 1.1x EW's step;
//! - methods that also need the losses after the update (one extra forward pass, FAMO): 1.3x;
//! - methods that need per-task gradients: at most MGDA's step.
//!
//! Every method runs in every round, in registry order, so a slow phase of a shared machine
//! touches them all alike; the figure is the median over rounds of the mean over the timed steps.
//! A last row times the forward pass alone (`losses_at`), the floor of what one extra forward
//! pass costs.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example method_costs
//! COST_ROUNDS=5 COST_STEPS=8 COST_METHODS=ew,mgda,famo cargo run --release --example method_costs
//! ```

use std::time::Instant;

use tapestry::mtl::step::{losses_at, StepCounters, StepOptions, TrainStep};
use tapestry::mtl::weighting::{self, MethodOptions, Needs, Weighting, METHODS};
use tapestry::nn::optim::Adam;

#[path = "../benches/reference/mod.rs"]
mod reference;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A method's cost class: what it may cost relative to EW or MGDA.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Losses,
    LossesAfterUpdate,
    Gradients,
}

fn class(needs: Needs) -> Class {
    if needs.shared_gradients
        || needs.shared_gram
        || needs.representation_gradients
        || needs.layer_gradient_norms
    {
        Class::Gradients
    } else if needs.losses_after_update {
        Class::LossesAfterUpdate
    } else {
        Class::Losses
    }
}

/// One method's model, parameters, optimizer and step.
struct Run {
    name: &'static str,
    weighting: Box<dyn Weighting>,
    model: tapestry::mtl::HardSharing,
    params: tapestry::nn::Params,
    adam: Adam,
    step: TrainStep,
    counters: StepCounters,
    times: Vec<f64>,
}

impl Run {
    fn new(name: &'static str) -> Self {
        let mut weighting = weighting::by_name(name, &MethodOptions::default()).unwrap();
        let (model, mut params) = reference::reference_model(0);
        weighting
            .register(&mut params, tapestry::mtl::model::MultiTaskModel::tasks(&model))
            .unwrap();
        let step =
            TrainStep::new(&model, &params, weighting.as_ref(), StepOptions::default()).unwrap();
        Run {
            name,
            weighting,
            model,
            params,
            adam: Adam::new(1e-4),
            step,
            counters: StepCounters::default(),
            times: Vec::new(),
        }
    }

    /// Runs `n` steps on `batch`, returning the mean seconds per step.
    fn steps(&mut self, batch: &tapestry::data::Batch, n: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            self.step
                .run(
                    &self.model,
                    &mut self.params,
                    &mut self.adam,
                    self.weighting.as_mut(),
                    batch,
                    self.counters,
                )
                .unwrap();
            self.counters.step += 1;
        }
        start.elapsed().as_secs_f64() / n as f64
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() {
    let rounds = env_usize("COST_ROUNDS", 3).max(1);
    let n = env_usize("COST_STEPS", 5).max(1);
    let only = std::env::var("COST_METHODS").ok();
    let mut names: Vec<&'static str> = METHODS
        .iter()
        .map(|m| m.name)
        .filter(|n| only.as_deref().is_none_or(|o| o.split(',').any(|x| x.trim() == *n)))
        .collect();
    for base in ["mgda", "ew"] {
        if !names.contains(&base) {
            names.insert(0, base);
        }
    }
    let batch = reference::random_batch(1);
    let mut runs: Vec<Run> = names.iter().map(|&name| Run::new(name)).collect();
    for run in &mut runs {
        run.steps(&batch, 1); // warm-up: buffers, pools, caches
    }
    let forward_model = reference::reference_model(0);
    let mut forward_times = Vec::new();
    for _ in 0..rounds {
        for run in &mut runs {
            let t = run.steps(&batch, n);
            run.times.push(t);
        }
        let start = Instant::now();
        for s in 0..n {
            let counters = StepCounters { step: s as u64, ..StepCounters::default() };
            losses_at(&forward_model.0, &forward_model.1, &batch, counters).unwrap();
        }
        forward_times.push(start.elapsed().as_secs_f64() / n as f64);
    }
    let ms =
        |name: &str| 1e3 * median(&runs.iter().find(|r| r.name == name).expect("a baseline").times);
    let (ew, mgda) = (ms("ew"), ms("mgda"));
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "reference step, {threads} thread(s), batch {}, median of {rounds} rounds of {n} steps",
        reference::BATCH
    );
    println!("| method | class | ms / step | × EW | × MGDA | within its class |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for run in &runs {
        let t = ms(run.name);
        let c = class(run.weighting.needs());
        let (label, ok) = match c {
            Class::Losses => ("losses (≤ 1.1x EW)", t <= 1.1 * ew),
            Class::LossesAfterUpdate => ("losses + one forward (≤ 1.3x EW)", t <= 1.3 * ew),
            Class::Gradients => ("gradients (≤ MGDA)", t <= mgda),
        };
        println!(
            "| {} | {label} | {t:.1} | {:.2} | {:.2} | {} |",
            run.name,
            t / ew,
            t / mgda,
            if ok { "yes" } else { "no" }
        );
    }
    let forward = 1e3 * median(&forward_times);
    println!(
        "| (forward pass alone) | | {forward:.1} | {:.2} | {:.2} | |",
        forward / ew,
        forward / mgda
    );
}
