//! UPGrad (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective Optimization"; TorchJD's
//! `UPGrad`): project each task's gradient onto the dual cone of the task gradients,
//! `K* = {v : ⟨v, g_j⟩ ≥ 0 for every j}`, and average the projections,
//!
//! ```text
//! d = (1/T) Σ_i π(g_i),     π(x) = argmin_{v ∈ K*} ‖v − x‖.
//! ```
//!
//! **On the Gram alone.** With `J` the matrix whose rows are the gradients, the projection's
//! Lagrangian `½‖v − g_i‖² − λᵀJv` (λ ≥ 0) is stationary at `v = g_i + Jᵀλ = Jᵀ(e_i + λ)`, and
//! its dual problem is
//!
//! ```text
//! min_{λ ≥ 0} ½ (e_i + λ)ᵀ G (e_i + λ)     (= ½ λᵀGλ + λᵀG e_i + const),
//! ```
//!
//! the paper's Proposition 1 (`min vᵀGv` subject to `v ≥ e_i`, with `v = e_i + λ`). So
//! `π(g_i) = Σ_j w_ij g_j` with `w_i = e_i + λ_i`, and the weights are the mean
//! `w = (1/T) Σ_i w_i` (TorchJD's default preference vector, uniform `1/T`): every weight is at
//! least `1/T`. The optimality (KKT) conditions are `λ_i ≥ 0`, `G w_i ≥ 0` (the projection lies
//! in `K*`) and `λ_ij (G w_i)_j = 0`; hence `⟨d, g_j⟩ = (G w)_j ≥ 0` for every j: the update
//! conflicts with no task, which is the method's point. If every pair of gradients agrees
//! (`G ≥ 0` elementwise) nothing is projected and `d` is the mean gradient (`w = 1/T`); two
//! opposite gradients have `K* = g^⊥`, so both projections and `d` are 0.
//!
//! **Solver.** The dual is a non-negative least-squares problem, `min_{λ ≥ 0} ‖Jᵀλ + g_i‖²`
//! (`−Jᵀλ` is the projection of `g_i` on the polar cone, the cone of the negated gradients),
//! solved exactly by Lawson and Hanson's active-set method written on `G`: from `λ = 0`, add the
//! task j with the most negative `(G w_i)_j / ‖g_j‖`, solve the equality-constrained problem on
//! the active tasks (a Cholesky solve of `G_PP z = −(G e_i)_P`), and, where some `z` is not
//! positive, step towards it until a weight reaches 0 and drop that task. In exact arithmetic
//! the active gradients stay linearly independent (at the optimum on the active set, a gradient
//! in their span has `(G w_i)_j = 0` and never enters), so `G_PP` is positive definite and the
//! method ends after finitely many steps. In floating point a task enters only below
//! `−10⁻¹³ ‖g_j‖ Σ_k w_ik ‖g_k‖` (rounding is about 10⁻¹⁶ of that), a task whose entry fails
//! all the same (the Cholesky factorisation fails, or its weight comes out non-positive) is set
//! aside until the active set next shrinks, and a cap of `10 T + 10` steps bounds the whole.
//! The projection `π(g_i)` is unique; λ need not be (linearly dependent gradients), and the one
//! found is deterministic. Each solve reports its KKT residual,
//! `max_j max(−(Gw_i)_j, λ_ij |(Gw_i)_j|) / (‖g_j‖ Σ_k w_ik ‖g_k‖)` (the denominator bounds
//! `|(Gw_i)_j|`, so rounding is about 1e-16).
//!
//! TorchJD divides `G` by its trace and adds `10⁻⁴ I` (`reg_eps`) so that quadprog sees a
//! positive definite matrix; the active-set solve needs neither, so these are the paper's
//! weights exactly (TorchJD's differ by about 10⁻⁴ relative). The weights weigh the task losses,
//! heads included (TorchJD's `mtl_backward` gives each head its own loss's plain gradient).
//! Cost: MGDA's per-task gradients and their Gram, then T small problems of at most a few T
//! active-set steps of `O(T³)` each.

use nalgebra::{DMatrix, DVector};

use super::{check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError};
use crate::min_norm::validated_symmetric;

/// A task enters the active set when `(G w_i)_j < −ENTER · ‖g_j‖ Σ_k w_ik ‖g_k‖`.
const ENTER: f64 = 1e-13;

/// The weights of one projection `π(g_i) = Σ_j w_j g_j`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// `w = e_i + λ`, λ ≥ 0.
    pub weights: Vec<f64>,
    /// The KKT residual (see the module documentation); 0 exactly at a solution.
    pub kkt_residual: f64,
    /// Active-set steps (tasks added plus tasks dropped).
    pub iterations: usize,
}

/// The answer of [`Upgrad::weights_from_gram`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradSolution {
    /// The mean of the projections' weights, each at least `1/T`.
    pub weights: Vec<f64>,
    /// The largest KKT residual of the T projections.
    pub kkt_residual: f64,
    /// How many task gradients were changed by their projection (`λ_i ≠ 0`).
    pub projected: usize,
    /// Active-set steps over the T projections.
    pub iterations: usize,
}

/// UPGrad on the shared parameters' gradients.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrad;

impl Upgrad {
    /// UPGrad's weights for the `T × T` Gram matrix `gram` (row-major): the mean over i of the
    /// weights of the projection of `g_i` onto the dual cone.
    ///
    /// # Errors
    /// [`WeightingError::MinNorm`] if `gram` is not a finite symmetric `t × t` matrix with a
    /// non-negative diagonal.
    pub fn weights_from_gram(gram: &[f64], t: usize) -> Result<UpgradSolution, WeightingError> {
        let sym = validated_symmetric(gram, t)?;
        let mut solution = UpgradSolution {
            weights: vec![0.0; t],
            kkt_residual: 0.0,
            projected: 0,
            iterations: 0,
        };
        for i in 0..t {
            let p = project(&sym, t, i);
            for (w, v) in solution.weights.iter_mut().zip(&p.weights) {
                *w += v / t as f64;
            }
            solution.kkt_residual = solution.kkt_residual.max(p.kkt_residual);
            solution.iterations += p.iterations;
            if p.weights.iter().enumerate().any(|(j, &v)| v != if j == i { 1.0 } else { 0.0 }) {
                solution.projected += 1;
            }
        }
        Ok(solution)
    }

    /// The weights of the projection of task `i`'s gradient onto the dual cone of the gradients
    /// whose Gram is `gram`.
    ///
    /// # Errors
    /// As [`Upgrad::weights_from_gram`], and [`WeightingError::Invalid`] if `i >= t`.
    pub fn projection_weights(
        gram: &[f64],
        t: usize,
        i: usize,
    ) -> Result<Projection, WeightingError> {
        let sym = validated_symmetric(gram, t)?;
        if i >= t {
            return Err(WeightingError::Invalid {
                method: "upgrad",
                message: format!("no task {i} among {t}"),
            });
        }
        Ok(project(&sym, t, i))
    }
}

/// `G v`.
fn times(gram: &[f64], t: usize, v: &[f64]) -> Vec<f64> {
    (0..t).map(|j| (0..t).map(|k| gram[j * t + k] * v[k]).sum()).collect()
}

/// The principal submatrix of `gram` on `rows`, in that order.
fn sub(gram: &[f64], t: usize, rows: &[usize]) -> DMatrix<f64> {
    DMatrix::from_fn(rows.len(), rows.len(), |a, b| gram[rows[a] * t + rows[b]])
}

/// The minimiser on the active tasks without the sign constraint: `G_PP z = −(G e_i)_P`.
fn unconstrained(gram: &[f64], t: usize, active: &[usize], i: usize) -> Option<Vec<f64>> {
    let rhs = DVector::from_fn(active.len(), |a, _| -gram[active[a] * t + i]);
    let z = sub(gram, t, active).cholesky()?.solve(&rhs);
    z.iter().all(|v| v.is_finite()).then(|| z.iter().copied().collect())
}

/// The KKT residual of `λ` for the projection of task i.
fn kkt_residual(gram: &[f64], t: usize, i: usize, lambda: &[f64], norms: &[f64]) -> f64 {
    let mut w = lambda.to_vec();
    w[i] += 1.0;
    let p = times(gram, t, &w);
    let m: f64 = w.iter().zip(norms).map(|(a, n)| a * n).sum();
    (0..t)
        .filter(|&j| norms[j] > 0.0 && m > 0.0)
        .map(|j| (-p[j]).max(lambda[j] * p[j].abs()) / (norms[j] * m))
        .fold(0.0, f64::max)
}

/// Lawson and Hanson's active set for `min_{λ ≥ 0} ½ (e_i + λ)ᵀ G (e_i + λ)`.
fn project(gram: &[f64], t: usize, i: usize) -> Projection {
    let norms: Vec<f64> = (0..t).map(|j| gram[j * t + j].sqrt()).collect();
    let mut lambda = vec![0.0; t];
    let mut active = vec![false; t];
    let mut blocked = vec![false; t];
    let mut iterations = 0;
    let cap = 10 * t + 10;
    while iterations < cap {
        let mut w = lambda.clone();
        w[i] += 1.0;
        let p = times(gram, t, &w);
        let m: f64 = w.iter().zip(&norms).map(|(a, n)| a * n).sum();
        let entering = (0..t)
            .filter(|&j| !active[j] && !blocked[j] && norms[j] > 0.0)
            .filter(|&j| p[j] < -ENTER * norms[j] * m)
            .min_by(|&a, &b| (p[a] / norms[a]).total_cmp(&(p[b] / norms[b])));
        let Some(j) = entering else { break };
        iterations += 1;
        active[j] = true;
        let mut first = true;
        while iterations < cap {
            let set: Vec<usize> = (0..t).filter(|&k| active[k]).collect();
            let Some(z) = unconstrained(gram, t, &set, i) else {
                // Rounding made the active gradients dependent after all: give j up.
                active[j] = false;
                blocked[j] = true;
                break;
            };
            if z.iter().all(|&v| v > 0.0) {
                lambda.fill(0.0);
                set.iter().zip(&z).for_each(|(&k, &v)| lambda[k] = v);
                break;
            }
            let z_j = set.iter().position(|&k| k == j).map(|a| z[a]);
            if first && z_j.is_some_and(|v| v <= 0.0) {
                // In exact arithmetic the entering task's weight is positive; here it is not,
                // so its negative product was rounding: give j up.
                active[j] = false;
                blocked[j] = true;
                break;
            }
            first = false;
            // Step from λ towards z until the first active weight reaches 0; drop it.
            let (leaving, theta) = set
                .iter()
                .zip(&z)
                .filter(|(_, &v)| v <= 0.0)
                .map(|(&k, &v)| (k, lambda[k] / (lambda[k] - v)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a non-positive entry");
            for (&k, &v) in set.iter().zip(&z) {
                lambda[k] += theta * (v - lambda[k]);
            }
            lambda[leaving] = 0.0;
            for &k in &set {
                if lambda[k] <= 0.0 {
                    lambda[k] = 0.0;
                    active[k] = false;
                }
            }
            blocked.fill(false);
            iterations += 1;
        }
    }
    let kkt_residual = kkt_residual(gram, t, i, &lambda, &norms);
    let mut weights = lambda;
    weights[i] += 1.0;
    Projection { weights, kkt_residual, iterations }
}

impl Weighting for Upgrad {
    fn name(&self) -> &'static str {
        "upgrad"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("upgrad", input.losses)?;
        let gram = input.shared_gram("upgrad")?;
        let solution = Self::weights_from_gram(gram, input.losses.len())?;
        Ok(StepWeights {
            weights: solution.weights,
            diagnostics: vec![
                ("upgrad.kkt_residual".into(), vec![solution.kkt_residual]),
                ("upgrad.projected".into(), vec![solution.projected as f64]),
            ],
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kkt_residual_sees_each_violated_condition() {
        // g_1 = (1, 0), g_2 = (−1, 1): π(g_1) = g_1 + ½ g_2 = (½, ½), orthogonal to g_2.
        let gram = [1.0, -1.0, -1.0, 2.0];
        let norms = [1.0, 2f64.sqrt()];
        let p = project(&gram, 2, 0);
        assert!(p.weights[0] == 1.0 && (p.weights[1] - 0.5).abs() < 1e-15, "{p:?}");
        assert_eq!(kkt_residual(&gram, 2, 0, &[0.0, 0.5], &norms), 0.0);
        // λ = 0 leaves ⟨g_1, g_2⟩ = −1 < 0: dual infeasible, 1/(√2 · 1).
        let r = kkt_residual(&gram, 2, 0, &[0.0, 0.0], &norms);
        assert!((r - 1.0 / 2f64.sqrt()).abs() < 1e-15, "{r}");
        // λ_2 = 1 is feasible ((Gw) = (0, 1)) but not complementary: 1·1/(√2 (1 + √2)).
        let r = kkt_residual(&gram, 2, 0, &[0.0, 1.0], &norms);
        assert!((r - 1.0 / (2f64.sqrt() * (1.0 + 2f64.sqrt()))).abs() < 1e-15, "{r}");
    }
}
