//! Adaptation: what a learned initialisation is scored by. From θ, take k steps of gradient
//! descent on the task's support loss, `φ_{j+1} = φ_j − α ⊙ ∇L_support(φ_j)` (α one number, or
//! one per parameter element for Meta-SGD), and record the query loss at every `φ_j`.
//!
//! Eager: each step is one forward and one backward on its own tape, nothing is recorded across
//! steps (scoring needs no meta-gradient).

use tapestry_autodiff::Tape;
use tapestry_nn::{Module, Params};

use crate::error::MetaError;
use crate::task::{loss, Split, Task};

/// The inner learning rate: one number for every parameter, or a store of per-element rates
/// with the model's parameter shapes (Meta-SGD's α), in the model's parameter order.
#[derive(Debug, Clone, Copy)]
pub enum InnerRate<'a> {
    /// `α` for every element.
    Scalar(f32),
    /// One rate per parameter element.
    PerElement(&'a Params),
}

/// The result of adapting to one task.
#[derive(Debug, Clone)]
pub struct Adapted {
    /// The adapted parameters φ_k.
    pub params: Params,
    /// The query loss at φ_0 = θ, φ_1, ..., φ_k (k + 1 values).
    pub query_losses: Vec<f64>,
}

/// The loss of `model` with `params` on `split`, forward only (BatchNorm on a copy of the
/// buffers, transductive).
pub fn evaluate(model: &dyn Module, params: &Params, split: &Split) -> f64 {
    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let mut buffers = params.buffers().clone();
    f64::from(tape.no_grad(|| loss(model, &bound, &mut buffers, split)).value().item())
}

/// Applies `φ ← φ − α ⊙ g` to every parameter of `params`, with `g` the gradient of `split`'s
/// loss at `params`; returns that loss.
pub(crate) fn sgd_step(
    model: &dyn Module,
    params: &mut Params,
    rate: InnerRate<'_>,
    split: &Split,
) -> f64 {
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut buffers = params.buffers().clone();
    let l = loss(model, &bound, &mut buffers, split);
    let value = f64::from(l.value().item());
    let grads = bound.grads(&tape.backward(l));
    drop(bound);
    for (i, id) in params.ids().into_iter().enumerate() {
        let g = grads.get(id).as_slice();
        match rate {
            InnerRate::Scalar(a) => {
                params.update(id, |v| v.iter_mut().zip(g).for_each(|(x, g)| *x -= a * g));
            }
            InnerRate::PerElement(rates) => {
                let a = rates.get(rates.ids()[i]).as_slice();
                params
                    .update(id, |v| v.iter_mut().zip(g).zip(a).for_each(|((x, g), a)| *x -= a * g));
            }
        }
    }
    value
}

/// Adapts `params` to `task` with `steps` steps of gradient descent at `rate` on the support
/// set, recording the query loss before and after each step. When adaptation diverges (a rate
/// too large for the number of steps, as Meta-SGD's learned rates can be beyond the steps they
/// were learned for), the losses from there on are recorded as they come, infinite or NaN:
/// [`adaptation_curve`] counts such tasks instead of averaging them.
///
/// # Errors
/// [`MetaError::Config`] if a per-element rate store does not have the model's parameter
/// shapes.
pub fn adapt(
    model: &dyn Module,
    params: &Params,
    rate: InnerRate<'_>,
    task: &Task,
    steps: usize,
) -> Result<Adapted, MetaError> {
    if let InnerRate::PerElement(rates) = rate {
        check_rates(params, rates)?;
    }
    let mut phi = params.clone();
    let mut query_losses = vec![evaluate(model, &phi, &task.query)];
    for _ in 0..steps {
        if !query_losses.last().is_some_and(|l| l.is_finite()) {
            query_losses.push(f64::NAN);
            continue;
        }
        sgd_step(model, &mut phi, rate, &task.support);
        query_losses.push(evaluate(model, &phi, &task.query));
    }
    Ok(Adapted { params: phi, query_losses })
}

/// The query loss over many tasks after some number of adaptation steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// The mean over the tasks whose adaptation stayed finite.
    pub mean: f64,
    /// Its 95% confidence half-width, 1.96 standard errors.
    pub ci95: f64,
    /// Tasks whose adaptation diverged (a non-finite loss), left out of the mean.
    pub diverged: usize,
}

/// The query loss after 0, 1, ..., `steps` adaptation steps over `tasks`.
///
/// # Errors
/// As [`adapt`].
pub fn adaptation_curve(
    model: &dyn Module,
    params: &Params,
    rate: InnerRate<'_>,
    tasks: &[Task],
    steps: usize,
) -> Result<Vec<CurvePoint>, MetaError> {
    let curves = tasks
        .iter()
        .map(|t| adapt(model, params, rate, t, steps).map(|a| a.query_losses))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..=steps)
        .map(|j| {
            let finite: Vec<f64> = curves.iter().map(|c| c[j]).filter(|l| l.is_finite()).collect();
            let (mean, ci95) = mean_ci(&finite);
            CurvePoint { mean, ci95, diverged: tasks.len() - finite.len() }
        })
        .collect())
}

/// The mean of `values` and its 95% confidence half-width, `1.96 · s / √n`.
pub fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// Checks that `rates` has one tensor per parameter of `params`, of the same shape.
pub(crate) fn check_rates(params: &Params, rates: &Params) -> Result<(), MetaError> {
    if rates.len() != params.len() {
        return Err(MetaError::Config(format!(
            "{} learning-rate tensors for {} parameters",
            rates.len(),
            params.len()
        )));
    }
    for (p, r) in params.ids().into_iter().zip(rates.ids()) {
        if params.get(p).shape() != rates.get(r).shape() {
            return Err(MetaError::Config(format!(
                "the learning rate of {} has shape {:?}, the parameter {:?}",
                params.name(p),
                rates.get(r).shape(),
                params.get(p).shape()
            )));
        }
    }
    Ok(())
}
