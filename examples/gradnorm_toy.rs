//! The synthetic toy of the GradNorm paper (Chen et al., ICML 2018, section 4): T regression
//! tasks `f_t(x) = σ_t tanh((B + ε_t) x)` on a shared 4-layer ReLU trunk of 100 units, trained
//! with equal weights (EW) and with GradNorm (α = 0.12) from the same initialisation and batches.
//!
//! For T = 2 with σ = (1, 100) and for T = 10 with σ spread geometrically over [1, 100], over
//! several seeds (each draws new `B`, `ε_t`, inputs, initialisation and batch order, shared by
//! EW and GradNorm), it prints GradNorm's weights against σ (they should order inversely to
//! σ), the largest deviation of their sum from T over every step, and the paper's measure: the
//! sum over tasks of the test loss ratio `L_t(test, now) / L_t(test, start)` (lower is better),
//! per seed at the end of training and as a mean over seeds along the way.
//!
//! ```text
//! cargo run --release --example gradnorm_toy
//! ```
//!
//! GradNorm's weights follow Adam at 0.025, as in the paper (which uses Adam throughout and
//! that weight learning rate on NYUv2; it gives no optimizer settings for the toy). Environment
//! overrides for experiments: `TOY_T` (2 or 10: run only that case), `TOY_SEEDS` (seeds per
//! case: 5 for T = 2, 3 for T = 10), `TOY_EPOCHS` (20), `TOY_N` (training samples, 10,000; the
//! test set has 1,000), `TOY_LR` (the network's Adam learning rate, 1e-3), `TOY_WEIGHT_OPT`
//! (`adam`, or `gd` for plain gradient descent on the weights) and `TOY_WLR` (the weights'
//! learning rate: 0.025 with Adam, 1e-3 with gradient descent).

use tapestry::data::MultiTaskDataset;
use tapestry::mtl::gradnorm::GradNormConfig;
use tapestry::mtl::metrics::evaluate;
use tapestry::mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
use tapestry::mtl::weighting::{EqualWeighting, GradNorm, Weighting};
use tapestry::mtl::{EpochReport, HardSharing, Observer, StepReport, Trainer, TrainerConfig};
use tapestry::nn::optim::Adam;
use tapestry::nn::Params;

const BATCH: usize = 100;
const ALPHA: f64 = 0.12;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The run's settings, from the defaults and the environment.
struct Settings {
    epochs: usize,
    samples: usize,
    lr: f64,
    weight_adam: bool,
    weight_lr: f64,
}

impl Settings {
    fn from_env() -> Self {
        let weight_adam = env_or("TOY_WEIGHT_OPT", "adam".to_string()) != "gd";
        Settings {
            epochs: env_or("TOY_EPOCHS", 20),
            samples: env_or("TOY_N", 10_000),
            lr: env_or("TOY_LR", 1e-3),
            weight_adam,
            weight_lr: env_or("TOY_WLR", if weight_adam { 0.025 } else { 1e-3 }),
        }
    }

    fn gradnorm(&self) -> GradNorm {
        let config = if self.weight_adam {
            GradNormConfig::adam(ALPHA, self.weight_lr)
        } else {
            GradNormConfig::new(ALPHA, self.weight_lr)
        };
        GradNorm::with_config(GradNormConfig { min_weight: 1e-6, ..config })
    }
}

/// Records the weights of every step, how far their sum strays from T, and the sum of the
/// test loss ratios after every epoch.
struct RunLog {
    start: Vec<f64>,
    max_sum_error: f64,
    weights: Vec<Vec<f64>>,
    ratio_sums: Vec<f64>,
}

impl Observer for RunLog {
    fn on_step(&mut self, report: &StepReport) {
        let t = report.weights.len() as f64;
        let mut error = (report.weights.iter().sum::<f64>() - t).abs();
        if let Some(next) = report.diagnostic("gradnorm.next_weights") {
            error = error.max((next.iter().sum::<f64>() - t).abs());
        }
        self.max_sum_error = self.max_sum_error.max(error);
        self.weights.push(report.weights.clone());
    }

    fn on_epoch(&mut self, report: &EpochReport) {
        let test = report.validation.as_ref().expect("the test set is passed as validation");
        let losses = test.tasks.iter().map(|t| t.loss.expect("a non-empty test set"));
        self.ratio_sums.push(losses.zip(&self.start).map(|(l, s)| l / s).sum());
    }
}

/// One training run's results.
struct Run {
    ratios: Vec<f64>,
    log: RunLog,
}

impl Run {
    fn ratio_sum(&self) -> f64 {
        self.ratios.iter().sum()
    }

    /// The mean weight of each task over the last epoch, less noisy than one step's.
    fn last_epoch_weights(&self, epochs: usize) -> Vec<f64> {
        let steps = self.log.weights.len();
        let last = &self.log.weights[steps - steps / epochs..];
        (0..self.ratios.len())
            .map(|t| last.iter().map(|w| w[t]).sum::<f64>() / last.len() as f64)
            .collect()
    }
}

fn test_losses(model: &HardSharing, params: &Params, test: &MultiTaskDataset) -> Vec<f64> {
    let eval = evaluate(model, params, test, 500).expect("the toy fits its model");
    eval.tasks.iter().map(|t| t.loss.expect("a non-empty test set")).collect()
}

/// Trains on the toy of `config` with `weighting`, from the initialisation and batch order of
/// `seed`.
fn train(
    config: &GradNormToyConfig,
    settings: &Settings,
    seed: u64,
    weighting: impl Weighting + 'static,
) -> Run {
    let splits = gradnorm_toy(config);
    let mut params = Params::new();
    let model = gradnorm_toy_model(&mut params, config, 100, 4, 1000 + seed).expect("fresh names");
    let start = test_losses(&model, &params, &splits.test);
    let trainer_config = TrainerConfig {
        epochs: settings.epochs,
        batch_size: BATCH,
        seed: 2000 + seed,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(trainer_config, Adam::new(settings.lr), weighting);
    let mut log =
        RunLog { start: start.clone(), max_sum_error: 0.0, weights: vec![], ratio_sums: vec![] };
    (trainer.fit(&model, &mut params, &splits.train, Some(&splits.test), &mut log))
        .expect("training runs");
    let end = test_losses(&model, &params, &splits.test);
    Run { ratios: end.iter().zip(&start).map(|(e, s)| e / s).collect(), log }
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

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The sample standard deviation (0 for one value).
fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// The mean over runs of each entry of `f(run)`.
fn mean_of(runs: &[Run], f: impl Fn(&Run) -> Vec<f64>) -> Vec<f64> {
    let all: Vec<Vec<f64>> = runs.iter().map(f).collect();
    (0..all[0].len()).map(|i| mean(&all.iter().map(|v| v[i]).collect::<Vec<_>>())).collect()
}

fn fmt(values: &[f64], decimals: usize) -> String {
    values.iter().map(|v| format!("{v:.decimals$}")).collect::<Vec<_>>().join(" ")
}

fn run_case(sigmas: Vec<f64>, seeds: u64, settings: &Settings) {
    let t = sigmas.len();
    println!("\n== T = {t}, sigma = [{}], {seeds} seeds (0 to {})", fmt(&sigmas, 2), seeds - 1);
    let (mut ew, mut gn) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let config = GradNormToyConfig {
            sigmas: sigmas.clone(),
            train: settings.samples,
            seed,
            ..GradNormToyConfig::default()
        };
        ew.push(train(&config, settings, seed, EqualWeighting));
        gn.push(train(&config, settings, seed, settings.gradnorm()));
    }

    let epochs = settings.epochs;
    let weights = mean_of(&gn, |r| r.last_epoch_weights(epochs));
    println!("GradNorm's weights (mean over the last epoch, then over seeds):");
    for (i, (s, w)) in sigmas.iter().zip(&weights).enumerate() {
        println!("  task {i}: sigma {s:>7.2}  weight {w:.4}");
    }
    let orders: Vec<f64> = gn
        .iter()
        .map(|r| 100.0 * inverse_order_fraction(&sigmas, &r.last_epoch_weights(epochs)))
        .collect();
    println!(
        "pairs of tasks whose weights order inversely to sigma, per seed: {}%",
        fmt(&orders, 0)
    );
    let steps: usize = gn.iter().map(|r| r.log.weights.len()).sum();
    let sum_error = gn.iter().map(|r| r.log.max_sum_error).fold(0.0, f64::max);
    println!("weights sum to T: largest |sum - T| over {steps} steps = {sum_error:.1e}");

    println!("test loss ratio by task (mean over seeds):");
    println!("  EW       {}", fmt(&mean_of(&ew, |r| r.ratios.clone()), 3));
    println!("  GradNorm {}", fmt(&mean_of(&gn, |r| r.ratios.clone()), 3));

    println!("sum of test loss ratios at the end of training (lower is better):");
    println!("  seed      EW  GradNorm  GradNorm - EW");
    let (sums_ew, sums_gn): (Vec<f64>, Vec<f64>) =
        ew.iter().zip(&gn).map(|(e, g)| (e.ratio_sum(), g.ratio_sum())).unzip();
    let gaps: Vec<f64> = sums_gn.iter().zip(&sums_ew).map(|(g, e)| g - e).collect();
    for seed in 0..gaps.len() {
        println!(
            "  {seed:>4}  {:>6.3}  {:>8.3}  {:>+13.3}",
            sums_ew[seed], sums_gn[seed], gaps[seed]
        );
    }
    println!(
        "  mean  {:.3} ± {:.3}  {:.3} ± {:.3}  {:+.3} ± {:.3} (± one standard deviation over seeds)",
        mean(&sums_ew),
        std_dev(&sums_ew),
        mean(&sums_gn),
        std_dev(&sums_gn),
        mean(&gaps),
        std_dev(&gaps)
    );
    let lower = gaps.iter().filter(|g| **g < 0.0).count();
    println!("  GradNorm lower than EW on {lower} of {} seeds", gaps.len());

    let marks: Vec<usize> = std::iter::once(1)
        .chain((1..=4).map(|q| (q * epochs / 4).max(1)))
        .filter(|&e| e <= epochs)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    println!("sum of test loss ratios during training (mean over seeds), after epoch:");
    let header: Vec<String> = marks.iter().map(|e| format!("{e:>6}")).collect();
    println!("  {:<9}{}", "", header.join(""));
    for (name, runs) in [("EW", &ew), ("GradNorm", &gn)] {
        let curve = mean_of(runs, |r| r.log.ratio_sums.clone());
        let row: Vec<String> = marks.iter().map(|&e| format!("{:>6.3}", curve[e - 1])).collect();
        println!("  {name:<9}{}", row.join(""));
    }
}

fn main() {
    let settings = Settings::from_env();
    println!(
        "GradNorm toy: input 250, output 100, B ~ N(0, 10^2), eps_t ~ N(0, 3.5^2), x ~ N(0, 1), \
         trunk 4 x 100 ReLU, Adam lr {}, batch {BATCH}, {} epochs of {} samples, alpha {ALPHA}, \
         GradNorm's weights by {} at lr {}",
        settings.lr,
        settings.epochs,
        settings.samples,
        if settings.weight_adam { "Adam" } else { "gradient descent" },
        settings.weight_lr
    );
    let only: usize = env_or("TOY_T", 0);
    if only == 0 || only == 2 {
        run_case(vec![1.0, 100.0], env_or("TOY_SEEDS", 5).max(1), &settings);
    }
    if only == 0 || only == 10 {
        let t = 10;
        let sigmas = (0..t).map(|i| 100f64.powf(i as f64 / (t - 1) as f64)).collect();
        run_case(sigmas, env_or("TOY_SEEDS", 3).max(1), &settings);
    }
}
