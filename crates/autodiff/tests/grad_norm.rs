//! Gradient tests of the norm family: batch_norm (train and eval) and layer_norm.

mod batched;
mod common;

use common::{assert_close, check, check_catches_one_percent, rng, uniform};
use tapestry_autodiff::ops::norm::BatchNormMode;
use tapestry_autodiff::{Tape, Tensor, Var};

const BN_SHAPES: [&[usize]; 4] = [&[4, 3], &[3, 2, 2, 3], &[2, 1, 3, 3], &[5, 2, 1, 1]];

/// x, γ, β for a batch-norm input of `shape`.
fn bn_inputs(seed: u64, shape: &[usize]) -> Vec<Tensor> {
    let mut r = rng(seed);
    let c = shape[1];
    vec![
        uniform(&mut r, shape, -2.0, 2.0),
        uniform(&mut r, &[c], 0.5, 1.5),
        uniform(&mut r, &[c], -1.0, 1.0),
    ]
}

fn bn_train<'t>(_: &'t Tape, v: &[Var<'t>]) -> Var<'t> {
    v[0].batch_norm(Some(v[1]), Some(v[2]), BatchNormMode::Train, 1e-5).0
}

fn bn_train_plain<'t>(_: &'t Tape, v: &[Var<'t>]) -> Var<'t> {
    v[0].batch_norm(None, None, BatchNormMode::Train, 1e-3).0
}

/// A function of the checked inputs, as the gradient checks take it.
type OpFn = Box<dyn for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>>;

fn bn_eval(running_mean: Tensor, running_var: Tensor) -> OpFn {
    Box::new(move |_, v| {
        let mode = BatchNormMode::Eval { running_mean: &running_mean, running_var: &running_var };
        let (y, stats) = v[0].batch_norm(Some(v[1]), Some(v[2]), mode, 1e-5);
        assert!(stats.is_none());
        y
    })
}

fn ln(normalized: &'static [usize], affine: bool) -> OpFn {
    Box::new(move |_, v| match affine {
        true => v[0].layer_norm(normalized, Some(v[1]), Some(v[2]), 1e-5),
        false => v[0].layer_norm(normalized, None, None, 1e-5),
    })
}

#[test]
fn batch_norm_train_gradcheck() {
    for (i, shape) in BN_SHAPES.iter().enumerate() {
        let inputs = bn_inputs(i as u64, shape);
        check(&format!("batch_norm train {shape:?}"), bn_train, &inputs);
        check(&format!("batch_norm train, no affine {shape:?}"), bn_train_plain, &inputs[..1]);
    }
}

#[test]
fn batch_norm_eval_gradcheck() {
    for (i, shape) in BN_SHAPES.iter().enumerate() {
        let inputs = bn_inputs(10 + i as u64, shape);
        let c = shape[1];
        let mut r = rng(20 + i as u64);
        let (mean, var) = (uniform(&mut r, &[c], -1.0, 1.0), uniform(&mut r, &[c], 0.5, 2.0));
        let f = bn_eval(mean, var);
        check(&format!("batch_norm eval {shape:?}"), &f, &inputs);
        batched::check_batched(&format!("batch_norm eval {shape:?}"), &f, &inputs);
    }
}

#[test]
fn batch_norm_catches_one_percent() {
    check_catches_one_percent("batch_norm train", bn_train, &bn_inputs(30, &[3, 2, 2, 3]));
}

#[test]
fn batch_norm_batched_equals_separate() {
    for (i, shape) in BN_SHAPES.iter().enumerate() {
        batched::check_batched(
            &format!("batch_norm train {shape:?}"),
            bn_train,
            &bn_inputs(40 + i as u64, shape),
        );
    }
}

/// (input shape, normalised shape)
const LN_CASES: [(&[usize], &[usize]); 4] =
    [(&[4, 5], &[5]), (&[2, 3, 4], &[3, 4]), (&[3, 2, 3], &[3]), (&[2, 6], &[2, 6])];

fn ln_inputs(seed: u64, shape: &[usize], normalized: &[usize]) -> Vec<Tensor> {
    let mut r = rng(seed);
    vec![
        uniform(&mut r, shape, -2.0, 2.0),
        uniform(&mut r, normalized, 0.5, 1.5),
        uniform(&mut r, normalized, -1.0, 1.0),
    ]
}

#[test]
fn layer_norm_gradcheck_and_batched() {
    for (i, &(shape, normalized)) in LN_CASES.iter().enumerate() {
        let inputs = ln_inputs(50 + i as u64, shape, normalized);
        let (affine, plain) = (ln(normalized, true), ln(normalized, false));
        check(&format!("layer_norm {shape:?} over {normalized:?}"), &affine, &inputs);
        check(&format!("layer_norm {shape:?}, no affine"), &plain, &inputs[..1]);
        batched::check_batched(&format!("layer_norm {shape:?}"), &affine, &inputs);
        batched::check_batched(&format!("layer_norm {shape:?}, no affine"), &plain, &inputs[..1]);
    }
    let (shape, normalized) = LN_CASES[1];
    check_catches_one_percent(
        "layer_norm",
        ln(normalized, true),
        &ln_inputs(60, shape, normalized),
    );
}

#[test]
fn batch_norm_output_is_normalised() {
    let x = uniform(&mut rng(70), &[8, 3, 2, 2], -3.0, 5.0);
    let tape = Tape::new();
    let (y, stats) = tape.leaf(x).batch_norm(None, None, BatchNormMode::Train, 0.0);
    let stats = stats.unwrap();
    let y = y.value();
    for c in 0..3 {
        let vals: Vec<f32> = (0..8)
            .flat_map(|n| (0..4).map(move |s| (n * 3 + c) * 4 + s))
            .map(|i| y.as_slice()[i])
            .collect();
        let mean = vals.iter().sum::<f32>() / 32.0;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 32.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "channel {c}: mean {mean}, var {var}"
        );
        let (b, u) = (stats.var.as_slice()[c], stats.unbiased_var.as_slice()[c]);
        assert!((u - b * 32.0 / 31.0).abs() < 1e-5 * u, "unbiased {u} vs biased {b}");
    }
}

#[test]
#[should_panic(expected = "shape mismatch in batch_norm: lhs [2, 3], rhs [2]")]
fn batch_norm_gamma_shape_names_shapes() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[2, 3]));
    x.batch_norm(Some(tape.leaf(Tensor::ones(&[2]))), None, BatchNormMode::Train, 1e-5);
}

#[test]
#[should_panic(expected = "shape mismatch in layer_norm: lhs [2, 3], rhs [2]")]
fn layer_norm_shape_names_shapes() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[2, 3])).layer_norm(&[2], None, None, 1e-5);
}

// Golden values from PyTorch 1.13 (float64), produced by this script:
//
// ```python
// import numpy as np
// import torch
// torch.set_default_dtype(torch.float64)
// F = torch.nn.functional
// def seq(n, a, m, d):  # deterministic values k/d, exact in f32
//     return torch.tensor([((i * a) % m - m // 2) / d for i in range(n)])
// def lit(v):  # the shortest Rust literal of the nearest f32
//     return np.format_float_positional(np.float32(v), unique=True, trim="0")
// def show(name, t):
//     print(f"const {name}: [f32; {t.numel()}] = [{', '.join(lit(v) for v in t.flatten().tolist())}];")
// x = seq(24, 7, 17, 4.0).reshape(3, 2, 2, 2).requires_grad_()
// g = torch.tensor([1.5, -0.5], requires_grad=True)
// b = torch.tensor([0.25, 2.0], requires_grad=True)
// rm, rv = torch.zeros(2), torch.ones(2)
// y = F.batch_norm(x, rm, rv, g, b, training=True, momentum=1.0, eps=1e-5)  # momentum 1: rm, rv = batch stats
// r = seq(24, 5, 11, 2.0).reshape(x.shape)
// (y * r).sum().backward()
// show("BN_X", x); show("BN_Y", y); show("BN_MEAN", rm); show("BN_UNBIASED_VAR", rv)
// show("BN_DX", x.grad); show("BN_DGAMMA", g.grad); show("BN_DBETA", b.grad)
// x.grad = None; g.grad = None; b.grad = None
// run_mean, run_var = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.25])
// y = F.batch_norm(x, run_mean, run_var, g, b, training=False, eps=1e-5)
// (y * r).sum().backward()
// show("BN_EVAL_Y", y); show("BN_EVAL_DX", x.grad); show("BN_EVAL_DGAMMA", g.grad); show("BN_EVAL_DBETA", b.grad)
// x = seq(12, 5, 13, 4.0).reshape(2, 2, 3).requires_grad_()
// w = torch.tensor([[1.0, -2.0, 0.5], [0.25, 1.5, -1.0]], requires_grad=True)
// bb = torch.tensor([[0.0, 1.0, -1.0], [0.5, 0.5, 2.0]], requires_grad=True)
// y = F.layer_norm(x, (2, 3), w, bb, eps=1e-5)
// r = seq(12, 3, 7, 2.0).reshape(x.shape)
// (y * r).sum().backward()
// show("LN_X", x); show("LN_Y", y); show("LN_DX", x.grad); show("LN_DGAMMA", w.grad); show("LN_DBETA", bb.grad)
// ```
const BN_X: [f32; 24] = [
    -2.0, -0.25, 1.5, -1.0, 0.75, -1.75, 0.0, 1.75, -0.75, 1.0, -1.5, 0.25, 2.0, -0.5, 1.25, -1.25,
    0.5, -2.0, -0.25, 1.5, -1.0, 0.75, -1.75, 0.0,
];
const BN_Y: [f32; 24] = [
    -1.9554334,
    0.25,
    2.4554334,
    -0.6951857,
    1.7078062,
    2.7096136,
    2.0083485,
    1.3070834,
    -0.38012382,
    1.8253095,
    -1.3253095,
    0.8801238,
    1.2069026,
    2.20871,
    1.5074447,
    2.509252,
    1.1951857,
    -1.9554334,
    0.25,
    2.4554334,
    2.4090712,
    1.7078062,
    2.7096136,
    2.0083485,
];
const BN_MEAN: [f32; 2] = [-0.25, 0.020833334];
const BN_UNBIASED_VAR: [f32; 2] = [1.5454545, 1.6983901];
const BN_DX: [f32; 24] = [
    -2.4425044,
    0.36757222,
    3.1776488,
    -0.11660483,
    -0.7214579,
    0.32095888,
    -0.56902206,
    0.744973,
    1.7251177,
    -2.3961678,
    1.2409407,
    -2.8803446,
    0.15986383,
    -1.0016953,
    0.3122997,
    -0.84925944,
    -1.0386221,
    2.5984862,
    -1.5227993,
    1.2872775,
    0.76960737,
    -0.12037357,
    0.9220432,
    0.03206231,
];
const BN_DGAMMA: [f32; 2] = [2.2054334, 2.3876407];
const BN_DBETA: [f32; 2] = [-3.5, 1.0];
const BN_EVAL_Y: [f32; 24] = [
    -2.4016438,
    -0.5454931,
    1.3106575,
    -1.3409863,
    0.250035,
    2.749985,
    1.00002,
    -0.749945,
    -1.0758219,
    0.78032875,
    -1.871315,
    -0.01516438,
    -0.99994,
    1.50001,
    -0.249955,
    2.249995,
    0.25,
    -2.4016438,
    -0.5454931,
    1.3106575,
    2.0,
    0.250035,
    2.749985,
    1.00002,
];
const BN_EVAL_DX: [f32; 24] = [
    -2.6516438,
    0.0,
    2.6516438,
    -0.53032875,
    -1.99996,
    0.99998,
    -1.49997,
    1.49997,
    1.0606575,
    -2.121315,
    0.53032875,
    -2.6516438,
    -0.0,
    -2.49995,
    0.49999,
    -1.99996,
    -1.0606575,
    1.5909863,
    -1.5909863,
    1.0606575,
    1.99996,
    -0.49999,
    2.49995,
    -0.0,
];
const BN_EVAL_DGAMMA: [f32; 2] = [3.7123013, 7.99984];
const BN_EVAL_DBETA: [f32; 2] = [-3.5, 1.0];
const LN_X: [f32; 12] = [-1.5, -0.25, 1.0, -1.0, 0.25, 1.5, -0.5, 0.75, -1.25, 0.0, 1.25, -0.75];
const LN_Y: [f32; 12] = [
    -1.4274864, 1.4758288, -0.5241712, 0.2620856, 0.8568716, 0.5725136, -0.483365, -0.93346,
    -1.676711, 0.52416825, 2.820152, 2.773384,
];
const LN_DX: [f32; 12] = [
    -0.6078885,
    -0.07818419,
    -0.26222304,
    0.34152785,
    0.9901894,
    -0.38342148,
    0.38488212,
    2.637959,
    0.193112,
    -0.018972624,
    -1.9711713,
    -1.2258092,
];
const LN_DGAMMA: [f32; 6] = [1.8995471, -1.4500949, 1.4274864, 0.6208383, -0.5354696, -2.2008703];
const LN_DBETA: [f32; 6] = [-1.0, -1.5, 1.5, 1.0, 0.5, 0.0];

fn seq(n: usize, a: usize, m: usize, d: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * a) % m) as f32 - (m / 2) as f32).map(|v| v / d).collect()
}

#[test]
fn batch_norm_matches_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[3, 2, 2, 2], seq(24, 7, 17, 4.0)).unwrap());
    assert_eq!(x.value().to_vec(), BN_X);
    let gamma = tape.leaf(Tensor::from(vec![1.5, -0.5]));
    let beta = tape.leaf(Tensor::from(vec![0.25, 2.0]));
    let r = tape.constant(Tensor::from_vec(&[3, 2, 2, 2], seq(24, 5, 11, 2.0)).unwrap());

    let (y, stats) = x.batch_norm(Some(gamma), Some(beta), BatchNormMode::Train, 1e-5);
    let stats = stats.unwrap();
    let grads = tape.backward((y * r).sum_all());
    assert_close("y", &y.value().to_vec(), &BN_Y, 1e-5, 1e-5);
    assert_close("mean", &stats.mean.to_vec(), &BN_MEAN, 1e-6, 1e-7);
    assert_close("unbiased var", &stats.unbiased_var.to_vec(), &BN_UNBIASED_VAR, 1e-6, 0.0);
    assert_close("dx", &grads.wrt(x).to_vec(), &BN_DX, 1e-5, 1e-5);
    assert_close("dgamma", &grads.wrt(gamma).to_vec(), &BN_DGAMMA, 1e-5, 1e-5);
    assert_close("dbeta", &grads.wrt(beta).to_vec(), &BN_DBETA, 1e-6, 1e-6);

    let (running_mean, running_var) =
        (Tensor::from(vec![0.5, -1.0]), Tensor::from(vec![2.0, 0.25]));
    let mode = BatchNormMode::Eval { running_mean: &running_mean, running_var: &running_var };
    let (y, _) = x.batch_norm(Some(gamma), Some(beta), mode, 1e-5);
    let grads = tape.backward((y * r).sum_all());
    assert_close("eval y", &y.value().to_vec(), &BN_EVAL_Y, 1e-5, 1e-5);
    assert_close("eval dx", &grads.wrt(x).to_vec(), &BN_EVAL_DX, 1e-5, 1e-5);
    assert_close("eval dgamma", &grads.wrt(gamma).to_vec(), &BN_EVAL_DGAMMA, 1e-5, 1e-5);
    assert_close("eval dbeta", &grads.wrt(beta).to_vec(), &BN_EVAL_DBETA, 1e-6, 1e-6);
}

#[test]
fn layer_norm_matches_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[2, 2, 3], seq(12, 5, 13, 4.0)).unwrap());
    assert_eq!(x.value().to_vec(), LN_X);
    let gamma =
        tape.leaf(Tensor::from_vec(&[2, 3], vec![1.0, -2.0, 0.5, 0.25, 1.5, -1.0]).unwrap());
    let beta = tape.leaf(Tensor::from_vec(&[2, 3], vec![0.0, 1.0, -1.0, 0.5, 0.5, 2.0]).unwrap());
    let y = x.layer_norm(&[2, 3], Some(gamma), Some(beta), 1e-5);
    let r = tape.constant(Tensor::from_vec(&[2, 2, 3], seq(12, 3, 7, 2.0)).unwrap());
    let grads = tape.backward((y * r).sum_all());
    assert_close("y", &y.value().to_vec(), &LN_Y, 1e-5, 1e-5);
    assert_close("dx", &grads.wrt(x).to_vec(), &LN_DX, 1e-5, 1e-5);
    assert_close("dgamma", &grads.wrt(gamma).to_vec(), &LN_DGAMMA, 1e-5, 1e-5);
    assert_close("dbeta", &grads.wrt(beta).to_vec(), &LN_DBETA, 1e-6, 1e-6);
}
