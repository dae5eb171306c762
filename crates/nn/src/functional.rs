//! Activation functions on [`Var`]s: thin wrappers over the autodiff crate's activation ops,
//! kept so that code can name them as functions (`functional::relu(x)`). Each matches PyTorch's
//! value and its gradient convention at kinks (ReLU's derivative at 0 is 0).

use tapestry_autodiff::Var;

/// `max(x, 0)`; derivative 1 where `x > 0`, else 0 (as PyTorch).
pub fn relu(x: Var<'_>) -> Var<'_> {
    x.relu()
}

/// `x` where `x > 0`, `slope · x` elsewhere; derivative `slope` at 0 (as PyTorch).
pub fn leaky_relu(x: Var<'_>, slope: f32) -> Var<'_> {
    x.leaky_relu(slope)
}

/// The logistic function `1 / (1 + e^{-x})`.
pub fn sigmoid(x: Var<'_>) -> Var<'_> {
    x.sigmoid()
}

/// The hyperbolic tangent.
pub fn tanh(x: Var<'_>) -> Var<'_> {
    x.tanh()
}

/// `ln(1 + e^x)` with PyTorch's defaults (β = 1, `x` itself above 20).
pub fn softplus(x: Var<'_>) -> Var<'_> {
    x.softplus()
}

/// The exact GELU `x · Φ(x)`, as PyTorch's default `gelu`.
pub fn gelu(x: Var<'_>) -> Var<'_> {
    x.gelu()
}
