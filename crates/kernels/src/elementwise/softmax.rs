//! Row-wise softmax and log-softmax, forward and backward.

use rayon::prelude::*;

use super::activation::exp_scalar;
use super::{check_same, parallel};
use crate::path::Carry;
use crate::simd::{dot_lanes, max_lanes, multiversion, sum_lanes};
use crate::tune::tunables;

multiversion! {
    fn softmax_k(x: &[f32], cols: usize, y: &mut [f32], log: bool) {
        for (yr, xr) in y.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            let m = max_lanes(xr);
            let m = if m == f32::NEG_INFINITY { 0.0 } else { m };
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = exp_scalar(v - m);
            }
            let s = sum_lanes(yr);
            if log {
                // (x − m) − ln Σ: the shift first, exact for the largest entries, so a row of
                // large logits keeps its precision (x − (m + ln Σ) would round m + ln Σ first).
                let ls = s.ln();
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - m) - ls;
                }
            } else {
                let inv = 1.0 / s;
                for o in yr.iter_mut() {
                    *o *= inv;
                }
            }
        }
    }
}

multiversion! {
    fn softmax_back_k(y: &[f32], dy: &[f32], cols: usize, dx: &mut [f32], log: bool) {
        let rows = dx.chunks_exact_mut(cols).zip(y.chunks_exact(cols)).zip(dy.chunks_exact(cols));
        for ((dxr, yr), dyr) in rows {
            if log {
                let s = sum_lanes(dyr);
                for ((o, &v), &d) in dxr.iter_mut().zip(yr).zip(dyr) {
                    *o = d - exp_scalar(v) * s;
                }
            } else {
                let dot = dot_lanes(dyr, yr);
                for ((o, &v), &d) in dxr.iter_mut().zip(yr).zip(dyr) {
                    *o = v * (d - dot);
                }
            }
        }
    }
}

fn check_rows(op: &str, x: &[f32], cols: usize, y: &[f32]) {
    check_same(op, "y", y.len(), x.len());
    assert!(
        x.len().is_multiple_of(cols),
        "{op}: length {} is not a multiple of cols = {cols}",
        x.len()
    );
}

/// Runs `f` on blocks of whole rows of `[rows, cols]` slices, in parallel when long.
fn by_rows(
    cols: usize,
    x: &[f32],
    z: &[f32],
    out: &mut [f32],
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) {
    if cols == 0 {
        return;
    }
    if parallel(out.len()) {
        let block = (tunables().elementwise_chunk / cols).max(1) * cols;
        let carry = Carry::here();
        out.par_chunks_mut(block).zip(x.par_chunks(block)).zip(z.par_chunks(block)).for_each(
            |((o, x), z)| {
                let _paths = carry.enter();
                f(x, z, o)
            },
        );
    } else {
        f(x, z, out);
    }
}

/// Row-wise softmax of `x` viewed as `[rows, cols]`:
/// `y[r, c] = e^(x[r, c] - m_r) / Σ_c' e^(x[r, c'] - m_r)` with `m_r` the row maximum (so large
/// inputs do not overflow).
///
/// # Panics
///
/// If `y` and `x` differ in length or `x.len()` is not a multiple of a non-zero `cols`.
pub fn softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
    check_rows("softmax_rows", x, cols, y);
    by_rows(cols, x, x, y, |x, _, y| softmax_k(x, cols, y, false));
}

/// Row-wise log-softmax of `x` viewed as `[rows, cols]`: `y[r, c] = x[r, c] - m_r - ln Σ_c'
/// e^(x[r,c'] - m_r)`.
///
/// # Panics
///
/// If `y` and `x` differ in length or `x.len()` is not a multiple of a non-zero `cols`.
pub fn log_softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
    check_rows("log_softmax_rows", x, cols, y);
    by_rows(cols, x, x, y, |x, _, y| softmax_k(x, cols, y, true));
}

/// The backward of [`softmax_rows`] from its output `y`: `dx[r, c] = y[r, c]·(dy[r, c] −
/// Σ_c' dy[r, c']·y[r, c'])` (the row's dot product in the fixed order of
/// [`dot`](super::dot)).
///
/// # Panics
///
/// If the three slices differ in length or their length is not a multiple of a non-zero `cols`.
pub fn softmax_rows_backward(y: &[f32], dy: &[f32], cols: usize, dx: &mut [f32]) {
    check_rows("softmax_rows_backward", y, cols, dy);
    check_same("softmax_rows_backward", "dx", dx.len(), y.len());
    by_rows(cols, y, dy, dx, |y, dy, dx| softmax_back_k(y, dy, cols, dx, false));
}

/// The backward of [`log_softmax_rows`] from its output `y`: `dx[r, c] = dy[r, c] −
/// e^y[r, c]·Σ_c' dy[r, c']`.
///
/// # Panics
///
/// If the three slices differ in length or their length is not a multiple of a non-zero `cols`.
pub fn log_softmax_rows_backward(y: &[f32], dy: &[f32], cols: usize, dx: &mut [f32]) {
    check_rows("log_softmax_rows_backward", y, cols, dy);
    check_same("log_softmax_rows_backward", "dx", dx.len(), y.len());
    by_rows(cols, y, dy, dx, |y, dy, dx| softmax_back_k(y, dy, cols, dx, true));
}
