//! Activation functions on [`Var`]s, built from the autodiff crate's ops.
//!
//! A pointwise function `f` with derivative `f'` is recorded as `x · d + r`, where
//! `d = f'(x)` and `r = f(x) − x · d` are constants computed from the forward value. The
//! result's value is `f(x)` (to within rounding) and its derivative with respect to `x` is
//! exactly `f'(x)`, for any number of backward passes, batched or not, at the cost of two
//! elementwise nodes. (Second derivatives are not tracked.) ReLU-like functions need only the
//! mask: `x · m`. Each follows PyTorch's value and its gradient convention at kinks.

use tapestry_autodiff::{Tensor, Var};

/// Records `f` with derivative `df` as `x · d + r` (see the module docs).
fn pointwise<'t>(x: Var<'t>, f: impl Fn(f32) -> f32, df: impl Fn(f32) -> f32) -> Var<'t> {
    let value = x.value();
    let d: Tensor = value.map(&df);
    let r = Tensor::from_vec(
        value.shape(),
        value.as_slice().iter().zip(d.as_slice()).map(|(&v, &dv)| f(v) - v * dv).collect(),
    )
    .expect("same shape");
    let tape = x.tape();
    x.mul(tape.constant(d)).add(tape.constant(r))
}

/// Multiplies `x` by a constant mask computed from its value.
fn masked<'t>(x: Var<'t>, mask: impl Fn(f32) -> f32) -> Var<'t> {
    let m: Tensor = x.value().map(mask);
    x.mul(x.tape().constant(m))
}

/// `max(x, 0)`; derivative 1 where `x > 0`, else 0 (as PyTorch).
pub fn relu(x: Var<'_>) -> Var<'_> {
    masked(x, |v| if v > 0.0 { 1.0 } else { 0.0 })
}

/// `x` where `x > 0`, `slope · x` elsewhere; derivative `slope` at 0 (as PyTorch).
pub fn leaky_relu(x: Var<'_>, slope: f32) -> Var<'_> {
    masked(x, move |v| if v > 0.0 { 1.0 } else { slope })
}

/// The logistic function `1 / (1 + e^{-x})`, derivative `σ(x)(1 − σ(x))`.
pub fn sigmoid(x: Var<'_>) -> Var<'_> {
    pointwise(x, sigmoid_f32, |v| {
        let s = sigmoid_f32(v);
        s * (1.0 - s)
    })
}

/// The hyperbolic tangent, derivative `1 − tanh²(x)`.
pub fn tanh(x: Var<'_>) -> Var<'_> {
    pointwise(x, f32::tanh, |v| {
        let t = v.tanh();
        1.0 - t * t
    })
}

/// `ln(1 + e^x)`, derivative `σ(x)` (PyTorch's default threshold: `x` itself above 20).
pub fn softplus(x: Var<'_>) -> Var<'_> {
    pointwise(
        x,
        |v| if v > 20.0 { v } else { v.exp().ln_1p() },
        |v| if v > 20.0 { 1.0 } else { sigmoid_f32(v) },
    )
}

/// The logistic function on one number, without overflow for large |v|.
fn sigmoid_f32(v: f32) -> f32 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}
