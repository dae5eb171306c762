//! The packed GEMM on AVX-512: our own driver and micro-kernel, with one packed copy of B shared
//! by all threads.
//!
//! `C = alpha·A·B + beta·C` is computed in tiles of `MR = 12` rows by `NR = 32` columns (two
//! 16-lane vectors). For each `p` the micro-kernel loads row `p` of the tile's slice of B (two
//! vectors), broadcasts the twelve elements `A[i, p]`, and issues 24 fused multiply-adds into 24
//! accumulator registers: 14 loads for 24 FMAs, so the two FMA ports, not the load ports, set
//! the pace.
//!
//! Both operands are copied ("packed") first, so that the micro-kernel reads them contiguously
//! whatever their strides:
//!
//! - **B** is packed once per call, for all of `k`, into panels of 32 columns (`k` rows of 32
//!   lanes each, zero past the last column). The threads pack disjoint panels, then all of them
//!   read the shared copy. (A GEMM library that runs one single-threaded product per block of C
//!   instead packs B once per thread.)
//! - **A** is packed by each work item, `KC` columns at a time, into panels of 12 rows (`KC`
//!   groups of 12, zero past the last row).
//!
//! The work items are rectangles of C: a few row panels by some column panels, several per
//! thread, taken from a shared counter, so a thread that starts late or runs on a busy core takes
//! fewer of them instead of holding up the call. Within an item, for each block of `KC` values of
//! `p` the item packs its rows of A, then for each 32-column panel runs the micro-kernel down its
//! row panels: the panel of B (`KC`·32 floats, 32 KiB at `KC = 256`) stays in L1 while the rows
//! pass over it.
//!
//! **Determinism.** Every `C[i, j]` is the same sequence of FMAs (over `p` in order, one rounding
//! of the accumulator per block of `KC`), whichever thread computes it and however many there
//! are, so the result does not depend on the thread count.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::buffer::{self, Buffer};
use crate::par::{fork, may_parallelize, SendConstPtr, SendPtr};
use crate::tune::tunables;

/// Lanes per vector.
const L: usize = 16;
/// Rows of C per micro-tile.
pub(crate) const MR: usize = 12;
/// Columns of C per micro-tile (two vectors).
pub(crate) const NR: usize = 2 * L;
/// Work items per thread when several threads share a call: enough that a slow thread can hand
/// its share to the others, few enough that each item reuses its panels of B over many rows.
const ITEMS_PER_THREAD: usize = 4;

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
    let kc_max = t.gemm_kc.max(1);
    let nc_max = (t.gemm_nc / NR).max(1) * NR;
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let threads = if flops >= t.gemm_par_min_flops && may_parallelize() {
        rayon::current_num_threads()
    } else {
        1
    };
    let max_row_panels = t.gemm_mc.max(MR) / MR;
    // The blocks of B, in order: columns outer, p inner. Each becomes `pack_tasks` packing tasks
    // followed by the work items of its grid.
    let mut blocks = Vec::new();
    let mut tasks = 0;
    for jc in (0..n).step_by(nc_max) {
        for pc in (0..k).step_by(kc_max) {
            let (nc, kc) = (nc_max.min(n - jc), kc_max.min(k - pc));
            let grid = Grid::new(m, nc.div_ceil(NR), threads, max_row_panels);
            let pack_tasks = threads.min(grid.col_panels);
            blocks.push(Block { jc, nc, pc, kc, first_task: tasks, pack_tasks, grid });
            tasks += pack_tasks + blocks.last().map_or(0, |b: &Block| b.grid.items());
        }
    }
    // Two buffers of packed B: block `i` is packed into buffer `i % 2` while the threads may
    // still be computing with block `i - 1` in the other.
    let buf_len = kc_max.min(k) * nc_max.min(n.div_ceil(NR) * NR);
    let mut bufs = [Buffer::new(buffer::take(buf_len)), Buffer::new(buffer::take(buf_len))];
    let pipe = Pipeline {
        m,
        alpha,
        beta,
        a,
        sa,
        b,
        sb,
        c: SendPtr(c.as_mut_ptr()),
        sc,
        bufs: [SendPtr(bufs[0].as_mut_ptr()), SendPtr(bufs[1].as_mut_ptr())],
        packed: blocks.iter().map(|_| AtomicUsize::new(0)).collect(),
        computed: blocks.iter().map(|_| AtomicUsize::new(0)).collect(),
        blocks,
        next: AtomicUsize::new(0),
        tasks,
    };
    if threads > 1 {
        fork(threads, |_| pipe.work());
    } else {
        pipe.work();
    }
}

/// One block of B: columns `jc..jc + nc`, rows `pc..pc + kc`.
struct Block {
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
    /// Index of the block's first task in the whole sequence.
    first_task: usize,
    /// The packing of the block is split into this many tasks (disjoint ranges of panels).
    pack_tasks: usize,
    /// The block's work items.
    grid: Grid,
}

impl Block {
    fn tasks(&self) -> usize {
        self.pack_tasks + self.grid.items()
    }
}

/// The whole product as one ordered sequence of tasks, which the threads take one at a time
/// from a shared counter: for each block of B, the tasks that pack it, then the work items that
/// use it.
///
/// A task may have to wait for earlier ones:
///
/// - packing block `i` overwrites the buffer of block `i - 2`, so it waits until all work items
///   of block `i - 2` are done;
/// - a work item of block `i` waits until block `i` is packed, and until all work items of
///   block `i - 1` are done (they may write the same elements of C, and the blocks of p must be
///   added in order).
///
/// Waits are only ever for tasks earlier in the sequence, which running threads have already
/// taken, so the pipeline cannot deadlock: the earliest unfinished task waits for nothing. With
/// one thread the tasks simply run in order and never wait.
struct Pipeline<'a> {
    m: usize,
    alpha: f32,
    beta: f32,
    a: &'a [f32],
    sa: Strides,
    b: &'a [f32],
    sb: Strides,
    c: SendPtr<f32>,
    sc: Strides,
    bufs: [SendPtr<f32>; 2],
    blocks: Vec<Block>,
    /// Per block: packing tasks finished.
    packed: Vec<AtomicUsize>,
    /// Per block: work items finished.
    computed: Vec<AtomicUsize>,
    next: AtomicUsize,
    tasks: usize,
}

/// Spins (then yields) until `counter` reaches `target`.
fn wait_for(counter: &AtomicUsize, target: usize) {
    let mut spins = 0u32;
    while counter.load(Ordering::Acquire) < target {
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

impl Pipeline<'_> {
    /// Takes and runs tasks until none are left.
    fn work(&self) {
        loop {
            let task = self.next.fetch_add(1, Ordering::Relaxed);
            if task >= self.tasks {
                return;
            }
            let i = self.blocks.partition_point(|b| b.first_task <= task) - 1;
            let block = &self.blocks[i];
            let local = task - block.first_task;
            debug_assert!(local < block.tasks());
            let buf = self.bufs[i % 2];
            if local < block.pack_tasks {
                if i >= 2 {
                    wait_for(&self.computed[i - 2], self.blocks[i - 2].grid.items());
                }
                let panels = block.grid.col_panels;
                let per = panels.div_ceil(block.pack_tasks);
                for q in local * per..((local + 1) * per).min(panels) {
                    // SAFETY: panel q of the block occupies `q·kc·32 .. (q+1)·kc·32` of the
                    // buffer, which holds `kc_max · nc_max ≥ kc · nc` floats. Packing tasks of
                    // this block take disjoint ranges of q; every work item that reads the buffer
                    // (those of block i - 2) has finished, and none of block i starts before all
                    // its packing tasks have (the waits above and in the branch below).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            buf.get().add(q * block.kc * NR),
                            block.kc * NR,
                        )
                    };
                    pack_b_panel(self.b, self.sb, block, q, dst);
                }
                self.packed[i].fetch_add(1, Ordering::AcqRel);
            } else {
                wait_for(&self.packed[i], block.pack_tasks);
                if i >= 1 {
                    wait_for(&self.computed[i - 1], self.blocks[i - 1].grid.items());
                }
                // SAFETY: the block is packed and no task writes this buffer until all work
                // items of this block are done (see above).
                let bp = unsafe {
                    std::slice::from_raw_parts(buf.get(), block.grid.col_panels * block.kc * NR)
                };
                self.compute(block, local - block.pack_tasks, bp);
                self.computed[i].fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Work item `item` of `block`: its rectangle of C gets `alpha·A[:, pc..pc+kc]·B_block`
    /// (plus `beta·C` on the first block of p).
    fn compute(&self, block: &Block, item: usize, bp: &[f32]) {
        let grid = &block.grid;
        let (ri, ci) = (item % grid.row_items(), item / grid.row_items());
        let r0 = ri * grid.row_panels_per_item * MR;
        let r1 = (r0 + grid.row_panels_per_item * MR).min(self.m);
        let q0 = ci * grid.col_panels_per_item;
        let q1 = (q0 + grid.col_panels_per_item).min(grid.col_panels);
        let (rsa, csa) = self.sa;
        let (rsc, csc) = self.sc;
        let kc = block.kc;
        // The first block of p applies beta; later ones add to what it wrote.
        let (beta, read_c) =
            if block.pc == 0 { (self.beta, self.beta != 0.0) } else { (1.0, true) };
        for q in q0..q1 {
            let j0 = block.jc + q * NR;
            let cols = NR.min(block.jc + block.nc - j0);
            let bq = &bp[q * kc * NR..(q + 1) * kc * NR];
            for i0 in (r0..r1).step_by(MR) {
                // SAFETY (of both offsets): (i0, pc) is an element of A and (i0, j0) one of C,
                // both bounds-checked by the caller over the whole product.
                let tile = Tile {
                    kc,
                    a: SendConstPtr(unsafe {
                        self.a.as_ptr().offset(i0 as isize * rsa + block.pc as isize * csa)
                    }),
                    rsa,
                    csa,
                    bp: bq,
                    c: SendPtr(unsafe {
                        self.c.get().offset(i0 as isize * rsc + j0 as isize * csc)
                    }),
                    rsc,
                    csc,
                    cols,
                    alpha: self.alpha,
                    beta,
                    read_c,
                };
                tile.run(MR.min(r1 - i0));
            }
        }
    }
}

/// Copies panel `q` of `block` (rows `pc..pc + kc`, 32 columns from `jc + 32q`) of B into `dst`
/// as `kc` rows of 32 lanes, zero past the block's last column.
fn pack_b_panel(b: &[f32], (rsb, csb): Strides, block: &Block, q: usize, dst: &mut [f32]) {
    let j0 = block.jc + q * NR;
    let w = NR.min(block.jc + block.nc - j0);
    let pc = block.pc;
    if csb == 1 {
        for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
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
    } else {
        if w < NR {
            dst.fill(0.0);
        }
        for j in 0..w {
            let col = (j0 + j) as isize * csb;
            for p in 0..block.kc {
                dst[p * NR + j] = b[((pc + p) as isize * rsb + col) as usize];
            }
        }
    }
}

/// The split of C (within one chunk of columns) into work items: rectangles of
/// `row_panels_per_item` panels of 12 rows by `col_panels_per_item` panels of 32 columns.
struct Grid {
    row_panels: usize,
    col_panels: usize,
    row_panels_per_item: usize,
    col_panels_per_item: usize,
}

impl Grid {
    fn new(m: usize, col_panels: usize, threads: usize, max_row_panels: usize) -> Grid {
        let row_panels = m.div_ceil(MR);
        let want = if threads > 1 { threads * ITEMS_PER_THREAD } else { 1 };
        // Split rows first (each item packs only its own rows of A), into blocks of at most
        // `max_row_panels` of about equal size; then columns, if there are still too few items.
        let row_items = row_panels.div_ceil(max_row_panels).max(want.min(row_panels));
        let row_panels_per_item = row_panels.div_ceil(row_items);
        let row_items = row_panels.div_ceil(row_panels_per_item);
        let col_items = want.div_ceil(row_items).clamp(1, col_panels);
        let col_panels_per_item = col_panels.div_ceil(col_items);
        Grid { row_panels, col_panels, row_panels_per_item, col_panels_per_item }
    }

    fn row_items(&self) -> usize {
        self.row_panels.div_ceil(self.row_panels_per_item)
    }

    fn items(&self) -> usize {
        self.row_items() * self.col_panels.div_ceil(self.col_panels_per_item)
    }
}

/// One micro-tile: `rows ≤ 12` rows by `cols ≤ 32` columns of C.
struct Tile<'a> {
    kc: usize,
    /// Element (0, 0) of the tile's block of A (rows of the tile, columns `pc..pc + kc`).
    a: SendConstPtr<f32>,
    rsa: isize,
    csa: isize,
    /// Packed B: `kc` rows of 32.
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
    ($self:ident, $rows:expr; $($R:literal),*) => {
        match $rows {
            // SAFETY: `sgemm_packed` is only called with AVX-512 detected; the tile lies inside
            // C (see `Job::run`) and no other thread writes it.
            $($R => unsafe { $self.run_tile::<$R>() },)*
            _ => unreachable!("micro-tile of {} rows", $rows),
        }
    };
}

impl Tile<'_> {
    fn run(self, rows: usize) {
        dispatch_rows!(self, rows; 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    }

    /// # Safety
    /// AVX-512F must be available; the `R`×`cols` tile at `c` must lie inside C and be written
    /// by no other thread during the call.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // index loops keep the accumulators in registers
    unsafe fn run_tile<const R: usize>(self) {
        use std::arch::x86_64::*;
        assert!(self.bp.len() == self.kc * NR);
        assert!(R <= MR && (1..=NR).contains(&self.cols));
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let mut arow = [self.a.get(); R];
        for r in 0..R {
            // SAFETY: row r of the tile is a row of A (the caller's bounds check).
            arow[r] = unsafe { self.a.get().offset(r as isize * self.rsa) };
        }
        let mut b = self.bp.as_ptr();
        let mut po = 0isize;
        for _ in 0..self.kc {
            // SAFETY: `b` walks the kc rows of 32 asserted above; `po` the tile's kc columns of
            // A, which are inside A.
            unsafe {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(L));
                for r in 0..R {
                    let x = _mm512_set1_ps(*arow[r].offset(po));
                    acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
                }
                b = b.add(NR);
                po += self.csa;
            }
        }
        // Spill the accumulators to memory once, by a loop simple enough to unroll: indexing
        // `acc` in the branchy stores below would make the compiler keep it in memory and store
        // all 24 registers on every step of the loop over p.
        let mut out = [[0.0f32; NR]; R];
        for r in 0..R {
            for v in 0..2 {
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
                for v in 0..2 {
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
                for v in 0..2 {
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
