//! Reductions: sums (whole slices and over rows), dot products, maxima.

use rayon::prelude::*;

use super::{add_assign_k, check_same, parallel};
use crate::simd::{multiversion, LANES};
use crate::tune::tunables;

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
    pub(super) fn max_k(x: &[f32]) -> f32 {
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
