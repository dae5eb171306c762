//! What can go wrong in meta-learning.

use thiserror::Error;

/// A meta-learning error: a bad configuration, a sampler that cannot build a task, or a
/// model that does not fit the tasks.
#[derive(Debug, Error)]
pub enum MetaError {
    /// A configuration value out of range.
    #[error("{0}")]
    Config(String),
    /// A sampler cannot draw a task as asked (K larger than the pool, N larger than the
    /// number of classes).
    #[error("{0}")]
    Sampler(String),
    /// A loss became NaN or infinite.
    #[error("the {what} loss is not finite ({value}) at meta-iteration {iteration}")]
    NonFinite {
        /// Which loss (`support`, `query`).
        what: &'static str,
        /// The value.
        value: f64,
        /// The meta-iteration, from 0.
        iteration: u64,
    },
    /// A parameter store error (a learning-rate store that does not match the model's).
    #[error(transparent)]
    Nn(#[from] tapestry_nn::NnError),
}
