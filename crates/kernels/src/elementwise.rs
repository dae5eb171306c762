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

use crate::par::may_parallelize;
use crate::simd::{multiversion, LANES};
use crate::tune::tunables;
use rayon::prelude::*;

pub use crate::simd::{active_isa, detected_isa, set_force_scalar, Isa};

fn check_same(op: &str, what: &str, got: usize, want: usize) {
    assert!(got == want, "{op}: {what} has length {got}, expected {want}");
}

fn parallel(len: usize) -> bool {
    len >= tunables().elementwise_par_min_len && may_parallelize()
}

/// Applies `f` to matching chunks of `a`, `b` and `out`, in parallel when long.
fn map2(a: &[f32], b: &[f32], out: &mut [f32], f: fn(&[f32], &[f32], &mut [f32])) {
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
fn map1(a: &[f32], out: &mut [f32], f: fn(&[f32], &mut [f32])) {
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
    fn add_assign_k(x: &[f32], y: &mut [f32]) {
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

/// `out[c] = Σ_r x[r, c]` for `x` viewed as `[rows, out.len()]`, summing rows in order (the
/// reverse of [`add_row_broadcast`]).
///
/// # Panics
///
/// If `x.len()` is not a multiple of a non-empty `out`.
pub fn sum_over_rows(x: &[f32], out: &mut [f32]) {
    const OP: &str = "sum_over_rows";
    let cols = out.len();
    assert!(
        x.len().is_multiple_of(cols),
        "{OP}: x has length {} which is not a multiple of the row length {cols}",
        x.len()
    );
    out.fill(0.0);
    if cols == 0 {
        return;
    }
    for xr in x.chunks_exact(cols) {
        add_assign_k(xr, out);
    }
}

multiversion! {
    fn relu_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = if v > 0.0 { v } else { 0.0 };
        }
    }
}

/// `y[i] = max(x[i], 0)` (NaN maps to 0).
///
/// # Panics
///
/// If the slices differ in length.
pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    check_same("relu_forward", "y", y.len(), x.len());
    map1(x, y, relu_k);
}

multiversion! {
    fn relu_back_k(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
            *o = if v > 0.0 { d } else { 0.0 };
        }
    }
}

/// `dx[i] = dy[i]` where `x[i] > 0`, else 0 (the derivative at 0 is taken as 0).
///
/// # Panics
///
/// If the three slices differ in length.
pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_same("relu_backward", "dy", dy.len(), x.len());
    check_same("relu_backward", "dx", dx.len(), x.len());
    map2(x, dy, dx, relu_back_k);
}

/// `e^x` in `f32`, branch-free so that loops over it vectorise: range reduction
/// `x = n·ln2 + r`, a degree-6 polynomial for `e^r` (Cephes `expf`), and `2^n` built from
/// exponent bits. Within 2 ulp of the correctly rounded result for normal outputs; inputs below
/// -87.3365 (results below the smallest normal number) give 0, above 88.7228 give infinity.
#[inline(always)]
fn exp_scalar(x: f32) -> f32 {
    const HI: f32 = 88.722_83;
    const LO: f32 = -87.336_55;
    let xc = x.clamp(LO, HI);
    let fx = xc * std::f32::consts::LOG2_E;
    // Round to nearest by adding 1.5·2²³: the integer then sits in the low mantissa bits, which
    // gives it without a float-to-int conversion (so the loop vectorises).
    let t = fx + 12_582_912.0;
    let n = t - 12_582_912.0;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^n as two factors, so that n = 128 (x near the top of the range) does not overflow.
    let (n1, n2) = (ni >> 1, ni.wrapping_sub(ni >> 1));
    let v = e
        * f32::from_bits((n1.wrapping_add(127) as u32) << 23)
        * f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    let v = if x > HI { f32::INFINITY } else { v };
    let v = if x < LO { 0.0 } else { v };
    if x.is_nan() {
        x
    } else {
        v
    }
}

multiversion! {
    fn exp_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = exp_scalar(v);
        }
    }
}

/// `y[i] = e^x[i]` (within 2 ulp; results below the smallest normal `f32` flush to 0).
///
/// # Panics
///
/// If the slices differ in length.
pub fn exp(x: &[f32], y: &mut [f32]) {
    check_same("exp", "y", y.len(), x.len());
    map1(x, y, exp_k);
}

multiversion! {
    fn sigmoid_k(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = 1.0 / (1.0 + exp_scalar(-v));
        }
    }
}

/// `y[i] = 1 / (1 + e^-x[i])`.
///
/// # Panics
///
/// If the slices differ in length.
pub fn sigmoid(x: &[f32], y: &mut [f32]) {
    check_same("sigmoid", "y", y.len(), x.len());
    map1(x, y, sigmoid_k);
}

fn ln_k(x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v.ln();
    }
}

/// `y[i] = ln x[i]` (the standard library's correctly rounded `ln`, not vectorised).
///
/// # Panics
///
/// If the slices differ in length.
pub fn ln(x: &[f32], y: &mut [f32]) {
    check_same("ln", "y", y.len(), x.len());
    map1(x, y, ln_k);
}

multiversion! {
    fn sum_k(x: &[f32]) -> f32 {
        crate::simd::sum_lanes(x)
    }
}

multiversion! {
    fn dot_k(a: &[f32], b: &[f32]) -> f32 {
        crate::simd::dot_lanes(a, b)
    }
}

/// Sums per fixed chunk (in parallel when long), then the chunk sums in order.
fn chunked_reduce(len: usize, part: impl Fn(std::ops::Range<usize>) -> f32 + Sync) -> f32 {
    let ch = tunables().elementwise_chunk;
    let ranges: Vec<std::ops::Range<usize>> =
        (0..len).step_by(ch).map(|s| s..(s + ch).min(len)).collect();
    let partials: Vec<f32> = if parallel(len) {
        ranges.into_par_iter().map(&part).collect()
    } else {
        ranges.into_iter().map(&part).collect()
    };
    let mut total = 0.0f32;
    for p in partials {
        total += p;
    }
    total
}

/// The sum of `x` in a fixed order (16 lanes per chunk, chunk sums in order): the same result
/// for any thread count and instruction set. Empty slices sum to 0.
pub fn sum(x: &[f32]) -> f32 {
    chunked_reduce(x.len(), |r| sum_k(&x[r]))
}

/// The dot product `Σ a[i]·b[i]` in the same fixed order as [`sum`].
///
/// # Panics
///
/// If the slices differ in length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    check_same("dot", "b", b.len(), a.len());
    chunked_reduce(a.len(), |r| dot_k(&a[r.clone()], &b[r]))
}

multiversion! {
    fn max_k(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let mut nan = [false; LANES];
        let mut chunks = x.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
                nan[l] |= c[l].is_nan();
            }
        }
        for (l, &v) in chunks.remainder().iter().enumerate() {
            acc[l] = if v > acc[l] { v } else { acc[l] };
            nan[l] |= v.is_nan();
        }
        if nan.iter().any(|&b| b) {
            return f32::NAN;
        }
        acc.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
    }
}

/// The largest element of `x`: NaN if any element is NaN, minus infinity for an empty slice.
pub fn max(x: &[f32]) -> f32 {
    max_k(x)
}

multiversion! {
    fn softmax_row_k(x: &[f32], y: &mut [f32], log: bool) {
        let m = max_k(x);
        let m = if m == f32::NEG_INFINITY { 0.0 } else { m };
        for (o, &v) in y.iter_mut().zip(x) {
            *o = exp_scalar(v - m);
        }
        let s = crate::simd::sum_lanes(y);
        if log {
            let ls = m + s.ln();
            for (o, &v) in y.iter_mut().zip(x) {
                *o = v - ls;
            }
        } else {
            let inv = 1.0 / s;
            for o in y.iter_mut() {
                *o *= inv;
            }
        }
    }
}

fn softmax_impl(op: &str, x: &[f32], cols: usize, y: &mut [f32], log: bool) {
    check_same(op, "y", y.len(), x.len());
    assert!(
        x.len().is_multiple_of(cols),
        "{op}: length {} is not a multiple of cols = {cols}",
        x.len()
    );
    if cols == 0 {
        return;
    }
    if parallel(x.len()) {
        let rows_per = (tunables().elementwise_chunk / cols).max(1);
        y.par_chunks_mut(rows_per * cols).zip(x.par_chunks(rows_per * cols)).for_each(
            |(yc, xc)| {
                for (yr, xr) in yc.chunks_exact_mut(cols).zip(xc.chunks_exact(cols)) {
                    softmax_row_k(xr, yr, log);
                }
            },
        );
    } else {
        for (yr, xr) in y.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            softmax_row_k(xr, yr, log);
        }
    }
}

/// Row-wise softmax of `x` viewed as `[rows, cols]`: `y[r, c] = e^(x[r,c] - m_r) / Σ_c' e^(x[r,c']
/// - m_r)` with `m_r` the row maximum (so large inputs do not overflow).
///
/// # Panics
///
/// If `y` and `x` differ in length or `x.len()` is not a multiple of a non-zero `cols`.
pub fn softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
    softmax_impl("softmax_rows", x, cols, y, false);
}

/// Row-wise log-softmax of `x` viewed as `[rows, cols]`: `y[r, c] = x[r, c] - m_r - ln Σ_c'
/// e^(x[r,c'] - m_r)`.
///
/// # Panics
///
/// If `y` and `x` differ in length or `x.len()` is not a multiple of a non-zero `cols`.
pub fn log_softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
    softmax_impl("log_softmax_rows", x, cols, y, true);
}
