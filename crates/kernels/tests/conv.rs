//! conv2d forward and both gradients against naive f64 loops.

mod common;
use common::{assert_close, random_vec};
use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};

/// Calls `f(n, c_out, c_in, oy, ox, ci, iy, ix, r, s)` for every (output, tap) pair that reads
/// a real (non-padded) input pixel.
fn for_each_tap(g: &Conv2dGeometry, mut f: impl FnMut([usize; 9])) {
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

fn check(g: Conv2dGeometry, with_bias: bool) {
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
    let tol = 1e-5 * ((g.c_in * g.kh * g.kw + g.n * p) as f64).sqrt();
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
fn geom(
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

#[test]
fn kernel_sizes_with_every_padding_up_to_k_minus_1() {
    for k in 1..=4 {
        for pad in 0..k {
            check(geom(2, 3, 7, 6, 4, (k, k), (1, 1), (pad, pad), (1, 1)), pad % 2 == 0);
        }
    }
}

#[test]
fn strides_dilations_and_rectangles() {
    check(geom(2, 2, 9, 11, 3, (3, 2), (2, 1), (1, 0), (1, 1)), true);
    check(geom(1, 3, 10, 10, 5, (3, 3), (2, 2), (2, 2), (1, 1)), false);
    check(geom(2, 2, 12, 9, 3, (3, 3), (1, 1), (2, 2), (2, 2)), true);
    check(geom(1, 4, 13, 13, 2, (3, 2), (3, 2), (1, 1), (2, 3)), true);
    check(geom(3, 1, 5, 17, 1, (1, 5), (1, 3), (0, 4), (1, 1)), false);
    check(geom(1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1)), true);
    check(geom(2, 5, 4, 4, 6, (4, 4), (1, 1), (0, 0), (1, 1)), true); // output 1x1
}

#[test]
fn pointwise_fast_path_and_strided_1x1() {
    check(geom(3, 17, 5, 7, 9, (1, 1), (1, 1), (0, 0), (1, 1)), true);
    check(geom(2, 8, 6, 6, 5, (1, 1), (2, 2), (0, 0), (1, 1)), true);
    check(geom(2, 8, 6, 6, 5, (1, 1), (1, 1), (1, 1), (1, 1)), false);
}

#[test]
fn reference_model_shapes_parallel_paths() {
    // Large enough to run over the batch in parallel (and, with n = 1, a parallel GEMM).
    check(geom(4, 3, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true);
    check(geom(3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1)), true);
    check(geom(1, 64, 16, 16, 96, (3, 3), (1, 1), (1, 1), (1, 1)), true);
}

#[test]
fn weight_gradient_is_deterministic_for_a_thread_count() {
    let g = geom(6, 8, 14, 14, 16, (3, 3), (1, 1), (1, 1), (1, 1));
    let x = random_vec(g.x_len(), 5);
    let dy = random_vec(g.y_len(), 6);
    let run = || {
        let mut dw = vec![0.0f32; g.w_len()];
        conv2d_backward_weight(&g, &x, &dy, &mut dw, None);
        dw
    };
    let first = run();
    for _ in 0..3 {
        assert!(run().iter().zip(&first).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn invalid_geometry_is_an_error() {
    assert!(geom(1, 1, 2, 2, 1, (3, 3), (1, 1), (0, 0), (1, 1)).validate().is_err());
    assert!(geom(1, 1, 5, 5, 1, (3, 3), (0, 1), (0, 0), (1, 1)).validate().is_err());
    assert!(geom(1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (3, 3)).validate().is_err());
    assert!(geom(1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (2, 2)).validate().is_ok());
}

#[test]
#[should_panic(expected = "conv2d_forward: y has")]
fn wrong_output_length_panics() {
    let g = geom(1, 1, 4, 4, 1, (3, 3), (1, 1), (0, 0), (1, 1));
    let mut y = vec![0.0; 5];
    conv2d_forward(&g, &[0.0; 16], &[0.0; 9], None, &mut y);
}

#[test]
fn direct_path_shapes_every_tile_width_and_channel_block() {
    // Stride 1, dilation 1 and output channels in multiples of 16 take the direct AVX-512
    // kernel where the CPU has it: blocks of 1 or 2 vectors of channels (16, 48 = 32 + 16,
    // 80 = 32 + 32 + 16; the weight gradient's blocks of up to 4: 64 + 16), rows split into tiles
    // of 1 to 7 pixels (widths 1 to 13), every padding up to k - 1 and beyond, rectangular
    // kernels; input channels in multiples of 16 also take it for dX.
    for (c_in, c_out) in [(1, 16), (16, 48), (32, 80), (3, 32)] {
        for w in [1, 2, 3, 4, 5, 7, 11, 13] {
            check(geom(2, c_in, 4, w, c_out, (3, 3), (1, 1), (1, 1), (1, 1)), w % 2 == 1);
        }
    }
    for k in 1..=4 {
        for pad in 0..=k {
            check(geom(2, 16, 6, 7, 16, (k, k), (1, 1), (pad, pad), (1, 1)), pad % 2 == 0);
        }
    }
    check(geom(2, 16, 9, 8, 32, (3, 2), (1, 1), (2, 0), (1, 1)), true);
    check(geom(2, 16, 9, 8, 32, (1, 5), (1, 1), (0, 2), (1, 1)), false);
    // The weight gradient's direct kernel takes taps 6 at a time: tails of 1 to 5 taps
    // (73, 34·2, 17·9, 76, 13·5 taps).
    check(geom(2, 73, 3, 4, 16, (1, 1), (1, 1), (1, 1), (1, 1)), true);
    check(geom(2, 34, 5, 5, 16, (1, 2), (1, 1), (0, 1), (1, 1)), false);
    check(geom(2, 17, 5, 6, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true);
    check(geom(2, 19, 5, 6, 48, (2, 2), (1, 1), (1, 1), (1, 1)), false);
    check(geom(2, 13, 4, 9, 16, (1, 5), (1, 1), (0, 2), (1, 1)), true);
    // Below 64 taps the weight gradient runs on rows: tiles of up to 4 channels by 6 taps, so
    // every tail of both (1 to 5 channels, 1 to 5 taps), and rows of any width.
    for (c_in, k, pad) in [(1, (1, 1), 1), (2, (1, 1), 1), (1, (2, 2), 0), (1, (1, 5), 2)] {
        for c_out in [1, 2, 3, 5] {
            check(geom(2, c_in, 5, 7, c_out, k, (1, 1), (pad, pad), (1, 1)), c_out % 2 == 1);
        }
    }
    check(geom(3, 3, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true);
    check(geom(2, 7, 3, 17, 6, (3, 3), (1, 1), (2, 2), (1, 1)), false);
}

#[test]
fn direct_and_im2col_paths_agree() {
    // The same convolution on the direct kernel and, with the portable path forced, on im2col +
    // GEMM. (On a CPU without AVX-512 both runs take im2col and this checks determinism.)
    let g = geom(3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1));
    let x = random_vec(g.x_len(), 11);
    let w = random_vec(g.w_len(), 12);
    let b = random_vec(g.c_out, 13);
    let dy = random_vec(g.y_len(), 14);
    let run = || {
        let mut y = vec![f32::NAN; g.y_len()];
        conv2d_forward(&g, &x, &w, Some(&b), &mut y);
        let mut dx = vec![f32::NAN; g.x_len()];
        conv2d_backward_input(&g, &dy, &w, &mut dx);
        (y, dx)
    };
    let (y_direct, dx_direct) = run();
    tapestry_kernels::elementwise::set_force_scalar(true);
    let (y_gemm, dx_gemm) = run();
    tapestry_kernels::elementwise::set_force_scalar(false);
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{what}[{i}]: {p} vs {q}");
        }
    };
    close(&y_direct, &y_gemm, "forward");
    close(&dx_direct, &dx_gemm, "backward_input");
}
