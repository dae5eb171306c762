//! Convolutions with the images of the batch as the vector lanes, for layers whose output rows
//! are too short for the rows kernels to fill their vectors (LeNet's layers: rows of 28 and 10
//! pixels in vectors of 16).
//!
//! A group of up to 16 images is transposed so that each pixel of the (padded) input, of the
//! output and of `dy` is one vector of the 16 images' values: `xt[(c·hp + y)·wp + x][i]`,
//! `yt[(co·oh + oy)·ow + ox][i]`. Every lane of every product is then a real one (16 images of a
//! full group), against `wp/ow` or `16·⌈ow/16⌉/ow` of the rows layouts (14/10 and 16/10 for
//! LeNet's 10 → 20 layer, 36/28 and 32/28 for its 9x9 one), and the loops run over the real
//! pixels only:
//!
//! ```text
//! forward  yt[co, oy, ox]     = b[co] + Σ_(ci, r, s) W[co, ci, r, s] · xt[ci, oy + r, ox + s]
//! dX       dxt[ci, y, x]      = Σ_(co, r, s) W[co, ci, r, s] · dyt[co, y − r, x − s]
//! dW       dW[co, ci, r, s]   = Σ_i Σ_(oy, ox) dyt[co, oy, ox][i] · xt[ci, oy + r, ox + s][i]
//! ```
//!
//! The forward pass and dX are one GEMM tile ([`LaneGemmTile`]): up to 5 channels by 4 pixels,
//! per tap 4 loads of the input and 5 broadcast weights for 20 fused multiply-adds. dX reads
//! `dyt` with `kw − 1` zero columns on each side and, for each row `y`, only the kernel rows `r`
//! with `0 ≤ y − r < oh`: no product with the zeros above or below `dy` (the rows kernel's
//! scatter computes them all, 196 pixels for 100 of `dy` on LeNet's layer). The weight gradient
//! is the rows kernel's tile, 4 channels by 6 taps of 16-lane accumulators: per pixel, 10 loads
//! and 24 FMAs; the accumulators stay vectors across all images of a chunk and are summed across
//! lanes (in a fixed tree) once at the end, as are the bias gradient's. The transposes cost one
//! pass over each image's input and output, small beside the `taps` products of every pixel.

use super::{
    avx512, balanced, fits_rows, input_gradient_weights, input_tap_offsets, sum_over_chunks,
    weights_tap_major, CO_VEC, FWD_CO, FWD_Q, ROW_CO, ROW_TT,
};
use crate::buffer::{self, Buffer};
use crate::conv::{for_each_block, Conv2dGeometry};
use crate::par::SendPtr;
use crate::transpose::{rows_to_lanes, rows_to_lanes_masked};

/// Images per group: one per lane.
const LANES: usize = CO_VEC;

/// True when the kernels of this module can compute `g`: AVX-512 is active, and stride and
/// dilation are 1.
pub(crate) fn applicable(g: &Conv2dGeometry) -> bool {
    super::rows_applicable(g)
}

/// True when `g`, unforced, should take this module's kernels rather than the rows kernels:
/// there are at least 16 taps (the transposes are paid once per pixel, the products once per
/// tap); a group's transposed input and output, `16·(c_in·hp·wp + c_out·P)` floats, fit in 1 MiB
/// (LeNet's layers: 572 and 248 KiB), where the tiles that sweep them find them in the cache;
/// and the lanes they compute, `P·16·⌈n/16⌉` for `P` output pixels per channel and `n` images,
/// are at most `ratio` (as `(num, den)`) of the `rows_lanes` that the rows kernels compute per
/// image and channel, times `n`.
///
/// The weight gradient takes `ratio` 1: its tile reads both operands in place in either layout,
/// and with images as lanes it was faster on both LeNet layers (784·256 against 896·256 lanes:
/// 4.0 against 5.1 ms at batch 256 and one thread; 100·256 against 144·256: 2.7 against 6.3).
/// The forward pass and dX take 4/5: they pay for a transpose of their output, which the rows
/// kernels write in place; LeNet's 9x9 layer ran its forward pass in 3.5 ms with images as lanes
/// and 3.6 on rows, its 5x5 one in 2.4 against 3.5, and that layer's dX in 3.5 against 5.0
/// (`examples/conv_paths`).
pub(crate) fn preferred(g: &Conv2dGeometry, rows_lanes: usize, (num, den): (usize, usize)) -> bool {
    let p = g.out_h() * g.out_w();
    let lanes = p * g.n.div_ceil(LANES) * LANES;
    let plane = (g.h + 2 * g.padding.0) * (g.w + 2 * g.padding.1);
    g.c_in * g.kh * g.kw >= 16
        && den * lanes <= num * rows_lanes * g.n
        && (g.c_in * plane + g.c_out * p) * LANES <= GROUP_FLOATS
}

/// The most floats of a group's transposed input and output for [`preferred`]: 1 MiB.
const GROUP_FLOATS: usize = 1 << 18;

/// The weight gradient (and the bias gradient) with images as lanes; `dw` is overwritten.
/// `chunks` chunks of images are summed in order, as in the other weight gradients.
pub(crate) fn backward_weight(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    chunks: usize,
) {
    assert!(avx512() && fits_rows(g));
    let (hp, wp) = (g.h + 2 * g.padding.0, g.w + 2 * g.padding.1);
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let plane = hp * wp;
    let taps = g.c_in * g.kh * g.kw;
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    assert!(x.len() == g.n * x_img && dy.len() == g.n * y_img && dw.len() == g.c_out * taps);
    assert!(db.as_ref().is_none_or(|b| b.len() == g.c_out));
    // Each tap's offset, in pixels of the transposed padded input.
    let tap_offsets = input_tap_offsets(g, hp, wp);
    let acc_len = g.c_out * taps * LANES;
    let partial = |images: std::ops::Range<usize>| -> Buffer {
        // dW's accumulators, then the bias gradient's.
        let mut acc = Buffer::new(buffer::take_zeroed(acc_len + g.c_out * LANES));
        // Zeroed once: the padding stays zero, the transposes write the image pixels.
        let mut xt = Buffer::new(buffer::take_zeroed(g.c_in * plane * LANES));
        let mut dyt = Buffer::new(buffer::take(y_img * LANES));
        for first in images.clone().step_by(LANES) {
            let m = LANES.min(images.end - first);
            transpose_group(g, &x[first * x_img..], m, &mut xt, (hp, wp));
            for co in 0..g.c_out {
                let src = &dy[first * y_img + co * p..];
                // SAFETY: AVX-512 (asserted above); rows r < m at r·y_img are p floats of
                // image first + r, and the destination holds p vectors of 16 for channel co.
                // Lanes m.. are written as zeros.
                unsafe {
                    rows_to_lanes(
                        src.as_ptr(),
                        y_img,
                        m,
                        p,
                        dyt[co * p * LANES..].as_mut_ptr(),
                        LANES,
                    )
                };
                let bias = &mut acc[acc_len + co * LANES..acc_len + (co + 1) * LANES];
                for pixel in dyt[co * p * LANES..(co + 1) * p * LANES].chunks_exact(LANES) {
                    for (b, d) in bias.iter_mut().zip(pixel) {
                        *b += d;
                    }
                }
            }
            for (co0, nc) in balanced(g.c_out, ROW_CO) {
                for (t0, nt) in balanced(taps, ROW_TT) {
                    let tile = LaneTile {
                        xt: &xt,
                        dyt: &dyt[co0 * p * LANES..],
                        rows: (oh, ow, wp),
                        taps: &tap_offsets[t0..t0 + nt],
                        acc: &mut acc,
                        acc_base: (co0 * taps + t0) * LANES,
                        acc_co_stride: taps * LANES,
                    };
                    tile.run(nc, nt);
                }
            }
        }
        acc
    };
    let lanes = sum_over_chunks(g.n, chunks, partial);
    let (lanes, db_lanes) = lanes.split_at(acc_len);
    for (d, l) in dw.iter_mut().zip(lanes.chunks_exact(LANES)) {
        *d = crate::simd::reduce_lanes(l.try_into().expect("16 lanes"));
    }
    if let Some(db) = db {
        for (d, l) in db.iter_mut().zip(db_lanes.chunks_exact(LANES)) {
            *d = crate::simd::reduce_lanes(l.try_into().expect("16 lanes"));
        }
    }
}

/// Forward convolution with images as lanes: `y = conv(x, w) + bias`, `y` overwritten.
pub(crate) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(avx512() && fits_rows(g));
    let (hp, wp) = (g.h + 2 * g.padding.0, g.w + 2 * g.padding.1);
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let plane = hp * wp;
    let taps = g.c_in * g.kh * g.kw;
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    assert!(x.len() == g.n * x_img && y.len() == g.n * y_img && w.len() == g.c_out * taps);
    assert!(bias.is_none_or(|b| b.len() == g.c_out));
    // Each tap as (its offset in pixels of `xt`, its weights' index), the weights tap-major so
    // that a tile's broadcasts of one tap are neighbours.
    let tap_list: Vec<(usize, usize)> = input_tap_offsets(g, hp, wp)
        .into_iter()
        .enumerate()
        .map(|(t, off)| (off, t * g.c_out))
        .collect();
    let wt = weights_tap_major(w, g.c_out);
    let zeros = vec![0.0f32; g.c_out];
    let bias = bias.unwrap_or(&zeros);
    // Each output pixel's offset in `xt`.
    let pos: Vec<usize> = (0..oh).flat_map(|oy| (0..ow).map(move |ox| oy * wp + ox)).collect();
    let xt_len = g.c_in * plane * LANES;
    let y_ptr = SendPtr(y.as_mut_ptr());
    let tap_reach = reach(&tap_list);
    let (wt, tap_list, pos) = (&wt[..], &tap_list[..], &pos[..]);
    for_each_block(g, LANES, xt_len + y_img * LANES, move |images, scratch| {
        let (xt, yt) = scratch.split_at_mut(xt_len);
        let m = images.len();
        zero_border(xt, g.c_in, (hp, wp), g.padding, (g.h, g.w));
        transpose_group(g, &x[images.start * x_img..], m, xt, (hp, wp));
        for (co0, nc) in balanced(g.c_out, FWD_CO) {
            for (q0, nq) in balanced(p, FWD_Q) {
                let tile = LaneGemmTile {
                    input: xt,
                    pos: &pos[q0..q0 + nq],
                    taps: tap_list,
                    reach: tap_reach,
                    w: &wt[co0..],
                    bias: &bias[co0..co0 + nc],
                    out: &mut yt[(co0 * p + q0) * LANES..],
                    out_stride: p * LANES,
                };
                tile.run(nc, nq);
            }
        }
        // SAFETY: the block's images own the disjoint range of `y` from images.start·y_img,
        // m·y_img long, in bounds by the assertion above; `y` stays mutably borrowed throughout.
        let yb = unsafe {
            std::slice::from_raw_parts_mut(y_ptr.get().add(images.start * y_img), m * y_img)
        };
        from_lanes(yt, m, g.c_out * p, yb, y_img);
    });
}

/// Gradient with respect to the input with images as lanes; `dx` is overwritten.
pub(crate) fn backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    assert!(avx512() && fits_rows(g));
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let (kh, kw) = (g.kh, g.kw);
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    assert!(
        dx.len() == g.n * x_img && dy.len() == g.n * y_img && w.len() == g.c_in * g.c_out * kh * kw
    );
    // `dyt` with kh − 1 zero rows and kw − 1 zero columns on every side: (eh, ew).
    let (eh, ew) = (oh + 2 * (kh - 1), ow + 2 * (kw - 1));
    let dyt_len = g.c_out * eh * ew * LANES;
    let khw = kh * kw;
    let wt = input_gradient_weights(g, w);
    // For each row y of dx, the taps that reach a row of dy: (the offset in `dyt` of dy's pixel
    // (y − r, x − s) less x, the weights' index). The padded input's row is y + padding.
    let row_taps: Vec<Vec<(usize, usize)>> = (0..g.h)
        .map(|iy| {
            let y = iy + g.padding.0;
            let mut list = Vec::new();
            for co in 0..g.c_out {
                for r in (0..kh).filter(|&r| y >= r && y - r < oh) {
                    for s in 0..kw {
                        let row = co * eh + y - r + kh - 1;
                        list.push((
                            row * ew + kw - 1 - s + g.padding.1,
                            (co * khw + r * kw + s) * g.c_in,
                        ));
                    }
                }
            }
            list
        })
        .collect();
    let row_reach: Vec<(usize, usize)> = row_taps.iter().map(|taps| reach(taps)).collect();
    let xs: Vec<usize> = (0..g.w).collect();
    let zeros = vec![0.0f32; g.c_in];
    let dx_ptr = SendPtr(dx.as_mut_ptr());
    let (wt, row_taps, row_reach, xs, zeros) =
        (&wt[..], &row_taps[..], &row_reach[..], &xs[..], &zeros[..]);
    for_each_block(g, LANES, dyt_len + x_img * LANES, move |images, scratch| {
        let (dyt, dxt) = scratch.split_at_mut(dyt_len);
        let m = images.len();
        zero_border(dyt, g.c_out, (eh, ew), (kh - 1, kw - 1), (oh, ow));
        for co in 0..g.c_out {
            for oy in 0..oh {
                let src = &dy[images.start * y_img + co * p + oy * ow..];
                let at = ((co * eh + oy + kh - 1) * ew + kw - 1) * LANES;
                // SAFETY: AVX-512 (asserted above); rows r < m at r·y_img are the ow floats of
                // row oy of channel co of image start + r; the destination holds ow vectors.
                unsafe { rows_to_lanes(src.as_ptr(), y_img, m, ow, dyt[at..].as_mut_ptr(), LANES) };
            }
        }
        let plane = g.h * g.w;
        for (iy, taps) in row_taps.iter().enumerate() {
            // The channels innermost, so that the second block of channels finds in the cache
            // the rows of `dyt` the first one read.
            for (x0, nq) in balanced(g.w, FWD_Q) {
                for (ci0, nc) in balanced(g.c_in, FWD_CO) {
                    let tile = LaneGemmTile {
                        input: dyt,
                        pos: &xs[x0..x0 + nq],
                        taps,
                        reach: row_reach[iy],
                        w: &wt[ci0..],
                        bias: &zeros[..nc],
                        out: &mut dxt[(ci0 * plane + iy * g.w + x0) * LANES..],
                        out_stride: plane * LANES,
                    };
                    tile.run(nc, nq);
                }
            }
        }
        // SAFETY: as in [`forward`], for `dx`.
        let dxb = unsafe {
            std::slice::from_raw_parts_mut(dx_ptr.get().add(images.start * x_img), m * x_img)
        };
        from_lanes(dxt, m, x_img, dxb, x_img);
    });
}

/// Writes zeros around the `inner` pixels at `offset` of each of the `c` planes of `t` (the
/// transposed layout, `shape` pixels of 16 per plane): what the transposes do not write.
fn zero_border(
    t: &mut [f32],
    c: usize,
    (h, w): (usize, usize),
    (top, left): (usize, usize),
    (ih, iw): (usize, usize),
) {
    if (top, left) == (0, 0) && (ih, iw) == (h, w) {
        return;
    }
    for plane in t[..c * h * w * LANES].chunks_exact_mut(h * w * LANES) {
        for (y, row) in plane.chunks_exact_mut(w * LANES).enumerate() {
            if y < top || y >= top + ih {
                row.fill(0.0);
            } else {
                row[..left * LANES].fill(0.0);
                row[(left + iw) * LANES..].fill(0.0);
            }
        }
    }
}

/// Transposes `m ≤ 16` images back from lanes: `out[i·out_img + q] = t[q][i]` for `q < len`.
fn from_lanes(t: &[f32], m: usize, len: usize, out: &mut [f32], out_img: usize) {
    assert!((1..=LANES).contains(&m) && t.len() >= len * LANES);
    assert!(len <= out_img && out.len() >= (m - 1) * out_img + len);
    for q0 in (0..len).step_by(LANES) {
        let rows = LANES.min(len - q0);
        // SAFETY: AVX-512 (the callers' assertions); rows r < rows of `t` from pixel q0 are 16
        // floats (at least m read); lanes r < rows of out at i·out_img + q0, i < m, are within
        // `out` (asserted above).
        unsafe {
            rows_to_lanes_masked(
                t[q0 * LANES..].as_ptr(),
                LANES,
                rows,
                m,
                out[q0..].as_mut_ptr(),
                out_img,
            )
        };
    }
}

/// The largest tap offset and weight index of `taps`.
fn reach(taps: &[(usize, usize)]) -> (usize, usize) {
    taps.iter().fold((0, 0), |(a, b), &(t, k)| (a.max(t), b.max(k)))
}

/// One GEMM tile of the forward pass or dX: `nc ≤ 5` output channels by `nq ≤ 4` pixels of 16
/// images, summed over the taps.
struct LaneGemmTile<'a> {
    /// The transposed input (`xt`, or `dyt` for dX), in pixels of 16 floats.
    input: &'a [f32],
    /// Each output pixel's offset in `input`, added to each tap's.
    pos: &'a [usize],
    /// Each tap as (its offset in pixels of `input`, its weights' index).
    taps: &'a [(usize, usize)],
    /// The largest of each in `taps` ([`reach`]), found once per list rather than per tile.
    reach: (usize, usize),
    /// The weights from the tile's first channel on: tap `(_, k)` of channel `c` at `k + c`.
    w: &'a [f32],
    /// The tile's channels' bias.
    bias: &'a [f32],
    /// The output from the tile's first pixel of its first channel: pixel `j` of channel `c`
    /// at `c·out_stride + 16·j`.
    out: &'a mut [f32],
    out_stride: usize,
}

impl LaneGemmTile<'_> {
    fn run(self, nc: usize, nq: usize) {
        dispatch!(self, nc, nq; 1, 2, 3, 4, 5; 1, 2, 3, 4)
    }

    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // see `Tile::run_tile`
    unsafe fn run_tile<const C: usize, const Q: usize>(self) {
        use std::arch::x86_64::*;
        assert!(self.bias.len() == C && self.pos.len() == Q);
        assert!((C - 1) * self.out_stride + Q * LANES <= self.out.len(), "lanes tile: output");
        let last_pos = self.pos.iter().copied().max().unwrap_or(0);
        let (last_tap, last_w) = self.reach;
        debug_assert!(self.reach == reach(self.taps));
        assert!((last_tap + last_pos + 1) * LANES <= self.input.len(), "lanes tile: input");
        assert!(self.taps.is_empty() || last_w + C <= self.w.len(), "lanes tile: weights");
        let mut acc = [[_mm512_setzero_ps(); Q]; C];
        for c in 0..C {
            let b = _mm512_set1_ps(self.bias[c]);
            for j in 0..Q {
                acc[c][j] = b;
            }
        }
        let mut at = [0usize; Q];
        for j in 0..Q {
            at[j] = self.pos[j] * LANES;
        }
        let (input, w) = (self.input.as_ptr(), self.w.as_ptr());
        for &(tap, k) in self.taps {
            let base = tap * LANES;
            let mut xv = [_mm512_setzero_ps(); Q];
            for j in 0..Q {
                // SAFETY: (tap + pos[j] + 1)·16 ≤ input.len() (asserted above).
                xv[j] = unsafe { _mm512_loadu_ps(input.add(base + at[j])) };
            }
            for c in 0..C {
                // SAFETY: k + c < w.len() (asserted above).
                let wv = _mm512_set1_ps(unsafe { *w.add(k + c) });
                for j in 0..Q {
                    acc[c][j] = _mm512_fmadd_ps(wv, xv[j], acc[c][j]);
                }
            }
        }
        let out = self.out.as_mut_ptr();
        for c in 0..C {
            for j in 0..Q {
                // SAFETY: c·out_stride + 16·(j + 1) ≤ out.len() (asserted above).
                unsafe { _mm512_storeu_ps(out.add(c * self.out_stride + j * LANES), acc[c][j]) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const C: usize, const Q: usize>(self) {
        unreachable!("the direct convolution needs AVX-512")
    }
}

/// Writes `m ≤ 16` images from `x` (NCHW, from the group's first image) into `xt`, the
/// transposed padded layout `[c_in][hp][wp][16]`, lanes `m..` zero. Only the image's pixels are
/// written: the padding keeps what it held (zeros).
fn transpose_group(
    g: &Conv2dGeometry,
    x: &[f32],
    m: usize,
    xt: &mut [f32],
    (hp, wp): (usize, usize),
) {
    let x_img = g.c_in * g.h * g.w;
    assert!((1..=LANES).contains(&m) && x.len() >= (m - 1) * x_img + x_img);
    assert!(xt.len() >= g.c_in * hp * wp * LANES);
    for ci in 0..g.c_in {
        let src = &x[ci * g.h * g.w..];
        let dst = &mut xt[ci * hp * wp * LANES..];
        if g.padding == (0, 0) {
            // The channel's rows are contiguous in both.
            // SAFETY: AVX-512 (the caller's assertion); rows r < m at r·x_img are h·w floats
            // of channel ci of image r; the destination holds h·w vectors of 16.
            unsafe { rows_to_lanes(src.as_ptr(), x_img, m, g.h * g.w, dst.as_mut_ptr(), LANES) };
            continue;
        }
        for iy in 0..g.h {
            let at = ((iy + g.padding.0) * wp + g.padding.1) * LANES;
            // SAFETY: as above, for row iy: w floats of each image, w vectors in the padded row.
            unsafe {
                rows_to_lanes(
                    src[iy * g.w..].as_ptr(),
                    x_img,
                    m,
                    g.w,
                    dst[at..].as_mut_ptr(),
                    LANES,
                )
            };
        }
    }
}

/// One weight-gradient tile with images as lanes: `nc` channels by `nt` taps of 16-lane
/// accumulators, summed over every output pixel of a group.
struct LaneTile<'a> {
    /// The group's transposed padded input, `[c_in][hp][wp][16]`.
    xt: &'a [f32],
    /// The group's transposed `dy` from the tile's first channel on, `[c][oh][ow][16]`.
    dyt: &'a [f32],
    /// `(oh, ow, wp)`.
    rows: (usize, usize, usize),
    /// The offset in pixels of `xt` of each tap of the tile.
    taps: &'a [usize],
    /// Every accumulator: `[c_out][taps][16]`.
    acc: &'a mut [f32],
    /// Where the tile's first accumulator is.
    acc_base: usize,
    /// Elements between the accumulators of two channels.
    acc_co_stride: usize,
}

impl LaneTile<'_> {
    fn run(self, nc: usize, nt: usize) {
        dispatch!(self, nc, nt; 1, 2, 3, 4; 1, 2, 3, 4, 5, 6)
    }

    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // see `Tile::run_tile`
    unsafe fn run_tile<const C: usize, const T: usize>(self) {
        use std::arch::x86_64::*;
        let (oh, ow, wp) = self.rows;
        let p = oh * ow;
        assert!(self.taps.len() == T && oh > 0 && ow > 0);
        assert!(C * p * LANES <= self.dyt.len(), "lanes tile: dy");
        let last_tap = self.taps.iter().copied().max().unwrap_or(0);
        assert!((last_tap + (oh - 1) * wp + ow) * LANES <= self.xt.len(), "lanes tile: input");
        let last_acc = self.acc_base + (C - 1) * self.acc_co_stride + T * LANES;
        assert!(last_acc <= self.acc.len(), "lanes tile: accumulators");
        let a = self.acc.as_mut_ptr();
        let mut acc = [[_mm512_setzero_ps(); T]; C];
        for c in 0..C {
            for t in 0..T {
                // SAFETY: within `last_acc` (asserted above).
                let at = unsafe { a.add(self.acc_base + c * self.acc_co_stride + t * LANES) };
                acc[c][t] = unsafe { _mm512_loadu_ps(at) };
            }
        }
        let mut base = [self.xt.as_ptr(); T];
        for t in 0..T {
            // SAFETY: the tap's offset is within `xt` (asserted above).
            base[t] = unsafe { base[t].add(self.taps[t] * LANES) };
        }
        let d = self.dyt.as_ptr();
        for oy in 0..oh {
            for ox in 0..ow {
                let (q, at) = ((oy * ow + ox) * LANES, (oy * wp + ox) * LANES);
                let mut dv = [_mm512_setzero_ps(); C];
                for c in 0..C {
                    // SAFETY: c·p + oy·ow + ox < C·p pixels of `dyt` (asserted above).
                    dv[c] = unsafe { _mm512_loadu_ps(d.add(c * p * LANES + q)) };
                }
                for t in 0..T {
                    // SAFETY: tap + oy·wp + ox < last_tap + (oh − 1)·wp + ow pixels of `xt`.
                    let xv = unsafe { _mm512_loadu_ps(base[t].add(at)) };
                    for c in 0..C {
                        acc[c][t] = _mm512_fmadd_ps(dv[c], xv, acc[c][t]);
                    }
                }
            }
        }
        for c in 0..C {
            for t in 0..T {
                // SAFETY: as for the loads above.
                let at = unsafe { a.add(self.acc_base + c * self.acc_co_stride + t * LANES) };
                unsafe { _mm512_storeu_ps(at, acc[c][t]) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const C: usize, const T: usize>(self) {
        unreachable!("the direct convolution needs AVX-512")
    }
}
