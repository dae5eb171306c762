//! Task weightings behind one interface.
//!
//! A [`Weighting`] says what it needs to see ([`Requirement`]): only the losses, the per-task
//! gradients on the shared parameters, the per-task gradients on the shared representation, or
//! the per-task gradient norms on one shared layer. The trainer computes exactly that, hands it
//! over in a [`StepInput`], and gets back task weights (and optionally a combined direction for
//! methods that alter gradients rather than weigh losses). Equal weighting, MGDA, MGDA-UB and
//! GradNorm live here; every later method is one more implementation.

use thiserror::Error;

use crate::gradnorm::{
    gradnorm_update, GradNormConfig, GradNormError, GradNormStep, WeightOptimizerState,
};
use crate::min_norm::{min_norm_weights, MinNormError, MinNormSolution};
use crate::task_grads::TaskGradients;

/// What a weighting needs computed each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Only the task losses (one backward pass of the weighted sum).
    Losses,
    /// Per-task gradients on the shared parameters (`T × P`).
    SharedGradients,
    /// Per-task gradients on the shared representation `Z` (`T × |Z|`).
    RepresentationGradients,
    /// Per-task gradient norms on one shared layer.
    LayerGradientNorms,
}

/// What a weighting sees at one step.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// The optimisation step, from 0.
    pub step: u64,
    /// The epoch, from 0.
    pub epoch: u64,
    /// The task losses at this step.
    pub losses: &'a [f64],
    /// Per-task gradients on the shared parameters, if required.
    pub shared: Option<&'a TaskGradients>,
    /// Per-task gradients on the shared representation, if required.
    pub representation: Option<&'a TaskGradients>,
    /// Per-task gradient norms on the chosen shared layer, if required.
    pub layer_grad_norms: Option<&'a [f64]>,
}

/// A weighting's answer for one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepWeights {
    /// The weight of each task loss in this step's update.
    pub weights: Vec<f64>,
    /// A replacement for the shared parameters' combined gradient (flattened like
    /// [`StepInput::shared`]), for methods that alter gradients; `None` means `Σ w_t g_t`.
    pub direction: Option<Vec<f32>>,
    /// The min-norm solve, for MGDA-type methods.
    pub min_norm: Option<MinNormSolution>,
    /// The GradNorm update made at this step.
    pub gradnorm: Option<GradNormStep>,
}

/// Why a weighting could not produce weights.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WeightingError {
    /// The trainer did not provide what the weighting requires.
    #[error("{method}: missing input {what}")]
    MissingInput {
        /// The method.
        method: &'static str,
        /// What was missing.
        what: &'static str,
    },
    /// A loss was NaN or infinite.
    #[error("{method}: loss of task {task} is not finite ({value})")]
    NonFiniteLoss {
        /// The method.
        method: &'static str,
        /// The task.
        task: usize,
        /// The value.
        value: f64,
    },
    /// The min-norm solve failed.
    #[error(transparent)]
    MinNorm(#[from] MinNormError),
    /// The GradNorm update failed.
    #[error(transparent)]
    GradNorm(#[from] GradNormError),
}

/// A task-weighting method.
pub trait Weighting: Send {
    /// A short name (`"ew"`, `"mgda"`, ...).
    fn name(&self) -> &'static str;
    /// What it needs each step.
    fn requirement(&self) -> Requirement;
    /// The weights for this step.
    ///
    /// # Errors
    /// [`WeightingError`] if an input is missing or not finite, or a solve fails.
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError>;
}

fn check_losses(method: &'static str, losses: &[f64]) -> Result<(), WeightingError> {
    match losses.iter().enumerate().find(|(_, l)| !l.is_finite()) {
        Some((task, &value)) => Err(WeightingError::NonFiniteLoss { method, task, value }),
        None => Ok(()),
    }
}

/// Equal weighting: every task loss has weight 1.
#[derive(Debug, Clone, Default)]
pub struct EqualWeighting;

impl Weighting for EqualWeighting {
    fn name(&self) -> &'static str {
        "ew"
    }
    fn requirement(&self) -> Requirement {
        Requirement::Losses
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("ew", input.losses)?;
        Ok(StepWeights { weights: vec![1.0; input.losses.len()], ..Default::default() })
    }
}

/// How MGDA scales each task's gradient before the min-norm solve (Sener & Koltun's options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradNormalization {
    /// No scaling.
    #[default]
    None,
    /// Divide by the gradient's norm `‖g_t‖`.
    L2,
    /// Divide by the task loss `L_t`.
    Loss,
    /// Divide by `L_t · ‖g_t‖`.
    LossPlus,
}

/// The normalisers `n_t` of each task (1 where the formula gives 0 or a non-finite value).
fn normalizers(kind: GradNormalization, norms: &[f64], losses: &[f64]) -> Vec<f64> {
    norms
        .iter()
        .zip(losses)
        .map(|(&n, &l)| {
            let v = match kind {
                GradNormalization::None => 1.0,
                GradNormalization::L2 => n,
                GradNormalization::Loss => l,
                GradNormalization::LossPlus => l * n,
            };
            if v > 0.0 && v.is_finite() {
                v
            } else {
                1.0
            }
        })
        .collect()
}

/// The Gram matrix of `g_t / n_t`: `G[s][t] / (n_s n_t)`.
fn normalized_gram(gram: &[f64], norm: &[f64]) -> Vec<f64> {
    let t = norm.len();
    let mut out = gram.to_vec();
    for s in 0..t {
        for u in 0..t {
            out[s * t + u] /= norm[s] * norm[u];
        }
    }
    out
}

fn min_norm_step(
    method: &'static str,
    grads: &TaskGradients,
    losses: &[f64],
    normalization: GradNormalization,
) -> Result<StepWeights, WeightingError> {
    check_losses(method, losses)?;
    let t = grads.tasks();
    let gram = grads.gram();
    let norms: Vec<f64> = (0..t).map(|i| gram[i * t + i].sqrt()).collect();
    let n = normalizers(normalization, &norms, losses);
    let solution = min_norm_weights(&normalized_gram(&gram, &n), t)?;
    // As in the reference MGDA code, the weights found for the normalised gradients weigh the
    // raw task losses.
    Ok(StepWeights {
        weights: solution.weights.clone(),
        min_norm: Some(solution),
        ..Default::default()
    })
}

/// MGDA (Sener & Koltun, 2018): weights on the simplex minimising `‖Σ α_t g_t‖²` over the
/// per-task gradients on the shared parameters.
#[derive(Debug, Clone, Default)]
pub struct Mgda {
    /// The gradient normalisation before the solve.
    pub normalization: GradNormalization,
}

impl Weighting for Mgda {
    fn name(&self) -> &'static str {
        "mgda"
    }
    fn requirement(&self) -> Requirement {
        Requirement::SharedGradients
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        let grads = input
            .shared
            .ok_or(WeightingError::MissingInput { method: "mgda", what: "shared gradients" })?;
        min_norm_step("mgda", grads, input.losses, self.normalization)
    }
}

/// MGDA-UB: the min-norm solve on the gradients w.r.t. the shared representation `Z`, an upper
/// bound that needs only the heads' backward pass.
#[derive(Debug, Clone, Default)]
pub struct MgdaUb {
    /// The gradient normalisation before the solve.
    pub normalization: GradNormalization,
}

impl Weighting for MgdaUb {
    fn name(&self) -> &'static str {
        "mgda-ub"
    }
    fn requirement(&self) -> Requirement {
        Requirement::RepresentationGradients
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        let grads = input.representation.ok_or(WeightingError::MissingInput {
            method: "mgda-ub",
            what: "representation gradients",
        })?;
        min_norm_step("mgda-ub", grads, input.losses, self.normalization)
    }
}

/// GradNorm (Chen et al., 2018): learned task weights that balance the gradient norms of the
/// weighted losses on one shared layer against each task's relative training rate.
///
/// The weights used at a step are the current ones; the update computed from that step's
/// losses and norms applies from the next step. The initial losses `L_t(0)` are those of the
/// first step. The weights' optimizer state (Adam's moments) is kept from step to step.
#[derive(Debug, Clone)]
pub struct GradNorm {
    config: GradNormConfig,
    current: Vec<f64>,
    initial_losses: Option<Vec<f64>>,
    optimizer_state: WeightOptimizerState,
}

impl GradNorm {
    /// GradNorm with asymmetry `alpha` and weight learning rate `learning_rate`, with plain
    /// gradient descent on the weights ([`GradNormConfig::new`]).
    pub fn new(alpha: f64, learning_rate: f64) -> Self {
        GradNorm::with_config(GradNormConfig::new(alpha, learning_rate))
    }

    /// GradNorm with a full configuration, for instance [`GradNormConfig::adam`] for Adam on
    /// the weights as in the paper.
    pub fn with_config(config: GradNormConfig) -> Self {
        GradNorm {
            config,
            current: Vec::new(),
            initial_losses: None,
            optimizer_state: WeightOptimizerState::default(),
        }
    }

    /// The weights the next step will use (empty before the first step).
    pub fn current_weights(&self) -> &[f64] {
        &self.current
    }
}

impl Weighting for GradNorm {
    fn name(&self) -> &'static str {
        "gradnorm"
    }
    fn requirement(&self) -> Requirement {
        Requirement::LayerGradientNorms
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("gradnorm", input.losses)?;
        let norms = input.layer_grad_norms.ok_or(WeightingError::MissingInput {
            method: "gradnorm",
            what: "layer gradient norms",
        })?;
        let t = input.losses.len();
        if self.current.len() != t {
            self.current = vec![1.0; t];
            self.optimizer_state = WeightOptimizerState::default();
        }
        let initial = self.initial_losses.get_or_insert_with(|| input.losses.to_vec()).clone();
        let used = self.current.clone();
        let step = gradnorm_update(
            &used,
            norms,
            input.losses,
            &initial,
            &self.config,
            &mut self.optimizer_state,
        )?;
        self.current = step.weights.clone();
        Ok(StepWeights { weights: used, gradnorm: Some(step), ..Default::default() })
    }
}
