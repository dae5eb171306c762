//! Winograd convolution F(2×2, 3×3) on AVX-512, for 3x3 kernels at stride 1 whose channels
//! come in multiples of 16: the same result as the direct convolution with 2.25 times fewer
//! multiplications.
//!
//! **The identity.** In one dimension, two outputs of a 3-tap correlation
//! `y[i] = d[i]·g[0] + d[i+1]·g[1] + d[i+2]·g[2]` need six multiplications done directly, but
//! only four as
//!
//! ```text
//! m0 = (d0 − d2)·g0         m1 = (d1 + d2)·(g0 + g1 + g2)/2
//! m3 = (d1 − d3)·g2         m2 = (d2 − d1)·(g0 − g1 + g2)/2
//! y0 = m0 + m1 + m2         y1 = m1 − m2 − m3
//! ```
//!
//! In matrices, `y = Aᵀ·[(G·g) ⊙ (Bᵀ·d)]` with
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1  1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢1/2 −1/2  1/2⎥         ⎣0  1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! Nested in both axes, a 2×2 tile of output is `Y = Aᵀ·[U ⊙ V]·A` from the 4×4 input tile `d`
//! under it, with `U = G·g·Gᵀ` (the transformed 3×3 kernel) and `V = Bᵀ·d·B` (the transformed
//! input): 16 multiplications instead of 36. Summed over channels, the elementwise products
//! become matrix products, one per point `ξ` of the 4×4 tile:
//!
//! ```text
//! M_ξ[t, co] = Σ_ci V_ξ[t, ci] · U_ξ[ci, co]        (t: the tiles of a block of images)
//! ```
//!
//! **Forward**, per block of images: copy each image channels-last and zero-padded, so that 16
//! channels of a pixel are one vector; transform every 4×4 tile (`V`, additions only); run the
//! 16 GEMMs `M_ξ = V_ξ·U_ξ` on the packed GEMM; transform back (`Aᵀ·M·A`, additions only) into a
//! channels-last output, and transpose that into the NCHW result. Tiles overlap by two pixels,
//! and a tile past the last row or column of an odd-sized output computes values that are not
//! stored.
//!
//! **Input gradient.** `dx` is the convolution of `dy` with the flipped, channel-swapped weight
//! ([`Conv2dGeometry::input_gradient_geometry`]), itself a 3x3 stride-1 convolution: the forward
//! path runs it with that weight transformed.
//!
//! **Weight gradient.** `Y = Aᵀ·(U ⊙ V)·A` is linear in `U`, so for a tile
//! `∂L/∂U = (A·dY·Aᵀ) ⊙ V`, and `∂L/∂g = Gᵀ·(∂L/∂U)·G`. Summed over tiles and images, the
//! elementwise products again become GEMMs, now with the tiles as the long inner dimension:
//! `dU_ξ[co, ci] = Σ_t D_ξ[t, co]·V_ξ[t, ci]`, with `D = A·dY·Aᵀ` the transformed output gradient
//! (zero past the output's edge). One `Gᵀ·dU·G` per (co, ci) at the end gives `dW`.
//!
//! **Accuracy.** The transforms add and subtract values before multiplying, so rounding errors
//! are somewhat larger than the direct convolution's (at 32 → 64 channels on values in [−1, 1),
//! within 1e-5 relative of an f64 reference, as the tests check).

use crate::buffer::{self, Buffer};
use crate::conv::{for_each_block, Conv2dGeometry};
use crate::conv_direct::{add_pixels, channels_last, sum_over_chunks};
use crate::gemm::sgemm;
use crate::par::SendPtr;
use crate::simd::{active_isa, detected_isa, Isa};
use crate::transpose::{rows_to_lanes, rows_to_lanes_masked};
use crate::tune::tunables;

/// Lanes per vector, and the channel granularity.
const L: usize = 16;
/// Points of a transformed 4×4 tile.
const XI: usize = 16;

/// True when the Winograd path can compute `g` (forward and weight gradient): AVX-512 is
/// active, the kernel is 3x3 at stride 1 and dilation 1, and both channel counts are multiples
/// of 16. (Whether it may, [`crate::tune::Tunables::conv_winograd`] or a forced path, is
/// `conv.rs`'s to say.)
pub(crate) fn applicable(g: &Conv2dGeometry) -> bool {
    active_isa() == Isa::Avx512 && fits(g)
}

/// The geometry half of [`applicable`] (the kernels assert it with the CPU's support for
/// AVX-512, which the `unsafe` calls need).
fn fits(g: &Conv2dGeometry) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.c_in > 0
        && g.c_out > 0
        && g.c_in.is_multiple_of(L)
        && g.c_out.is_multiple_of(L)
        && g.out_h() > 0
        && g.out_w() > 0
        && XI * Tiling::new(g).per_image() * (g.c_in + g.c_out) <= MAX_IMAGE_SCRATCH
}

/// The most floats of transformed input and output one image may need (32 MiB): a block holds
/// at least one image, and larger images (at 64 → 64 channels, outputs larger than 128x128)
/// take the direct kernel instead of that much scratch per thread.
const MAX_IMAGE_SCRATCH: usize = 8 << 20;

/// The geometry that computes `g`'s input gradient on the Winograd path, if it can.
pub(crate) fn backward_input_geometry(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    g.input_gradient_geometry().filter(|t| applicable(g) && applicable(t))
}

/// The tiles of one image, and the padded channels-last copy of the image they read.
#[derive(Clone, Copy)]
struct Tiling {
    /// Output rows and columns.
    oh: usize,
    ow: usize,
    /// Tiles down and across: `⌈oh/2⌉`, `⌈ow/2⌉`.
    th: usize,
    tw: usize,
    /// Height and width of the padded copy: every tile's 4×4 input lies inside it.
    hp: usize,
    wp: usize,
}

impl Tiling {
    fn new(g: &Conv2dGeometry) -> Self {
        let (oh, ow) = (g.out_h(), g.out_w());
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        // hp = 2·th + 2 ≥ oh + 2 = h + 2·pad: the image and its padding fit.
        Tiling { oh, ow, th, tw, hp: 2 * th + 2, wp: 2 * tw + 2 }
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }

    /// Images per block: about `tiles` tiles at 96 channels in and out together, fewer in
    /// proportion for more channels, so that a block's transformed arrays stay about the same
    /// size (1.2 MB; tuned at 32 → 64 channels only).
    fn images_per_block(&self, g: &Conv2dGeometry, tiles: usize) -> usize {
        let tiles = tiles * 96 / (g.c_in + g.c_out);
        (tiles / self.per_image()).clamp(1, g.n.max(1))
    }
}

/// `U[ξ][i][o] = (G·g·Gᵀ)[ξ]` for the 3x3 kernels `g = w[o·o_stride + i·i_stride ..][..9]`
/// (row-major, or flipped in both axes when `flip`), `i < k_in`, `o < k_out` (a multiple of
/// 16): row-major `k_in × k_out` matrices, the B operands of the forward GEMMs.
fn transform_weights(
    w: &[f32],
    (k_in, i_stride): (usize, usize),
    (k_out, o_stride): (usize, usize),
    flip: bool,
) -> Buffer {
    assert!(detected_isa() == Isa::Avx512 && k_out.is_multiple_of(L) && k_in > 0);
    assert!((k_in - 1) * i_stride + (k_out - 1) * o_stride + 9 <= w.len());
    let mut u = Buffer::new(buffer::take(XI * k_in * k_out));
    for i in 0..k_in {
        for o0 in (0..k_out).step_by(L) {
            // SAFETY: AVX-512 is available (asserted). The 16 kernels o0..o0 + 16 of input i
            // lie inside `w` (asserted bound); `taps` holds 9 vectors of 16; the stores go to
            // u[(ξ·k_in + i)·k_out + o0..+16], inside `u`.
            unsafe {
                let mut taps = [0.0f32; 9 * L];
                rows_to_lanes(
                    w.as_ptr().add(o0 * o_stride + i * i_stride),
                    o_stride,
                    L,
                    9,
                    taps.as_mut_ptr(),
                    L,
                );
                transform_kernels(&taps, flip, u.as_mut_ptr().add(i * k_out + o0), k_in * k_out);
            }
        }
    }
    u
}

/// `G·g·Gᵀ` for 16 kernels at once: `taps[rs·16 + l]` is tap `rs` of kernel `l` (read in
/// reverse order when `flip`); point ξ of the result goes to `out[ξ·plane..+16]`.
///
/// # Safety
/// AVX-512F must be available, and `out` writable for 16 floats at each `ξ·plane`, ξ < 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // `a` indexes the three columns at once
unsafe fn transform_kernels(taps: &[f32; 9 * L], flip: bool, out: *mut f32, plane: usize) {
    use std::arch::x86_64::*;
    let half = _mm512_set1_ps(0.5);
    // SAFETY: tap k < 9 is inside `taps`.
    let tap =
        |k: usize| unsafe { _mm512_loadu_ps(taps.as_ptr().add(if flip { 8 - k } else { k } * L)) };
    let g: [__m512; 9] = std::array::from_fn(tap);
    // G·v for three vectors: [v0, (v0 + v1 + v2)/2, (v0 − v1 + v2)/2, v2].
    let g3 = |v0: __m512, v1: __m512, v2: __m512| {
        let (s, d) = (_mm512_add_ps(v0, v2), v1);
        [v0, _mm512_mul_ps(half, _mm512_add_ps(s, d)), _mm512_mul_ps(half, _mm512_sub_ps(s, d)), v2]
    };
    // G·g (columns of g), then its rows through G.
    let cols = [g3(g[0], g[3], g[6]), g3(g[1], g[4], g[7]), g3(g[2], g[5], g[8])];
    for a in 0..4 {
        let row = g3(cols[0][a], cols[1][a], cols[2][a]);
        for (b, v) in row.into_iter().enumerate() {
            // SAFETY: ξ = 4a + b < 16; the caller guarantees the 16 floats at ξ·plane.
            unsafe { _mm512_storeu_ps(out.add((a * 4 + b) * plane), v) };
        }
    }
}

/// Forward convolution on the Winograd path (checked by the caller with [`applicable`]); `y` is
/// overwritten.
pub(crate) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let u = transform_weights(w, (g.c_in, 9), (g.c_out, g.c_in * 9), false);
    run(g, x, &u, bias, y);
}

/// Input gradient for a geometry whose [`backward_input_geometry`] is `t`; `dx` is overwritten.
pub(crate) fn backward_input(
    g: &Conv2dGeometry,
    t: &Conv2dGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) {
    // The flipped weight W'[ci, co, r, s] = W[co, ci, 2 − r, 2 − s]: inputs are g's outputs.
    let u = transform_weights(w, (g.c_out, g.c_in * 9), (g.c_in, 9), true);
    run(t, dy, &u, None, dx);
}

/// The forward algorithm with transformed weights `u` (see the module docs).
fn run(g: &Conv2dGeometry, x: &[f32], u: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    assert!(detected_isa() == Isa::Avx512 && fits(g));
    let tl = Tiling::new(g);
    let (c_in, c_out) = (g.c_in, g.c_out);
    let p = tl.oh * tl.ow;
    let (x_img, y_img) = (c_in * g.h * g.w, c_out * p);
    assert!(x.len() == g.n * x_img && y.len() == g.n * y_img && u.len() == XI * c_in * c_out);
    assert!(bias.is_none_or(|b| b.len() == c_out));
    let nb = tl.images_per_block(g, tunables().conv_winograd_tiles);
    let t_max = nb * tl.per_image();
    let lens = [tl.hp * tl.wp * c_in, XI * t_max * c_in, XI * t_max * c_out, p * c_out];
    let y_ptr = SendPtr(y.as_mut_ptr());
    for_each_block(g, nb, buffer::aligned_len(&lens), |images, s| {
        let [xt, v, m, yt] = buffer::split_aligned(s, lens);
        let t_n = images.len() * tl.per_image();
        for (b, i) in images.clone().enumerate() {
            channels_last_padded(g, &tl, &x[i * x_img..(i + 1) * x_img], xt);
            // SAFETY: AVX-512 is available (asserted); the slices' sizes are checked inside.
            unsafe { input_transform(xt, c_in, &tl, v, b * tl.per_image(), t_n) };
        }
        for xi in 0..XI {
            // Single-threaded: this block is already one task of the parallel loop.
            sgemm(
                t_n,
                c_in,
                c_out,
                1.0,
                &v[xi * t_n * c_in..(xi + 1) * t_n * c_in],
                c_in as isize,
                1,
                &u[xi * c_in * c_out..(xi + 1) * c_in * c_out],
                c_out as isize,
                1,
                0.0,
                &mut m[xi * t_n * c_out..(xi + 1) * t_n * c_out],
                c_out as isize,
                1,
            );
        }
        for (b, i) in images.enumerate() {
            // SAFETY: as above.
            unsafe { output_transform(m, c_out, &tl, bias, b * tl.per_image(), t_n, yt) };
            // SAFETY: image `i` owns the disjoint range `i*y_img..(i+1)*y_img` of `y`, in bounds
            // by the assertion above; `y` stays mutably borrowed for the whole loop.
            let yi = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(i * y_img), y_img) };
            to_nchw(yt, c_out, p, yi);
        }
    });
}

/// Gradient with respect to the weight, and the bias when `db` is given, on the Winograd path
/// (checked by the caller with [`applicable`]); `dw` and `db` are overwritten.
///
/// Images are split into `chunks` contiguous ranges, one partial `dU` (and bias gradient) each,
/// added in range order: the result depends on the number of chunks (the caller passes the
/// thread count), never on scheduling.
pub(crate) fn backward_weight(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    chunks: usize,
) {
    assert!(detected_isa() == Isa::Avx512 && fits(g));
    let tl = Tiling::new(g);
    let (c_in, c_out) = (g.c_in, g.c_out);
    let p = tl.oh * tl.ow;
    let (x_img, y_img) = (c_in * g.h * g.w, c_out * p);
    assert!(x.len() == g.n * x_img && dy.len() == g.n * y_img && dw.len() == c_out * c_in * 9);
    // Blocks half as large as the forward's: the transformed output gradient is a second array
    // as large as the forward's product (measured at 32 → 64 channels, 14x14: 98 tiles 5%
    // faster than 196 or 49).
    let nb = tl.images_per_block(g, tunables().conv_winograd_tiles / 2);
    let t_max = nb * tl.per_image();
    let lens = [tl.hp * tl.wp * c_in, XI * t_max * c_in, XI * t_max * c_out, p * c_out];
    assert!(db.as_ref().is_none_or(|b| b.len() == c_out));
    let du_len = XI * c_out * c_in;
    // One chunk of images into a partial dU (XI matrices of c_out × c_in) followed by the
    // partial bias gradient.
    let partial = |images: std::ops::Range<usize>| -> Buffer {
        let mut acc = Buffer::new(buffer::take_zeroed(du_len + c_out));
        let (du, db_part) = acc.split_at_mut(du_len);
        let mut scratch = Buffer::new(buffer::take(buffer::aligned_len(&lens)));
        let [xt, v, d, dyt] = buffer::split_aligned(&mut scratch, lens);
        for b0 in images.clone().step_by(nb) {
            let block = b0..(b0 + nb).min(images.end);
            let t_n = block.len() * tl.per_image();
            for (b, i) in block.enumerate() {
                let t0 = b * tl.per_image();
                channels_last_padded(g, &tl, &x[i * x_img..(i + 1) * x_img], xt);
                channels_last(&dy[i * y_img..(i + 1) * y_img], c_out, p, dyt);
                add_pixels(&dyt[..p * c_out], db_part);
                // SAFETY: AVX-512 is available (asserted); the slices' sizes are checked inside.
                unsafe {
                    input_transform(xt, c_in, &tl, v, t0, t_n);
                    output_gradient_transform(dyt, c_out, &tl, d, t0, t_n);
                }
            }
            for xi in 0..XI {
                // dU_ξ (c_out × c_in) += D_ξᵀ (c_out × t_n) · V_ξ (t_n × c_in)
                sgemm(
                    c_out,
                    t_n,
                    c_in,
                    1.0,
                    &d[xi * t_n * c_out..(xi + 1) * t_n * c_out],
                    1,
                    c_out as isize,
                    &v[xi * t_n * c_in..(xi + 1) * t_n * c_in],
                    c_in as isize,
                    1,
                    1.0,
                    &mut du[xi * c_out * c_in..(xi + 1) * c_out * c_in],
                    c_in as isize,
                    1,
                );
            }
        }
        acc
    };
    let acc = sum_over_chunks(g.n, chunks, partial);
    let (du, db_sum) = acc.split_at(du_len);
    if let Some(db) = db {
        db.copy_from_slice(db_sum);
    }
    // dW = Gᵀ·dU·G for every (co, ci): Gᵀ·v for a 4-vector v, on the columns, then the rows.
    let gt4 =
        |v: [f32; 4]| [v[0] + 0.5 * (v[1] + v[2]), 0.5 * (v[1] - v[2]), 0.5 * (v[1] + v[2]) + v[3]];
    for co in 0..c_out {
        for ci in 0..c_in {
            let at = |a: usize, b: usize| du[((a * 4 + b) * c_out + co) * c_in + ci];
            let cols: [[f32; 3]; 4] = std::array::from_fn(|b| gt4([0, 1, 2, 3].map(|a| at(a, b))));
            for r in 0..3 {
                let row = gt4([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
                dw[(co * c_in + ci) * 9 + r * 3..(co * c_in + ci) * 9 + r * 3 + 3]
                    .copy_from_slice(&row);
            }
        }
    }
}

/// Writes image `x` (`[c_in, h, w]`) channels-last into `xt` (`[hp, wp, c_in]`), at the offset
/// of its padding, zero elsewhere: 16 channels at a time through [`rows_to_lanes`].
fn channels_last_padded(g: &Conv2dGeometry, tl: &Tiling, x: &[f32], xt: &mut [f32]) {
    let c = g.c_in;
    assert!(detected_isa() == Isa::Avx512 && c.is_multiple_of(L));
    assert!(x.len() == c * g.h * g.w && xt.len() == tl.hp * tl.wp * c);
    assert!(g.h + g.padding.0 <= tl.hp && g.w + g.padding.1 <= tl.wp);
    xt.fill(0.0);
    for c0 in (0..c).step_by(L) {
        for iy in 0..g.h {
            let dst = ((iy + g.padding.0) * tl.wp + g.padding.1) * c + c0;
            // SAFETY: AVX-512 is available (asserted). The 16 source rows are channels
            // c0..c0 + 16 of image row iy, w floats each, inside `x`; the destination takes 16
            // floats at each of the w pixels of padded row iy + pad, inside `xt` (asserted).
            unsafe {
                rows_to_lanes(
                    x.as_ptr().add((c0 * g.h + iy) * g.w),
                    g.h * g.w,
                    L,
                    g.w,
                    xt.as_mut_ptr().add(dst),
                    c,
                )
            };
        }
    }
}

/// Copies the channels-last output `yt` (`[p, c]`) into the NCHW image `y` (`[c, p]`), 16
/// pixels at a time through [`rows_to_lanes_masked`].
fn to_nchw(yt: &[f32], c: usize, p: usize, y: &mut [f32]) {
    assert!(detected_isa() == Isa::Avx512 && yt.len() >= p * c && y.len() == p * c);
    for q0 in (0..p).step_by(L) {
        let rows = L.min(p - q0);
        // SAFETY: AVX-512 is available (asserted). Rows q0..q0 + rows of `yt` hold c floats
        // each; the store writes lanes r < rows at y[ch·p + q0 + r], ch < c, all inside `y`.
        unsafe {
            rows_to_lanes_masked(yt.as_ptr().add(q0 * c), c, rows, c, y.as_mut_ptr().add(q0), p)
        };
    }
}

/// `V = Bᵀ·d·B` for every tile of one image: `v[ξ][t0 + t][ch]` (a block of `t_n` tiles), from
/// the padded channels-last image `xt` of `c` channels.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // index loops keep the tile in registers
unsafe fn input_transform(xt: &[f32], c: usize, tl: &Tiling, v: &mut [f32], t0: usize, t_n: usize) {
    use std::arch::x86_64::*;
    assert!(c.is_multiple_of(L) && xt.len() == tl.hp * tl.wp * c);
    assert!(t0 + tl.per_image() <= t_n && v.len() >= XI * t_n * c);
    let row = tl.wp * c;
    for ty in 0..tl.th {
        for tx in 0..tl.tw {
            let t = t0 + ty * tl.tw + tx;
            for c0 in (0..c).step_by(L) {
                // SAFETY: the tile's 4×4 pixels are rows 2ty..2ty + 4 < hp and columns
                // 2tx..2tx + 4 ≤ wp of `xt`, 16 channels from c0 < c each (asserted sizes);
                // the stores go to v[ξ·t_n·c + t·c + c0..+16], t < t_n.
                unsafe {
                    let base = xt.as_ptr().add((2 * ty * tl.wp + 2 * tx) * c + c0);
                    let mut d = [[_mm512_setzero_ps(); 4]; 4];
                    for r in 0..4 {
                        for s in 0..4 {
                            d[r][s] = _mm512_loadu_ps(base.add(r * row + s * c));
                        }
                    }
                    // Bᵀ·d, down the columns.
                    let mut e = [[_mm512_setzero_ps(); 4]; 4];
                    for s in 0..4 {
                        e[0][s] = _mm512_sub_ps(d[0][s], d[2][s]);
                        e[1][s] = _mm512_add_ps(d[1][s], d[2][s]);
                        e[2][s] = _mm512_sub_ps(d[2][s], d[1][s]);
                        e[3][s] = _mm512_sub_ps(d[1][s], d[3][s]);
                    }
                    // (Bᵀ·d)·B, along the rows.
                    let out = v.as_mut_ptr().add(t * c + c0);
                    let plane = t_n * c;
                    for r in 0..4 {
                        let vals = [
                            _mm512_sub_ps(e[r][0], e[r][2]),
                            _mm512_add_ps(e[r][1], e[r][2]),
                            _mm512_sub_ps(e[r][2], e[r][1]),
                            _mm512_sub_ps(e[r][1], e[r][3]),
                        ];
                        for s in 0..4 {
                            _mm512_storeu_ps(out.add((r * 4 + s) * plane), vals[s]);
                        }
                    }
                }
            }
        }
    }
}

/// `Y = Aᵀ·M·A` (+ bias) for every tile of one image, from `m[ξ][t0 + t][ch]` (a block of `t_n`
/// tiles, `c` channels) into the channels-last output `yt` (`[oh·ow, c]`); values past the
/// output's last row or column are dropped.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // index loops keep the tile in registers
unsafe fn output_transform(
    m: &[f32],
    c: usize,
    tl: &Tiling,
    bias: Option<&[f32]>,
    t0: usize,
    t_n: usize,
    yt: &mut [f32],
) {
    use std::arch::x86_64::*;
    assert!(c.is_multiple_of(L) && m.len() >= XI * t_n * c && t0 + tl.per_image() <= t_n);
    assert!(yt.len() >= tl.oh * tl.ow * c && bias.is_none_or(|b| b.len() == c));
    let plane = t_n * c;
    for ty in 0..tl.th {
        for tx in 0..tl.tw {
            let t = t0 + ty * tl.tw + tx;
            for c0 in (0..c).step_by(L) {
                // SAFETY: loads from m[ξ·plane + t·c + c0..+16], t < t_n, c0 < c (asserted);
                // stores to output pixels (oy, ox) < (oh, ow) only, 16 channels from c0 each.
                unsafe {
                    let src = m.as_ptr().add(t * c + c0);
                    let mut q = [[_mm512_setzero_ps(); 4]; 4];
                    for r in 0..4 {
                        for s in 0..4 {
                            q[r][s] = _mm512_loadu_ps(src.add((r * 4 + s) * plane));
                        }
                    }
                    // Aᵀ·M, down the columns.
                    let mut f = [[_mm512_setzero_ps(); 4]; 2];
                    for s in 0..4 {
                        f[0][s] = _mm512_add_ps(_mm512_add_ps(q[0][s], q[1][s]), q[2][s]);
                        f[1][s] = _mm512_sub_ps(_mm512_sub_ps(q[1][s], q[2][s]), q[3][s]);
                    }
                    let b = match bias {
                        Some(b) => _mm512_loadu_ps(b.as_ptr().add(c0)),
                        None => _mm512_setzero_ps(),
                    };
                    // (Aᵀ·M)·A, along the rows.
                    for i in 0..2 {
                        let oy = 2 * ty + i;
                        if oy >= tl.oh {
                            continue;
                        }
                        let y0 = _mm512_add_ps(f[i][0], _mm512_add_ps(f[i][1], f[i][2]));
                        let y1 = _mm512_sub_ps(_mm512_sub_ps(f[i][1], f[i][2]), f[i][3]);
                        let out = yt.as_mut_ptr().add((oy * tl.ow + 2 * tx) * c + c0);
                        _mm512_storeu_ps(out, _mm512_add_ps(y0, b));
                        if 2 * tx + 1 < tl.ow {
                            _mm512_storeu_ps(out.add(c), _mm512_add_ps(y1, b));
                        }
                    }
                }
            }
        }
    }
}

/// `D = A·dY·Aᵀ` for every tile of one image: `d[ξ][t0 + t][ch]` (a block of `t_n` tiles), from
/// the channels-last output gradient `dyt` (`[oh·ow, c]`), zero past the output's edge.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // index loops keep the tile in registers
unsafe fn output_gradient_transform(
    dyt: &[f32],
    c: usize,
    tl: &Tiling,
    d: &mut [f32],
    t0: usize,
    t_n: usize,
) {
    use std::arch::x86_64::*;
    assert!(c.is_multiple_of(L) && dyt.len() >= tl.oh * tl.ow * c);
    assert!(t0 + tl.per_image() <= t_n && d.len() >= XI * t_n * c);
    let plane = t_n * c;
    for ty in 0..tl.th {
        for tx in 0..tl.tw {
            let t = t0 + ty * tl.tw + tx;
            for c0 in (0..c).step_by(L) {
                // SAFETY: loads from output pixels (oy, ox) < (oh, ow) only, 16 channels from
                // c0 < c each (asserted size); stores to d[ξ·plane + t·c + c0..+16], t < t_n.
                unsafe {
                    let mut g = [[_mm512_setzero_ps(); 2]; 2];
                    for i in 0..2 {
                        for j in 0..2 {
                            let (oy, ox) = (2 * ty + i, 2 * tx + j);
                            if oy < tl.oh && ox < tl.ow {
                                g[i][j] =
                                    _mm512_loadu_ps(dyt.as_ptr().add((oy * tl.ow + ox) * c + c0));
                            }
                        }
                    }
                    // A·dY, down the columns: rows [g0, g0 + g1, g0 − g1, −g1].
                    let zero = _mm512_setzero_ps();
                    let mut e = [[zero; 2]; 4];
                    for j in 0..2 {
                        e[0][j] = g[0][j];
                        e[1][j] = _mm512_add_ps(g[0][j], g[1][j]);
                        e[2][j] = _mm512_sub_ps(g[0][j], g[1][j]);
                        e[3][j] = _mm512_sub_ps(zero, g[1][j]);
                    }
                    // (A·dY)·Aᵀ, along the rows.
                    let out = d.as_mut_ptr().add(t * c + c0);
                    for r in 0..4 {
                        let vals = [
                            e[r][0],
                            _mm512_add_ps(e[r][0], e[r][1]),
                            _mm512_sub_ps(e[r][0], e[r][1]),
                            _mm512_sub_ps(zero, e[r][1]),
                        ];
                        for s in 0..4 {
                            _mm512_storeu_ps(out.add((r * 4 + s) * plane), vals[s]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn transform_kernels(_: &[f32; 9 * L], _: bool, _: *mut f32, _: usize) {
    unreachable!("the Winograd convolution needs AVX-512")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn input_transform(_: &[f32], _: usize, _: &Tiling, _: &mut [f32], _: usize, _: usize) {
    unreachable!("the Winograd convolution needs AVX-512")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn output_transform(
    _: &[f32],
    _: usize,
    _: &Tiling,
    _: Option<&[f32]>,
    _: usize,
    _: usize,
    _: &mut [f32],
) {
    unreachable!("the Winograd convolution needs AVX-512")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn output_gradient_transform(
    _: &[f32],
    _: usize,
    _: &Tiling,
    _: &mut [f32],
    _: usize,
    _: usize,
) {
    unreachable!("the Winograd convolution needs AVX-512")
}
