//! The crate's error type for user-facing shape questions.

use thiserror::Error;

/// An invalid kernel geometry, reported with the kernel's name and the offending values.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum KernelError {
    /// A geometry whose parameters cannot describe a valid operation.
    #[error("invalid geometry in {op}: {reason}")]
    InvalidGeometry {
        /// The kernel's name, for example `conv2d`.
        op: &'static str,
        /// What is wrong, with the values involved.
        reason: String,
    },
}
