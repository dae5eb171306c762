//! Tapestry: a tape-based reverse-mode autodiff engine for multi-task learning on CPUs.
#![forbid(unsafe_code)]
pub use tapestry_autodiff as autodiff;
pub use tapestry_data as data;
pub use tapestry_kernels as kernels;
pub use tapestry_meta as meta;
pub use tapestry_mtl as mtl;
pub use tapestry_nn as nn;
