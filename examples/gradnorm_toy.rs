//! The synthetic toy of the GradNorm paper (Chen et al., ICML 2018, section 4): T regression
//! tasks `f_t(x) = σ_t tanh((B + ε_t) x)` on a shared 4-layer ReLU trunk of 100 units, trained
//! with equal weights and with GradNorm (α = 0.12) from the same initialisation and batches.
//!
//! It prints, for T = 2 with σ = (1, 100) and for T = 10 with σ spread geometrically over
//! [1, 100]: GradNorm's weights against σ (they should order inversely to σ), the largest
//! deviation of their sum from T over every step, and the sum over tasks of the test loss ratio
//! `L_t(test, end) / L_t(test, start)` for EW and GradNorm (lower is better).
//!
//! ```text
//! cargo run --release --example gradnorm_toy
//! ```
//!
//! Environment overrides for experiments: `TOY_T` (2 or 10: run only that case), `TOY_LR`
//! (Adam's learning rate, 1e-3), `TOY_WLR` (GradNorm's weight learning rate, 1e-3), `TOY_N`
//! (training samples, 10,000; the test set has 1,000).

use tapestry::data::MultiTaskDataset;
use tapestry::mtl::gradnorm::GradNormConfig;
use tapestry::mtl::metrics::evaluate;
use tapestry::mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
use tapestry::mtl::weighting::{EqualWeighting, GradNorm, Weighting};
use tapestry::mtl::{HardSharing, Observer, StepReport, Trainer, TrainerConfig};
use tapestry::nn::optim::Adam;
use tapestry::nn::Params;

const EPOCHS: usize = 20;
const BATCH: usize = 100;
fn lr() -> f64 {
    std::env::var("TOY_LR").ok().and_then(|v| v.parse().ok()).unwrap_or(1e-3)
}
const ALPHA: f64 = 0.12;

/// Records GradNorm's weights and how far their sum strays from T.
#[derive(Default)]
struct WeightLog {
    max_sum_error: f64,
    last: Vec<f64>,
    history: Vec<Vec<f64>>,
}

impl Observer for WeightLog {
    fn on_step(&mut self, report: &StepReport) {
        let t = report.weights.len() as f64;
        let sum: f64 = report.weights.iter().sum();
        self.max_sum_error = self.max_sum_error.max((sum - t).abs());
        if let Some(g) = &report.gradnorm {
            let next: f64 = g.weights.iter().sum();
            self.max_sum_error = self.max_sum_error.max((next - t).abs());
        }
        self.last = report.weights.clone();
        self.history.push(report.weights.clone());
    }
}

fn test_losses(model: &HardSharing, params: &Params, test: &MultiTaskDataset) -> Vec<f64> {
    let eval = evaluate(model, params, test, 500).expect("the toy fits its model");
    eval.tasks.iter().map(|t| t.loss.expect("a non-empty test set")).collect()
}

/// Trains from the same initialisation with `weighting`; returns the loss ratios and the log.
fn train(config: &GradNormToyConfig, weighting: impl Weighting + 'static) -> (Vec<f64>, WeightLog) {
    let splits = gradnorm_toy(config);
    let mut params = Params::new();
    let model = gradnorm_toy_model(&mut params, config, 100, 4, 1).expect("fresh names");
    let start = test_losses(&model, &params, &splits.test);
    let trainer_config =
        TrainerConfig { epochs: EPOCHS, batch_size: BATCH, seed: 2, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(trainer_config, Adam::new(lr()), weighting);
    let mut log = WeightLog::default();
    trainer.fit(&model, &mut params, &splits.train, None, &mut log).expect("training runs");
    let end = test_losses(&model, &params, &splits.test);
    (end.iter().zip(&start).map(|(e, s)| e / s).collect(), log)
}

/// The fraction of task pairs whose weights order inversely to their σ.
fn inverse_order_fraction(sigmas: &[f64], weights: &[f64]) -> f64 {
    let (mut good, mut pairs) = (0, 0);
    for i in 0..sigmas.len() {
        for j in i + 1..sigmas.len() {
            pairs += 1;
            if (sigmas[i] < sigmas[j]) == (weights[i] > weights[j]) {
                good += 1;
            }
        }
    }
    good as f64 / pairs as f64
}

fn run(sigmas: Vec<f64>, weight_lr: f64) {
    let t = sigmas.len();
    println!(
        "\n== T = {t}, sigma = {:?}",
        sigmas.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    let samples: usize = std::env::var("TOY_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let config = GradNormToyConfig {
        sigmas: sigmas.clone(),
        train: samples,
        ..GradNormToyConfig::default()
    };
    let (ew, _) = train(&config, EqualWeighting);
    let gradnorm = GradNorm::with_config(GradNormConfig {
        min_weight: 1e-6,
        ..GradNormConfig::new(ALPHA, weight_lr)
    });
    let (gn, log) = train(&config, gradnorm);
    let steps = log.history.len();
    // The mean weight over the last epoch, less noisy than one step's.
    let last_epoch = &log.history[steps - steps / EPOCHS..];
    let mean: Vec<f64> = (0..t)
        .map(|i| last_epoch.iter().map(|w| w[i]).sum::<f64>() / last_epoch.len() as f64)
        .collect();
    println!("GradNorm weights (mean over the last epoch, by task):");
    for (i, (s, w)) in sigmas.iter().zip(&mean).enumerate() {
        println!("  task {i}: sigma {s:>7.2}  weight {w:.5}");
    }
    println!(
        "pairs ordered inversely to sigma: {:.0}% (last step's weights: {:.0}%)",
        100.0 * inverse_order_fraction(&sigmas, &mean),
        100.0 * inverse_order_fraction(&sigmas, &log.last)
    );
    println!(
        "weights sum to T at every step: largest |sum - T| over {steps} steps = {:.1e}",
        log.max_sum_error
    );
    let (sum_ew, sum_gn): (f64, f64) = (ew.iter().sum(), gn.iter().sum());
    println!("test loss ratio by task, EW:       {}", fmt(&ew));
    println!("test loss ratio by task, GradNorm: {}", fmt(&gn));
    println!(
        "sum of test loss ratios: EW {sum_ew:.4}, GradNorm {sum_gn:.4} ({})",
        if sum_gn < sum_ew { "GradNorm lower" } else { "GradNorm NOT lower" }
    );
}

fn fmt(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ")
}

fn main() {
    println!(
        "GradNorm toy: input 250, output 100, B ~ N(0, 10^2), eps_t ~ N(0, 3.5^2), trunk 4 x 100 ReLU, \
         Adam lr {}, batch {BATCH}, {EPOCHS} epochs, alpha {ALPHA}",
        lr()
    );
    let wlr: f64 = std::env::var("TOY_WLR").ok().and_then(|v| v.parse().ok()).unwrap_or(1e-3);
    let only: usize = std::env::var("TOY_T").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if only == 0 || only == 2 {
        run(vec![1.0, 100.0], wlr);
    }
    let t = 10;
    if only == 0 || only == 10 {
        run((0..t).map(|i| 100f64.powf(i as f64 / (t - 1) as f64)).collect(), wlr);
    }
}
