//! GradNorm's update of the task weights (Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm:
//! Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018),
//! as a function of a few numbers per task (and, for Adam, of its moment estimates).
//!
//! The total loss is `sum_t w_t L_t`. GradNorm picks a shared layer `W` (by default the last
//! shared one) and, every step, moves the weights `w` so that each task's weighted gradient
//! norm on `W` approaches a target that is larger for tasks that train slower. With the
//! quantities named as in [`GradNormStep`]:
//!
//! ```text
//! n_t      = |grad_W L_t|                     gradient norm of the *unweighted* loss  (input)
//! G_t      = |grad_W (w_t L_t)| = w_t n_t     weighted_grad_norms
//! G_bar    = mean_t G_t                       mean_grad_norm
//! Ltilde_t = L_t(now) / L_t(0)                loss_ratios (inverse training rate)
//! r_t      = Ltilde_t / mean_s Ltilde_s       relative_inverse_rates
//! target_t = G_bar * r_t^alpha                targets, held constant
//! L_grad   = sum_t |G_t - target_t|           balance_loss
//! ```
//!
//! **The derivative in closed form.** The targets are treated as constants (the paper detaches
//! them, `G_bar` included). Because `w_t > 0`, `G_t = w_t n_t`, so `L_grad` is a sum of
//! one-variable terms `|w_t n_t - target_t|` and
//!
//! ```text
//! dL_grad / dw_t = sign(G_t - target_t) * n_t        weight_gradient
//! ```
//!
//! (with `sign(0) = 0`, a subgradient). No second-order autodiff is needed: only the T norms
//! `n_t`, which cost one gradient per task on `W`.
//!
//! **The step.** The weights follow `dL_grad/dw` with the rule of
//! [`GradNormConfig::optimizer`], each weight is floored at `min_weight`, then all weights are
//! multiplied by `T / sum_s w_s` so that they sum to T (the paper renormalises after each
//! update). A task whose loss falls faster than the others' (smaller `r_t`) gets a smaller
//! target, so once its `G_t` exceeds it, its weight goes down; a task that lags gets more.
//!
//! - [`WeightOptimizer::GradientDescent`]: `w_t <- w_t - learning_rate * dL_grad/dw_t`. The
//!   step is proportional to the raw norm `n_t`, so when the tasks' gradients differ by orders
//!   of magnitude (the case GradNorm is for) a learning rate small enough for the largest is
//!   far too small for the others, and the weight of the largest swings by `learning_rate *
//!   n_t` around its balance point at every step.
//! - [`WeightOptimizer::Adam`]: Adam on the T weights, as in the paper ("all optimizers are
//!   Adam", with a weight learning rate of 0.025 on NYUv2). Its step is about `learning_rate`
//!   whatever the scale of `n_t`, and it shrinks where the sign of the gradient keeps flipping.
//!   Adam's moment estimates live in a [`WeightOptimizerState`] that the caller keeps from one
//!   update to the next.
//!
//! ```
//! use tapestry_mtl::gradnorm::{gradnorm_update, GradNormConfig, WeightOptimizerState};
//!
//! // Task 0 has fallen to a quarter of its initial loss, task 1 has not moved.
//! let mut state = WeightOptimizerState::default();
//! let step = gradnorm_update(&[1.0, 1.0], &[1.0, 1.0], &[0.25, 1.0], &[1.0, 1.0],
//!                            &GradNormConfig::new(1.5, 0.1), &mut state).unwrap();
//! assert!(step.weights[0] < 1.0 && step.weights[1] > 1.0);
//! assert!((step.weights.iter().sum::<f64>() - 2.0).abs() < 1e-12);
//! ```

use thiserror::Error;

/// Default floor on a weight before renormalisation ([`GradNormConfig::min_weight`]).
pub const DEFAULT_MIN_WEIGHT: f64 = 1e-3;

/// How the weights follow the derivative of the balancing loss (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightOptimizer {
    /// `w_t <- w_t - learning_rate * dL_grad/dw_t`.
    GradientDescent,
    /// Adam (Kingma & Ba, 2015) on the weights, as `torch.optim.Adam`: with `k` the update's
    /// number from 1 and `g = dL_grad/dw`,
    ///
    /// ```text
    /// m <- beta1 m + (1 - beta1) g        v <- beta2 v + (1 - beta2) g^2
    /// w <- w - learning_rate * (m / (1 - beta1^k)) / (sqrt(v / (1 - beta2^k)) + eps)
    /// ```
    Adam {
        /// Decay of the first moment, in `[0, 1)`.
        beta1: f64,
        /// Decay of the second moment, in `[0, 1)`.
        beta2: f64,
        /// Added to the root of the second moment, `> 0`.
        eps: f64,
    },
}

impl WeightOptimizer {
    /// Adam with the usual constants: `beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8`.
    pub const ADAM: WeightOptimizer = WeightOptimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

    /// The direction each value moves along, before the learning rate, after folding
    /// `gradient` into `state` (one update more): the gradient itself, or Adam's bias-corrected
    /// `m / (sqrt(v) + eps)`. A state whose moments are empty or of another length starts
    /// afresh.
    pub fn descent_steps(&self, gradient: &[f64], state: &mut WeightOptimizerState) -> Vec<f64> {
        state.steps += 1;
        let WeightOptimizer::Adam { beta1, beta2, eps } = *self else {
            return gradient.to_vec();
        };
        if state.first_moment.len() != gradient.len() {
            state.first_moment = vec![0.0; gradient.len()];
            state.second_moment = vec![0.0; gradient.len()];
        }
        let k = i32::try_from(state.steps).unwrap_or(i32::MAX);
        let (correction1, correction2) = (1.0 - beta1.powi(k), 1.0 - beta2.powi(k));
        let moments = state.first_moment.iter_mut().zip(state.second_moment.iter_mut());
        gradient
            .iter()
            .zip(moments)
            .map(|(&g, (m, v))| {
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                (*m / correction1) / ((*v / correction2).sqrt() + eps)
            })
            .collect()
    }
}

/// What the weights' optimizer carries from one update to the next: nothing for gradient
/// descent; for Adam, the number of updates made and the two moment estimates, one per task.
/// Start from `WeightOptimizerState::default()` and pass the same state to every update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightOptimizerState {
    /// Updates made so far.
    pub steps: u64,
    /// Adam's first moment estimate `m`, one per task (empty before the first Adam update).
    pub first_moment: Vec<f64>,
    /// Adam's second moment estimate `v`, one per task (empty before the first Adam update).
    pub second_moment: Vec<f64>,
}

/// Hyperparameters of GradNorm's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradNormConfig {
    /// The asymmetry `alpha >= 0`: how strongly slow tasks are pulled up (the paper uses 0.12
    /// on its synthetic toy and up to 1.5 on NYUv2). With `alpha = 0` all targets are equal.
    pub alpha: f64,
    /// Learning rate of the weights, `>= 0`.
    pub learning_rate: f64,
    /// Floor applied to each weight after the gradient step and before renormalisation, `> 0`,
    /// so no task is switched off for good.
    pub min_weight: f64,
    /// The rule that moves the weights.
    pub optimizer: WeightOptimizer,
}

impl GradNormConfig {
    /// A configuration with the given asymmetry and learning rate, plain gradient descent on
    /// the weights and the default floor [`DEFAULT_MIN_WEIGHT`].
    pub fn new(alpha: f64, learning_rate: f64) -> Self {
        Self {
            alpha,
            learning_rate,
            min_weight: DEFAULT_MIN_WEIGHT,
            optimizer: WeightOptimizer::GradientDescent,
        }
    }

    /// As [`GradNormConfig::new`], with Adam on the weights ([`WeightOptimizer::ADAM`]), as in
    /// the paper.
    pub fn adam(alpha: f64, learning_rate: f64) -> Self {
        Self { optimizer: WeightOptimizer::ADAM, ..Self::new(alpha, learning_rate) }
    }
}

/// Everything one GradNorm update computed, for logging and inspection. The per-task vectors
/// describe the state *before* the step (at the input weights).
#[derive(Debug, Clone, PartialEq)]
pub struct GradNormStep {
    /// The new weights, summing to T.
    pub weights: Vec<f64>,
    /// `L_grad = sum_t |G_t - target_t|` at the input weights.
    pub balance_loss: f64,
    /// `G_t = w_t n_t`, the gradient norm of the weighted loss `w_t L_t` on `W`.
    pub weighted_grad_norms: Vec<f64>,
    /// `G_bar = mean_t G_t`.
    pub mean_grad_norm: f64,
    /// `Ltilde_t = L_t(now) / L_t(0)`, the inverse training rate.
    pub loss_ratios: Vec<f64>,
    /// `r_t = Ltilde_t / mean_s Ltilde_s` (all 1 if every current loss is 0).
    pub relative_inverse_rates: Vec<f64>,
    /// `target_t = G_bar * r_t^alpha`, held constant in the derivative.
    pub targets: Vec<f64>,
    /// `dL_grad / dw_t = sign(G_t - target_t) * n_t`.
    pub weight_gradient: Vec<f64>,
}

/// Why a GradNorm update was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GradNormError {
    /// No tasks.
    #[error("gradnorm: no tasks (the weights are empty)")]
    NoTasks,
    /// An input's length (or the optimizer state's) differs from the number of weights.
    #[error("gradnorm: {name} has {len} entries, expected {expected} (one per task)")]
    LengthMismatch {
        /// Which input.
        name: &'static str,
        /// Its length.
        len: usize,
        /// The number of tasks.
        expected: usize,
    },
    /// An input entry is NaN or infinite.
    #[error("gradnorm: {name}[{index}] is not finite: {value}")]
    NonFinite {
        /// Which input.
        name: &'static str,
        /// The task.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// An input entry is out of its range (weights and initial losses must be positive, norms
    /// and current losses nonnegative).
    #[error("gradnorm: {name}[{index}] = {value} is out of range: {requirement}")]
    OutOfRange {
        /// Which input.
        name: &'static str,
        /// The task.
        index: usize,
        /// The value found.
        value: f64,
        /// What was required.
        requirement: &'static str,
    },
    /// A hyperparameter is out of its range.
    #[error("gradnorm: config.{name} = {value} is invalid: {requirement}")]
    InvalidConfig {
        /// Which field.
        name: &'static str,
        /// The value found.
        value: f64,
        /// What was required.
        requirement: &'static str,
    },
}

/// One GradNorm update of the task weights.
///
/// - `weights`: the current weights `w_t > 0` (normally summing to T);
/// - `grad_norms`: `n_t = |grad_W L_t|`, the norm of the gradient of the *unweighted* loss of
///   task t on the chosen shared layer `W`;
/// - `losses`: the current losses `L_t(now) >= 0`;
/// - `initial_losses`: the losses at the first step, `L_t(0) > 0`;
/// - `state`: the optimizer's state, the same value from one update to the next (start from
///   `WeightOptimizerState::default()`); gradient descent only counts the update, Adam also
///   keeps its moments there.
///
/// Returns the new weights (summing to T) and every intermediate quantity; see the module
/// documentation for the formulas and their derivation. On error `state` is unchanged.
pub fn gradnorm_update(
    weights: &[f64],
    grad_norms: &[f64],
    losses: &[f64],
    initial_losses: &[f64],
    config: &GradNormConfig,
    state: &mut WeightOptimizerState,
) -> Result<GradNormStep, GradNormError> {
    validate(weights, grad_norms, losses, initial_losses, config, state)?;
    let t = weights.len();
    let count = t as f64;

    let weighted_grad_norms: Vec<f64> =
        weights.iter().zip(grad_norms).map(|(w, n)| w * n).collect();
    let mean_grad_norm = weighted_grad_norms.iter().sum::<f64>() / count;
    let loss_ratios: Vec<f64> = losses.iter().zip(initial_losses).map(|(l, l0)| l / l0).collect();
    let mean_ratio = loss_ratios.iter().sum::<f64>() / count;
    let relative_inverse_rates: Vec<f64> = if mean_ratio > 0.0 {
        loss_ratios.iter().map(|l| l / mean_ratio).collect()
    } else {
        vec![1.0; t]
    };
    let targets: Vec<f64> = relative_inverse_rates
        .iter()
        .map(|r| if mean_grad_norm > 0.0 { mean_grad_norm * r.powf(config.alpha) } else { 0.0 })
        .collect();
    let balance_loss = weighted_grad_norms.iter().zip(&targets).map(|(g, c)| (g - c).abs()).sum();
    let weight_gradient: Vec<f64> = weighted_grad_norms
        .iter()
        .zip(&targets)
        .zip(grad_norms)
        .map(|((g, c), n)| sign(g - c) * n)
        .collect();

    let steps = config.optimizer.descent_steps(&weight_gradient, state);
    let mut new_weights: Vec<f64> = weights
        .iter()
        .zip(&steps)
        .map(|(w, d)| (w - config.learning_rate * d).max(config.min_weight))
        .collect();
    let total: f64 = new_weights.iter().sum();
    new_weights.iter_mut().for_each(|w| *w *= count / total);

    Ok(GradNormStep {
        weights: new_weights,
        balance_loss,
        weighted_grad_norms,
        mean_grad_norm,
        loss_ratios,
        relative_inverse_rates,
        targets,
        weight_gradient,
    })
}

/// `sign(x)` with `sign(0) = 0`.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn validate(
    weights: &[f64],
    grad_norms: &[f64],
    losses: &[f64],
    initial_losses: &[f64],
    config: &GradNormConfig,
    state: &WeightOptimizerState,
) -> Result<(), GradNormError> {
    let t = weights.len();
    if t == 0 {
        return Err(GradNormError::NoTasks);
    }
    let inputs: [(&'static str, &[f64], bool, &'static str); 4] = [
        ("weights", weights, true, "must be > 0"),
        ("grad_norms", grad_norms, false, "must be >= 0"),
        ("losses", losses, false, "must be >= 0"),
        ("initial_losses", initial_losses, true, "must be > 0"),
    ];
    for (name, values, strictly_positive, requirement) in inputs {
        if values.len() != t {
            return Err(GradNormError::LengthMismatch { name, len: values.len(), expected: t });
        }
        for (index, &value) in values.iter().enumerate() {
            if !value.is_finite() {
                return Err(GradNormError::NonFinite { name, index, value });
            }
            if value < 0.0 || (strictly_positive && value == 0.0) {
                return Err(GradNormError::OutOfRange { name, index, value, requirement });
            }
        }
    }
    let fields = [
        ("alpha", config.alpha, false, "must be finite and >= 0"),
        ("learning_rate", config.learning_rate, false, "must be finite and >= 0"),
        ("min_weight", config.min_weight, true, "must be finite and > 0"),
    ];
    for (name, value, strictly_positive, requirement) in fields {
        if !value.is_finite() || value < 0.0 || (strictly_positive && value == 0.0) {
            return Err(GradNormError::InvalidConfig { name, value, requirement });
        }
    }
    if let WeightOptimizer::Adam { beta1, beta2, eps } = config.optimizer {
        for (name, value) in [("optimizer.beta1", beta1), ("optimizer.beta2", beta2)] {
            if !(0.0..1.0).contains(&value) {
                let requirement = "must be in [0, 1)";
                return Err(GradNormError::InvalidConfig { name, value, requirement });
            }
        }
        if !(eps.is_finite() && eps > 0.0) {
            let requirement = "must be finite and > 0";
            return Err(GradNormError::InvalidConfig {
                name: "optimizer.eps",
                value: eps,
                requirement,
            });
        }
        let moments = [
            ("state.first_moment", &state.first_moment),
            ("state.second_moment", &state.second_moment),
        ];
        for (name, moment) in moments {
            if !moment.is_empty() && moment.len() != t {
                return Err(GradNormError::LengthMismatch { name, len: moment.len(), expected: t });
            }
        }
    }
    Ok(())
}
