//! Nash-MTL (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game"): the tasks
//! bargain over the update `d` of the shared parameters, each valuing it by `⟨g_t, d⟩`. The
//! Nash bargaining solution maximises `Σ_t log⟨g_t, d⟩` over a ball `‖d‖ ≤ ε`; at its optimum
//! `Σ_t g_t / ⟨g_t, d⟩ = μ d`, so `d = Σ_t α_t g_t` with `⟨g_t, d⟩ = (Gα)_t ∝ 1/α_t`. Dropping
//! the scale (the learning rate takes it), the weights are the α > 0 with
//!
//! ```text
//! Gα = 1/α   (elementwise),   i.e.   α_t (Gα)_t = 1 for every t,
//! ```
//!
//! `G` the `T × T` Gram of the per-task gradients on the shared parameters. Then
//! `‖d‖² = αᵀGα = Σ_t α_t (Gα)_t = T` whatever the gradients' scale: gradients `s` times larger
//! give `α(s²G) = α(G)/s` and the same `d`.
//!
//! **A convex problem.** `Gα = 1/α` is the stationarity condition of
//!
//! ```text
//! f(α) = ½ αᵀGα − Σ_t log α_t   on α > 0,    ∇f = Gα − 1/α,    ∇²f = G + diag(1/α²) ≻ 0,
//! ```
//!
//! so the bargaining solution is the unique minimiser of a strictly convex function, when one
//! exists. It exists exactly when no `u ≥ 0`, `u ≠ 0`, has `Gu = 0`, that is when no
//! non-negative combination of the gradients vanishes (0 is not in their convex hull: MGDA's
//! min-norm is positive). Otherwise `f → −∞` along `α + su` and `Gα = 1/α` has no solution: a
//! zero gradient, two opposite gradients, any set of gradients that cancel with positive
//! weights (a Pareto-stationary point).
//!
//! **Solver.** Damped Newton on `f`, written in the coordinates scaled by the iterate
//! (`α ← α ⊙ (1 + τΔ)`): with `M = diag(α) G diag(α)` and `r = M1 − 1` (so
//! `r_t = α_t (Gα)_t − 1`), the step solves `(I + M) Δ = −r` (Cholesky; `I + M` has every
//! eigenvalue ≥ 1), and `λ² = −rᵀΔ` is Newton's decrement. While `λ² > 0.01` the step length τ
//! halves from 1 until `1 + τΔ > 0` and `f` falls by at least `¼ τ λ²` (Armijo); below, the full
//! step is taken (`f` is self-concordant, so it stays inside `α > 0` and converges
//! quadratically). `G` is first divided by the power of 4 nearest `tr G / T` and the weights by
//! its square root afterwards — exact, so the iteration is the same at every scale — and it
//! starts at the best multiple of `1/√diag(G)` (exact for orthogonal gradients). It stops once
//! every `|r_t|` is at most 1e-14 or its rounding level `8 T ε κ_t`, with
//! `κ_t = Σ_s |α_t G_ts α_s| ≥ 1` the size of the terms that sum to `1 + r_t` (ε the machine
//! epsilon), or once it stalls below [`NASH_TOLERANCE`] (1e-10), or after
//! [`NASH_MAX_ITERATIONS`]. A solution is accepted if every `|r_t|` is within 1e-10 or its
//! rounding level and the cancellation `κ = max_t κ_t` is at most [`NASH_MAX_CANCELLATION`]
//! (1e8): beyond that the equations keep fewer than eight digits and the solution is no better
//! determined than `G` perturbed at 1e-8 of its size.
//!
//! **No solution: a ridge.** On an unbounded problem the decrement never falls below 1 (`f` is
//! self-concordant), the iterate runs off along the cancelling combination, and the rounding
//! level of its equations reaches 1 after some 25 steps, with κ near 1e14: not accepted. Then,
//! and likewise for a solution cancelling beyond 1e8, the weights are those of `G + εI`,
//! `ε = 1e-8 · tr G / T` ([`NASH_RIDGE`], the size of perturbation below which the cap calls the
//! solution undetermined), which always has a solution, with `‖α‖² ≤ T/ε`: as if each task's
//! gradient had a private component of squared norm ε. A zero gradient (a zero diagonal entry)
//! goes to the ridge at once; its task gets the weight `1/√ε`, about 10⁴√T times the others', so
//! its head's gradient is scaled alike. All-zero gradients (`tr G = 0`) leave no scale for a
//! ridge: the weights are 1 (the shared update is zero whatever they are). Which case applied is
//! reported (`nash.fallback`: 0 exact, 1 ridge, 2 all-zero), with the residual and the
//! iterations.
//!
//! The weights weigh the task losses, heads included, as in the authors' code. Their trainer
//! also clips the shared parameters' gradient to norm 1 (`max_norm`); that is the trainer's
//! business, not the weighting's. Their other options are not needed here: `optim_niter` (20
//! rounds of a convex approximation solved by cvxpy) gives way to the exact solve, and
//! `update_weights_every` (1 by default, which the authors advise keeping) would save only this
//! `T × T` solve, since the step computes the per-task gradients anyway. Cost: MGDA's per-task
//! gradients and their Gram, then `O(T³)` per Newton iteration, typically under ten.

use nalgebra::{DMatrix, DVector};

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};
use crate::min_norm::validated_symmetric;

/// The residual `max_t |α_t (Gα)_t − 1|` at or below which a solve counts as converged (or
/// below the rounding level, see [`NASH_MAX_CANCELLATION`]).
pub const NASH_TOLERANCE: f64 = 1e-10;
/// The largest cancellation `κ = max_t Σ_s |α_t G_ts α_s|` of an accepted solution. The terms of
/// `α_t (Gα)_t = 1` are then at most 1e8 times the result, so rounding leaves it at least eight
/// digits; a solution with more cancellation is no better determined than a perturbation of
/// `G` at 1e-8 of its size, and the ridge (of that size) takes over.
pub const NASH_MAX_CANCELLATION: f64 = 1e8;
/// The most Newton iterations of one solve (with or without the ridge).
pub const NASH_MAX_ITERATIONS: usize = 100;
/// The ridge added to the Gram when `Gα = 1/α` has no solution, relative to `tr G / T`.
pub const NASH_RIDGE: f64 = 1e-8;

/// The residual at which Newton stops at once (unless rounding is above it).
const STOP: f64 = 1e-14;
/// Below this decrement², full Newton steps.
const FULL_STEP: f64 = 0.01;
/// Iterates beyond this (in units of `1/√(tr G / T)`) are running off to infinity.
const RUNAWAY: f64 = 1e150;

/// How the weights of a solve were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NashFallback {
    /// `Gα = 1/α` was solved on the Gram itself.
    None,
    /// It has no solution on the Gram (or none that rounding leaves determined, or Newton did
    /// not reach it): solved on `G + εI`, `ε = NASH_RIDGE · tr G / T`.
    Ridge,
    /// Every gradient is zero: weights 1.
    ZeroGradients,
}

impl NashFallback {
    /// The code reported as `nash.fallback`: 0, 1, 2.
    pub fn code(self) -> f64 {
        match self {
            NashFallback::None => 0.0,
            NashFallback::Ridge => 1.0,
            NashFallback::ZeroGradients => 2.0,
        }
    }
}

/// The answer of [`NashMtl::weights_from_gram`].
#[derive(Debug, Clone, PartialEq)]
pub struct NashSolution {
    /// The weights α > 0.
    pub weights: Vec<f64>,
    /// `max_t |α_t (Hα)_t − 1|` on the matrix solved, `H = G` or `G + εI` (0 for all-zero
    /// gradients). At most [`NASH_TOLERANCE`], or the rounding level `8 T ε κ` (ε the machine
    /// epsilon) where that is larger.
    pub residual: f64,
    /// `κ = max_t Σ_s |α_t H_ts α_s|` ≥ 1: how much the terms of the equations cancel (1 when
    /// the gradients are orthogonal; large near a point where 0 is in their convex hull).
    pub cancellation: f64,
    /// Newton iterations, over both solves when the ridge was needed.
    pub iterations: usize,
    /// Whether the Gram was solved as given.
    pub fallback: NashFallback,
}

/// Nash-MTL on the shared parameters' gradients.
#[derive(Debug, Clone, Copy, Default)]
pub struct NashMtl;

impl NashMtl {
    /// The bargaining weights for the `T × T` Gram matrix `gram` (row-major): the α > 0 with
    /// `α_t (Gα)_t = 1`, or those of the ridged Gram where that has no solution (see the module
    /// documentation).
    ///
    /// # Errors
    /// [`WeightingError::MinNorm`] if `gram` is not a finite symmetric `t × t` matrix with a
    /// non-negative diagonal; [`WeightingError::Invalid`] if even the ridged solve fails (which
    /// the ridge's bound on α rules out short of rounding trouble).
    pub fn weights_from_gram(gram: &[f64], t: usize) -> Result<NashSolution, WeightingError> {
        let sym = validated_symmetric(gram, t)?;
        let mean = (0..t).map(|i| sym[i * t + i]).sum::<f64>() / t as f64;
        if mean <= 0.0 {
            return Ok(NashSolution {
                weights: vec![1.0; t],
                residual: 0.0,
                cancellation: 1.0,
                iterations: 0,
                fallback: NashFallback::ZeroGradients,
            });
        }
        // Divide by a power of 4 near the mean squared norm: exact, so the scaled problem is the
        // same problem, and α(4^k G) = α(G) / 2^k to the last bit.
        let half_log = (mean.log2() / 2.0).round() as i32;
        let (scale, root) = (2f64.powi(2 * half_log), 2f64.powi(half_log));
        let unit: Vec<f64> = sym.iter().map(|&g| g / scale).collect();
        let mut iterations = 0;
        if (0..t).all(|i| unit[i * t + i] > 0.0) {
            let solve = newton(&unit, t, NASH_MAX_CANCELLATION);
            iterations += solve.iterations;
            if solve.converged {
                return Ok(NashSolution {
                    weights: solve.alpha.iter().map(|a| a / root).collect(),
                    residual: solve.residual,
                    cancellation: solve.cancellation,
                    iterations,
                    fallback: NashFallback::None,
                });
            }
        }
        let ridge = NASH_RIDGE * mean / scale;
        let mut ridged = unit;
        (0..t).for_each(|i| ridged[i * t + i] += ridge);
        // The ridge bounds α (‖α‖² ≤ T/ε), so its solution's cancellation needs no cap.
        let solve = newton(&ridged, t, f64::INFINITY);
        iterations += solve.iterations;
        if !solve.converged {
            return Err(WeightingError::Invalid {
                method: "nash-mtl",
                message: format!(
                    "the ridged bargaining system did not converge (residual {:e} after {} iterations)",
                    solve.residual, solve.iterations
                ),
            });
        }
        Ok(NashSolution {
            weights: solve.alpha.iter().map(|a| a / root).collect(),
            residual: solve.residual,
            cancellation: solve.cancellation,
            iterations,
            fallback: NashFallback::Ridge,
        })
    }
}

/// One Newton solve: the last iterate and how good it is.
struct Newton {
    alpha: Vec<f64>,
    residual: f64,
    cancellation: f64,
    converged: bool,
    iterations: usize,
}

/// The state at an iterate: `M = diag(α) G diag(α)`, `r = M1 − 1`, the residual `max |r_t|`,
/// the cancellation κ, and whether every `|r_t|` is within 1e-14 (`done`) or within
/// [`NASH_TOLERANCE`] (`accepted`), or within its rounding level `8 T ε Σ_s |M_ts|` if larger.
struct Iterate {
    m: DMatrix<f64>,
    r: DVector<f64>,
    residual: f64,
    cancellation: f64,
    done: bool,
    accepted: bool,
}

fn iterate(gram: &[f64], t: usize, alpha: &[f64], max_cancellation: f64) -> Iterate {
    let m = DMatrix::from_fn(t, t, |i, j| alpha[i] * gram[i * t + j] * alpha[j]);
    let r = DVector::from_fn(t, |i, _| m.row(i).sum() - 1.0);
    let sizes: Vec<f64> = (0..t).map(|i| m.row(i).iter().map(|v| v.abs()).sum()).collect();
    let rounding = 8.0 * t as f64 * f64::EPSILON;
    let within = |tol: f64| (0..t).all(|i| r[i].abs() <= tol.max(rounding * sizes[i]));
    let residual = r.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let cancellation = sizes.iter().fold(1.0f64, |a, &v| a.max(v));
    let finite = residual.is_finite() && cancellation.is_finite();
    Iterate {
        residual: if finite { residual } else { f64::INFINITY },
        cancellation: if finite { cancellation } else { f64::INFINITY },
        done: finite && within(STOP),
        accepted: finite && within(NASH_TOLERANCE) && cancellation <= max_cancellation,
        m,
        r,
    }
}

/// Damped Newton on `½ αᵀGα − Σ log α` for a Gram with a positive diagonal, scaled so that its
/// mean diagonal entry is near 1; a solution counts if its cancellation is at most
/// `max_cancellation`.
fn newton(gram: &[f64], t: usize, max_cancellation: f64) -> Newton {
    let mut alpha: Vec<f64> = (0..t).map(|i| 1.0 / gram[i * t + i].sqrt()).collect();
    let quad: f64 = (0..t)
        .flat_map(|i| (0..t).map(move |j| (i, j)))
        .map(|(i, j)| alpha[i] * gram[i * t + j] * alpha[j])
        .sum();
    if quad > 0.0 && quad.is_finite() {
        let best = (t as f64 / quad).sqrt();
        alpha.iter_mut().for_each(|a| *a *= best);
    }
    let mut last = f64::INFINITY;
    let mut iterations = 0;
    let state = loop {
        let state = iterate(gram, t, &alpha, max_cancellation);
        // Done, or accepted and no longer improving (rounding), or out of iterations.
        let stalled = state.accepted && state.residual > 0.5 * last;
        if state.done || stalled || iterations == NASH_MAX_ITERATIONS {
            break state;
        }
        last = state.residual;
        let Some(chol) = (DMatrix::identity(t, t) + &state.m).cholesky() else { break state };
        let delta = chol.solve(&(-&state.r));
        let decrement = -state.r.dot(&delta);
        if decrement.is_nan() || decrement <= 1e-30 {
            break state;
        }
        let step = if decrement <= FULL_STEP {
            1.0
        } else {
            match line_search(&state.m, &state.r, &delta, decrement) {
                Some(step) => step,
                None => break state,
            }
        };
        for (a, d) in alpha.iter_mut().zip(delta.iter()) {
            *a *= 1.0 + step * d;
        }
        iterations += 1;
        if alpha.iter().any(|a| !(a.is_finite() && *a > 0.0 && *a < RUNAWAY)) {
            break Iterate { accepted: false, ..iterate(gram, t, &alpha, max_cancellation) };
        }
    };
    Newton {
        alpha,
        residual: state.residual,
        cancellation: state.cancellation,
        converged: state.accepted,
        iterations,
    }
}

/// The backtracking step length τ: halved from 1 until `α ⊙ (1 + τΔ) > 0` and
/// `f(α ⊙ (1 + τΔ)) − f(α) ≤ −¼ τ λ²`. The change of `f` is computed from the scaled terms,
/// `τ rᵀΔ + ½ τ² ΔᵀMΔ + Σ_t (τΔ_t − log(1 + τΔ_t))`, without subtracting two values of `f`.
fn line_search(
    m: &DMatrix<f64>,
    r: &DVector<f64>,
    delta: &DVector<f64>,
    decrement: f64,
) -> Option<f64> {
    let linear = r.dot(delta);
    let curvature = delta.dot(&(m * delta));
    let mut step = 1.0;
    for _ in 0..60 {
        if delta.iter().all(|d| 1.0 + step * d > 0.0) {
            let barrier: f64 = delta.iter().map(|d| step * d - (step * d).ln_1p()).sum();
            let change = step * linear + 0.5 * step * step * curvature + barrier;
            if change <= -0.25 * step * decrement {
                return Some(step);
            }
        }
        step *= 0.5;
    }
    None
}

impl Weighting for NashMtl {
    fn name(&self) -> &'static str {
        "nash-mtl"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("nash-mtl", input.losses)?;
        let gram = input.shared_gram("nash-mtl")?;
        let solution = Self::weights_from_gram(gram, input.losses.len())?;
        Ok(StepWeights {
            weights: solution.weights,
            diagnostics: vec![
                ("nash.residual".into(), vec![solution.residual]),
                ("nash.iterations".into(), vec![solution.iterations as f64]),
                ("nash.fallback".into(), vec![solution.fallback.code()]),
            ],
            ..Default::default()
        })
    }
}
