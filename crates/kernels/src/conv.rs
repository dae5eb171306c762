//! 2-D convolution over NCHW images: forward, gradient w.r.t. the input, gradient w.r.t. the
//! weight and bias.
//!
//! Three algorithms, chosen per call (the first that applies):
//!
//! 1. **Winograd F(2×2, 3×3)** (`conv_winograd.rs`) for 3x3 kernels at stride 1 and dilation 1
//!    whose channel counts are multiples of 16, on AVX-512: 2.25 times fewer multiplications,
//!    run as 16 GEMMs per block of images. `TAPESTRY_CONV_WINOGRAD=0` turns it off.
//! 2. **Direct** (`conv_direct.rs`) for stride 1 and dilation 1, on AVX-512: an implicit GEMM
//!    over the zero-padded image. The forward pass and dX tile vectors of 16 output channels
//!    when the channels come in whole vectors; otherwise the forward pass runs on rows, vectors
//!    of 16 neighbouring pixels (LeNet's 10 and 20 channels), and so does dX, scattering `dy`
//!    through the same tiles, when there are at least 5 input channels.
//!    The weight gradient tiles channel vectors too when they are whole and there are at least
//!    64 taps, and runs on rows otherwise.
//! 3. **im2col + GEMM** for everything else. For one image, `col` is the `K × P` matrix
//!    (`K = c_in·kh·kw`, `P = out_h·out_w`) whose column `p` holds the input patch under output
//!    pixel `p`. Then
//!
//!    - forward:  `y_n = W · col_n` (+ bias), W viewed as `c_out × K`;
//!    - input:    `dcol_n = Wᵀ · dy_n`, scattered back (col2im) into `dx_n`;
//!    - weight:   `dW = Σ_n dy_n · col_nᵀ`, `db = Σ_n Σ_p dy_n`.
//!
//!    A 1x1 kernel with stride 1 and no padding needs no im2col at all: `col_n` is `x_n` itself.
//!
//! Parallelism: over the images of the batch (blocks of images for Winograd), each image's
//! GEMMs single-threaded; with a batch of one the im2col GEMM itself runs in parallel. The
//! weight gradient sums one partial per thread-chunk of the batch, in chunk order, so results
//! are deterministic for a given thread count (forward and input gradient do not depend on it
//! at all).

use crate::buffer::{self, Buffer};
use crate::conv_direct;
use crate::conv_winograd;
use crate::error::KernelError;
use crate::gemm::sgemm;
use crate::par::{for_each_range, may_parallelize};
use crate::path::{Carry, ConvPath};
use crate::tune::tunables;
use rayon::prelude::*;

/// Whether a call may take `path` (if it can): the path this thread forces
/// ([`crate::path::forced`]) or, with none forced, any path but Winograd when
/// `TAPESTRY_CONV_WINOGRAD=0`.
fn may_take(path: ConvPath) -> bool {
    match crate::path::forced_conv() {
        Some(forced) => forced == path,
        None => path != ConvPath::Winograd || tunables().conv_winograd != 0,
    }
}

/// True when this thread forces the kernels with images as lanes, which then run wherever they
/// can, not only where they are preferred.
fn forced_lanes() -> bool {
    crate::path::forced_conv() == Some(ConvPath::ImageLanes)
}

/// Records the path a call takes and returns `true`, for use in a condition.
fn taking(path: ConvPath) -> bool {
    crate::path::record_conv(path);
    true
}

/// The shape of a 2-D convolution: input `[n, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`,
/// output `[n, c_out, out_h, out_w]`. Pairs are `(vertical, horizontal)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding on each side (vertical, horizontal).
    pub padding: (usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
}

impl Conv2dGeometry {
    /// Output height: `(h + 2·pad - dil·(kh-1) - 1) / stride + 1` (0 if the kernel does not fit).
    pub fn out_h(&self) -> usize {
        out_len(self.h, self.kh, self.stride.0, self.padding.0, self.dilation.0)
    }

    /// Output width: `(w + 2·pad - dil·(kw-1) - 1) / stride + 1` (0 if the kernel does not fit).
    pub fn out_w(&self) -> usize {
        out_len(self.w, self.kw, self.stride.1, self.padding.1, self.dilation.1)
    }

    /// Input length `n·c_in·h·w`.
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    /// Weight length `c_out·c_in·kh·kw`.
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }

    /// Output length `n·c_out·out_h·out_w`.
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.out_h() * self.out_w()
    }

    /// Checks that the geometry describes a convolution with a non-empty output.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidGeometry`] if a stride or dilation is 0, the kernel is empty, or the
    /// dilated kernel is larger than the padded input.
    pub fn validate(&self) -> Result<(), KernelError> {
        let bad = |reason: String| Err(KernelError::InvalidGeometry { op: "conv2d", reason });
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return bad(format!("stride must be positive, got {:?}", self.stride));
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return bad(format!("dilation must be positive, got {:?}", self.dilation));
        }
        if self.kh == 0 || self.kw == 0 {
            return bad(format!("kernel must be non-empty, got {}x{}", self.kh, self.kw));
        }
        let (eh, ew) = (self.dilation.0 * (self.kh - 1) + 1, self.dilation.1 * (self.kw - 1) + 1);
        let (ph, pw) = (self.h + 2 * self.padding.0, self.w + 2 * self.padding.1);
        if eh > ph || ew > pw {
            return bad(format!(
                "dilated kernel {eh}x{ew} larger than padded input {ph}x{pw} (input {}x{})",
                self.h, self.w
            ));
        }
        Ok(())
    }

    /// For stride 1 and dilation 1, the convolution that computes this one's input gradient:
    /// `dx` is `dy` convolved with the weight flipped in both spatial axes and its two channel
    /// axes swapped, padded by `k − 1 − p`. `None` for other strides or dilations, or padding of
    /// `k` or more.
    pub(crate) fn input_gradient_geometry(&self) -> Option<Conv2dGeometry> {
        if self.stride != (1, 1)
            || self.dilation != (1, 1)
            || self.padding.0 >= self.kh
            || self.padding.1 >= self.kw
        {
            return None;
        }
        let t = Conv2dGeometry {
            n: self.n,
            c_in: self.c_out,
            h: self.out_h(),
            w: self.out_w(),
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            stride: (1, 1),
            padding: (self.kh - 1 - self.padding.0, self.kw - 1 - self.padding.1),
            dilation: (1, 1),
        };
        (t.out_h() == self.h && t.out_w() == self.w).then_some(t)
    }

    fn k_len(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.padding == (0, 0)
    }

    fn flops(&self) -> usize {
        2 * self.y_len() * self.k_len()
    }

    fn assert_valid(&self, op: &str) {
        if let Err(e) = self.validate() {
            panic!("{op}: {e}");
        }
    }
}

fn out_len(len: usize, k: usize, stride: usize, pad: usize, dil: usize) -> usize {
    let span = dil * (k.max(1) - 1) + 1;
    let padded = len + 2 * pad;
    if stride == 0 || span > padded {
        0
    } else {
        (padded - span) / stride + 1
    }
}

fn check_len(op: &str, what: &str, got: usize, want: usize) {
    assert!(got == want, "{op}: {what} has {got} elements, geometry needs {want}");
}

/// Writes the `K × P` patch matrix of one image `x` (`[c_in, h, w]`) into `col`.
fn im2col(g: &Conv2dGeometry, x: &[f32], col: &mut [f32]) {
    let p = g.out_h() * g.out_w();
    im2col_ld(g, x, col, p);
}

/// As [`im2col`], with rows of `col` `ld` elements apart (`ld ≥ P`), so that the patch
/// matrices of several images can sit side by side.
fn im2col_ld(g: &Conv2dGeometry, x: &[f32], col: &mut [f32], ld: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (dh, dw) = g.dilation;
    for ci in 0..g.c_in {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let row = ((ci * g.kh + r) * g.kw + s) * ld;
                let dst = &mut col[row..row + p];
                let (lo, hi) = valid_range(ow, sw, pw, s * dw, g.w);
                for oy in 0..oh {
                    let out = &mut dst[oy * ow..(oy + 1) * ow];
                    let iy = (oy * sh + r * dh) as isize - ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if lo < hi {
                        let ix0 = lo * sw + s * dw - pw;
                        if sw == 1 {
                            out[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                        } else {
                            for (o, v) in out[lo..hi].iter_mut().zip(src[ix0..].iter().step_by(sw))
                            {
                                *o = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the `K × P` matrix `col` back into one image gradient `dx` (`[c_in, h, w]`).
fn col2im_add(g: &Conv2dGeometry, col: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (dh, dw) = g.dilation;
    for ci in 0..g.c_in {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for r in 0..g.kh {
            for s in 0..g.kw {
                let row = ((ci * g.kh + r) * g.kw + s) * p;
                let src_rows = &col[row..row + p];
                let (lo, hi) = valid_range(ow, sw, pw, s * dw, g.w);
                if lo >= hi {
                    continue;
                }
                for oy in 0..oh {
                    let iy = (oy * sh + r * dh) as isize - ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = &src_rows[oy * ow + lo..oy * ow + hi];
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let ix0 = lo * sw + s * dw - pw;
                    if sw == 1 {
                        for (d, v) in dst[ix0..ix0 + (hi - lo)].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (d, v) in dst[ix0..].iter_mut().step_by(sw).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// The output columns `lo..hi` whose input column `ox·stride + off - pad` lies in `0..w`.
fn valid_range(ow: usize, stride: usize, pad: usize, off: usize, w: usize) -> (usize, usize) {
    // ix = ox*stride + off - pad >= 0  <=>  ox >= ceil((pad - off) / stride)
    let lo = if pad > off { (pad - off).div_ceil(stride) } else { 0 };
    // ix < w  <=>  ox*stride < w + pad - off
    let lim = w + pad;
    let hi = if lim > off { (lim - off).div_ceil(stride) } else { 0 };
    (lo.min(ow), hi.min(ow).max(lo.min(ow)))
}

/// Runs `f(image_index, scratch)` for every image, in parallel over the batch when worthwhile.
pub(crate) fn for_each_image<F>(g: &Conv2dGeometry, scratch_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    for_each_block(g, 1, scratch_len, |images, s| f(images.start, s));
}

/// Runs `f(images, scratch)` for consecutive blocks of `block` images (the last may be
/// shorter), in parallel over the blocks when worthwhile.
pub(crate) fn for_each_block<F>(g: &Conv2dGeometry, block: usize, scratch_len: usize, f: F)
where
    F: Fn(std::ops::Range<usize>, &mut [f32]) + Sync + Send,
{
    let block = block.max(1);
    let scratch = || Buffer::new(buffer::take(scratch_len));
    if g.n > block && g.flops() >= tunables().conv_par_min_flops && may_parallelize() {
        // A block's result does not depend on which thread computes it.
        for_each_range(g.n, block, scratch, |s, images| f(images, s));
    } else {
        let mut s = scratch();
        for first in (0..g.n).step_by(block) {
            f(first..(first + block).min(g.n), &mut s);
        }
    }
}

/// Forward convolution: `y = conv(x, w) + bias`.
///
/// `x` is `[n, c_in, h, w]`, `w` is `[c_out, c_in, kh, kw]`, `bias` is `[c_out]`, and `y`
/// (`[n, c_out, out_h, out_w]`) is overwritten.
///
/// # Panics
///
/// If the geometry is invalid ([`Conv2dGeometry::validate`]) or a slice length does not match it.
pub fn conv2d_forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    const OP: &str = "conv2d_forward";
    g.assert_valid(OP);
    check_len(OP, "x", x.len(), g.x_len());
    check_len(OP, "w", w.len(), g.w_len());
    check_len(OP, "y", y.len(), g.y_len());
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), g.c_out);
    }
    let (k, p) = (g.k_len(), g.out_h() * g.out_w());
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    if y_img == 0 {
        return;
    }
    let pointwise = g.is_pointwise();
    if may_take(ConvPath::Winograd) && conv_winograd::applicable(g) && taking(ConvPath::Winograd) {
        conv_winograd::forward(g, x, w, bias, y);
        return;
    }
    if may_take(ConvPath::Direct)
        && !pointwise
        && conv_direct::applicable(g)
        && taking(ConvPath::Direct)
    {
        conv_direct::forward(g, x, w, bias, y);
        return;
    }
    if may_take(ConvPath::ImageLanes)
        && !pointwise
        && conv_direct::lanes_applicable(g)
        && (forced_lanes() || conv_direct::lanes_forward_preferred(g))
        && taking(ConvPath::ImageLanes)
    {
        conv_direct::forward_lanes(g, x, w, bias, y);
        return;
    }
    if may_take(ConvPath::DirectRows)
        && !pointwise
        && conv_direct::rows_applicable(g)
        && taking(ConvPath::DirectRows)
    {
        conv_direct::forward_rows(g, x, w, bias, y);
        return;
    }
    taking(ConvPath::Im2col);
    let scratch = if pointwise { 0 } else { k * p };
    let y_ptr = crate::par::SendPtr(y.as_mut_ptr());
    for_each_image(g, scratch, |i, col| {
        // SAFETY: image `i` owns the disjoint range `i*y_img..(i+1)*y_img` of `y`, which
        // `check_len` proved in bounds; `y` stays mutably borrowed for the whole loop.
        let yi = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(i * y_img), y_img) };
        let xi = &x[i * x_img..(i + 1) * x_img];
        let beta = match bias {
            Some(b) => {
                for (row, &bv) in yi.chunks_exact_mut(p).zip(b) {
                    row.fill(bv);
                }
                1.0
            }
            None => 0.0,
        };
        let colm: &[f32] = if pointwise {
            xi
        } else {
            im2col(g, xi, col);
            col
        };
        sgemm(g.c_out, k, p, 1.0, w, k as isize, 1, colm, p as isize, 1, beta, yi, p as isize, 1);
    });
}

/// Gradient of the convolution with respect to its input: `dx` (`[n, c_in, h, w]`) is
/// overwritten with the gradient given `dy` (`[n, c_out, out_h, out_w]`) and the weight `w`.
///
/// # Panics
///
/// If the geometry is invalid ([`Conv2dGeometry::validate`]) or a slice length does not match it.
pub fn conv2d_backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    const OP: &str = "conv2d_backward_input";
    g.assert_valid(OP);
    check_len(OP, "dy", dy.len(), g.y_len());
    check_len(OP, "w", w.len(), g.w_len());
    check_len(OP, "dx", dx.len(), g.x_len());
    let (k, p) = (g.k_len(), g.out_h() * g.out_w());
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    if x_img == 0 {
        return;
    }
    let pointwise = g.is_pointwise();
    if let Some(t) = conv_winograd::backward_input_geometry(g)
        .filter(|_| may_take(ConvPath::Winograd) && taking(ConvPath::Winograd))
    {
        conv_winograd::backward_input(g, &t, dy, w, dx);
        return;
    }
    if let Some(t) = conv_direct::backward_input_geometry(g)
        .filter(|_| !pointwise && may_take(ConvPath::Direct) && taking(ConvPath::Direct))
    {
        conv_direct::backward_input(g, &t, dy, w, dx);
        return;
    }
    if !pointwise
        && may_take(ConvPath::ImageLanes)
        && conv_direct::lanes_applicable(g)
        && (forced_lanes() || conv_direct::lanes_input_preferred(g))
        && taking(ConvPath::ImageLanes)
    {
        conv_direct::backward_input_lanes(g, dy, w, dx);
        return;
    }
    if !pointwise
        && may_take(ConvPath::DirectRows)
        && conv_direct::rows_input_applicable(g)
        && taking(ConvPath::DirectRows)
    {
        conv_direct::backward_input_rows(g, dy, w, dx);
        return;
    }
    taking(ConvPath::Im2col);
    let scratch = if pointwise { 0 } else { k * p };
    let dx_ptr = crate::par::SendPtr(dx.as_mut_ptr());
    for_each_image(g, scratch, |i, col| {
        // SAFETY: image `i` owns the disjoint range `i*x_img..(i+1)*x_img` of `dx`, in bounds
        // by `check_len`; `dx` stays mutably borrowed for the whole loop.
        let dxi = unsafe { std::slice::from_raw_parts_mut(dx_ptr.get().add(i * x_img), x_img) };
        let dyi = &dy[i * y_img..(i + 1) * y_img];
        if pointwise {
            // dx_i (c_in × P) = Wᵀ (c_in × c_out) · dy_i (c_out × P)
            sgemm(
                g.c_in, g.c_out, p, 1.0, w, 1, k as isize, dyi, p as isize, 1, 0.0, dxi,
                p as isize, 1,
            );
        } else {
            sgemm(
                k, g.c_out, p, 1.0, w, 1, k as isize, dyi, p as isize, 1, 0.0, col, p as isize, 1,
            );
            dxi.fill(0.0);
            col2im_add(g, col, dxi);
        }
    });
}

/// Gradient of the convolution with respect to its weight and bias: `dw` (`[c_out, c_in, kh,
/// kw]`) and `db` (`[c_out]`) are overwritten, given the input `x` and the output gradient `dy`.
///
/// # Panics
///
/// If the geometry is invalid ([`Conv2dGeometry::validate`]) or a slice length does not match it.
pub fn conv2d_backward_weight(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    const OP: &str = "conv2d_backward_weight";
    g.assert_valid(OP);
    check_len(OP, "x", x.len(), g.x_len());
    check_len(OP, "dy", dy.len(), g.y_len());
    check_len(OP, "dw", dw.len(), g.w_len());
    let (k, p) = (g.k_len(), g.out_h() * g.out_w());
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * p);
    let chunks = if g.n > 1 && g.flops() >= tunables().conv_par_min_flops && may_parallelize() {
        rayon::current_num_threads().min(g.n)
    } else {
        1
    };
    if let Some(db) = &db {
        check_len(OP, "db", db.len(), g.c_out);
    }
    // The Winograd and direct paths sum the bias gradient too, per chunk of images, while each
    // image's dy is in cache.
    if may_take(ConvPath::Winograd) && conv_winograd::applicable(g) && taking(ConvPath::Winograd) {
        conv_winograd::backward_weight(g, x, dy, dw, db, chunks);
        return;
    }
    // The direct kernel copies `dy` channels-last for every image, which only pays off when each
    // element of `dy` then meets enough taps (measured: 288 taps gain 1.5x, 27 taps lose 2x),
    // and it needs whole vectors of 16 output channels; the rows kernel takes everything else
    // (LeNet's 1 → 10 k9 layer: 81 taps, 10 channels, 1.8x faster on rows than on channel
    // vectors padded to 16), unless a thread forces one of them.
    let direct_taps = crate::path::forced_conv().is_some() || k >= 64;
    if may_take(ConvPath::Direct)
        && direct_taps
        && !g.is_pointwise()
        && conv_direct::applicable(g)
        && taking(ConvPath::Direct)
    {
        conv_direct::backward_weight(g, x, dy, dw, db, chunks);
        return;
    }
    if may_take(ConvPath::ImageLanes)
        && !g.is_pointwise()
        && conv_direct::lanes_applicable(g)
        && (forced_lanes() || conv_direct::lanes_weight_preferred(g))
        && taking(ConvPath::ImageLanes)
    {
        conv_direct::backward_weight_lanes(g, x, dy, dw, db, chunks);
        return;
    }
    if may_take(ConvPath::DirectRows)
        && !g.is_pointwise()
        && conv_direct::rows_applicable(g)
        && taking(ConvPath::DirectRows)
    {
        conv_direct::backward_weight_rows(g, x, dy, dw, db, chunks);
        return;
    }
    taking(ConvPath::Im2col);
    if let Some(db) = db {
        for (co, d) in db.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for i in 0..g.n {
                let s = i * y_img + co * p;
                acc += crate::simd::sum_lanes(&dy[s..s + p]);
            }
            *d = acc;
        }
    }
    // dW (c_out × K) = Σ_i dy_i (c_out × P) · col_iᵀ (P × K). Images are taken `group` at a
    // time: their `dy` and patch matrices are laid side by side, so that one GEMM with a long
    // inner dimension `group·P` replaces `group` short ones (P is only 196 at 14x14).
    let group = (tunables().conv_dw_group_cols / p.max(1)).clamp(1, g.n.max(1));
    let accumulate = |range: std::ops::Range<usize>, dw_part: &mut [f32], scratch: &mut [f32]| {
        let mut first = true;
        let mut s = range.start;
        while s < range.end {
            let e = (s + group).min(range.end);
            let cols = (e - s) * p;
            let (dy_cat, col_cat) = scratch.split_at_mut(g.c_out * group * p);
            let (dy_cat, col_cat) = (&mut dy_cat[..g.c_out * cols], &mut col_cat[..k * cols]);
            for (b, i) in (s..e).enumerate() {
                let dyi = &dy[i * y_img..(i + 1) * y_img];
                for co in 0..g.c_out {
                    dy_cat[co * cols + b * p..co * cols + (b + 1) * p]
                        .copy_from_slice(&dyi[co * p..(co + 1) * p]);
                }
                im2col_ld(g, &x[i * x_img..(i + 1) * x_img], &mut col_cat[b * p..], cols);
            }
            let beta = if first { 0.0 } else { 1.0 };
            sgemm(
                g.c_out,
                cols,
                k,
                1.0,
                dy_cat,
                cols as isize,
                1,
                col_cat,
                1,
                cols as isize,
                beta,
                dw_part,
                k as isize,
                1,
            );
            first = false;
            s = e;
        }
    };
    if g.n == 0 || p == 0 {
        dw.fill(0.0);
        return;
    }
    let scratch_len = (g.c_out + k) * group * p;
    if chunks == 1 {
        accumulate(0..g.n, dw, &mut Buffer::new(buffer::take(scratch_len)));
        return;
    }
    let per = g.n.div_ceil(chunks);
    let carry = Carry::here();
    let parts: Vec<Buffer> = (0..g.n)
        .step_by(per)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|s| {
            let _paths = carry.enter();
            let mut part = Buffer::new(buffer::take(dw.len()));
            accumulate(
                s..(s + per).min(g.n),
                &mut part,
                &mut Buffer::new(buffer::take(scratch_len)),
            );
            part
        })
        .collect();
    dw.copy_from_slice(&parts[0]);
    for part in &parts[1..] {
        for (d, v) in dw.iter_mut().zip(part.iter()) {
            *d += v;
        }
    }
}
