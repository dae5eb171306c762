//! Parameter initialisation from a seeded RNG, following `torch.nn.init`.
//!
//! Fans follow PyTorch: for a weight of shape `[out, in, k...]`, `fan_in = in · Πk` and
//! `fan_out = out · Πk`. [`gain`] is `torch.nn.init.calculate_gain`. PyTorch's default for
//! `nn.Linear` and `nn.Conv2d` is [`kaiming_uniform`] with `a = √5` and fan-in, which reduces to
//! `U(−1/√fan_in, 1/√fan_in)`; the bias is drawn from the same interval ([`pytorch_default`],
//! [`pytorch_default_bias`]). Draws happen in row-major order, so a seed fixes every value.

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use tapestry_autodiff::Tensor;

/// The nonlinearity that follows a layer, for [`gain`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Identity, or a linear/conv layer: gain 1.
    Linear,
    /// Logistic sigmoid: gain 1.
    Sigmoid,
    /// tanh: gain 5/3.
    Tanh,
    /// ReLU: gain √2.
    Relu,
    /// Leaky ReLU with the given negative slope: gain √(2 / (1 + slope²)).
    LeakyRelu(f32),
    /// SELU: gain 3/4.
    Selu,
}

/// The recommended gain for a nonlinearity (`torch.nn.init.calculate_gain`).
pub fn gain(nonlinearity: Nonlinearity) -> f32 {
    match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f32.sqrt(),
        Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// Which fan Kaiming initialisation scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass.
    FanIn,
    /// Preserve the variance of gradients in the backward pass.
    FanOut,
}

/// `(fan_in, fan_out)` of a weight shape, as PyTorch computes them.
///
/// # Panics
/// If the shape has fewer than 2 axes.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    assert!(shape.len() >= 2, "fans need a weight with at least 2 axes, got shape {shape:?}");
    let receptive: usize = shape[2..].iter().product();
    (shape[1] * receptive, shape[0] * receptive)
}

/// A tensor of `shape` with elements drawn from `U(low, high)`.
///
/// # Panics
/// If `low >= high`.
pub fn uniform<R: Rng + ?Sized>(shape: &[usize], low: f32, high: f32, rng: &mut R) -> Tensor {
    assert!(low < high, "uniform initialisation needs low < high, got [{low}, {high})");
    let dist = Uniform::new(low, high);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| dist.sample(rng)).collect()).expect("sized above")
}

/// A tensor of `shape` with elements drawn from `N(mean, std²)`.
///
/// # Panics
/// If `std` is negative or not finite.
pub fn normal<R: Rng + ?Sized>(shape: &[usize], mean: f32, std: f32, rng: &mut R) -> Tensor {
    let dist = Normal::new(mean, std).expect("normal initialisation needs a finite std >= 0");
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| dist.sample(rng)).collect()).expect("sized above")
}

fn fan(shape: &[usize], mode: FanMode) -> f32 {
    let (fan_in, fan_out) = fans(shape);
    match mode {
        FanMode::FanIn => fan_in as f32,
        FanMode::FanOut => fan_out as f32,
    }
}

/// Kaiming (He) uniform: `U(−b, b)` with `b = gain · √(3 / fan)`.
///
/// # Panics
/// If the shape has fewer than 2 axes or a zero fan.
pub fn kaiming_uniform<R: Rng + ?Sized>(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut R,
) -> Tensor {
    let bound = gain(nonlinearity) * (3.0 / fan(shape, mode)).sqrt();
    uniform(shape, -bound, bound, rng)
}

/// Kaiming (He) normal: `N(0, std²)` with `std = gain / √fan`.
///
/// # Panics
/// If the shape has fewer than 2 axes or a zero fan.
pub fn kaiming_normal<R: Rng + ?Sized>(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut R,
) -> Tensor {
    let std = gain(nonlinearity) / fan(shape, mode).sqrt();
    normal(shape, 0.0, std, rng)
}

/// Xavier (Glorot) uniform: `U(−b, b)` with `b = gain · √(6 / (fan_in + fan_out))`.
///
/// # Panics
/// If the shape has fewer than 2 axes or zero fans.
pub fn xavier_uniform<R: Rng + ?Sized>(shape: &[usize], gain: f32, rng: &mut R) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    let bound = gain * (6.0 / (fan_in + fan_out) as f32).sqrt();
    uniform(shape, -bound, bound, rng)
}

/// Xavier (Glorot) normal: `N(0, std²)` with `std = gain · √(2 / (fan_in + fan_out))`.
///
/// # Panics
/// If the shape has fewer than 2 axes or zero fans.
pub fn xavier_normal<R: Rng + ?Sized>(shape: &[usize], gain: f32, rng: &mut R) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    let std = gain * (2.0 / (fan_in + fan_out) as f32).sqrt();
    normal(shape, 0.0, std, rng)
}

/// PyTorch's default weight initialisation for `nn.Linear` and `nn.Conv2d`:
/// `kaiming_uniform(a = √5)`, that is `U(−1/√fan_in, 1/√fan_in)`.
///
/// # Panics
/// If the shape has fewer than 2 axes or a zero fan-in.
pub fn pytorch_default<R: Rng + ?Sized>(shape: &[usize], rng: &mut R) -> Tensor {
    kaiming_uniform(shape, FanMode::FanIn, Nonlinearity::LeakyRelu(5f32.sqrt()), rng)
}

/// PyTorch's default bias initialisation for a layer with fan-in `fan_in`:
/// `U(−1/√fan_in, 1/√fan_in)`.
///
/// # Panics
/// If `fan_in` is 0.
pub fn pytorch_default_bias<R: Rng + ?Sized>(len: usize, fan_in: usize, rng: &mut R) -> Tensor {
    assert!(fan_in > 0, "bias initialisation needs a positive fan-in");
    let bound = 1.0 / (fan_in as f32).sqrt();
    uniform(&[len], -bound, bound, rng)
}
