//! Elementwise maps, activations, reductions and row softmax on `f32` slices.
//!
//! Every kernel here is written once as a plain loop (reductions over 16 fixed lane
//! accumulators) and compiled for AVX-512, AVX2+FMA and the baseline; the instruction set is
//! detected once at run time and cached ([`detected_isa`]), so users get SIMD without setting
//! `RUSTFLAGS`. All copies compute bitwise-identical results: [`crate::path::forced`] picks a
//! copy for one thread (`TAPESTRY_FORCE_SCALAR=1`, the baseline for the whole process), and a
//! test checks that every copy gives the same bits.
//!
//! Kernels over more than
//! [`Tunables::elementwise_par_min_len`](crate::tune::Tunables::elementwise_par_min_len) elements
//! split into fixed chunks of
//! [`Tunables::elementwise_chunk`](crate::tune::Tunables::elementwise_chunk) and run them over
//! rayon. Reductions always sum per chunk and then the chunk sums in order, whether or not they
//! run in parallel, so their results do not depend on the thread count.
//!
//! Binary kernels take equal-length slices, or ([`binary`]) one operand that repeats along the
//! other: numpy broadcasting of a trailing block, such as a bias row over a `[rows, cols]`
//! matrix, a single value over a tensor, or one sample's values over a stack of tasks. The
//! reverse of a row broadcast is the sum over rows ([`sum_over_rows`]); of a column broadcast,
//! the sum of each row ([`sum_rows`]).
//!
//! Files: this one holds the arithmetic maps; `activation.rs` the activations with their
//! derivatives, `exp` and `ln`; `reduce.rs` the sums, dot product and maximum; `softmax.rs` the
//! row softmax and log-softmax, forward and backward.

mod activation;
mod reduce;
mod softmax;

use crate::par::{for_each_chunk_mut, may_parallelize};
use crate::simd::multiversion;
use crate::tune::tunables;

pub use crate::simd::{active_isa, detected_isa, Isa};
pub use activation::{
    exp, leaky_relu_backward, leaky_relu_forward, ln, relu_backward, relu_backward_in_place,
    relu_forward, sigmoid, sigmoid_backward, tanh, tanh_backward,
};
pub use reduce::{dot, max, sum, sum_over_rows, sum_rows};

/// The approximations behind [`exp`], [`ln`], [`sigmoid`] and [`tanh`] on a single value, bit
/// for bit what those kernels compute for it: for callers that map a handful of values, where
/// choosing a kernel costs more than the work.
pub mod single {
    pub use super::activation::{
        exp_scalar as exp, ln_scalar as ln, sigmoid_scalar as sigmoid, tanh_scalar as tanh,
    };
}
pub use softmax::{
    log_softmax_rows, log_softmax_rows_backward, softmax_rows, softmax_rows_backward,
};

pub(super) fn check_same(op: &str, what: &str, got: usize, want: usize) {
    assert!(got == want, "{op}: {what} has length {got}, expected {want}");
}

pub(super) fn parallel(len: usize) -> bool {
    len >= tunables().elementwise_par_min_len && may_parallelize()
}

/// Applies `f` to matching chunks of `a`, `b` and `out`, in parallel when long.
pub(super) fn map2(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) {
    if parallel(out.len()) {
        let ch = tunables().elementwise_chunk;
        for_each_chunk_mut(out, ch, |i, o| {
            let s = i * ch;
            f(&a[s..s + o.len()], &b[s..s + o.len()], o)
        });
    } else {
        f(a, b, out);
    }
}

/// Applies `f` to matching chunks of `a` and `out`, in parallel when long.
pub(super) fn map1(a: &[f32], out: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if parallel(out.len()) {
        let ch = tunables().elementwise_chunk;
        for_each_chunk_mut(out, ch, |i, o| f(&a[i * ch..i * ch + o.len()], o));
    } else {
        f(a, out);
    }
}

macro_rules! binary_op {
    (
        $(#[$meta:meta])* $name:ident, $kernel:ident, $row_rhs:ident, $row_lhs:ident,
        |$x:ident, $y:ident| $e:expr
    ) => {
        multiversion! {
            fn $kernel(a: &[f32], b: &[f32], out: &mut [f32]) {
                for ((o, &$x), &$y) in out.iter_mut().zip(a).zip(b) {
                    *o = $e;
                }
            }
        }
        multiversion! {
            /// `out = a op row`, the row repeating along `a` and `out`.
            fn $row_rhs(a: &[f32], row: &[f32], out: &mut [f32]) {
                if let [$y] = *row {
                    for (o, &$x) in out.iter_mut().zip(a) {
                        *o = $e;
                    }
                } else {
                    for (o, a) in out.chunks_exact_mut(row.len()).zip(a.chunks_exact(row.len())) {
                        for ((o, &$x), &$y) in o.iter_mut().zip(a).zip(row) {
                            *o = $e;
                        }
                    }
                }
            }
        }
        multiversion! {
            /// `out = row op b`, the row repeating along `b` and `out`.
            fn $row_lhs(row: &[f32], b: &[f32], out: &mut [f32]) {
                if let [$x] = *row {
                    for (o, &$y) in out.iter_mut().zip(b) {
                        *o = $e;
                    }
                } else {
                    for (o, b) in out.chunks_exact_mut(row.len()).zip(b.chunks_exact(row.len())) {
                        for ((o, &$x), &$y) in o.iter_mut().zip(row).zip(b) {
                            *o = $e;
                        }
                    }
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
    add, add_k, add_row_rhs_k, add_row_lhs_k, |x, y| x + y
);
binary_op!(
    /// `out[i] = a[i] - b[i]`.
    sub, sub_k, sub_row_rhs_k, sub_row_lhs_k, |x, y| x - y
);
binary_op!(
    /// `out[i] = a[i] * b[i]`.
    mul, mul_k, mul_row_rhs_k, mul_row_lhs_k, |x, y| x * y
);
binary_op!(
    /// `out[i] = a[i] / b[i]`.
    div, div_k, div_row_rhs_k, div_row_lhs_k, |x, y| x / y
);

/// The arithmetic operation of [`binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
}

/// A kernel over three slices.
type Kernel2 = fn(&[f32], &[f32], &mut [f32]);

impl BinaryOp {
    /// The operation on one pair of numbers (what every kernel computes per element).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }

    /// The kernels for equal lengths, a repeated right operand, a repeated left operand.
    fn kernels(self) -> [Kernel2; 3] {
        match self {
            BinaryOp::Add => [add_k, add_row_rhs_k, add_row_lhs_k],
            BinaryOp::Sub => [sub_k, sub_row_rhs_k, sub_row_lhs_k],
            BinaryOp::Mul => [mul_k, mul_row_rhs_k, mul_row_lhs_k],
            BinaryOp::Div => [div_k, div_row_rhs_k, div_row_lhs_k],
        }
    }
}

/// `out[i] = a[i mod a.len()] op b[i mod b.len()]`, where one operand is as long as `out` and
/// the other either is too or repeats along it: numpy broadcasting when the shorter operand's
/// shape is a trailing part of the output's (a bias `[C]` over `[N, C]`, a scalar over
/// anything, a sample `[N, C]` over a task stack `[T, N, C]`). Every element is computed as
/// `a op b`, exactly as [`BinaryOp::apply`].
///
/// ```
/// use tapestry_kernels::elementwise::{binary, BinaryOp};
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2, 3]
/// let mut out = [0.0; 6];
/// binary(BinaryOp::Sub, &x, &[1.0, 2.0, 3.0], &mut out);
/// assert_eq!(out, [0.0, 0.0, 0.0, 3.0, 3.0, 3.0]);
/// binary(BinaryOp::Div, &[12.0], &x, &mut out);
/// assert_eq!(out, [12.0, 6.0, 4.0, 3.0, 2.4, 2.0]);
/// ```
///
/// # Panics
///
/// If the longer operand is not as long as `out`, or the shorter one's length does not divide
/// it (an empty operand only goes with an empty output).
pub fn binary(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    let (n, short) = (out.len(), a.len().min(b.len()));
    assert!(
        a.len().max(b.len()) == n && (short == n || (short > 0 && n.is_multiple_of(short))),
        "binary {op:?}: operands of lengths {} and {} do not tile an output of length {n}",
        a.len(),
        b.len()
    );
    let [same, row_rhs, row_lhs] = op.kernels();
    if short == n {
        return map2(a, b, out, same);
    }
    // Parallel blocks hold whole repetitions of the short operand.
    let block = (tunables().elementwise_chunk / short).max(1) * short;
    let par = parallel(n);
    match (b.len() == short, par) {
        (true, false) => row_rhs(a, b, out),
        (false, false) => row_lhs(a, b, out),
        (true, true) => {
            for_each_chunk_mut(out, block, |i, o| row_rhs(&a[i * block..i * block + o.len()], b, o))
        }
        (false, true) => {
            for_each_chunk_mut(out, block, |i, o| row_lhs(a, &b[i * block..i * block + o.len()], o))
        }
    }
}

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
        for_each_chunk_mut(y, ch, |i, o| axpy_k(alpha, &x[i * ch..i * ch + o.len()], o));
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
        for_each_chunk_mut(y, ch, |i, o| scale_k(alpha, &x[i * ch..i * ch + o.len()], o));
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
    if cols > 0 {
        binary(BinaryOp::Add, x, row, out);
    }
}
