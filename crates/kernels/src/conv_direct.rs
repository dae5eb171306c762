//! Direct convolution on AVX-512 for stride 1 and dilation 1: an implicit GEMM that never builds
//! the patch matrix.
//!
//! With `xp` the input image zero-padded on every side,
//!
//! ```text
//! y[co, oy, ox] = b[co] + Σ_{ci, r, s} W[co, ci, r, s] · xp[ci, oy + r, ox + s]
//! ```
//!
//! which is the forward GEMM `W · col` with `col` read straight from `xp`. The register tile is
//! `V ≤ 2` vectors of 16 output channels by `PX ≤ 7` neighbouring output pixels of one row. For
//! each tap `(ci, r, s)` the kernel loads the `V` weight vectors of the tap (packed so that they
//! are contiguous, and few enough to stay in L1), broadcasts `PX` input values, and issues
//! `V·PX` fused multiply-adds: 14 FMAs against 9 loads. The accumulators (16 channels of one
//! pixel each) are then transposed in registers and written to the NCHW output one channel row
//! of `PX` pixels at a time.
//!
//! The gradient with respect to the input of such a convolution is again one: `dx` is the
//! convolution of `dy` with the weight flipped in both spatial axes and its two channel axes
//! swapped, padded by `k − 1 − p` ([`backward_input`]).
//!
//! With output channels that are not whole vectors of 16 (LeNet's 10 and 20), a channel tile
//! would compute wasted lanes; [`forward_rows`] and [`backward_weight_rows`] vectorise over 16
//! neighbouring pixels instead (in padded or compact rows, [`compact_rows`]), and [`lanes`]
//! over 16 images of the batch where short rows of pixels would leave lanes empty too.
//!
//! [`applicable`] says when this path runs (after the Winograd path for the 3x3 convolutions
//! that one takes); `conv.rs` falls back to im2col + GEMM otherwise.

use crate::buffer::{self, Buffer};
use crate::conv::{for_each_image, Conv2dGeometry};
use crate::simd::{active_isa, detected_isa, Isa};
#[cfg(not(target_arch = "x86_64"))]
use crate::transpose::rows_to_lanes;
#[cfg(target_arch = "x86_64")]
use crate::transpose::{rows_to_lanes, transpose_8x16};

/// Output channels per vector.
const CO_VEC: usize = 16;
/// The most vectors of output channels in a tile.
const MAX_V: usize = 2;
/// The most output pixels in a tile.
const MAX_PX: usize = 7;

/// True when the direct kernels (forward, and the gradients through [`backward_input`] and
/// [`backward_weight`]) can compute `g`: AVX-512 is active, stride and dilation are 1, and the
/// output channels come in whole vectors of 16.
pub(crate) fn applicable(g: &Conv2dGeometry) -> bool {
    active_isa() == Isa::Avx512 && fits(g)
}

/// The geometry half of [`applicable`]. The kernels assert it together with the CPU's support
/// for AVX-512 (`detected_isa`, what the `unsafe` calls need), not with the active choice, which
/// a test may switch off between a caller's decision and the kernel's check.
fn fits(g: &Conv2dGeometry) -> bool {
    fits_rows(g) && g.c_out.is_multiple_of(CO_VEC) && g.c_out > 0
}

/// The geometry half of [`rows_applicable`].
fn fits_rows(g: &Conv2dGeometry) -> bool {
    g.stride == (1, 1) && g.dilation == (1, 1) && g.out_h() > 0 && g.out_w() > 0
}

/// The CPU can run the AVX-512 kernels.
fn avx512() -> bool {
    detected_isa() == Isa::Avx512
}

/// The geometry of the convolution that computes `dx` from `dy` (see the module docs), if the
/// direct kernel can run it: the padding must be at most `k − 1` and the input channels must
/// come in whole vectors of 16.
pub(crate) fn backward_input_geometry(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    g.input_gradient_geometry().filter(|t| applicable(g) && applicable(t))
}

/// Packs `w` (`[c_out, c_in, kh, kw]`, `k_len = c_in·kh·kw` taps per output channel) block by
/// block: for each block of up to 64 output channels, tap-major, the block's channels contiguous.
fn pack_weights(c_out: usize, k_len: usize, w: impl Fn(usize, usize) -> f32) -> Buffer {
    let mut packed = Buffer::new(buffer::take(c_out * k_len));
    let mut off = 0;
    for co0 in (0..c_out).step_by(MAX_V * CO_VEC) {
        let width = (c_out - co0).min(MAX_V * CO_VEC);
        for t in 0..k_len {
            for l in 0..width {
                packed[off + t * width + l] = w(co0 + l, t);
            }
        }
        off += k_len * width;
    }
    packed
}

/// Forward convolution of one geometry with stride 1 and dilation 1 and whole vectors of output
/// channels (checked by the caller with [`applicable`]); `y` is overwritten.
pub(crate) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let k_len = g.c_in * g.kh * g.kw;
    let packed = pack_weights(g.c_out, k_len, |co, t| w[co * k_len + t]);
    run(g, x, &packed, bias, y);
}

/// Gradient with respect to the input, for a geometry whose [`backward_input_geometry`] is `t`:
/// `dx` is overwritten.
pub(crate) fn backward_input(
    g: &Conv2dGeometry,
    t: &Conv2dGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) {
    let (kh, kw) = (g.kh, g.kw);
    let k_len = g.c_in * kh * kw;
    // The flipped weight W'[ci, co, r, s] = W[co, ci, kh-1-r, kw-1-s], as a function of (ci, tap').
    let packed = pack_weights(g.c_in, g.c_out * kh * kw, |ci, tap| {
        let (co, rs) = (tap / (kh * kw), tap % (kh * kw));
        let (r, s) = (rs / kw, rs % kw);
        w[co * k_len + ci * kh * kw + (kh - 1 - r) * kw + (kw - 1 - s)]
    });
    run(t, dy, &packed, None, dx);
}

/// Runs the tiles of every image, over the batch in parallel when worthwhile.
fn run(g: &Conv2dGeometry, x: &[f32], packed: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (hp, wp) = (g.h + 2 * g.padding.0, g.w + 2 * g.padding.1);
    let (oh, ow) = (g.out_h(), g.out_w());
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * oh * ow);
    assert!(avx512() && fits(g) && x.len() == g.n * x_img && y.len() == g.n * y_img);
    assert!(packed.len() == g.c_out * g.c_in * g.kh * g.kw);
    assert!(bias.is_none_or(|b| b.len() == g.c_out));
    let y_ptr = crate::par::SendPtr(y.as_mut_ptr());
    // Pixels per tile: as even a split of the row into tiles of at most MAX_PX as possible.
    let tiles = ow.div_ceil(MAX_PX);
    let px = ow.div_ceil(tiles);
    let offsets: Vec<usize> = input_tap_offsets(g, hp, wp);
    let offsets = &offsets;
    let image = move |i: usize, xp: &mut [f32]| {
        // Zero-padded copy of image i.
        pad_image(g, &x[i * x_img..(i + 1) * x_img], xp, hp, wp);
        // SAFETY: image `i` owns the disjoint range `i*y_img..(i+1)*y_img` of `y`, in bounds by
        // the assertion above; `y` stays mutably borrowed for the whole loop.
        let yi = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(i * y_img), y_img) };
        let mut off = 0;
        for co0 in (0..g.c_out).step_by(MAX_V * CO_VEC) {
            let v = ((g.c_out - co0) / CO_VEC).min(MAX_V);
            let block = &packed[off..off + g.c_in * g.kh * g.kw * v * CO_VEC];
            off += block.len();
            let b = bias.map(|b| &b[co0..co0 + v * CO_VEC]);
            for oy in 0..oh {
                let mut ox = 0;
                while ox < ow {
                    let n = px.min(ow - ox);
                    let tile = Tile {
                        g,
                        wp,
                        plane: hp * wp,
                        x: &xp[oy * wp + ox..],
                        w: block,
                        bias: b,
                        y: &mut yi[co0 * oh * ow + oy * ow + ox..],
                        p_stride: oh * ow,
                        offsets,
                    };
                    tile.run(v, n);
                    ox += n;
                }
            }
        }
    };
    for_each_image(g, g.c_in * hp * wp, image);
}

/// One register tile: `v` vectors of output channels by `n` pixels of an output row.
struct Tile<'a> {
    g: &'a Conv2dGeometry,
    /// Padded row length.
    wp: usize,
    /// Padded plane size.
    plane: usize,
    /// The padded input from the tile's first pixel on (channel 0, kernel row 0).
    x: &'a [f32],
    /// The block's packed weights: `c_in·kh·kw` taps of `v·16` channels.
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    /// The output from the tile's first channel and pixel on.
    y: &'a mut [f32],
    /// Elements between output channels.
    p_stride: usize,
    /// The offset in `x` of each tap `(ci, r, s)`: `ci·plane + r·wp + s`.
    offsets: &'a [usize],
}

macro_rules! dispatch {
    ($self:ident, $v:expr, $n:expr; $($V:literal),*; $($P:literal),*) => {
        dispatch!(@v $self, $v, $n, [$($V),*], [$($P),*])
    };
    (@v $self:ident, $v:expr, $n:expr, [$($V:literal),*], $ps:tt) => {
        match $v {
            $($V => dispatch!(@p $self, $V, $n, $ps),)*
            _ => unreachable!("tile of {} vectors", $v),
        }
    };
    (@p $self:ident, $V:literal, $n:expr, [$($P:literal),*]) => {
        match $n {
            // SAFETY: every caller of a tile asserts `avx512()` (the CPU has AVX-512) first; the
            // bounds are checked in `run_tile`.
            $($P => unsafe { $self.run_tile::<$V, $P>() },)*
            _ => unreachable!("tile of {} pixels", $n),
        }
    };
}

mod lanes;
pub(crate) use lanes::{
    backward_input as backward_input_lanes, backward_weight as backward_weight_lanes,
    forward as forward_lanes,
};

pub(crate) use lanes::applicable as lanes_applicable;

/// True when the forward pass of `g`, unforced, takes the kernels with images as lanes
/// ([`lanes`]) rather than the rows kernels ([`lanes::preferred`]).
pub(crate) fn lanes_forward_preferred(g: &Conv2dGeometry) -> bool {
    lanes::preferred(g, rows_lanes(g), (4, 5))
}

/// [`lanes_forward_preferred`] for the input gradient, which takes rows (and so lanes) with at
/// least [`FWD_CO`] input channels only.
pub(crate) fn lanes_input_preferred(g: &Conv2dGeometry) -> bool {
    lanes_forward_preferred(g) && g.c_in >= FWD_CO
}

/// [`lanes_forward_preferred`] for the weight gradient.
pub(crate) fn lanes_weight_preferred(g: &Conv2dGeometry) -> bool {
    lanes::preferred(g, rows_lanes(g), (1, 1))
}

impl Tile<'_> {
    fn run(self, v: usize, n: usize) {
        dispatch!(self, v, n; 1, 2; 1, 2, 3, 4, 5, 6, 7)
    }

    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    // Index loops on purpose: with iterators over the accumulator arrays the compiler kept them
    // in memory instead of registers.
    #[allow(clippy::needless_range_loop)]
    unsafe fn run_tile<const V: usize, const PX: usize>(self) {
        use std::arch::x86_64::*;
        let g = self.g;
        let taps = g.c_in * g.kh * g.kw;
        assert!(self.offsets.len() == taps, "direct conv: tap table");
        // Bounds: the last input read is x[(c_in-1)·plane + (kh-1)·wp + (kw-1) + PX-1], the last
        // weight w[taps·V·16 - 1], the last output y[(V·16-1)·p_stride + PX-1].
        let x_last = (g.c_in - 1) * self.plane + (g.kh - 1) * self.wp + (g.kw - 1) + PX - 1;
        assert!(x_last < self.x.len(), "direct conv: input tile out of bounds");
        assert!(self.w.len() == taps * V * CO_VEC, "direct conv: weight block length");
        assert!((V * CO_VEC - 1) * self.p_stride + PX - 1 < self.y.len(), "direct conv: output");
        let mut acc = [[_mm512_setzero_ps(); PX]; V];
        if let Some(b) = self.bias {
            for v in 0..V {
                // SAFETY: `b` has V·16 elements (sliced by `run`).
                let bv = unsafe { _mm512_loadu_ps(b.as_ptr().add(v * CO_VEC)) };
                for j in 0..PX {
                    acc[v][j] = bv;
                }
            }
        }
        // One flat loop over the taps, the input offset of each from a table: with nested loops
        // over (ci, r, s) the compiler kept a copy of the accumulators in memory and stored it
        // on every tap, which halved the speed.
        let (xp, wp) = (self.x.as_ptr(), self.w.as_ptr());
        for (t, &off) in self.offsets.iter().enumerate() {
            let mut wv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                // SAFETY: tap-major blocks of V·16 weights, `taps` of them (asserted above).
                wv[v] = unsafe { _mm512_loadu_ps(wp.add((t * V + v) * CO_VEC)) };
            }
            for j in 0..PX {
                // SAFETY: off + j ≤ x_last < x.len() (asserted above).
                let b = _mm512_set1_ps(unsafe { *xp.add(off + j) });
                for v in 0..V {
                    acc[v][j] = _mm512_fmadd_ps(wv[v], b, acc[v][j]);
                }
            }
        }
        // Channel l of vector v goes to y[(v·16 + l)·p_stride + j], j < PX: the 16 × PX block of
        // each vector is transposed in registers (PX ≤ 7 pixels padded to 8), then written one
        // channel row at a time with masked stores. (A scatter per accumulator cost 20% of the
        // kernel's time at 32 → 64 channels and half of it at 3 → 32.)
        const { assert!(PX <= 7) };
        let y = self.y.as_mut_ptr();
        let lo: __mmask16 = (1u16 << PX) - 1;
        let hi: __mmask16 = lo << 8;
        for v in 0..V {
            let mut r = [_mm512_setzero_ps(); 8];
            r[..PX].copy_from_slice(&acc[v]);
            // Row m: channel m's pixels in the low half, channel m + 8's in the high half.
            for (m, row) in transpose_8x16(r).into_iter().enumerate() {
                let c = v * CO_VEC + m;
                // SAFETY: channel c's pixels 0..PX and channel c + 8's are inside `y`: the
                // largest offset written, (V·16 − 1)·p_stride + PX − 1, is (asserted above).
                // The high half is stored from 8 elements before channel c + 8's row, which is
                // still inside `y` ((c + 8)·p_stride ≥ 8); only the lanes of the mask are
                // written.
                unsafe {
                    _mm512_mask_storeu_ps(y.add(c * self.p_stride), lo, row);
                    _mm512_mask_storeu_ps(y.add((c + 8) * self.p_stride - 8), hi, row);
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const V: usize, const PX: usize>(self) {
        unreachable!("the direct convolution needs AVX-512")
    }
}

/// Gradient with respect to the weight (stride 1, dilation 1; checked by the caller with
/// [`applicable`]); `dw` is overwritten. The bias gradient is the caller's.
///
/// `dW[co, ci, r, s] = Σ_n Σ_(oy, ox) dy[n, co, oy, ox] · xp[n, ci, oy + r, ox + s]`: a GEMM whose
/// inner dimension is the pixels. The register tile is `V` vectors of 16 output channels by `TT`
/// taps; for each pixel the kernel loads the `V` vectors of `dy` at that pixel (from a
/// channels-last copy of `dy`), broadcasts the `TT` input values under it, and issues `V·TT`
/// fused multiply-adds. Pixels are taken 64 at a time, so that the `dy` rows stay in the L1
/// cache while every tap tile passes over them.
///
/// Images are split into `chunks` contiguous ranges, one partial sum each, added in range order:
/// the result depends on the number of chunks (the caller passes the thread count), never on
/// scheduling.
pub(crate) fn backward_weight(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    chunks: usize,
) {
    assert!(avx512() && fits(g));
    let (hp, wp) = (g.h + 2 * g.padding.0, g.w + 2 * g.padding.1);
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let taps = g.c_in * g.kh * g.kw;
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    assert!(x.len() == g.n * x_img && dy.len() == g.n * y_img && dw.len() == g.c_out * taps);
    let tap_offsets: Vec<usize> = input_tap_offsets(g, hp, wp);
    let pix_offsets: Vec<usize> =
        (0..oh).flat_map(|oy| (0..ow).map(move |ox| oy * wp + ox)).collect();
    assert!(db.as_ref().is_none_or(|b| b.len() == g.c_out));
    let acc_len = g.c_out * taps;
    // One chunk of images into a partial dW, in the packed (tap-major per channel block) layout,
    // followed by the partial bias gradient.
    let partial = |images: std::ops::Range<usize>| -> Buffer {
        let mut acc = Buffer::new(buffer::take_zeroed(acc_len + g.c_out));
        let mut xp = Buffer::new(buffer::take(g.c_in * hp * wp));
        let mut dyt = Buffer::new(buffer::take(p * g.c_out));
        for i in images {
            pad_image(g, &x[i * x_img..(i + 1) * x_img], &mut xp, hp, wp);
            // dyᵀ: channels last, so that 16 channels of one pixel are one vector.
            channels_last(&dy[i * y_img..(i + 1) * y_img], g.c_out, p, &mut dyt);
            add_pixels(&dyt[..p * g.c_out], &mut acc[acc_len..]);
            let mut off = 0;
            for co0 in (0..g.c_out).step_by(MAX_V_DW * CO_VEC) {
                let v = ((g.c_out - co0) / CO_VEC).min(MAX_V_DW);
                let block = &mut acc[off..off + taps * v * CO_VEC];
                off += taps * v * CO_VEC;
                for q0 in (0..p).step_by(PIXEL_CHUNK) {
                    let pixels = &pix_offsets[q0..(q0 + PIXEL_CHUNK).min(p)];
                    let mut t0 = 0;
                    while t0 < taps {
                        let tt = MAX_TT.min(taps - t0);
                        let tile = WeightTile {
                            xp: &xp,
                            dyt: &dyt[q0 * g.c_out + co0..],
                            c_out: g.c_out,
                            pixels,
                            taps: &tap_offsets[t0..t0 + tt],
                            acc: &mut block[t0 * v * CO_VEC..(t0 + tt) * v * CO_VEC],
                        };
                        tile.run(v, tt);
                        t0 += tt;
                    }
                }
            }
        }
        acc
    };
    let packed = sum_over_chunks(g.n, chunks, partial);
    let (packed, db_sum) = packed.split_at(acc_len);
    if let Some(db) = db {
        db.copy_from_slice(db_sum);
    }
    // Unpack: block by block, tap-major → dw[co, tap].
    let mut off = 0;
    for co0 in (0..g.c_out).step_by(MAX_V_DW * CO_VEC) {
        let width = (g.c_out - co0).min(MAX_V_DW * CO_VEC);
        for t in 0..taps {
            for l in 0..width {
                dw[(co0 + l) * taps + t] = packed[off + t * width + l];
            }
        }
        off += taps * width;
    }
}

/// `dyt[q·c_out + c] = dy[c·p + q]` for `c_out` (a multiple of 16) channels of `p` pixels, 16
/// channels at a time through [`rows_to_lanes`].
pub(crate) fn channels_last(dy: &[f32], c_out: usize, p: usize, dyt: &mut [f32]) {
    assert!(avx512() && c_out.is_multiple_of(CO_VEC));
    assert!(dy.len() >= c_out * p && dyt.len() >= c_out * p);
    for c0 in (0..c_out).step_by(CO_VEC) {
        // SAFETY: AVX-512 is available (asserted); rows c0..c0 + 16 of `dy` (stride p) hold p
        // values each, and `dyt` has room for p pixels of c_out channels from channel c0 on.
        unsafe {
            rows_to_lanes(dy.as_ptr().add(c0 * p), p, CO_VEC, p, dyt.as_mut_ptr().add(c0), c_out)
        };
    }
}

/// `sums[c] += Σ_q dyt[q·c_out + c]` over the pixels of a channels-last image (`c_out =
/// sums.len()` channels): the bias gradient of one image.
pub(crate) fn add_pixels(dyt: &[f32], sums: &mut [f32]) {
    for pixel in dyt.chunks_exact(sums.len()) {
        for (s, v) in sums.iter_mut().zip(pixel) {
            *s += v;
        }
    }
}

/// The most vectors of output channels in a weight-gradient tile.
const MAX_V_DW: usize = 4;
/// `partial(images)` over `chunks` contiguous ranges of `0..n` (in parallel when there is more
/// than one), summed in range order: the result depends on the number of chunks, never on the
/// scheduling.
pub(crate) fn sum_over_chunks(
    n: usize,
    chunks: usize,
    partial: impl Fn(std::ops::Range<usize>) -> Buffer + Sync,
) -> Buffer {
    if chunks <= 1 {
        return partial(0..n);
    }
    let per = n.div_ceil(chunks);
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    // Through `par::fork`, so that the caller computes the first chunk itself instead of
    // sleeping until the pool's threads are done.
    let parts: Vec<std::sync::Mutex<Option<Buffer>>> =
        starts.iter().map(|_| std::sync::Mutex::new(None)).collect();
    crate::par::fork(starts.len(), |c| {
        let part = partial(starts[c]..(starts[c] + per).min(n));
        *parts[c].lock().expect("a chunk panicked") = Some(part);
    });
    let mut parts = parts
        .into_iter()
        .map(|p| p.into_inner().expect("a chunk panicked").expect("every chunk ran"));
    let mut sum = parts.next().expect("at least one chunk");
    for part in parts {
        for (a, b) in sum.iter_mut().zip(part.iter()) {
            *a += b;
        }
    }
    sum
}

/// Pixels of `dy` per pass over the tap tiles.
const PIXEL_CHUNK: usize = 64;
/// The most taps in a weight-gradient tile.
const MAX_TT: usize = 6;

/// Writes image `x` (`[c_in, h, w]`) zero-padded into `xp` (`[c_in, hp, wp]`).
fn pad_image(g: &Conv2dGeometry, x: &[f32], xp: &mut [f32], hp: usize, wp: usize) {
    xp.fill(0.0);
    for ci in 0..g.c_in {
        let dst = (ci * hp + g.padding.0) * wp + g.padding.1;
        copy_rows(&x[ci * g.h * g.w..(ci + 1) * g.h * g.w], g.w, g.w, &mut xp[dst..], wp, g.h);
    }
}

/// Copies `rows` rows of `len` floats, one every `src_stride` floats in `src` and one every
/// `dst_stride` floats in `dst`. Image rows are short (28 floats at 28x28), and a call to
/// `memcpy` per row cost more than the copy: this moves each row as whole and masked 16-float
/// vectors.
fn copy_rows(
    src: &[f32],
    src_stride: usize,
    len: usize,
    dst: &mut [f32],
    dst_stride: usize,
    rows: usize,
) {
    assert!(avx512() && len <= src_stride && len <= dst_stride);
    assert!(rows == 0 || src.len() >= (rows - 1) * src_stride + len);
    assert!(rows == 0 || dst.len() >= (rows - 1) * dst_stride + len);
    // SAFETY: AVX-512 is available, and the bounds are asserted above.
    unsafe { copy_rows_avx512(src.as_ptr(), src_stride, len, dst.as_mut_ptr(), dst_stride, rows) }
}

/// # Safety
/// AVX-512F must be available; `src` readable and `dst` writable for `len` floats at each
/// `r·src_stride` and `r·dst_stride`, `r < rows`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_rows_avx512(
    src: *const f32,
    src_stride: usize,
    len: usize,
    dst: *mut f32,
    dst_stride: usize,
    rows: usize,
) {
    use std::arch::x86_64::*;
    for r in 0..rows {
        for c0 in (0..len).step_by(CO_VEC) {
            let mask: __mmask16 = (((1u32 << (len - c0).min(CO_VEC)) - 1) & 0xffff) as u16;
            // SAFETY: the masked lanes are elements c0.. < len of row r of both (the caller's
            // bounds).
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, src.add(r * src_stride + c0));
                _mm512_mask_storeu_ps(dst.add(r * dst_stride + c0), mask, v);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_rows_avx512(_: *const f32, _: usize, _: usize, _: *mut f32, _: usize, _: usize) {
    unreachable!("the direct convolution needs AVX-512")
}

/// One weight-gradient register tile: `v` vectors of output channels by `tt` taps, summed over
/// a run of pixels and added into `acc`.
struct WeightTile<'a> {
    /// The padded image.
    xp: &'a [f32],
    /// `dy` channels last, from the run's first pixel and the block's first channel on.
    dyt: &'a [f32],
    /// Elements between pixels in `dyt`.
    c_out: usize,
    /// The offset in `xp` of each pixel of the run.
    pixels: &'a [usize],
    /// The offset in `xp` of each tap of the tile.
    taps: &'a [usize],
    /// The tile's accumulators: `tt` taps of `v·16` channels.
    acc: &'a mut [f32],
}

impl WeightTile<'_> {
    fn run(self, v: usize, tt: usize) {
        dispatch!(self, v, tt; 1, 2, 3, 4; 1, 2, 3, 4, 5, 6)
    }

    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // see `Tile::run_tile`
    unsafe fn run_tile<const V: usize, const TT: usize>(self) {
        use std::arch::x86_64::*;
        let n = self.pixels.len();
        assert!(self.taps.len() == TT && self.acc.len() == TT * V * CO_VEC);
        assert!(n == 0 || (n - 1) * self.c_out + V * CO_VEC <= self.dyt.len(), "dW tile: dy");
        let last_pixel = self.pixels.iter().copied().max().unwrap_or(0);
        let last_tap = self.taps.iter().copied().max().unwrap_or(0);
        assert!(last_pixel + last_tap < self.xp.len(), "dW tile: input");
        let mut acc = [[_mm512_setzero_ps(); TT]; V];
        let a = self.acc.as_mut_ptr();
        for t in 0..TT {
            for v in 0..V {
                // SAFETY: TT·V·16 accumulators (asserted above).
                acc[v][t] = unsafe { _mm512_loadu_ps(a.add((t * V + v) * CO_VEC)) };
            }
        }
        let mut base = [self.xp.as_ptr(); TT];
        for t in 0..TT {
            // SAFETY: the tap offset is inside `xp` (asserted above).
            base[t] = unsafe { base[t].add(self.taps[t]) };
        }
        let d = self.dyt.as_ptr();
        for (q, &pix) in self.pixels.iter().enumerate() {
            let mut dv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                // SAFETY: q·c_out + V·16 ≤ dyt.len() (asserted above).
                dv[v] = unsafe { _mm512_loadu_ps(d.add(q * self.c_out + v * CO_VEC)) };
            }
            for t in 0..TT {
                // SAFETY: pix + tap offset < xp.len() (asserted above).
                let b = _mm512_set1_ps(unsafe { *base[t].add(pix) });
                for v in 0..V {
                    acc[v][t] = _mm512_fmadd_ps(dv[v], b, acc[v][t]);
                }
            }
        }
        for t in 0..TT {
            for v in 0..V {
                // SAFETY: as for the loads above.
                unsafe { _mm512_storeu_ps(a.add((t * V + v) * CO_VEC), acc[v][t]) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const V: usize, const TT: usize>(self) {
        unreachable!("the direct convolution needs AVX-512")
    }
}

/// True when [`backward_weight_rows`] can compute the weight gradient of `g`: AVX-512 is
/// active, and stride and dilation are 1 (any number of channels).
pub(crate) fn rows_applicable(g: &Conv2dGeometry) -> bool {
    active_isa() == Isa::Avx512 && fits_rows(g)
}

/// Splits `0..total` into as few runs of at most `most` as can hold it, as even as can be (the
/// longer runs first), as `(start, len)`: 13 by 4 as 4, 3, 3, 3.
fn balanced(total: usize, most: usize) -> impl Iterator<Item = (usize, usize)> {
    let runs = total.div_ceil(most.max(1));
    let base = total.checked_div(runs).unwrap_or(0);
    let extra = total - base * runs;
    (0..runs).map(move |k| (k * base + k.min(extra), base + usize::from(k < extra)))
}

/// Output channels per weight-gradient row tile.
const ROW_CO: usize = 4;
/// Taps per weight-gradient row tile.
const ROW_TT: usize = 6;
/// Pixels a weight-gradient row tile should meet per pass (over a block of images).
const ROW_BLOCK_PIXELS: usize = 1024;
/// The most images in such a block.
const MAX_ROW_BLOCK: usize = 8;

/// Weight gradient for layers with few taps (the 3-channel first layer: 27), where
/// [`backward_weight`]'s channels-last copy of `dy` costs more than it saves. `dw` is
/// overwritten.
///
/// Each `dW[co, tap]` is a dot product over the pixels of `dy[co]` with the input under the tap.
/// Laid out with the padded row length `wp`, both are plain contiguous runs: `dy` is copied into
/// rows of `wp` (zeros past the `ow` real columns), and the input under tap `(ci, r, s)` for pixel
/// `q = oy·wp + ox` is `xp[ci·plane + r·wp + s + q]`. The tile is 4 channels by 6 taps of 16-lane
/// accumulators: per 16 pixels, 10 loads and 24 FMAs. The accumulators stay vectors across all
/// images of a chunk and are summed across lanes (in a fixed tree) once at the end. A tile
/// loads and stores its accumulators once per block of up to 8 images, at least 1024 pixels
/// when the images are small (one image of LeNet's 10 → 20 layer is 9 vectors of 16 pixels:
/// per image, the 24 loads and 24 stores of the accumulators cost as much as a fifth of the
/// FMAs, and the accumulators of all tiles, 320 KB there, streamed through the cache). The padded
/// layout computes `wp/ow` times the useful products (30/28 at 28x28), with zeros.
///
/// Chunks of images are summed in order, as in [`backward_weight`].
pub(crate) fn backward_weight_rows(
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
    let tap_offsets: Vec<usize> = input_tap_offsets(g, hp, wp);
    assert!(db.as_ref().is_none_or(|b| b.len() == g.c_out));
    let acc_len = g.c_out * taps * CO_VEC;
    // Compact rows read `dy` where it is, and without padding the input too; padded rows read
    // copies: `dy` in rows of `wp` (zeros past the `ow` real columns) and the padded image with
    // a zero tail, so that every tap may read whole vectors.
    let compact = compact_rows(g);
    let vecs = if compact { compact_vecs(g, wp) } else { padded_vecs(oh * wp) };
    let in_place = compact && g.padding == (0, 0);
    let xp_len = tap_offsets.iter().max().copied().unwrap_or(0) + vec_extent(&vecs).0;
    let xp_stride = if in_place { x_img } else { xp_len.max(g.c_in * plane) };
    // Lanes per channel of an image.
    let q_len = vecs.len() * CO_VEC;
    let (dy_stride, dy_c_stride) = if compact { (y_img, p) } else { (g.c_out * q_len, q_len) };
    // Images per pass over the tiles: each tile loads and stores its accumulators once per
    // pass, so a pass should meet at least ROW_BLOCK_PIXELS pixels (LeNet's 10 → 20 layer has
    // only 144 per image, its 1 → 10 layer 896).
    let block = (ROW_BLOCK_PIXELS / q_len).clamp(1, MAX_ROW_BLOCK);
    // One chunk of images into 16-lane partial sums of dW, followed by the partial bias gradient.
    let partial = |images: std::ops::Range<usize>| -> Buffer {
        let mut acc = Buffer::new(buffer::take_zeroed(acc_len + g.c_out));
        let mut xp = Buffer::new(buffer::take(if in_place { 0 } else { block * xp_stride }));
        let mut dyp = Buffer::new(buffer::take(if compact { 0 } else { block * dy_stride }));
        for first in images.clone().step_by(block) {
            let nb = block.min(images.end - first);
            for b in 0..nb {
                let i = first + b;
                if !in_place {
                    // Zeros around the image and in the tail too.
                    let xb = &mut xp[b * xp_stride..(b + 1) * xp_stride];
                    pad_image(g, &x[i * x_img..(i + 1) * x_img], xb, hp, wp);
                }
                let dyi = &dy[i * y_img..(i + 1) * y_img];
                for co in 0..g.c_out {
                    let src = &dyi[co * p..(co + 1) * p];
                    if !compact {
                        let dyb = &mut dyp[b * dy_stride + co * q_len..][..q_len];
                        dyb.fill(0.0);
                        copy_rows(src, ow, ow, dyb, wp, oh);
                    }
                    // The bias gradient, while the channel's rows are in cache.
                    acc[acc_len + co] += crate::simd::sum_lanes(src);
                }
            }
            let xs: &[f32] = if in_place { &x[first * x_img..(first + nb) * x_img] } else { &xp };
            let ds: &[f32] = if compact { &dy[first * y_img..(first + nb) * y_img] } else { &dyp };
            for (co0, nc) in balanced(g.c_out, ROW_CO) {
                for (t0, nt) in balanced(taps, ROW_TT) {
                    let tile = RowTile {
                        xp: xs,
                        xp_stride,
                        dyp: &ds[co0 * dy_c_stride..],
                        dy_stride,
                        dy_c_stride,
                        images: nb,
                        vecs: &vecs,
                        taps: &tap_offsets[t0..t0 + nt],
                        acc: &mut acc,
                        acc_base: (co0 * taps + t0) * CO_VEC,
                        acc_co_stride: taps * CO_VEC,
                    };
                    tile.run(nc, nt);
                }
            }
        }
        acc
    };
    let lanes = sum_over_chunks(g.n, chunks, partial);
    let (lanes, db_sum) = lanes.split_at(acc_len);
    for (d, l) in dw.iter_mut().zip(lanes.chunks_exact(CO_VEC)) {
        *d = crate::simd::reduce_lanes(l.try_into().expect("16 lanes"));
    }
    if let Some(db) = db {
        db.copy_from_slice(db_sum);
    }
}

/// Up to 16 neighbouring pixels that one vector of a rows kernel holds: where the vector reads
/// its input (from a tap's offset), where its output (or `dy`) sits in a channel, and how many
/// of its lanes, from the first, are pixels. The other lanes are neither read nor written.
#[derive(Clone, Copy, Debug)]
struct PixelVec {
    x: usize,
    y: usize,
    lanes: usize,
}

impl PixelVec {
    /// The mask of the vector's pixel lanes.
    fn mask(&self) -> u16 {
        (((1u32 << self.lanes) - 1) & 0xffff) as u16
    }
}

/// How a rows kernel lays its pixels out in vectors of 16.
///
/// - **Padded rows**: pixel `q = oy·wp + ox` of rows as long as the padded input's (`wp`), all
///   of them computed, in whole vectors over scratch copies of `y` or `dy` in that layout; the
///   columns `ow..wp` of each row are computed and dropped (or, for `dy`, zeros).
/// - **Compact rows**: each output row on its own, as `⌈ow/16⌉` vectors, the last one masked,
///   reading the input at `oy·wp + ox` and writing `y` (or reading `dy`) where it is, at
///   `oy·ow + ox`: no copies, and without padding no copy of the input either.
///
/// Compact rows compute `oh·16·⌈ow/16⌉` lanes, padded rows `oh·wp` rounded up to whole
/// vectors; the layout with fewer is taken (compact on a tie): compact for LeNet's 9x9 layer
/// (28 of 32 lanes against 28 of 36), padded for its 5x5 one (10 of 16 against 10 of 14).
/// `TAPESTRY_CONV_ROWS_COMPACT=0` keeps every layer in padded rows.
fn compact_rows(g: &Conv2dGeometry) -> bool {
    let (compact, padded) = layout_lanes(g);
    crate::tune::tunables().conv_rows_compact != 0 && compact <= padded
}

/// The lanes per channel of an image that compact and padded rows compute for `g`.
fn layout_lanes(g: &Conv2dGeometry) -> (usize, usize) {
    let wp = g.w + 2 * g.padding.1;
    let compact = g.out_h() * g.out_w().div_ceil(CO_VEC) * CO_VEC;
    (compact, (g.out_h() * wp).div_ceil(CO_VEC) * CO_VEC)
}

/// The lanes per channel of an image that the rows kernels compute for `g`, in the layout they
/// take ([`compact_rows`]).
fn rows_lanes(g: &Conv2dGeometry) -> usize {
    let (compact, padded) = layout_lanes(g);
    if compact_rows(g) {
        compact
    } else {
        padded
    }
}

/// The offset of each tap `(ci, r, s)` of `g`, in that order, in an input of padded planes
/// `hp × wp`: `ci·hp·wp + r·wp + s`.
fn input_tap_offsets(g: &Conv2dGeometry, hp: usize, wp: usize) -> Vec<usize> {
    (0..g.c_in)
        .flat_map(|ci| (0..g.kh).flat_map(move |r| (0..g.kw).map(move |s| (ci, r, s))))
        .map(|(ci, r, s)| ci * hp * wp + r * wp + s)
        .collect()
}

/// `w` (`[c_out][taps]`) tap-major: tap `t` of channel `co` at `t·c_out + co`.
fn weights_tap_major(w: &[f32], c_out: usize) -> Buffer {
    let taps = w.len() / c_out;
    let mut wt = Buffer::new(buffer::take(w.len()));
    for co in 0..c_out {
        for t in 0..taps {
            wt[t * c_out + co] = w[co * taps + t];
        }
    }
    wt
}

/// The weights of the input gradient tap-major: tap `(co, r, s)` of input channel `ci` is
/// `W[co, ci, r, s]`, at `(co·kh·kw + r·kw + s)·c_in + ci`.
fn input_gradient_weights(g: &Conv2dGeometry, w: &[f32]) -> Buffer {
    let khw = g.kh * g.kw;
    let mut wt = Buffer::new(buffer::take(w.len()));
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for rs in 0..khw {
                wt[(co * khw + rs) * g.c_in + ci] = w[(co * g.c_in + ci) * khw + rs];
            }
        }
    }
    wt
}

/// The vectors of `pixels` pixels in padded rows: whole vectors at `16k` in both.
fn padded_vecs(pixels: usize) -> Vec<PixelVec> {
    (0..pixels.div_ceil(CO_VEC))
        .map(|k| PixelVec { x: k * CO_VEC, y: k * CO_VEC, lanes: CO_VEC })
        .collect()
}

/// The vectors of `g`'s output in compact rows over an input `wp` wide.
fn compact_vecs(g: &Conv2dGeometry, wp: usize) -> Vec<PixelVec> {
    let ow = g.out_w();
    (0..g.out_h())
        .flat_map(|oy| {
            (0..ow).step_by(CO_VEC).map(move |ox| PixelVec {
                x: oy * wp + ox,
                y: oy * ow + ox,
                lanes: (ow - ox).min(CO_VEC),
            })
        })
        .collect()
}

/// The end of the farthest read or write of `vecs` from their base: `(x, y)`.
fn vec_extent(vecs: &[PixelVec]) -> (usize, usize) {
    vecs.iter().fold((0, 0), |(x, y), v| (x.max(v.x + v.lanes), y.max(v.y + v.lanes)))
}

/// Output channels per forward row tile.
const FWD_CO: usize = 5;
/// Vectors of 16 pixels per forward row tile.
const FWD_Q: usize = 4;

/// Forward convolution on rows, for layers with few output channels (LeNet's 10 and 20), where
/// [`forward`]'s tiles of 16 channels would compute many padded lanes. `y` is overwritten.
///
/// The same padded-row layout as [`backward_weight_rows`]: pixel `q = oy·wp + ox` of the output
/// reads the input under tap `(ci, r, s)` at `xp[ci·plane + r·wp + s + q]`, so that each tap
/// sees a contiguous run of the padded image, and
///
/// ```text
/// y[co, q] = b[co] + Σ_tap W[co, tap] · xp[tap + q]
/// ```
///
/// is a GEMM of the weights (`c_out × taps`) with a matrix whose rows are shifted windows of
/// `xp`. The register tile is up to 5 channels by 4 vectors of 16 pixels: per tap, 4 loads of
/// the input and 5 broadcast weights for 20 fused multiply-adds, every lane a real channel. The
/// columns `ow..wp` of each row are computed and dropped when the tile's rows are copied out, so
/// the layout costs `wp/ow` times the useful products (36/28 for LeNet's 9x9 layer, 14/10 for
/// its 5x5 one), against 16/10 and 32/20 for the channel vectors.
pub(crate) fn forward_rows(
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
    let tap_offsets: Vec<usize> = input_tap_offsets(g, hp, wp);
    // The weights tap-major, so that a tile's broadcasts of one tap are neighbours.
    let wt = weights_tap_major(w, g.c_out);
    let zeros = vec![0.0f32; g.c_out];
    let bias = bias.unwrap_or(&zeros);
    let y_ptr = crate::par::SendPtr(y.as_mut_ptr());
    if compact_rows(g) {
        // Straight into `y`, and without padding straight from `x`.
        let vecs = compact_vecs(g, wp);
        let rows = Rows::new(&tap_offsets, &wt, bias, &vecs, p);
        assert!(rows.input_len() <= g.c_in * plane);
        let padded = g.padding != (0, 0);
        let scratch = if padded { g.c_in * plane } else { 0 };
        for_each_image(g, scratch, move |i, xp| {
            let xi = &x[i * x_img..(i + 1) * x_img];
            let input: &[f32] = if padded {
                pad_image(g, xi, xp, hp, wp);
                xp
            } else {
                xi
            };
            // SAFETY: image `i` owns the disjoint range `i*y_img..(i+1)*y_img` of `y`, in
            // bounds by the assertion above; `y` stays mutably borrowed for the whole loop.
            let yi = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(i * y_img), y_img) };
            rows.run(input, yi);
        });
        return;
    }
    let vecs = padded_vecs(oh * wp);
    let q_len = vecs.len() * CO_VEC;
    let rows = Rows::new(&tap_offsets, &wt, bias, &vecs, q_len);
    let xp_len = rows.input_len().max(g.c_in * plane);
    for_each_image(g, xp_len + rows.output_len(), move |i, scratch| {
        let (xp, yp) = scratch.split_at_mut(xp_len);
        pad_image(g, &x[i * x_img..(i + 1) * x_img], &mut xp[..g.c_in * plane], hp, wp);
        xp[g.c_in * plane..].fill(0.0);
        rows.run(xp, yp);
        // SAFETY: as above.
        let yi = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(i * y_img), y_img) };
        for co in 0..g.c_out {
            copy_rows(&yp[co * q_len..], wp, ow, &mut yi[co * p..(co + 1) * p], ow, oh);
        }
    });
}

/// True when [`backward_input_rows`] computes the input gradient of `g`: the rows kernels apply
/// and there are at least [`FWD_CO`] input channels, so that the tile's broadcasts of the
/// weight are not outnumbered by its loads of `dy`.
pub(crate) fn rows_input_applicable(g: &Conv2dGeometry) -> bool {
    rows_applicable(g) && g.c_in >= FWD_CO
}

/// Gradient with respect to the input on rows, for layers with few input channels (LeNet's 10),
/// where [`backward_input`]'s tiles of 16 channels would compute many padded lanes. `dx` is
/// overwritten.
///
/// The forward pass reads; this pass scatters:
///
/// ```text
/// dxp[ci, q] = Σ_(co, r, s) W[co, ci, r, s] · dyp[co, q − r·wp − s]
/// ```
///
/// over the pixels `q = iy·wp + ix` of the padded input (`hp × wp`). Each channel of `dy` is
/// laid out in rows of the padded input's length `wp` (its `ow` real columns first) behind a
/// run of zeros at least `(kh − 1)·wp + kw − 1` long: a tap that reaches above the image reads
/// those zeros, and one that reaches left or right of `dy` reads the zero columns `ow..wp` of a
/// neighbouring row. Written as reads at the offsets `co·S + lead − r·wp − s`, it is the
/// forward pass's GEMM with the same register tile, and no weight flip. The padded layout
/// costs `hp·wp / (oh·ow)` times the useful products (196/100 for LeNet's 10 → 20 layer); the
/// flipped-weight forward convolution over `dy` padded by `k − 1` would cost 252/100.
pub(crate) fn backward_input_rows(g: &Conv2dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    assert!(avx512() && fits_rows(g));
    let (hp, wp) = (g.h + 2 * g.padding.0, g.w + 2 * g.padding.1);
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    let taps = g.c_out * g.kh * g.kw;
    assert!(dx.len() == g.n * x_img && dy.len() == g.n * y_img && w.len() == g.c_in * taps);
    // Zeros before each channel: a tap reads from `(kh−1)·wp + kw − 1` before a channel's
    // first pixel, and for the pixels of the padded image (`hp·wp = oh·wp + (kh−1)·wp`) up to
    // `(kh−1)·wp` past its last, in the next channel's lead (or the tail). The pixels from
    // `hp·wp` to `q_len` only round the rows up to whole vectors: what they read is dropped.
    let lead = (g.kh - 1) * wp + g.kw - 1;
    let stride = lead + oh * wp;
    let tap_offsets: Vec<usize> = (0..g.c_out)
        .flat_map(|co| (0..g.kh).flat_map(move |r| (0..g.kw).map(move |s| (co, r, s))))
        .map(|(co, r, s)| co * stride + lead - r * wp - s)
        .collect();
    let wt = input_gradient_weights(g, w);
    let zeros = vec![0.0f32; g.c_in];
    let vecs = padded_vecs(hp * wp);
    let q_len = vecs.len() * CO_VEC;
    let rows = Rows::new(&tap_offsets, &wt, &zeros, &vecs, q_len);
    let dyp_len = rows.input_len().max(g.c_out * stride + lead);
    let dx_ptr = crate::par::SendPtr(dx.as_mut_ptr());
    for_each_image(g, dyp_len + rows.output_len(), move |i, scratch| {
        let (dyp, xp) = scratch.split_at_mut(dyp_len);
        dyp.fill(0.0);
        let dyi = &dy[i * y_img..(i + 1) * y_img];
        for co in 0..g.c_out {
            let dst = &mut dyp[co * stride + lead..];
            copy_rows(&dyi[co * p..(co + 1) * p], ow, ow, dst, wp, oh);
        }
        rows.run(dyp, xp);
        // SAFETY: image `i` owns the disjoint range `i*x_img..(i+1)*x_img` of `dx`, in bounds by
        // the assertion above; `dx` stays mutably borrowed for the whole loop.
        let dxi = unsafe { std::slice::from_raw_parts_mut(dx_ptr.get().add(i * x_img), x_img) };
        let plane = g.h * g.w;
        for ci in 0..g.c_in {
            let src = &xp[ci * q_len + g.padding.0 * wp + g.padding.1..];
            copy_rows(src, wp, g.w, &mut dxi[ci * plane..(ci + 1) * plane], g.w, g.h);
        }
    });
}

/// The GEMM that [`forward_rows`] and [`backward_input_rows`] share: for every output channel
/// `c` and pixel vector `v`, `out[c·out_stride + v.y ..] = bias[c] + Σ_t w[t, c] ·
/// input[taps[t] + v.x ..]` on the vector's lanes, in tiles of up to [`FWD_CO`] channels by
/// [`FWD_Q`] vectors.
struct Rows<'a> {
    /// The offset in the input of each tap.
    taps: &'a [usize],
    /// The weights tap-major: tap `t` of channel `c` at `t·c_out + c`.
    wt: &'a [f32],
    bias: &'a [f32],
    c_out: usize,
    /// The output's pixel vectors ([`PixelVec`]).
    vecs: &'a [PixelVec],
    /// Elements between two output channels.
    out_stride: usize,
}

impl<'a> Rows<'a> {
    fn new(
        taps: &'a [usize],
        wt: &'a [f32],
        bias: &'a [f32],
        vecs: &'a [PixelVec],
        out_stride: usize,
    ) -> Self {
        let c_out = bias.len();
        assert!(wt.len() == taps.len() * c_out && vec_extent(vecs).1 <= out_stride);
        Rows { taps, wt, bias, c_out, vecs, out_stride }
    }

    /// The input length every tap may read.
    fn input_len(&self) -> usize {
        self.taps.iter().max().copied().unwrap_or(0) + vec_extent(self.vecs).0
    }

    /// The output length: `c_out` channels `out_stride` apart.
    fn output_len(&self) -> usize {
        self.c_out * self.out_stride
    }

    /// Writes the vectors' lanes of `out` (at least [`Rows::output_len`]) from `input` (at
    /// least [`Rows::input_len`]).
    fn run(&self, input: &[f32], out: &mut [f32]) {
        // Balanced tiles: 10 channels as 5 + 5, 13 pixel vectors as 4 + 3 + 3 + 3 (not 4 + 4 +
        // 4 + 1: a tile of one vector loads 6 values for 5 FMAs).
        for (co0, nc) in balanced(self.c_out, FWD_CO) {
            for (v0, nq) in balanced(self.vecs.len(), FWD_Q) {
                let tile = ForwardRowTile {
                    xp: input,
                    vecs: &self.vecs[v0..v0 + nq],
                    w: &self.wt[co0..],
                    c_out: self.c_out,
                    taps: self.taps,
                    bias: &self.bias[co0..co0 + nc],
                    y: &mut out[co0 * self.out_stride..(co0 + nc) * self.out_stride],
                    y_stride: self.out_stride,
                };
                tile.run(nc, nq);
            }
        }
    }
}

/// One forward row tile: `nc` channels by `nq` vectors of up to 16 pixels, summed over every
/// tap.
struct ForwardRowTile<'a> {
    /// The input (a padded image with its zero tail, or an image).
    xp: &'a [f32],
    /// The tile's pixel vectors.
    vecs: &'a [PixelVec],
    /// The tap-major weights from the tile's first channel on: tap `t` of channel `c` at
    /// `t·c_out + c`.
    w: &'a [f32],
    c_out: usize,
    /// The offset in `xp` of each tap.
    taps: &'a [usize],
    /// The tile's channels' bias.
    bias: &'a [f32],
    /// The tile's channels' outputs, `y_stride` apart.
    y: &'a mut [f32],
    y_stride: usize,
}

impl ForwardRowTile<'_> {
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
        let taps = self.taps.len();
        assert!(self.bias.len() == C && self.vecs.len() == Q);
        let (x_end, y_end) = vec_extent(self.vecs);
        assert!((C - 1) * self.y_stride + y_end <= self.y.len(), "forward row tile: output");
        let last_tap = self.taps.iter().copied().max().unwrap_or(0);
        assert!(last_tap + x_end <= self.xp.len(), "forward row tile: input");
        assert!(taps == 0 || (taps - 1) * self.c_out + C <= self.w.len(), "forward row tile: w");
        let mut acc = [[_mm512_setzero_ps(); Q]; C];
        for c in 0..C {
            let b = _mm512_set1_ps(self.bias[c]);
            for j in 0..Q {
                acc[c][j] = b;
            }
        }
        let mut vx = [0usize; Q];
        let mut mask = [0u16; Q];
        for j in 0..Q {
            vx[j] = self.vecs[j].x;
            mask[j] = self.vecs[j].mask();
        }
        let (xp, w) = (self.xp.as_ptr(), self.w.as_ptr());
        for (t, &off) in self.taps.iter().enumerate() {
            let mut xv = [_mm512_setzero_ps(); Q];
            for j in 0..Q {
                // SAFETY: the vector's lanes end at off + vx[j] + lanes ≤ off + x_end ≤
                // xp.len() (asserted above); the masked-off lanes are not read.
                xv[j] = unsafe { _mm512_maskz_loadu_ps(mask[j], xp.add(off + vx[j])) };
            }
            for c in 0..C {
                // SAFETY: t·c_out + c < w.len() (asserted above).
                let wv = _mm512_set1_ps(unsafe { *w.add(t * self.c_out + c) });
                for j in 0..Q {
                    acc[c][j] = _mm512_fmadd_ps(wv, xv[j], acc[c][j]);
                }
            }
        }
        let y = self.y.as_mut_ptr();
        for c in 0..C {
            for j in 0..Q {
                let at = c * self.y_stride + self.vecs[j].y;
                // SAFETY: the lanes end at c·y_stride + y + lanes ≤ (C−1)·y_stride + y_end ≤
                // y.len() (asserted above); the masked-off lanes are not written.
                unsafe { _mm512_mask_storeu_ps(y.add(at), mask[j], acc[c][j]) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const C: usize, const Q: usize>(self) {
        unreachable!("the direct convolution needs AVX-512")
    }
}

/// One row tile of the weight gradient: `nc` channels by `nt` taps of 16-lane accumulators.
struct RowTile<'a> {
    /// The (padded) images of the block, `xp_stride` apart.
    xp: &'a [f32],
    xp_stride: usize,
    /// The tile's `dy` channels, `dy_c_stride` apart, from the tile's first channel on; the
    /// block's images `dy_stride` apart.
    dyp: &'a [f32],
    dy_stride: usize,
    dy_c_stride: usize,
    /// Images in the block.
    images: usize,
    /// The pixel vectors of an image ([`PixelVec`]: `x` in `xp` from a tap, `y` in `dyp`).
    vecs: &'a [PixelVec],
    /// The offset in `xp` of each tap of the tile.
    taps: &'a [usize],
    /// Every accumulator: `[c_out][taps][16]`.
    acc: &'a mut [f32],
    /// Where the tile's first accumulator is.
    acc_base: usize,
    /// Elements between the accumulators of two channels.
    acc_co_stride: usize,
}

impl RowTile<'_> {
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
        let last_image = self.images.saturating_sub(1);
        assert!(self.images > 0 && self.taps.len() == T);
        let (x_end, y_end) = vec_extent(self.vecs);
        let last_dy = last_image * self.dy_stride + (C - 1) * self.dy_c_stride + y_end;
        assert!(last_dy <= self.dyp.len(), "dW row tile: dy");
        let last_tap = self.taps.iter().copied().max().unwrap_or(0);
        let last_read = last_image * self.xp_stride + last_tap + x_end;
        assert!(last_read <= self.xp.len(), "dW row tile: input");
        let last_acc = self.acc_base + (C - 1) * self.acc_co_stride + T * CO_VEC;
        assert!(last_acc <= self.acc.len(), "dW row tile: accumulators");
        let a = self.acc.as_mut_ptr();
        let mut acc = [[_mm512_setzero_ps(); T]; C];
        for c in 0..C {
            for t in 0..T {
                // SAFETY: within `last_acc` (asserted above).
                let at = unsafe { a.add(self.acc_base + c * self.acc_co_stride + t * CO_VEC) };
                acc[c][t] = unsafe { _mm512_loadu_ps(at) };
            }
        }
        for b in 0..self.images {
            let mut base = [self.xp.as_ptr(); T];
            for t in 0..T {
                // SAFETY: b·xp_stride + the tap offset + x_end is within `xp` (asserted above).
                base[t] = unsafe { base[t].add(b * self.xp_stride + self.taps[t]) };
            }
            // SAFETY: b·dy_stride + (C−1)·dy_c_stride + y_end ≤ dyp.len() (asserted above).
            let d = unsafe { self.dyp.as_ptr().add(b * self.dy_stride) };
            for v in self.vecs {
                let m = v.mask();
                let mut dv = [_mm512_setzero_ps(); C];
                for c in 0..C {
                    // SAFETY: the lanes end at c·dy_c_stride + v.y + lanes, within this image's
                    // channels (asserted above); the masked-off lanes are not read.
                    dv[c] = unsafe { _mm512_maskz_loadu_ps(m, d.add(c * self.dy_c_stride + v.y)) };
                }
                for t in 0..T {
                    // SAFETY: the tap offset + v.x + lanes ≤ the tap offset + x_end, within
                    // this image; the masked-off lanes are not read.
                    let xv = unsafe { _mm512_maskz_loadu_ps(m, base[t].add(v.x)) };
                    for c in 0..C {
                        acc[c][t] = _mm512_fmadd_ps(dv[c], xv, acc[c][t]);
                    }
                }
            }
        }
        for c in 0..C {
            for t in 0..T {
                // SAFETY: as for the loads above.
                let at = unsafe { a.add(self.acc_base + c * self.acc_co_stride + t * CO_VEC) };
                unsafe { _mm512_storeu_ps(at, acc[c][t]) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_tile<const C: usize, const T: usize>(self) {
        unreachable!("the direct convolution needs AVX-512")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, k: usize, pad: usize) -> Conv2dGeometry {
        Conv2dGeometry {
            n: 1,
            c_in: 1,
            h,
            w,
            c_out: 10,
            kh: k,
            kw: k,
            stride: (1, 1),
            padding: (pad, pad),
            dilation: (1, 1),
        }
    }

    #[test]
    fn the_layout_with_fewer_lanes() {
        // LeNet's layers: 28 of 32 lanes against 28 of 36; 10 of 16 against 10 of 14.
        assert!(compact_rows(&geom(36, 36, 9, 0)));
        assert!(!compact_rows(&geom(14, 14, 5, 0)));
        // The shapes of the tests in tests/conv_direct.rs.
        for (ow, compact) in [(16, true), (17, false), (32, true), (33, false)] {
            assert_eq!(compact_rows(&geom(4, ow + 2, 3, 0)), compact, "{ow}");
            assert_eq!(compact_rows(&geom(3, ow, 3, 1)), compact, "{ow}, padded");
        }
        assert!(compact_rows(&geom(4, 18, 3, 0)) && compact_rows(&geom(4, 16, 3, 1)));
        assert!(!compact_rows(&geom(5, 7, 3, 1)));
    }

    #[test]
    fn compact_vectors_cover_each_row_once() {
        let g = geom(5, 37, 3, 1);
        let (oh, ow, wp) = (g.out_h(), g.out_w(), 39);
        let vecs = compact_vecs(&g, wp);
        assert_eq!(vecs.len(), oh * 3);
        let mut seen = vec![0; oh * ow];
        for v in &vecs {
            assert_eq!(v.x / wp, v.y / ow, "{v:?}: one row");
            assert_eq!(v.x % wp, v.y % ow, "{v:?}: one column");
            seen[v.y..v.y + v.lanes].iter_mut().for_each(|s| *s += 1);
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert_eq!(vecs[2].lanes, 5);
        assert_eq!(vecs[2].mask(), 0b11111);
        assert_eq!(vec_extent(&vecs), ((oh - 1) * wp + ow, oh * ow));
    }
}
