//! Gradients of sum and mean over chosen axes.

mod common;

use common::{check, check_catches_one_percent, rng, uniform};

#[test]
fn sum_and_mean_over_axes() {
    let mut r = rng(21);
    let x = uniform(&mut r, &[2, 3, 4], -1.0, 1.0);
    for axes in [&[][..], &[0], &[1], &[2], &[0, 2], &[2, 0, 1]] {
        for keep in [false, true] {
            // Multiply by a non-uniform tensor so the cotangent differs per element.
            check("sum", |_, v| v[0].sum(axes, keep).exp(), std::slice::from_ref(&x));
            check("mean", |_, v| v[0].mean(axes, keep).exp(), std::slice::from_ref(&x));
        }
    }
    check_catches_one_percent("mean", |_, v| v[0].mean(&[1], false).exp(), &[x]);
}

#[test]
fn size_one_axes() {
    let mut r = rng(22);
    let x = uniform(&mut r, &[1, 3, 1], -1.0, 1.0);
    check("sum size-1", |_, v| (v[0].sum(&[0, 2], true) * v[0]).exp(), &[x]);
}
