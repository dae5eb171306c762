//! The MultiTaskNet: one shared conv encoder and three heads — image classification, semantic
//! segmentation and per-pixel depth — trained together with Adam on synthetic scenes.
//!
//! ```text
//! cargo run --release --example multitask_net
//! ```
//!
//! The scenes (`tapestry::data::scenes`) are a few circles, squares and triangles in front of a
//! background; nearer shapes are larger and occlude farther ones. The encoder sees the RGB image;
//! the classification head says which kind of shape covers most of it, the segmentation head
//! labels each pixel (background, circle, square, triangle) and the depth head regresses each
//! pixel's depth.
//!
//! ```text
//! image [3, 28, 28] ─ conv 3→16 k3 ─ ReLU ─ max-pool 2 ─ conv 16→32 k3 ─ ReLU ─ Z [32, 14, 14]
//!   Z ─ global average pool ─ linear 32→3                                   ─ label (accuracy)
//!   Z ─ conv 32→16 k3 ─ ReLU ─ upsample ×2 ─ conv 16→4 k1 ─ [4, 28, 28]     ─ segmentation (mIoU)
//!   Z ─ conv 32→16 k3 ─ ReLU ─ upsample ×2 ─ conv 16→1 k1 ─ [1, 28, 28]     ─ depth (MAE)
//! ```
//!
//! Environment overrides: `EPOCHS` (default 10), `TRAIN` (training scenes, default 2000), and
//! rayon's `RAYON_NUM_THREADS` (default one thread per core).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry::data::{scenes, MetricKind, ScenesConfig, TaskKind};
use tapestry::mtl::metrics::evaluate;
use tapestry::mtl::trainer::{EpochReport, Observer};
use tapestry::mtl::weighting::EqualWeighting;
use tapestry::mtl::{HardSharing, Trainer, TrainerConfig};
use tapestry::nn::optim::Adam;
use tapestry::nn::{
    Conv2d, GlobalAvgPool, Linear, MaxPool2d, NnError, Params, Relu, Sequential, Upsample2,
};

fn conv(
    params: &mut Params,
    name: &str,
    (c_in, c_out, k): (usize, usize, usize),
    rng: &mut ChaCha8Rng,
) -> Result<Conv2d, NnError> {
    Ok(Conv2d::new(params, name, c_in, c_out, (k, k), rng)?.padding((k / 2, k / 2)))
}

/// The MultiTaskNet for scenes with `channels` input channels.
fn multitask_net(
    params: &mut Params,
    channels: usize,
    seed: u64,
) -> Result<HardSharing, Box<dyn std::error::Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let encoder = Sequential::new()
        .push(conv(params, "trunk.0", (channels, 16, 3), &mut rng)?)
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(conv(params, "trunk.3", (16, 32, 3), &mut rng)?)
        .push(Relu);
    let mut model = HardSharing::builder(encoder);
    for task in tapestry::data::scenes_tasks() {
        let name = format!("heads.{}", task.name);
        let mut pixel_head = |out: usize| -> Result<Sequential, NnError> {
            Ok(Sequential::new()
                .push(conv(params, &format!("{name}.0"), (32, 16, 3), &mut rng)?)
                .push(Relu)
                .push(Upsample2)
                .push(conv(params, &format!("{name}.3"), (16, out, 1), &mut rng)?))
        };
        model = match task.kind {
            TaskKind::PixelClassification { classes, .. } => {
                let head = pixel_head(classes)?;
                model.head(task, head)
            }
            TaskKind::PixelRegression => {
                let head = pixel_head(1)?;
                model.head(task, head)
            }
            TaskKind::Classification { classes } => {
                let head = Sequential::new().push(GlobalAvgPool).push(Linear::new(
                    params,
                    &format!("{name}.1"),
                    32,
                    classes,
                    &mut rng,
                )?);
                model.head(task, head)
            }
            TaskKind::Regression { .. } => unreachable!("scenes have no vector regression task"),
        };
    }
    Ok(model.build(params)?)
}

/// Prints a line per epoch.
struct Progress;

impl Observer for Progress {
    fn on_epoch(&mut self, r: &EpochReport) {
        let test = r.validation.as_ref().expect("validation data given");
        let cells: Vec<String> = test
            .tasks
            .iter()
            .map(|t| {
                format!("{} {} {:.3}", t.task, metric_name(t.metric), t.value.unwrap_or(f64::NAN))
            })
            .collect();
        println!(
            "epoch {:>2}  {:>5.1} s  {:>5.0} samples/s  test: {}",
            r.epoch + 1,
            r.seconds,
            r.train.samples as f64 / r.seconds,
            cells.join(", ")
        );
    }
}

fn metric_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Accuracy => "accuracy",
        MetricKind::MeanIou => "mIoU",
        MetricKind::MeanAbsoluteError => "MAE",
        MetricKind::RootMeanSquaredError => "RMSE",
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config =
        ScenesConfig { train_len: env("TRAIN", 2000), test_len: 500, ..Default::default() };
    let splits = scenes(&config)?;
    let shape = splits.train.sample_shape().to_vec();
    println!(
        "synthetic scenes: {} train / {} test images of shape {shape:?}; tasks: {}",
        splits.train.len(),
        splits.test.len(),
        splits.train.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let mut params = Params::new();
    let model = multitask_net(&mut params, shape[0], 0)?;
    println!("MultiTaskNet: {} parameters", params.numel());

    let before = evaluate(&model, &params, &splits.test, 250)?;
    let trainer_config = TrainerConfig {
        epochs: env("EPOCHS", 10),
        batch_size: 32,
        eval_batch_size: 250,
        seed: 0,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(trainer_config, Adam::new(2e-3), EqualWeighting);
    trainer.fit(&model, &mut params, &splits.train, Some(&splits.test), &mut Progress)?;
    let after = evaluate(&model, &params, &splits.test, 250)?;

    println!("\n{:<14} {:>10} {:>10} {:>10}", "task", "metric", "untrained", "trained");
    for (b, a) in before.tasks.iter().zip(&after.tasks) {
        println!(
            "{:<14} {:>10} {:>10.3} {:>10.3}",
            a.task,
            metric_name(a.metric),
            b.value.unwrap_or(f64::NAN),
            a.value.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
