//! The direct AVX-512 convolution (stride 1, dilation 1, output channels in multiples of 16)
//! against naive f64 loops, with the Winograd path switched off so that its 3x3 shapes take the
//! direct kernel too. Every test here switches it off first (the switch is per process, and
//! each test file is its own process).

mod common;
use common::conv_ref::{check, forward_and_input_gradient, geom};
use tapestry_kernels::conv::set_winograd;
use tapestry_kernels::elementwise::set_force_scalar;

#[test]
fn direct_path_shapes_every_tile_width_and_channel_block() {
    set_winograd(false);
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
    set_winograd(false);
    let g = geom(3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1));
    let run = || forward_and_input_gradient(&g, 11);
    let (y_direct, dx_direct) = run();
    set_force_scalar(true);
    let (y_gemm, dx_gemm) = run();
    set_force_scalar(false);
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{what}[{i}]: {p} vs {q}");
        }
    };
    close(&y_direct, &y_gemm, "forward");
    close(&dx_direct, &dx_gemm, "backward_input");
}
