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
//! The order is drawn from the run's seed and the step (PCGrad's draws, without i). The result
//! is a direction on the shared parameters; the heads are weighed by 1. Degenerate inputs: a
//! zero gradient has cosine 0 and adds nothing; a target of 1 up to rounding (`√(1 − φ̂²) = 0`,
//! reached only after parallel gradients) has no finite step and is skipped. Cost: the per-task gradients on
//! the shared parameters (like MGDA) plus `O(T²·P)` for the cosines and steps.
//!
//! Its [`WeightingState`]: the targets `φ̂`, in [`GradVac::targets`]'s order (`targets`, empty
//! before the first step).

use std::ops::Range;

use rayon::prelude::*;

use super::{
    check_losses, Direction, Needs, PcGrad, StepInput, StepWeights, Weighting, WeightingError,
    WeightingState,
};

/// The key of GradVac's [`WeightingState`].
const TARGETS: &str = "targets";

/// A target within this of 1 is 1 up to the rounding of the cosines it averages (a few ε),
/// where the step `∝ 1/√(1 − φ̂²)` would be rounding blown up: it is skipped.
const ONE_TOL: f64 = 8.0 * f64::EPSILON;

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

    /// One step on the gradients `rows` (T rows of length P) with groups of columns `groups`,
    /// task i taking the others in the order `orders[i]` (i itself, if listed, is skipped):
    /// the direction `Σ_i g'_i` and the number of adjustments made. Moves the targets.
    ///
    /// # Panics
    /// If `orders` does not have one order per row, names a row that does not exist, or the
    /// number of rows or groups changed since the first step.
    pub fn direction(
        &mut self,
        rows: &[Vec<f32>],
        groups: &[Range<usize>],
        orders: &[Vec<usize>],
    ) -> (Vec<f32>, usize) {
        let (t, k_groups) = (rows.len(), groups.len());
        assert_eq!(orders.len(), t, "one order per task");
        if self.targets.is_empty() {
            self.targets = vec![0.0; t * t * k_groups];
        }
        assert_eq!(self.targets.len(), t * t * k_groups, "the tasks or groups changed");
        let p = rows.first().map_or(0, Vec::len);
        let wide: Vec<Vec<f64>> =
            rows.iter().map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect();
        // ‖g_j‖ on each group.
        let norms: Vec<Vec<f64>> = (wide.iter())
            .map(|g| groups.iter().map(|r| dot_and_square(&g[r.clone()], &[]).1.sqrt()).collect())
            .collect();
        let beta = self.beta;
        // Each task's chain of projections reads only the original gradients and its own
        // targets, so the tasks run in parallel; their sum is taken in task order.
        let chains: Vec<(Vec<f64>, usize)> = (self.targets.par_chunks_mut(t * k_groups))
            .zip(orders.par_iter())
            .enumerate()
            .map(|(i, (targets, order))| {
                let mut gi = wide[i].clone();
                let mut adjustments = 0;
                for &j in order.iter().filter(|&&j| j != i) {
                    for (k, range) in groups.iter().enumerate() {
                        let (own, other) = (&mut gi[range.clone()], &wide[j][range.clone()]);
                        let (dot, own_square) = dot_and_square(own, other);
                        let (own_norm, other_norm) = (own_square.sqrt(), norms[j][k]);
                        let cos = if own_norm > 0.0 && other_norm > 0.0 {
                            (dot / (own_norm * other_norm)).clamp(-1.0, 1.0)
                        } else {
                            0.0
                        };
                        let target = &mut targets[j * k_groups + k];
                        let room = (1.0 - *target * *target).max(0.0).sqrt();
                        if cos < *target && 1.0 - *target > ONE_TOL && other_norm > 0.0 {
                            let step = own_norm
                                * (*target * (1.0 - cos * cos).max(0.0).sqrt() - cos * room)
                                / (other_norm * room);
                            own.iter_mut().zip(other).for_each(|(a, b)| *a += step * b);
                            adjustments += 1;
                        }
                        *target = (1.0 - beta) * *target + beta * cos;
                    }
                }
                (gi, adjustments)
            })
            .collect();
        let mut d = vec![0.0f64; p];
        let mut adjustments = 0;
        for (gi, n) in &chains {
            d.iter_mut().zip(gi).for_each(|(a, b)| *a += b);
            adjustments += n;
        }
        (d.iter().map(|&v| v as f32).collect(), adjustments)
    }
}

/// `(⟨a, b⟩, ‖a‖²)` in one pass (`⟨a, b⟩` is 0 for an empty `b`), each sum over four lanes
/// added in a fixed order, so the compiler can vectorise it and every run gives the same bits.
fn dot_and_square(a: &[f64], b: &[f64]) -> (f64, f64) {
    const LANES: usize = 4;
    let (mut dot, mut square) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = a.len() / LANES;
    for c in 0..chunks {
        let x = &a[c * LANES..(c + 1) * LANES];
        for l in 0..LANES {
            square[l] += x[l] * x[l];
        }
        if !b.is_empty() {
            let y = &b[c * LANES..(c + 1) * LANES];
            for l in 0..LANES {
                dot[l] += x[l] * y[l];
            }
        }
    }
    let (mut dot, mut square) =
        ((dot[0] + dot[1]) + (dot[2] + dot[3]), (square[0] + square[1]) + (square[2] + square[3]));
    for i in chunks * LANES..a.len() {
        square += a[i] * a[i];
        if !b.is_empty() {
            dot += a[i] * b[i];
        }
    }
    (dot, square)
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
        Needs { shared_gradients: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("gradvac", input.losses)?;
        let grads = input.shared_gradients("gradvac")?;
        let t = grads.tasks();
        let groups: Vec<Range<usize>> = match self.grouping {
            GradVacGrouping::WholeModel => std::iter::once(0..grads.dim()).collect(),
            GradVacGrouping::PerParameter => {
                let mut at = 0;
                (0..grads.blocks())
                    .map(|b| {
                        let n = grads.block(b).1.len() / t.max(1);
                        at += n;
                        at - n..at
                    })
                    .collect()
            }
        };
        if !self.targets.is_empty() && self.targets.len() != t * t * groups.len() {
            return Err(WeightingError::Invalid {
                method: "gradvac",
                message: format!(
                    "its targets are for {} task pairs and groups, the gradients have {t} tasks and {} groups",
                    self.targets.len(),
                    groups.len()
                ),
            });
        }
        let rows: Vec<Vec<f32>> = (0..t).map(|i| grads.row(i)).collect();
        let orders = PcGrad::orders(input.seed, input.step, t);
        let (d, adjustments) = self.direction(&rows, &groups, &orders);
        Ok(StepWeights {
            weights: vec![1.0; t],
            direction: Some(Direction::Shared(d)),
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
