//! MGDA, MGDA-UB and GradNorm against equal weighting on MultiDigits: the same MLP, data, seed
//! and batches for each, then a table of per-task test metrics and Δp, the mean relative
//! improvement over EW (sign-corrected for RMSE, where lower is better).
//!
//! ```text
//! cargo run --release --example mgda_vs_gradnorm
//! ```
//!
//! MultiDigits has two classification tasks (the left and the right digit, cross-entropy) and a
//! regression task (their sum, MSE) whose loss starts some 40 times larger: equal weights let
//! the sum dominate the shared layers, which is where the methods differ.
//!
//! Environment overrides: `EPOCHS` (default 10) and rayon's `RAYON_NUM_THREADS`.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry::data::{multidigits, MetricKind, MultiDigitsConfig, TaskKind};
use tapestry::mtl::metrics::Evaluation;
use tapestry::mtl::trainer::NoObserver;
use tapestry::mtl::weighting::{EqualWeighting, GradNorm, Mgda, MgdaUb, Weighting};
use tapestry::mtl::{HardSharing, Trainer, TrainerConfig};
use tapestry::nn::optim::Adam;
use tapestry::nn::{Linear, Params, Relu, Sequential};

/// Flattened 12 × 12 images → 256 → 128 (shared), a linear head per task.
fn mlp(params: &mut Params, tasks: &[tapestry::data::TaskSpec]) -> HardSharing {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let trunk = Sequential::new()
        .push(Linear::new(params, "trunk.0", 144, 256, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(params, "trunk.2", 256, 128, &mut rng).unwrap())
        .push(Relu);
    let mut model = HardSharing::builder(trunk);
    for task in tasks {
        let out = match task.kind {
            TaskKind::Classification { classes } => classes,
            TaskKind::Regression { dim } => dim,
            _ => unreachable!("MultiDigits has no per-pixel task"),
        };
        let head =
            Linear::new(params, &format!("heads.{}", task.name), 128, out, &mut rng).unwrap();
        model = model.head(task.clone(), head);
    }
    model.input_shape(&[144]).build(params).unwrap()
}

fn metric_value(e: &Evaluation, t: usize) -> f64 {
    e.tasks[t].value.unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs = std::env::var("EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut splits = multidigits(&MultiDigitsConfig::default())?.splits;
    // The MLP takes flat vectors: [N, 1, 12, 12] → [N, 144].
    for split in [&mut splits.train, &mut splits.test] {
        let n = split.len();
        split.inputs = split.inputs.clone().into_shape_with_order(vec![n, 144])?;
    }
    let tasks = splits.train.tasks.clone();
    println!(
        "MultiDigits: {} train / {} test, tasks {}; MLP 144→256→128, Adam 2e-3, batch 64, {epochs} epochs",
        splits.train.len(),
        splits.test.len(),
        tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
    );

    let methods: Vec<(&str, Box<dyn Weighting>)> = vec![
        ("ew", Box::new(EqualWeighting)),
        ("mgda", Box::new(Mgda::default())),
        ("mgda-ub", Box::new(MgdaUb::default())),
        ("gradnorm", Box::new(GradNorm::new(1.5, 0.025))),
    ];
    let mut rows = Vec::new();
    for (name, weighting) in methods {
        let mut params = Params::new();
        let model = mlp(&mut params, &tasks);
        let config = TrainerConfig { epochs, batch_size: 64, seed: 0, ..TrainerConfig::default() };
        let mut trainer = Trainer::from_boxed(config, Box::new(Adam::new(2e-3)), weighting);
        let start = Instant::now();
        let reports =
            trainer.fit(&model, &mut params, &splits.train, Some(&splits.test), &mut NoObserver)?;
        let seconds = start.elapsed().as_secs_f64();
        let last = reports.last().expect("at least one epoch");
        let test = last.validation.clone().expect("validation data given");
        println!(
            "{name:>9}: {seconds:.1} s, mean weights of the last epoch {:.3?}",
            last.mean_weights
        );
        rows.push((name, test, seconds));
    }

    let ew = rows[0].1.clone();
    print!("\n{:<10}", "method");
    for t in &tasks {
        let metric = if t.metric == MetricKind::Accuracy { "acc" } else { "RMSE" };
        print!(" {:>16}", format!("{} {metric}", t.name));
    }
    println!(" {:>8} {:>8}", "Δp (%)", "seconds");
    for (name, test, seconds) in &rows {
        print!("{name:<10}");
        let mut delta = 0.0;
        for (i, t) in tasks.iter().enumerate() {
            let (m, b) = (metric_value(test, i), metric_value(&ew, i));
            let sign = if t.metric.higher_is_better() { 1.0 } else { -1.0 };
            delta += sign * (m - b) / b;
            print!(" {m:>16.4}");
        }
        println!(" {:>+8.2} {seconds:>8.1}", 100.0 * delta / tasks.len() as f64);
    }
    Ok(())
}
