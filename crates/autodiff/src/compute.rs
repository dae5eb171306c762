//! The one door to heavy compute: GEMM, conv2d and pooling. Ops call these functions and
//! nothing else for heavy loops, so the kernels behind them change in one place.
//!
//! The conv and pooling functions have exactly the signatures of `tapestry-kernels`: every
//! buffer is a dense NCHW slice, backward functions overwrite their outputs.

/// `C (+)= A·B` for an m×k `A` and a k×n `B` given by element strides (so a transpose is a
/// swap of strides); `C` is m×n with strides `(rsc, csc)`. With `accumulate` false, `C` is
/// overwritten.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    (rsc, csc): (usize, usize),
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let c_ij = &mut c[i * rsc + j * csc];
            if !accumulate {
                *c_ij = 0.0;
            }
        }
        for p in 0..k {
            let a_ip = a[i * rsa + p * csa];
            for j in 0..n {
                c[i * rsc + j * csc] += a_ip * b[p * rsb + j * csb];
            }
        }
    }
}

/// The shape of one 2-D convolution: input `[n, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`,
/// output `[n, c_out, out_h, out_w]`.
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
    /// Step between windows (rows, columns).
    pub stride: (usize, usize),
    /// Zeros added on each side (rows, columns).
    pub padding: (usize, usize),
    /// Step between kernel taps (rows, columns).
    pub dilation: (usize, usize),
}

/// `(size + 2·pad − dilation·(k − 1) − 1) / stride + 1`, or 0 if the window does not fit.
fn out_len(size: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    let span = dilation * (k - 1) + 1;
    if size + 2 * pad < span {
        0
    } else {
        (size + 2 * pad - span) / stride + 1
    }
}

/// The input coordinate of output position `o`, tap `k`, or `None` if it falls in the padding.
#[inline]
fn tap(
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    size: usize,
) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(pad).filter(|&i| i < size)
}

impl Conv2dGeometry {
    /// Output height.
    pub fn out_h(&self) -> usize {
        out_len(self.h, self.kh, self.stride.0, self.padding.0, self.dilation.0)
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        out_len(self.w, self.kw, self.stride.1, self.padding.1, self.dilation.1)
    }

    /// Visits every (output position, input position) pair of one kernel tap `(ki, kj)` that
    /// does not fall in the padding, as flat offsets within one output and one input plane.
    #[inline]
    fn for_each_tap(&self, ki: usize, kj: usize, mut f: impl FnMut(usize, usize)) {
        let (ow, (sh, sw), (ph, pw), (dh, dw)) =
            (self.out_w(), self.stride, self.padding, self.dilation);
        for oh in 0..self.out_h() {
            let Some(ih) = tap(oh, ki, sh, ph, dh, self.h) else { continue };
            for ox in 0..ow {
                if let Some(ix) = tap(ox, kj, sw, pw, dw, self.w) {
                    f(oh * ow + ox, ih * self.w + ix);
                }
            }
        }
    }
}

/// `y = conv2d(x, w) + bias`, overwriting `y` (`[n, c_out, out_h, out_w]`).
pub(crate) fn conv2d_forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let (plane_in, plane_out) = (g.h * g.w, g.out_h() * g.out_w());
    for n in 0..g.n {
        for o in 0..g.c_out {
            let y_plane = &mut y[(n * g.c_out + o) * plane_out..][..plane_out];
            y_plane.fill(bias.map_or(0.0, |b| b[o]));
            for c in 0..g.c_in {
                let x_plane = &x[(n * g.c_in + c) * plane_in..][..plane_in];
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let wv = w[((o * g.c_in + c) * g.kh + ki) * g.kw + kj];
                        g.for_each_tap(ki, kj, |yo, xi| y_plane[yo] += wv * x_plane[xi]);
                    }
                }
            }
        }
    }
}

/// `dx = ∂⟨y, dy⟩/∂x`: the transposed convolution of `dy` with `w`, overwriting `dx`.
pub(crate) fn conv2d_backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (plane_in, plane_out) = (g.h * g.w, g.out_h() * g.out_w());
    dx.fill(0.0);
    for n in 0..g.n {
        for c in 0..g.c_in {
            let dx_plane = &mut dx[(n * g.c_in + c) * plane_in..][..plane_in];
            for o in 0..g.c_out {
                let dy_plane = &dy[(n * g.c_out + o) * plane_out..][..plane_out];
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let wv = w[((o * g.c_in + c) * g.kh + ki) * g.kw + kj];
                        g.for_each_tap(ki, kj, |yo, xi| dx_plane[xi] += wv * dy_plane[yo]);
                    }
                }
            }
        }
    }
}

/// `dw = ∂⟨y, dy⟩/∂w` and `db = Σ dy` over batch and positions, overwriting both.
pub(crate) fn conv2d_backward_weight(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (plane_in, plane_out) = (g.h * g.w, g.out_h() * g.out_w());
    dw.fill(0.0);
    for n in 0..g.n {
        for o in 0..g.c_out {
            let dy_plane = &dy[(n * g.c_out + o) * plane_out..][..plane_out];
            for c in 0..g.c_in {
                let x_plane = &x[(n * g.c_in + c) * plane_in..][..plane_in];
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let mut acc = 0.0f32;
                        g.for_each_tap(ki, kj, |yo, xi| acc += dy_plane[yo] * x_plane[xi]);
                        dw[((o * g.c_in + c) * g.kh + ki) * g.kw + kj] += acc;
                    }
                }
            }
        }
    }
    if let Some(db) = db {
        db.fill(0.0);
        for n in 0..g.n {
            for (o, b) in db.iter_mut().enumerate() {
                *b += dy[(n * g.c_out + o) * plane_out..][..plane_out].iter().sum::<f32>();
            }
        }
    }
}

/// The shape of one 2-D pooling: input `[n, c, h, w]`, output `[n, c, out_h, out_w]`, windows
/// of `kh × kw` (floor mode: a window that would start past the padded input is dropped).
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
    /// Step between windows (rows, columns).
    pub stride: (usize, usize),
    /// Padding on each side (rows, columns): `-inf` for max, zeros for average.
    pub padding: (usize, usize),
}

impl Pool2dGeometry {
    /// Output height.
    pub fn out_h(&self) -> usize {
        out_len(self.h, self.kh, self.stride.0, self.padding.0, 1)
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        out_len(self.w, self.kw, self.stride.1, self.padding.1, 1)
    }

    /// Calls `f(output offset, input offsets of the window)` for every output of one plane;
    /// padding positions are left out of the window.
    #[inline]
    fn for_each_window(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        let ((sh, sw), (ph, pw), ow) = (self.stride, self.padding, self.out_w());
        for oh in 0..self.out_h() {
            for ox in 0..ow {
                let mut window = (0..self.kh)
                    .filter_map(move |ki| tap(oh, ki, sh, ph, 1, self.h))
                    .flat_map(move |ih| {
                        (0..self.kw)
                            .filter_map(move |kj| tap(ox, kj, sw, pw, 1, self.w))
                            .map(move |ix| ih * self.w + ix)
                    });
                f(oh * ow + ox, &mut window);
            }
        }
    }

    fn planes(&self) -> (usize, usize, usize) {
        (self.n * self.c, self.h * self.w, self.out_h() * self.out_w())
    }
}

/// Max over each window, overwriting `y`; `argmax` gets the winner's flat index within its
/// `h × w` input plane (the first one on ties). Every window must hold at least one input
/// position (padding at most half the window).
pub(crate) fn max_pool2d_forward(g: &Pool2dGeometry, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (planes, plane_in, plane_out) = g.planes();
    for p in 0..planes {
        let x_plane = &x[p * plane_in..][..plane_in];
        let (y_plane, a_plane) =
            (&mut y[p * plane_out..][..plane_out], &mut argmax[p * plane_out..][..plane_out]);
        g.for_each_window(|o, window| {
            let (mut best, mut best_at) = (f32::NEG_INFINITY, u32::MAX);
            for i in window {
                let v = x_plane[i];
                if best_at == u32::MAX || v > best || v.is_nan() {
                    (best, best_at) = (v, i as u32);
                }
            }
            y_plane[o] = best;
            a_plane[o] = best_at;
        });
    }
}

/// Routes each `dy` to the input position recorded in `argmax`, overwriting `dx`.
pub(crate) fn max_pool2d_backward(g: &Pool2dGeometry, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let (planes, plane_in, plane_out) = g.planes();
    dx.fill(0.0);
    for p in 0..planes {
        let dx_plane = &mut dx[p * plane_in..][..plane_in];
        for (d, &a) in
            dy[p * plane_out..][..plane_out].iter().zip(&argmax[p * plane_out..][..plane_out])
        {
            dx_plane[a as usize] += d;
        }
    }
}

/// Mean over each window, padding counted as zeros (divisor `kh·kw`), overwriting `y`.
pub(crate) fn avg_pool2d_forward(g: &Pool2dGeometry, x: &[f32], y: &mut [f32]) {
    let (planes, plane_in, plane_out) = g.planes();
    let inv = 1.0 / (g.kh * g.kw) as f32;
    for p in 0..planes {
        let x_plane = &x[p * plane_in..][..plane_in];
        let y_plane = &mut y[p * plane_out..][..plane_out];
        g.for_each_window(|o, window| y_plane[o] = window.map(|i| x_plane[i]).sum::<f32>() * inv);
    }
}

/// Spreads each `dy / (kh·kw)` over its window, overwriting `dx`.
pub(crate) fn avg_pool2d_backward(g: &Pool2dGeometry, dy: &[f32], dx: &mut [f32]) {
    let (planes, plane_in, plane_out) = g.planes();
    let inv = 1.0 / (g.kh * g.kw) as f32;
    dx.fill(0.0);
    for p in 0..planes {
        let dy_plane = &dy[p * plane_out..][..plane_out];
        let dx_plane = &mut dx[p * plane_in..][..plane_in];
        g.for_each_window(|o, window| {
            for i in window {
                dx_plane[i] += dy_plane[o] * inv;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! The loops above against direct formulas, written the slow and obvious way: each output
    //! element (or input gradient) computed on its own from the definition, in f64.
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // A small deterministic generator with distinct values (no ties for max pooling).
        (0..len)
            .map(|i| (((i as u32 * 7919 + seed * 104_729) % 1013) as f32 / 1013.0) - 0.5)
            .collect()
    }

    fn idx4(d: [usize; 4], i: [usize; 4]) -> usize {
        ((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3]
    }

    /// x at a padded position: zero outside the input.
    fn padded(x: &[f32], d: [usize; 4], n: usize, c: usize, ih: isize, iw: isize) -> f64 {
        if ih < 0 || iw < 0 || ih >= d[2] as isize || iw >= d[3] as isize {
            0.0
        } else {
            x[idx4(d, [n, c, ih as usize, iw as usize])] as f64
        }
    }

    fn close(name: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{name}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{name}[{i}]: got {g}, want {w}"
            );
        }
    }

    fn geometries() -> Vec<Conv2dGeometry> {
        let g = |n, c_in, h, w, c_out, kh, kw, stride, padding, dilation| Conv2dGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            padding,
            dilation,
        };
        vec![
            g(2, 3, 5, 6, 4, 3, 3, (1, 1), (0, 0), (1, 1)),
            g(1, 2, 7, 5, 3, 3, 2, (2, 1), (2, 1), (1, 1)),
            g(2, 1, 9, 8, 2, 3, 3, (2, 3), (1, 2), (2, 2)),
            g(3, 4, 4, 3, 5, 1, 1, (1, 1), (0, 0), (1, 1)),
            g(1, 2, 6, 6, 1, 2, 3, (3, 2), (1, 2), (1, 2)),
        ]
    }

    #[test]
    fn conv2d_matches_direct_formula() {
        for (case, g) in geometries().into_iter().enumerate() {
            let (oh, ow) = (g.out_h(), g.out_w());
            let xd = [g.n, g.c_in, g.h, g.w];
            let wd = [g.c_out, g.c_in, g.kh, g.kw];
            let yd = [g.n, g.c_out, oh, ow];
            let x = data(xd.iter().product(), 1);
            let w = data(wd.iter().product(), 2);
            let b = data(g.c_out, 3);
            let dy = data(yd.iter().product(), 4);
            let at = |o: usize, k: usize, s: usize, p: usize, d: usize| {
                (o * s + k * d) as isize - p as isize
            };

            // y[n,o,i,j] = b[o] + Σ_{c,ki,kj} w[o,c,ki,kj] · x[n,c,i·s−p+ki·d, j·s−p+kj·d]
            let mut want_y = vec![0.0f64; yd.iter().product()];
            for n in 0..g.n {
                for o in 0..g.c_out {
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = b[o] as f64;
                            for c in 0..g.c_in {
                                for ki in 0..g.kh {
                                    for kj in 0..g.kw {
                                        let ih = at(i, ki, g.stride.0, g.padding.0, g.dilation.0);
                                        let iw = at(j, kj, g.stride.1, g.padding.1, g.dilation.1);
                                        acc += w[idx4(wd, [o, c, ki, kj])] as f64
                                            * padded(&x, xd, n, c, ih, iw);
                                    }
                                }
                            }
                            want_y[idx4(yd, [n, o, i, j])] = acc;
                        }
                    }
                }
            }
            let mut y = vec![f32::NAN; want_y.len()];
            conv2d_forward(&g, &x, &w, Some(&b), &mut y);
            close(&format!("conv y case {case}"), &y, &want_y);

            // dx[n,c,h,v] = Σ over (o,ki,kj,i,j) whose tap lands on (h,v) of w · dy (a gather).
            let mut want_dx = vec![0.0f64; x.len()];
            for n in 0..g.n {
                for c in 0..g.c_in {
                    for h in 0..g.h {
                        for v in 0..g.w {
                            let mut acc = 0.0;
                            for o in 0..g.c_out {
                                for ki in 0..g.kh {
                                    for kj in 0..g.kw {
                                        for i in 0..oh {
                                            for j in 0..ow {
                                                let ih = at(
                                                    i,
                                                    ki,
                                                    g.stride.0,
                                                    g.padding.0,
                                                    g.dilation.0,
                                                );
                                                let iw = at(
                                                    j,
                                                    kj,
                                                    g.stride.1,
                                                    g.padding.1,
                                                    g.dilation.1,
                                                );
                                                if ih == h as isize && iw == v as isize {
                                                    acc += w[idx4(wd, [o, c, ki, kj])] as f64
                                                        * dy[idx4(yd, [n, o, i, j])] as f64;
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                            want_dx[idx4(xd, [n, c, h, v])] = acc;
                        }
                    }
                }
            }
            let mut dx = vec![f32::NAN; x.len()];
            conv2d_backward_input(&g, &dy, &w, &mut dx);
            close(&format!("conv dx case {case}"), &dx, &want_dx);

            // dw[o,c,ki,kj] = Σ_{n,i,j} dy[n,o,i,j] · x[n,c,tap]; db[o] = Σ_{n,i,j} dy[n,o,i,j].
            let mut want_dw = vec![0.0f64; w.len()];
            let mut want_db = vec![0.0f64; g.c_out];
            for o in 0..g.c_out {
                for n in 0..g.n {
                    for i in 0..oh {
                        for j in 0..ow {
                            let d = dy[idx4(yd, [n, o, i, j])] as f64;
                            want_db[o] += d;
                            for c in 0..g.c_in {
                                for ki in 0..g.kh {
                                    for kj in 0..g.kw {
                                        let ih = at(i, ki, g.stride.0, g.padding.0, g.dilation.0);
                                        let iw = at(j, kj, g.stride.1, g.padding.1, g.dilation.1);
                                        want_dw[idx4(wd, [o, c, ki, kj])] +=
                                            d * padded(&x, xd, n, c, ih, iw);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let (mut dw, mut db) = (vec![f32::NAN; w.len()], vec![f32::NAN; g.c_out]);
            conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db));
            close(&format!("conv dw case {case}"), &dw, &want_dw);
            close(&format!("conv db case {case}"), &db, &want_db);
        }
    }

    #[test]
    fn conv2d_output_size() {
        let g = Conv2dGeometry {
            n: 1,
            c_in: 1,
            h: 32,
            w: 31,
            c_out: 1,
            kh: 5,
            kw: 3,
            stride: (2, 3),
            padding: (2, 1),
            dilation: (1, 2),
        };
        // PyTorch: floor((32 + 4 − 4 − 1) / 2) + 1 = 16; floor((31 + 2 − 4 − 1) / 3) + 1 = 10.
        assert_eq!((g.out_h(), g.out_w()), (16, 10));
    }

    fn pools() -> Vec<Pool2dGeometry> {
        let p = |n, c, h, w, kh, kw, stride, padding| Pool2dGeometry {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            padding,
        };
        vec![
            p(2, 3, 6, 6, 2, 2, (2, 2), (0, 0)),
            p(1, 2, 7, 5, 3, 3, (2, 1), (1, 1)),
            p(2, 1, 8, 9, 3, 2, (3, 2), (1, 1)),
            p(1, 1, 5, 5, 1, 1, (2, 2), (0, 0)),
        ]
    }

    #[test]
    fn pooling_matches_direct_formula() {
        for (case, g) in pools().into_iter().enumerate() {
            let (oh, ow) = (g.out_h(), g.out_w());
            let xd = [g.n, g.c, g.h, g.w];
            let yd = [g.n, g.c, oh, ow];
            let x = data(xd.iter().product(), 5);
            let dy = data(yd.iter().product(), 6);
            let (mut want_max, mut want_avg) = (vec![0.0f64; dy.len()], vec![0.0f64; dy.len()]);
            let mut want_dmax = vec![0.0f64; x.len()];
            let mut want_davg = vec![0.0f64; x.len()];
            for n in 0..g.n {
                for c in 0..g.c {
                    for i in 0..oh {
                        for j in 0..ow {
                            let (mut best, mut at, mut sum) = (f64::NEG_INFINITY, 0, 0.0);
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let ih = (i * g.stride.0 + ki) as isize - g.padding.0 as isize;
                                    let iw = (j * g.stride.1 + kj) as isize - g.padding.1 as isize;
                                    sum += padded(&x, xd, n, c, ih, iw);
                                    if ih >= 0
                                        && iw >= 0
                                        && (ih as usize) < g.h
                                        && (iw as usize) < g.w
                                    {
                                        let k = idx4(xd, [n, c, ih as usize, iw as usize]);
                                        if x[k] as f64 > best {
                                            (best, at) = (x[k] as f64, k);
                                        }
                                    }
                                }
                            }
                            let o = idx4(yd, [n, c, i, j]);
                            (want_max[o], want_avg[o]) = (best, sum / (g.kh * g.kw) as f64);
                            want_dmax[at] += dy[o] as f64;
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let ih = (i * g.stride.0 + ki) as isize - g.padding.0 as isize;
                                    let iw = (j * g.stride.1 + kj) as isize - g.padding.1 as isize;
                                    if ih >= 0
                                        && iw >= 0
                                        && (ih as usize) < g.h
                                        && (iw as usize) < g.w
                                    {
                                        want_davg[idx4(xd, [n, c, ih as usize, iw as usize])] +=
                                            dy[o] as f64 / (g.kh * g.kw) as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let (mut y, mut argmax) = (vec![f32::NAN; dy.len()], vec![0u32; dy.len()]);
            max_pool2d_forward(&g, &x, &mut y, &mut argmax);
            close(&format!("max y case {case}"), &y, &want_max);
            let mut dx = vec![f32::NAN; x.len()];
            max_pool2d_backward(&g, &dy, &argmax, &mut dx);
            close(&format!("max dx case {case}"), &dx, &want_dmax);
            avg_pool2d_forward(&g, &x, &mut y);
            close(&format!("avg y case {case}"), &y, &want_avg);
            avg_pool2d_backward(&g, &dy, &mut dx);
            close(&format!("avg dx case {case}"), &dx, &want_davg);
        }
    }
}
