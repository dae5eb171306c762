//! Gradient tests of the activations: finite differences over random shapes, a 1% fault
//! detector, batched against separate sweeps, and golden values from PyTorch.

mod batched;
mod common;

use batched::check_batched;
use common::{assert_close, away_from_zero, check, check_catches_one_percent, rng, uniform};
use rand::Rng;
use tapestry_autodiff::{Tape, Tensor, Var};

/// An activation under test.
type Activation = for<'t> fn(Var<'t>) -> Var<'t>;

/// Every activation, by the name its golden values use.
fn activations() -> Vec<(&'static str, Activation)> {
    vec![
        ("relu", |x| x.relu()),
        ("leaky_relu", |x| x.leaky_relu(0.1)),
        ("sigmoid", |x| x.sigmoid()),
        ("tanh", |x| x.tanh()),
        ("gelu", |x| x.gelu()),
        ("gelu_tanh", |x| x.gelu_tanh()),
        ("softplus", |x| x.softplus()),
        ("softplus_b2_t5", |x| x.softplus_with(2.0, 5.0)),
    ]
}

/// A random shape of `ndim` axes with lengths 1 to 4 (so size-1 axes occur).
fn random_shape(rng: &mut impl Rng, ndim: usize) -> Vec<usize> {
    (0..ndim).map(|_| rng.gen_range(1..=4)).collect()
}

#[test]
fn gradients_match_finite_differences_over_random_shapes() {
    let mut rng = rng(1);
    for (name, act) in activations() {
        for ndim in 0..=3 {
            let shape = random_shape(&mut rng, ndim);
            // |x| in [0.1, 2.4]: away from the kinks of relu and leaky_relu at 0, and below the
            // softplus thresholds (βx ≤ 4.8 < 5).
            let x = away_from_zero(&mut rng, &shape, 0.1, 2.4);
            check(&format!("{name} {shape:?}"), |_, v| act(v[0]), &[x]);
        }
    }
}

#[test]
fn gradients_of_permuted_inputs() {
    // A permuted (non-contiguous before materialising) input feeding each activation.
    let mut rng = rng(2);
    for (name, act) in activations() {
        let x = away_from_zero(&mut rng, &[2, 3, 4], 0.1, 2.4);
        check(&format!("{name} permuted"), |_, v| act(v[0].permute(&[2, 0, 1])), &[x]);
    }
}

#[test]
fn gradients_far_from_zero() {
    // Saturated regions: tails of sigmoid, tanh and gelu, and softplus above its threshold.
    let mut rng = rng(3);
    let x = away_from_zero(&mut rng, &[3, 4], 3.0, 6.0);
    for (name, act) in activations().into_iter().filter(|(n, _)| !n.starts_with("softplus")) {
        check(&format!("{name} tails"), |_, v| act(v[0]), std::slice::from_ref(&x));
    }
    let above = uniform(&mut rng, &[5], 21.0, 30.0);
    check("softplus above threshold", |_, v| v[0].softplus(), &[above]);
    let below = uniform(&mut rng, &[5], -30.0, -5.0);
    check("softplus far below", |_, v| v[0].softplus(), &[below]);
}

#[test]
fn gradients_through_broadcasting() {
    // An activation of a broadcast sum: its cotangent is summed back to both shapes.
    let mut rng = rng(4);
    let a = uniform(&mut rng, &[3, 1], -2.0, 2.0);
    let b = uniform(&mut rng, &[4], -2.0, 2.0);
    check("gelu(a + b)", |_, v| (v[0] + v[1]).gelu(), &[a.clone(), b.clone()]);
    check("sigmoid(a * b)", |_, v| (v[0] * v[1]).sigmoid(), &[a, b]);
}

#[test]
fn tolerance_catches_a_one_percent_error() {
    let mut rng = rng(5);
    let x = away_from_zero(&mut rng, &[2, 3], 0.2, 2.0);
    check_catches_one_percent("sigmoid", |_, v| v[0].sigmoid(), std::slice::from_ref(&x));
    check_catches_one_percent("gelu", |_, v| v[0].gelu(), std::slice::from_ref(&x));
    check_catches_one_percent("softplus", |_, v| v[0].softplus(), &[x]);
}

#[test]
fn batched_backward_equals_separate_passes() {
    let mut rng = rng(6);
    for (name, act) in activations() {
        let x = away_from_zero(&mut rng, &[2, 3], 0.1, 2.4);
        check_batched(name, |_, v| act(v[0]), &[x]);
    }
}

#[test]
fn extreme_inputs_reach_their_limits() {
    // At |x| ≥ 100 every activation is at its asymptote to f32 precision: 0 or the identity
    // (slope 0.1 for leaky relu), ±1 for tanh and 0 or 1 for sigmoid, with derivatives 0 or the
    // asymptote's slope (e^-100 ≈ 3.7e-44 counts as 0).
    let tape = Tape::new();
    let xs = [-1e30f32, -1e4, -100.0, 100.0, 1e4, 1e30];
    let x = tape.leaf(Tensor::from(xs.to_vec()));
    let identity_above = |slope_below: f32| -> (Vec<f32>, Vec<f32>) {
        let y = xs.iter().map(|&v| if v > 0.0 { v } else { slope_below * v }).collect();
        let g = xs.iter().map(|&v| if v > 0.0 { 1.0 } else { slope_below }).collect();
        (y, g)
    };
    let step = |lo: f32, hi: f32| -> (Vec<f32>, Vec<f32>) {
        (xs.iter().map(|&v| if v > 0.0 { hi } else { lo }).collect(), vec![0.0; 6])
    };
    for (name, act) in activations() {
        let (want_y, want_g) = match name {
            "leaky_relu" => identity_above(0.1),
            "sigmoid" => step(0.0, 1.0),
            "tanh" => step(-1.0, 1.0),
            _ => identity_above(0.0),
        };
        let y = act(x);
        let g = tape.backward(y.sum_all()).wrt(x);
        for (what, got, want) in
            [("value", y.value().to_vec(), want_y), ("gradient", g.to_vec(), want_g)]
        {
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs() + 1e-30,
                    "{name} {what} at {}: {a} vs {b}",
                    xs[i]
                );
            }
        }
    }
    let s = x.sigmoid().value().to_vec();
    assert_eq!((s[0], s[5]), (0.0, 1.0));
    let p = x.softplus().value().to_vec();
    assert_eq!((p[0], p[4]), (0.0, 1e4));
}

#[test]
fn relu_gradient_at_zero_is_zero() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(vec![-1.0, 0.0, 2.0]));
    let g = tape.backward(x.relu().sum_all()).wrt(x);
    assert_eq!(g.to_vec(), vec![0.0, 0.0, 1.0]);
}

#[test]
#[should_panic(expected = "invalid argument to softplus: beta must be positive, got 0")]
fn softplus_rejects_non_positive_beta() {
    let tape = Tape::new();
    tape.leaf(Tensor::from(vec![1.0])).softplus_with(0.0, 20.0);
}

#[test]
fn golden_values_from_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from(GOLDEN_X.to_vec()));
    let ops = activations();
    for (name, want_y, want_dx) in GOLDEN {
        let act = ops.iter().find(|(n, _)| *n == name).expect("every golden op is tested").1;
        let y = act(x);
        let dx = tape.backward(y.sum_all()).wrt(x);
        assert_close(&format!("{name} y"), &y.value().to_vec(), &want_y, 1e-5, 1e-6);
        assert_close(&format!("{name} dx"), &dx.to_vec(), &want_dx, 1e-5, 1e-6);
    }
}

// Generated by this script (PyTorch 1.13, `/usr/bin/python3 act.py`):
//
// ```python
// import torch
// import torch.nn.functional as F
// torch.set_printoptions(precision=8)
// x = torch.tensor([-1e4, -100., -20., -3.5, -1.2, -0.3, 0.4, 1.7, 3., 25., 100., 1e4])
// fs = {
//     "relu": F.relu,
//     "leaky_relu": lambda v: F.leaky_relu(v, 0.1),
//     "sigmoid": torch.sigmoid,
//     "tanh": torch.tanh,
//     "gelu": F.gelu,
//     "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
//     "softplus": F.softplus,
//     "softplus_b2_t5": lambda v: F.softplus(v, beta=2.0, threshold=5.0),
// }
// for name, f in fs.items():
//     xr = x.clone().requires_grad_()
//     y = f(xr)
//     y.sum().backward()
//     print(name, "y", [float(v) for v in y.detach()])
//     print(name, "dx", [float(v) for v in xr.grad])
// ```

/// The inputs of the golden values.
const GOLDEN_X: [f32; 12] = [-1e4, -100., -20., -3.5, -1.2, -0.3, 0.4, 1.7, 3., 25., 100., 1e4];

/// (activation, y, dy/dx) from PyTorch at `GOLDEN_X`.
#[rustfmt::skip]
const GOLDEN: [(&str, [f32; 12], [f32; 12]); 8] = [
    ("relu",
     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 1.7, 3.0, 25.0, 100.0, 10000.0],
     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("leaky_relu",
     [-1000.0, -10.0, -2.0, -0.35, -0.120000005, -0.030000001, 0.4, 1.7, 3.0, 25.0, 100.0, 10000.0],
     [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("sigmoid",
     [0.0, 0.0, 2.0611537e-09, 0.02931223, 0.23147522, 0.4255575, 0.59868765, 0.8455348, 0.95257413, 1.0, 1.0, 1.0],
     [0.0, 0.0, 2.0611537e-09, 0.028453022, 0.17789444, 0.24445832, 0.24026075, 0.1306057, 0.045176655, 0.0, 0.0, 0.0]),
    ("tanh",
     [-1.0, -1.0, -1.0, -0.9981779, -0.83365464, -0.29131263, 0.37994897, 0.93540907, 0.9950548, 1.0, 1.0, 1.0],
     [0.0, 0.0, 0.0, 0.0036409078, 0.30501994, 0.91513693, 0.8556388, 0.12500988, 0.0098659815, 0.0, 0.0, 0.0]),
    ("gelu",
     [0.0, 0.0, 0.0, -0.00081433356, -0.13808367, -0.11462659, 0.26216868, 1.6242388, 2.9959502, 25.0, 100.0, 10000.0],
     [0.0, 0.0, 0.0, -0.0028217137, -0.11795351, 0.26767227, 0.8027297, 1.115318, 1.0119456, 1.0, 1.0, 1.0]),
    ("gelu_tanh",
     [-0.0, -0.0, -0.0, -0.0006161481, -0.13829724, -0.11462908, 0.26216117, 1.6241059, 2.9963627, 25.0, 100.0, 10000.0],
     [0.0, 0.0, 0.0, -0.002422449, -0.11772615, 0.26770455, 0.8026588, 1.1159146, 1.0115843, 1.0, 1.0, 1.0]),
    ("softplus",
     [0.0, 3.8e-44, 2.0611537e-09, 0.029750418, 0.26328245, 0.55435526, 0.91301525, 1.867786, 3.0485873, 25.0, 100.0, 10000.0],
     [0.0, 3.8e-44, 2.0611537e-09, 0.02931223, 0.2314752, 0.42555746, 0.5986877, 0.84553474, 0.95257413, 1.0, 1.0, 1.0]),
    ("softplus_b2_t5",
     [0.0, 0.0, 2.124177e-18, 0.00045573324, 0.043418072, 0.21874397, 0.5855503, 1.7164143, 3.0, 25.0, 100.0, 10000.0],
     [0.0, 0.0, 4.248354e-18, 0.00091105123, 0.08317269, 0.35434368, 0.6899745, 0.96770453, 1.0, 1.0, 1.0, 1.0]),
];
