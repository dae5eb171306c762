//! Gradient tests of the shape ops: finite differences over random shapes, a 1% fault
//! detector, batched against separate sweeps, golden values from PyTorch, and panic messages.

mod batched;
mod common;

use batched::check_batched;
use common::{assert_close, check, check_catches_one_percent, rng, uniform};
use ndarray::{ArrayD, IxDyn};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};

/// A random shape of `ndim` axes with lengths 1 to 4 (so size-1 axes occur).
fn random_shape(rng: &mut impl Rng, ndim: usize) -> Vec<usize> {
    (0..ndim).map(|_| rng.gen_range(1..=4)).collect()
}

/// Random values of a random shape with 1 to 3 axes.
fn random_input(rng: &mut ChaCha8Rng) -> Tensor {
    let ndim = rng.gen_range(1..=3);
    let shape = random_shape(rng, ndim);
    uniform(rng, &shape, -2.0, 2.0)
}

/// A random `torch.gather` index for `shape` along `axis`: at most `shape`'s lengths, any
/// length (1 to 4) along `axis`, entries below `shape[axis]` (repeats allowed).
fn random_index(rng: &mut impl Rng, shape: &[usize], axis: usize) -> ArrayD<usize> {
    let ishape: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if d == axis { rng.gen_range(1..=4) } else { rng.gen_range(1..=n) })
        .collect();
    let n: usize = ishape.iter().product();
    ArrayD::from_shape_vec(IxDyn(&ishape), (0..n).map(|_| rng.gen_range(0..shape[axis])).collect())
        .unwrap()
}

#[test]
fn reshape_permute_transpose_over_random_shapes() {
    let mut rng = rng(21);
    for _ in 0..6 {
        let x = random_input(&mut rng);
        let shape = x.shape().to_vec();
        let flat = [x.len()];
        check(&format!("reshape {shape:?}"), |_, v| v[0].reshape(&flat), std::slice::from_ref(&x));
        let mut axes: Vec<usize> = (0..shape.len()).collect();
        axes.shuffle(&mut rng);
        check(
            &format!("permute {shape:?} {axes:?}"),
            |_, v| v[0].permute(&axes),
            std::slice::from_ref(&x),
        );
        let last = shape.len() - 1;
        check(&format!("transpose {shape:?}"), |_, v| v[0].transpose(0, last), &[x]);
    }
}

#[test]
fn broadcast_to_over_new_and_size_one_axes() {
    let mut rng = rng(22);
    for (from, to) in [
        (vec![3, 1], vec![2, 3, 4]),
        (vec![1], vec![5]),
        (vec![], vec![2, 2]),
        (vec![2, 1, 3], vec![2, 4, 3]),
    ] {
        let x = uniform(&mut rng, &from, -2.0, 2.0);
        check(&format!("broadcast_to {from:?} -> {to:?}"), |_, v| v[0].broadcast_to(&to), &[x]);
    }
}

#[test]
fn narrow_and_slice_over_random_shapes() {
    let mut rng = rng(23);
    for _ in 0..6 {
        let x = random_input(&mut rng);
        let shape = x.shape().to_vec();
        let axis = rng.gen_range(0..shape.len());
        let start = rng.gen_range(0..shape[axis]);
        let len = rng.gen_range(1..=shape[axis] - start);
        check(
            &format!("narrow {shape:?} {axis} {start} {len}"),
            |_, v| v[0].narrow(axis, start, len),
            std::slice::from_ref(&x),
        );
        let step = rng.gen_range(1..=3);
        let end = rng.gen_range(start + 1..=shape[axis]);
        check(
            &format!("slice {shape:?} {axis} {start}..{end};{step}"),
            |_, v| v[0].slice(axis, start, end, step),
            &[x],
        );
    }
}

#[test]
fn concat_and_stack_over_random_shapes() {
    let mut rng = rng(24);
    for _ in 0..5 {
        let ndim = rng.gen_range(1..=3);
        let base = random_shape(&mut rng, ndim);
        let axis = rng.gen_range(0..base.len());
        let parts: Vec<Tensor> = (0..3)
            .map(|_| {
                let mut s = base.clone();
                s[axis] = rng.gen_range(1..=3);
                uniform(&mut rng, &s, -2.0, 2.0)
            })
            .collect();
        check(&format!("concat {base:?} axis {axis}"), |_, v| Var::concat(v, axis), &parts);
        let same: Vec<Tensor> = (0..3).map(|_| uniform(&mut rng, &base, -2.0, 2.0)).collect();
        let new_axis = rng.gen_range(0..=base.len());
        check(&format!("stack {base:?} axis {new_axis}"), |_, v| Var::stack(v, new_axis), &same);
    }
}

#[test]
fn index_select_and_gather_over_random_shapes() {
    let mut rng = rng(25);
    for _ in 0..6 {
        let x = random_input(&mut rng);
        let shape = x.shape().to_vec();
        let axis = rng.gen_range(0..shape.len());
        let index: Vec<usize> =
            (0..rng.gen_range(1..=5)).map(|_| rng.gen_range(0..shape[axis])).collect();
        check(
            &format!("index_select {shape:?} {axis} {index:?}"),
            |_, v| v[0].index_select(axis, &index),
            std::slice::from_ref(&x),
        );
        let gi = random_index(&mut rng, &shape, axis);
        check(
            &format!("gather {shape:?} {axis} {:?}", gi.shape()),
            |_, v| v[0].gather(axis, &gi),
            &[x],
        );
    }
}

/// A shape op with its arguments fixed.
type ShapeFn = Box<dyn for<'t> Fn(Var<'t>) -> Var<'t>>;

/// Every shape op applied to a [2, 3, 4] input, with a name for messages.
fn ops_on_2x3x4() -> Vec<(&'static str, ShapeFn)> {
    let gi = ArrayD::from_shape_vec(IxDyn(&[2, 2, 3]), vec![1, 0, 3, 2, 2, 0, 0, 1, 1, 3, 3, 0])
        .unwrap();
    vec![
        ("reshape", Box::new(|x| x.reshape(&[4, 6]))),
        ("permute", Box::new(|x| x.permute(&[2, 0, 1]))),
        ("transpose", Box::new(|x| x.transpose(1, 2))),
        ("broadcast_to", Box::new(|x| x.reshape(&[2, 1, 3, 4]).broadcast_to(&[2, 5, 3, 4]))),
        ("narrow", Box::new(|x| x.narrow(2, 1, 2))),
        ("slice", Box::new(|x| x.slice(1, 0, 3, 2))),
        ("concat", Box::new(|x| Var::concat(&[x, x.narrow(1, 0, 2), x], 1))),
        ("stack", Box::new(|x| Var::stack(&[x, x.mul_scalar(2.0)], 2))),
        ("index_select", Box::new(|x| x.index_select(2, &[3, 0, 3, 1]))),
        ("gather", Box::new(move |x| x.gather(2, &gi))),
    ]
}

#[test]
fn gradients_of_permuted_inputs() {
    // Each op reads a permuted input: [4, 2, 3] permuted to [2, 3, 4].
    let mut rng = rng(26);
    for (name, op) in ops_on_2x3x4() {
        let x = uniform(&mut rng, &[4, 2, 3], -2.0, 2.0);
        check(&format!("{name} permuted"), |_, v| op(v[0].permute(&[1, 2, 0])), &[x]);
    }
}

#[test]
fn tolerance_catches_a_one_percent_error() {
    let mut rng = rng(27);
    let x = uniform(&mut rng, &[2, 3, 4], -2.0, 2.0);
    for (name, op) in
        ops_on_2x3x4().into_iter().filter(|(n, _)| ["permute", "concat", "gather"].contains(n))
    {
        check_catches_one_percent(name, |_, v| op(v[0]), std::slice::from_ref(&x));
    }
}

#[test]
fn batched_backward_equals_separate_passes() {
    let mut rng = rng(28);
    for (name, op) in ops_on_2x3x4() {
        let x = uniform(&mut rng, &[2, 3, 4], -2.0, 2.0);
        check_batched(name, |_, v| op(v[0]), &[x]);
    }
    // Several distinct inputs, and an input broadcast on its way in.
    let parts: Vec<Tensor> =
        [[2, 1, 4], [2, 3, 4]].iter().map(|s| uniform(&mut rng, s, -2.0, 2.0)).collect();
    check_batched("concat of two", |_, v| Var::concat(v, 1), &parts);
    let rows: Vec<Tensor> = (0..3).map(|_| uniform(&mut rng, &[3, 4], -2.0, 2.0)).collect();
    check_batched("stack of three", |_, v| Var::stack(v, 1), &rows);
    let b = uniform(&mut rng, &[3, 1], -2.0, 2.0);
    check_batched("broadcast_to", |_, v| v[0].broadcast_to(&[2, 3, 4]), &[b]);
}

#[test]
fn repeated_indices_accumulate() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap());
    let y = x.index_select(0, &[1, 1, 0, 1]);
    assert_eq!(y.value().to_vec(), vec![3., 4., 3., 4., 1., 2., 3., 4.]);
    assert_eq!(tape.backward(y.sum_all()).wrt(x).to_vec(), vec![1., 1., 3., 3.]);
    let gi = ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![1, 1, 0]).unwrap();
    let z = x.gather(1, &gi);
    assert_eq!(z.value().to_vec(), vec![2., 2., 1.]);
    assert_eq!(tape.backward(z.sum_all()).wrt(x).to_vec(), vec![1., 2., 0., 0.]);
}

#[test]
#[should_panic(expected = "shape mismatch in reshape: lhs [2, 3], rhs [4, 2]")]
fn reshape_to_another_size_panics() {
    Tape::new().leaf(Tensor::zeros(&[2, 3])).reshape(&[4, 2]);
}

#[test]
#[should_panic(expected = "invalid argument to permute: axes [0, 0] do not permute shape [2, 3]")]
fn permute_with_repeated_axes_panics() {
    Tape::new().leaf(Tensor::zeros(&[2, 3])).permute(&[0, 0]);
}

#[test]
#[should_panic(expected = "shape mismatch in broadcast_to: lhs [2, 3], rhs [3, 3]")]
fn broadcast_to_an_incompatible_shape_panics() {
    Tape::new().leaf(Tensor::zeros(&[2, 3])).broadcast_to(&[3, 3]);
}

#[test]
#[should_panic(expected = "invalid argument to narrow: range 2..4 step 1 on axis 1 of [2, 3]")]
fn narrow_past_the_end_panics() {
    Tape::new().leaf(Tensor::zeros(&[2, 3])).narrow(1, 2, 2);
}

#[test]
#[should_panic(expected = "shape mismatch in concat: lhs [2, 3], rhs [3, 2]")]
fn concat_of_mismatched_shapes_panics() {
    let tape = Tape::new();
    Var::concat(&[tape.leaf(Tensor::zeros(&[2, 3])), tape.leaf(Tensor::zeros(&[3, 2]))], 0);
}

#[test]
#[should_panic(expected = "shape mismatch in stack: lhs [2, 3], rhs [2, 4]")]
fn stack_of_mismatched_shapes_panics() {
    let tape = Tape::new();
    Var::stack(&[tape.leaf(Tensor::zeros(&[2, 3])), tape.leaf(Tensor::zeros(&[2, 4]))], 0);
}

#[test]
#[should_panic(
    expected = "invalid argument to index_select: index 3 out of range for axis 1 of [2, 3]"
)]
fn index_select_out_of_range_panics() {
    Tape::new().leaf(Tensor::zeros(&[2, 3])).index_select(1, &[0, 3]);
}

#[test]
#[should_panic(expected = "shape mismatch in gather: lhs [2, 3], rhs [3, 1]")]
fn gather_with_a_longer_index_panics() {
    let index = ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![0, 0, 0]).unwrap();
    Tape::new().leaf(Tensor::zeros(&[2, 3])).gather(1, &index);
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

#[test]
fn golden_values_from_pytorch() {
    let x_data: Vec<f32> = (0..24).map(|k| k as f32 / 4.0 - 2.0).collect();
    let x_tensor = Tensor::from_vec(&[2, 3, 4], x_data.clone()).unwrap();
    let head = Tape::new().constant(x_tensor.clone()).narrow(1, 0, 2).mul_scalar(3.0).value();
    for case in GOLDEN {
        let tape = Tape::new();
        let leaf = |shape: &[usize], data: &[f32]| {
            tape.leaf(Tensor::from_vec(shape, data.to_vec()).unwrap())
        };
        let inputs: Vec<Var<'_>> = match case.name {
            "broadcast_to" => vec![leaf(&[1, 4], &[1.0, -2.0, 0.5, 3.0])],
            "concat" => vec![tape.leaf(x_tensor.clone()), tape.leaf(head.clone())],
            "stack" => vec![leaf(&[3, 4], &x_data[..12]), leaf(&[3, 4], &x_data[12..])],
            _ => vec![tape.leaf(x_tensor.clone())],
        };
        let x = inputs[0];
        let y = match case.name {
            "reshape" => x.reshape(&[4, 6]),
            "permute" => x.permute(&[2, 0, 1]),
            "transpose" => x.transpose(0, 2),
            "broadcast_to" => x.broadcast_to(&[2, 3, 4]),
            "narrow" => x.narrow(2, 1, 2),
            "slice_step" => x.slice(1, 0, 3, 2),
            "concat" => Var::concat(&inputs, 1),
            "stack" => Var::stack(&inputs, 1),
            "index_select" => x.index_select(2, &[3, 0, 3]),
            "gather" => {
                let index = vec![2, 0, 1, 1, 0, 2, 1, 2, 0, 0, 2, 2];
                x.gather(1, &ArrayD::from_shape_vec(IxDyn(&[2, 3, 2]), index).unwrap())
            }
            other => panic!("no op for golden case {other}"),
        };
        assert_eq!(y.shape(), case.shape, "{}: shape", case.name);
        let n = y.value().len();
        let w = tape.constant(Tensor::from_vec(case.shape, linspace(-1.0, 2.0, n)).unwrap());
        let grads = tape.backward((y * w).sum_all());
        assert_close(&format!("{} y", case.name), &y.value().to_vec(), case.y, 1e-6, 1e-6);
        assert_eq!(inputs.len(), case.grads.len(), "{}: inputs", case.name);
        for (i, (&input, want)) in inputs.iter().zip(case.grads).enumerate() {
            assert_close(
                &format!("{} d{i}", case.name),
                &grads.wrt(input).to_vec(),
                want,
                1e-5,
                1e-6,
            );
        }
    }
}

// Generated by this script (PyTorch 1.13, `/usr/bin/python3 shape.py`):
//
// ```python
// import torch
// x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 4 - 2   # [2, 3, 4]
// b = torch.tensor([[1.0, -2.0, 0.5, 3.0]])                           # [1, 4]
// def run(name, f, *inputs):
//     xs = [t.clone().requires_grad_() for t in inputs]
//     y = f(*xs)
//     w = torch.linspace(-1.0, 2.0, y.numel()).reshape(y.shape)
//     (y * w).sum().backward()
//     print(name, list(y.shape), "y", [float(v) for v in y.detach().flatten()])
//     for i, t in enumerate(xs):
//         print(name, f"d{i}", [float(v) for v in t.grad.flatten()])
// run("reshape", lambda v: v.reshape(4, 6), x)
// run("permute", lambda v: v.permute(2, 0, 1), x)
// run("transpose", lambda v: v.transpose(0, 2), x)
// run("broadcast_to", lambda v: v.expand(2, 3, 4), b)
// run("narrow", lambda v: v.narrow(2, 1, 2), x)
// run("slice_step", lambda v: v[:, 0:3:2, :], x)
// run("concat", lambda u, v: torch.cat([u, v], dim=1), x, x[:, :2, :] * 3)
// run("stack", lambda u, v: torch.stack([u, v], dim=1), x[0], x[1])
// run("index_select", lambda v: v.index_select(2, torch.tensor([3, 0, 3])), x)
// idx = torch.tensor([[[2, 0], [1, 1], [0, 2]], [[1, 2], [0, 0], [2, 2]]])   # [2, 3, 2], axis 1
// run("gather", lambda v: v.gather(1, idx), x)
// ```

/// Outputs and input gradients from PyTorch, in the order the script prints them.
#[rustfmt::skip]
const GOLDEN: &[Golden] = &[
    Golden {
        name: "reshape",
        shape: &[4, 6],
        y: &[-2.0, -1.75, -1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75],
        grads: &[
            &[-1.0, -0.86956525, -0.73913044, -0.6086956, -0.47826087, -0.34782612, -0.21739131, -0.0869565, 0.04347825, 0.17391303, 0.3043478, 0.4347826, 0.5652174, 0.6956521, 0.82608694, 0.95652175, 1.0869565, 1.2173913, 1.3478261, 1.4782609, 1.6086956, 1.7391305, 1.8695652, 2.0],
        ],
    },
    Golden {
        name: "permute",
        shape: &[4, 2, 3],
        y: &[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, -1.75, -0.75, 0.25, 1.25, 2.25, 3.25, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -1.25, -0.25, 0.75, 1.75, 2.75, 3.75],
        grads: &[
            &[-1.0, -0.21739131, 0.5652174, 1.3478261, -0.86956525, -0.0869565, 0.6956521, 1.4782609, -0.73913044, 0.04347825, 0.82608694, 1.6086956, -0.6086956, 0.17391303, 0.95652175, 1.7391305, -0.47826087, 0.3043478, 1.0869565, 1.8695652, -0.34782612, 0.4347826, 1.2173913, 2.0],
        ],
    },
    Golden {
        name: "transpose",
        shape: &[4, 3, 2],
        y: &[-2.0, 1.0, -1.0, 2.0, 0.0, 3.0, -1.75, 1.25, -0.75, 2.25, 0.25, 3.25, -1.5, 1.5, -0.5, 2.5, 0.5, 3.5, -1.25, 1.75, -0.25, 2.75, 0.75, 3.75],
        grads: &[
            &[-1.0, -0.21739131, 0.5652174, 1.3478261, -0.73913044, 0.04347825, 0.82608694, 1.6086956, -0.47826087, 0.3043478, 1.0869565, 1.8695652, -0.86956525, -0.0869565, 0.6956521, 1.4782609, -0.6086956, 0.17391303, 0.95652175, 1.7391305, -0.34782612, 0.4347826, 1.2173913, 2.0],
        ],
    },
    Golden {
        name: "broadcast_to",
        shape: &[2, 3, 4],
        y: &[1.0, -2.0, 0.5, 3.0, 1.0, -2.0, 0.5, 3.0, 1.0, -2.0, 0.5, 3.0, 1.0, -2.0, 0.5, 3.0, 1.0, -2.0, 0.5, 3.0, 1.0, -2.0, 0.5, 3.0],
        grads: &[
            &[1.8260869, 2.6086955, 3.3913045, 4.173913],
        ],
    },
    Golden {
        name: "narrow",
        shape: &[2, 3, 2],
        y: &[-1.75, -1.5, -0.75, -0.5, 0.25, 0.5, 1.25, 1.5, 2.25, 2.5, 3.25, 3.5],
        grads: &[
            &[0.0, -1.0, -0.72727275, 0.0, 0.0, -0.45454544, -0.18181816, 0.0, 0.0, 0.09090912, 0.3636364, 0.0, 0.0, 0.6363636, 0.9090909, 0.0, 0.0, 1.1818181, 1.4545455, 0.0, 0.0, 1.7272727, 2.0, 0.0],
        ],
    },
    Golden {
        name: "slice_step",
        shape: &[2, 2, 4],
        y: &[-2.0, -1.75, -1.5, -1.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 3.0, 3.25, 3.5, 3.75],
        grads: &[
            &[-1.0, -0.8, -0.6, -0.39999998, 0.0, 0.0, 0.0, 0.0, -0.19999999, 0.0, 0.20000005, 0.39999998, 0.59999996, 0.79999995, 1.0, 1.2, 0.0, 0.0, 0.0, 0.0, 1.4, 1.5999999, 1.8, 2.0],
        ],
    },
    Golden {
        name: "concat",
        shape: &[2, 5, 4],
        y: &[-2.0, -1.75, -1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, -6.0, -5.25, -4.5, -3.75, -3.0, -2.25, -1.5, -0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75, 3.0, 3.75, 4.5, 5.25, 6.0, 6.75, 7.5, 8.25],
        grads: &[
            &[-1.0, -0.9230769, -0.84615386, -0.7692307, -0.6923077, -0.6153846, -0.5384615, -0.46153843, -0.38461536, -0.3076923, -0.2307692, -0.15384611, 0.53846157, 0.6153847, 0.6923078, 0.76923084, 0.8461538, 0.92307687, 0.99999994, 1.076923, 1.1538461, 1.2307692, 1.3076923, 1.3846154],
            &[-0.07692304, 2.9802322e-08, 0.07692313, 0.1538462, 0.23076928, 0.30769235, 0.38461542, 0.46153852, 1.4615384, 1.5384616, 1.6153846, 1.6923077, 1.7692307, 1.8461539, 1.9230769, 2.0],
        ],
    },
    Golden {
        name: "stack",
        shape: &[3, 2, 4],
        y: &[-2.0, -1.75, -1.5, -1.25, 1.0, 1.25, 1.5, 1.75, -1.0, -0.75, -0.5, -0.25, 2.0, 2.25, 2.5, 2.75, 0.0, 0.25, 0.5, 0.75, 3.0, 3.25, 3.5, 3.75],
        grads: &[
            &[-1.0, -0.86956525, -0.73913044, -0.6086956, 0.04347825, 0.17391303, 0.3043478, 0.4347826, 1.0869565, 1.2173913, 1.3478261, 1.4782609],
            &[-0.47826087, -0.34782612, -0.21739131, -0.0869565, 0.5652174, 0.6956521, 0.82608694, 0.95652175, 1.6086956, 1.7391305, 1.8695652, 2.0],
        ],
    },
    Golden {
        name: "index_select",
        shape: &[2, 3, 3],
        y: &[-1.25, -2.0, -1.25, -0.25, -1.0, -0.25, 0.75, 0.0, 0.75, 1.75, 1.0, 1.75, 2.75, 2.0, 2.75, 3.75, 3.0, 3.75],
        grads: &[
            &[-0.8235294, 0.0, 0.0, -1.6470588, -0.29411763, 0.0, 0.0, -0.58823526, 0.2352941, 0.0, 0.0, 0.47058833, 0.7647059, 0.0, 0.0, 1.5294118, 1.2941177, 0.0, 0.0, 2.5882354, 1.8235294, 0.0, 0.0, 3.647059],
        ],
    },
    Golden {
        name: "gather",
        shape: &[2, 3, 2],
        y: &[0.0, -1.75, -1.0, -0.75, -2.0, 0.25, 2.0, 3.25, 1.0, 1.25, 3.0, 3.25],
        grads: &[
            &[0.09090912, -0.72727275, 0.0, 0.0, -0.45454544, -0.18181816, 0.0, 0.0, -1.0, 0.3636364, 0.0, 0.0, 1.1818181, 1.4545455, 0.0, 0.0, 0.6363636, 0.0, 0.0, 0.0, 1.7272727, 2.909091, 0.0, 0.0],
        ],
    },
];
