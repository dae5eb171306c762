//! Gradients of the elementwise family: finite differences, a 1% fault detector, and golden
//! values from PyTorch.

mod common;

use common::{assert_close, away_from_zero, check, check_catches_one_percent, rng, uniform};
use tapestry_autodiff::{Tape, Tensor};

#[test]
fn binary_ops_with_broadcasting() {
    let mut r = rng(1);
    // Shapes that broadcast in every way: trailing axes, size-1 axes, missing leading axes.
    let pairs: [(&[usize], &[usize]); 5] =
        [(&[3, 4], &[3, 4]), (&[3, 4], &[4]), (&[2, 1, 4], &[3, 1]), (&[1], &[2, 3]), (&[], &[5])];
    for (sa, sb) in pairs {
        let a = away_from_zero(&mut r, sa, 0.5, 2.0);
        let b = away_from_zero(&mut r, sb, 0.5, 2.0);
        let inputs = [a, b];
        check("add", |_, v| v[0] + v[1], &inputs);
        check("sub", |_, v| v[0] - v[1], &inputs);
        check("mul", |_, v| v[0] * v[1], &inputs);
        check("div", |_, v| v[0] / v[1], &inputs);
    }
}

#[test]
fn maximum_and_minimum_route_to_the_winner() {
    let mut r = rng(2);
    // Distinct values (no ties within 2h) so finite differences are valid.
    let a = uniform(&mut r, &[4, 5], -2.0, 2.0);
    let b = a.map(|v| if (v * 10.0) as i32 % 2 == 0 { v + 0.3 } else { v - 0.3 });
    check("maximum", |_, v| v[0].maximum(v[1]), &[a.clone(), b.clone()]);
    check("minimum", |_, v| v[0].minimum(v[1]), &[a, b]);
}

#[test]
fn ties_split_the_gradient_like_pytorch() {
    let tape = Tape::new();
    let a = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    let b = tape.leaf(Tensor::from(vec![1.0, 3.0]));
    let g = tape.backward(a.maximum(b).sum_all());
    assert_eq!(g.wrt(a).to_vec(), vec![0.5, 0.0]);
    assert_eq!(g.wrt(b).to_vec(), vec![0.5, 1.0]);
}

#[test]
fn unary_ops() {
    let mut r = rng(3);
    let x = away_from_zero(&mut r, &[3, 4], 0.2, 2.0);
    let pos = uniform(&mut r, &[3, 4], 0.3, 3.0);
    check("neg", |_, v| -v[0], std::slice::from_ref(&x));
    check("add_scalar", |_, v| v[0] + 1.5, std::slice::from_ref(&x));
    check("mul_scalar", |_, v| v[0] * -2.5, std::slice::from_ref(&x));
    check("pow_scalar", |_, v| v[0].pow_scalar(2.7), std::slice::from_ref(&pos));
    check("pow_scalar int", |_, v| v[0].pow_scalar(3.0), std::slice::from_ref(&x));
    // Exponents below 1: a root (the derivative grows towards 0) and negative powers.
    for p in [0.5, 0.3, -0.5, -2.0] {
        check(
            &format!("pow_scalar {p}"),
            move |_, v| v[0].pow_scalar(p),
            std::slice::from_ref(&pos),
        );
    }
    check("exp", |_, v| v[0].exp(), std::slice::from_ref(&x));
    check("log", |_, v| v[0].log(), std::slice::from_ref(&pos));
    check("sqrt", |_, v| v[0].sqrt(), std::slice::from_ref(&pos));
    check("abs", |_, v| v[0].abs(), std::slice::from_ref(&x));
    // Clamp bounds chosen away from the sample values.
    let c = x.map(|v| if (v.abs() - 1.0).abs() < 0.1 { v * 1.3 } else { v });
    check("clamp", |_, v| v[0].clamp(-1.0, 1.0), &[c]);
}

#[test]
fn tolerance_catches_a_one_percent_error() {
    let mut r = rng(4);
    let a = away_from_zero(&mut r, &[3, 4], 0.5, 2.0);
    let b = away_from_zero(&mut r, &[4], 0.5, 2.0);
    check_catches_one_percent("mul", |_, v| v[0] * v[1], &[a.clone(), b.clone()]);
    check_catches_one_percent("div", |_, v| v[0] / v[1], &[a.clone(), b]);
    check_catches_one_percent("exp", |_, v| v[0].exp(), &[a]);
}

/// Golden values from PyTorch 1.13:
///
/// ```python
/// import torch
/// a = torch.tensor([[0.5, -1.25, 2.0], [1.5, 0.75, -0.5]], requires_grad=True)
/// b = torch.tensor([0.8, -0.6, 1.7], requires_grad=True)
/// r = torch.tensor([[1.0, -2.0, 0.5], [0.25, 1.5, -1.0]])
/// y = (a * b + a / b - torch.maximum(a, b) + torch.minimum(a, b) * 0.5
///      + torch.exp(a * 0.5) + torch.log(b.abs() + 1.0) + torch.sqrt(a.abs() + 0.1)
///      + a.clamp(-1.0, 1.0) + (a.abs() + 0.5) ** 1.5 - (-b))
/// loss = (y * r).sum()
/// loss.backward()
/// # loss 5.117838
/// # ga 6.33751, 7.827361, 2.682059, 1.156276, 1.020309, -2.032138
/// # gb 0.5772569, -3.881944, 1.545784
/// ```
#[test]
fn golden_values_from_pytorch() {
    let tape = Tape::new();
    let a = tape.leaf(Tensor::from_vec(&[2, 3], vec![0.5, -1.25, 2.0, 1.5, 0.75, -0.5]).unwrap());
    let b = tape.leaf(Tensor::from(vec![0.8, -0.6, 1.7]));
    let r =
        tape.constant(Tensor::from_vec(&[2, 3], vec![1.0, -2.0, 0.5, 0.25, 1.5, -1.0]).unwrap());
    let y = a * b + a / b - a.maximum(b)
        + a.minimum(b) * 0.5
        + (a * 0.5).exp()
        + (b.abs() + 1.0).log()
        + (a.abs() + 0.1).sqrt()
        + a.clamp(-1.0, 1.0)
        + (a.abs() + 0.5).pow_scalar(1.5)
        - (-b);
    let loss = (y * r).sum_all();
    assert_close("loss", &loss.value().to_vec(), &[5.117838], 1e-5, 1e-6);
    let g = tape.backward(loss);
    let ga = [6.33751, 7.827361, 2.682059, 1.156276, 1.020309, -2.032138];
    assert_close("grad a", &g.wrt(a).to_vec(), &ga, 1e-5, 1e-6);
    assert_close("grad b", &g.wrt(b).to_vec(), &[0.5772569, -3.881944, 1.545784], 1e-5, 1e-6);
}
