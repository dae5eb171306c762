//! Finite-difference gradient checking for any function built from ops.
//!
//! The function may return a value of any shape; it is reduced to the scalar
//! `L = Σᵢ rᵢ yᵢ` with fixed pseudo-random weights `rᵢ` (so that every output element matters
//! with its own weight, and a rule that is wrong by a constant factor in one element shows up).
//! The analytic gradient of `L` comes from one backward pass; the numeric one from the
//! fourth-order central difference
//!
//! ```text
//! ∂L/∂xⱼ ≈ [8(L(x+heⱼ) − L(x−heⱼ)) − (L(x+2heⱼ) − L(x−2heⱼ))] / 12h
//! ```
//!
//! with `h = step · max(1, |xⱼ|)` and `L` accumulated in f64. Its truncation error is O(h⁴)
//! (about 1e-9 at the default step). What limits it is the f32 forward pass: every value of `L`
//! carries rounding noise, which the difference quotient divides by `h`. So each input's noise
//! is measured from the same evaluations (the fourth difference, see [`numeric_gradients`]),
//! and an element passes when
//!
//! ```text
//! |analytic − numeric| ≤ rtol·|numeric| + atol_fraction·max|numeric| + noise_sigmas·noise
//! ```
//!
//! with the defaults `rtol` 2e-4, `atol_fraction` 1e-5 and `noise_sigmas` 6: a rule 0.2% wrong
//! fails wherever its derivative stands clear of the noise, and one 1% wrong fails on elements
//! down to about 0.1% of the input's largest derivative.
//!
//! Inputs must keep a distance of more than `2h` from kinks (0 for relu and abs, ties for max).
//!
//! ```
//! use tapestry_autodiff::gradcheck::{gradcheck, GradcheckOptions};
//! use tapestry_autodiff::Tensor;
//! let x = Tensor::from_vec(&[3], vec![0.5, 1.0, 2.0]).unwrap();
//! let report = gradcheck(|_tape, v| v[0].exp() * v[0], &[x], &GradcheckOptions::default()).unwrap();
//! assert!(report.max_error_ratio <= 1.0);
//! ```

use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Step and tolerances of a check.
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Relative finite-difference step.
    pub step: f32,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance, as a fraction of the largest numeric gradient of each input.
    pub atol_fraction: f64,
    /// Absolute tolerance, in standard deviations of each input's measured rounding noise
    /// ([`NumericGradients::noise`]).
    pub noise_sigmas: f64,
    /// Seed of the projection weights.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            step: 1e-2,
            rtol: 2e-4,
            atol_fraction: 1e-5,
            noise_sigmas: 6.0,
            seed: 0x7a9e,
        }
    }
}

/// The outcome of a passing check.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// The largest |analytic − numeric| / tolerance over all elements (≤ 1 means pass).
    pub max_error_ratio: f64,
    /// How many derivatives were compared.
    pub checked: usize,
    /// The analytic gradients, one per input.
    pub analytic: Vec<Tensor>,
    /// The numeric gradients, one per input.
    pub numeric: Vec<Tensor>,
    /// The measured rounding noise of each input's numeric gradient (a standard deviation).
    pub noise: Vec<f64>,
}

/// Why a check failed.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum GradcheckError {
    /// An analytic derivative disagrees with the finite difference.
    #[error("gradient mismatch at input {input}, element {index}: analytic {analytic}, numeric {numeric}")]
    Mismatch {
        /// Which input.
        input: usize,
        /// The flat element index.
        index: usize,
        /// The backward pass's value.
        analytic: f64,
        /// The finite difference.
        numeric: f64,
    },
    /// The function or its gradient produced NaN or infinity.
    #[error("non-finite value in {what} of input {input}")]
    NonFinite {
        /// Which input.
        input: usize,
        /// "analytic gradient", "numeric gradient" or "function value".
        what: &'static str,
    },
}

fn weights(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let w: f32 = rng.gen_range(0.5..1.5);
            if rng.gen_bool(0.5) {
                w
            } else {
                -w
            }
        })
        .collect();
    Tensor::from_vec(shape, data).expect("shape")
}

/// The analytic gradients of `L = Σ rᵢ fᵢ(inputs)` from one backward pass.
pub fn analytic_gradients<F>(f: &F, inputs: &[Tensor], opts: &GradcheckOptions) -> Vec<Tensor>
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = f(&tape, &vars);
    let r = tape.constant(weights(&y.shape(), opts.seed));
    let loss = (y * r).sum_all();
    let grads = tape.backward(loss);
    vars.iter().map(|&v| grads.wrt(v)).collect()
}

/// `L` evaluated in f64 from the f32 forward value. Recording stays on: `f` may itself take a
/// recorded gradient (see [`gradient_of`]).
fn objective<F>(f: &F, inputs: &[Tensor], seed: u64) -> f64
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = f(&tape, &vars).value();
    let r = weights(y.shape(), seed);
    y.as_slice().iter().zip(r.as_slice()).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Finite-difference gradients of `L = Σ rᵢ fᵢ(inputs)` with the rounding noise they carry.
#[derive(Clone, Debug)]
pub struct NumericGradients {
    /// The gradients, one per input (fourth-order central differences).
    pub values: Vec<Tensor>,
    /// Per input, the estimated standard deviation of the rounding noise in its derivatives
    /// (see [`numeric_gradients`]).
    pub noise: Vec<f64>,
}

/// The numeric gradients of `L = Σ rᵢ fᵢ(inputs)` by fourth-order central differences, and
/// the rounding noise of each input's derivatives.
///
/// The noise comes from the f32 forward pass: each value of `L` carries a rounding error `ε`
/// of some deviation `σ`, which the difference quotient divides by `h`. The five values a
/// derivative uses also give its fourth difference
/// `Δ⁴ = L(x+2h) − 4L(x+h) + 6L(x) − 4L(x−h) + L(x−2h) = h⁴ L⁗ + (noise of deviation √70 σ)`,
/// where `h⁴ L⁗` is negligible at the default step for smooth functions (and only makes the
/// estimate larger where it is not). The derivative's noise has deviation `√130 σ / 12h`, so
/// each element gives the estimate `√130 / (12 √70) · |Δ⁴| / h`; an input's noise is their root
/// mean square over its elements.
pub fn numeric_gradients<F>(f: &F, inputs: &[Tensor], opts: &GradcheckOptions) -> NumericGradients
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let noise_per_d4 = 130f64.sqrt() / (12.0 * 70f64.sqrt());
    let centre = objective(f, inputs, opts.seed);
    let mut work: Vec<Tensor> = inputs.to_vec();
    let mut values = Vec::with_capacity(inputs.len());
    let mut noise = Vec::with_capacity(inputs.len());
    for i in 0..inputs.len() {
        let mut grad = vec![0.0f32; inputs[i].len()];
        let mut noise_sq = 0.0f64;
        for (j, gj) in grad.iter_mut().enumerate() {
            let x0 = inputs[i].as_slice()[j];
            let h = opts.step * x0.abs().max(1.0);
            let mut eval = |delta: f32| {
                work[i].make_mut()[j] = x0 + delta;
                objective(f, &work, opts.seed)
            };
            let (p1, m1, p2, m2) = (eval(h), eval(-h), eval(2.0 * h), eval(-2.0 * h));
            work[i].make_mut()[j] = x0;
            let h = h as f64;
            *gj = ((8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h)) as f32;
            let d4 = p2 - 4.0 * p1 + 6.0 * centre - 4.0 * m1 + m2;
            noise_sq += (noise_per_d4 * d4 / h).powi(2);
        }
        noise.push((noise_sq / grad.len().max(1) as f64).sqrt());
        values.push(Tensor::from_vec(inputs[i].shape(), grad).expect("shape"));
    }
    NumericGradients { values, noise }
}

/// Compares analytic and numeric gradients; returns the largest error/tolerance ratio.
///
/// Element `j` of input `i` passes when
/// `|a − n| ≤ rtol·|n| + atol_fraction·max|nᵢ| + noise_sigmas·noiseᵢ`.
///
/// # Errors
/// The first element whose error exceeds its tolerance, or a non-finite analytic or numeric
/// value.
pub fn compare(
    analytic: &[Tensor],
    numeric: &NumericGradients,
    opts: &GradcheckOptions,
) -> Result<f64, GradcheckError> {
    let mut worst = 0.0f64;
    for (input, ((a, n), &noise)) in
        analytic.iter().zip(&numeric.values).zip(&numeric.noise).enumerate()
    {
        let scale = n.as_slice().iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let atol = opts.atol_fraction * scale.max(1e-6) + opts.noise_sigmas * noise;
        for (index, (&av, &nv)) in a.as_slice().iter().zip(n.as_slice()).enumerate() {
            if !av.is_finite() {
                return Err(GradcheckError::NonFinite { input, what: "analytic gradient" });
            }
            if !nv.is_finite() {
                return Err(GradcheckError::NonFinite { input, what: "numeric gradient" });
            }
            let (av, nv) = (av as f64, nv as f64);
            let ratio = (av - nv).abs() / (atol + opts.rtol * nv.abs());
            if ratio > 1.0 {
                return Err(GradcheckError::Mismatch { input, index, analytic: av, numeric: nv });
            }
            worst = worst.max(ratio);
        }
    }
    Ok(worst)
}

/// Checks the gradients of `f` at `inputs` against finite differences.
///
/// # Errors
/// [`GradcheckError`] naming the first input and element that disagree.
pub fn gradcheck<F>(
    f: F,
    inputs: &[Tensor],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport, GradcheckError>
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    if !objective(&f, inputs, opts.seed).is_finite() {
        return Err(GradcheckError::NonFinite { input: 0, what: "function value" });
    }
    let analytic = analytic_gradients(&f, inputs, opts);
    let numeric = numeric_gradients(&f, inputs, opts);
    let max_error_ratio = compare(&analytic, &numeric, opts)?;
    let checked = inputs.iter().map(Tensor::len).sum();
    let NumericGradients { values, noise } = numeric;
    Ok(GradcheckReport { max_error_ratio, checked, analytic, numeric: values, noise })
}

/// A function of the inputs as [`gradcheck`] takes them.
pub type InputFn = Box<dyn for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>>;

/// The recorded gradient of `L = Σ rᵢ fᵢ(inputs)` (weights `r` from `seed`) with respect to
/// every input, flattened and concatenated into one vector. Its own gradient holds the second
/// derivatives of `f`, so `gradcheck(gradient_of(f, s), ..)` checks every recorded rule `f`
/// uses against finite differences of its gradient.
pub fn gradient_of<F>(f: F, seed: u64) -> InputFn
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t> + 'static,
{
    Box::new(move |tape: &Tape, vars: &[Var<'_>]| {
        let y = f(tape, vars);
        let r = tape.constant(weights(&y.shape(), seed));
        let grads = tape.grad_graph((y * r).sum_all(), vars);
        let flat: Vec<Var<'_>> =
            grads.iter().map(|g| g.reshape(&[g.shape().iter().product()])).collect();
        Var::concat(&flat, 0)
    })
}

/// Checks the derivatives of order `order` (1, 2, 3, ...) of `f` at `inputs`: order 1 is
/// [`gradcheck`]; order k checks the backward pass of `f`'s recorded (k−1)-th derivative
/// against finite differences of its values. Each level projects with weights of its own.
///
/// # Errors
/// As [`gradcheck`], for the innermost function that disagrees.
///
/// # Panics
/// If `order` is 0.
pub fn gradcheck_order<F>(
    f: F,
    inputs: &[Tensor],
    order: usize,
    opts: &GradcheckOptions,
) -> Result<GradcheckReport, GradcheckError>
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t> + 'static,
{
    assert!(order >= 1, "derivative order must be at least 1");
    let mut func: InputFn = Box::new(f);
    for level in 1..order {
        func = gradient_of(func, opts.seed.wrapping_add(level as u64));
    }
    gradcheck(func, inputs, opts)
}
