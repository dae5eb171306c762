//! The direct AVX-512 convolution (stride 1, dilation 1; output channels in multiples of 16,
//! or rows of pixels for the others) against naive f64 loops. Each check forces the direct path
//! on its own thread (so 3x3 shapes do not take Winograd's) and asserts which paths ran: on a
//! CPU without AVX-512, im2col alone.

mod common;
use common::conv_ref::{check_on, forward_and_input_gradient, geom, on_this_cpu};
use tapestry_kernels::conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dGeometry,
};
use tapestry_kernels::path::{forced, ConvPath, Force};

use ConvPath::{Direct, DirectRows, Im2col, ImageLanes};

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

/// The paths a call forced onto rows takes: the forward pass and dW on rows, dX on rows with at
/// least 5 input channels and on im2col with fewer.
fn rows_paths(g: &Conv2dGeometry) -> Vec<ConvPath> {
    on_this_cpu(if g.c_in >= 5 { &[DirectRows] } else { &[DirectRows, Im2col] })
}

#[test]
fn the_forward_on_rows_every_tile_tail() {
    // Output channels that are not whole vectors of 16 take the forward pass and the weight
    // gradient on rows (unforced, too). The forward's tiles are of up to 5 channels by 4 vectors
    // of 16 pixels, split evenly, so channel tiles of 1 to 5 (1, 2, 3, 4 = 16/4, 5, 7 = 4 + 3, 13
    // = 5 + 4 + 4) and pixel-vector tails (the padded rows of images 1 to 23 pixels wide, 1 to 63
    // vectors), paddings, rectangular kernels, and the LeNet layers. Checked against the f64 loops
    // with every pass forced onto rows where it applies.
    let mut shapes = vec![
        geom(2, 1, 36, 36, 10, (9, 9), (1, 1), (0, 0), (1, 1)),
        geom(2, 10, 14, 14, 20, (5, 5), (1, 1), (0, 0), (1, 1)),
    ];
    for c_out in [1, 2, 3, 4, 5, 7, 13] {
        shapes.push(geom(2, 3, 5, 7, c_out, (3, 3), (1, 1), (1, 1), (1, 1)));
    }
    for w in [1, 2, 3, 5, 9, 12, 23] {
        shapes.push(geom(2, 2, 6, w, 10, (2, 3), (1, 1), (1, 2), (1, 1)));
    }
    shapes.push(geom(3, 5, 9, 8, 6, (1, 5), (1, 1), (0, 2), (1, 1)));
    // Output rows 16, 17, 32 and 33 wide, unpadded and padded: compact rows (one vector per 16
    // pixels of a row, the last one masked; reading an unpadded input in place) for 16 and 32,
    // padded rows for 17 and 33, whose compact rows would compute 32 and 48 lanes.
    for ow in [16, 17, 32, 33] {
        shapes.push(geom(2, 2, 4, ow + 2, 3, (3, 3), (1, 1), (0, 0), (1, 1)));
        shapes.push(geom(2, 2, 3, ow, 6, (3, 3), (1, 1), (1, 1), (1, 1)));
    }
    for (i, g) in shapes.into_iter().enumerate() {
        assert_eq!(check_on(DirectRows, g, i % 2 == 1), rows_paths(&g), "{g:?}");
        // Unforced, the forward pass and the weight gradient take rows.
        let (x, w) = (vec![0.5f32; g.x_len()], vec![0.25f32; g.w_len()]);
        let (mut y, mut dw) = (vec![0.0f32; g.y_len()], vec![0.0f32; g.w_len()]);
        let ((), ran) = forced(Force::NONE, || conv2d_forward(&g, &x, &w, None, &mut y));
        assert_eq!(ran.convs(), on_this_cpu(&[DirectRows]), "{g:?}: forward");
        let ((), ran) = forced(Force::NONE, || conv2d_backward_weight(&g, &x, &y, &mut dw, None));
        assert_eq!(ran.convs(), on_this_cpu(&[DirectRows]), "{g:?}: dW");
    }
}

#[test]
fn the_input_gradient_on_rows_every_tile_tail() {
    // Input channels that are not whole vectors of 16, at least 5 of them, take dX on rows
    // (unforced, too): `dy` scattered through the forward's tiles, so channel tiles of 1 to 5
    // (5, 6 = 3 + 3, 7 = 4 + 3, 9 = 5 + 4, 13 = 5 + 4 + 4, 24 = 4·6), pixel-vector tails (padded
    // images 1 to 23 pixels wide), a kernel that reaches back further than the image is tall
    // (9x9 over 3 rows padded by 4), paddings up to and past the kernel, rectangular kernels,
    // and the LeNet's 10 → 20 layer. With 4 input channels dX stays on im2col.
    let mut shapes = vec![geom(2, 10, 14, 14, 20, (5, 5), (1, 1), (0, 0), (1, 1))];
    for c_in in [5, 6, 7, 9, 13, 24] {
        shapes.push(geom(2, c_in, 5, 7, 3, (3, 3), (1, 1), (1, 1), (1, 1)));
    }
    for w in [1, 2, 3, 5, 9, 12, 23] {
        shapes.push(geom(2, 6, 6, w, 4, (2, 3), (1, 1), (1, 2), (1, 1)));
    }
    for pad in [0, 2, 3, 4] {
        shapes.push(geom(2, 5, 4, 6, 2, (3, 2), (1, 1), (pad, pad / 2), (1, 1)));
    }
    shapes.push(geom(2, 5, 3, 11, 7, (9, 9), (1, 1), (4, 1), (1, 1)));
    shapes.push(geom(3, 8, 9, 8, 1, (1, 5), (1, 1), (0, 2), (1, 1)));
    shapes.push(geom(2, 4, 6, 6, 3, (3, 3), (1, 1), (1, 1), (1, 1)));
    for (i, g) in shapes.into_iter().enumerate() {
        assert_eq!(check_on(DirectRows, g, i % 2 == 0), rows_paths(&g), "{g:?}");
        let (dy, w) = (vec![0.5f32; g.y_len()], vec![0.25f32; g.w_len()]);
        let mut dx = vec![0.0f32; g.x_len()];
        let ((), ran) = forced(Force::NONE, || conv2d_backward_input(&g, &dy, &w, &mut dx));
        let want = if g.c_in >= 5 { DirectRows } else { Im2col };
        assert_eq!(ran.convs(), on_this_cpu(&[want]), "{g:?}: dX");
    }
}

#[test]
fn weight_gradient_on_rows_every_tail() {
    // Below 64 taps the weight gradient runs on rows (unforced, too): tiles of up to 4 channels
    // by 6 taps, split evenly, so every tile of both (1, 2, 3, 3 + 2, 8·4 channels; 1, 2, 3, 4,
    // 5, 6 + 6 + 5 + 5 + 5 taps), rows of any width, and a last block of images shorter than the
    // others.
    // The forward pass takes rows too (32 channels on rows only because it is forced), and so
    // does dX with 7 input channels; with 1 to 3 it takes im2col.
    let mut shapes = vec![];
    for (c_in, k, pad) in
        [(1, (1, 1), 1), (2, (1, 1), 1), (3, (1, 1), 1), (1, (2, 2), 0), (1, (1, 5), 2)]
    {
        for c_out in [1, 2, 3, 5] {
            shapes
                .push((geom(2, c_in, 5, 7, c_out, k, (1, 1), (pad, pad), (1, 1)), c_out % 2 == 1));
        }
    }
    shapes.push((geom(3, 3, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1)), true));
    shapes.push((geom(2, 7, 3, 17, 6, (3, 3), (1, 1), (2, 2), (1, 1)), false));
    // Small images come in blocks of up to 8 per pass over the tiles: 11 = 8 + 3.
    shapes.push((geom(11, 2, 5, 7, 3, (3, 3), (1, 1), (1, 1), (1, 1)), true));
    // The same in compact rows, the input read in place and padded: 16-pixel rows.
    shapes.push((geom(11, 2, 4, 18, 3, (3, 3), (1, 1), (0, 0), (1, 1)), false));
    shapes.push((geom(11, 2, 4, 16, 3, (3, 3), (1, 1), (1, 1), (1, 1)), true));
    for (g, bias) in shapes {
        assert_eq!(check_on(DirectRows, g, bias), rows_paths(&g), "{g:?}");
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

#[test]
fn images_as_lanes_every_tail() {
    // Forced, all three passes take images as lanes for any geometry at stride 1: groups of 16
    // images and shorter last groups (1, 5, 16, 17 = 16 + 1, 40 = 16 + 16 + 8); tiles of 1 to 5
    // channels by 1 to 4 pixels (rows 1 to 9 pixels wide), and for the weight gradient of 1 to 4
    // channels by 1 to 6 taps (18 = 6 · 3, 7 = 4 + 3, 250 as in LeNet); paddings up to and past
    // the kernel (zeros around the transposed input, and for dX around `dy`); rectangular
    // kernels; the kernel rows dX skips above and below `dy`; and the LeNet layers.
    let mut shapes = vec![geom(3, 1, 36, 36, 10, (9, 9), (1, 1), (0, 0), (1, 1))];
    for n in [1, 5, 16, 17, 40] {
        shapes.push(geom(n, 10, 14, 14, 20, (5, 5), (1, 1), (0, 0), (1, 1)));
    }
    for c in [1, 2, 3, 4, 5, 7] {
        shapes.push(geom(3, c, 5, 6, c, (3, 3), (1, 1), (1, 1), (1, 1)));
    }
    for w in [1, 2, 3, 5, 9] {
        shapes.push(geom(2, 6, 4, w, 3, (2, 3), (1, 1), (1, 2), (1, 1)));
    }
    for pad in [0, 2, 3, 4] {
        shapes.push(geom(2, 5, 4, 6, 2, (3, 2), (1, 1), (pad, pad / 2), (1, 1)));
    }
    shapes.push(geom(2, 5, 3, 11, 7, (9, 9), (1, 1), (4, 1), (1, 1)));
    shapes.push(geom(17, 7, 4, 9, 6, (1, 1), (1, 1), (1, 2), (1, 1)));
    shapes.push(geom(9, 3, 6, 5, 2, (2, 3), (1, 1), (2, 0), (1, 1)));
    for (i, g) in shapes.into_iter().enumerate() {
        assert_eq!(check_on(ImageLanes, g, i % 2 == 0), on_this_cpu(&[ImageLanes]), "{g:?}");
    }
    // Unforced, at batch 16 and 256: LeNet's 9x9 layer takes lanes for dW only (its forward
    // pass stays on rows, and with one input channel its dX on im2col); its 5x5 layer takes lanes
    // for all three. At batch 2 both stay on rows.
    let lenet = |n| {
        [
            (geom(n, 1, 36, 36, 10, (9, 9), (1, 1), (0, 0), (1, 1)), [DirectRows, Im2col]),
            (geom(n, 10, 14, 14, 20, (5, 5), (1, 1), (0, 0), (1, 1)), [ImageLanes, ImageLanes]),
        ]
    };
    for n in [16, 256, 2] {
        for (g, [forward, dx]) in lenet(n) {
            let (forward, dx, dw) = match n {
                2 => (DirectRows, if g.c_in < 5 { Im2col } else { DirectRows }, DirectRows),
                _ => (forward, dx, ImageLanes),
            };
            let (x, w) = (vec![0.5f32; g.x_len()], vec![0.25f32; g.w_len()]);
            let (mut y, mut dx_, mut dw_) =
                (vec![0.0f32; g.y_len()], vec![0.0f32; g.x_len()], vec![0.0f32; g.w_len()]);
            let ((), ran) = forced(Force::NONE, || conv2d_forward(&g, &x, &w, None, &mut y));
            assert_eq!(ran.convs(), on_this_cpu(&[forward]), "batch {n}, {g:?}: forward");
            let ((), ran) =
                forced(Force::NONE, || conv2d_backward_weight(&g, &x, &y, &mut dw_, None));
            assert_eq!(ran.convs(), on_this_cpu(&[dw]), "batch {n}, {g:?}: dW");
            let ((), ran) = forced(Force::NONE, || conv2d_backward_input(&g, &y, &w, &mut dx_));
            assert_eq!(ran.convs(), on_this_cpu(&[dx]), "batch {n}, {g:?}: dX");
        }
    }
}

#[test]
fn images_as_lanes_do_not_depend_on_threads() {
    // Chunks of images are summed in a fixed order for a given chunk count, and a block of
    // lanes does not depend on which thread computes it: with one thread and with two, every
    // run gives the same bits.
    let g = geom(64, 10, 14, 14, 20, (5, 5), (1, 1), (0, 0), (1, 1));
    let x: Vec<f32> = (0..g.x_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let dy: Vec<f32> = (0..g.y_len()).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (mut dw, mut db) = (vec![0.0f32; g.w_len()], vec![0.0f32; g.c_out]);
            let (mut y, mut dx) = (vec![0.0f32; g.y_len()], vec![0.0f32; g.x_len()]);
            let force = Force { conv: Some(ImageLanes), ..Force::NONE };
            forced(force, || {
                conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db));
                conv2d_forward(&g, &x, &dw, Some(&db), &mut y);
                conv2d_backward_input(&g, &dy, &dw, &mut dx);
            });
            (dw, db, y, dx)
        })
    };
    // The forward pass and dX compute each block of images on its own: their bits do not
    // depend on the thread count at all.
    let (one, two) = (run(1), run(2));
    assert!(one.2 == two.2 && one.3 == two.3);
    for threads in [1, 2] {
        assert!(run(threads) == run(threads), "{threads} threads");
    }
}
