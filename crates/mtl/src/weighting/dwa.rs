//! Dynamic weight average (Liu, Johns & Davison, 2019): weigh each task by how slowly its loss
//! fell over the last two epochs,
//!
//! ```text
//! r_t = L̄_t(e − 1) / L̄_t(e − 2),     w_t = T · exp(r_t / τ) / Σ_s exp(r_s / τ)
//! ```
//!
//! with `L̄_t(e)` task t's mean training loss over epoch e, and `w_t = 1` in the first two
//! epochs (LibMTL's form; τ = 2 by default). A task whose loss stalls (`r_t` near 1 or above)
//! gets more weight than one whose loss is falling fast. Cost: that of equal weighting; the
//! epoch means are kept from the losses the step reports.
//!
//! Its [`WeightingState`]: the finished epochs' means, one row after the other
//! (`epoch_means`), with each row's number of tasks (`epoch_means.tasks`), and the epoch being
//! accumulated (`current.epoch`, `current.loss_sums`, `current.steps`; absent before the first
//! step).

use super::{
    check_losses, Needs, StepInput, StepWeights, Weighting, WeightingError, WeightingState,
};

/// The keys of DWA's [`WeightingState`].
const EPOCH_MEANS: &str = "epoch_means";
const EPOCH_MEAN_TASKS: &str = "epoch_means.tasks";
const CURRENT_EPOCH: &str = "current.epoch";
const CURRENT_SUMS: &str = "current.loss_sums";
const CURRENT_STEPS: &str = "current.steps";

/// Dynamic weight average with temperature `tau`.
#[derive(Debug, Clone)]
pub struct DynamicWeightAverage {
    /// The temperature τ > 0 (LibMTL: 2).
    pub tau: f64,
    /// The mean loss of each finished epoch, per task.
    epoch_means: Vec<Vec<f64>>,
    /// The epoch being accumulated, the sums of its losses and their count.
    current: Option<(u64, Vec<f64>, u64)>,
}

impl Default for DynamicWeightAverage {
    fn default() -> Self {
        DynamicWeightAverage::new(2.0)
    }
}

impl DynamicWeightAverage {
    /// DWA with temperature `tau`.
    pub fn new(tau: f64) -> Self {
        DynamicWeightAverage { tau, epoch_means: Vec::new(), current: None }
    }

    /// The weights of an epoch whose two previous epochs had mean losses `before` and `last`.
    pub fn weights_from(before: &[f64], last: &[f64], tau: f64) -> Vec<f64> {
        let r: Vec<f64> =
            last.iter().zip(before).map(|(l, b)| if *b > 0.0 { l / b } else { 1.0 }).collect();
        let top = r.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v / tau));
        let e: Vec<f64> = r.iter().map(|v| (v / tau - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| r.len() as f64 * v / sum).collect()
    }
}

impl Weighting for DynamicWeightAverage {
    fn name(&self) -> &'static str {
        "dwa"
    }

    fn needs(&self) -> Needs {
        Needs::LOSSES
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        check_losses("dwa", input.losses)?;
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return Err(WeightingError::Invalid {
                method: "dwa",
                message: format!("the temperature τ must be positive, got {}", self.tau),
            });
        }
        let t = input.losses.len();
        // A new epoch closes the previous one's mean.
        match &mut self.current {
            Some((epoch, sums, count)) if *epoch == input.epoch => {
                sums.iter_mut().zip(input.losses).for_each(|(s, l)| *s += l);
                *count += 1;
            }
            current => {
                if let Some((_, sums, count)) = current.take() {
                    self.epoch_means.push(sums.iter().map(|s| s / count as f64).collect());
                }
                *current = Some((input.epoch, input.losses.to_vec(), 1));
            }
        }
        let weights = match self.epoch_means.len() {
            n if n >= 2 && self.epoch_means[n - 1].len() == t => {
                Self::weights_from(&self.epoch_means[n - 2], &self.epoch_means[n - 1], self.tau)
            }
            _ => vec![1.0; t],
        };
        Ok(StepWeights::weights(weights))
    }

    fn state(&self) -> WeightingState {
        let mut state = WeightingState::new();
        state.insert(EPOCH_MEANS, self.epoch_means.concat());
        state.insert(EPOCH_MEAN_TASKS, self.epoch_means.iter().map(|m| m.len() as f64).collect());
        if let Some((epoch, sums, steps)) = &self.current {
            state.insert_count(CURRENT_EPOCH, *epoch);
            state.insert(CURRENT_SUMS, sums.clone());
            state.insert_count(CURRENT_STEPS, *steps);
        }
        state
    }

    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        let current_keys = [CURRENT_EPOCH, CURRENT_SUMS, CURRENT_STEPS];
        state.check_keys("dwa", &[&[EPOCH_MEANS, EPOCH_MEAN_TASKS][..], &current_keys].concat())?;
        let means = state.required("dwa", EPOCH_MEANS)?;
        let tasks = state.counts("dwa", EPOCH_MEAN_TASKS)?;
        let counted: u128 = tasks.iter().map(|&t| u128::from(t)).sum();
        if counted != means.len() as u128 {
            return Err(WeightingError::Invalid {
                method: "dwa",
                message: format!(
                    "the saved state's `{EPOCH_MEANS}` has {} values, its `{EPOCH_MEAN_TASKS}` count {}",
                    means.len(),
                    counted
                ),
            });
        }
        let mut rest = means;
        let epoch_means = (tasks.iter())
            .map(|&t| {
                let (row, tail) = rest.split_at(t as usize);
                rest = tail;
                row.to_vec()
            })
            .collect();
        // The epoch being accumulated: all three keys, or none.
        let current = if current_keys.iter().any(|k| state.get(k).is_some()) {
            Some((
                state.count("dwa", CURRENT_EPOCH)?,
                state.required("dwa", CURRENT_SUMS)?.to_vec(),
                state.count("dwa", CURRENT_STEPS)?,
            ))
        } else {
            None
        };
        (self.epoch_means, self.current) = (epoch_means, current);
        Ok(())
    }
}
