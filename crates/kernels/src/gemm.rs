//! General matrix multiply: `C = alpha * A·B + beta * C` on `f32`.
//!
//! Two engines, chosen per call (a thread may force one, see [`crate::path`]):
//!
//! - with AVX-512, our packed GEMM (`gemm_packed.rs`: B packed in blocks, a micro-kernel of 12
//!   rows by 32 columns, or by 16 for a C at most 16 wide such as a classifier head, one block of
//!   C per thread);
//! - without AVX-512, `matrixmultiply::sgemm` (packing plus an AVX2 or portable micro-kernel
//!   chosen at run time), one call per block of C.
//!
//! Around them this module adds what a training loop needs: slices instead of raw pointers, with
//! every access bounds-checked up front, and rayon parallelism over blocks of C for large problems
//! (the blocks split the longer of the `m` and `n` dimensions, aligned to the micro-kernel's
//! tile), single-threaded below
//! [`Tunables::gemm_par_min_flops`](crate::tune::Tunables::gemm_par_min_flops) or when already
//! inside a parallel region (a rayon worker, or the calling thread's share of a fork).
//!
//! Blocks never split the `k` dimension, so each element of C is computed by the same sequence
//! of operations whatever the number of threads: results do not depend on the thread count.

use crate::gemm_packed;
use crate::par::{fork, may_parallelize, SendConstPtr, SendPtr};
use crate::path::GemmPath;
use crate::simd::{active_isa, Isa};
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
    let injective = c_is_injective(m, n, rsc, csc);
    let packed = match crate::path::forced_gemm() {
        Some(forced) => forced == GemmPath::Packed,
        None => t.gemm_packed != 0,
    };
    if k > 0 && injective && packed && active_isa() == Isa::Avx512 {
        crate::path::record_gemm(GemmPath::Packed);
        gemm_packed::sgemm_packed(
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
        return;
    }
    crate::path::record_gemm(GemmPath::Matrixmultiply);
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let threads = rayon::current_num_threads();
    if flops < t.gemm_par_min_flops || !may_parallelize() || !injective {
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
