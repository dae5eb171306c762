//! DB-MTL (Lin et al., 2023, "Dual-Balancing for Multi-Task Learning"): balance the losses'
//! scales by taking logs, then the gradients' magnitudes by scaling every task's (averaged)
//! gradient up to the largest one.
//!
//! Each loss `L_t` is replaced by `log(L_t + ε)` (`ε = 1e-8`), whose gradient on the shared
//! parameters is `∇L_t / (L_t + ε)`: the per-task gradients are scaled, no second sweep is
//! needed. An exponential moving average of these gradients, from zero, with LibMTL's decay at
//! update k (from 1) `β_k = β / k^{β_σ}`,
//!
//! ```text
//! g̃_t ← β_k g̃_t + (1 − β_k) ∇L_t / (L_t + ε)
//! α_t = max_s ‖g̃_s‖ / (‖g̃_t‖ + ε)
//! d = Σ_t α_t g̃_t                                  the shared parameters' gradient
//! ```
//!
//! so every task's averaged gradient enters `d` with the norm of the largest. `d` is returned as
//! a direction on the shared parameters. The task-specific parameters (the heads) get the
//! gradients of the log-losses, `∇L_t / (L_t + ε)`, with no average and no rescaling, as in
//! LibMTL (its per-task backward passes of `log(L_t + ε)` accumulate in the heads, and only
//! the shared gradient is replaced): the weights `1 / (L_t + ε)` the step reports are the
//! heads'. LibMTL's defaults: `β = 0.9`, `β_σ = 0` (a constant decay). Cost: MGDA's per-task
//! gradients on the shared parameters, plus `O(T·P)` for the average and the sum, and `T·P`
//! values kept from step to step.
//!
//! Its [`WeightingState`]: the averaged gradients (`average`, `f32`s, empty before the first
//! step) and the number of updates folded into them (`updates`).

use super::{
    check_losses, Direction, Needs, StepInput, StepWeights, Weighting, WeightingError,
    WeightingState,
};
use crate::task_grads::TaskGradients;

/// The keys of DB-MTL's [`WeightingState`].
const AVERAGE: &str = "average";
const UPDATES: &str = "updates";

/// The `ε` of the log-losses and of the norms' ratio (LibMTL's `1e-8`).
const DB_MTL_EPS: f64 = 1e-8;

/// DB-MTL with decay `beta` and decay exponent `beta_sigma`.
#[derive(Debug, Clone)]
pub struct DbMtl {
    /// The moving average's decay β in [0, 1) (LibMTL: 0.9).
    pub beta: f64,
    /// The exponent β_σ ≥ 0 of the decay's fall with the update count (LibMTL: 0).
    pub beta_sigma: f64,
    /// The averaged log-loss gradients g̃, `T × P` row-major (empty before the first step).
    average: Vec<f32>,
    /// Updates folded into the average so far.
    updates: u64,
}

impl Default for DbMtl {
    fn default() -> Self {
        DbMtl::new(0.9, 0.0)
    }
}

impl DbMtl {
    /// DB-MTL with decay `beta` and exponent `beta_sigma`.
    pub fn new(beta: f64, beta_sigma: f64) -> Self {
        DbMtl { beta, beta_sigma, average: Vec::new(), updates: 0 }
    }

    /// The averaged gradients of the log-losses, `T × P` row-major (empty before the first
    /// step).
    pub fn average(&self) -> &[f32] {
        &self.average
    }

    /// The decay of update `k` (from 1): `β / k^{β_σ}`.
    pub fn decay(beta: f64, beta_sigma: f64, k: u64) -> f64 {
        beta / (k.max(1) as f64).powf(beta_sigma)
    }

    /// Folds the gradients `rows` (`T × P` row-major) of the losses `losses` into `average`
    /// with decay `decay`: `g̃_t ← decay · g̃_t + (1 − decay) · rows_t / (L_t + ε)`.
    ///
    /// # Panics
    /// If `average` and `rows` differ in length or it is not a multiple of `losses.len()`.
    pub fn fold(average: &mut [f32], rows: &[f32], losses: &[f64], decay: f64) {
        assert_eq!(average.len(), rows.len(), "one average per gradient entry");
        let p = rows.len() / losses.len().max(1);
        assert_eq!(p * losses.len(), rows.len(), "T rows of P values");
        for ((avg, row), l) in average.chunks_mut(p.max(1)).zip(rows.chunks(p.max(1))).zip(losses) {
            let mut unused = SumSq::default();
            fold_row(avg, row, 1.0 / (l + DB_MTL_EPS), decay, 0, &mut unused);
        }
    }

    /// [`DbMtl::fold`] straight from the per-task gradients' blocks (no `T × P` copy), adding
    /// each new average's squares to its task's sum of squares in the lanes [`DbMtl::direction`]
    /// sums them in: the same numbers in two passes fewer.
    fn fold_blocks(&mut self, grads: &TaskGradients, losses: &[f64], decay: f64) -> Vec<f64> {
        let (t, p) = (grads.tasks(), grads.dim());
        let mut norms_sq = vec![SumSq::default(); t];
        let mut at = 0;
        for b in 0..grads.blocks() {
            let stacked = grads.block(b).1.as_slice();
            let n = stacked.len() / t.max(1);
            for (task, sum) in norms_sq.iter_mut().enumerate() {
                let avg = &mut self.average[task * p + at..task * p + at + n];
                let row = &stacked[task * n..(task + 1) * n];
                fold_row(avg, row, 1.0 / (losses[task] + DB_MTL_EPS), decay, at, sum);
            }
            at += n;
        }
        norms_sq.iter().map(SumSq::total).collect()
    }

    /// The direction `Σ_t α_t g̃_t` of the averages `average` (`tasks × P` row-major), the
    /// scales `α_t = max_s ‖g̃_s‖ / (‖g̃_t‖ + ε)` and the norms `‖g̃_t‖`.
    ///
    /// # Panics
    /// If `average.len()` is not a multiple of `tasks`.
    pub fn direction(average: &[f32], tasks: usize) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let p = average.len() / tasks.max(1);
        assert_eq!(p * tasks, average.len(), "T rows of P values");
        let norms: Vec<f64> =
            (average.chunks(p.max(1)).take(tasks)).map(|r| SumSq::of(r).sqrt()).collect();
        Self::direction_with_norms(average, tasks, norms)
    }

    /// [`DbMtl::direction`] given the norms `‖g̃_t‖`.
    fn direction_with_norms(
        average: &[f32],
        tasks: usize,
        norms: Vec<f64>,
    ) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let p = average.len() / tasks.max(1);
        let rows: Vec<&[f32]> = average.chunks(p.max(1)).take(tasks).collect();
        let top = norms.iter().fold(0.0f64, |m, &n| m.max(n));
        let alpha: Vec<f64> = norms.iter().map(|n| top / (n + DB_MTL_EPS)).collect();
        // Column block by column block, so the `f64` sums stay in cache across the rows.
        const BLOCK: usize = 2048;
        let mut d = vec![0.0f32; p];
        let mut sums = [0.0f64; BLOCK];
        for (start, out) in (0..p).step_by(BLOCK).zip(d.chunks_mut(BLOCK)) {
            let sums = &mut sums[..out.len()];
            sums.fill(0.0);
            for (row, a) in rows.iter().zip(&alpha) {
                let row = &row[start..start + out.len()];
                sums.iter_mut().zip(row).for_each(|(x, &g)| *x += a * f64::from(g));
            }
            out.iter_mut().zip(sums.iter()).for_each(|(o, &x)| *o = x as f32);
        }
        (d, alpha, norms)
    }

    fn check(&self, losses: &[f64]) -> Result<(), WeightingError> {
        check_losses("db-mtl", losses)?;
        let invalid = |message: String| Err(WeightingError::Invalid { method: "db-mtl", message });
        if let Some((t, l)) = losses.iter().enumerate().find(|(_, &l)| l < 0.0) {
            return invalid(format!(
                "loss of task {t} is negative ({l}); DB-MTL weighs log-losses"
            ));
        }
        if !(0.0..1.0).contains(&self.beta) {
            return invalid(format!("beta must lie in [0, 1), got {}", self.beta));
        }
        if !(self.beta_sigma >= 0.0 && self.beta_sigma.is_finite()) {
            return invalid(format!("beta_sigma must be finite and >= 0, got {}", self.beta_sigma));
        }
        Ok(())
    }
}

/// `avg ← decay · avg + (1 − decay) · scale · row`, element by element, adding each new value's
/// square to `norm_sq`; `avg[0]` is entry `at` of its task's row.
fn fold_row(avg: &mut [f32], row: &[f32], scale: f64, decay: f64, at: usize, norm_sq: &mut SumSq) {
    let fold = |a: &mut f32, g: f32| {
        let g = scale * f64::from(g);
        *a = (g + decay * (f64::from(*a) - g)) as f32;
        f64::from(*a)
    };
    // Up to the next multiple of the lane count one by one, then whole lane groups, which the
    // compiler turns into vector instructions, then the rest one by one.
    let head = ((LANES - at % LANES) % LANES).min(avg.len());
    let (avg_head, avg_body) = avg.split_at_mut(head);
    let (row_head, row_body) = row.split_at(head);
    for (i, (a, &g)) in avg_head.iter_mut().zip(row_head).enumerate() {
        norm_sq.add(at + i, fold(a, g));
    }
    let tail_at = at + head + (avg_body.len() / LANES) * LANES;
    let mut avg_groups = avg_body.chunks_exact_mut(LANES);
    let mut row_groups = row_body.chunks_exact(LANES);
    for (a, g) in (&mut avg_groups).zip(&mut row_groups) {
        for lane in 0..LANES {
            let v = fold(&mut a[lane], g[lane]);
            norm_sq.lanes[lane] += v * v;
        }
    }
    for (i, (a, &g)) in
        avg_groups.into_remainder().iter_mut().zip(row_groups.remainder()).enumerate()
    {
        norm_sq.add(tail_at + i, fold(a, g));
    }
}

/// The lanes of a sum of squares: entry `i` of a row goes to lane `i % LANES`, so the sum is the
/// same whether the row comes whole or in blocks, and the lanes let it run as vector code.
const LANES: usize = 8;

/// A sum of squares in [`LANES`] `f64` lanes, combined in a fixed order.
#[derive(Debug, Clone, Copy, Default)]
struct SumSq {
    lanes: [f64; LANES],
}

impl SumSq {
    /// Adds the square of `v`, entry `i` of its row.
    fn add(&mut self, i: usize, v: f64) {
        self.lanes[i % LANES] += v * v;
    }

    /// The row's sum of squares.
    fn total(&self) -> f64 {
        let l = &self.lanes;
        ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
    }

    /// The sum of squares of the whole row `row`.
    fn of(row: &[f32]) -> f64 {
        let mut sum = SumSq::default();
        let mut groups = row.chunks_exact(LANES);
        for g in &mut groups {
            for (acc, &v) in sum.lanes.iter_mut().zip(g) {
                *acc += f64::from(v) * f64::from(v);
            }
        }
        let start = row.len() - groups.remainder().len();
        for (i, &v) in groups.remainder().iter().enumerate() {
            sum.add(start + i, f64::from(v));
        }
        sum.total()
    }
}

impl Weighting for DbMtl {
    fn name(&self) -> &'static str {
        "db-mtl"
    }

    fn needs(&self) -> Needs {
        Needs { shared_gradients: true, ..Needs::LOSSES }
    }

    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        self.check(input.losses)?;
        let grads = input.shared_gradients("db-mtl")?;
        let t = grads.tasks();
        if t != input.losses.len() {
            return Err(WeightingError::Invalid {
                method: "db-mtl",
                message: format!("{} gradients for {} losses", t, input.losses.len()),
            });
        }
        let size = t * grads.dim();
        if self.average.len() != size {
            self.average = vec![0.0; size];
            self.updates = 0;
        }
        self.updates += 1;
        let decay = Self::decay(self.beta, self.beta_sigma, self.updates);
        let norms_sq = self.fold_blocks(grads, input.losses, decay);
        let norms = norms_sq.iter().map(|s| s.sqrt()).collect();
        let (d, alpha, norms) = Self::direction_with_norms(&self.average, t, norms);
        Ok(StepWeights {
            weights: input.losses.iter().map(|l| 1.0 / (l + DB_MTL_EPS)).collect(),
            direction: Some(Direction::Shared(d)),
            diagnostics: vec![("db_mtl.alpha".into(), alpha), ("db_mtl.ema_norms".into(), norms)],
        })
    }

    fn state(&self) -> WeightingState {
        let mut state = WeightingState::new();
        state.insert(AVERAGE, self.average.iter().map(|&v| f64::from(v)).collect());
        state.insert_count(UPDATES, self.updates);
        state
    }

    fn set_state(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        state.check_keys("db-mtl", &[AVERAGE, UPDATES])?;
        let average = state.f32s("db-mtl", AVERAGE)?;
        let updates = state.count("db-mtl", UPDATES)?;
        (self.average, self.updates) = (average, updates);
        Ok(())
    }
}
