//! Elementwise arithmetic and math, with numpy broadcasting.
//!
//! | op | forward | backward (cotangent `g` of the output) |
//! | --- | --- | --- |
//! | add | a + b | ḡa = g, ḡb = g |
//! | sub | a - b | ḡa = g, ḡb = -g |
//! | mul | a · b | ḡa = g·b, ḡb = g·a |
//! | div | a / b | ḡa = g/b, ḡb = -g·out/b |
//! | neg | -a | -g |
//! | add_scalar | a + c | g |
//! | mul_scalar | c·a | c·g |
//! | pow_scalar | aᵖ | g·p·aᵖ⁻¹ |
//! | exp | eᵃ | g·out |
//! | log | ln a | g/a |
//! | sqrt | √a | g/(2·out) |
//! | abs | \|a\| | g·sign(a) (0 at 0) |
//! | clamp | min(max(a, lo), hi) | g where lo < a < hi, else 0 (0 at a bound, as PyTorch) |
//! | maximum | max(a, b) | g to the larger; split g/2, g/2 on ties |
//! | minimum | min(a, b) | g to the smaller; split g/2, g/2 on ties |
//!
//! Binary ops broadcast; `ctx.acc` sums each cotangent back to its input's shape.
//!
//! Arithmetic, `exp` and `log`, and every product of `g` with a local derivative run on the
//! elementwise kernels (SIMD, and rayon for long tensors) when the shapes are equal or one
//! operand repeats as a trailing block of the other; other broadcasts, `maximum`, `minimum`,
//! `pow_scalar`, `sqrt`, `abs` and `clamp` compute their values element by element.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::backward::Ctx;
use crate::broadcast::{binary as bin, zip_map};
use crate::compute::elementwise::{self as ew, BinaryOp};
use crate::graph::GraphCtx;
use crate::ops::{Family, Op};
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// Elementwise ops: inputs, and the constants their rules need.
#[derive(Clone)]
pub(crate) enum ElementwiseOp {
    Add(NodeId, NodeId),
    Sub(NodeId, NodeId),
    Mul(NodeId, NodeId),
    Div(NodeId, NodeId),
    Maximum(NodeId, NodeId),
    Minimum(NodeId, NodeId),
    Neg(NodeId),
    AddScalar(NodeId),
    MulScalar(NodeId, f32),
    PowScalar(NodeId, f32),
    Exp(NodeId),
    Log(NodeId),
    Sqrt(NodeId),
    Abs(NodeId),
    Clamp(NodeId, f32, f32),
}

use ElementwiseOp as E;

fn unary<'t>(x: Var<'t>, f: impl Fn(f32) -> f32, op: E) -> Var<'t> {
    let value = x.tape.with_values(x.id, x.id, |v, _| v.map(f));
    x.record(value, Op::Elementwise(op))
}

/// A unary op whose values a kernel computes (`kernel(x, out)`), or for a tiny tensor `one`.
fn unary_kernel<'t>(
    x: Var<'t>,
    one: impl Fn(f32) -> f32,
    kernel: impl FnOnce(&[f32], &mut [f32]),
    op: E,
) -> Var<'t> {
    x.record_map(one, kernel, Op::Elementwise(op))
}

fn arithmetic<'t>(name: &'static str, a: Var<'t>, b: Var<'t>, kind: BinaryOp, op: E) -> Var<'t> {
    a.same_tape(b);
    let value = a.tape.with_values(a.id, b.id, |va, vb| bin(name, kind, va, vb));
    a.record(value, Op::Elementwise(op))
}

fn binary<'t>(
    name: &'static str,
    a: Var<'t>,
    b: Var<'t>,
    f: impl Fn(f32, f32) -> f32,
    op: E,
) -> Var<'t> {
    a.same_tape(b);
    let value = a.tape.with_values(a.id, b.id, |va, vb| zip_map(name, va, vb, f));
    a.record(value, Op::Elementwise(op))
}

/// `c·t` on the kernels (with `c = −1`, exactly `−t`).
fn scaled(t: &Tensor, c: f32) -> Tensor {
    t.map_kernel(|v| c * v, |t, out| ew::scale(c, t, out))
}

// The operators (`a + b`, `a * b`, ...) call these; the named forms read better in chains.
#[allow(clippy::should_implement_trait)]
impl<'t> Var<'t> {
    /// `self + other`, broadcasting.
    ///
    /// # Panics
    /// If the shapes do not broadcast (`shape mismatch in add: lhs [..], rhs [..]`).
    pub fn add(self, other: Var<'t>) -> Var<'t> {
        arithmetic("add", self, other, BinaryOp::Add, E::Add(self.id, other.id))
    }

    /// `self - other`, broadcasting.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn sub(self, other: Var<'t>) -> Var<'t> {
        arithmetic("sub", self, other, BinaryOp::Sub, E::Sub(self.id, other.id))
    }

    /// `self * other` elementwise, broadcasting.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn mul(self, other: Var<'t>) -> Var<'t> {
        arithmetic("mul", self, other, BinaryOp::Mul, E::Mul(self.id, other.id))
    }

    /// `self / other` elementwise, broadcasting.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn div(self, other: Var<'t>) -> Var<'t> {
        arithmetic("div", self, other, BinaryOp::Div, E::Div(self.id, other.id))
    }

    /// Elementwise maximum, broadcasting; on ties the gradient is split equally.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn maximum(self, other: Var<'t>) -> Var<'t> {
        binary("maximum", self, other, f32::max, E::Maximum(self.id, other.id))
    }

    /// Elementwise minimum, broadcasting; on ties the gradient is split equally.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn minimum(self, other: Var<'t>) -> Var<'t> {
        binary("minimum", self, other, f32::min, E::Minimum(self.id, other.id))
    }

    /// `-self`.
    pub fn neg(self) -> Var<'t> {
        unary_kernel(self, |a| -a, |x, out| ew::scale(-1.0, x, out), E::Neg(self.id))
    }

    /// `self + c`.
    pub fn add_scalar(self, c: f32) -> Var<'t> {
        let kernel = |x: &[f32], out: &mut [f32]| ew::binary(BinaryOp::Add, x, &[c], out);
        unary_kernel(self, |a| a + c, kernel, E::AddScalar(self.id))
    }

    /// `self * c`.
    pub fn mul_scalar(self, c: f32) -> Var<'t> {
        unary_kernel(self, |a| c * a, |x, out| ew::scale(c, x, out), E::MulScalar(self.id, c))
    }

    /// `self` to the power `p`, elementwise.
    pub fn pow_scalar(self, p: f32) -> Var<'t> {
        unary(self, |a| a.powf(p), E::PowScalar(self.id, p))
    }

    /// eˣ elementwise (within 2 ulp; results below the smallest normal `f32` flush to 0).
    pub fn exp(self) -> Var<'t> {
        unary_kernel(self, ew::single::exp, ew::exp, E::Exp(self.id))
    }

    /// Natural logarithm, elementwise (within 1 ulp).
    pub fn log(self) -> Var<'t> {
        unary_kernel(self, ew::single::ln, ew::ln, E::Log(self.id))
    }

    /// Square root, elementwise.
    pub fn sqrt(self) -> Var<'t> {
        unary(self, f32::sqrt, E::Sqrt(self.id))
    }

    /// Absolute value, elementwise (gradient 0 at 0, as PyTorch).
    pub fn abs(self) -> Var<'t> {
        unary(self, f32::abs, E::Abs(self.id))
    }

    /// Clamps every element into `[lo, hi]`.
    ///
    /// # Panics
    /// If `lo > hi` or either bound is NaN.
    pub fn clamp(self, lo: f32, hi: f32) -> Var<'t> {
        assert!(lo <= hi, "invalid argument to clamp: lo {lo} > hi {hi}");
        unary(self, |a| a.clamp(lo, hi), E::Clamp(self.id, lo, hi))
    }
}

fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The share of a max/min cotangent that goes to the input `pick` (1, ½ on ties, or 0).
fn share(pick: f32, other: f32, wins: bool) -> f32 {
    if pick == other {
        0.5
    } else if wins {
        1.0
    } else {
        0.0
    }
}

impl Family for ElementwiseOp {
    fn name(&self) -> &'static str {
        match self {
            E::Add(..) => "add",
            E::Sub(..) => "sub",
            E::Mul(..) => "mul",
            E::Div(..) => "div",
            E::Maximum(..) => "maximum",
            E::Minimum(..) => "minimum",
            E::Neg(..) => "neg",
            E::AddScalar(..) => "add_scalar",
            E::MulScalar(..) => "mul_scalar",
            E::PowScalar(..) => "pow_scalar",
            E::Exp(..) => "exp",
            E::Log(..) => "log",
            E::Sqrt(..) => "sqrt",
            E::Abs(..) => "abs",
            E::Clamp(..) => "clamp",
        }
    }

    fn for_each_input(&self, f: &mut dyn FnMut(NodeId)) {
        match *self {
            E::Add(a, b) | E::Sub(a, b) | E::Mul(a, b) | E::Div(a, b) => {
                f(a);
                f(b)
            }
            E::Maximum(a, b) | E::Minimum(a, b) => {
                f(a);
                f(b)
            }
            E::Neg(a) | E::AddScalar(a) | E::MulScalar(a, _) | E::PowScalar(a, _) => f(a),
            E::Exp(a) | E::Log(a) | E::Sqrt(a) | E::Abs(a) | E::Clamp(a, ..) => f(a),
        }
    }

    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        // `g op x` for a value x of the node's (or an input's) shape: on the kernels when x
        // repeats as a trailing block of g (always for the node's own shape, stacked or not;
        // for an input's, unless it was broadcast along a middle axis).
        let gk = |kind: BinaryOp, x: &Tensor| bin("backward", kind, g, x);
        let gz = |x: &Tensor, f: fn(f32, f32) -> f32| zip_map("backward", g, x, f);
        match *self {
            E::Add(a, b) => {
                ctx.acc(a, || g.clone());
                ctx.acc(b, || g.clone());
            }
            E::Sub(a, b) => {
                ctx.acc(a, || g.clone());
                ctx.acc(b, || scaled(g, -1.0));
            }
            E::Mul(a, b) => {
                let (va, vb) = (ctx.value(a), ctx.value(b));
                ctx.acc(a, || gk(BinaryOp::Mul, vb));
                ctx.acc(b, || gk(BinaryOp::Mul, va));
            }
            E::Div(a, b) => {
                let vb = ctx.value(b);
                ctx.acc(a, || gk(BinaryOp::Div, vb));
                ctx.acc(b, || {
                    gk(BinaryOp::Mul, &scaled(&bin("div", BinaryOp::Div, out, vb), -1.0))
                });
            }
            E::Maximum(a, b) | E::Minimum(a, b) => {
                let is_max = matches!(self, E::Maximum(..));
                let (va, vb) = (ctx.value(a), ctx.value(b));
                let wa = zip_map("max", va, vb, |x, y| share(x, y, (x > y) == is_max));
                let wb = zip_map("max", vb, va, |y, x| share(y, x, (y > x) == is_max));
                ctx.acc(a, || gk(BinaryOp::Mul, &wa));
                ctx.acc(b, || gk(BinaryOp::Mul, &wb));
            }
            E::Neg(a) => ctx.acc(a, || scaled(g, -1.0)),
            E::AddScalar(a) => ctx.acc(a, || g.clone()),
            E::MulScalar(a, c) => ctx.acc(a, || scaled(g, c)),
            E::PowScalar(a, p) => {
                let local = ctx.value(a).map(|x| p * x.powf(p - 1.0));
                ctx.acc(a, || gk(BinaryOp::Mul, &local))
            }
            E::Exp(a) => ctx.acc(a, || gk(BinaryOp::Mul, out)),
            E::Log(a) => {
                let x = ctx.value(a);
                ctx.acc(a, || gk(BinaryOp::Div, x))
            }
            E::Sqrt(a) => ctx.acc(a, || gz(out, |g, o| g / (2.0 * o))),
            E::Abs(a) => {
                let x = ctx.value(a);
                ctx.acc(a, || gz(x, |g, x| g * sign(x)))
            }
            E::Clamp(a, lo, hi) => {
                let mask = ctx.value(a).map(|x| clamp_passes(x, lo, hi));
                ctx.acc(a, || gk(BinaryOp::Mul, &mask))
            }
        }
    }

    fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        // A local derivative that is piecewise constant (sign, masks, max/min shares) is a
        // constant on the tape: its own derivative is zero wherever it is defined.
        let masked = |ctx: &GraphCtx<'t>, a: NodeId, f: &dyn Fn(f32) -> f32| {
            g * ctx.constant(ctx.var(a).value().map(f))
        };
        match *self {
            E::Add(a, b) => {
                ctx.acc(a, || g);
                ctx.acc(b, || g);
            }
            E::Sub(a, b) => {
                ctx.acc(a, || g);
                ctx.acc(b, || -g);
            }
            E::Mul(a, b) => {
                let (va, vb) = (ctx.var(a), ctx.var(b));
                ctx.acc(a, || g * vb);
                ctx.acc(b, || g * va);
            }
            E::Div(a, b) => {
                let vb = ctx.var(b);
                ctx.acc(a, || g / vb);
                ctx.acc(b, || -(g * out / vb));
            }
            E::Maximum(a, b) | E::Minimum(a, b) => {
                let is_max = matches!(self, E::Maximum(..));
                let (va, vb) = (ctx.var(a).value(), ctx.var(b).value());
                let wa = zip_map("max", &va, &vb, |x, y| share(x, y, (x > y) == is_max));
                let wb = zip_map("max", &vb, &va, |y, x| share(y, x, (y > x) == is_max));
                let (wa, wb) = (ctx.constant(wa), ctx.constant(wb));
                ctx.acc(a, || g * wa);
                ctx.acc(b, || g * wb);
            }
            E::Neg(a) => ctx.acc(a, || -g),
            E::AddScalar(a) => ctx.acc(a, || g),
            E::MulScalar(a, c) => ctx.acc(a, || g * c),
            E::PowScalar(a, p) => {
                let va = ctx.var(a);
                ctx.acc(a, || g * va.pow_scalar(p - 1.0) * p)
            }
            E::Exp(a) => ctx.acc(a, || g * out),
            E::Log(a) => {
                let va = ctx.var(a);
                ctx.acc(a, || g / va)
            }
            E::Sqrt(a) => ctx.acc(a, || g / (out * 2.0)),
            E::Abs(a) => {
                let gx = masked(ctx, a, &sign);
                ctx.acc(a, || gx)
            }
            E::Clamp(a, lo, hi) => {
                let gx = masked(ctx, a, &|x| clamp_passes(x, lo, hi));
                ctx.acc(a, || gx)
            }
        }
    }
}

/// 1 where clamp passes its input through, 0 where it clamps. At exactly a bound the gradient
/// is 0, as in current PyTorch (the output no longer moves with the input there from one side).
fn clamp_passes(x: f32, lo: f32, hi: f32) -> f32 {
    f32::from(u8::from(x > lo && x < hi))
}

macro_rules! var_binop {
    ($trait:ident, $method:ident) => {
        impl<'t> $trait for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                Var::$method(self, rhs)
            }
        }
    };
}
var_binop!(Add, add);
var_binop!(Sub, sub);
var_binop!(Mul, mul);
var_binop!(Div, div);

impl<'t> Add<f32> for Var<'t> {
    type Output = Var<'t>;
    fn add(self, c: f32) -> Var<'t> {
        self.add_scalar(c)
    }
}

impl<'t> Sub<f32> for Var<'t> {
    type Output = Var<'t>;
    fn sub(self, c: f32) -> Var<'t> {
        self.add_scalar(-c)
    }
}

impl<'t> Mul<f32> for Var<'t> {
    type Output = Var<'t>;
    fn mul(self, c: f32) -> Var<'t> {
        self.mul_scalar(c)
    }
}

impl<'t> Div<f32> for Var<'t> {
    type Output = Var<'t>;
    fn div(self, c: f32) -> Var<'t> {
        self.mul_scalar(1.0 / c)
    }
}

impl<'t> Neg for Var<'t> {
    type Output = Var<'t>;
    fn neg(self) -> Var<'t> {
        Var::neg(self)
    }
}
