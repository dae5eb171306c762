//! The MAML sinusoid protocol (Finn et al., 2017, and its reference code): a 1-40-40-1 ReLU
//! network, K = 10 support and 10 query points per task, one inner SGD step at α = 0.01 in
//! meta-training (the paper's value; the reference code's flag default is 1e-3), meta-batch 25,
//! Adam at 1e-3, 70,000 meta-iterations; then 600 test tasks scored by the query MSE (± 95% CI)
//! after 0, 1 and 10 adaptation steps. Runs MAML, first-order MAML, Meta-SGD, Reptile, the
//! "pretrained" baseline (joint regression on all sinusoids, then fine-tuning: the multi-task
//! initialisation) and an oracle that is given the amplitude and phase as inputs.
//!
//! ```text
//! cargo run --release --example maml_sinusoid                       # the whole protocol
//! MAML_ITERS=2000 MAML_ALGOS=maml,fomaml cargo run --release --example maml_sinusoid
//! ```
//!
//! Prints, per algorithm, milliseconds per meta-iteration, the whole run's seconds, the peak
//! resident memory after the first 1% of the iterations and at the end (flat means the
//! meta-batch loop frees each task's graph), and the test MSE table.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry::autodiff::{Reduction, Tape, Tensor};
use tapestry::meta::sampler::SinusoidTask;
use tapestry::meta::task::Targets;
use tapestry::meta::{
    adaptation_curve, mean_ci, Algorithm, CurvePoint, InnerOptimizer, InnerRate, MetaConfig,
    MetaLearner, Sinusoid, Task, TaskSampler,
};
use tapestry::nn::optim::{Adam, Optimizer};
use tapestry::nn::{Ctx, Linear, Module, Params, Relu, Sequential};

const K: usize = 10;
const META_BATCH: usize = 25;
const TEST_TASKS: usize = 600;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The 1-40-40-1 ReLU network (or `inputs`-40-40-1 for the oracle).
fn network(seed: u64, inputs: usize) -> (Sequential, Params) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = Params::new();
    let net = Sequential::new()
        .push(Linear::new(&mut p, "net.0", inputs, 40, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(&mut p, "net.2", 40, 40, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(&mut p, "net.4", 40, 1, &mut rng).unwrap());
    (net, p)
}

/// Peak resident memory of the process so far, in MB (`VmHWM`).
fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn row(name: &str, curve: &[CurvePoint]) -> String {
    let cell = |p: CurvePoint| match p.diverged {
        0 => format!("{:.3} ± {:.3}", p.mean, p.ci95),
        n => format!("{:.3} ± {:.3} ({n} diverged)", p.mean, p.ci95),
    };
    format!("| {name} | {} | {} | {} |", cell(curve[0]), cell(curve[1]), cell(curve[10]))
}

/// Regression of `(inputs, y)` through `net`: one Adam step.
fn regression_step(net: &Sequential, params: &mut Params, adam: &mut Adam, x: Tensor, y: Tensor) {
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let out = net.forward(tape.constant(x), &mut Ctx::train(&bound));
    let l = out.mse_loss(tape.constant(y), Reduction::Mean);
    let grads = bound.grads(&tape.backward(l));
    drop(bound);
    adam.step(params, &grads);
}

/// The pooled support and query points of a meta-batch as one regression batch.
fn pooled(batch: &[Task]) -> (Tensor, Tensor) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for t in batch {
        for s in [&t.support, &t.query] {
            xs.extend_from_slice(s.x.as_slice());
            let Targets::Values(y) = &s.y else { unreachable!("regression") };
            ys.extend_from_slice(y.as_slice());
        }
    }
    let n = xs.len();
    (Tensor::from_vec(&[n, 1], xs).unwrap(), Tensor::from_vec(&[n, 1], ys).unwrap())
}

/// The oracle's inputs: `[x, A, φ]` per point.
fn with_parameters(x: &Tensor, a: f32, phase: f32) -> Tensor {
    let n = x.len();
    Tensor::from_vec(&[n, 3], x.as_slice().iter().flat_map(|&v| [v, a, phase]).collect()).unwrap()
}

fn main() {
    let iterations: u64 = env("MAML_ITERS", "70000").parse().expect("MAML_ITERS");
    let algos = env("MAML_ALGOS", "maml,fomaml,metasgd,reptile,pretrained,oracle");
    let sampler = Sinusoid::maml(K);
    let mut test_rng = ChaCha8Rng::seed_from_u64(1_000_003);
    let test: Vec<SinusoidTask> =
        (0..TEST_TASKS).map(|_| sampler.sample_with_parameters(&mut test_rng)).collect();
    let test_tasks: Vec<Task> = test.iter().map(|t| t.task.clone()).collect();
    println!(
        "MAML sinusoid protocol: K = {K}, meta-batch {META_BATCH}, {iterations} meta-iterations, {} thread(s)",
        env("RAYON_NUM_THREADS", "all")
    );
    let mut table = vec![
        "| method | MSE, 0 steps | 1 step | 10 steps |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    for algo in algos.split(',').map(str::trim) {
        let start = Instant::now();
        let mut train_rng = ChaCha8Rng::seed_from_u64(17);
        let mut peak_early = f64::NAN;
        let trained;
        let early = (iterations / 100).max(1);
        let curve = match algo {
            "pretrained" => {
                let (net, mut params) = network(0, 1);
                let mut adam = Adam::new(1e-3);
                for it in 0..iterations {
                    let batch: Vec<Task> =
                        (0..META_BATCH).map(|_| sampler.sample(&mut train_rng)).collect();
                    let (x, y) = pooled(&batch);
                    regression_step(&net, &mut params, &mut adam, x, y);
                    if it + 1 == early {
                        peak_early = peak_mb();
                    }
                }
                trained = start.elapsed().as_secs_f64();
                adaptation_curve(&net, &params, InnerRate::Scalar(0.01), &test_tasks, 10).unwrap()
            }
            "oracle" => {
                let (net, mut params) = network(0, 3);
                let mut adam = Adam::new(1e-3);
                for it in 0..iterations {
                    let tasks: Vec<SinusoidTask> = (0..META_BATCH)
                        .map(|_| sampler.sample_with_parameters(&mut train_rng))
                        .collect();
                    let (mut xs, mut ys) = (Vec::new(), Vec::new());
                    for t in &tasks {
                        let x = with_parameters(&t.task.support.x, t.amplitude, t.phase);
                        xs.extend_from_slice(x.as_slice());
                        let Targets::Values(y) = &t.task.support.y else { unreachable!() };
                        ys.extend_from_slice(y.as_slice());
                    }
                    let n = ys.len();
                    let x = Tensor::from_vec(&[n, 3], xs).unwrap();
                    regression_step(
                        &net,
                        &mut params,
                        &mut adam,
                        x,
                        Tensor::from_vec(&[n, 1], ys).unwrap(),
                    );
                    if it + 1 == early {
                        peak_early = peak_mb();
                    }
                }
                trained = start.elapsed().as_secs_f64();
                // The oracle needs no adaptation: its error is the same after any number of steps.
                let errs: Vec<f64> = test
                    .iter()
                    .map(|t| {
                        let x = with_parameters(&t.task.query.x, t.amplitude, t.phase);
                        let tape = Tape::new();
                        let bound = params.bind_constant(&tape);
                        let out = net.forward(tape.constant(x), &mut Ctx::eval(&bound));
                        let Targets::Values(y) = &t.task.query.y else { unreachable!() };
                        f64::from(
                            out.mse_loss(tape.constant(y.clone()), Reduction::Mean).value().item(),
                        )
                    })
                    .collect();
                let (mean, ci95) = mean_ci(&errs);
                vec![CurvePoint { mean, ci95, diverged: 0 }; 11]
            }
            name => {
                let algorithm = Algorithm::from_name(name)
                    .unwrap_or_else(|| panic!("unknown algorithm {name}"));
                let reptile = algorithm == Algorithm::Reptile;
                let config = MetaConfig {
                    algorithm,
                    // Reptile: 5 inner SGD steps at 0.01 on the support set, ε = 0.1 annealed
                    // to 0 (Nichol et al. take 32 steps on mini-batches of a 50-point grid).
                    inner_steps: if reptile { 5 } else { 1 },
                    inner_lr: 0.01,
                    meta_batch: META_BATCH,
                    outer_lr: if reptile { 0.1 } else { 1e-3 },
                    reptile_inner: InnerOptimizer::Sgd,
                    iterations,
                };
                let (net, params) = network(0, 1);
                let mut learner = MetaLearner::new(config, Box::new(net), params).unwrap();
                for it in 0..iterations {
                    let batch: Vec<Task> =
                        (0..META_BATCH).map(|_| sampler.sample(&mut train_rng)).collect();
                    learner.step(&batch).unwrap();
                    if it + 1 == early {
                        peak_early = peak_mb();
                    }
                }
                trained = start.elapsed().as_secs_f64();
                adaptation_curve(
                    learner.model(),
                    learner.params(),
                    learner.inner_rate(),
                    &test_tasks,
                    10,
                )
                .unwrap()
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{algo}: {:.3} ms per meta-iteration, {trained:.1} s of training, {seconds:.1} s with the evaluation, peak RSS {peak_early:.1} MB after {early} iterations, {:.1} MB at the end",
            1e3 * trained / iterations as f64,
            peak_mb()
        );
        table.push(row(algo, &curve));
    }
    println!("\ntest query MSE on {TEST_TASKS} tasks (mean ± 95% CI), after 0, 1 and 10 steps of SGD at 0.01:");
    for line in table {
        println!("{line}");
    }
}
