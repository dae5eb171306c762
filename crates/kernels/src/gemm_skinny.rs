//! GEMM with a narrow C (at most 32 columns) on AVX-512: a classifier head, `128 × 256 × 10`.
//!
//! The packed GEMM pads the 10 columns of such a product to a 16-wide panel and still runs its
//! full blocking machinery around a few microseconds of work. Here B (`k × n`) is copied once
//! into rows of one or two 16-lane vectors (zero-padded), and C is computed `R = 12` rows at a
//! time: for each `p` the kernel loads the `V ≤ 2` vectors of row `p` of B, broadcasts the `R`
//! elements `A[i, p]` of the block, and issues `R·V` fused multiply-adds into `R·V`
//! accumulators. Rows of A may have any strides (the broadcasts are scalar loads).
//!
//! Every `C[i, j]` is one fixed sequence of FMAs over `p = 0..k`, so results do not depend on the
//! thread count.

use crate::buffer::{self, Buffer};
use crate::par::{fork, may_parallelize, SendPtr};
use crate::tune::tunables;

/// Lanes per vector.
const L: usize = 16;
/// Rows of C per register tile.
const ROWS: usize = 12;

/// `C = alpha·A·B + beta·C` for `n ≤ 32` on AVX-512 (checked by the caller), `k > 0`, with the
/// same conventions and bounds (already checked by the caller) as [`crate::gemm::sgemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_narrow(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (rsa, csa): (isize, isize),
    b: &[f32],
    (rsb, csb): (isize, isize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (isize, isize),
) {
    assert!((1..=2 * L).contains(&n) && k > 0);
    let v = n.div_ceil(L);
    let width = v * L;
    // B as k rows of `width` lanes, zero past column n.
    let mut bp = Buffer::new(buffer::take_zeroed(k * width));
    for p in 0..k {
        for j in 0..n {
            bp[p * width + j] = b[(p as isize * rsb + j as isize * csb) as usize];
        }
    }
    let blocks = m.div_ceil(ROWS);
    let flops = 2 * m * n * k;
    let threads = if flops >= tunables().gemm_par_min_flops && may_parallelize() {
        rayon::current_num_threads().min(blocks)
    } else {
        1
    };
    let c_ptr = SendPtr(c.as_mut_ptr());
    let bp = &bp[..];
    let run = |t: usize| {
        let per = blocks.div_ceil(threads);
        for blk in t * per..((t + 1) * per).min(blocks) {
            let i0 = blk * ROWS;
            let rows = ROWS.min(m - i0);
            let tile = Tile {
                a,
                a_off: i0 as isize * rsa,
                rsa,
                csa,
                k,
                bp,
                alpha,
                beta,
                c: c_ptr,
                c_off: i0 as isize * rsc,
                rsc,
                csc,
                n,
            };
            tile.run(rows, v);
        }
    };
    if threads > 1 {
        fork(threads, run);
    } else {
        run(0);
    }
}

/// One tile: `rows ≤ 12` rows of C, all `n` columns.
struct Tile<'a> {
    a: &'a [f32],
    /// Offset of the tile's first row in `a`.
    a_off: isize,
    rsa: isize,
    csa: isize,
    k: usize,
    /// B packed: `k` rows of `v·16` lanes.
    bp: &'a [f32],
    alpha: f32,
    beta: f32,
    c: SendPtr<f32>,
    /// Offset of the tile's first row in `c`.
    c_off: isize,
    rsc: isize,
    csc: isize,
    n: usize,
}

macro_rules! dispatch_rows {
    ($self:ident, $rows:expr, $v:expr; $($R:literal),*) => {
        match ($rows, $v) {
            // SAFETY: `sgemm_narrow` is only called with AVX-512 active; bounds are checked by
            // the caller of `sgemm_narrow` and inside `run_tile`.
            $(($R, 1) => unsafe { $self.run_tile::<$R, 1>() },
              ($R, 2) => unsafe { $self.run_tile::<$R, 2>() },)*
            _ => unreachable!("tile of {} rows and {} vectors", $rows, $v),
        }
    };
}

impl Tile<'_> {
    fn run(self, rows: usize, v: usize) {
        dispatch_rows!(self, rows, v; 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    }

    /// # Safety
    /// AVX-512F must be available; every offset `(i, p)` of A and `(i, j)` of C of the tile must
    /// be inside its slice (the caller's bounds check over the whole product guarantees it), and
    /// no other thread may write the tile's rows of C.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // index loops keep the accumulators in registers
    unsafe fn run_tile<const R: usize, const V: usize>(self) {
        use std::arch::x86_64::*;
        assert!(self.bp.len() == self.k * V * L);
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let mut arow = [self.a.as_ptr(); R];
        for r in 0..R {
            // SAFETY: row r of the tile is a row of A (checked by the caller).
            arow[r] = unsafe { self.a.as_ptr().offset(self.a_off + r as isize * self.rsa) };
        }
        let bp = self.bp.as_ptr();
        for p in 0..self.k {
            let mut bv = [_mm512_setzero_ps(); V];
            for q in 0..V {
                // SAFETY: p < k rows of V·16 lanes (asserted above).
                bv[q] = unsafe { _mm512_loadu_ps(bp.add((p * V + q) * L)) };
            }
            let po = p as isize * self.csa;
            for r in 0..R {
                // SAFETY: (row r, column p) of A is inside `a` (checked by the caller).
                let x = _mm512_set1_ps(unsafe { *arow[r].offset(po) });
                for q in 0..V {
                    acc[r][q] = _mm512_fmadd_ps(x, bv[q], acc[r][q]);
                }
            }
        }
        let mut lanes = [0.0f32; 2 * L];
        for r in 0..R {
            for q in 0..V {
                // SAFETY: `lanes` holds 2·16 floats.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr().add(q * L), acc[r][q]) };
            }
            for j in 0..self.n {
                let off = self.c_off + r as isize * self.rsc + j as isize * self.csc;
                // SAFETY: (row r, column j) of C is inside `c` and owned by this tile.
                let cij = unsafe { &mut *self.c.get().offset(off) };
                *cij = if self.beta == 0.0 {
                    self.alpha * lanes[j]
                } else {
                    self.alpha * lanes[j] + self.beta * *cij
                };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const R: usize, const V: usize>(self) {
        unreachable!("the narrow GEMM needs AVX-512")
    }
}
