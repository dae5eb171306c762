//! GradVac (Wang et al., ICLR 2021, "Gradient Vaccine"): like PCGrad, alter each task's
//! gradient against the others, but towards a target similarity learned over training instead
//! of mere orthogonality. For each task i, each other task j in a random order, and each group
//! k of the shared parameters, with `φ = cos(g'_i, g_j)` on the group (`g'_i` starts at `g_i`)
//! and `φ̂_ijk` an exponential moving average of it (from 0):
//!
//! ```text
//! if φ < φ̂:   g'_i ← g'_i + g_j · ‖g'_i‖ (φ̂ √(1 − φ²) − φ √(1 − φ̂²)) / (‖g_j‖ √(1 − φ̂²))
//! φ̂ ← (1 − β) φ̂ + β φ
//! d = Σ_i g'_i
//! ```
//!
//! The step puts `g'_i` at cosine exactly `φ̂` with `g_j`. The average moves at every pair,
//! adjusted or not, as in LibMTL (its latest form); β ∈ [0, 1] (LibMTL: 0.5), and β = 0 keeps
//! the target at 0, which is PCGrad. The groups are LibMTL's `GradVac_group_type`: the whole
//! model by default (its 0), or each shared parameter alone (its 2, `all_matrix`); LibMTL's 1
//! groups a module's weight with its bias, which the gradients here do not record.
//!
//! The order is drawn from the run's seed and the step (PCGrad's draws, without i). The heads
//! are weighed by 1. Degenerate inputs: a zero gradient has cosine 0 and adds nothing; a target
//! of 1 up to rounding (`√(1 − φ̂²) = 0`, reached only after parallel gradients) has no finite
//! step and is skipped.
//!
//! **On the Gram.** Every `g'_i` stays in the span of the task gradients, `g'_i = Σ_k c_ik g_k`,
//! so the algorithm runs on each group's `T × T` Gram ([`GradVac::coefficients`]) and the
//! direction is `Σ_k w_k g_k` with `w = Σ_i c_i`: on the whole model a
//! [`Direction::Combination`], at MGDA's cost. The norms are not taken as `cᵀGc`, which cancels
//! catastrophically once a `g'_i` is nearly 0 (opposite gradients, or a group of fewer
//! dimensions than tasks); instead the Gram gives the gradients exact coordinates in an
//! orthonormal basis of their span (`G = XXᵀ`, from the eigendecomposition of the cosine
//! matrix, eigenvalues below `1e-12` of the largest dropped as rounding), and the published
//! steps run on those `r ≤ T` coordinates, where a sum cancels exactly as it would in the
//! parameters. A `g'_i` shorter than `1e-6` of the sum of its terms' lengths is zero (a
//! remainder of rounding, below the gradients' float32 precision). Cost:
//! the per-task gradients and their Gram, plus `O(T³)` per group.
//!
//! Its [`WeightingState`]: the targets `φ̂`, in [`GradVac::targets`]'s order (`targets`, empty
//! before the first step).

use std::ops::Range;

use nalgebra::{DMatrix, SymmetricEigen};

use crate::min_norm::gram_matrix;

use super::{
    check_losses, Direction, Needs, PcGrad, StepInput, StepWeights, Weighting, WeightingError,
    WeightingState,
};

/// The key of GradVac's [`WeightingState`].
const TARGETS: &str = "targets";

/// A target within this of 1 is 1 up to the rounding of the cosines it averages (a few ε),
/// where the step `∝ 1/√(1 − φ̂²)` would be rounding blown up: it is skipped.
const ONE_TOL: f64 = 8.0 * f64::EPSILON;

/// Eigenvalues of the cosine matrix at most this times the largest are rounding: the
/// gradients' span has fewer dimensions.
const RANK_TOL: f64 = 1e-12;

/// A cosine less than this below its target meets it up to the rounding of the coordinates
/// (a `g'_i` just projected orthogonal to `g_j` has cosine `±ε`, not 0): no step.
const MEET_TOL: f64 = 1e-12;

/// A `g'_i` at most this times `Σ_k |c_ik| ‖g_k‖` long is zero. A step from a cosine near −1
/// cancels `g'_i` through `√(1 − φ²)`, which turns the ε of the cosine into `√ε ≈ 1e-8` of
/// length, and below the float32 precision of the gradients the direction left is noise.
const ZERO_TOL: f64 = 1e-6;

/// How GradVac groups the shared parameters (LibMTL's `GradVac_group_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradVacGrouping {
    /// One group: all shared parameters (LibMTL's default, 0).
    #[default]
    WholeModel,
    /// One group per shared parameter (LibMTL's 2, `all_matrix`).
    PerParameter,
}

/// GradVac, with its moving targets.
#[derive(Debug, Clone, PartialEq)]
pub struct GradVac {
    /// The rate of the targets' moving average, in [0, 1] (LibMTL: 0.5).
    pub beta: f64,
    /// How the shared parameters are grouped.
    pub grouping: GradVacGrouping,
    /// `φ̂_ijk` at `(i · T + j) · K + k`, sized on the first step.
    targets: Vec<f64>,
}

impl GradVac {
    /// GradVac with rate `beta`, its targets at 0.
    pub fn new(beta: f64, grouping: GradVacGrouping) -> Self {
        GradVac { beta, grouping, targets: Vec::new() }
    }

    /// The targets `φ̂_ijk`, at `(i · T + j) · K + k` for K groups (empty before the first step).
    pub fn targets(&self) -> &[f64] {
        &self.targets
    }

    /// One step on the Grams `grams` of K groups (each `T × T`, row-major), task i taking the
    /// others in the order `orders[i]` (i itself, if listed, is skipped): for each group the
    /// coefficients `w` of its direction `Σ_k w_k g_k`, and the number of adjustments made.
    /// Moves the targets.
    ///
    /// # Panics
    /// If `orders` does not have one order per task, names a task that does not exist, a Gram
    /// is not `T × T`, or the number of tasks or groups changed since the first step.
    pub fn coefficients(
        &mut self,
        grams: &[Vec<f64>],
        orders: &[Vec<usize>],
    ) -> (Vec<Vec<f64>>, usize) {
        let (t, k_groups) = (orders.len(), grams.len());
        if self.targets.is_empty() {
            self.targets = vec![0.0; t * t * k_groups];
        }
        assert_eq!(self.targets.len(), t * t * k_groups, "the tasks or groups changed");
        let beta = self.beta;
        let mut adjustments = 0;
        let mut all = Vec::with_capacity(k_groups);
        for (k, gram) in grams.iter().enumerate() {
            assert_eq!(gram.len(), t * t, "a {t} x {t} Gram");
            let (x, norms) = coordinates(gram, t);
            let mut w = vec![0.0; t];
            for (i, order) in orders.iter().enumerate() {
                // g'_i as coordinates and as coefficients on the task gradients.
                let (mut own, mut c) = (x[i].clone(), vec![0.0f64; t]);
                c[i] = 1.0;
                for &j in order.iter().filter(|&&j| j != i) {
                    let other_norm = norms[j];
                    let terms: f64 = c.iter().zip(&norms).map(|(c, n)| c.abs() * n).sum();
                    let own_norm = dot(&own, &own).sqrt();
                    let own_norm = if own_norm > ZERO_TOL * terms { own_norm } else { 0.0 };
                    let cos = if own_norm > 0.0 && other_norm > 0.0 {
                        (dot(&own, &x[j]) / (own_norm * other_norm)).clamp(-1.0, 1.0)
                    } else {
                        0.0
                    };
                    let target = &mut self.targets[(i * t + j) * k_groups + k];
                    let room = (1.0 - *target * *target).max(0.0).sqrt();
                    if cos < *target - MEET_TOL && 1.0 - *target > ONE_TOL && other_norm > 0.0 {
                        let step = own_norm
                            * (*target * (1.0 - cos * cos).max(0.0).sqrt() - cos * room)
                            / (other_norm * room);
                        own.iter_mut().zip(&x[j]).for_each(|(a, b)| *a += step * b);
                        c[j] += step;
                        adjustments += 1;
                    }
                    *target = (1.0 - beta) * *target + beta * cos;
                }
                w.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
            }
            all.push(w);
        }
        (all, adjustments)
    }

    /// [`GradVac::coefficients`] on explicit gradients `rows` (T rows of length P) with groups
    /// of columns `groups`: the direction `Σ_i g'_i` on every group, and the number of
    /// adjustments made.
    ///
    /// # Panics
    /// As [`GradVac::coefficients`], and if a group lies outside the rows.
    pub fn direction(
        &mut self,
        rows: &[Vec<f32>],
        groups: &[Range<usize>],
        orders: &[Vec<usize>],
    ) -> (Vec<f32>, usize) {
        let t = rows.len();
        assert_eq!(orders.len(), t, "one order per task");
        let grams: Vec<Vec<f64>> = (groups.iter())
            .map(|r| {
                let block: Vec<f32> =
                    rows.iter().flat_map(|row| &row[r.clone()]).copied().collect();
                gram_matrix(&block, t, r.len())
            })
            .collect();
        let (coefficients, adjustments) = self.coefficients(&grams, orders);
        let mut d = vec![0.0f32; rows.first().map_or(0, Vec::len)];
        for (range, w) in groups.iter().zip(&coefficients) {
            for e in range.clone() {
                d[e] = rows.iter().zip(w).map(|(r, &w)| w * f64::from(r[e])).sum::<f64>() as f32;
            }
        }
        (d, adjustments)
    }
}

/// Coordinates `x_t` (rows of length `r`, the rank) of the task gradients in an orthonormal
/// basis of their span, from their Gram, and their norms: `⟨x_s, x_t⟩ = G_st` up to rounding,
/// `‖x_t‖ = √G_tt` exactly, and a zero gradient at the origin.
fn coordinates(gram: &[f64], t: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let norms: Vec<f64> = (0..t).map(|i| gram[i * t + i].max(0.0).sqrt()).collect();
    let cosine = DMatrix::from_fn(t, t, |a, b| {
        if norms[a] > 0.0 && norms[b] > 0.0 {
            gram[a * t + b] / (norms[a] * norms[b])
        } else {
            0.0
        }
    });
    let eigen = SymmetricEigen::new(cosine);
    let largest = eigen.eigenvalues.iter().fold(0.0f64, |m, &v| m.max(v));
    let kept: Vec<usize> = (0..t).filter(|&e| eigen.eigenvalues[e] > RANK_TOL * largest).collect();
    let x = (0..t)
        .map(|a| {
            let unit: Vec<f64> = (kept.iter())
                .map(|&e| eigen.eigenvectors[(a, e)] * eigen.eigenvalues[e].sqrt())
                .collect();
            let length = dot(&unit, &unit).sqrt();
            let scale = if length > 0.0 { norms[a] / length } else { 0.0 };
            unit.iter().map(|u| u * scale).collect()
        })
        .collect();
    (x, norms)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Default for GradVac {
    fn default() -> Self {
        GradVac::new(0.5, GradVacGrouping::WholeModel)
    }
}

impl Weighting for GradVac {
    fn name(&self) -> &'static str {
        "gradvac"
    }

    fn needs(&self) -> Needs {
        match self.grouping {
            GradVacGrouping::WholeModel => Needs { shared_gram: true, ..Needs::LOSSES },
            GradVacGrouping::PerParameter => Needs { shared_gradients: true, ..Needs::LOSSES },
        }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("gradvac", input.losses)?;
        let t = input.losses.len();
        let orders = PcGrad::orders(input.seed, input.step, t);
        let groups = match self.grouping {
            GradVacGrouping::WholeModel => 1,
            GradVacGrouping::PerParameter => input.shared_gradients("gradvac")?.blocks(),
        };
        if !self.targets.is_empty() && self.targets.len() != t * t * groups {
            return Err(WeightingError::Invalid {
                method: "gradvac",
                message: format!(
                    "its targets are for {} task pairs and groups, the gradients have {t} tasks and {groups} groups",
                    self.targets.len(),
                ),
            });
        }
        let (direction, adjustments) = match self.grouping {
            GradVacGrouping::WholeModel => {
                let gram = input.shared_gram("gradvac")?.to_vec();
                let (mut w, n) = self.coefficients(&[gram], &orders);
                (Direction::Combination(w.remove(0)), n)
            }
            GradVacGrouping::PerParameter => {
                let grads = input.shared_gradients("gradvac")?;
                let mut at = 0;
                let ranges: Vec<Range<usize>> = (0..grads.blocks())
                    .map(|b| {
                        let n = grads.block(b).1.len() / t.max(1);
                        at += n;
                        at - n..at
                    })
                    .collect();
                let rows: Vec<Vec<f32>> = (0..t).map(|i| grads.row(i)).collect();
                let (d, n) = self.direction(&rows, &ranges, &orders);
                (Direction::Shared(d), n)
            }
        };
        Ok(StepWeights {
            weights: vec![1.0; t],
            direction: Some(direction),
            diagnostics: vec![("gradvac.adjustments".into(), vec![adjustments as f64])],
        })
    }

    fn state(&self) -> WeightingState {
        WeightingState::from_iter([(TARGETS.to_string(), self.targets.clone())])
    }

    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        state.check_keys("gradvac", &[TARGETS])?;
        self.targets = state.required("gradvac", TARGETS)?.to_vec();
        Ok(())
    }
}
