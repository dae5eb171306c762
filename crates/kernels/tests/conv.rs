//! conv2d forward and both gradients against naive f64 loops.

mod common;
use common::conv_ref::{check, check_on, geom, on_this_cpu};
use common::random_vec;
use tapestry_kernels::conv::{conv2d_backward_weight, conv2d_forward};
use tapestry_kernels::path::{forced, ConvPath, Force, GemmPath};

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
fn every_algorithm_forced_on_one_shape() {
    // A 3x3 convolution at 32 → 64 channels can take all three algorithms; each forced in turn
    // is checked against the f64 loops and must be the one that ran (on a CPU without AVX-512,
    // im2col runs for all).
    let g = geom(3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1));
    for path in [ConvPath::Winograd, ConvPath::Direct, ConvPath::Im2col] {
        assert_eq!(check_on(path, g, true), on_this_cpu(&[path]), "{path:?}");
    }
}

#[test]
fn im2col_on_the_reference_model_shapes_in_parallel() {
    // Forced, the im2col path computes the shapes Winograd would take, over the batch in
    // parallel (and, with n = 1, in a parallel GEMM): the GEMM engine forced as well reaches
    // the tasks on the pool.
    for g in [
        geom(4, 3, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1)),
        geom(3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1)),
        geom(1, 64, 16, 16, 96, (3, 3), (1, 1), (1, 1), (1, 1)),
    ] {
        let force = Force {
            conv: Some(ConvPath::Im2col),
            gemm: Some(GemmPath::Matrixmultiply),
            ..Force::NONE
        };
        let ((), ran) = forced(force, || check(g, true));
        assert_eq!(ran.convs(), vec![ConvPath::Im2col], "{g:?}");
        assert_eq!(ran.gemms(), vec![GemmPath::Matrixmultiply], "{g:?}");
        // The weight gradient alone: its chunks of the batch run on the pool.
        let (x, dy) = (random_vec(g.x_len(), 1), random_vec(g.y_len(), 2));
        let mut dw = vec![0.0; g.w_len()];
        let ((), ran) = forced(force, || conv2d_backward_weight(&g, &x, &dy, &mut dw, None));
        assert_eq!(
            (ran.convs(), ran.gemms()),
            (vec![ConvPath::Im2col], vec![GemmPath::Matrixmultiply])
        );
        if rayon::current_num_threads() > 1 && g.n > 1 {
            assert!(ran.pool_tasks() > 0, "{g:?}");
        }
    }
}
