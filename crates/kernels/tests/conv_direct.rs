//! The direct AVX-512 convolution (stride 1, dilation 1, output channels in multiples of 16, or
//! padded to them) against naive f64 loops. Each check forces the direct path on its own thread (so 3x3 shapes
//! do not take Winograd's) and asserts which paths ran: on a CPU without AVX-512, im2col alone.

mod common;
use common::conv_ref::{check_on, forward_and_input_gradient, geom, on_this_cpu};
use tapestry_kernels::conv::{conv2d_backward_weight, Conv2dGeometry};
use tapestry_kernels::path::{forced, ConvPath, Force};

use ConvPath::{Direct, DirectRows, Im2col};

/// Checks `g` with the direct path forced. The forward pass and the weight gradient take it;
/// the input gradient too when the input channels come in multiples of 16 and the padding is
/// at most `k − 1`; a 1x1 kernel without padding takes im2col's own fast path for all three.
fn check_direct(g: Conv2dGeometry, with_bias: bool) {
    let pointwise = g.kh == 1 && g.kw == 1 && g.padding == (0, 0);
    let dx_direct = g.c_in.is_multiple_of(16) && g.padding.0 < g.kh && g.padding.1 < g.kw;
    let want = match (pointwise, dx_direct) {
        (true, _) => vec![Im2col],
        (false, true) => vec![Direct],
        (false, false) => vec![Direct, Im2col],
    };
    assert_eq!(check_on(Direct, g, with_bias), on_this_cpu(&want), "{g:?}");
}

#[test]
fn direct_path_shapes_every_tile_width_and_channel_block() {
    // Blocks of 1 or 2 vectors of channels (16, 48 = 32 + 16, 80 = 32 + 32 + 16; the weight
    // gradient's blocks of up to 4: 64 + 16), rows split into tiles of 1 to 7 pixels (widths 1
    // to 13), every padding up to k - 1 and beyond, rectangular kernels; input channels in
    // multiples of 16 also take it for dX.
    for (c_in, c_out) in [(1, 16), (16, 48), (32, 80), (3, 32)] {
        for w in [1, 2, 3, 4, 5, 7, 11, 13] {
            check_direct(geom(2, c_in, 4, w, c_out, (3, 3), (1, 1), (1, 1), (1, 1)), w % 2 == 1);
        }
    }
    for k in 1..=4 {
        for pad in 0..=k {
            check_direct(geom(2, 16, 6, 7, 16, (k, k), (1, 1), (pad, pad), (1, 1)), pad % 2 == 0);
        }
    }
    check_direct(geom(2, 16, 9, 8, 32, (3, 2), (1, 1), (2, 0), (1, 1)), true);
    check_direct(geom(2, 16, 9, 8, 32, (1, 5), (1, 1), (0, 2), (1, 1)), false);
    // The weight gradient's direct kernel takes taps 6 at a time: tails of 1 to 5 taps
    // (73, 34·2, 17·9, 76, 13·5 taps).
    check_direct(geom(2, 73, 3, 4, 16, (1, 1), (1, 1), (1, 1), (1, 1)), true);
    check_direct(geom(2, 34, 5, 5, 16, (1, 2), (1, 1), (0, 1), (1, 1)), false);
    check_direct(geom(2, 17, 5, 6, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true);
    check_direct(geom(2, 19, 5, 6, 48, (2, 2), (1, 1), (1, 1), (1, 1)), false);
    check_direct(geom(2, 13, 4, 9, 16, (1, 5), (1, 1), (0, 2), (1, 1)), true);
    check_direct(geom(3, 3, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true);
}

#[test]
fn the_forward_and_weight_gradient_take_a_partial_last_vector_of_channels() {
    // Output channels padded to whole vectors when that costs at most 1.6x the multiply-adds
    // (10 as 16, 20 and 26 as 32, 45 as 48, 70 as 80): the padded lanes are computed from zero
    // weights (forward) or zero cotangents (weight gradient) and never stored, so the
    // neighbouring channel rows, images and bias entries must come out exact. The LeNet shapes
    // of the Multi-Fashion protocol (1 → 10 k9, 10 → 20 k5) among them; rows split into tiles of
    // 1 to 7 pixels; the weight gradient's channel blocks of 1, 2, 3 and 4 + 1 vectors with the
    // partial one last; with and without bias. dX takes im2col (input channels not in 16s).
    let mut shapes = vec![
        geom(2, 1, 12, 13, 10, (9, 9), (1, 1), (0, 0), (1, 1)),
        geom(3, 10, 9, 9, 20, (5, 5), (1, 1), (0, 0), (1, 1)),
        geom(2, 3, 5, 11, 26, (3, 3), (1, 1), (1, 1), (1, 1)),
        geom(2, 2, 4, 5, 45, (2, 3), (1, 1), (1, 0), (1, 1)),
        geom(2, 3, 4, 6, 70, (3, 3), (1, 1), (1, 1), (1, 1)),
    ];
    for w in [1, 2, 3, 4, 5, 7, 11, 13] {
        shapes.push(geom(2, 4, 3, w, 13, (3, 3), (1, 1), (1, 1), (1, 1)));
    }
    for (i, g) in shapes.into_iter().enumerate() {
        // Against the f64 loops, every pass forced onto the direct path where it applies.
        let ran = check_on(Direct, g, i % 2 == 0);
        assert_eq!(ran, on_this_cpu(&[Direct, Im2col]), "{g:?}");
        // And the weight gradient on its own, so that its path is known.
        let (x, dy) = (vec![0.5f32; g.x_len()], vec![0.25f32; g.y_len()]);
        let (mut dw, mut db) = (vec![0.0f32; g.w_len()], vec![0.0f32; g.c_out]);
        let ((), ran) = forced(Force { conv: Some(Direct), ..Force::NONE }, || {
            conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db))
        });
        assert_eq!(ran.convs(), on_this_cpu(&[Direct]), "{g:?}: dW");
    }
    // Too few channels for a vector (5 as 16 would be 3.2x the work): im2col.
    let g = geom(2, 4, 5, 7, 5, (3, 3), (1, 1), (1, 1), (1, 1));
    assert_eq!(check_on(Direct, g, true), vec![Im2col], "{g:?}");
}

#[test]
fn weight_gradient_on_rows_every_tail() {
    // Below 64 taps the weight gradient runs on rows (unforced, too): tiles of up to 4 channels
    // by 6 taps, so every tail of both (1 to 5 channels, 1 to 5 taps), and rows of any width.
    // The forward pass and dX of these shapes take im2col.
    let mut shapes = vec![];
    for (c_in, k, pad) in [(1, (1, 1), 1), (2, (1, 1), 1), (1, (2, 2), 0), (1, (1, 5), 2)] {
        for c_out in [1, 2, 3, 5] {
            shapes
                .push((geom(2, c_in, 5, 7, c_out, k, (1, 1), (pad, pad), (1, 1)), c_out % 2 == 1));
        }
    }
    shapes.push((geom(3, 3, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true));
    shapes.push((geom(2, 7, 3, 17, 6, (3, 3), (1, 1), (2, 2), (1, 1)), false));
    for (g, bias) in shapes {
        assert_eq!(check_on(DirectRows, g, bias), on_this_cpu(&[DirectRows, Im2col]), "{g:?}");
    }
}

#[test]
fn direct_and_im2col_paths_agree() {
    // The same convolution on the direct kernel and on im2col + GEMM, each forced.
    let g = geom(3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1));
    let run = |path| {
        let (out, ran) = forced(Force { conv: Some(path), ..Force::NONE }, || {
            forward_and_input_gradient(&g, 11)
        });
        assert_eq!(ran.convs(), on_this_cpu(&[path]));
        out
    };
    let (y_direct, dx_direct) = run(Direct);
    let (y_gemm, dx_gemm) = run(Im2col);
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{what}[{i}]: {p} vs {q}");
        }
    };
    close(&y_direct, &y_gemm, "forward");
    close(&dx_direct, &dx_gemm, "backward_input");
}
