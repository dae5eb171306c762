//! Gradient tests of max, logsumexp and var: finite differences over random shapes and axes, a
//! 1% fault detector, batched against separate sweeps, and golden values from PyTorch.

mod batched;
mod common;

use batched::check_batched;
use common::{assert_close, check, check_catches_one_percent, rng, uniform};
use rand::seq::SliceRandom;
use rand::Rng;
use tapestry_autodiff::{Tape, Tensor, Var};

/// A reduction under test: input, axes, keepdim.
type Reduction = for<'t> fn(Var<'t>, &[usize], bool) -> Var<'t>;

fn reductions() -> Vec<(&'static str, Reduction)> {
    vec![
        ("max", |x, axes, keep| x.max(axes, keep)),
        ("logsumexp", |x, axes, keep| x.logsumexp(axes, keep)),
        ("var", |x, axes, keep| x.var(axes, true, keep)),
        ("var biased", |x, axes, keep| x.var(axes, false, keep)),
    ]
}

/// Values 0.15 apart in random order: no ties, and no finite-difference step (at most 2h ≈ 0.1
/// for |x| < 5) moves an element past another, so every arg-max stays put.
fn distinct(rng: &mut impl Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|k| (k as f32 - n as f32 / 2.0) * 0.15).collect();
    v.shuffle(rng);
    Tensor::from_vec(shape, v).unwrap()
}

/// How many elements a reduction over `axes` (all if empty) combines.
fn reduced_count(shape: &[usize], axes: &[usize]) -> usize {
    if axes.is_empty() {
        shape.iter().product()
    } else {
        axes.iter().map(|&a| shape[a]).product()
    }
}

/// False for the unbiased variance of single elements, which is NaN (as in PyTorch).
fn defined(name: &str, shape: &[usize], axes: &[usize]) -> bool {
    name != "var" || reduced_count(shape, axes) > 1
}

/// A random shape of 1 to 3 axes with lengths 1 to 4, a random subset of its axes (empty
/// means all), and a random keepdim.
fn random_case(rng: &mut impl Rng) -> (Vec<usize>, Vec<usize>, bool) {
    let ndim = rng.gen_range(1..=3);
    let shape: Vec<usize> = (0..ndim).map(|_| rng.gen_range(1..=4)).collect();
    let axes: Vec<usize> = (0..ndim).filter(|_| rng.gen_bool(0.5)).collect();
    (shape, axes, rng.gen_bool(0.5))
}

#[test]
fn gradients_match_finite_differences_over_random_shapes_and_axes() {
    let mut rng = rng(11);
    for (name, reduce) in reductions() {
        for _ in 0..6 {
            let (shape, axes, keep) = random_case(&mut rng);
            if !defined(name, &shape, &axes) {
                continue;
            }
            let x = distinct(&mut rng, &shape);
            let label = format!("{name} {shape:?} axes {axes:?} keepdim {keep}");
            check(&label, |_, v| reduce(v[0], &axes, keep), &[x]);
        }
    }
}

#[test]
fn gradients_over_size_one_axes() {
    let mut rng = rng(12);
    for (name, reduce) in reductions() {
        let x = distinct(&mut rng, &[3, 1, 4]);
        for axes in [vec![1], vec![0, 1], vec![2]] {
            if !defined(name, &[3, 1, 4], &axes) {
                continue;
            }
            check(
                &format!("{name} [3, 1, 4] axes {axes:?}"),
                |_, v| reduce(v[0], &axes, false),
                std::slice::from_ref(&x),
            );
        }
    }
}

#[test]
fn gradients_of_permuted_inputs() {
    let mut rng = rng(13);
    for (name, reduce) in reductions() {
        let x = distinct(&mut rng, &[2, 3, 4]);
        check(
            &format!("{name} permuted"),
            |_, v| reduce(v[0].permute(&[2, 0, 1]), &[0, 2], true),
            &[x],
        );
    }
}

#[test]
fn gradients_through_broadcasting() {
    // The reduced value is a broadcast product of [3, 1] and [4]; its cotangent flows back
    // through the broadcast to both.
    let mut rng = rng(14);
    let a = uniform(&mut rng, &[3, 1], 0.5, 1.5);
    let b = uniform(&mut rng, &[4], -2.0, 2.0);
    check("logsumexp(a * b)", |_, v| (v[0] * v[1]).logsumexp(&[1], false), &[a.clone(), b.clone()]);
    check("var(a * b)", |_, v| (v[0] * v[1]).var(&[0], true, true), &[a, b]);
    let c = distinct(&mut rng, &[3, 1]);
    let d = Tensor::from(vec![0.0, 1.0, 2.0, 3.0]);
    check("max(c + d)", |_, v| (v[0] + v[1]).max(&[0], false), &[c, d]);
}

#[test]
fn tolerance_catches_a_one_percent_error() {
    let mut rng = rng(15);
    let x = distinct(&mut rng, &[3, 4]);
    check_catches_one_percent("max", |_, v| v[0].max(&[1], false), std::slice::from_ref(&x));
    check_catches_one_percent(
        "logsumexp",
        |_, v| v[0].logsumexp(&[0], true),
        std::slice::from_ref(&x),
    );
    check_catches_one_percent("var", |_, v| v[0].var(&[1], true, false), &[x]);
}

#[test]
fn batched_backward_equals_separate_passes() {
    let mut rng = rng(16);
    for (name, reduce) in reductions() {
        let x = distinct(&mut rng, &[2, 3, 4]);
        for (axes, keep) in [(vec![1], false), (vec![0, 2], true), (vec![], false)] {
            let label = format!("{name} axes {axes:?} keepdim {keep}");
            check_batched(&label, |_, v| reduce(v[0], &axes, keep), std::slice::from_ref(&x));
        }
    }
}

#[test]
fn max_ties_go_to_the_first_index_in_row_major_order() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[2, 2, 2], vec![1., 3., 3., 0., 2., 2., 2., 2.]).unwrap());
    let y = x.max(&[1, 2], false);
    assert_eq!(y.value().to_vec(), vec![3., 2.]);
    let g = tape.backward(y.sum_all()).wrt(x);
    assert_eq!(g.to_vec(), vec![0., 1., 0., 0., 1., 0., 0., 0.]);
}

#[test]
fn logsumexp_of_extreme_inputs_is_finite() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[2, 3], vec![1e4, 1e4, -1e4, -1e4, -1e4, -100.0]).unwrap());
    let y = x.logsumexp(&[1], false);
    assert_close("lse", &y.value().to_vec(), &[1e4 + 2f32.ln(), -100.0], 1e-6, 0.0);
    let g = tape.backward(y.sum_all()).wrt(x);
    // y = 1e4 + ln 2 is stored to f32's spacing near 1e4 (about 1e-3), so e^(x − y) carries
    // that relative error, in PyTorch as here.
    assert_close("lse grad", &g.to_vec(), &[0.5, 0.5, 0.0, 0.0, 0.0, 1.0], 2e-3, 1e-30);
}

#[test]
fn unbiased_variance_of_one_element_is_nan_as_in_pytorch() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[2, 1], vec![1.0, 2.0]).unwrap());
    assert!(x.var(&[1], true, false).value().as_slice().iter().all(|v| v.is_nan()));
    assert_eq!(x.var(&[1], false, false).value().to_vec(), vec![0.0, 0.0]);
}

#[test]
#[should_panic(expected = "invalid argument to max: empty reduction over axes [1] of shape [2, 0]")]
fn max_over_an_empty_axis_panics() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[2, 0])).max(&[1], false);
}

#[test]
#[should_panic(expected = "invalid argument to logsumexp: axis 2 out of range for 2 axes")]
fn axis_out_of_range_panics() {
    let tape = Tape::new();
    tape.leaf(Tensor::zeros(&[2, 3])).logsumexp(&[2], false);
}

/// One case of the PyTorch script: output shape, output, and input gradients.
struct Golden {
    name: &'static str,
    shape: &'static [usize],
    y: &'static [f32],
    grads: &'static [&'static [f32]],
}

/// `torch.linspace(lo, hi, n)`.
fn linspace(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| (lo as f64 + (hi - lo) as f64 * i as f64 / (n - 1) as f64) as f32).collect()
}

#[rustfmt::skip]
const X: [f32; 24] = [
    0.5, -1.0, 2.0, 2.0, 1.5, 3.0, -0.5, 0.0, -2.0, 1.0, 0.25, 4.0,
    1.0, 1.0, -3.0, 0.75, 2.5, -1.5, 0.5, 1.25, 0.1, 0.2, 0.3, -0.4,
];
const EXTREME: [f32; 8] = [100., -100., 1e4, 0., -1e4, -1e4, 3., -100.];

#[test]
fn golden_values_from_pytorch() {
    let mut untied = X;
    untied[3] = 1.75;
    for case in GOLDEN {
        let tape = Tape::new();
        let (data, shape): (&[f32], &[usize]) = match case.name {
            "amax_02" => (&untied, &[2, 3, 4]),
            "lse_extreme" => (&EXTREME, &[2, 4]),
            _ => (&X, &[2, 3, 4]),
        };
        let x = tape.leaf(Tensor::from_vec(shape, data.to_vec()).unwrap());
        let y = match case.name {
            "max_d2" => x.max(&[2], false),
            "max_d1_keep" => x.max(&[1], true),
            "amax_02" => x.max(&[0, 2], false),
            "lse_d2" | "lse_extreme" => x.logsumexp(&[shape.len() - 1], false),
            "lse_01_keep" => x.logsumexp(&[0, 1], true),
            "var_d1" => x.var(&[1], true, false),
            "var_02_biased_keep" => x.var(&[0, 2], false, true),
            other => panic!("no op for golden case {other}"),
        };
        assert_eq!(y.shape(), case.shape, "{}: shape", case.name);
        let n = y.value().len();
        let w = tape
            .constant(Tensor::from_vec(case.shape, linspace(0.5, 1.5, 24)[..n].to_vec()).unwrap());
        let dx = tape.backward((y * w).sum_all()).wrt(x);
        assert_close(&format!("{} y", case.name), &y.value().to_vec(), case.y, 1e-5, 1e-6);
        assert_close(&format!("{} dx", case.name), &dx.to_vec(), case.grads[0], 1e-5, 1e-6);
    }
}

// Generated by this script (PyTorch 1.13, `/usr/bin/python3 reduce.py`):
//
// ```python
// import torch
// x = torch.tensor([[[0.5, -1.0, 2.0, 2.0], [1.5, 3.0, -0.5, 0.0], [-2.0, 1.0, 0.25, 4.0]],
//                   [[1.0, 1.0, -3.0, 0.75], [2.5, -1.5, 0.5, 1.25], [0.1, 0.2, 0.3, -0.4]]])
// w = torch.linspace(0.5, 1.5, 24)
// def run(name, f, x=x):
//     xr = x.clone().requires_grad_()
//     y = f(xr)
//     (y * w[: y.numel()].reshape(y.shape)).sum().backward()
//     print(name, list(y.shape), "y", [float(v) for v in y.detach().flatten()])
//     print(name, "dx", [float(v) for v in xr.grad.flatten()])
// run("max_d2", lambda v: v.max(dim=2).values)          # ties at [0,0,2:4] and [1,0,0:2]
// run("max_d1_keep", lambda v: v.max(dim=1, keepdim=True).values)
// x_untied = x.clone()
// x_untied[0, 0, 3] = 1.75                              # amax splits ties; keep the lanes tie-free
// run("amax_02", lambda v: v.amax(dim=(0, 2)), x_untied)
// run("lse_d2", lambda v: v.logsumexp(dim=2))
// run("lse_01_keep", lambda v: v.logsumexp(dim=(0, 1), keepdim=True))
// run("var_d1", lambda v: v.var(dim=1))                 # unbiased (default)
// run("var_02_biased_keep", lambda v: v.var(dim=(0, 2), unbiased=False, keepdim=True))
// e = torch.tensor([[100., -100., 1e4, 0.], [-1e4, -1e4, 3., -100.]])
// run("lse_extreme", lambda v: v.logsumexp(dim=1), e)
// ```

/// Outputs and input gradients from PyTorch, in the order the script prints them.
#[rustfmt::skip]
const GOLDEN: &[Golden] = &[
    Golden {
        name: "max_d2",
        shape: &[2, 3],
        y: &[2.0, 3.0, 4.0, 1.0, 2.5, 0.3],
        grads: &[
            &[0.0, 0.0, 0.5, 0.0, 0.0, 0.54347825, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5869565, 0.63043475, 0.0, 0.0, 0.0, 0.67391306, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7173913, 0.0],
        ],
    },
    Golden {
        name: "max_d1_keep",
        shape: &[2, 1, 4],
        y: &[1.5, 3.0, 2.0, 4.0, 2.5, 1.0, 0.5, 1.25],
        grads: &[
            &[0.0, 0.0, 0.5869565, 0.0, 0.5, 0.54347825, 0.0, 0.0, 0.0, 0.0, 0.0, 0.63043475, 0.0, 0.7173913, 0.0, 0.0, 0.67391306, 0.0, 0.76086956, 0.8043479, 0.0, 0.0, 0.0, 0.0],
        ],
    },
    Golden {
        name: "amax_02",
        shape: &[3],
        y: &[2.0, 3.0, 4.0],
        grads: &[
            &[0.0, 0.0, 0.5, 0.0, 0.0, 0.54347825, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5869565, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ],
    },
    Golden {
        name: "lse_d2",
        shape: &[2, 3],
        y: &[2.8210642, 3.2647572, 4.0730495, 2.028589, 2.8647513, 1.469429],
        grads: &[
            &[0.04908453, 0.010952239, 0.2199816, 0.2199816, 0.09305889, 0.417061, 0.012594151, 0.020764245, 0.0013524275, 0.027164234, 0.012831476, 0.5456082, 0.22538738, 0.22538738, 0.004128113, 0.17553188, 0.46794456, 0.008570703, 0.063329406, 0.13406835, 0.18239824, 0.20158124, 0.2227817, 0.11063013],
        ],
    },
    Golden {
        name: "lse_01_keep",
        shape: &[1, 1, 4],
        y: &[3.1033165, 3.3081503, 2.5118713, 4.237938],
        grads: &[
            &[0.03701383, 0.007314359, 0.35180584, 0.06725368, 0.10061401, 0.39935046, 0.02887798, 0.009101796, 0.0030382806, 0.05404621, 0.061134685, 0.49694124, 0.061025485, 0.05404621, 0.002370449, 0.019268502, 0.27349725, 0.004436383, 0.07849849, 0.03176839, 0.024811108, 0.024284527, 0.064269125, 0.0061011156],
        ],
    },
    Golden {
        name: "var_d1",
        shape: &[2, 4],
        y: &[3.25, 4.0, 1.6458334, 4.0, 1.47, 1.63, 3.8633335, 0.71583337],
        grads: &[
            &[0.25, -1.0869565, 0.83152175, 0.0, 0.75, 1.0869565, -0.6358695, -1.2608695, -1.0, 0.0, -0.19565216, 1.2608695, -0.13478257, 0.78913045, -1.7246376, 0.17427535, 0.876087, -1.0043478, 0.9384058, 0.5764493, -0.7413043, 0.2152174, 0.7862319, -0.75072473],
        ],
    },
    Golden {
        name: "var_02_biased_keep",
        shape: &[1, 3, 1],
        y: &[2.4365234, 2.0146484, 2.484336],
        grads: &[
            &[0.01171875, -0.17578125, 0.19921875, 0.19921875, 0.0891644, 0.29296875, -0.18257472, -0.114639945, -0.35675952, 0.08345788, -0.026596468, 0.52367526, 0.07421875, 0.07421875, -0.42578125, 0.04296875, 0.22503397, -0.31844428, -0.046705164, 0.055197008, -0.04860734, -0.033933423, -0.019259509, -0.1219769],
        ],
    },
    Golden {
        name: "lse_extreme",
        shape: &[2],
        y: &[10000.0, 3.0],
        grads: &[
            &[0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.54347825, 1e-45],
        ],
    },
];
