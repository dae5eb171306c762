//! Row-wise softmax and log-softmax.

use rayon::prelude::*;

use super::activation::exp_scalar;
use super::reduce::max_k;
use super::{check_same, parallel};
use crate::simd::multiversion;
use crate::tune::tunables;

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
