//! Gradient tests of the conv family: conv2d, max_pool2d, avg_pool2d, dropout.

mod batched;
mod common;

use common::{assert_close, away_from_zero, check, check_catches_one_percent, rng, uniform};
use rand::seq::SliceRandom;
use tapestry_autodiff::{Tape, Tensor};

/// (x shape, weight shape, stride, padding, dilation, with bias)
type ConvCase = ([usize; 4], [usize; 4], (usize, usize), (usize, usize), (usize, usize), bool);

const CONV_CASES: [ConvCase; 6] = [
    ([2, 3, 5, 5], [4, 3, 3, 3], (1, 1), (0, 0), (1, 1), true),
    ([1, 2, 7, 6], [3, 2, 3, 3], (2, 2), (2, 2), (1, 1), true), // padding k − 1
    ([2, 2, 7, 7], [2, 2, 3, 2], (1, 2), (1, 1), (2, 3), false), // dilation > 1
    ([1, 3, 5, 7], [2, 3, 1, 1], (2, 3), (0, 0), (1, 1), true), // 1×1, strided
    ([1, 1, 6, 5], [2, 1, 2, 3], (3, 2), (1, 2), (2, 1), true), // even kernel, mixed
    ([3, 1, 3, 3], [1, 1, 3, 3], (1, 1), (1, 1), (1, 1), false),
];

fn conv_inputs(seed: u64, case: &ConvCase) -> Vec<Tensor> {
    let mut r = rng(seed);
    let (xs, ws, .., bias) = *case;
    let mut v = vec![uniform(&mut r, &xs, -1.0, 1.0), uniform(&mut r, &ws, -1.0, 1.0)];
    if bias {
        v.push(uniform(&mut r, &[ws[0]], -1.0, 1.0));
    }
    v
}

fn conv_fn(
    case: ConvCase,
) -> impl for<'t> Fn(&'t Tape, &[tapestry_autodiff::Var<'t>]) -> tapestry_autodiff::Var<'t> {
    let (.., stride, padding, dilation, _) = case;
    move |_, v| v[0].conv2d(v[1], v.get(2).copied(), stride, padding, dilation)
}

#[test]
fn conv2d_gradcheck() {
    for (i, case) in CONV_CASES.iter().enumerate() {
        check(&format!("conv2d case {i}"), conv_fn(*case), &conv_inputs(i as u64, case));
    }
}

#[test]
fn conv2d_catches_one_percent() {
    for i in [1, 2] {
        let case = &CONV_CASES[i];
        check_catches_one_percent(
            &format!("conv2d case {i}"),
            conv_fn(*case),
            &conv_inputs(i as u64, case),
        );
    }
}

#[test]
fn conv2d_batched_equals_separate() {
    // Inputs 0 and 1 are x and w: both are compared (and the bias where there is one).
    for (i, case) in CONV_CASES.iter().enumerate() {
        batched::check_batched(
            &format!("conv2d case {i}"),
            conv_fn(*case),
            &conv_inputs(10 + i as u64, case),
        );
    }
}

/// Distinct values 0.1 apart in random order: no two within the finite-difference step, so
/// the arg-max of every window is stable under the check's perturbations.
fn tie_free(seed: u64, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.1).collect();
    v.shuffle(&mut rng(seed));
    Tensor::from_vec(shape, v).unwrap()
}

/// (input shape, kernel, stride, padding)
type PoolCase = ([usize; 4], (usize, usize), (usize, usize), (usize, usize));

const POOL_CASES: [PoolCase; 5] = [
    ([2, 2, 4, 4], (2, 2), (2, 2), (0, 0)),
    ([1, 2, 5, 6], (3, 3), (2, 2), (1, 1)), // stride ≠ kernel, padding
    ([2, 1, 7, 5], (3, 2), (1, 2), (1, 1)), // overlapping windows
    ([1, 1, 5, 5], (2, 3), (3, 1), (1, 0)),
    ([1, 3, 3, 3], (1, 1), (2, 2), (0, 0)),
];

#[test]
fn pooling_gradcheck() {
    for (i, &(shape, k, s, p)) in POOL_CASES.iter().enumerate() {
        let x = tie_free(i as u64, &shape);
        check(
            &format!("max_pool2d case {i}"),
            move |_, v| v[0].max_pool2d(k, s, p),
            std::slice::from_ref(&x),
        );
        check(&format!("avg_pool2d case {i}"), move |_, v| v[0].avg_pool2d(k, s, p), &[x]);
    }
}

#[test]
fn pooling_catches_one_percent() {
    let (shape, k, s, p) = POOL_CASES[2];
    let x = tie_free(3, &shape);
    check_catches_one_percent(
        "max_pool2d",
        move |_, v| v[0].max_pool2d(k, s, p),
        std::slice::from_ref(&x),
    );
    check_catches_one_percent("avg_pool2d", move |_, v| v[0].avg_pool2d(k, s, p), &[x]);
}

#[test]
fn pooling_batched_equals_separate() {
    for (i, &(shape, k, s, p)) in POOL_CASES.iter().enumerate() {
        let x = tie_free(20 + i as u64, &shape);
        batched::check_batched(
            &format!("max_pool2d case {i}"),
            move |_, v| v[0].max_pool2d(k, s, p),
            std::slice::from_ref(&x),
        );
        batched::check_batched(
            &format!("avg_pool2d case {i}"),
            move |_, v| v[0].avg_pool2d(k, s, p),
            &[x],
        );
    }
}

#[test]
fn pooling_after_conv_batched() {
    // A small trunk: conv → max pool → avg pool, stacked cotangents through all three.
    let mut r = rng(30);
    let inputs =
        [uniform(&mut r, &[2, 2, 6, 6], -1.0, 1.0), uniform(&mut r, &[3, 2, 3, 3], -1.0, 1.0)];
    batched::check_batched(
        "conv trunk",
        |_, v| {
            v[0].conv2d(v[1], None, (1, 1), (1, 1), (1, 1))
                .max_pool2d((2, 2), (2, 2), (0, 0))
                .avg_pool2d((3, 3), (1, 1), (1, 1))
        },
        &inputs,
    );
}

#[test]
fn dropout_gradient_is_the_mask() {
    let x = away_from_zero(&mut rng(40), &[4, 50], 0.5, 1.5);
    check("dropout", |_, v| v[0].dropout(0.3, true, &mut rng(7)), std::slice::from_ref(&x));
    check_catches_one_percent(
        "dropout",
        |_, v| v[0].dropout(0.3, true, &mut rng(7)),
        std::slice::from_ref(&x),
    );
    batched::check_batched(
        "dropout",
        |_, v| v[0].dropout(0.3, true, &mut rng(7)),
        std::slice::from_ref(&x),
    );

    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let y = xv.dropout(0.3, true, &mut rng(7)).value();
    let grad = tape.backward(xv.dropout(0.3, true, &mut rng(7)).sum_all()).wrt(xv);
    let keep = 1.0 / 0.7;
    let mut kept = 0;
    for ((&yi, &xi), &gi) in y.as_slice().iter().zip(x.as_slice()).zip(grad.as_slice()) {
        if yi == 0.0 {
            assert_eq!(gi, 0.0);
        } else {
            kept += 1;
            assert!((yi - xi * keep).abs() < 1e-6 && (gi - keep).abs() < 1e-6);
        }
    }
    // 200 draws with keep probability 0.7: 140 ± 6.5 (one standard deviation).
    assert!((110..=170).contains(&kept), "kept {kept} of 200");
}

#[test]
fn dropout_outside_training_is_identity() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::ones(&[3]));
    assert_eq!(x.dropout(0.5, false, &mut rng(1)).id(), x.id());
    assert_eq!(x.dropout(0.0, true, &mut rng(1)).id(), x.id());
    assert_eq!(x.dropout(1.0, true, &mut rng(1)).value().to_vec(), vec![0.0; 3]);
}

#[test]
#[should_panic(expected = "shape mismatch in conv2d: lhs [1, 3, 5, 5], rhs [2, 4, 3, 3]")]
fn conv2d_channel_mismatch_names_shapes() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::zeros(&[1, 3, 5, 5]));
    x.conv2d(tape.leaf(Tensor::zeros(&[2, 4, 3, 3])), None, (1, 1), (0, 0), (1, 1));
}

#[test]
#[should_panic(
    expected = "invalid argument to max_pool2d: padding (2, 2) exceeds half the kernel (3, 3)"
)]
fn pool_padding_too_large() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[1, 1, 5, 5])).max_pool2d((3, 3), (1, 1), (2, 2));
}

// Golden values from PyTorch 1.13 (float64), produced by this script:
//
// ```python
// import numpy as np
// import torch
// torch.set_default_dtype(torch.float64)
// def seq(n, a, m, d):  # deterministic values k/d, exact in f32
//     return torch.tensor([((i * a) % m - m // 2) / d for i in range(n)])
// def lit(v):  # the shortest Rust literal of the nearest f32
//     return np.format_float_positional(np.float32(v), unique=True, trim="0")
// def show(name, t):
//     print(f"const {name}: [f32; {t.numel()}] = [{', '.join(lit(v) for v in t.flatten().tolist())}];")
// x = seq(40, 7, 17, 8.0).reshape(1, 2, 4, 5).requires_grad_()
// w = seq(24, 5, 11, 4.0).reshape(2, 2, 3, 2).requires_grad_()
// b = torch.tensor([0.5, -0.25], requires_grad=True)
// y = torch.nn.functional.conv2d(x, w, b, stride=(2, 1), padding=(1, 1), dilation=(1, 2))
// r = seq(y.numel(), 3, 7, 2.0).reshape(y.shape)
// (y * r).sum().backward()
// show("CONV_Y", y); show("CONV_DX", x.grad); show("CONV_DW", w.grad); show("CONV_DB", b.grad)
// p = torch.tensor([float((i * 11) % 25) for i in range(25)]).reshape(1, 1, 5, 5).requires_grad_()
// m = torch.nn.functional.max_pool2d(p, (3, 3), (2, 2), (1, 1))
// a = torch.nn.functional.avg_pool2d(p, (3, 2), (2, 1), (1, 1))
// rm = seq(m.numel(), 3, 7, 2.0).reshape(m.shape); ra = seq(a.numel(), 5, 9, 4.0).reshape(a.shape)
// ((m * rm).sum() + (a * ra).sum()).backward()
// show("POOL_X", p); show("MAX_Y", m); show("AVG_Y", a); show("POOL_DX", p.grad)
// ```
const CONV_Y: [f32; 20] = [
    -0.46875, -0.78125, 0.8125, -0.78125, -0.46875, -1.59375, 1.65625, 1.09375, -0.53125, 0.84375,
    -0.28125, 2.59375, -2.0, 1.90625, -0.09375, 0.46875, 1.75, -3.03125, 3.875, -0.9375,
];
const CONV_DX: [f32; 40] = [
    -0.25, 2.0, 0.25, 0.25, 0.625, -1.125, 4.25, 1.875, -2.25, 1.875, 0.25, -1.5, 1.125, 2.0, 1.0,
    -0.25, -0.75, 0.375, 2.375, 0.75, -1.0, 3.125, -0.5, 0.25, 0.625, -2.0, 3.5, -1.125, 3.0,
    1.125, -1.25, 0.75, -1.125, 3.125, 0.25, -1.75, 1.5, -1.875, 3.5, 0.0,
];
const CONV_DW: [f32; 24] = [
    -1.0, 1.0, -2.0, 0.0, -1.6875, -1.375, -0.75, -1.0625, 0.3125, -2.3125, 0.625, -2.625, -0.0625,
    2.0, 0.3125, 3.75, -1.8125, 0.8125, -1.6875, -0.1875, -2.875, -2.6875, -2.875, -2.4375,
];
const CONV_DB: [f32; 2] = [0.0, -0.5];
const POOL_X: [f32; 25] = [
    0.0, 11.0, 22.0, 8.0, 19.0, 5.0, 16.0, 2.0, 13.0, 24.0, 10.0, 21.0, 7.0, 18.0, 4.0, 15.0, 1.0,
    12.0, 23.0, 9.0, 20.0, 6.0, 17.0, 3.0, 14.0,
];
const MAX_Y: [f32; 9] = [16.0, 22.0, 24.0, 21.0, 23.0, 24.0, 20.0, 23.0, 23.0];
const AVG_Y: [f32; 18] = [
    0.8333333, 5.3333335, 8.5, 7.5, 10.666667, 7.1666665, 5.0, 11.333333, 9.833333, 12.5,
    15.166667, 6.1666665, 5.8333335, 7.0, 6.0, 9.166667, 8.166667, 3.8333333,
];
const POOL_DX: [f32; 25] = [
    -0.125,
    -0.083333336,
    -0.041666668,
    0.0,
    0.041666668,
    0.0,
    -1.4166666,
    -0.20833333,
    -0.125,
    0.45833334,
    0.125,
    -0.33333334,
    -0.16666667,
    -0.125,
    -0.083333336,
    0.125,
    0.20833333,
    -0.083333336,
    -0.5,
    0.083333336,
    0.5,
    0.041666668,
    0.083333336,
    0.125,
    0.16666667,
];

fn seq(n: usize, a: usize, m: usize, d: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * a) % m) as f32 - (m / 2) as f32).map(|v| v / d).collect()
}

#[test]
fn conv2d_matches_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[1, 2, 4, 5], seq(40, 7, 17, 8.0)).unwrap());
    let w = tape.leaf(Tensor::from_vec(&[2, 2, 3, 2], seq(24, 5, 11, 4.0)).unwrap());
    let b = tape.leaf(Tensor::from(vec![0.5, -0.25]));
    let y = x.conv2d(w, Some(b), (2, 1), (1, 1), (1, 2));
    assert_eq!(y.shape(), vec![1, 2, 2, 5]);
    let r = tape.constant(Tensor::from_vec(&[1, 2, 2, 5], seq(20, 3, 7, 2.0)).unwrap());
    let grads = tape.backward((y * r).sum_all());
    assert_close("y", &y.value().to_vec(), &CONV_Y, 1e-5, 1e-6);
    assert_close("dx", &grads.wrt(x).to_vec(), &CONV_DX, 1e-5, 1e-6);
    assert_close("dw", &grads.wrt(w).to_vec(), &CONV_DW, 1e-5, 1e-6);
    assert_close("db", &grads.wrt(b).to_vec(), &CONV_DB, 1e-5, 1e-6);
}

#[test]
fn pooling_matches_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[1, 1, 5, 5], POOL_X.to_vec()).unwrap());
    let m = x.max_pool2d((3, 3), (2, 2), (1, 1));
    let a = x.avg_pool2d((3, 2), (2, 1), (1, 1));
    assert_eq!((m.shape(), a.shape()), (vec![1, 1, 3, 3], vec![1, 1, 3, 6]));
    let rm = tape.constant(Tensor::from_vec(&[1, 1, 3, 3], seq(9, 3, 7, 2.0)).unwrap());
    let ra = tape.constant(Tensor::from_vec(&[1, 1, 3, 6], seq(18, 5, 9, 4.0)).unwrap());
    let grads = tape.backward((m * rm).sum_all() + (a * ra).sum_all());
    assert_close("max", &m.value().to_vec(), &MAX_Y, 1e-6, 0.0);
    assert_close("avg", &a.value().to_vec(), &AVG_Y, 1e-5, 1e-6);
    assert_close("dx", &grads.wrt(x).to_vec(), &POOL_DX, 1e-5, 1e-6);
}
