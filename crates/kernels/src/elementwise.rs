//! Elementwise maps, activations, reductions and row softmax on `f32` slices.
//!
//! Every kernel here is written once as a plain loop (reductions over 16 fixed lane
//! accumulators) and compiled for AVX-512, AVX2+FMA and the baseline; the instruction set is
//! detected once at run time and cached ([`detected_isa`]), so users get SIMD without setting
//! `RUSTFLAGS`. All copies compute bitwise-identical results: [`set_force_scalar`] (or
//! `TAPESTRY_FORCE_SCALAR=1`) forces the baseline copy, and a test checks the two agree.
//!
//! Kernels over more than
//! [`Tunables::elementwise_par_min_len`](crate::tune::Tunables::elementwise_par_min_len) elements
//! split into fixed chunks of
//! [`Tunables::elementwise_chunk`](crate::tune::Tunables::elementwise_chunk) and run them over
//! rayon. Reductions always sum per chunk and then the chunk sums in order, whether or not they
//! run in parallel, so their results do not depend on the thread count.
//!
//! Binary kernels take equal-length slices; the broadcasting the autodiff needs is a row vector
//! over a `[rows, cols]` matrix ([`add_row_broadcast`]) and its reverse, the sum over rows
//! ([`sum_over_rows`]).

mod activation;
mod reduce;
mod softmax;

use rayon::prelude::*;

use crate::par::may_parallelize;
use crate::simd::multiversion;
use crate::tune::tunables;

pub use crate::simd::{active_isa, detected_isa, set_force_scalar, Isa};
pub use activation::{exp, ln, relu_backward, relu_forward, sigmoid};
pub use reduce::{dot, max, sum, sum_over_rows};
pub use softmax::{log_softmax_rows, softmax_rows};

pub(super) fn check_same(op: &str, what: &str, got: usize, want: usize) {
    assert!(got == want, "{op}: {what} has length {got}, expected {want}");
}

pub(super) fn parallel(len: usize) -> bool {
    len >= tunables().elementwise_par_min_len && may_parallelize()
}

/// Applies `f` to matching chunks of `a`, `b` and `out`, in parallel when long.
pub(super) fn map2(a: &[f32], b: &[f32], out: &mut [f32], f: fn(&[f32], &[f32], &mut [f32])) {
    if parallel(out.len()) {
        let ch = tunables().elementwise_chunk;
        out.par_chunks_mut(ch)
            .zip(a.par_chunks(ch))
            .zip(b.par_chunks(ch))
            .for_each(|((o, x), y)| f(x, y, o));
    } else {
        f(a, b, out);
    }
}

/// Applies `f` to matching chunks of `a` and `out`, in parallel when long.
pub(super) fn map1(a: &[f32], out: &mut [f32], f: fn(&[f32], &mut [f32])) {
    if parallel(out.len()) {
        let ch = tunables().elementwise_chunk;
        out.par_chunks_mut(ch).zip(a.par_chunks(ch)).for_each(|(o, x)| f(x, o));
    } else {
        f(a, out);
    }
}

macro_rules! binary_op {
    ($(#[$meta:meta])* $name:ident, $kernel:ident, |$x:ident, $y:ident| $e:expr) => {
        multiversion! {
            fn $kernel(a: &[f32], b: &[f32], out: &mut [f32]) {
                for ((o, &$x), &$y) in out.iter_mut().zip(a).zip(b) {
                    *o = $e;
                }
            }
        }
        $(#[$meta])*
        ///
        /// # Panics
        ///
        /// If the three slices differ in length.
        pub fn $name(a: &[f32], b: &[f32], out: &mut [f32]) {
            check_same(stringify!($name), "b", b.len(), a.len());
            check_same(stringify!($name), "out", out.len(), a.len());
            map2(a, b, out, $kernel);
        }
    };
}

binary_op!(
    /// `out[i] = a[i] + b[i]`.
    add, add_k, |x, y| x + y
);
binary_op!(
    /// `out[i] = a[i] - b[i]`.
    sub, sub_k, |x, y| x - y
);
binary_op!(
    /// `out[i] = a[i] * b[i]`.
    mul, mul_k, |x, y| x * y
);
binary_op!(
    /// `out[i] = a[i] / b[i]`.
    div, div_k, |x, y| x / y
);

multiversion! {
    pub(super) fn add_assign_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o += v;
        }
    }
}

/// `y[i] += x[i]` (gradient accumulation).
///
/// # Panics
///
/// If the slices differ in length.
pub fn add_assign(y: &mut [f32], x: &[f32]) {
    check_same("add_assign", "x", x.len(), y.len());
    map1(x, y, add_assign_k);
}

multiversion! {
    fn axpy_k(alpha: f32, x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o += alpha * v;
        }
    }
}

/// `y[i] += alpha * x[i]` (rounded as a separate multiply and add).
///
/// # Panics
///
/// If the slices differ in length.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    check_same("axpy", "x", x.len(), y.len());
    if parallel(y.len()) {
        let ch = tunables().elementwise_chunk;
        y.par_chunks_mut(ch).zip(x.par_chunks(ch)).for_each(|(o, v)| axpy_k(alpha, v, o));
    } else {
        axpy_k(alpha, x, y);
    }
}

multiversion! {
    fn scale_k(alpha: f32, x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = alpha * v;
        }
    }
}

/// `y[i] = alpha * x[i]`.
///
/// # Panics
///
/// If the slices differ in length.
pub fn scale(alpha: f32, x: &[f32], y: &mut [f32]) {
    check_same("scale", "y", y.len(), x.len());
    if parallel(y.len()) {
        let ch = tunables().elementwise_chunk;
        y.par_chunks_mut(ch).zip(x.par_chunks(ch)).for_each(|(o, v)| scale_k(alpha, v, o));
    } else {
        scale_k(alpha, x, y);
    }
}

/// `out[r, c] = x[r, c] + row[c]` for `x` viewed as `[rows, row.len()]` (a bias added to every
/// row).
///
/// # Panics
///
/// If `out` and `x` differ in length, or `x.len()` is not a multiple of a non-empty `row`.
pub fn add_row_broadcast(x: &[f32], row: &[f32], out: &mut [f32]) {
    const OP: &str = "add_row_broadcast";
    check_same(OP, "out", out.len(), x.len());
    let cols = row.len();
    assert!(
        x.len().is_multiple_of(cols),
        "{OP}: x has length {} which is not a multiple of the row length {cols}",
        x.len()
    );
    if cols == 0 {
        return;
    }
    for (o, xr) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
        add_k(xr, row, o);
    }
}
