//! Activations: elementwise nonlinearities with numerically stable forms.
//!
//! | op | forward | backward (cotangent `g` of the output) |
//! | --- | --- | --- |
//! | relu | max(x, 0) | g·𝟙(x > 0) |
//! | leaky_relu | x if x > 0, else s·x | g if x > 0, else s·g |
//! | sigmoid | σ(x) = 1/(1 + e⁻ˣ) | g·out·(1 − out) |
//! | tanh | tanh x | g·(1 − out²) |
//! | gelu | x·Φ(x), Φ(x) = ½(1 + erf(x/√2)) | g·(Φ(x) + x·φ(x)), φ(x) = e^(−x²/2)/√(2π) |
//! | gelu_tanh | ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³) | g·(½(1 + tanh u) + ½x(1 − tanh²u)·u′) |
//! | softplus | ln(1 + e^(βx))/β, or x where βx > threshold | g·σ(βx), or g where βx > threshold |
//! | normal_cdf | Φ(x) = ½ erfc(−x/√2) | g·φ(x) |
//! | relu_grad | relu's recorded rule, g·𝟙(y > 0) for relu's output y | u·𝟙(y > 0) |
//!
//! Stable forms: σ(x) is computed as e^x/(1 + e^x) for x < 0, so e⁻ˣ never overflows;
//! ln(1 + eᶻ) as max(z, 0) + ln(1 + e^(−|z|)). `erf` is evaluated in f64 (see [`erf`]).
//! Every rule multiplies `g` by a local derivative of the input's shape, so leading task axes
//! of `g` broadcast through.
//!
//! relu, leaky_relu, sigmoid and tanh run forward and backward on the elementwise kernels (one
//! fused pass `g·f′` per task, from the saved output or input); tanh and σ there are polynomial
//! approximations within 2 and 3 ulp. gelu, gelu_tanh and softplus evaluate their values and
//! local derivatives element by element (in f64 where stated) and multiply by `g` on the kernels.

use crate::backward::Ctx;
use crate::broadcast::{binary, map_tasks};
use crate::compute::elementwise::{self as ew, BinaryOp};
use crate::graph::GraphCtx;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Activation ops: the input, and the constants their rules need.
#[derive(Clone)]
pub(crate) enum ActivationOp {
    Relu(NodeId),
    LeakyRelu(NodeId, f32),
    Sigmoid(NodeId),
    Tanh(NodeId),
    Gelu(NodeId),
    GeluTanh(NodeId),
    Softplus {
        x: NodeId,
        beta: f32,
        threshold: f32,
    },
    NormalCdf(NodeId),
    /// relu's recorded rule: `g·[y > 0]`, with `y` the relu's output (not an input: the mask is a
    /// constant of the graph, so no cotangent flows to it).
    ReluGrad {
        g: NodeId,
        y: NodeId,
    },
}

use ActivationOp as A;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_CUBIC: f64 = 0.044_715;

/// The error function, accurate to about 1e-15 absolute for every `x`.
///
/// The Maclaurin series `erf x = 2/√π Σₙ (−1)ⁿ x²ⁿ⁺¹ / (n!(2n+1))` for `|x| < 2.5` (its terms
/// stay below e^6.25 ≈ 520, so at most three of sixteen digits cancel), and `1 − erfc x` from
/// the continued fraction below beyond.
pub fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        erf_series(x)
    } else {
        (1.0 - erfc_continued_fraction(x.abs())).copysign(x)
    }
}

/// The complementary error function `1 − erf x`, with full relative accuracy in the tail.
///
/// For `x ≥ 2.5` the Laplace continued fraction
/// `erfc x = e^(−x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))`, evaluated bottom-up over 60
/// levels; for `x ≤ −2.5`, `2 − erfc(−x)`; in between `1 − erf x` from the series.
pub fn erfc(x: f64) -> f64 {
    if x >= 2.5 {
        erfc_continued_fraction(x)
    } else if x <= -2.5 {
        2.0 - erfc_continued_fraction(-x)
    } else {
        1.0 - erf_series(x)
    }
}

fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..100 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

fn erfc_continued_fraction(x: f64) -> f64 {
    let mut t = x;
    for n in (1..=60).rev() {
        t = x + 0.5 * n as f64 / t;
    }
    (-x * x).exp() * (0.5 * std::f64::consts::FRAC_2_SQRT_PI) / t
}

/// The standard normal CDF Φ(x) = ½ erfc(−x/√2), accurate in both tails.
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// The standard normal density φ(x).
fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp()
        * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2)
}

/// σ(x) without overflow for any finite `x`.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + eᶻ) without overflow for any finite `z`.
fn log1p_exp(z: f32) -> f32 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn gelu_tanh_parts(x: f64) -> (f64, f64) {
    let u = SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x);
    (u.tanh(), du)
}

fn unary<'t>(x: Var<'t>, f: impl Fn(f32) -> f32, op: A) -> Var<'t> {
    let value = x.value().map(f);
    x.record(value, Op::Activation(op))
}

/// An activation whose values a kernel computes (`kernel(x, out)`), or for a tiny tensor `one`.
fn unary_kernel<'t>(
    x: Var<'t>,
    one: impl Fn(f32) -> f32,
    kernel: impl FnOnce(&[f32], &mut [f32]),
    op: A,
) -> Var<'t> {
    x.record_map(one, kernel, Op::Activation(op))
}

impl<'t> Var<'t> {
    /// max(x, 0) elementwise; the gradient at 0 is 0, as in PyTorch.
    pub fn relu(self) -> Var<'t> {
        unary_kernel(self, |x| if x > 0.0 { x } else { 0.0 }, ew::relu_forward, A::Relu(self.id))
    }

    /// `x` for x > 0, `slope·x` otherwise (PyTorch's default slope is 0.01).
    pub fn leaky_relu(self, slope: f32) -> Var<'t> {
        let one = |x: f32| if x > 0.0 { x } else { slope * x };
        let kernel = |x: &[f32], out: &mut [f32]| ew::leaky_relu_forward(slope, x, out);
        unary_kernel(self, one, kernel, A::LeakyRelu(self.id, slope))
    }

    /// The logistic function 1/(1 + e⁻ˣ); finite and in [0, 1] for every finite input (within
    /// 3 ulp; below about −87.3 it flushes to 0).
    pub fn sigmoid(self) -> Var<'t> {
        unary_kernel(self, ew::single::sigmoid, ew::sigmoid, A::Sigmoid(self.id))
    }

    /// The hyperbolic tangent, elementwise (within 2 ulp).
    pub fn tanh(self) -> Var<'t> {
        unary_kernel(self, ew::single::tanh, ew::tanh, A::Tanh(self.id))
    }

    /// The exact GELU x·Φ(x) with the normal CDF Φ from `erf`, as PyTorch's default
    /// `gelu(approximate="none")`.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![-1.0, 0.0, 1.0]));
    /// let y = x.gelu().value().to_vec();
    /// assert!((y[2] - 0.841_344_7).abs() < 1e-6 && y[1] == 0.0);
    /// ```
    pub fn gelu(self) -> Var<'t> {
        unary(self, |x| (x as f64 * normal_cdf(x as f64)) as f32, A::Gelu(self.id))
    }

    /// The tanh approximation of GELU, ½x(1 + tanh(√(2/π)(x + 0.044715x³))), as PyTorch's
    /// `gelu(approximate="tanh")`.
    pub fn gelu_tanh(self) -> Var<'t> {
        let f = |x: f32| {
            let x = x as f64;
            (0.5 * x * (1.0 + gelu_tanh_parts(x).0)) as f32
        };
        unary(self, f, A::GeluTanh(self.id))
    }

    /// The standard normal CDF Φ(x) = ½(1 + erf(x/√2)), accurate in both tails (the part of
    /// GELU that its recorded rule differentiates again).
    pub fn normal_cdf(self) -> Var<'t> {
        unary(self, |x| normal_cdf(x as f64) as f32, A::NormalCdf(self.id))
    }

    /// ln(1 + eˣ) with PyTorch's defaults (β = 1, threshold = 20); see [`Var::softplus_with`].
    pub fn softplus(self) -> Var<'t> {
        self.softplus_with(1.0, 20.0)
    }

    /// ln(1 + e^(βx))/β, and `x` itself where βx > `threshold` (as PyTorch's
    /// `softplus(beta, threshold)`). Finite for every finite input.
    ///
    /// # Panics
    /// If `beta` is not positive and finite.
    pub fn softplus_with(self, beta: f32, threshold: f32) -> Var<'t> {
        if !(beta > 0.0 && beta.is_finite()) {
            crate::error::invalid("softplus", format!("beta must be positive, got {beta}"));
        }
        let f = move |x: f32| if beta * x > threshold { x } else { log1p_exp(beta * x) / beta };
        unary(self, f, A::Softplus { x: self.id, beta, threshold })
    }
}

impl Family for ActivationOp {
    fn name(&self) -> &'static str {
        match self {
            A::Relu(..) => "relu",
            A::LeakyRelu(..) => "leaky_relu",
            A::Sigmoid(..) => "sigmoid",
            A::Tanh(..) => "tanh",
            A::Gelu(..) => "gelu",
            A::GeluTanh(..) => "gelu_tanh",
            A::Softplus { .. } => "softplus",
            A::NormalCdf(..) => "normal_cdf",
            A::ReluGrad { .. } => "relu_grad",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            A::Relu(x) | A::LeakyRelu(x, _) | A::Sigmoid(x) | A::Tanh(x) => f(x),
            A::Gelu(x) | A::GeluTanh(x) | A::Softplus { x, .. } | A::NormalCdf(x) => f(x),
            A::ReluGrad { g, .. } => f(g),
        }
    }

    // relu, sigmoid and tanh take their local derivative from the output; the others from x.
    fn reads_output(&self) -> bool {
        matches!(self, A::Relu(_) | A::Sigmoid(_) | A::Tanh(_))
    }

    fn reads_inputs(&self) -> bool {
        !self.reads_output()
    }

    // relu's rule over its own cotangent: the mask zeroes it in place (a copy first if the
    // cotangent is shared), the same values as `backward` without a second buffer.
    fn backward_owned(&self, out: &Tensor, mut g: Tensor, ctx: &mut Ctx<'_>) {
        match *self {
            A::Relu(x) if ctx.needs(x) && !out.is_empty() => {
                for gt in g.make_mut().chunks_exact_mut(out.len()) {
                    ew::relu_backward_in_place(out.as_slice(), gt);
                }
                ctx.acc(x, || g);
            }
            _ => self.backward(out, &g, ctx),
        }
    }

    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        // Every rule is g times a local derivative of the input's shape.
        let gz = |local: Tensor| binary("backward", BinaryOp::Mul, g, &local);
        match *self {
            // out > 0 exactly where x > 0, so the output serves as the kernel's mask.
            A::Relu(x) => ctx.acc(x, || map_tasks(g, out, ew::relu_backward)),
            A::LeakyRelu(x, s) => {
                let vx = ctx.value(x);
                ctx.acc(x, || map_tasks(g, vx, |x, g, dx| ew::leaky_relu_backward(s, x, g, dx)))
            }
            A::Sigmoid(x) => ctx.acc(x, || map_tasks(g, out, ew::sigmoid_backward)),
            A::Tanh(x) => ctx.acc(x, || map_tasks(g, out, ew::tanh_backward)),
            A::Gelu(x) => {
                let d = |x: f32| (normal_cdf(x as f64) + x as f64 * normal_pdf(x as f64)) as f32;
                let local = ctx.value(x).map(d);
                ctx.acc(x, || gz(local))
            }
            A::GeluTanh(x) => {
                let d = |x: f32| {
                    let (x, (t, du)) = (x as f64, gelu_tanh_parts(x as f64));
                    (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du) as f32
                };
                let local = ctx.value(x).map(d);
                ctx.acc(x, || gz(local))
            }
            A::Softplus { x, beta, threshold } => {
                let d = move |x: f32| if beta * x > threshold { 1.0 } else { sigmoid(beta * x) };
                let local = ctx.value(x).map(d);
                ctx.acc(x, || gz(local))
            }
            A::NormalCdf(x) => {
                let local = ctx.value(x).map(|x| normal_pdf(x as f64) as f32);
                ctx.acc(x, || gz(local))
            }
            // Linear in g with the same mask: the cotangent u gives u·[y > 0].
            A::ReluGrad { g: gv, y } => {
                let vy = ctx.value(y);
                ctx.acc(gv, || map_tasks(g, vy, ew::relu_backward))
            }
        }
    }

    fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        // Piecewise-constant local derivatives (relu's mask, leaky_relu's slopes, softplus's
        // linear region) are constants: their derivative is 0 away from the kink, and at the kink
        // itself PyTorch's convention (the one-sided value of the eager rule) holds.
        let constant = |ctx: &GraphCtx<'t>, x: NodeId, f: &dyn Fn(f32) -> f32| {
            ctx.constant(ctx.var(x).value().map(f))
        };
        match *self {
            // One fused op, g·[y > 0] on the kernels, instead of a mask tensor and a product.
            A::Relu(x) => ctx.acc(x, || g.relu_grad(out)),
            A::LeakyRelu(x, s) => {
                let slope = constant(ctx, x, &|x| if x > 0.0 { 1.0 } else { s });
                ctx.acc(x, || g * slope)
            }
            A::Sigmoid(x) => ctx.acc(x, || g * out * (-out + 1.0)),
            A::Tanh(x) => ctx.acc(x, || g * (-(out * out) + 1.0)),
            A::Gelu(x) => {
                // d/dx x·Φ(x) = Φ(x) + x·φ(x)
                let vx = ctx.var(x);
                ctx.acc(x, || g * (vx.normal_cdf() + vx * normal_pdf_var(vx)))
            }
            A::GeluTanh(x) => {
                // ½(1 + tanh u) + ½x(1 − tanh²u)·u′, u = √(2/π)(x + 0.044715x³)
                let vx = ctx.var(x);
                ctx.acc(x, || {
                    let c = SQRT_2_OVER_PI as f32;
                    let cubic = GELU_TANH_CUBIC as f32;
                    let t = ((vx + vx * vx * vx * cubic) * c).tanh();
                    let du = (vx * vx * (3.0 * cubic) + 1.0) * c;
                    g * ((t + 1.0) * 0.5 + vx * (-(t * t) + 1.0) * du * 0.5)
                })
            }
            A::Softplus { x, beta, threshold } => {
                let vx = ctx.var(x);
                let smooth = constant(ctx, x, &|x| f32::from(u8::from(beta * x <= threshold)));
                let linear = constant(ctx, x, &|x| f32::from(u8::from(beta * x > threshold)));
                ctx.acc(x, || g * ((vx * beta).sigmoid() * smooth + linear))
            }
            A::NormalCdf(x) => {
                let vx = ctx.var(x);
                ctx.acc(x, || g * normal_pdf_var(vx))
            }
            A::ReluGrad { g: gv, y } => {
                let vy = ctx.var(y);
                ctx.acc(gv, || g.relu_grad(vy))
            }
        }
    }
}

impl<'t> Var<'t> {
    /// `self·[y > 0]`: relu's rule for the cotangent `self` of a relu whose output is `y`,
    /// recorded (its own rule is the same mask).
    fn relu_grad(self, y: Var<'t>) -> Var<'t> {
        let value = self.tape.with_values(self.id, y.id, |g, y| map_tasks(g, y, ew::relu_backward));
        self.record(value, Op::Activation(A::ReluGrad { g: self.id, y: y.id }))
    }
}

/// φ(x) = e^(−x²/2)/√(2π) as recorded ops.
fn normal_pdf_var(x: Var<'_>) -> Var<'_> {
    let inv_sqrt_2pi =
        (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;
    (x * x * -0.5).exp() * inv_sqrt_2pi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // Python: [(x, math.erf(x), math.erfc(x)) for x in (...)]
        let cases = [
            (0.0, 0.0, 1.0),
            (0.1, 0.1124629160182849, 0.8875370839817152),
            (-0.7, -0.6778011938374184, 1.6778011938374184),
            (1.0, 0.8427007929497149, 0.15729920705028513),
            (2.0, 0.9953222650189527, 0.004677734981047265),
            (2.49, 0.9995707121322661, 0.000429287867733913),
            (2.51, 0.9996142945182758, 0.0003857054817242798),
            (3.5, 0.9999992569016276, 7.430983723414128e-07),
            (6.0, 1.0, 2.1519736712498916e-17),
            (-4.0, -0.9999999845827421, 1.999999984582742),
        ];
        for (x, e, c) in cases {
            assert!((erf(x) - e).abs() < 1e-14, "erf({x}) = {}, want {e}", erf(x));
            assert!((erfc(x) - c).abs() <= 1e-11 * c, "erfc({x}) = {}, want {c}", erfc(x));
        }
    }
}
