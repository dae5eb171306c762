//! Gradients of matmul and linear: finite differences, batching, and PyTorch golden values.

mod common;

use common::{assert_close, check, check_catches_one_percent, rng, uniform};
use tapestry_autodiff::{Tape, Tensor};

#[test]
fn matmul_2d_and_batched_with_broadcasting() {
    let mut r = rng(11);
    // Square operands too: there a missing transpose in a rule keeps the shapes and shows as a
    // wrong value, not as a shape panic.
    let shapes: [(&[usize], &[usize]); 9] = [
        (&[1, 1], &[1, 1]),
        (&[3, 3], &[3, 3]),
        (&[2, 4, 4], &[4, 4]),
        (&[4, 4], &[2, 4, 4]),
        (&[3, 5], &[5, 2]),
        (&[7, 1], &[1, 4]),
        (&[2, 3, 4], &[4, 5]),
        (&[4, 3], &[2, 3, 2]),
        (&[2, 1, 3, 4], &[3, 4, 2]),
    ];
    for (sa, sb) in shapes {
        let a = uniform(&mut r, sa, -1.0, 1.0);
        let b = uniform(&mut r, sb, -1.0, 1.0);
        check("matmul", |_, v| v[0].matmul(v[1]), &[a, b]);
    }
}

#[test]
fn linear_with_and_without_bias() {
    let mut r = rng(12);
    // (input shape, out features): a square weight and input first, then a square weight,
    // then the usual shapes.
    for (xs, out) in
        [(&[3usize, 3][..], 3), (&[2, 3], 3), (&[1, 3], 4), (&[5, 3], 4), (&[2, 4, 3], 4)]
    {
        let x = uniform(&mut r, xs, -1.0, 1.0);
        let w = uniform(&mut r, &[out, 3], -1.0, 1.0);
        let b = uniform(&mut r, &[out], -1.0, 1.0);
        check("linear+b", |_, v| v[0].linear(v[1], Some(v[2])), &[x.clone(), w.clone(), b]);
        check("linear", |_, v| v[0].linear(v[1], None), &[x, w]);
    }
}

#[test]
fn tolerance_catches_a_one_percent_error() {
    let mut r = rng(13);
    let x = uniform(&mut r, &[5, 3], -1.0, 1.0);
    let w = uniform(&mut r, &[4, 3], -1.0, 1.0);
    let b = uniform(&mut r, &[4], -1.0, 1.0);
    check_catches_one_percent("linear", |_, v| v[0].linear(v[1], Some(v[2])), &[x, w, b]);
}

#[test]
#[should_panic(expected = "shape mismatch in matmul: lhs [32, 64], rhs [32, 10]")]
fn matmul_names_both_shapes() {
    let tape = Tape::new();
    let a = tape.constant(Tensor::zeros(&[32, 64]));
    let b = tape.constant(Tensor::zeros(&[32, 10]));
    a.matmul(b);
}

/// Golden values from PyTorch 1.13:
///
/// ```python
/// import torch
/// x = torch.tensor([[[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]],
///                   [[-0.7, 0.8, 0.9], [1.0, -1.1, 1.2]]], requires_grad=True)  # [2,2,3]
/// w = torch.tensor([[0.3, -0.1, 0.2], [0.05, 0.4, -0.3]], requires_grad=True)  # [2 out, 3 in]
/// b = torch.tensor([0.1, -0.2], requires_grad=True)
/// m = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.25, -0.75]], requires_grad=True)  # [3,2]
/// h = torch.nn.functional.linear(x, w, b)      # [2,2,2]
/// z = x.matmul(m)                              # [2,2,2]
/// loss = (h * z).sum() + (h * h).mean()
/// loss.backward()
/// # loss 2.226894
/// # gx -0.4025625, -0.52175, 0.476625, 0.45625, 0.69375, -0.65,
/// #    -0.8493125, -0.64325, 0.3971249, -0.3581249, -1.35875, 1.32375
/// # gw 3.4295, -4.0725, 2.226, 2.11575, -0.9025, -2.169
/// # gb 1.5, -0.07499993
/// # gm 0.7980001, -0.777, -0.8500001, 1.07, 0.9240001, -1.536
/// ```
#[test]
fn golden_values_from_pytorch() {
    let tape = Tape::new();
    let xv = vec![0.1, -0.2, 0.3, 0.4, 0.5, -0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 1.2];
    let x = tape.leaf(Tensor::from_vec(&[2, 2, 3], xv).unwrap());
    let w = tape.leaf(Tensor::from_vec(&[2, 3], vec![0.3, -0.1, 0.2, 0.05, 0.4, -0.3]).unwrap());
    let b = tape.leaf(Tensor::from(vec![0.1, -0.2]));
    let m = tape.leaf(Tensor::from_vec(&[3, 2], vec![1.0, 2.0, -1.0, 0.5, 0.25, -0.75]).unwrap());
    let h = x.linear(w, Some(b));
    let z = x.matmul(m);
    let loss = (h * z).sum_all() + (h * h).mean_all();
    assert_close("loss", &loss.value().to_vec(), &[2.226894], 1e-5, 1e-6);
    let g = tape.backward(loss);
    let gx = [
        -0.4025625, -0.52175, 0.476625, 0.45625, 0.69375, -0.65, -0.8493125, -0.64325, 0.3971249,
        -0.3581249, -1.35875, 1.32375,
    ];
    assert_close("gx", &g.wrt(x).to_vec(), &gx, 1e-5, 1e-6);
    assert_close(
        "gw",
        &g.wrt(w).to_vec(),
        &[3.4295, -4.0725, 2.226, 2.11575, -0.9025, -2.169],
        1e-5,
        1e-6,
    );
    assert_close("gb", &g.wrt(b).to_vec(), &[1.5, -0.07499993], 1e-5, 1e-6);
    let gm = [0.7980001, -0.777, -0.8500001, 1.07, 0.9240001, -1.536];
    assert_close("gm", &g.wrt(m).to_vec(), &gm, 1e-5, 1e-6);
}
