//! Every op family on non-contiguous inputs: each input is made by permuting a leaf, so the op
//! sees values laid out in another order than the leaf, and the gradient must flow back through
//! the permutation.

mod common;

use common::{away_from_zero, check, rng, uniform};
use tapestry_autodiff::{BatchNormMode, Reduction};

#[test]
fn elementwise_and_activations_on_permuted_inputs() {
    let mut r = rng(31);
    let a = away_from_zero(&mut r, &[4, 3], 0.3, 2.0); // used as [3, 4]
    let b = away_from_zero(&mut r, &[4], 0.3, 2.0);
    check("mul", |_, v| v[0].permute(&[1, 0]) * v[1], &[a.clone(), b.clone()]);
    check("div", |_, v| v[1] / v[0].transpose(0, 1), &[a.clone(), b]);
    check("tanh", |_, v| v[0].permute(&[1, 0]).tanh(), std::slice::from_ref(&a));
    check("relu", |_, v| v[0].permute(&[1, 0]).relu(), std::slice::from_ref(&a));
    check("softplus", |_, v| v[0].permute(&[1, 0]).softplus(), &[a]);
}

#[test]
fn matmul_and_linear_on_permuted_inputs() {
    let mut r = rng(32);
    let a = uniform(&mut r, &[5, 3], -1.0, 1.0); // used as [3, 5]
    let b = uniform(&mut r, &[4, 5], -1.0, 1.0); // used as [5, 4]
    check("matmul", |_, v| v[0].permute(&[1, 0]).matmul(v[1].permute(&[1, 0])), &[a.clone(), b]);
    let w = uniform(&mut r, &[2, 5], -1.0, 1.0);
    check("linear", |_, v| v[0].transpose(0, 1).linear(v[1], None), &[a, w]);
}

#[test]
fn reductions_on_permuted_inputs() {
    let mut r = rng(33);
    let x = uniform(&mut r, &[2, 3, 4], -1.0, 1.0);
    check("sum", |_, v| v[0].permute(&[2, 0, 1]).sum(&[1], false).exp(), std::slice::from_ref(&x));
    check(
        "mean",
        |_, v| v[0].permute(&[1, 2, 0]).mean(&[0, 2], true).exp(),
        std::slice::from_ref(&x),
    );
    check(
        "logsumexp",
        |_, v| v[0].permute(&[2, 1, 0]).logsumexp(&[0], false),
        std::slice::from_ref(&x),
    );
    check("var", |_, v| v[0].permute(&[2, 1, 0]).var(&[1], true, false), &[x]);
}

#[test]
fn conv_pool_and_norm_on_permuted_inputs() {
    let mut r = rng(34);
    // NHWC data permuted to NCHW.
    let x = uniform(&mut r, &[2, 5, 5, 3], -1.0, 1.0);
    let w = uniform(&mut r, &[4, 3, 3, 3], -0.5, 0.5);
    check(
        "conv2d",
        |_, v| v[0].permute(&[0, 3, 1, 2]).conv2d(v[1], None, (1, 1), (1, 1), (1, 1)),
        &[x.clone(), w],
    );
    check(
        "avg_pool2d",
        |_, v| v[0].permute(&[0, 3, 1, 2]).avg_pool2d((2, 2), (1, 1), (0, 0)),
        std::slice::from_ref(&x),
    );
    check(
        "batch_norm",
        |_, v| v[0].permute(&[0, 3, 1, 2]).batch_norm(None, None, BatchNormMode::Train, 1e-5).0,
        std::slice::from_ref(&x),
    );
    check(
        "layer_norm",
        |_, v| v[0].permute(&[0, 3, 1, 2]).layer_norm(&[5, 5], None, None, 1e-5),
        &[x],
    );
}

#[test]
fn losses_on_permuted_inputs() {
    let mut r = rng(35);
    // Per-pixel logits stored [N, H, W, C], used as [N, C, H, W].
    let logits = uniform(&mut r, &[2, 3, 3, 4], -2.0, 2.0);
    let labels: Vec<i64> = (0..18).map(|i| (i * 7 % 5) as i64 - 1).collect(); // some -1 = ignored
    check(
        "cross_entropy per pixel",
        |_, v| v[0].permute(&[0, 3, 1, 2]).cross_entropy(&labels, Some(-1), Reduction::Mean),
        &[logits],
    );
    let p = uniform(&mut r, &[3, 2], -1.0, 1.0);
    let t = uniform(&mut r, &[2, 3], -1.0, 1.0);
    check(
        "mse",
        |_, v| v[0].transpose(0, 1).mse_loss(v[1], Reduction::Mean),
        &[p.clone(), t.clone()],
    );
    check(
        "bce",
        |_, v| v[0].transpose(0, 1).bce_with_logits(v[1].sigmoid(), Reduction::Sum),
        &[p, t],
    );
}
