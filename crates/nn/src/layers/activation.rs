//! Activation layers: parameter-free modules wrapping the functions of
//! [`functional`](crate::functional).

use tapestry_autodiff::Var;

use crate::functional;
use crate::module::{Ctx, Module};

/// `max(x, 0)`, as `torch.nn.ReLU`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl Module for Relu {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        functional::relu(x)
    }
}

/// `x` for `x > 0`, else `negative_slope · x`, as `torch.nn.LeakyReLU`.
#[derive(Clone, Copy, Debug)]
pub struct LeakyRelu {
    /// The slope for negative inputs (PyTorch's default is 0.01).
    pub negative_slope: f32,
}

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu { negative_slope: 0.01 }
    }
}

impl Module for LeakyRelu {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        functional::leaky_relu(x, self.negative_slope)
    }
}

/// The hyperbolic tangent, as `torch.nn.Tanh`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tanh;

impl Module for Tanh {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        functional::tanh(x)
    }
}

/// The logistic function, as `torch.nn.Sigmoid`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sigmoid;

impl Module for Sigmoid {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        functional::sigmoid(x)
    }
}

/// `ln(1 + eˣ)`, as `torch.nn.Softplus` with its defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Softplus;

impl Module for Softplus {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        functional::softplus(x)
    }
}

/// Returns its input unchanged, as `torch.nn.Identity`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Module for Identity {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x
    }
}

/// The Gaussian error linear unit `x·Φ(x)` (exact erf form), as `torch.nn.GELU()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gelu;

impl Module for Gelu {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.gelu()
    }
}
