//! General matrix multiply: `C = alpha * A·B + beta * C` on `f32`.
//!
//! The work is done by `matrixmultiply::sgemm` (packing plus an AVX-512, AVX2 or portable
//! micro-kernel chosen at run time). This module adds what a training loop needs around it:
//!
//! - slices instead of raw pointers, with every access bounds-checked up front;
//! - rayon parallelism over blocks of C for large problems (the blocks split the longer of the
//!   `m` and `n` dimensions, aligned to the micro-kernel's tile), single-threaded below
//!   [`Tunables::gemm_par_min_flops`](crate::tune::Tunables::gemm_par_min_flops) or when already
//!   inside a rayon worker;
//! - a direct path for skinny products (a classifier head with 10 outputs), used when enabled by
//!   [`Tunables::gemm_direct_max_n`](crate::tune::Tunables::gemm_direct_max_n).
//!
//! Blocks never split the `k` dimension, so each element of C is computed by the same sequence
//! of operations whatever the number of threads: results do not depend on the thread count.

use crate::gemm_skinny;
use crate::par::{fork, may_parallelize, SendConstPtr, SendPtr};
use crate::simd::{active_isa, multiversion, reduce_lanes, Isa, LANES};
use crate::tune::tunables;

/// `C = alpha * A·B + beta * C`, with A `m`×`k`, B `k`×`n` and C `m`×`n`.
///
/// Element `(i, j)` of A is `a[i * rsa + j * csa]`, and likewise for B and C, so a transposed
/// operand is the same buffer with its strides swapped. When `beta == 0`, C is not read (it may
/// hold NaN or garbage). When `k == 0`, C becomes `beta * C`.
///
/// # Panics
///
/// If a stride is negative while its dimension is larger than one, or if the largest element
/// offset of A, B or C lies outside its slice.
///
/// # Example
///
/// ```
/// use tapestry_kernels::gemm::sgemm;
/// // [1 2; 3 4] · [1 0; 0 1] = [1 2; 3 4]
/// let a = [1.0, 2.0, 3.0, 4.0];
/// let b = [1.0, 0.0, 0.0, 1.0];
/// let mut c = [0.0; 4];
/// sgemm(2, 2, 2, 1.0, &a, 2, 1, &b, 2, 1, 0.0, &mut c, 2, 1);
/// assert_eq!(c, a);
/// // A transposed costs nothing: swap its strides.
/// sgemm(2, 2, 2, 1.0, &a, 1, 2, &b, 2, 1, 0.0, &mut c, 2, 1);
/// assert_eq!(c, [1.0, 3.0, 2.0, 4.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    beta: f32,
    c: &mut [f32],
    rsc: isize,
    csc: isize,
) {
    check_operand("A", m, k, rsa, csa, a.len());
    check_operand("B", k, n, rsb, csb, b.len());
    check_operand("C", m, n, rsc, csc, c.len());
    if m == 0 || n == 0 {
        return;
    }
    let t = tunables();
    let narrow = t.gemm_narrow_max.min(32);
    // With a short k the narrow kernel's fixed costs (copying B, storing C element by element)
    // are not paid back: at 27 × 32 × 784 (im2col dX of a 3-channel layer) it measured 15% slower.
    if k >= 64 && active_isa() == Isa::Avx512 && m.min(n) <= narrow {
        if n <= narrow {
            gemm_skinny::sgemm_narrow(
                m,
                k,
                n,
                alpha,
                a,
                (rsa, csa),
                b,
                (rsb, csb),
                beta,
                c,
                (rsc, csc),
            );
        } else {
            // Cᵀ = Bᵀ·Aᵀ: the narrow dimension becomes the columns.
            gemm_skinny::sgemm_narrow(
                n,
                k,
                m,
                alpha,
                b,
                (csb, rsb),
                a,
                (csa, rsa),
                beta,
                c,
                (csc, rsc),
            );
        }
        return;
    }
    if k > 0 && n <= t.gemm_direct_max_n && csa == 1 && (m == 1 || rsa >= k as isize) {
        let rsa = if m == 1 { k } else { rsa as usize };
        if rsb == 1 && (n == 1 || csb >= k as isize) {
            let csb = if n == 1 { k } else { csb as usize };
            direct_skinny(m, k, n, alpha, a, rsa, b, csb, beta, c, rsc, csc);
        } else {
            // Copy Bᵀ (n × k, small since n is) so that its columns are contiguous.
            let mut bt = vec![0.0f32; n * k];
            for (j, col) in bt.chunks_exact_mut(k).enumerate() {
                for (p, v) in col.iter_mut().enumerate() {
                    *v = b[(p as isize * rsb + j as isize * csb) as usize];
                }
            }
            direct_skinny(m, k, n, alpha, a, rsa, &bt, k, beta, c, rsc, csc);
        }
        return;
    }
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let threads = rayon::current_num_threads();
    if flops < t.gemm_par_min_flops || !may_parallelize() || !c_is_injective(m, n, rsc, csc) {
        // SAFETY: `check_operand` proved every offset `(i, j)` of A, B and C (over the full
        // dimensions) lies inside its slice; C is borrowed mutably, A and B shared.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                beta,
                c.as_mut_ptr(),
                rsc,
                csc,
            );
        }
        return;
    }
    // Split the longer dimension of C into one aligned block per thread.
    let split_rows = m >= n;
    let len = if split_rows { m } else { n };
    let align = t.gemm_block_align;
    let per = len.div_ceil(threads).div_ceil(align) * align;
    let blocks: Vec<(usize, usize)> =
        (0..len).step_by(per.max(1)).map(|s| (s, (s + per).min(len))).collect();
    let (pa, pb, pc) =
        (SendConstPtr(a.as_ptr()), SendConstPtr(b.as_ptr()), SendPtr(c.as_mut_ptr()));
    fork(blocks.len(), |b| {
        let (s, e) = blocks[b];
        let (mm, nn, oa, ob, oc) = if split_rows {
            (e - s, n, s as isize * rsa, 0, s as isize * rsc)
        } else {
            (m, e - s, 0, s as isize * csb, s as isize * csc)
        };
        // SAFETY: the block is a sub-rectangle of the bounds-checked operands, so every offset
        // stays inside the slices. C's index map is injective (`c_is_injective`) and blocks
        // cover disjoint row (or column) ranges, so no two threads write the same element; the
        // borrows of `a`, `b` and `c` outlive this parallel loop.
        unsafe {
            matrixmultiply::sgemm(
                mm,
                k,
                nn,
                alpha,
                pa.get().offset(oa),
                rsa,
                csa,
                pb.get().offset(ob),
                rsb,
                csb,
                beta,
                pc.get().offset(oc),
                rsc,
                csc,
            );
        }
    });
}

/// Checks that every element `(i, j)`, `i < rows`, `j < cols`, lies in a slice of length `len`.
fn check_operand(name: &str, rows: usize, cols: usize, rs: isize, cs: isize, len: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rs >= 0 || rows == 1) && (cs >= 0 || cols == 1),
        "sgemm: negative stride for {name}: rows {rows}, cols {cols}, strides ({rs}, {cs})"
    );
    let rs = if rows == 1 { 0 } else { rs as usize };
    let cs = if cols == 1 { 0 } else { cs as usize };
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)));
    assert!(
        last.is_some_and(|l| l < len),
        "sgemm: {name} is {rows}x{cols} with strides ({rs}, {cs}) but its slice has {len} elements"
    );
}

/// True when distinct `(i, j)` of an `m`×`n` matrix with these strides map to distinct offsets
/// (one stride steps over the whole extent of the other), as for any row- or column-major view.
fn c_is_injective(m: usize, n: usize, rs: isize, cs: isize) -> bool {
    let (rs, cs) = (rs.unsigned_abs(), cs.unsigned_abs());
    if m == 1 {
        return n == 1 || cs > 0;
    }
    if n == 1 {
        return rs > 0;
    }
    (cs > 0 && rs >= cs * n) || (rs > 0 && cs >= rs * m)
}

/// The direct path: each `C[i, j]` is a dot product of a contiguous row of A and a contiguous
/// column of B (`b` holds Bᵀ with rows `csb` apart), four columns at a time, with fixed-order
/// lane accumulators.
#[allow(clippy::too_many_arguments)]
fn direct_skinny(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    rsa: usize,
    b: &[f32],
    csb: usize,
    beta: f32,
    c: &mut [f32],
    rsc: isize,
    csc: isize,
) {
    let mut row = vec![0.0f32; n];
    for i in 0..m {
        let ai = &a[i * rsa..i * rsa + k];
        dot_row(ai, b, csb, k, &mut row);
        for (j, &v) in row.iter().enumerate() {
            let idx = (i as isize * rsc + j as isize * csc) as usize;
            c[idx] = if beta == 0.0 { alpha * v } else { alpha * v + beta * c[idx] };
        }
    }
}

multiversion! {
    /// `out[j] = dot(ai, B[:, j])` for contiguous columns of B at stride `csb`.
    fn dot_row(ai: &[f32], b: &[f32], csb: usize, k: usize, out: &mut [f32]) {
        let n = out.len();
        let full = k / LANES * LANES;
        let mut j = 0;
        while j + 4 <= n {
            let c0 = &b[j * csb..j * csb + k];
            let c1 = &b[(j + 1) * csb..(j + 1) * csb + k];
            let c2 = &b[(j + 2) * csb..(j + 2) * csb + k];
            let c3 = &b[(j + 3) * csb..(j + 3) * csb + k];
            let (mut a0, mut a1, mut a2, mut a3) =
                ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
            for ((((x, y0), y1), y2), y3) in ai[..full]
                .chunks_exact(LANES)
                .zip(c0[..full].chunks_exact(LANES))
                .zip(c1[..full].chunks_exact(LANES))
                .zip(c2[..full].chunks_exact(LANES))
                .zip(c3[..full].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    a0[l] += x[l] * y0[l];
                    a1[l] += x[l] * y1[l];
                    a2[l] += x[l] * y2[l];
                    a3[l] += x[l] * y3[l];
                }
            }
            for (l, p) in (full..k).enumerate() {
                a0[l] += ai[p] * c0[p];
                a1[l] += ai[p] * c1[p];
                a2[l] += ai[p] * c2[p];
                a3[l] += ai[p] * c3[p];
            }
            out[j] = reduce_lanes(a0);
            out[j + 1] = reduce_lanes(a1);
            out[j + 2] = reduce_lanes(a2);
            out[j + 3] = reduce_lanes(a3);
            j += 4;
        }
        while j < n {
            out[j] = crate::simd::dot_lanes(ai, &b[j * csb..j * csb + k]);
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_skinny_matches_naive() {
        for &(m, k, n) in &[(1, 1, 1), (3, 17, 10), (5, 33, 4), (7, 256, 30), (2, 15, 7)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            // B stored transposed (n × k), as a linear layer's weight.
            let bt: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
            let c0: Vec<f32> = (0..m * n).map(|i| i as f32 / 10.0).collect();
            let mut c = c0.clone();
            direct_skinny(m, k, n, 0.5, &a, k, &bt, k, 2.0, &mut c, n as isize, 1);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0f64;
                    for p in 0..k {
                        s += a[i * k + p] as f64 * bt[j * k + p] as f64;
                    }
                    let want = 0.5 * s + 2.0 * c0[i * n + j] as f64;
                    let got = c[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{m}x{k}x{n} ({i},{j})"
                    );
                }
            }
        }
    }
}
