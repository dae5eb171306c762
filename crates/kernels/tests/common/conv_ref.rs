//! The convolution tests' reference: naive f64 loops over every (output, tap) pair.

use super::{assert_close, random_vec};
use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};
use tapestry_kernels::elementwise::{detected_isa, Isa};
use tapestry_kernels::path::{forced, ConvPath, Force};

/// Calls `f(n, c_out, c_in, oy, ox, ci, iy, ix, r, s)` for every (output, tap) pair that reads
/// a real (non-padded) input pixel.
pub fn for_each_tap(g: &Conv2dGeometry, mut f: impl FnMut([usize; 9])) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for n in 0..g.n {
        for co in 0..g.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ci in 0..g.c_in {
                        for r in 0..g.kh {
                            for s in 0..g.kw {
                                let iy = (oy * g.stride.0 + r * g.dilation.0) as isize
                                    - g.padding.0 as isize;
                                let ix = (ox * g.stride.1 + s * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi =
                                    ((n * g.c_in + ci) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((co * g.c_in + ci) * g.kh + r) * g.kw + s;
                                let yi = ((n * g.c_out + co) * oh + oy) * ow + ox;
                                f([xi, wi, yi, co, 0, 0, 0, 0, 0]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Checks forward, dX, dW and (with a bias) db of `g` against the f64 loops, with the default
/// tolerance [`default_tol`].
pub fn check(g: Conv2dGeometry, with_bias: bool) {
    check_tol(g, with_bias, default_tol(&g));
}

/// `1e-5·√(taps + n·pixels)`: rounding grows with the length of the sums.
pub fn default_tol(g: &Conv2dGeometry) -> f64 {
    1e-5 * ((g.c_in * g.kh * g.kw + g.n * g.out_h() * g.out_w()) as f64).sqrt()
}

/// [`check`] with every element within `tol·(1 + |want|)` of the reference.
pub fn check_tol(g: Conv2dGeometry, with_bias: bool, tol: f64) {
    g.validate().unwrap();
    let seed = (g.n * 31 + g.c_in * 7 + g.h * 3 + g.kh) as u64;
    let x = random_vec(g.x_len(), seed);
    let w = random_vec(g.w_len(), seed + 1);
    let bias = random_vec(g.c_out, seed + 2);
    let dy = random_vec(g.y_len(), seed + 3);
    let p = g.out_h() * g.out_w();

    let mut y_ref = vec![0.0f64; g.y_len()];
    if with_bias {
        for (i, v) in y_ref.iter_mut().enumerate() {
            *v = bias[(i / p) % g.c_out] as f64;
        }
    }
    let mut dx_ref = vec![0.0f64; g.x_len()];
    let mut dw_ref = vec![0.0f64; g.w_len()];
    for_each_tap(&g, |[xi, wi, yi, ..]| {
        y_ref[yi] += x[xi] as f64 * w[wi] as f64;
        dx_ref[xi] += dy[yi] as f64 * w[wi] as f64;
        dw_ref[wi] += dy[yi] as f64 * x[xi] as f64;
    });
    let mut db_ref = vec![0.0f64; g.c_out];
    for (i, &v) in dy.iter().enumerate() {
        db_ref[(i / p) % g.c_out] += v as f64;
    }

    let name = format!("{g:?}");
    let mut y = vec![f32::NAN; g.y_len()];
    conv2d_forward(&g, &x, &w, with_bias.then_some(&bias[..]), &mut y);
    assert_close(&y, &y_ref, tol, &format!("forward {name}"));
    let mut dx = vec![f32::NAN; g.x_len()];
    conv2d_backward_input(&g, &dy, &w, &mut dx);
    assert_close(&dx, &dx_ref, tol, &format!("backward_input {name}"));
    let mut dw = vec![f32::NAN; g.w_len()];
    let mut db = vec![f32::NAN; g.c_out];
    conv2d_backward_weight(&g, &x, &dy, &mut dw, with_bias.then_some(&mut db[..]));
    assert_close(&dw, &dw_ref, tol, &format!("backward_weight {name}"));
    if with_bias {
        assert_close(&db, &db_ref, tol, &format!("backward_bias {name}"));
    }
}

#[allow(clippy::too_many_arguments)]
pub fn geom(
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> Conv2dGeometry {
    Conv2dGeometry { n, c_in, h, w, c_out, kh: k.0, kw: k.1, stride, padding, dilation }
}

/// The forward pass (with a bias) and the input gradient of `g` on random data from `seed`.
pub fn forward_and_input_gradient(g: &Conv2dGeometry, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let x = random_vec(g.x_len(), seed);
    let w = random_vec(g.w_len(), seed + 1);
    let b = random_vec(g.c_out, seed + 2);
    let dy = random_vec(g.y_len(), seed + 3);
    let mut y = vec![f32::NAN; g.y_len()];
    conv2d_forward(g, &x, &w, Some(&b), &mut y);
    let mut dx = vec![f32::NAN; g.x_len()];
    conv2d_backward_input(g, &dy, &w, &mut dx);
    (y, dx)
}

/// [`check`] with convolution path `path` forced on this thread; returns the paths that ran
/// (forward, input and weight gradient together).
pub fn check_on(path: ConvPath, g: Conv2dGeometry, with_bias: bool) -> Vec<ConvPath> {
    forced(Force { conv: Some(path), ..Force::NONE }, || check(g, with_bias)).1.convs()
}

/// What a call forced to take `paths` may run on this CPU: those paths with AVX-512 (they all
/// need it but im2col), im2col alone without.
pub fn on_this_cpu(paths: &[ConvPath]) -> Vec<ConvPath> {
    if detected_isa() == Isa::Avx512 {
        paths.to_vec()
    } else {
        vec![ConvPath::Im2col]
    }
}
