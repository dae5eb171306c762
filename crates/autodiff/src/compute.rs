//! The one door to heavy compute: ops call these functions and nothing else for heavy loops,
//! so the kernels behind them (`tapestry-kernels`: SIMD, rayon, matrixmultiply) change in one
//! place.

use tapestry_kernels::gemm::sgemm;

/// `C (+)= A·B` for an m×k `A` and a k×n `B` given by element strides (so a transpose is a
/// swap of strides); `C` is m×n with strides `(rsc, csc)`. With `accumulate` false, `C` is
/// overwritten.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    (rsc, csc): (usize, usize),
    accumulate: bool,
) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    let s = |v: usize| v as isize;
    sgemm(m, k, n, 1.0, a, s(rsa), s(csa), b, s(rsb), s(csb), beta, c, s(rsc), s(csc));
}
