//! Tapestry: a tape-based reverse-mode autodiff engine for multi-task learning on CPUs.
#![forbid(unsafe_code)]
pub use tapestry_autodiff as autodiff;
pub use tapestry_kernels as kernels;
