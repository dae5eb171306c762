//! The meta-learning algorithms, one outer step at a time.
//!
//! With θ the initialisation, a task's inner loop `φ_0 = θ`, `φ_{j+1} = φ_j − α ∇L_s(φ_j)` (k
//! steps on the support loss `L_s`) and its query loss `L_q(φ_k)`:
//!
//! | algorithm | outer gradient of one task | cost per task |
//! | --- | --- | --- |
//! | MAML | `dL_q(φ_k)/dθ = Π_j (I − α ∇²L_s(φ_j)) · ∇L_q(φ_k)` (the inner gradients recorded, so the Hessian-vector products are part of the backward) | k recorded backwards + one backward through all of them (≈ 3× first order) |
//! | first-order MAML | `∇L_q(φ_k)` (the inner gradients treated as constants: each Jacobian taken as `I`) | k + 1 eager backwards |
//! | Meta-SGD | as MAML, with `α` a learned tensor per parameter: `φ_{j+1} = φ_j − α ⊙ ∇L_s(φ_j)`, and `dL_q/dα` from the same backward | as MAML |
//! | Reptile | no gradient of `L_q`: `θ ← θ + ε (mean over tasks of φ_k − θ)`, with k steps of SGD or Adam on the support set and ε annealed linearly to 0 | k eager backwards |
//!
//! MAML, first-order MAML and Meta-SGD average the outer gradients of a meta-batch and take one
//! Adam step. **Memory stays bounded**: each task's query loss is backpropagated inside the
//! meta-batch loop on its own tape, which is dropped before the next task, so at most one
//! task's unrolled graph (k inner steps) is alive per thread, whatever the meta-batch size.
//! Tasks of a meta-batch run in parallel on the rayon pool and their gradients are summed in
//! task order, so a run is the same for a seed and a thread count.

use rayon::prelude::*;
use tapestry_autodiff::Tape;
use tapestry_nn::optim::{Adam, Optimizer, Sgd};
use tapestry_nn::{Bound, Module, ParamGrads, Params};

use crate::adapt::{adapt, evaluate, InnerRate};
use crate::error::MetaError;
use crate::task::{loss, Task};

/// The algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MAML with the meta-gradient through the recorded inner steps (second order).
    Maml,
    /// MAML with the inner gradients treated as constants.
    FoMaml,
    /// MAML with a learned per-element inner learning rate.
    MetaSgd,
    /// Reptile: move θ towards the adapted parameters.
    Reptile,
}

impl Algorithm {
    /// The names [`Algorithm::from_name`] takes.
    pub const NAMES: [&'static str; 4] = ["maml", "fomaml", "metasgd", "reptile"];

    /// The algorithm called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "maml" => Some(Algorithm::Maml),
            "fomaml" => Some(Algorithm::FoMaml),
            "metasgd" => Some(Algorithm::MetaSgd),
            "reptile" => Some(Algorithm::Reptile),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Maml => "maml",
            Algorithm::FoMaml => "fomaml",
            Algorithm::MetaSgd => "metasgd",
            Algorithm::Reptile => "reptile",
        }
    }
}

/// The inner optimizer of Reptile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerOptimizer {
    /// Plain SGD at the inner learning rate.
    Sgd,
    /// Adam at the inner learning rate (Nichol et al.'s choice), fresh for every task.
    Adam,
}

/// Everything the outer loop depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaConfig {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Inner steps k in meta-training (at least 1).
    pub inner_steps: usize,
    /// The inner learning rate α (Meta-SGD: the initial value of every rate).
    pub inner_lr: f32,
    /// Tasks per outer step.
    pub meta_batch: usize,
    /// The outer learning rate: Adam's for MAML, first-order MAML and Meta-SGD; Reptile's
    /// initial ε.
    pub outer_lr: f64,
    /// Reptile's inner optimizer.
    pub reptile_inner: InnerOptimizer,
    /// The number of outer steps planned (Reptile anneals ε linearly to 0 over them).
    pub iterations: u64,
}

impl Default for MetaConfig {
    /// MAML's sinusoid setting (Finn et al., 2017): one inner step at α = 0.01, meta-batch 25,
    /// Adam at 1e-3, 70,000 iterations.
    fn default() -> Self {
        MetaConfig {
            algorithm: Algorithm::Maml,
            inner_steps: 1,
            inner_lr: 0.01,
            meta_batch: 25,
            outer_lr: 1e-3,
            reptile_inner: InnerOptimizer::Sgd,
            iterations: 70_000,
        }
    }
}

impl MetaConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// [`MetaError::Config`] naming the value out of range.
    pub fn validate(&self) -> Result<(), MetaError> {
        let bad = |m: String| Err(MetaError::Config(m));
        if self.inner_steps == 0 {
            return bad(format!(
                "{} needs at least one inner step (got 0): without one there is nothing to adapt",
                self.algorithm.name()
            ));
        }
        if !(self.inner_lr.is_finite() && self.inner_lr > 0.0) {
            return bad(format!("the inner learning rate must be positive, got {}", self.inner_lr));
        }
        if self.meta_batch == 0 {
            return bad("the meta-batch must hold at least one task".into());
        }
        if !(self.outer_lr.is_finite() && self.outer_lr > 0.0) {
            return bad(format!("the outer learning rate must be positive, got {}", self.outer_lr));
        }
        if self.iterations == 0 {
            return bad("at least one meta-iteration".into());
        }
        Ok(())
    }
}

/// What one outer step reports.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaStepReport {
    /// The outer step, from 0.
    pub iteration: u64,
    /// The mean query loss before adaptation (at θ).
    pub query_before: f64,
    /// The mean query loss after the k inner steps: the meta-loss.
    pub query_after: f64,
}

/// A learned initialisation and its outer loop.
#[derive(Debug)]
pub struct MetaLearner {
    config: MetaConfig,
    model: Box<dyn Module>,
    params: Params,
    /// Meta-SGD's per-element learning rates, one tensor per parameter.
    rates: Option<Params>,
    outer: Adam,
    outer_rates: Adam,
    iteration: u64,
}

impl MetaLearner {
    /// A learner of `model`'s initialisation, starting at `params`.
    ///
    /// # Errors
    /// As [`MetaConfig::validate`].
    pub fn new(
        config: MetaConfig,
        model: Box<dyn Module>,
        params: Params,
    ) -> Result<Self, MetaError> {
        config.validate()?;
        let rates = (config.algorithm == Algorithm::MetaSgd)
            .then(|| learning_rates(&params, config.inner_lr))
            .transpose()?;
        let outer = Adam::new(config.outer_lr);
        let outer_rates = Adam::new(config.outer_lr);
        Ok(MetaLearner { config, model, params, rates, outer, outer_rates, iteration: 0 })
    }

    /// The configuration.
    pub fn config(&self) -> &MetaConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &dyn Module {
        self.model.as_ref()
    }

    /// The initialisation θ.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Meta-SGD's learned rates (`None` for the other algorithms).
    pub fn rates(&self) -> Option<&Params> {
        self.rates.as_ref()
    }

    /// The inner learning rate adaptation uses: the learned rates for Meta-SGD, α otherwise.
    pub fn inner_rate(&self) -> InnerRate<'_> {
        match &self.rates {
            Some(r) => InnerRate::PerElement(r),
            None => InnerRate::Scalar(self.config.inner_lr),
        }
    }

    /// Outer steps taken.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// One outer step on the meta-batch `tasks`.
    ///
    /// # Errors
    /// [`MetaError::Config`] for an empty meta-batch; [`MetaError::NonFinite`] (naming the
    /// iteration) if a loss is NaN or infinite, and then θ is unchanged.
    pub fn step(&mut self, tasks: &[Task]) -> Result<MetaStepReport, MetaError> {
        if tasks.is_empty() {
            return Err(MetaError::Config("an empty meta-batch".into()));
        }
        let it = self.iteration;
        let report = match self.config.algorithm {
            Algorithm::Reptile => self.reptile_step(tasks)?,
            _ => self.gradient_step(tasks)?,
        };
        for (what, value) in [("query", report.query_before), ("query", report.query_after)] {
            if !value.is_finite() {
                return Err(MetaError::NonFinite { what, value, iteration: it });
            }
        }
        self.iteration += 1;
        Ok(report)
    }

    /// MAML, first-order MAML and Meta-SGD: the mean outer gradient, then Adam.
    fn gradient_step(&mut self, tasks: &[Task]) -> Result<MetaStepReport, MetaError> {
        let (model, params, rates) = (self.model.as_ref(), &self.params, self.rates.as_ref());
        let config = &self.config;
        let per_task: Vec<OuterGradient> =
            tasks.par_iter().map(|t| outer_gradient(model, params, rates, t, config)).collect();
        let n = tasks.len() as f32;
        let mut grads = ParamGrads::zeros(params);
        let mut rate_grads = rates.map(ParamGrads::zeros);
        let (mut before, mut after) = (0.0, 0.0);
        for t in &per_task {
            if !(t.query_before.is_finite() && t.query_after.is_finite()) {
                let value = if t.query_after.is_finite() { t.query_before } else { t.query_after };
                return Err(MetaError::NonFinite {
                    what: "query",
                    value,
                    iteration: self.iteration,
                });
            }
            grads.add_assign(&t.params);
            if let (Some(acc), Some(g)) = (&mut rate_grads, &t.rates) {
                acc.add_assign(g);
            }
            before += t.query_before;
            after += t.query_after;
        }
        grads.scale(1.0 / n);
        self.outer.step(&mut self.params, &grads);
        if let (Some(r), Some(mut g)) = (&mut self.rates, rate_grads) {
            g.scale(1.0 / n);
            self.outer_rates.step(r, &g);
        }
        let n = f64::from(n);
        Ok(MetaStepReport {
            iteration: self.iteration,
            query_before: before / n,
            query_after: after / n,
        })
    }

    /// Reptile: `θ ← θ + ε (mean φ_k − θ)`, ε annealed linearly from the outer learning rate
    /// to 0 over the planned iterations.
    fn reptile_step(&mut self, tasks: &[Task]) -> Result<MetaStepReport, MetaError> {
        let (model, params, config) = (self.model.as_ref(), &self.params, &self.config);
        let adapted: Vec<(Params, f64, f64)> = tasks
            .par_iter()
            .map(|t| {
                let before = evaluate(model, params, &t.query);
                let phi = reptile_inner(model, params, t, config);
                let after = evaluate(model, &phi, &t.query);
                (phi, before, after)
            })
            .collect();
        let progress = self.iteration as f64 / config.iterations as f64;
        let epsilon = (config.outer_lr * (1.0 - progress)).max(0.0) as f32;
        let n = tasks.len() as f32;
        let (mut before, mut after) = (0.0, 0.0);
        for (_, b, a) in &adapted {
            if !(b.is_finite() && a.is_finite()) {
                let value = if a.is_finite() { *b } else { *a };
                return Err(MetaError::NonFinite {
                    what: "query",
                    value,
                    iteration: self.iteration,
                });
            }
            before += b;
            after += a;
        }
        for id in self.params.ids() {
            let mut mean = vec![0.0f32; self.params.get(id).len()];
            for (phi, _, _) in &adapted {
                mean.iter_mut().zip(phi.get(id).as_slice()).for_each(|(m, p)| *m += p / n);
            }
            self.params.update(id, |theta| {
                theta.iter_mut().zip(&mean).for_each(|(t, m)| *t += epsilon * (m - *t));
            });
        }
        let n = f64::from(n);
        Ok(MetaStepReport {
            iteration: self.iteration,
            query_before: before / n,
            query_after: after / n,
        })
    }

    /// Adapts the learned initialisation to `task` with `steps` inner steps (at the learned
    /// rates for Meta-SGD), recording the query loss after each.
    ///
    /// # Errors
    /// As [`adapt`].
    pub fn adapt(&self, task: &Task, steps: usize) -> Result<crate::Adapted, MetaError> {
        adapt(self.model.as_ref(), &self.params, self.inner_rate(), task, steps)
    }
}

/// Meta-SGD's rates: a store with one tensor per parameter, of its shape, filled with `alpha`,
/// named `lr.<parameter>`.
///
/// # Errors
/// [`MetaError::Nn`] if a name cannot be registered.
pub fn learning_rates(params: &Params, alpha: f32) -> Result<Params, MetaError> {
    let mut rates = Params::new();
    for id in params.ids() {
        let shape = params.get(id).shape().to_vec();
        rates.add(
            format!("lr.{}", params.name(id)),
            tapestry_autodiff::Tensor::full(&shape, alpha),
        )?;
    }
    Ok(rates)
}

/// One task's outer gradient and query losses.
#[derive(Debug, Clone)]
pub struct OuterGradient {
    /// `dL_q(φ_k)/dθ` (first-order MAML: `∇L_q(φ_k)`).
    pub params: ParamGrads,
    /// Meta-SGD: `dL_q(φ_k)/dα`.
    pub rates: Option<ParamGrads>,
    /// The query loss at θ.
    pub query_before: f64,
    /// The query loss at φ_k.
    pub query_after: f64,
}

/// The outer gradient of one task for MAML, first-order MAML (by `config.algorithm`) or, with
/// `rates`, Meta-SGD, on a tape of its own that is dropped before it returns.
///
/// # Panics
/// If `rates` does not have one tensor per parameter of `params` with its shape (a
/// [`MetaLearner`] builds them so), or `config.algorithm` is Reptile, which has no outer
/// gradient.
pub fn outer_gradient(
    model: &dyn Module,
    params: &Params,
    rates: Option<&Params>,
    task: &Task,
    config: &MetaConfig,
) -> OuterGradient {
    assert!(config.algorithm != Algorithm::Reptile, "Reptile has no outer gradient");
    let tape = Tape::new();
    let theta = params.bind(&tape);
    let alpha = rates.map(|r| r.bind(&tape));
    let mut buffers = params.buffers().clone();
    let query_before = {
        let q = tape.no_grad(|| loss(model, &theta, &mut buffers.clone(), &task.query));
        f64::from(q.value().item())
    };
    let mut phi = theta.clone();
    for _ in 0..config.inner_steps {
        let support = loss(model, &phi, &mut buffers, &task.support);
        let grads = match config.algorithm {
            // The gradients as constants: the outer backward passes each step's Jacobian as I.
            Algorithm::FoMaml => {
                let g = tape.grad(support, phi.all_vars());
                phi.all_vars().iter().map(|&v| tape.constant(g.wrt(v))).collect()
            }
            _ => tape.grad_graph(support, phi.all_vars()),
        };
        phi = match &alpha {
            None => phi.sgd_step(&grads, config.inner_lr),
            Some(a) => {
                let vars = (phi.all_vars().iter().zip(a.all_vars()).zip(&grads))
                    .map(|((&p, &r), &g)| p - r * g)
                    .collect();
                Bound::from_vars(params, vars).expect("one value per parameter, on one tape")
            }
        };
    }
    let query = loss(model, &phi, &mut buffers, &task.query);
    let query_after = f64::from(query.value().item());
    let grads = tape.backward(query);
    OuterGradient {
        params: theta.grads(&grads),
        rates: alpha.map(|a| a.grads(&grads)),
        query_before,
        query_after,
    }
}

/// Reptile's inner loop: k steps of SGD or Adam (fresh) on the support set from θ.
fn reptile_inner(model: &dyn Module, params: &Params, task: &Task, config: &MetaConfig) -> Params {
    let mut phi = params.clone();
    let mut opt: Box<dyn Optimizer> = match config.reptile_inner {
        InnerOptimizer::Sgd => Box::new(Sgd::new(f64::from(config.inner_lr))),
        InnerOptimizer::Adam => Box::new(Adam::new(f64::from(config.inner_lr))),
    };
    for _ in 0..config.inner_steps {
        let tape = Tape::new();
        let bound = phi.bind(&tape);
        let mut buffers = phi.buffers().clone();
        let l = loss(model, &bound, &mut buffers, &task.support);
        let grads = bound.grads(&tape.backward(l));
        drop(bound);
        opt.step(&mut phi, &grads);
    }
    phi
}
