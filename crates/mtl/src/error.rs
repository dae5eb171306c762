//! Errors of the model, the training step, evaluation and the trainer.

use thiserror::Error;

use crate::weighting::WeightingError;

/// Why a model could not be built, a step taken or a data set used.
#[derive(Debug, Error)]
pub enum MtlError {
    /// The model is not assembled right (names, no tasks, nothing shared).
    #[error("model: {0}")]
    Model(String),
    /// The data set has another number of tasks than the model.
    #[error("data set `{dataset}` has {found} tasks but the model has {expected}")]
    TaskCount {
        /// The data set's name.
        dataset: String,
        /// The model's number of tasks.
        expected: usize,
        /// The data set's number of tasks.
        found: usize,
    },
    /// Task `index` of the data set is not the model's task `index` (name or kind differ).
    #[error("task {index} of data set `{dataset}` is {found} but the model expects {expected}")]
    TaskMismatch {
        /// The data set's name.
        dataset: String,
        /// The task's position.
        index: usize,
        /// The model's task (name and kind).
        expected: String,
        /// The data set's task.
        found: String,
    },
    /// The data set's samples have another shape than the model takes.
    #[error(
        "data set `{dataset}` has samples of shape {found:?} but the model takes {expected:?}"
    )]
    InputShape {
        /// The data set's name.
        dataset: String,
        /// The model's input shape.
        expected: Vec<usize>,
        /// The data set's sample shape.
        found: Vec<usize>,
    },
    /// A head's output does not fit its task.
    #[error("task `{task}`: the head's output has shape {found:?}, expected {expected}")]
    Output {
        /// The task.
        task: String,
        /// The expected shape, as text.
        expected: String,
        /// The output's shape.
        found: Vec<usize>,
    },
    /// The task's loss does not fit its targets.
    #[error("task `{task}`: {message}")]
    Targets {
        /// The task.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// A task's loss was NaN or infinite: training stops there.
    #[error("the loss of task `{task}` is {value} at step {step} of the run (counting from 0)")]
    NonFiniteLoss {
        /// The task.
        task: String,
        /// The optimisation step, from 0.
        step: u64,
        /// The epoch, from 0.
        epoch: u64,
        /// The loss.
        value: f64,
    },
    /// A task's loss grew past `factor` times its first positive value: the run diverged.
    #[error(
        "the loss of task `{task}` reached {loss:.4e}, more than {factor:e} times its first value {first:.4e}; the run diverged"
    )]
    Diverged {
        /// The task.
        task: String,
        /// The optimisation step, from 0.
        step: u64,
        /// The epoch, from 0.
        epoch: u64,
        /// The loss.
        loss: f64,
        /// The task's first positive loss.
        first: f64,
        /// The bound's factor.
        factor: f64,
    },
    /// The combined gradient of `param` was NaN or infinite.
    #[error("the gradient of `{param}` is not finite at step {step} of the run (counting from 0)")]
    NonFiniteGradient {
        /// The parameter's name.
        param: String,
        /// The optimisation step, from 0.
        step: u64,
    },
    /// The norm of one task's gradient on a layer (GradNorm's) was NaN or infinite.
    #[error(
        "the gradient of task `{task}` on `{param}` has norm {value} at step {step} of the run \
         (counting from 0)"
    )]
    NonFiniteTaskGradient {
        /// The task.
        task: String,
        /// The layer's parameter.
        param: String,
        /// The optimisation step, from 0.
        step: u64,
        /// The epoch, from 0.
        epoch: u64,
        /// The norm.
        value: f64,
    },
    /// A parameter named in the configuration does not exist or is not shared.
    #[error("parameter `{name}`: {reason}")]
    Param {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The configuration is impossible (a batch size of 0, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// The weighting failed.
    #[error(transparent)]
    Weighting(#[from] WeightingError),
    /// The data could not be batched.
    #[error(transparent)]
    Data(#[from] tapestry_data::DataError),
}
