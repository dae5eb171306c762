//! Errors of the autodiff crate.
//!
//! Shape errors name the op and the shapes involved, as in
//! `shape mismatch in matmul: lhs [32, 64], rhs [32, 10]`.
//!
//! Policy: building a graph with incompatible shapes is a programming error, like indexing out
//! of bounds, so ops panic with this message (each op documents it under `# Panics`). Functions
//! that take data from outside the program (constructing tensors from vectors, reshaping to a
//! user-given shape) return [`ShapeError`] instead.

use thiserror::Error;

/// A shape problem, naming the op and the shapes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapeError {
    /// Two shapes that had to agree did not.
    #[error("shape mismatch in {op}: lhs {lhs:?}, rhs {rhs:?}")]
    Mismatch {
        /// The op that found the mismatch.
        op: &'static str,
        /// The first shape.
        lhs: Vec<usize>,
        /// The second shape.
        rhs: Vec<usize>,
    },
    /// The data length does not match the product of the shape.
    #[error("data of length {len} does not fit shape {shape:?}")]
    DataLength {
        /// The requested shape.
        shape: Vec<usize>,
        /// The data length.
        len: usize,
    },
    /// Any other invalid argument to an op.
    #[error("invalid argument to {op}: {msg}")]
    Invalid {
        /// The op.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
}

impl ShapeError {
    pub(crate) fn mismatch(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Self {
        ShapeError::Mismatch { op, lhs: lhs.to_vec(), rhs: rhs.to_vec() }
    }
}

/// Panics with the message of a shape mismatch; used by ops, whose docs list it under `# Panics`.
#[track_caller]
pub(crate) fn shape_panic(op: &'static str, lhs: &[usize], rhs: &[usize]) -> ! {
    panic!("{}", ShapeError::mismatch(op, lhs, rhs))
}

/// Panics with an invalid-argument message.
#[track_caller]
pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> ! {
    panic!("{}", ShapeError::Invalid { op, msg: msg.into() })
}
