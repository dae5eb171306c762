//! CAGrad (Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent for Multi-task
//! Learning"): the update `d` within a ball around the mean gradient `g_0 = Σ_t g_t / T` that
//! maximises the worst task's improvement, `max_{‖d − g_0‖ ≤ √φ} min_t ⟨g_t, d⟩`, with
//! `√φ = c ‖g_0‖`. Its dual is a problem on the simplex,
//!
//! ```text
//! w = argmin_{w ∈ simplex} f(w),   f(w) = g_wᵀ g_0 + √φ ‖g_w‖ = wᵀ G 1/T + √φ √(wᵀ G w)
//! d = g_0 + λ g_w,                 λ = √φ / ‖g_w‖
//! ```
//!
//! with `g_w = Σ_t w_t g_t`, so `d = Σ_t α_t g_t` with `α_t = 1/T + λ w_t`, and everything is
//! an inner product, so the method runs on the `T × T` Gram matrix alone. As in LibMTL (its
//! default `rescale = 1`, also the authors' code), `d` is divided by `1 + c²`, so the
//! coefficients are `α_t / (1 + c²)`; c = 0 gives `1/T` (equal weights' mean). `d` is the
//! shared parameters' update ([`Direction::Combination`], the coefficients also logged as
//! `cagrad.alpha`); the heads, which only their own task reaches, get their task's gradient
//! with weight 1, as in the paper's algorithm (which only changes the shared update) and LibMTL.
//!
//! **The inner problem is solved exactly**, by an active-set method in the manner of Wolfe's
//! nearest-point algorithm (`min_norm`), on supports `S` of affinely independent gradients.
//! On the affine hull of `g_S` write `x = x_⊥ + z` with `x_⊥` its point closest to the origin
//! (`ρ = ‖x_⊥‖`) and `z` in its direction space `L`, and `γ = ‖P_L g_0‖`. Then
//! `f = ⟨x_⊥, g_0⟩ + ⟨z, P_L g_0⟩ + √φ √(ρ² + ‖z‖²)`, minimised at
//!
//! ```text
//! z = −μ P_L g_0,   μ = ρ / √(φ − γ²)    (if γ² < φ; else f falls without bound along −P_L g_0)
//! ```
//!
//! where `‖x‖ = √φ μ`, so `λ = 1/μ`. Both `x_⊥` and `P_L g_0` are two small linear solves with
//! the Gram of the differences `g_s − g_b` (Cholesky). A major cycle adds the task with the
//! smallest `⟨g_t, d⟩` while that is below `ν = f(w)` (the KKT condition: `⟨g_t, d⟩ ≥ ν` for
//! every t, with equality on the support); minor cycles walk towards the affine minimiser (or
//! along the unbounded direction) and drop the first weight that reaches zero. `f` falls
//! strictly from one major cycle to the next, so no support repeats.
//!
//! The one non-smooth point is `g_w = 0` (the origin in the hull): `f(0) = 0` and every `d` in
//! the ball with `⟨g_t, d⟩ ≥ 0` for all t certifies it. The closest such `d` to `g_0` is
//! `g_0 + Σ_t β_t g_t` with `β = argmin_{β ≥ 0} ‖g_0 + Σ_t β_t g_t‖` (a non-negative least
//! squares on the Gram, Lawson–Hanson): if `‖Σ β_t g_t‖ ≤ √φ` the origin is optimal and
//! `α = 1/T + β`; otherwise the point `Σ β_t g_t / Σ β_t` has `f < 0` and the active set starts
//! again from it. A zero gradient, or opposite ones, lead there.
//!
//! Cost: the per-task gradients and their Gram (as MGDA), and `O(T³)` per cycle on the Gram.

use super::{check_losses, Direction, Needs, StepInput, StepWeights, Weighting, WeightingError};
use crate::min_norm::validated_symmetric;

/// Adding a task needs `ν − ⟨g_t, d⟩` above this times `(‖g_t‖ + ‖g_w‖) ‖d‖` (the size of
/// the rounding in it).
const ENTER_TOL: f64 = 1e-12;
/// A Cholesky pivot at most this times the size of its entry counts as zero (the support is
/// affinely dependent up to rounding), as in the min-norm active set.
const DEPENDENCE_TOL: f64 = 1e-14;
/// `ρ²` at most this times the largest squared norm on the support puts the origin in the
/// affine hull.
const ORIGIN_TOL: f64 = 1e-14;

/// CAGrad on the shared parameters' gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaGrad {
    /// The radius of the ball around the mean gradient, relative to its norm (`c ≥ 0`;
    /// LibMTL: 0.5).
    pub c: f64,
}

impl Default for CaGrad {
    fn default() -> Self {
        CaGrad { c: 0.5 }
    }
}

/// The answer of CAGrad's inner problem.
#[derive(Debug, Clone, PartialEq)]
pub struct CaGradSolution {
    /// `α_t = 1/T + λ w_t` (before the `1/(1 + c²)` rescale): `d = Σ_t α_t g_t`.
    pub alpha: Vec<f64>,
    /// The minimiser `w` on the simplex.
    pub inner: Vec<f64>,
    /// `λ = √φ / ‖g_w‖`, or `None` where the minimiser is `g_w = 0` (then `α = 1/T + β`) or
    /// `√φ = 0` (c = 0 or `g_0 = 0`: then `α = 1/T`).
    pub lambda: Option<f64>,
    /// The optimality (KKT) residual, dimensionless: the largest of the dual violation
    /// `max(ν − ⟨g_t, d⟩, 0)`, the complementarity gap `w_t |⟨g_t, d⟩ − ν|` (each over
    /// `(‖g_t‖ + ‖g_w‖) ‖d‖`), and how far `‖d − g_0‖` is from `√φ` (over `√φ`; at the origin,
    /// how far it exceeds it). Near 1e-16 is rounding.
    pub kkt_residual: f64,
    /// Major and minor cycles spent.
    pub iterations: usize,
}

impl CaGrad {
    /// The loss weights `α_t / (1 + c²)` for the `T × T` Gram matrix `gram` (row-major).
    ///
    /// # Errors
    /// As [`CaGrad::solve`].
    pub fn weights_from_gram(gram: &[f64], t: usize, c: f64) -> Result<Vec<f64>, WeightingError> {
        let rescale = 1.0 + c * c;
        Ok(Self::solve(gram, t, c)?.alpha.into_iter().map(|a| a / rescale).collect())
    }

    /// Solves the inner problem exactly for the Gram matrix `gram` (`t × t`, row-major) and
    /// radius `c`; see the module docs.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if `c` is negative or not finite; [`WeightingError::MinNorm`]
    /// if `gram` is not a Gram matrix (the checks of
    /// [`min_norm_weights_with`](crate::min_norm::min_norm_weights_with)).
    pub fn solve(gram: &[f64], t: usize, c: f64) -> Result<CaGradSolution, WeightingError> {
        if c.is_nan() || c < 0.0 || c.is_infinite() {
            return Err(WeightingError::Invalid {
                method: "cagrad",
                message: format!("c must be finite and >= 0, got {c}"),
            });
        }
        let sym = validated_symmetric(gram, t)?;
        let scale = (0..t).map(|i| sym[i * t + i]).fold(0.0_f64, f64::max);
        let mean = vec![1.0 / t as f64; t];
        if scale == 0.0 {
            return Ok(CaGradSolution {
                alpha: mean.clone(),
                inner: mean,
                lambda: None,
                kkt_residual: 0.0,
                iterations: 0,
            });
        }
        let gram: Vec<f64> = sym.iter().map(|&x| x / scale).collect();
        let p = Problem::new(&gram, t, c);
        if p.radius == 0.0 {
            // g_0 = 0 or c = 0: d = g_0 whatever w is; report the minimiser of the linear part.
            let best = (0..t).min_by(|&i, &j| p.b[i].total_cmp(&p.b[j])).unwrap_or(0);
            return Ok(CaGradSolution {
                alpha: mean,
                inner: vertex(best, t),
                lambda: None,
                kkt_residual: 0.0,
                iterations: 0,
            });
        }
        Ok(p.solve())
    }
}

impl Weighting for CaGrad {
    fn name(&self) -> &'static str {
        "cagrad"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("cagrad", input.losses)?;
        let gram = input.shared_gram("cagrad")?;
        let solution = Self::solve(gram, input.losses.len(), self.c)?;
        let rescale = 1.0 + self.c * self.c;
        let alpha: Vec<f64> = solution.alpha.iter().map(|a| a / rescale).collect();
        Ok(StepWeights {
            weights: vec![1.0; alpha.len()],
            direction: Some(Direction::Combination(alpha.clone())),
            diagnostics: vec![
                ("cagrad.alpha".into(), alpha),
                ("cagrad.inner_weights".into(), solution.inner),
                ("cagrad.kkt_residual".into(), vec![solution.kkt_residual]),
            ],
        })
    }
}

fn vertex(index: usize, t: usize) -> Vec<f64> {
    let mut w = vec![0.0; t];
    w[index] = 1.0;
    w
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The inner problem on a Gram matrix scaled so its largest diagonal entry is 1.
struct Problem<'a> {
    gram: &'a [f64],
    t: usize,
    /// `b_t = ⟨g_t, g_0⟩ = (G 1/T)_t`.
    b: Vec<f64>,
    /// `‖g_0‖`.
    mean_norm: f64,
    /// `√φ = c ‖g_0‖`.
    radius: f64,
    /// `‖g_t‖`.
    norms: Vec<f64>,
}

/// The minimiser of `f` on the affine hull of a support, or the direction in which `f` falls
/// without bound there.
enum Affine {
    /// Coefficients on the support (summing to 1) and `λ = √φ/‖x‖`, `None` at the origin.
    Minimiser(Vec<f64>, Option<f64>),
    /// Zero-sum coefficients `v`: `f` falls without bound along `−Σ v_s g_s`.
    Unbounded(Vec<f64>),
}

impl<'a> Problem<'a> {
    fn new(gram: &'a [f64], t: usize, c: f64) -> Self {
        let mean = vec![1.0 / t as f64; t];
        let b = Self::times_of(gram, t, &mean);
        let mean_norm = dot(&mean, &b).max(0.0).sqrt();
        let norms = (0..t).map(|i| gram[i * t + i].sqrt()).collect();
        Problem { gram, t, b, mean_norm, radius: c * mean_norm, norms }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.gram[i * self.t + j]
    }

    fn times_of(gram: &[f64], t: usize, v: &[f64]) -> Vec<f64> {
        (0..t).map(|i| dot(&gram[i * t..(i + 1) * t], v)).collect()
    }

    /// `G v`.
    fn times(&self, v: &[f64]) -> Vec<f64> {
        Self::times_of(self.gram, self.t, v)
    }

    /// `f(w)`.
    fn value(&self, w: &[f64]) -> f64 {
        dot(&self.b, w) + self.radius * dot(w, &self.times(w)).max(0.0).sqrt()
    }

    fn solve(&self) -> CaGradSolution {
        let t = self.t;
        // Start at the best vertex (a single point is never affinely dependent).
        let first = (0..t)
            .min_by(|&i, &j| {
                (self.b[i] + self.radius * self.norms[i])
                    .total_cmp(&(self.b[j] + self.radius * self.norms[j]))
            })
            .unwrap_or(0);
        let mut support = vec![first];
        let mut w = vertex(first, t);
        let mut iterations = 0;
        let mut lambda = self.minor_cycles(&mut support, &mut w, &mut iterations).unwrap_or(None);
        let mut restarted = false;
        for _ in 0..50 * t + 100 {
            let Some(l) = lambda else {
                // At the origin: certified by the non-negative least squares, or left for the
                // point it gives, where f < 0 (once; after that rounding has the last word).
                let beta = self.nnls(&mut iterations);
                let spread = dot(&beta, &self.times(&beta)).max(0.0).sqrt();
                if spread <= self.radius || restarted {
                    return self.finish(w, None, &beta, iterations);
                }
                restarted = true;
                let total: f64 = beta.iter().sum();
                let mut start: Vec<f64> = beta.iter().map(|b| b / total).collect();
                let mut from: Vec<usize> = (0..t).filter(|&s| start[s] > 0.0).collect();
                match self.minor_cycles(&mut from, &mut start, &mut iterations) {
                    Ok(l) => (support, w, lambda) = (from, start, l),
                    Err(Dependent) => return self.finish(w, None, &beta, iterations),
                }
                continue;
            };
            let alpha = self.alpha(&w, l);
            let grad = self.times(&alpha);
            let nu = dot(&w, &grad);
            let size = self.sizes(&w, &alpha);
            let entering = (0..t)
                .filter(|s| !support.contains(s))
                .map(|s| (s, (nu - grad[s]) / size[s]))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((entering, violation)) = entering else { break };
            if violation.is_nan() || violation <= ENTER_TOL {
                break;
            }
            let before = self.value(&w);
            let (mut grown, mut moved) = (support.clone(), w.clone());
            grown.push(entering);
            match self.minor_cycles(&mut grown, &mut moved, &mut iterations) {
                Ok(l) if self.value(&moved) < before => (support, w, lambda) = (grown, moved, l),
                // No progress (rounding), or an affinely dependent support: keep the last point.
                _ => break,
            }
        }
        match lambda {
            Some(l) => {
                let alpha = self.alpha(&w, l);
                self.finish(w, Some(l), &alpha, iterations)
            }
            None => {
                let beta = self.nnls(&mut iterations);
                self.finish(w, None, &beta, iterations)
            }
        }
    }

    /// `1/T + λ w`.
    fn alpha(&self, w: &[f64], lambda: f64) -> Vec<f64> {
        w.iter().map(|&ws| 1.0 / self.t as f64 + lambda * ws).collect()
    }

    /// `(‖g_t‖ + ‖g_w‖) (‖g_0‖ + √φ + T ε Σ_s |α_s| ‖g_s‖)` for `d = Σ α_t g_t`: bounds
    /// `|⟨g_t, d⟩| + |ν|` (`‖d‖ ≤ ‖g_0‖ + √φ` in the ball) and the rounding in `(G α)_t`, so
    /// comparisons with it do not depend on the scale, even where `d` vanishes.
    fn sizes(&self, w: &[f64], alpha: &[f64]) -> Vec<f64> {
        let r = dot(w, &self.times(w)).max(0.0).sqrt();
        self.norms.iter().map(|&n| (n + r) * self.rounding_norm(alpha)).collect()
    }

    /// `‖g_0‖ + √φ + T ε Σ_s |α_s| ‖g_s‖` (never 0: `√φ > 0` here).
    fn rounding_norm(&self, alpha: &[f64]) -> f64 {
        let spread: f64 = alpha.iter().zip(&self.norms).map(|(a, n)| a.abs() * n).sum();
        self.mean_norm + self.radius + self.t as f64 * f64::EPSILON * spread
    }

    /// Minor cycles from a feasible `w` on `support`: walk to the affine minimiser if its
    /// coefficients are non-negative, else towards it (or along the unbounded direction) until
    /// a weight reaches zero, drop that task and repeat. Returns `λ` at the minimiser, `None`
    /// at the origin, or `Err(Dependent)` if the support is affinely dependent up to rounding.
    fn minor_cycles(
        &self,
        support: &mut Vec<usize>,
        w: &mut [f64],
        iterations: &mut usize,
    ) -> Result<Option<f64>, Dependent> {
        loop {
            *iterations += 1;
            let (target, unbounded) = match self.affine(support).ok_or(Dependent)? {
                Affine::Minimiser(z, l) if z.iter().all(|&m| m >= 0.0) => {
                    for (&s, &m) in support.iter().zip(&z) {
                        w[s] = m;
                    }
                    support.retain(|&s| w[s] > 0.0);
                    return Ok(l);
                }
                Affine::Minimiser(z, _) => (z, false),
                Affine::Unbounded(v) => (v, true),
            };
            // Along the segment to `target` (some coefficient is negative), or along −target
            // (zero-sum, so some coefficient is positive), to the first weight that reaches 0.
            let (mut step, mut leaving) = (f64::INFINITY, 0);
            for (k, (&s, &m)) in support.iter().zip(&target).enumerate() {
                let rate = if unbounded { m } else { w[s] - m };
                if (unbounded && m > 0.0) || (!unbounded && m < 0.0) {
                    let ratio = w[s] / rate;
                    if ratio < step {
                        (step, leaving) = (ratio, k);
                    }
                }
            }
            if !step.is_finite() {
                return Err(Dependent);
            }
            for (&s, &m) in support.iter().zip(&target) {
                w[s] = if unbounded { w[s] - step * m } else { (1.0 - step) * w[s] + step * m };
            }
            w[support[leaving]] = 0.0;
            support.retain(|&s| w[s] > 0.0);
            for (s, ws) in w.iter_mut().enumerate() {
                if !support.contains(&s) {
                    *ws = 0.0;
                }
            }
            let total: f64 = support.iter().map(|&s| w[s]).sum();
            support.iter().for_each(|&s| w[s] /= total);
        }
    }

    /// The minimiser of `f` on the affine hull of `support` (module docs), or `None` if the
    /// support is affinely dependent up to rounding.
    ///
    /// With base `b` (the shortest member), directions `D = [g_i − g_b]` and `K = DᵀD`:
    /// `x_⊥ = g_b + D c_⊥` with `K c_⊥ = −Dᵀ g_b`, `ρ² = ‖g_b‖² + (Dᵀ g_b)ᵀ c_⊥`, and
    /// `P_L g_0 = D c_0` with `K c_0 = Dᵀ g_0`, `γ² = (Dᵀ g_0)ᵀ c_0`.
    fn affine(&self, support: &[usize]) -> Option<Affine> {
        let base_pos = (0..support.len()).min_by(|&i, &j| {
            self.at(support[i], support[i]).total_cmp(&self.at(support[j], support[j]))
        })?;
        let base = support[base_pos];
        let others: Vec<usize> = support.iter().copied().filter(|&s| s != base).collect();
        let bb = self.at(base, base);
        let chol = Cholesky::new(others.len(), |i, j| {
            let (oi, oj) = (others[i], others[j]);
            let value = self.at(oi, oj) - self.at(oi, base) - self.at(base, oj) + bb;
            (value, value.abs() + self.at(oi, oi) + bb)
        })?;
        let to_base: Vec<f64> = others.iter().map(|&o| bb - self.at(o, base)).collect();
        let to_mean: Vec<f64> = others.iter().map(|&o| self.b[o] - self.b[base]).collect();
        let c_perp = chol.solve(&to_base);
        let c_mean = chol.solve(&to_mean);
        let rho_sq = (bb - dot(&to_base, &c_perp)).max(0.0);
        let gamma_sq = dot(&to_mean, &c_mean).max(0.0);
        // Coefficients on `support` of a combination `g_b + D c` (affine) or `D c` (zero-sum).
        let spread = |c: &[f64], base_weight: f64| -> Vec<f64> {
            let mut rest = c.iter();
            support
                .iter()
                .map(|&s| if s == base { base_weight } else { *rest.next().unwrap_or(&f64::NAN) })
                .collect()
        };
        let perp = spread(&c_perp, 1.0 - c_perp.iter().sum::<f64>());
        let along = spread(&c_mean, -c_mean.iter().sum::<f64>());
        let phi = self.radius * self.radius;
        if gamma_sq >= phi {
            return Some(Affine::Unbounded(along));
        }
        let largest = support.iter().map(|&s| self.at(s, s)).fold(0.0_f64, f64::max);
        if rho_sq <= ORIGIN_TOL * largest {
            return Some(Affine::Minimiser(perp, None));
        }
        let mu = rho_sq.sqrt() / (phi - gamma_sq).sqrt();
        let z: Vec<f64> = perp.iter().zip(&along).map(|(p, v)| p - mu * v).collect();
        z.iter().all(|v| v.is_finite()).then_some(Affine::Minimiser(z, Some(1.0 / mu)))
    }

    /// Lawson–Hanson on the Gram: `β = argmin_{β ≥ 0} ‖g_0 + Σ_t β_t g_t‖²`, that is
    /// `min 2 bᵀβ + βᵀ G β`; its gradient is `2 ⟨g_t, d⟩` with `d = g_0 + Σ β_t g_t`.
    fn nnls(&self, iterations: &mut usize) -> Vec<f64> {
        let t = self.t;
        let mut beta = vec![0.0; t];
        let mut passive: Vec<usize> = Vec::new();
        for _ in 0..3 * t + 10 {
            let d_coef: Vec<f64> = beta.iter().map(|b| b + 1.0 / t as f64).collect();
            let grad = self.times(&d_coef);
            let d_norm = self.rounding_norm(&d_coef);
            let entering = (0..t)
                .filter(|s| !passive.contains(s))
                .map(|s| (s, -grad[s] / (self.norms[s] * d_norm)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((entering, violation)) = entering else { break };
            if violation.is_nan() || violation <= ENTER_TOL {
                break;
            }
            passive.push(entering);
            loop {
                *iterations += 1;
                let chol = Cholesky::new(passive.len(), |i, j| {
                    let value = self.at(passive[i], passive[j]);
                    (value, self.at(passive[i], passive[i]) + self.at(passive[j], passive[j]))
                });
                let Some(chol) = chol else {
                    passive.pop();
                    return beta;
                };
                let rhs: Vec<f64> = passive.iter().map(|&s| -self.b[s]).collect();
                let z = chol.solve(&rhs);
                if z.iter().all(|&v| v > 0.0) {
                    passive.iter().zip(&z).for_each(|(&s, &v)| beta[s] = v);
                    break;
                }
                let (mut step, mut leaving) = (1.0_f64, 0);
                for (k, (&s, &v)) in passive.iter().zip(&z).enumerate() {
                    if v <= 0.0 {
                        let ratio = if beta[s] - v > 0.0 { beta[s] / (beta[s] - v) } else { 0.0 };
                        if ratio < step {
                            (step, leaving) = (ratio, k);
                        }
                    }
                }
                for (&s, &v) in passive.iter().zip(&z) {
                    beta[s] += step * (v - beta[s]);
                }
                beta[passive[leaving]] = 0.0;
                passive.retain(|&s| beta[s] > 0.0);
                for (s, b) in beta.iter_mut().enumerate() {
                    if !passive.contains(&s) {
                        *b = 0.0;
                    }
                }
            }
        }
        beta
    }

    /// The solution with `α` (`correction` is `1/T + λ w`, or `β` at the origin, where
    /// `α = 1/T + β`) and its KKT residual.
    fn finish(
        &self,
        w: Vec<f64>,
        lambda: Option<f64>,
        correction: &[f64],
        iterations: usize,
    ) -> CaGradSolution {
        let alpha: Vec<f64> = match lambda {
            Some(_) => correction.to_vec(),
            None => correction.iter().map(|b| b + 1.0 / self.t as f64).collect(),
        };
        let kkt_residual = self.kkt_residual(&w, &alpha, lambda.is_none());
        CaGradSolution { alpha, inner: w, lambda, kkt_residual, iterations }
    }

    /// See [`CaGradSolution::kkt_residual`].
    fn kkt_residual(&self, w: &[f64], alpha: &[f64], origin: bool) -> f64 {
        let grad = self.times(alpha);
        let nu = if origin { 0.0 } else { dot(w, &grad) };
        let size = self.sizes(w, alpha);
        let mut residual = 0.0_f64;
        for s in 0..self.t {
            residual = residual.max((nu - grad[s]).max(0.0) / size[s]);
            residual = residual.max(w[s] * (grad[s] - nu).abs() / size[s]);
        }
        // ‖d − g_0‖ = ‖Σ (α_t − 1/T) g_t‖.
        let shift: Vec<f64> = alpha.iter().map(|a| a - 1.0 / self.t as f64).collect();
        let distance = dot(&shift, &self.times(&shift)).max(0.0).sqrt();
        let off =
            if origin { (distance - self.radius).max(0.0) } else { (distance - self.radius).abs() };
        residual.max(off / self.radius)
    }
}

/// A support found affinely dependent up to rounding.
#[derive(Debug)]
struct Dependent;

/// A Cholesky factor of a small symmetric positive definite matrix.
struct Cholesky {
    m: usize,
    lower: Vec<f64>,
}

impl Cholesky {
    /// Factors the `m × m` matrix whose entry `(i, j)` is `entry(i, j).0`; `None` if a pivot is
    /// at most [`DEPENDENCE_TOL`] times `entry(i, i).1` (the size of the rounding in it).
    fn new(m: usize, entry: impl Fn(usize, usize) -> (f64, f64)) -> Option<Self> {
        let mut lower = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..=i {
                let (mut value, size) = entry(i, j);
                for k in 0..j {
                    value -= lower[i * m + k] * lower[j * m + k];
                }
                if i == j {
                    if value.is_nan() || value <= DEPENDENCE_TOL * size {
                        return None;
                    }
                    lower[i * m + i] = value.sqrt();
                } else {
                    lower[i * m + j] = value / lower[j * m + j];
                }
            }
        }
        Some(Cholesky { m, lower })
    }

    /// `A⁻¹ rhs`.
    fn solve(&self, rhs: &[f64]) -> Vec<f64> {
        let (m, l) = (self.m, &self.lower);
        let mut x = rhs.to_vec();
        for i in 0..m {
            for k in 0..i {
                x[i] -= l[i * m + k] * x[k];
            }
            x[i] /= l[i * m + i];
        }
        for i in (0..m).rev() {
            for k in i + 1..m {
                x[i] -= l[k * m + i] * x[k];
            }
            x[i] /= l[i * m + i];
        }
        x
    }
}
