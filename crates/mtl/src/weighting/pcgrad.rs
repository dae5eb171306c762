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
//! heads, which only their own task reaches, are weighed by 1. Cost: the per-task gradients on
//! the shared parameters (like MGDA) plus `O(T²·P)` for the projections.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{check_losses, Direction, Needs, StepInput, StepWeights, Weighting, WeightingError};

/// PCGrad.
#[derive(Debug, Clone, Copy, Default)]
pub struct PcGrad;

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum()
}

impl PcGrad {
    /// The PCGrad direction of the gradients `rows` when task i projects against the others in
    /// the order `orders[i]` (an order may include i itself, which never conflicts with itself).
    /// Also returns how many projections were made.
    ///
    /// # Panics
    /// If `orders` does not have one order per row or names a row that does not exist.
    pub fn direction(rows: &[Vec<f32>], orders: &[Vec<usize>]) -> (Vec<f32>, usize) {
        assert_eq!(rows.len(), orders.len(), "one order per task");
        let p = rows.first().map_or(0, Vec::len);
        let norms_sq: Vec<f64> = rows.iter().map(|g| dot(g, g)).collect();
        let mut d = vec![0.0f64; p];
        let mut projections = 0;
        for (i, order) in orders.iter().enumerate() {
            let mut gi: Vec<f64> = rows[i].iter().map(|&v| f64::from(v)).collect();
            for &j in order {
                let gij: f64 = gi.iter().zip(&rows[j]).map(|(&x, &y)| x * f64::from(y)).sum();
                if gij < 0.0 && norms_sq[j] > 0.0 {
                    let c = gij / norms_sq[j];
                    gi.iter_mut().zip(&rows[j]).for_each(|(x, &y)| *x -= c * f64::from(y));
                    projections += 1;
                }
            }
            d.iter_mut().zip(&gi).for_each(|(a, b)| *a += b);
        }
        (d.iter().map(|&v| v as f32).collect(), projections)
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
        Needs { shared_gradients: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("pcgrad", input.losses)?;
        let grads = input.shared_gradients("pcgrad")?;
        let t = grads.tasks();
        let rows: Vec<Vec<f32>> = (0..t).map(|i| grads.row(i)).collect();
        let (d, projections) = Self::direction(&rows, &Self::orders(input.seed, input.step, t));
        Ok(StepWeights {
            weights: vec![1.0; t],
            direction: Some(Direction::Shared(d)),
            diagnostics: vec![("pcgrad.projections".into(), vec![projections as f64])],
        })
    }
}
