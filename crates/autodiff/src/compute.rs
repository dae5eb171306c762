//! The one door to heavy compute: GEMM, conv2d, pooling and the elementwise kernels. Ops call
//! these functions and nothing else for heavy loops, so the kernels behind them
//! (`tapestry-kernels`: SIMD, rayon, matrixmultiply) change in one place.
//!
//! Every buffer is a dense row-major (NCHW) slice; backward functions overwrite their outputs.

pub(crate) use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};
pub(crate) use tapestry_kernels::elementwise;
use tapestry_kernels::gemm::sgemm;
pub(crate) use tapestry_kernels::pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,
    Pool2dGeometry,
};

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
    let beta = if accumulate { 1.0 } else { 0.0 };
    let s = |v: usize| v as isize;
    sgemm(m, k, n, 1.0, a, s(rsa), s(csa), b, s(rsb), s(csb), beta, c, s(rsc), s(csc));
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
