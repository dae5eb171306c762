//! PCGrad (Yu et al., 2020): project each task's gradient off the gradients it conflicts with,
//! then add them up. For each task i, in a random order of the other tasks j:
//!
//! ```text
//! if ⟨g'_i, g_j⟩ < 0:   g'_i ← g'_i − (⟨g'_i, g_j⟩ / ‖g_j‖²) g_j        (g'_i starts at g_i)
//! d = Σ_i g'_i
//! ```
//!
//! (projecting on the original `g_j`, as the paper's algorithm and LibMTL do). Two conflicting
//! gradients lose their conflicting components; aligned ones pass unchanged. The order is drawn
//! from the run's seed and the step. The result is a direction on the shared parameters; the
//! heads, which only their own task reaches, are weighed by 1. The projections run on the Gram
//! of the task gradients ([`PcGrad::coefficients`]) and the direction is their combination
//! ([`Direction::Combination`]), so the cost is MGDA's: the per-task gradients on the shared
//! parameters, their Gram, and one combination of them (or, on the Gram path, the Gram and one
//! more backward pass).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{check_losses, Direction, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// PCGrad.
#[derive(Debug, Clone, Copy, Default)]
pub struct PcGrad;

impl PcGrad {
    /// PCGrad on the Gram `gram` (`T × T`, row-major) of the task gradients, when task i
    /// projects against the others in the order `orders[i]` (an order may include i itself,
    /// which never conflicts with itself): the coefficients `w` of `d = Σ_k w_k g_k`, and how
    /// many projections were made.
    ///
    /// Every projected `g'_i` stays in the span of the task gradients, `g'_i = Σ_k c_ik g_k`,
    /// and `⟨g'_i, g_j⟩ = (c_i G)_j`, so the whole algorithm runs on T-vectors: a projection
    /// subtracts `(⟨g'_i, g_j⟩ / G_jj) e_j` from `c_i`, and `w = Σ_i c_i`. This is the
    /// published algorithm in exact arithmetic, at `O(T³)` instead of `O(T²·P)`.
    ///
    /// # Panics
    /// If `gram` is not `T × T` for `T = orders.len()`, or an order names a task that does not
    /// exist.
    pub fn coefficients(gram: &[f64], orders: &[Vec<usize>]) -> (Vec<f64>, usize) {
        let t = orders.len();
        assert_eq!(gram.len(), t * t, "a {t} x {t} Gram");
        let mut w = vec![0.0; t];
        let mut projections = 0;
        for (i, order) in orders.iter().enumerate() {
            let mut c = vec![0.0; t];
            c[i] = 1.0;
            for &j in order {
                let cij: f64 = (0..t).map(|k| c[k] * gram[k * t + j]).sum();
                if cij < 0.0 && gram[j * t + j] > 0.0 {
                    c[j] -= cij / gram[j * t + j];
                    projections += 1;
                }
            }
            w.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
        }
        (w, projections)
    }

    /// The random orders of step `step` of a run seeded with `seed`: for each task, a shuffle of
    /// all tasks.
    pub fn orders(seed: u64, step: u64, tasks: usize) -> Vec<Vec<usize>> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5043);
        (0..tasks)
            .map(|_| {
                let mut order: Vec<usize> = (0..tasks).collect();
                order.shuffle(&mut rng);
                order
            })
            .collect()
    }
}

impl Weighting for PcGrad {
    fn name(&self) -> &'static str {
        "pcgrad"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gram: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("pcgrad", input.losses)?;
        let gram = input.shared_gram("pcgrad")?;
        let t = input.losses.len();
        let (w, projections) = Self::coefficients(gram, &Self::orders(input.seed, input.step, t));
        Ok(StepWeights {
            weights: vec![1.0; t],
            direction: Some(Direction::Combination(w)),
            diagnostics: vec![("pcgrad.projections".into(), vec![projections as f64])],
        })
    }
}
