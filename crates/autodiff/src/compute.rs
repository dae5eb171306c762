//! The one door to heavy compute: GEMM here; conv and pooling join it. Ops call these
//! functions and nothing else for heavy loops, so the kernels behind them change in one place.

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
    for i in 0..m {
        for j in 0..n {
            let c_ij = &mut c[i * rsc + j * csc];
            if !accumulate {
                *c_ij = 0.0;
            }
        }
        for p in 0..k {
            let a_ip = a[i * rsa + p * csa];
            for j in 0..n {
                c[i * rsc + j * csc] += a_ip * b[p * rsb + j * csb];
            }
        }
    }
}
