//! tapestry-mtl: the multi-task learning core of Tapestry.
//!
//! - [`affinity`]: inter-task affinity (TAG), the change of each task's loss after a lookahead
//!   step on another task's gradient.
//! - [`task_grads`]: per-task gradients on the shared parameters (`param` and `batched`
//!   modes) or at the shared representation (MGDA-UB), as one type ([`TaskGradients`]) keyed by
//!   parameter, with its Gram matrix, norms and cosines.
//! - [`min_norm`]: the min-norm problem `min over the simplex of |sum_t alpha_t g_t|^2` solved
//!   on the T x T Gram matrix (closed form for T = 2, an exact active-set solve, and Frank-Wolfe
//!   and projected gradient for comparison). MGDA and MGDA-UB use it.
//! - [`gradnorm`]: GradNorm's update of the task weights, with the derivative of its balancing
//!   loss in closed form.
//! - [`weighting`]: equal weighting, uncertainty weighting, MGDA, MGDA-UB and GradNorm behind
//!   one interface, and the registry of methods.
//! - [`model`]: multi-task models ([`MultiTaskModel`]): hard sharing, soft sharing,
//!   cross-stitch, mixtures of experts (MMoE, CGC, PLE), MTAN's attention, and the
//!   structure-encoding regularisers (trace norm, task relations); each task's loss.
//! - [`step`]: one training step that computes exactly what the weighting needs.
//! - [`multi_input`]: one batch every task reads, or a batch of its own data set per task.
//! - [`schedule`]: which tasks a step trains, and gradient accumulation over micro-batches.
//! - [`metrics`]: accuracy, RMSE, mean absolute error, mean IoU, and evaluation in eval mode.
//! - [`toy`]: the GradNorm paper's synthetic regression tasks.
//! - [`trainer`]: seeded, deterministic epochs with per-task metrics and an [`Observer`] hook.
//!
//! `docs/mtl.md` explains them.
#![forbid(unsafe_code)]

pub mod affinity;
mod error;
pub mod gradnorm;
pub mod metrics;
pub mod min_norm;
pub mod model;
pub mod multi_input;
pub mod schedule;
pub mod step;
pub mod task_grads;
pub mod toy;
pub mod trainer;
pub mod weighting;

/// The guide, `docs/mtl.md`; its Rust examples run as doctests.
#[doc = include_str!("../../../docs/mtl.md")]
pub mod guide {}

pub use error::MtlError;
pub use model::{
    CrossStitch, HardSharing, Mmoe, ModelOutput, Mtan, MultiTaskModel, Ple, Regularized,
    SoftSharing,
};
pub use step::{GradientStats, StepOptions, StepReport, TrainStep};
pub use task_grads::TaskGradients;
pub use trainer::{EpochReport, Observer, Trainer, TrainerConfig};
