//! The Winograd F(2×2, 3×3) convolution (3x3 kernels at stride 1 and dilation 1, channels in
//! multiples of 16, on AVX-512) against naive f64 loops. Each check forces the Winograd path on
//! its own thread and asserts which paths ran: on a CPU without AVX-512, im2col alone.

mod common;
use common::conv_ref::{check_tol, default_tol, forward_and_input_gradient, geom, on_this_cpu};
use common::random_vec;
use tapestry_kernels::conv::{conv2d_backward_weight, Conv2dGeometry};
use tapestry_kernels::path::{forced, ConvPath, Force};

const WINOGRAD: Force = Force { conv: Some(ConvPath::Winograd), ..Force::NONE };

/// A fifth of the default tolerance. The transforms add and subtract before they multiply, yet
/// the worst error measured was no larger than the direct kernel's: 7.7e-6 (relative) at
/// 32 → 64 channels, 14x14, batch 3, where this allows 5.9e-5. The input gradient takes the
/// Winograd path too for padding of at most 2, im2col beyond.
fn check(g: Conv2dGeometry, with_bias: bool) {
    let ((), ran) = forced(WINOGRAD, || check_tol(g, with_bias, default_tol(&g) / 5.0));
    let want = if g.padding.0 <= 2 && g.padding.1 <= 2 {
        vec![ConvPath::Winograd]
    } else {
        vec![ConvPath::Winograd, ConvPath::Im2col]
    };
    assert_eq!(ran.convs(), on_this_cpu(&want), "{g:?}");
}

fn k3(
    n: usize,
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    pad: (usize, usize),
) -> Conv2dGeometry {
    geom(n, c_in, hw.0, hw.1, c_out, (3, 3), (1, 1), pad, (1, 1))
}

#[test]
fn odd_and_even_outputs_with_every_padding() {
    // Each tile is 2×2 outputs. An odd output height or width leaves half a tile at the bottom
    // or right edge, whose extra outputs are dropped (forward, dX) or whose missing output
    // gradient counts as zero (dW). Padding 0 to 2 on each side, square and not.
    for (h, w) in [(1, 1), (1, 4), (2, 3), (4, 4), (5, 8), (7, 9), (14, 14)] {
        for pad in [(0, 0), (1, 1), (2, 2), (0, 2), (2, 1)] {
            if h + 2 * pad.0 < 3 || w + 2 * pad.1 < 3 {
                continue; // the kernel does not fit
            }
            check(k3(2, 16, (h, w), 16, pad), pad.0 == pad.1);
        }
    }
}

#[test]
fn padding_beyond_k_minus_1() {
    // Forward and dW on the Winograd path; the input gradient of such a convolution is not a
    // convolution with padding ≥ 0 and takes im2col.
    check(k3(2, 16, (4, 5), 32, (3, 3)), true);
    check(k3(1, 32, (3, 3), 16, (4, 3)), false);
}

#[test]
fn channel_counts_in_multiples_of_16() {
    // Products of every shape of the GEMMs: 16 to 80 channels in and out (one or more 32-wide
    // panels, a 16-wide one, K of 16 to 80), for forward and for dX (channels swapped).
    for (c_in, c_out) in [(16, 48), (48, 16), (32, 64), (64, 32), (80, 16), (16, 80)] {
        check(k3(2, c_in, (6, 5), c_out, (1, 1)), c_in < c_out);
    }
}

#[test]
fn blocks_of_images_and_the_parallel_path() {
    // At 14x14 an image is 49 tiles and a block holds 4 images (2 for dW): batches of 1, 5 and 9
    // (the last large enough to run over the blocks in parallel). Tiny images put the whole
    // batch in one block (1x1 output: one tile per image).
    for n in [1, 5, 9] {
        check(k3(n, 32, (14, 14), 64, (1, 1)), n != 5);
    }
    check(k3(7, 16, (3, 3), 16, (0, 0)), true);
    check(k3(3, 16, (28, 28), 32, (1, 1)), false);
}

#[test]
fn forward_and_input_gradient_do_not_depend_on_threads() {
    // Each output is a sum over channels in a fixed order whatever the blocking, so the parallel
    // run (from outside the pool) and a serial one (inside a pool's worker, where kernels run
    // single-threaded) agree bit for bit.
    let g = k3(9, 32, (14, 14), 64, (1, 1));
    let run = || forced(WINOGRAD, || forward_and_input_gradient(&g, 21)).0;
    let parallel = run();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let serial = pool.install(run);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&parallel.0), bits(&serial.0), "forward");
    assert_eq!(bits(&parallel.1), bits(&serial.1), "input gradient");
}

#[test]
fn weight_gradient_is_deterministic_for_a_thread_count() {
    let g = k3(6, 32, (14, 14), 64, (1, 1));
    let x = random_vec(g.x_len(), 5);
    let dy = random_vec(g.y_len(), 6);
    let run = || {
        let mut dw = vec![0.0f32; g.w_len()];
        let mut db = vec![0.0f32; g.c_out];
        let ((), ran) =
            forced(WINOGRAD, || conv2d_backward_weight(&g, &x, &dy, &mut dw, Some(&mut db)));
        assert_eq!(ran.convs(), on_this_cpu(&[ConvPath::Winograd]));
        (dw, db)
    };
    let first = run();
    for _ in 0..3 {
        let again = run();
        assert!(again.0.iter().zip(&first.0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(again.1.iter().zip(&first.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
