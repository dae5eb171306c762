//! Pooling against naive loops with PyTorch semantics (floor mode, implicit padding).

mod common;
use common::{assert_carries_forced_isa, assert_close, random_vec};
use tapestry_kernels::pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,
    Pool2dGeometry,
};

/// For each output element: the list of in-bounds input indices of its window (plane-local).
fn windows(g: &Pool2dGeometry) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for oy in 0..g.out_h() {
        for ox in 0..g.out_w() {
            let mut cells = Vec::new();
            for r in 0..g.kh {
                for s in 0..g.kw {
                    let iy = (oy * g.stride.0 + r) as isize - g.padding.0 as isize;
                    let ix = (ox * g.stride.1 + s) as isize - g.padding.1 as isize;
                    if iy >= 0 && ix >= 0 && iy < g.h as isize && ix < g.w as isize {
                        cells.push(iy as usize * g.w + ix as usize);
                    }
                }
            }
            out.push(cells);
        }
    }
    out
}

fn check(g: Pool2dGeometry) {
    g.validate().unwrap();
    let planes = g.n * g.c;
    let (xp, yp) = (g.h * g.w, g.out_h() * g.out_w());
    let x = random_vec(g.x_len(), (g.h * 13 + g.kh) as u64);
    let dy = random_vec(g.y_len(), 99);
    let win = windows(&g);

    let mut y = vec![f32::NAN; g.y_len()];
    let mut am = vec![u32::MAX; g.y_len()];
    max_pool2d_forward(&g, &x, &mut y, &mut am);
    let mut dx = vec![f32::NAN; g.x_len()];
    max_pool2d_backward(&g, &dy, &am, &mut dx);
    let mut dx_ref = vec![0.0f64; g.x_len()];
    for p in 0..planes {
        for (o, cells) in win.iter().enumerate() {
            // First maximum in row-major order.
            let mut best = cells[0];
            for &c in cells {
                if x[p * xp + c] > x[p * xp + best] {
                    best = c;
                }
            }
            assert_eq!(am[p * yp + o] as usize, best, "argmax {g:?} plane {p} out {o}");
            assert_eq!(y[p * yp + o], x[p * xp + best], "max {g:?}");
            dx_ref[p * xp + best] += dy[p * yp + o] as f64;
        }
    }
    assert_close(&dx, &dx_ref, 1e-6, &format!("max backward {g:?}"));

    let mut ya = vec![f32::NAN; g.y_len()];
    avg_pool2d_forward(&g, &x, &mut ya);
    let mut dxa = vec![f32::NAN; g.x_len()];
    avg_pool2d_backward(&g, &dy, &mut dxa);
    let mut ya_ref = vec![0.0f64; g.y_len()];
    let mut dxa_ref = vec![0.0f64; g.x_len()];
    let div = (g.kh * g.kw) as f64;
    for p in 0..planes {
        for (o, cells) in win.iter().enumerate() {
            for &c in cells {
                ya_ref[p * yp + o] += x[p * xp + c] as f64 / div;
                dxa_ref[p * xp + c] += dy[p * yp + o] as f64 / div;
            }
        }
    }
    assert_close(&ya, &ya_ref, 1e-6, &format!("avg forward {g:?}"));
    assert_close(&dxa, &dxa_ref, 1e-6, &format!("avg backward {g:?}"));
}

fn geom(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Pool2dGeometry {
    Pool2dGeometry { n, c, h, w, kh: k.0, kw: k.1, stride: s, padding: p }
}

#[test]
fn two_by_two_fast_path_even_and_odd_sizes() {
    check(geom(2, 3, 28, 28, (2, 2), (2, 2), (0, 0)));
    check(geom(1, 2, 7, 9, (2, 2), (2, 2), (0, 0)));
    check(geom(1, 1, 2, 2, (2, 2), (2, 2), (0, 0)));
}

#[test]
fn overlapping_padded_and_strided_windows() {
    check(geom(2, 2, 9, 8, (3, 3), (1, 1), (1, 1)));
    check(geom(1, 3, 11, 10, (3, 3), (2, 2), (1, 1)));
    check(geom(1, 1, 6, 13, (2, 4), (1, 3), (1, 2)));
    check(geom(2, 1, 5, 5, (5, 5), (1, 1), (2, 2)));
    check(geom(1, 1, 1, 1, (1, 1), (1, 1), (0, 0)));
    check(geom(1, 2, 8, 8, (3, 2), (3, 2), (0, 1)));
}

#[test]
fn large_input_takes_the_parallel_path() {
    check(geom(8, 32, 28, 28, (2, 2), (2, 2), (0, 0)));
    check(geom(4, 16, 20, 20, (3, 3), (2, 2), (1, 1)));
}

#[test]
fn nan_wins_the_max_like_pytorch() {
    let g = geom(1, 1, 2, 4, (2, 2), (2, 2), (0, 0));
    let x = [1.0, 2.0, 3.0, f32::NAN, 0.5, f32::NAN, 9.0, 1.0];
    let (mut y, mut am) = ([0.0f32; 2], [0u32; 2]);
    max_pool2d_forward(&g, &x, &mut y, &mut am);
    assert!(y[0].is_nan() && am[0] == 5);
    assert!(y[1].is_nan() && am[1] == 3);
}

#[test]
fn padding_above_half_the_window_is_rejected() {
    assert!(geom(1, 1, 5, 5, (2, 2), (1, 1), (2, 2)).validate().is_err());
    assert!(geom(1, 1, 5, 5, (3, 3), (0, 1), (1, 1)).validate().is_err());
}

#[test]
fn parallel_pooling_carries_the_forced_copy_to_the_pool() {
    // 2^16 input elements and more run over the pool.
    let g =
        Pool2dGeometry { n: 4, c: 16, h: 32, w: 32, kh: 2, kw: 2, stride: (2, 2), padding: (0, 0) };
    let x = random_vec(g.x_len(), 5);
    let dy = random_vec(g.y_len(), 6);
    let (mut y, mut am, mut dx) = (vec![0.0; g.y_len()], vec![0; g.y_len()], vec![0.0; g.x_len()]);
    // Max pooling's 2x2 windows run a multiversioned loop; the other kernels are plain loops.
    assert_carries_forced_isa("max_pool2d_forward", true, || {
        max_pool2d_forward(&g, &x, &mut y, &mut am)
    });
    assert_carries_forced_isa("max_pool2d_backward", false, || {
        max_pool2d_backward(&g, &dy, &am, &mut dx)
    });
    assert_carries_forced_isa("avg_pool2d_forward", false, || avg_pool2d_forward(&g, &x, &mut y));
    assert_carries_forced_isa("avg_pool2d_backward", false, || {
        avg_pool2d_backward(&g, &dy, &mut dx)
    });
}
