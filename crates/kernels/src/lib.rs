//! tapestry-kernels: slice-level compute for Tapestry.
//!
//! Pure functions on contiguous row-major `f32` slices plus shapes (NCHW for images):
//!
//! - [`gemm`]: `C = alpha * A·B + beta * C` with strides so that transposes cost nothing, on our
//!   packed AVX-512 GEMM (or `matrixmultiply::sgemm` without AVX-512), split over rayon for large
//!   problems;
//! - [`conv`]: 2-D convolution (stride, padding, dilation) forward and both gradients: Winograd
//!   F(2×2, 3×3) for 3x3 kernels with channels in multiples of 16, a direct kernel for other
//!   stride-1 convolutions, both on AVX-512, and im2col + GEMM (with a 1x1 fast path) for the
//!   rest;
//! - [`pool`]: max and average pooling, forward and backward;
//! - [`elementwise`]: binary and unary maps, activations, reductions and row softmax, SIMD with a
//!   run-time choice of instruction set;
//! - [`buffer`]: a pool that recycles large buffers from step to step;
//! - [`tune`]: every tunable (block sizes, parallel thresholds) with its `TAPESTRY_*` override;
//! - [`path`]: which implementation a kernel takes (instruction set, convolution algorithm,
//!   GEMM engine), forced per thread for tests, and a record of what ran.
//!
//! The crate knows nothing of tapes. It uses the global rayon pool only, and a kernel called from
//! inside a rayon worker runs single-threaded, so thread pools never nest. For a given thread
//! count every kernel is deterministic: reductions have a fixed order.
//!
//! This is the only crate of the workspace that contains `unsafe`; each block carries a
//! `// SAFETY:` comment.

pub mod buffer;
pub mod clock;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod path;
pub mod pool;
pub mod tune;

mod conv_direct;
mod conv_winograd;
mod error;
mod gemm_packed;
mod par;
mod simd;
mod transpose;

pub use error::KernelError;
