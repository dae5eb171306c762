//! The synthetic regression toy of the GradNorm paper (Chen et al., ICML 2018, section 4):
//! T tasks `f_t(x) = σ_t tanh((B + ε_t) x)` that share most of their structure (`B`) and
//! differ in a task-specific part (`ε_t`) and, above all, in scale (`σ_t`), so their losses
//! and gradients differ by orders of magnitude.
//!
//! `B` has entries drawn from `N(0, b_std²)` and each `ε_t` from `N(0, eps_std²)` (the paper's
//! `N(0, 10)` and `N(0, 3.5)`, read as standard deviations); the inputs have entries from
//! `N(0, input_std²)`, a scale the paper leaves open. Each task's loss is the mean squared error and its metric
//! the RMSE.
//!
//! ```
//! use tapestry_mtl::toy::{gradnorm_toy, GradNormToyConfig};
//! let splits = gradnorm_toy(&GradNormToyConfig {
//!     sigmas: vec![1.0, 100.0],
//!     train: 50,
//!     test: 10,
//!     ..GradNormToyConfig::default()
//! });
//! assert_eq!(splits.train.inputs.shape(), &[50, 250]);
//! assert_eq!(splits.train.tasks.len(), 2);
//! ```

use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tapestry_data::{MultiTaskDataset, Splits, TaskSpec, TaskTargets};
use tapestry_nn::{Linear, Params, Relu, Sequential};

use crate::error::MtlError;
use crate::model::HardSharing;

/// The toy's sizes and scales.
#[derive(Debug, Clone, PartialEq)]
pub struct GradNormToyConfig {
    /// `σ_t` for each task; the number of tasks is its length.
    pub sigmas: Vec<f64>,
    /// The input dimension (the paper: 250).
    pub input_dim: usize,
    /// The output dimension of each task (the paper: 100).
    pub output_dim: usize,
    /// The standard deviation of `B`'s entries (10).
    pub b_std: f64,
    /// The standard deviation of each `ε_t`'s entries (3.5).
    pub eps_std: f64,
    /// The standard deviation of the inputs' entries (1; the paper does not say). At this scale
    /// tanh is saturated and each target is close to `±σ_t`, the sign of a random projection.
    pub input_std: f64,
    /// Training samples.
    pub train: usize,
    /// Test samples.
    pub test: usize,
    /// The seed of `B`, the `ε_t` and the inputs.
    pub seed: u64,
}

impl Default for GradNormToyConfig {
    fn default() -> Self {
        GradNormToyConfig {
            sigmas: vec![1.0, 100.0],
            input_dim: 250,
            output_dim: 100,
            b_std: 10.0,
            eps_std: 3.5,
            input_std: 1.0,
            train: 10_000,
            test: 1_000,
            seed: 0,
        }
    }
}

/// The tasks of the toy: `task0`, `task1`, ..., regression of `output_dim` values each.
pub fn gradnorm_toy_tasks(config: &GradNormToyConfig) -> Vec<TaskSpec> {
    (0..config.sigmas.len())
        .map(|t| TaskSpec::regression(format!("task{t}"), config.output_dim))
        .collect()
}

fn normal_matrix(rows: usize, cols: usize, std: f64, rng: &mut ChaCha8Rng) -> Array2<f64> {
    let normal = Normal::new(0.0, std).expect("a finite, non-negative standard deviation");
    Array2::from_shape_simple_fn((rows, cols), || normal.sample(rng))
}

/// Generates the toy's train and test splits (`gradnorm_toy/train`, `gradnorm_toy/test`).
///
/// # Panics
/// If there is no task, a size is 0 or a standard deviation is negative or not finite.
pub fn gradnorm_toy(config: &GradNormToyConfig) -> Splits {
    assert!(!config.sigmas.is_empty(), "the toy needs at least one task");
    assert!(config.input_dim > 0 && config.output_dim > 0, "the toy needs positive dimensions");
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let (d_in, d_out) = (config.input_dim, config.output_dim);
    let b = normal_matrix(d_out, d_in, config.b_std, &mut rng);
    let maps: Vec<Array2<f64>> = (config.sigmas.iter())
        .map(|_| &b + &normal_matrix(d_out, d_in, config.eps_std, &mut rng))
        .collect();
    let n = config.train + config.test;
    let x = normal_matrix(n, d_in, config.input_std, &mut rng);
    let targets: Vec<Array2<f32>> = (config.sigmas.iter().zip(&maps))
        .map(|(&sigma, m)| x.dot(&m.t()).mapv(|v| (sigma * v.tanh()) as f32))
        .collect();
    let x = x.mapv(|v| v as f32);
    let split = |name: &str, range: std::ops::Range<usize>| {
        let idx: Vec<usize> = range.collect();
        MultiTaskDataset::new(
            format!("gradnorm_toy/{name}"),
            x.select(Axis(0), &idx).into_dyn(),
            gradnorm_toy_tasks(config),
            (targets.iter())
                .map(|y| TaskTargets::Values { values: y.select(Axis(0), &idx), mask: None })
                .collect(),
        )
        .expect("the toy's arrays fit together")
    };
    Splits { train: split("train", 0..config.train), test: split("test", config.train..n) }
}

/// The paper's network for the toy: a trunk of `layers` fully connected ReLU layers of `hidden`
/// units (`trunk.0`, `trunk.2`, ...; the paper: 4 of 100) and one linear head per task
/// (`heads.task<t>`), initialised as PyTorch does from `seed`.
///
/// Errors if `params` already holds one of the names.
pub fn gradnorm_toy_model(
    params: &mut Params,
    config: &GradNormToyConfig,
    hidden: usize,
    layers: usize,
    seed: u64,
) -> Result<HardSharing, MtlError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nn = |e: tapestry_nn::NnError| MtlError::Model(e.to_string());
    let mut trunk = Sequential::new();
    let mut width = config.input_dim;
    for l in 0..layers {
        trunk = trunk
            .push(
                Linear::new(params, &format!("trunk.{}", 2 * l), width, hidden, &mut rng)
                    .map_err(nn)?,
            )
            .push(Relu);
        width = hidden;
    }
    let mut builder = HardSharing::builder(trunk).input_shape(&[config.input_dim]);
    for task in gradnorm_toy_tasks(config) {
        let name = format!("heads.{}", task.name);
        let head = Linear::new(params, &name, width, config.output_dim, &mut rng).map_err(nn)?;
        builder = builder.head(task, head);
    }
    builder.build(params)
}
