//! 2-D max and average pooling over NCHW images, forward and backward.
//!
//! Semantics follow PyTorch's `max_pool2d` / `avg_pool2d` in floor mode: padding is implicit
//! (minus infinity for max, zero for average), the average divides by `kh·kw` including padded
//! cells (`count_include_pad = true`), and a NaN in a max-pooling window wins, as in PyTorch.
//!
//! Every `(n, c)` plane is independent, so the kernels run over planes in parallel when the input
//! is large, and results never depend on the thread count. Pooling does a handful of operations
//! per byte, so it is bound by memory bandwidth; the 2x2 stride-2 unpadded case, by far the most
//! common, has its own loop without bounds logic.

use crate::error::KernelError;
use crate::par::{for_each_piece_mut, for_each_range, may_parallelize, SendPtr};
use crate::simd::multiversion;
use crate::tune::tunables;

/// The shape of a 2-D pooling: input `[n, c, h, w]`, output `[n, c, out_h, out_w]`. Pairs are
/// `(vertical, horizontal)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Implicit padding on each side (vertical, horizontal).
    pub padding: (usize, usize),
}

impl Pool2dGeometry {
    /// Output height `(h + 2·pad - kh) / stride + 1` (floor mode; 0 if the window does not fit).
    pub fn out_h(&self) -> usize {
        out_len(self.h, self.kh, self.stride.0, self.padding.0)
    }

    /// Output width `(w + 2·pad - kw) / stride + 1` (floor mode; 0 if the window does not fit).
    pub fn out_w(&self) -> usize {
        out_len(self.w, self.kw, self.stride.1, self.padding.1)
    }

    /// Input length `n·c·h·w`.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Output length `n·c·out_h·out_w`.
    pub fn y_len(&self) -> usize {
        self.n * self.c * self.out_h() * self.out_w()
    }

    /// Checks the geometry as PyTorch does.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidGeometry`] if the window is empty, a stride is 0, padding exceeds
    /// half the window, or the window is larger than the padded input.
    pub fn validate(&self) -> Result<(), KernelError> {
        let bad = |reason: String| Err(KernelError::InvalidGeometry { op: "pool2d", reason });
        if self.kh == 0 || self.kw == 0 {
            return bad(format!("window must be non-empty, got {}x{}", self.kh, self.kw));
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return bad(format!("stride must be positive, got {:?}", self.stride));
        }
        if 2 * self.padding.0 > self.kh || 2 * self.padding.1 > self.kw {
            return bad(format!(
                "padding {:?} exceeds half the window {}x{}",
                self.padding, self.kh, self.kw
            ));
        }
        if self.kh > self.h + 2 * self.padding.0 || self.kw > self.w + 2 * self.padding.1 {
            return bad(format!(
                "window {}x{} larger than padded input {}x{}",
                self.kh,
                self.kw,
                self.h + 2 * self.padding.0,
                self.w + 2 * self.padding.1
            ));
        }
        Ok(())
    }

    fn assert_valid(&self, op: &str) {
        if let Err(e) = self.validate() {
            panic!("{op}: {e}");
        }
    }

    fn is_2x2_s2(&self) -> bool {
        self.kh == 2 && self.kw == 2 && self.stride == (2, 2) && self.padding == (0, 0)
    }
}

fn out_len(len: usize, k: usize, stride: usize, pad: usize) -> usize {
    let padded = len + 2 * pad;
    if stride == 0 || k == 0 || k > padded {
        0
    } else {
        (padded - k) / stride + 1
    }
}

fn check_len(op: &str, what: &str, got: usize, want: usize) {
    assert!(got == want, "{op}: {what} has {got} elements, geometry needs {want}");
}

/// The input rows (or columns) `lo..hi` covered by the window at output position `o`.
#[inline]
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).max(0) as usize).min(len);
    (lo, hi)
}

/// Planes per range of the parallel loop: enough that each range moves a few tens of kilobytes.
fn planes_per_task(plane: usize) -> usize {
    (16384 / plane.max(1)).max(1)
}

/// Max pooling forward: `y` gets each window's maximum and `argmax` its flat index `iy·w + ix`
/// within the `(n, c)` input plane (the first maximum in row-major order; a NaN wins).
///
/// # Panics
///
/// If the geometry is invalid ([`Pool2dGeometry::validate`]) or a slice length does not match it.
pub fn max_pool2d_forward(g: &Pool2dGeometry, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    const OP: &str = "max_pool2d_forward";
    g.assert_valid(OP);
    check_len(OP, "x", x.len(), g.x_len());
    check_len(OP, "y", y.len(), g.y_len());
    check_len(OP, "argmax", argmax.len(), g.y_len());
    assert!(g.h * g.w <= u32::MAX as usize, "{OP}: plane of {}x{} too large for u32", g.h, g.w);
    let (oh, ow) = (g.out_h(), g.out_w());
    let (xp, yp) = (g.h * g.w, oh * ow);
    let run = |idx: usize, yo: &mut [f32], am: &mut [u32], scratch: &mut (Vec<f32>, Vec<u32>)| {
        let xi = &x[idx * xp..(idx + 1) * xp];
        if g.is_2x2_s2() {
            max_2x2(xi, g.w, oh, ow, yo, am, &mut scratch.0, &mut scratch.1);
        } else {
            max_general(g, xi, oh, ow, yo, am);
        }
    };
    if yp == 0 {
        return;
    }
    if g.x_len() >= tunables().pool_par_min_elems && may_parallelize() {
        let (y_ptr, am_ptr) = (SendPtr(y.as_mut_ptr()), SendPtr(argmax.as_mut_ptr()));
        let scratch = || (Vec::new(), Vec::new());
        for_each_range(g.n * g.c, planes_per_task(xp), scratch, |scratch, planes| {
            for idx in planes {
                // SAFETY: plane `idx` owns the disjoint ranges `idx*yp..(idx+1)*yp` of `y` and
                // `argmax`, in bounds by `check_len`; both stay borrowed until the loop returns.
                let (yo, am) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(y_ptr.get().add(idx * yp), yp),
                        std::slice::from_raw_parts_mut(am_ptr.get().add(idx * yp), yp),
                    )
                };
                run(idx, yo, am, scratch);
            }
        });
    } else {
        let mut scratch = (Vec::new(), Vec::new());
        for (idx, (yo, am)) in y.chunks_exact_mut(yp).zip(argmax.chunks_exact_mut(yp)).enumerate() {
            run(idx, yo, am, &mut scratch);
        }
    }
}

#[inline(always)]
fn better(v: f32, best: f32) -> bool {
    // Non-short-circuit `|` and `&` keep this a select, not a branch.
    (v > best) | (v.is_nan() & !best.is_nan())
}

multiversion! {
    /// 2x2 stride-2 windows without padding, in two branch-free passes that vectorise: first the
    /// best of each horizontal pair over all used rows as one flat loop (when the width is even
    /// the rows are contiguous), then the better of each vertically adjacent pair. Taking the
    /// left cell unless the right is better, then the top unless the bottom is better, picks the
    /// same cell as a row-major scan: the first maximum, or the first NaN.
    fn max_2x2(x: &[f32], w: usize, oh: usize, ow: usize, y: &mut [f32], am: &mut [u32],
               hv: &mut Vec<f32>, hi: &mut Vec<u32>) {
        let rows = 2 * oh;
        hv.resize(rows * ow, 0.0);
        hi.resize(rows * ow, 0);
        let pair = |src: &[f32], v: &mut [f32], i: &mut [u32]| {
            for ((p, vv), ii) in src.chunks_exact(2).zip(v.iter_mut()).zip(i.iter_mut()) {
                let t = better(p[1], p[0]);
                *vv = if t { p[1] } else { p[0] };
                *ii = t as u32;
            }
        };
        if w == 2 * ow {
            pair(&x[..rows * w], hv, hi);
        } else {
            for r in 0..rows {
                pair(&x[r * w..r * w + 2 * ow], &mut hv[r * ow..(r + 1) * ow],
                     &mut hi[r * ow..(r + 1) * ow]);
            }
        }
        let w32 = w as u32;
        for oy in 0..oh {
            let (top, bot) = hv[2 * oy * ow..(2 * oy + 2) * ow].split_at(ow);
            let (itop, ibot) = hi[2 * oy * ow..(2 * oy + 2) * ow].split_at(ow);
            let yo = &mut y[oy * ow..(oy + 1) * ow];
            let ao = &mut am[oy * ow..(oy + 1) * ow];
            let base = (2 * oy * w) as u32;
            for ox in 0..ow {
                let t = better(bot[ox], top[ox]);
                yo[ox] = if t { bot[ox] } else { top[ox] };
                let off = if t { w32 + ibot[ox] } else { itop[ox] };
                ao[ox] = base + 2 * ox as u32 + off;
            }
        }
    }
}

fn max_general(g: &Pool2dGeometry, x: &[f32], oh: usize, ow: usize, y: &mut [f32], am: &mut [u32]) {
    for oy in 0..oh {
        let (y0, y1) = window(oy, g.stride.0, g.padding.0, g.kh, g.h);
        for ox in 0..ow {
            let (x0, x1) = window(ox, g.stride.1, g.padding.1, g.kw, g.w);
            let (mut best, mut at) = (f32::NEG_INFINITY, (y0 * g.w + x0) as u32);
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let v = x[iy * g.w + ix];
                    if better(v, best) {
                        (best, at) = (v, (iy * g.w + ix) as u32);
                    }
                }
            }
            y[oy * ow + ox] = best;
            am[oy * ow + ox] = at;
        }
    }
}

/// Max pooling backward: `dx` is overwritten with zeros plus each `dy` added at its window's
/// arg-max (overlapping windows add up).
///
/// # Panics
///
/// If the geometry is invalid, a slice length does not match it, or an arg-max index lies
/// outside its plane.
pub fn max_pool2d_backward(g: &Pool2dGeometry, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    const OP: &str = "max_pool2d_backward";
    g.assert_valid(OP);
    check_len(OP, "dy", dy.len(), g.y_len());
    check_len(OP, "argmax", argmax.len(), g.y_len());
    check_len(OP, "dx", dx.len(), g.x_len());
    let (xp, yp) = (g.h * g.w, g.out_h() * g.out_w());
    let pairs: Vec<(&[f32], &[u32])> =
        dy.chunks_exact(yp.max(1)).zip(argmax.chunks_exact(yp.max(1))).collect();
    if xp == 0 {
        return;
    }
    let run = |plane: usize, dxp: &mut [f32]| {
        dxp.fill(0.0);
        if yp == 0 {
            return;
        }
        let (d, a) = pairs[plane];
        for (&v, &i) in d.iter().zip(a) {
            dxp[i as usize] += v;
        }
    };
    if g.x_len() >= tunables().pool_par_min_elems && may_parallelize() {
        for_each_piece_mut(dx, xp, planes_per_task(xp), run);
    } else {
        for (plane, dxp) in dx.chunks_exact_mut(xp).enumerate() {
            run(plane, dxp);
        }
    }
}

/// Average pooling forward: each output is the sum of its window divided by `kh·kw` (padded
/// cells count as zeros, PyTorch's `count_include_pad = true`).
///
/// # Panics
///
/// If the geometry is invalid ([`Pool2dGeometry::validate`]) or a slice length does not match it.
pub fn avg_pool2d_forward(g: &Pool2dGeometry, x: &[f32], y: &mut [f32]) {
    const OP: &str = "avg_pool2d_forward";
    g.assert_valid(OP);
    check_len(OP, "x", x.len(), g.x_len());
    check_len(OP, "y", y.len(), g.y_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    let (xp, yp) = (g.h * g.w, oh * ow);
    if yp == 0 {
        return;
    }
    let scale = 1.0 / (g.kh * g.kw) as f32;
    let run = |plane: usize, yo: &mut [f32]| {
        let xi = &x[plane * xp..(plane + 1) * xp];
        if g.is_2x2_s2() {
            for oy in 0..oh {
                let r0 = &xi[2 * oy * g.w..];
                let r1 = &xi[(2 * oy + 1) * g.w..];
                for ox in 0..ow {
                    let s = (r0[2 * ox] + r0[2 * ox + 1]) + (r1[2 * ox] + r1[2 * ox + 1]);
                    yo[oy * ow + ox] = s * scale;
                }
            }
            return;
        }
        for oy in 0..oh {
            let (y0, y1) = window(oy, g.stride.0, g.padding.0, g.kh, g.h);
            for ox in 0..ow {
                let (x0, x1) = window(ox, g.stride.1, g.padding.1, g.kw, g.w);
                let mut s = 0.0f32;
                for iy in y0..y1 {
                    for v in &xi[iy * g.w + x0..iy * g.w + x1] {
                        s += v;
                    }
                }
                yo[oy * ow + ox] = s * scale;
            }
        }
    };
    if g.x_len() >= tunables().pool_par_min_elems && may_parallelize() {
        for_each_piece_mut(y, yp, planes_per_task(xp), run);
    } else {
        for (plane, yo) in y.chunks_exact_mut(yp).enumerate() {
            run(plane, yo);
        }
    }
}

/// Average pooling backward: `dx` is overwritten; each `dy` is spread as `dy / (kh·kw)` over the
/// non-padded cells of its window (overlapping windows add up).
///
/// # Panics
///
/// If the geometry is invalid ([`Pool2dGeometry::validate`]) or a slice length does not match it.
pub fn avg_pool2d_backward(g: &Pool2dGeometry, dy: &[f32], dx: &mut [f32]) {
    const OP: &str = "avg_pool2d_backward";
    g.assert_valid(OP);
    check_len(OP, "dy", dy.len(), g.y_len());
    check_len(OP, "dx", dx.len(), g.x_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    let (xp, yp) = (g.h * g.w, oh * ow);
    if xp == 0 {
        return;
    }
    let scale = 1.0 / (g.kh * g.kw) as f32;
    let run = |plane: usize, dxp: &mut [f32]| {
        dxp.fill(0.0);
        if yp == 0 {
            return;
        }
        let d = &dy[plane * yp..(plane + 1) * yp];
        if g.is_2x2_s2() {
            // Windows tile the plane without overlap: each cell gets one value.
            for oy in 0..oh {
                let drow = &d[oy * ow..(oy + 1) * ow];
                for r in 0..2 {
                    let row = &mut dxp[(2 * oy + r) * g.w..(2 * oy + r) * g.w + 2 * ow];
                    for (pair, &v) in row.chunks_exact_mut(2).zip(drow) {
                        pair[0] = v * scale;
                        pair[1] = v * scale;
                    }
                }
            }
            return;
        }
        for oy in 0..oh {
            let (y0, y1) = window(oy, g.stride.0, g.padding.0, g.kh, g.h);
            for ox in 0..ow {
                let (x0, x1) = window(ox, g.stride.1, g.padding.1, g.kw, g.w);
                let v = d[oy * ow + ox] * scale;
                for iy in y0..y1 {
                    for c in &mut dxp[iy * g.w + x0..iy * g.w + x1] {
                        *c += v;
                    }
                }
            }
        }
    };
    if g.x_len() >= tunables().pool_par_min_elems && may_parallelize() {
        for_each_piece_mut(dx, xp, planes_per_task(xp), run);
    } else {
        for (plane, dxp) in dx.chunks_exact_mut(xp).enumerate() {
            run(plane, dxp);
        }
    }
}
