//! Meta-learning on Tapestry's tape: learn an initialisation θ from many related tasks so that a
//! new task is learned from a few examples.
//!
//! - [`task`]: a task is a support set (to adapt on) and a query set (to score the adapted
//!   model on); [`sampler`] draws them: sinusoid regression as in Finn et al. (2017) and in
//!   Nichol et al. (2018), and N-way K-shot classification episodes from a labelled pool.
//! - [`algorithm`]: MAML (the meta-gradient through k recorded inner steps), first-order MAML,
//!   Meta-SGD (per-parameter inner learning rates learned in the outer loop) and Reptile.
//! - [`adapt`]: the adaptation a learned initialisation is scored by: k steps of SGD on the
//!   support set, and the query loss after each.
//!
//! `docs/meta.md` explains MAML's meta-gradient and why first-order MAML and Reptile
//! approximate it.
#![forbid(unsafe_code)]

pub mod adapt;
pub mod algorithm;
pub mod error;
pub mod sampler;
pub mod task;

pub use adapt::{adapt, adaptation_curve, mean_ci, Adapted, CurvePoint, InnerRate};
pub use algorithm::{
    learning_rates, outer_gradient, Algorithm, InnerOptimizer, MetaConfig, MetaLearner,
    MetaStepReport, OuterGradient,
};
pub use error::MetaError;
pub use sampler::{Episodes, Sinusoid, TaskSampler};
pub use task::{Split, Targets, Task};
