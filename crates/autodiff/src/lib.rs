//! Tape-based reverse-mode automatic differentiation, built for multi-task learning.
//!
//! Record a forward pass on a [`Tape`]; every op appends one node. Then run any number of
//! backward passes over it — from any scalar root, for leaves or intermediate values, or for T
//! roots at once in one batched sweep. Each pass returns a fresh gradient store; the tape is
//! never changed, so task gradients never clobber each other.
//!
//! ```
//! use tapestry_autodiff::{Tape, Tensor};
//!
//! let tape = Tape::new();
//! let w = tape.leaf(Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap());
//! let x = tape.constant(Tensor::from_vec(&[1, 2], vec![1., 1.]).unwrap());
//! let z = x.matmul(w);                       // the shared representation
//! let loss_a = z.sum_all();                  // task A
//! let loss_b = (z * z).sum_all();            // task B
//! let ga = tape.backward(loss_a);
//! let gb = tape.backward(loss_b);            // same forward, independent gradients
//! assert_eq!(ga.wrt(w).to_vec(), vec![1., 1., 1., 1.]);
//! assert_eq!(gb.wrt(w).to_vec(), vec![8., 12., 8., 12.]);
//! let both = tape.backward_batched(&[loss_a, loss_b]);   // one sweep, both tasks
//! assert_eq!(both.get(1, w).unwrap().to_vec(), vec![8., 12., 8., 12.]);
//! ```
//!
//! `docs/autodiff.md` in the repository explains the tape and derives every backward rule.
#![forbid(unsafe_code)]

mod backward;
pub mod broadcast;
mod compute;
pub mod error;
mod fill;
pub mod gradcheck;
mod gram;
mod graph;
pub mod ops;
mod tape;
mod tensor;

pub use backward::{BatchedGrads, Grads};
pub use error::ShapeError;
pub use gram::gram_matrix;
pub use ops::loss::Reduction;
pub use ops::norm::{BatchNormMode, BatchStats};
pub use tape::{NodeId, Tape, Var};
pub use tensor::Tensor;
