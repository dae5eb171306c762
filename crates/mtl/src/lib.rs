//! tapestry-mtl: the multi-task learning core of Tapestry.
//!
//! This crate currently holds the parts of the MTL core that are pure mathematics on small
//! dense arrays and need no autodiff engine:
//!
//! - [`min_norm`]: the min-norm problem `min over the simplex of |sum_t alpha_t g_t|^2` solved
//!   on the T x T Gram matrix (closed form for T = 2, an exact active-set solve, and Frank-Wolfe
//!   and projected gradient for comparison). MGDA and MGDA-UB use it.
//! - [`gradnorm`]: GradNorm's update of the task weights, with the derivative of its balancing
//!   loss in closed form.
//!
//! `docs/mtl.md` explains both.
#![forbid(unsafe_code)]

pub mod gradnorm;
pub mod min_norm;
