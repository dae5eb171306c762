//! Task weightings behind one interface.
//!
//! A [`Weighting`] declares what it needs ([`Needs`]: any combination of per-task gradients on
//! the shared parameters (or only their Gram), at the shared representation, and gradient norms
//! on one shared layer; the losses always come). The step computes exactly that, hands it over in a [`StepInput`],
//! and gets back task weights, optionally a direction that replaces the weighted gradient
//! ([`Direction`]: on the shared parameters, or a cotangent at the representation), and
//! diagnostics as name → values pairs that the log and the plots show without a field per
//! method. A weighting may also own learnable parameters and build the combined loss inside the
//! graph ([`Weighting::register`], [`Weighting::combined_loss`]), as uncertainty weighting does.
//! What a method remembers from step to step besides those parameters (GradNorm's weights,
//! DWA's epoch means, ...) it saves and restores as a [`WeightingState`], for checkpoints.
//!
//! Each method is one file; [`METHODS`] is the registry, one line per method, that the CLI
//! reads its names from.

mod aligned;
mod cagrad;
mod db_mtl;
mod dwa;
mod ew;
mod famo;
mod gls;
mod graddrop;
mod gradnorm;
mod gradvac;
mod hyper;
mod imtl;
mod imtl_hybrid;
mod imtl_l;
mod mgda;
mod nash_mtl;
mod pcgrad;
mod rlw;
mod state;
mod upgrad;
mod uw;

use std::collections::BTreeMap;

use tapestry_autodiff::{Tensor, Var};
use tapestry_data::TaskSpec;
use tapestry_nn::{Bound, ParamId, Params};
use thiserror::Error;

use crate::gradnorm::{GradNormConfig, GradNormError, WeightOptimizer};
use crate::min_norm::MinNormError;
use crate::task_grads::TaskGradients;

pub use aligned::AlignedMtl;
pub use cagrad::{CaGrad, CaGradSolution};
pub use db_mtl::DbMtl;
pub use dwa::DynamicWeightAverage;
pub use ew::EqualWeighting;
pub use famo::Famo;
pub use gls::GeometricLossStrategy;
pub use graddrop::GradDrop;
pub use gradnorm::GradNorm;
pub use gradvac::{GradVac, GradVacGrouping};
pub use hyper::{Hyper, HyperValues, Interval};
pub use imtl::ImtlG;
pub use imtl_hybrid::Imtl;
pub use imtl_l::ImtlL;
pub use mgda::{GradNormalization, Mgda, MgdaUb};
pub use nash_mtl::{
    NashFallback, NashMtl, NashSolution, NASH_MAX_ITERATIONS, NASH_RIDGE, NASH_TOLERANCE,
};
pub use pcgrad::PcGrad;
pub use rlw::RandomLossWeighting;
pub use state::WeightingState;
pub use upgrad::{Projection, Upgrad, UpgradSolution};
pub use uw::UncertaintyWeighting;

/// What a weighting needs computed each step, besides the losses (which it always gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Per-task gradients on the shared parameters (`T × P`).
    pub shared_gradients: bool,
    /// Per-task gradients at the shared representation `Z` (`T × |Z|`).
    pub representation_gradients: bool,
    /// Per-task gradient norms on one shared layer (GradNorm's `‖∇_W L_t‖`).
    pub layer_gradient_norms: bool,
    /// The task losses on the same batch after the optimizer's update (one extra forward pass,
    /// handed to [`Weighting::after_update`]; FAMO's).
    pub losses_after_update: bool,
    /// Only the `T × T` Gram of the per-task gradients on the shared parameters (MGDA, IMTL-G,
    /// Aligned-MTL): the step reduces them to it during the sweep and never holds `T × P`.
    pub shared_gram: bool,
}

impl Needs {
    /// Only the losses.
    pub const LOSSES: Needs = Needs {
        shared_gradients: false,
        representation_gradients: false,
        layer_gradient_norms: false,
        losses_after_update: false,
        shared_gram: false,
    };
}

/// What a weighting sees at one step.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// The optimisation step, from 0.
    pub step: u64,
    /// The epoch, from 0.
    pub epoch: u64,
    /// The run's seed (methods that draw at random derive their draws from it and the step).
    pub seed: u64,
    /// The task losses at this step.
    pub losses: &'a [f64],
    /// Per-task gradients on the shared parameters, if needed.
    pub shared: Option<&'a TaskGradients>,
    /// Per-task gradients at the shared representation, if needed.
    pub representation: Option<&'a TaskGradients>,
    /// Per-task gradient norms on the chosen shared layer, if needed.
    pub layer_grad_norms: Option<&'a [f64]>,
    /// The `T × T` Gram of the per-task gradients on the shared parameters, row-major, if
    /// needed ([`Needs::shared_gram`]).
    pub shared_gram: Option<&'a [f64]>,
}

impl<'a> StepInput<'a> {
    /// An input holding only `losses`, at step 0 of epoch 0 with seed 0: set the other fields
    /// with struct update syntax (`StepInput { step: 3, ..StepInput::with_losses(&l) }`).
    pub fn with_losses(losses: &'a [f64]) -> Self {
        StepInput {
            step: 0,
            epoch: 0,
            seed: 0,
            losses,
            shared: None,
            representation: None,
            layer_grad_norms: None,
            shared_gram: None,
        }
    }

    /// The `T × T` Gram of the per-task gradients on the shared parameters (from
    /// [`StepInput::shared`]'s gradients when only they are given), or the error that says
    /// `method` needs it.
    ///
    /// # Errors
    /// [`WeightingError::MissingInput`] if the step computed neither;
    /// [`WeightingError::Invalid`] if the Gram is not `T × T` for the T losses.
    pub fn shared_gram(&self, method: &'static str) -> Result<&'a [f64], WeightingError> {
        let gram = (self.shared_gram.or_else(|| self.shared.map(|g| g.gram())))
            .ok_or(WeightingError::MissingInput { method, what: "shared gradients' Gram" })?;
        let t = self.losses.len();
        if gram.len() != t * t {
            return Err(WeightingError::Invalid {
                method,
                message: format!("a Gram of {} entries for {t} tasks", gram.len()),
            });
        }
        Ok(gram)
    }

    /// The per-task gradients on the shared parameters, or the error that says `method` needs
    /// them.
    ///
    /// # Errors
    /// [`WeightingError::MissingInput`] if the step did not compute them.
    pub fn shared_gradients(
        &self,
        method: &'static str,
    ) -> Result<&'a TaskGradients, WeightingError> {
        self.shared.ok_or(WeightingError::MissingInput { method, what: "shared gradients" })
    }

    /// The per-task gradients at the representation, or the error that says `method` needs
    /// them.
    ///
    /// # Errors
    /// [`WeightingError::MissingInput`] if the step did not compute them.
    pub fn representation_gradients(
        &self,
        method: &'static str,
    ) -> Result<&'a TaskGradients, WeightingError> {
        self.representation
            .ok_or(WeightingError::MissingInput { method, what: "representation gradients" })
    }
}

/// A replacement for the weighted gradient, for methods that alter gradients.
#[derive(Debug, Clone, PartialEq)]
pub enum Direction {
    /// The shared parameters' gradient is `Σ_t c_t ∇L_t` for these coefficients, one per task,
    /// while every other parameter keeps the gradient of the weighted loss: the methods whose
    /// trunk update is a combination of the task gradients with other weights than the heads'
    /// (PCGrad, GradVac, IMTL, CAGrad). The step forms it as it forms a weighted gradient: from
    /// the per-task gradients when it holds them, else from one backward pass of `Σ_t c_t L_t`,
    /// so such a method needs no more than the Gram.
    Combination(Vec<f64>),
    /// The shared parameters' combined gradient, flattened like the rows of
    /// [`StepInput::shared`], for a direction that is no single combination of the task
    /// gradients (GradVac per parameter, DB-MTL's moving averages).
    Shared(Vec<f32>),
    /// A cotangent at the representation `Z` (its shape), pushed back through the trunk.
    Representation(Tensor),
}

/// Name → values pairs a weighting reports at a step (for example `min_norm.kkt_residual`).
pub type Diagnostics = Vec<(String, Vec<f64>)>;

/// A weighting's answer for one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepWeights {
    /// The weight of each task loss in this step's update.
    pub weights: Vec<f64>,
    /// A replacement for the weighted gradient; `None` means `Σ w_t ∇L_t`.
    pub direction: Option<Direction>,
    /// What the method wants logged.
    pub diagnostics: Diagnostics,
}

impl StepWeights {
    /// Weights with nothing else.
    pub fn weights(weights: Vec<f64>) -> Self {
        StepWeights { weights, ..Default::default() }
    }

    /// The diagnostic called `name`, if the method reported it.
    pub fn diagnostic(&self, name: &str) -> Option<&[f64]> {
        find_diagnostic(&self.diagnostics, name)
    }
}

/// The values called `name` in `diagnostics`.
pub fn find_diagnostic<'a>(diagnostics: &'a Diagnostics, name: &str) -> Option<&'a [f64]> {
    diagnostics.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// Why a weighting could not be built or could not produce weights.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WeightingError {
    /// No method of that name is registered.
    #[error("unknown weighting method `{name}`; expected one of {known}")]
    UnknownMethod {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The step did not provide what the weighting needs.
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
    /// A hyper-parameter or the model does not suit the method.
    #[error("{method}: {message}")]
    Invalid {
        /// The method.
        method: &'static str,
        /// What is wrong.
        message: String,
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
    /// A short name (`"ew"`, `"mgda"`, ...), as in [`METHODS`].
    fn name(&self) -> &'static str;

    /// What it needs each step.
    fn needs(&self) -> Needs;

    /// Registers the weighting's own learnable parameters in the model's store (they train with
    /// the model's optimizer and are saved in its checkpoints). Called once, before training;
    /// the default registers nothing.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if a parameter cannot be registered.
    fn register(
        &mut self,
        _params: &mut Params,
        _tasks: &[TaskSpec],
    ) -> Result<(), WeightingError> {
        Ok(())
    }

    /// The loss to differentiate, built inside the graph from the task losses with the
    /// weighting's own parameters (bound on this step's tape); `None`, the default, means
    /// `Σ_t w_t L_t` with the weights of [`Weighting::weights`].
    fn combined_loss<'t>(&mut self, _losses: &[Var<'t>], _bound: &Bound<'t>) -> Option<Var<'t>> {
        None
    }

    /// The weights for this step.
    ///
    /// # Errors
    /// [`WeightingError`] if an input is missing or not finite, or a solve fails.
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError>;

    /// Sees the task losses of the step's batch after the optimizer's update, when
    /// [`Needs::losses_after_update`] asks for them (FAMO learns its weights from how much each
    /// loss fell). The default does nothing.
    ///
    /// # Errors
    /// [`WeightingError`] if a loss is not finite or the update fails.
    fn after_update(&mut self, _losses_after: &[f64]) -> Result<(), WeightingError> {
        Ok(())
    }

    /// The state this weighting carries between steps (empty for a stateless method): what a
    /// checkpoint must hold, besides the parameters registered in `Params`, for a resumed run
    /// to take the same steps bit for bit. The default is empty.
    fn state(&self) -> WeightingState {
        WeightingState::default()
    }

    /// Restores a state saved by [`Weighting::state`] of the same method (with the same
    /// hyper-parameters), in place of the current one; on error nothing changes. The default
    /// takes only the empty state.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if a key is missing, unknown, or a vector has the wrong length
    /// (or holds a counter that is not a whole number, an `f32` that is not one).
    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        state::expect_empty(self.name(), state)
    }
}

/// The id of a weighting's per-task parameter `name` (`[T]`, registered with value `initial`
/// unless the store already holds it, as after loading a checkpoint).
fn per_task_param(
    method: &'static str,
    params: &mut Params,
    name: &str,
    initial: f32,
    tasks: usize,
) -> Result<ParamId, WeightingError> {
    let invalid = |message: String| WeightingError::Invalid { method, message };
    let id = match params.id(name) {
        Some(id) => id,
        None => {
            params.add(name, Tensor::full(&[tasks], initial)).map_err(|e| invalid(e.to_string()))?
        }
    };
    if params.get(id).shape() != [tasks] {
        return Err(invalid(format!(
            "{name} has shape {:?}, not [{tasks}]",
            params.get(id).shape()
        )));
    }
    Ok(id)
}

fn check_losses(method: &'static str, losses: &[f64]) -> Result<(), WeightingError> {
    match losses.iter().enumerate().find(|(_, l)| !l.is_finite()) {
        Some((task, &value)) => Err(WeightingError::NonFiniteLoss { method, task, value }),
        None => Ok(()),
    }
}

/// The options a method is built with: the numeric hyper-parameters by name (each method
/// declares its own, with defaults and ranges, in [`METHODS`]) and the two choices that are not
/// numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodOptions {
    /// Values of declared hyper-parameters (`"tau" → 2.0`); the rest keep their defaults.
    pub params: BTreeMap<String, f64>,
    /// MGDA's and MGDA-UB's gradient normalisation.
    pub normalization: GradNormalization,
    /// How GradNorm's weights follow their gradient.
    pub gradnorm_optimizer: WeightOptimizer,
}

impl Default for MethodOptions {
    fn default() -> Self {
        MethodOptions {
            params: BTreeMap::new(),
            normalization: GradNormalization::None,
            gradnorm_optimizer: WeightOptimizer::ADAM,
        }
    }
}

/// One registered method: its name, one line about it, its hyper-parameters and how to build
/// it.
pub struct Method {
    /// The name the CLI takes (`--method NAME`).
    pub name: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    /// Its numeric hyper-parameters, with defaults and ranges.
    pub hypers: &'static [Hyper],
    /// Builds it from checked hyper-parameter values and the options.
    pub build: fn(&HyperValues, &MethodOptions) -> Box<dyn Weighting>,
}

const TAU: Hyper =
    Hyper { name: "tau", default: 2.0, range: Interval::POSITIVE, about: "DWA's temperature" };
const GRADNORM_ALPHA: Hyper = Hyper {
    name: "alpha",
    default: 1.5,
    range: Interval::NON_NEGATIVE,
    about: "GradNorm's asymmetry: how strongly slow tasks are pulled up",
};
const GRADNORM_LR: Hyper = Hyper {
    name: "lr",
    default: 0.025,
    range: Interval::POSITIVE,
    about: "GradNorm's learning rate of the weights",
};
const GRADDROP_LEAK: Hyper = Hyper {
    name: "leak",
    default: 0.0,
    range: Interval::UNIT,
    about: "GradDrop's share of every gradient kept whatever the draw",
};
const CAGRAD_C: Hyper = Hyper {
    name: "c",
    default: 0.5,
    range: Interval::NON_NEGATIVE,
    about: "CAGrad's radius of the ball around the mean gradient, relative to its norm",
};
const GRADVAC_BETA: Hyper = Hyper {
    name: "beta",
    default: 0.5,
    range: Interval::UNIT,
    about: "GradVac's rate of the moving average of the target cosines",
};

const FAMO_GAMMA: Hyper = Hyper {
    name: "gamma",
    default: 0.001,
    range: Interval::NON_NEGATIVE,
    about: "FAMO's weight decay of the task logits",
};
const FAMO_W_LR: Hyper = Hyper {
    name: "w_lr",
    default: 0.025,
    range: Interval::POSITIVE,
    about: "FAMO's learning rate of the task logits (Adam)",
};
const DB_MTL_BETA: Hyper = Hyper {
    name: "beta",
    default: 0.9,
    range: Interval::UNIT_HALF_OPEN,
    about: "DB-MTL's decay of the moving average of the log-loss gradients",
};
const DB_MTL_BETA_SIGMA: Hyper = Hyper {
    name: "beta_sigma",
    default: 0.0,
    range: Interval::NON_NEGATIVE,
    about: "DB-MTL's exponent of the decay's fall with the step, beta / k^beta_sigma",
};

/// Every weighting, one line each.
#[rustfmt::skip]
pub const METHODS: &[Method] = &[
    Method { name: "ew", summary: "equal weights", hypers: &[], build: |_, _| Box::new(EqualWeighting) },
    Method { name: "uw", summary: "uncertainty weighting (learned task variances, in the graph)", hypers: &[], build: |_, _| Box::new(UncertaintyWeighting::default()) },
    Method { name: "imtl-l", summary: "learned loss scales that drive every scaled loss to 1 (in the graph)", hypers: &[], build: |_, _| Box::new(ImtlL::default()) },
    Method { name: "dwa", summary: "dynamic weight average: softmax of the last two epochs' loss ratios", hypers: &[TAU], build: |h, _| Box::new(DynamicWeightAverage::new(h.get("tau"))) },
    Method { name: "rlw", summary: "random loss weighting: a fresh softmax of a normal draw each step", hypers: &[], build: |_, _| Box::new(RandomLossWeighting) },
    Method { name: "gls", summary: "geometric loss strategy: the geometric mean of the losses", hypers: &[], build: |_, _| Box::new(GeometricLossStrategy) },
    Method { name: "mgda", summary: "min-norm point of the shared-parameter gradients", hypers: &[], build: |_, o| Box::new(Mgda { normalization: o.normalization }) },
    Method { name: "mgda-ub", summary: "MGDA on the gradients at the representation (upper bound)", hypers: &[], build: |_, o| Box::new(MgdaUb { normalization: o.normalization }) },
    Method { name: "pcgrad", summary: "project each task's gradient off those it conflicts with, then sum", hypers: &[], build: |_, _| Box::new(PcGrad) },
    Method { name: "gradvac", summary: "move each task's gradient towards a learned target cosine with each other task's, then sum", hypers: &[GRADVAC_BETA], build: |h, _| Box::new(GradVac::new(h.get("beta"), GradVacGrouping::WholeModel)) },
    Method { name: "imtl", summary: "IMTL-G's impartial weights on the gradients of IMTL-L's learned-scale losses", hypers: &[], build: |_, _| Box::new(Imtl::default()) },
    Method { name: "imtl-g", summary: "weights whose combined gradient projects equally on every task's unit gradient", hypers: &[], build: |_, _| Box::new(ImtlG) },
    Method { name: "nash-mtl", summary: "Nash bargaining weights: the α > 0 with α_t (Gα)_t = 1 on the Gram", hypers: &[], build: |_, _| Box::new(NashMtl) },
    Method { name: "upgrad", summary: "mean of each task's gradient projected onto the dual cone of all of them", hypers: &[], build: |_, _| Box::new(Upgrad) },
    Method { name: "aligned-mtl", summary: "weights from the Gram's eigendecomposition that make the task gradients well-conditioned", hypers: &[], build: |_, _| Box::new(AlignedMtl) },
    Method { name: "graddrop", summary: "keep one sign of the gradients at the representation per element, drawn by how much has it", hypers: &[GRADDROP_LEAK], build: |h, _| Box::new(GradDrop { leak: h.get("leak") as f32 }) },
    Method { name: "cagrad", summary: "the update within c·‖g_0‖ of the mean gradient that best helps the worst task", hypers: &[CAGRAD_C], build: |h, _| Box::new(CaGrad { c: h.get("c") }) },
    Method { name: "gradnorm", summary: "weights that balance gradient norms on one shared layer", hypers: &[GRADNORM_ALPHA, GRADNORM_LR], build: |h, o| Box::new(GradNorm::with_config(GradNormConfig { optimizer: o.gradnorm_optimizer, ..GradNormConfig::new(h.get("alpha"), h.get("lr")) })) },
    Method { name: "famo", summary: "softmax weights of log-losses, learned from how much each log-loss fell after the update", hypers: &[FAMO_GAMMA, FAMO_W_LR], build: |h, _| Box::new(Famo::new(h.get("gamma"), h.get("w_lr"))) },
    Method { name: "db-mtl", summary: "log-losses, and moving averages of their shared gradients scaled to the largest norm", hypers: &[DB_MTL_BETA, DB_MTL_BETA_SIGMA], build: |h, _| Box::new(DbMtl::new(h.get("beta"), h.get("beta_sigma"))) },
];

/// The registered method called `name` (case-sensitive).
pub fn method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// The registered method called `name`, built with `options` after checking its
/// hyper-parameters.
///
/// # Errors
/// [`WeightingError::Invalid`] for an unknown method, a hyper-parameter the method does not
/// take, or a value out of its range.
pub fn by_name(name: &str, options: &MethodOptions) -> Result<Box<dyn Weighting>, WeightingError> {
    let Some(m) = method(name) else {
        return Err(WeightingError::UnknownMethod {
            name: name.to_string(),
            known: method_names().join(", "),
        });
    };
    let values = HyperValues::resolve(m.name, m.hypers, &options.params)?;
    Ok((m.build)(&values, options))
}

/// The names of every registered method, in registry order.
pub fn method_names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}
