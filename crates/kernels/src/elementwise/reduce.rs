//! Reductions: sums (whole slices and over rows), dot products, maxima.

use rayon::prelude::*;

use super::{add_assign_k, check_same, parallel};
use crate::path::Carry;
use crate::simd::multiversion;
use crate::tune::tunables;

/// `out[c] = Σ_r x[r, c]` for `x` viewed as `[rows, out.len()]` (the reverse of
/// [`add_row_broadcast`](super::add_row_broadcast)), in a fixed order: rows are taken in blocks
/// of about [`Tunables::elementwise_chunk`](crate::tune::Tunables::elementwise_chunk) elements,
/// each block summed row by row into a partial, and the partials added in block order (so up to
/// one block it is the plain sum of the rows in order). Blocks, or for rows wider than a chunk
/// ranges of columns, run in parallel when long; the result does not depend on the thread count.
///
/// # Panics
///
/// If `x.len()` is not a multiple of `out.len()` (for an empty `out`, if `x` is not empty).
pub fn sum_over_rows(x: &[f32], out: &mut [f32]) {
    const OP: &str = "sum_over_rows";
    let cols = out.len();
    assert!(
        x.len().is_multiple_of(cols),
        "{OP}: x has length {} which is not a multiple of the row length {cols}",
        x.len()
    );
    if cols == 0 {
        return;
    }
    let ch = tunables().elementwise_chunk;
    let rows_per = (ch / cols).max(1);
    let rows = x.len() / cols;
    if rows <= rows_per {
        if cols >= ch && parallel(x.len()) {
            // Each task sums all rows over its own columns, in row order.
            let carry = Carry::here();
            out.par_chunks_mut(ch).enumerate().for_each(|(i, o)| {
                let _paths = carry.enter();
                o.fill(0.0);
                for xr in x.chunks_exact(cols) {
                    add_assign_k(&xr[i * ch..i * ch + o.len()], o);
                }
            });
        } else {
            rows_in_order(x, out);
        }
        return;
    }
    let block = rows_per * cols;
    let mut partials = vec![0.0f32; x.len().div_ceil(block) * cols];
    if parallel(x.len()) {
        let carry = Carry::here();
        partials.par_chunks_mut(cols).zip(x.par_chunks(block)).for_each(|(p, b)| {
            let _paths = carry.enter();
            rows_in_order(b, p)
        });
    } else {
        partials.chunks_mut(cols).zip(x.chunks(block)).for_each(|(p, b)| rows_in_order(b, p));
    }
    rows_in_order(&partials, out);
}

multiversion! {
    /// `out = Σ_r x[r, ..]`, rows of `out.len()` added in order onto zeros.
    fn rows_in_order(x: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        for xr in x.chunks_exact(out.len()) {
            for (o, &v) in out.iter_mut().zip(xr) {
                *o += v;
            }
        }
    }
}

multiversion! {
    fn sum_rows_k(x: &[f32], cols: usize, out: &mut [f32]) {
        for (o, xr) in out.iter_mut().zip(x.chunks_exact(cols)) {
            *o = 0.0 + crate::simd::sum_lanes(xr);
        }
    }
}

/// `out[r] = Σ_c x[r, c]` for `x` viewed as `[out.len(), cols]`: each row summed exactly as
/// [`sum`] sums a slice (the reverse of repeating each value along a row). Rows run in parallel
/// when long.
///
/// # Panics
///
/// If `x.len()` is not `out.len() · cols`.
pub fn sum_rows(x: &[f32], cols: usize, out: &mut [f32]) {
    check_same("sum_rows", "x", x.len(), out.len() * cols);
    let ch = tunables().elementwise_chunk;
    if cols > ch {
        for (o, xr) in out.iter_mut().zip(x.chunks_exact(cols)) {
            *o = sum(xr);
        }
    } else if cols == 0 {
        out.fill(0.0);
    } else if parallel(x.len()) {
        let rows_per = ch / cols;
        let carry = Carry::here();
        out.par_chunks_mut(rows_per).zip(x.par_chunks(rows_per * cols)).for_each(|(o, xb)| {
            let _paths = carry.enter();
            sum_rows_k(xb, cols, o)
        });
    } else {
        sum_rows_k(x, cols, out);
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
    if len <= ch {
        // One chunk: the same sum without the bookkeeping.
        return 0.0 + part(0..len);
    }
    let ranges: Vec<std::ops::Range<usize>> =
        (0..len).step_by(ch).map(|s| s..(s + ch).min(len)).collect();
    let partials: Vec<f32> = if parallel(len) {
        let carry = Carry::here();
        ranges
            .into_par_iter()
            .map(|r| {
                let _paths = carry.enter();
                part(r)
            })
            .collect()
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
        crate::simd::max_lanes(x)
    }
}

/// The largest element of `x`: NaN if any element is NaN, minus infinity for an empty slice.
pub fn max(x: &[f32]) -> f32 {
    max_k(x)
}
