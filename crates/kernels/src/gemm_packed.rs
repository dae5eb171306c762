//! The packed GEMM on AVX-512: our own blocking and micro-kernel.
//!
//! `C = alpha·A·B + beta·C` is computed in tiles of `MR = 12` rows by `NR = 32` columns (two
//! 16-lane vectors). For each `p` the micro-kernel loads row `p` of the tile's panel of B (two
//! vectors), broadcasts the twelve elements `A[i, p]`, and issues 24 fused multiply-adds into 24
//! accumulator registers: 14 loads for 24 FMAs, so the two FMA ports, not the load ports, set
//! the pace.
//!
//! **Blocking.** B is copied ("packed"), a block of `kc` rows by `nc` columns at a time, into
//! panels of 32 columns: `kc` rows of 32 contiguous floats, zero past the last column (a
//! column-major B, such as a linear layer's `Wᵀ`, through in-register transposes). Whatever B's
//! strides, the micro-kernel then reads one contiguous stream per tile (32 KiB at `kc = 256`),
//! which stays in L1 while the tile moves down a block of at most `mc` rows; the packed block
//! (1 MiB at most) stays in L2 while the row blocks pass over it. A is not packed: the broadcasts
//! read `A[i, p]` through its strides, twelve rows at a time.
//!
//! **Threads.** With several threads C is cut into one block of rows (or of columns, when it is
//! wider than tall) per thread, and each thread runs the serial algorithm on its block, packing
//! its own B. Each thread's data stays in its own core's caches.
//!
//! **Determinism.** Every `C[i, j]` is the same sequence of FMAs (over `p` in order, one rounding
//! of the accumulator per block of `kc`), whichever thread computes it and however many there
//! are, so the result does not depend on the thread count.

use crate::buffer::{self, Buffer};
use crate::par::{fork, may_parallelize, SendConstPtr, SendPtr};
use crate::tune::tunables;

/// Lanes per vector.
const L: usize = 16;
/// Rows of C per micro-tile.
const MR: usize = 12;
/// Columns of C per micro-tile (two vectors).
const NR: usize = 2 * L;

/// Strides of an operand: (row stride, column stride).
type Strides = (isize, isize);

/// `C = alpha·A·B + beta·C` on AVX-512 (checked by the caller) for `k > 0`, with the
/// conventions and bounds (already checked by the caller) of [`crate::gemm::sgemm`]. C's index
/// map must be injective.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_packed(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    beta: f32,
    c: &mut [f32],
    sc: Strides,
) {
    assert!(k > 0 && m > 0 && n > 0);
    if sc.1 != 1 && sc.0 == 1 {
        // A column-major C is a row-major Cᵀ = Bᵀ·Aᵀ: swap the operands so that the kernel stores
        // whole vectors along rows of C.
        return sgemm_packed(
            n,
            k,
            m,
            alpha,
            b,
            (sb.1, sb.0),
            a,
            (sa.1, sa.0),
            beta,
            c,
            (sc.1, sc.0),
        );
    }
    let t = tunables();
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let threads = if flops >= t.gemm_par_min_flops && may_parallelize() {
        rayon::current_num_threads()
    } else {
        1
    };
    let product = Product { k, alpha, beta, sa, sb, sc };
    let c_ptr = SendPtr(c.as_mut_ptr());
    // Split whichever of rows and columns has more micro-tiles, in whole tiles.
    let split_rows = m.div_ceil(MR) >= n.div_ceil(NR);
    let (len, unit) = if split_rows { (m, MR) } else { (n, NR) };
    let per = len.div_ceil(unit).div_ceil(threads) * unit;
    let parts = len.div_ceil(per);
    let part = |i: usize| {
        let (s0, s1) = (i * per, ((i + 1) * per).min(len));
        if split_rows {
            // SAFETY (of the offsets): row s0 of A and of C exist (the caller's bounds check).
            let a_sub = &a[(s0 as isize * sa.0) as usize..];
            let c_sub = SendPtr(unsafe { c_ptr.get().offset(s0 as isize * sc.0) });
            product.run(s1 - s0, n, a_sub, b, c_sub);
        } else {
            let b_sub = &b[(s0 as isize * sb.1) as usize..];
            let c_sub = SendPtr(unsafe { c_ptr.get().offset(s0 as isize * sc.1) });
            product.run(m, s1 - s0, a, b_sub, c_sub);
        }
    };
    if parts > 1 {
        fork(parts, part);
    } else {
        part(0);
    }
}

/// What the blocks of one product share.
struct Product {
    k: usize,
    alpha: f32,
    beta: f32,
    sa: Strides,
    sb: Strides,
    sc: Strides,
}

impl Product {
    /// `C = alpha·A·B + beta·C` for the `m`×`n` block of C at `c`, on this thread. Every element
    /// of A, B and C it addresses is in bounds (checked by the caller), and no other thread
    /// writes this block of C.
    fn run(&self, m: usize, n: usize, a: &[f32], b: &[f32], c: SendPtr<f32>) {
        let t = tunables();
        let (kc_max, nc_max) = (t.gemm_kc.max(1), (t.gemm_nc / NR).max(1) * NR);
        let mc = (t.gemm_mc / MR).max(1) * MR;
        // Row blocks of about equal height, at most `mc` rows each.
        let row_blocks = m.div_ceil(mc);
        let mc = m.div_ceil(MR).div_ceil(row_blocks) * MR;
        let (rsa, csa) = self.sa;
        let (rsc, csc) = self.sc;
        // Panels of two vectors, or of one when C has at most 16 columns (a classifier head):
        // 32 would triple the arithmetic of a 10-column product.
        let v = if n <= L { 1 } else { 2 };
        let width = v * L;
        let bp_len = kc_max.min(self.k) * nc_max.min(n.div_ceil(width) * width);
        let mut bp_buf = Buffer::new(buffer::take(buffer::aligned_len(&[bp_len])));
        let [bp] = buffer::split_aligned(&mut bp_buf, [bp_len]);
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            for pc in (0..self.k).step_by(kc_max) {
                let kc = kc_max.min(self.k - pc);
                let panels = nc.div_ceil(width);
                for (q, dst) in bp[..panels * kc * width].chunks_exact_mut(kc * width).enumerate() {
                    pack_b_panel(
                        b,
                        self.sb,
                        pc,
                        kc,
                        jc + q * width,
                        width.min(nc - q * width),
                        width,
                        dst,
                    );
                }
                // The first block of p applies beta; later ones add to what it wrote.
                let (beta, read_c) =
                    if pc == 0 { (self.beta, self.beta != 0.0) } else { (1.0, true) };
                for r0 in (0..m).step_by(mc) {
                    let r1 = (r0 + mc).min(m);
                    for q in 0..panels {
                        let j0 = jc + q * width;
                        let bq = &bp[q * kc * width..(q + 1) * kc * width];
                        for i0 in (r0..r1).step_by(MR) {
                            // SAFETY (of both offsets): (i0, pc) is an element of A and (i0, j0)
                            // one of C (the caller's bounds check).
                            let tile = Tile {
                                kc,
                                a: SendConstPtr(unsafe {
                                    a.as_ptr().offset(i0 as isize * rsa + pc as isize * csa)
                                }),
                                rsa,
                                csa,
                                bp: bq,
                                c: SendPtr(unsafe {
                                    c.get().offset(i0 as isize * rsc + j0 as isize * csc)
                                }),
                                rsc,
                                csc,
                                cols: width.min(n - j0),
                                alpha: self.alpha,
                                beta,
                                read_c,
                            };
                            tile.run(MR.min(r1 - i0), v);
                        }
                    }
                }
            }
        }
    }
}

/// Copies rows `pc..pc + kc` of columns `j0..j0 + w` of B into `dst` as `kc` rows of `width`
/// lanes (16 or 32, at least `w`), zero past column `w`.
#[allow(clippy::too_many_arguments)]
fn pack_b_panel(
    b: &[f32],
    (rsb, csb): Strides,
    pc: usize,
    kc: usize,
    j0: usize,
    w: usize,
    width: usize,
    dst: &mut [f32],
) {
    assert!(w <= width && width <= NR && width.is_multiple_of(L) && dst.len() == kc * width);
    if csb == 1 {
        for (p, row) in dst.chunks_exact_mut(width).enumerate() {
            let s = ((pc + p) as isize * rsb + j0 as isize) as usize;
            if w == NR {
                // A copy of fixed length compiles to two vector moves, not a call to memcpy.
                let src: &[f32; NR] = b[s..s + NR].try_into().expect("32 floats");
                row.copy_from_slice(src);
            } else {
                row[..w].copy_from_slice(&b[s..s + w]);
                row[w..].fill(0.0);
            }
        }
    } else if rsb == 1 {
        // Column-major B (the transposed weight of a linear layer, `x·Wᵀ`): each column is a
        // contiguous run over p; 16 columns at a time become the lanes of the panel's rows.
        for g in 0..width / L {
            let rows = w.saturating_sub(g * L).min(L);
            let first = (pc as isize + (j0 + g * L) as isize * csb) as usize;
            // SAFETY: the packed GEMM runs only with AVX-512. Rows r < `rows` of this group are
            // columns j0 + 16g + r < j0 + w of B, whose elements at rows pc..pc + kc are inside
            // `b` (the caller's bounds check); they start at `first + r·csb`. No other row is
            // read, and `dst` holds kc rows of 32 floats.
            unsafe {
                crate::transpose::rows_to_lanes(
                    b.as_ptr().wrapping_add(first),
                    csb as usize,
                    rows,
                    kc,
                    dst.as_mut_ptr().add(g * L),
                    width,
                )
            };
        }
    } else {
        if w < NR {
            dst.fill(0.0);
        }
        for j in 0..w {
            let col = (j0 + j) as isize * csb;
            for p in 0..kc {
                dst[p * width + j] = b[((pc + p) as isize * rsb + col) as usize];
            }
        }
    }
}

/// One micro-tile: `rows ≤ 12` rows by `cols ≤ 32` columns of C.
struct Tile<'a> {
    kc: usize,
    /// Element (0, 0) of the tile's block of A (rows of the tile, columns `pc..pc + kc`).
    a: SendConstPtr<f32>,
    rsa: isize,
    csa: isize,
    /// Packed B: `kc` rows of `V·16`.
    bp: &'a [f32],
    /// Element (0, 0) of the tile in C.
    c: SendPtr<f32>,
    rsc: isize,
    csc: isize,
    cols: usize,
    alpha: f32,
    beta: f32,
    /// False when C is not to be read (beta = 0 on the first block of p).
    read_c: bool,
}

macro_rules! dispatch_rows {
    ($self:ident, $rows:expr, $v:expr; $($R:literal),*) => {
        match ($rows, $v) {
            // SAFETY: `sgemm_packed` is only called with AVX-512 detected; the tile lies inside
            // C (see `Product::run`) and no other thread writes it.
            $(($R, 1) => unsafe { $self.run_tile::<$R, 1>() },
              ($R, 2) => unsafe { $self.run_tile::<$R, 2>() },)*
            _ => unreachable!("micro-tile of {} rows and {} vectors", $rows, $v),
        }
    };
}

impl Tile<'_> {
    fn run(self, rows: usize, v: usize) {
        dispatch_rows!(self, rows, v; 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    }

    /// # Safety
    /// AVX-512F must be available; the `R`×`cols` tile at `c` must lie inside C and be written
    /// by no other thread during the call.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // index loops keep the accumulators in registers
    unsafe fn run_tile<const R: usize, const V: usize>(self) {
        use std::arch::x86_64::*;
        assert!(self.bp.len() == self.kc * V * L);
        assert!(R <= MR && V <= 2 && (1..=V * L).contains(&self.cols));
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let mut arow = [self.a.get(); R];
        for r in 0..R {
            // SAFETY: row r of the tile is a row of A (the caller's bounds check).
            arow[r] = unsafe { self.a.get().offset(r as isize * self.rsa) };
        }
        let mut b = self.bp.as_ptr();
        let mut po = 0isize;
        for _ in 0..self.kc {
            // SAFETY: `b` walks the kc rows of V·16 asserted above; `po` the tile's kc columns of
            // A, which are inside A.
            unsafe {
                let mut bv = [_mm512_setzero_ps(); V];
                for q in 0..V {
                    bv[q] = _mm512_loadu_ps(b.add(q * L));
                }
                for r in 0..R {
                    let x = _mm512_set1_ps(*arow[r].offset(po));
                    for q in 0..V {
                        acc[r][q] = _mm512_fmadd_ps(x, bv[q], acc[r][q]);
                    }
                }
                b = b.add(V * L);
                po += self.csa;
            }
        }
        if !self.read_c && self.alpha == 1.0 && self.csc == 1 && self.cols == V * L {
            // A whole tile of C overwritten: store the accumulators as they are. (Short inner
            // dimensions, such as the Winograd convolution's products over 32 channels, spend a
            // large share of each tile here.)
            for r in 0..R {
                for v in 0..V {
                    // SAFETY: row r of the tile, columns v·16..v·16 + 16 < cols, is inside C.
                    unsafe {
                        _mm512_storeu_ps(
                            self.c.get().offset(r as isize * self.rsc).add(v * L),
                            acc[r][v],
                        )
                    };
                }
            }
            return;
        }
        // Spill the accumulators to memory once, by a loop simple enough to unroll: indexing
        // `acc` in the branchy stores below would make the compiler keep it in memory and store
        // all 24 registers on every step of the loop over p.
        let mut out = [[0.0f32; NR]; R];
        for r in 0..R {
            for v in 0..V {
                // SAFETY: `out[r]` holds 32 floats.
                unsafe { _mm512_storeu_ps(out[r].as_mut_ptr().add(v * L), acc[r][v]) };
            }
        }
        let alpha = _mm512_set1_ps(self.alpha);
        let beta = _mm512_set1_ps(self.beta);
        let (read_c, beta_is_one) = (self.read_c, self.beta == 1.0);
        // C ← alpha·acc + beta·C, with one rounding when beta = 1. (A macro, not a closure: a
        // closure would not inherit this function's target features.)
        macro_rules! combine {
            ($acc:expr, $old:expr) => {
                if read_c {
                    let old = if beta_is_one { $old } else { _mm512_mul_ps(beta, $old) };
                    _mm512_fmadd_ps(alpha, $acc, old)
                } else {
                    _mm512_mul_ps(alpha, $acc)
                }
            };
        }
        if self.csc == 1 {
            let lo = self.cols.min(L);
            let masks: [__mmask16; 2] = [
                (((1u32 << lo) - 1) & 0xffff) as u16,
                (((1u32 << (self.cols - lo)) - 1) & 0xffff) as u16,
            ];
            for r in 0..R {
                // SAFETY: row r of the tile, columns below `cols`, are elements of C.
                let row = unsafe { self.c.get().offset(r as isize * self.rsc) };
                for v in 0..V {
                    if masks[v] == 0 {
                        continue;
                    }
                    // SAFETY: the masked lanes are columns `v·16 + l < cols` of row r.
                    unsafe {
                        let ptr = row.add(v * L);
                        let old = if self.read_c {
                            _mm512_maskz_loadu_ps(masks[v], ptr)
                        } else {
                            _mm512_setzero_ps()
                        };
                        _mm512_mask_storeu_ps(
                            ptr,
                            masks[v],
                            combine!(_mm512_loadu_ps(out[r].as_ptr().add(v * L)), old),
                        );
                    }
                }
            }
        } else {
            let mut lanes = [0.0f32; NR];
            for r in 0..R {
                for j in 0..self.cols {
                    let off = r as isize * self.rsc + j as isize * self.csc;
                    // SAFETY: (r, j) of the tile is an element of C.
                    lanes[j] = if self.read_c { unsafe { *self.c.get().offset(off) } } else { 0.0 };
                }
                for v in 0..V {
                    // SAFETY: `lanes` holds 32 floats.
                    unsafe {
                        let p = lanes.as_mut_ptr().add(v * L);
                        _mm512_storeu_ps(
                            p,
                            combine!(
                                _mm512_loadu_ps(out[r].as_ptr().add(v * L)),
                                _mm512_loadu_ps(p)
                            ),
                        );
                    }
                }
                for j in 0..self.cols {
                    let off = r as isize * self.rsc + j as isize * self.csc;
                    // SAFETY: as above; this thread owns the tile.
                    unsafe { *self.c.get().offset(off) = lanes[j] };
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const R: usize>(self) {
        unreachable!("the packed GEMM needs AVX-512")
    }
}
