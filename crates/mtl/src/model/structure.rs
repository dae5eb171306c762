//! Explicit structure encoding: regularisers on the stack of a layer's per-task weights.
//!
//! For a layer that every task has a copy of (a tower's layer, or a head's), stack the T copies,
//! each flattened, into the `T × n` unfolding `W`. Two penalties read structure off `W`:
//!
//! - **Trace norm** (Yang & Hospedales, 2017): `λ‖W‖_*`, the sum of W's singular values, a
//!   convex surrogate of its rank: it pulls the tasks' weights into a low-dimensional subspace.
//!   With `W = U Σ Vᵀ`, `‖W‖_* = ⟨U Vᵀ, W⟩`, and `U Vᵀ` is a subgradient. From the `T × T`
//!   symmetric eigendecomposition `W Wᵀ = Q Λ Qᵀ`: `U Vᵀ = Q Λ^{−½} Qᵀ W` on the non-zero
//!   eigenvalues (0 on the null space, a valid subgradient). Cost: the `T × T` Gram `W Wᵀ`
//!   (`T²·n`), its eigendecomposition (`T³`), and one `T × T` by `T × n` product.
//! - **Task relationships** (MTRL, Zhang & Yeung, 2010): `λ tr(Wᵀ Ω⁻¹ W) = λ Σ_{s,t}
//!   (Ω⁻¹)_{st} ⟨w_s, w_t⟩` with a learned task covariance Ω, updated in closed form every k
//!   steps, `Ω = ((W Wᵀ)^{½} + εI) / tr((W Wᵀ)^{½} + εI)` (the minimiser over covariances with
//!   unit trace; ε keeps it invertible). Between updates Ω is a constant (alternating
//!   optimisation). At the closed-form Ω with ε = 0 the penalty equals `‖W‖_*²`.
//!
//! The eigendecompositions use nalgebra's `SymmetricEigen` in f64: T is small, a symmetric
//! eigensolver is exactly what both formulas need, and nalgebra's is well tested; a
//! hand-written Jacobi sweep would be one more thing to get right.

use std::sync::Mutex;

use nalgebra::{DMatrix, SymmetricEigen};
use tapestry_autodiff::{Tensor, Var};
use tapestry_data::TaskSpec;
use tapestry_nn::{Ctx, ParamId, Params};

use super::{ModelOutput, MultiTaskModel, HEADS_PREFIX, TOWERS_PREFIX};
use crate::error::MtlError;

/// A structure-encoding penalty on one per-task layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Regularizer {
    /// `λ‖W‖_*` on the stacked copies of `layer`.
    TraceNorm {
        /// The strength λ ≥ 0.
        lambda: f32,
        /// The layer, named inside a task's tower or head (`0.weight`, `weight`).
        layer: String,
    },
    /// `λ tr(Wᵀ Ω⁻¹ W)` with Ω updated in closed form every `every` steps.
    TaskRelation {
        /// The strength λ ≥ 0.
        lambda: f32,
        /// The layer, named inside a task's tower or head.
        layer: String,
        /// Steps between updates of Ω (≥ 1).
        every: u64,
        /// The ridge ε > 0 added to `(W Wᵀ)^{½}`.
        eps: f64,
    },
}

/// One penalty with the layer's parameter in each task and, for task relations, the current Ω.
#[derive(Debug)]
struct Term {
    regularizer: Regularizer,
    group: Vec<ParamId>,
    /// `(Ω, Ω⁻¹)`, each `T × T` row-major.
    omega: Mutex<(Vec<f64>, Vec<f64>)>,
}

/// Any multi-task model with structure-encoding penalties added to its auxiliary loss.
#[derive(Debug)]
pub struct Regularized {
    inner: Box<dyn MultiTaskModel>,
    terms: Vec<Term>,
}

/// `(W Wᵀ)`'s eigendecomposition.
fn gram_eigen(w: &DMatrix<f64>) -> SymmetricEigen<f64, nalgebra::Dyn> {
    SymmetricEigen::new(w * w.transpose())
}

/// A function of `W Wᵀ = Q Λ Qᵀ`'s eigenvalues applied as `Q f(Λ) Qᵀ`.
fn spectral(e: &SymmetricEigen<f64, nalgebra::Dyn>, f: impl Fn(f64) -> f64) -> DMatrix<f64> {
    let d = DMatrix::from_diagonal(&e.eigenvalues.map(|l| f(l.max(0.0))));
    &e.eigenvectors * d * e.eigenvectors.transpose()
}

/// The subgradient `U Vᵀ = (W Wᵀ)^{−½} W` of the trace norm at the `T × n` matrix `w`
/// (row-major), 0 on W's null space.
pub fn trace_norm_subgradient(w: &[f32], t: usize) -> Vec<f32> {
    let n = w.len() / t.max(1);
    let m = DMatrix::from_row_slice(t, n, &w.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
    let e = gram_eigen(&m);
    let top = e.eigenvalues.iter().fold(0.0f64, |a, &b| a.max(b));
    let tol = top * 1e-10 * t as f64;
    let p = spectral(&e, |l| if l > tol { 1.0 / l.sqrt() } else { 0.0 }) * &m;
    let mut out = Vec::with_capacity(t * n);
    for i in 0..t {
        out.extend((0..n).map(|j| p[(i, j)] as f32));
    }
    out
}

/// The trace norm `‖W‖_*` of a `[T, n]` value, as `⟨U Vᵀ, W⟩` with the subgradient `U Vᵀ` a
/// constant: its value is the sum of singular values and its gradient the subgradient.
pub fn nuclear_norm(w: Var<'_>) -> Var<'_> {
    let shape = w.shape();
    let p = trace_norm_subgradient(w.value().as_slice(), shape[0]);
    let p = w.tape().constant(Tensor::from_vec(&shape, p).expect("shape"));
    (w * p).sum_all()
}

/// MTRL's closed-form task covariance for the `T × n` matrix `w` (row-major):
/// `Ω = ((W Wᵀ)^{½} + εI) / tr(..)`, with its inverse; both `T × T` row-major.
pub fn task_relation_omega(w: &[f32], t: usize, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let n = w.len() / t.max(1);
    let m = DMatrix::from_row_slice(t, n, &w.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
    let e = gram_eigen(&m);
    let trace: f64 = e.eigenvalues.iter().map(|l| l.max(0.0).sqrt() + eps).sum();
    let omega = spectral(&e, |l| (l.sqrt() + eps) / trace);
    let inverse = spectral(&e, |l| trace / (l.sqrt() + eps));
    let flat = |m: DMatrix<f64>| {
        (0..t).flat_map(|i| (0..t).map(move |j| (i, j))).map(|ij| m[ij]).collect()
    };
    (flat(omega), flat(inverse))
}

/// The per-task parameter called `layer` inside task `task`'s tower or head.
fn per_task_param(params: &Params, task: &str, layer: &str) -> Option<ParamId> {
    [TOWERS_PREFIX, HEADS_PREFIX].iter().find_map(|p| params.id(&format!("{p}{task}.{layer}")))
}

impl Regularized {
    /// Wraps `inner`, resolving each penalty's layer in every task.
    ///
    /// # Errors
    /// [`MtlError::Model`] if a λ is negative or not finite, `every` is 0 or ε not positive, a
    /// task lacks the layer (in its tower or head), or the copies differ in shape.
    pub fn new(
        inner: impl MultiTaskModel + 'static,
        params: &Params,
        regularizers: Vec<Regularizer>,
    ) -> Result<Self, MtlError> {
        let bad = |m: String| Err(MtlError::Model(m));
        let tasks: Vec<String> = inner.tasks().iter().map(|t| t.name.clone()).collect();
        let mut terms = Vec::new();
        for regularizer in regularizers {
            let (what, lambda, layer) = match &regularizer {
                Regularizer::TraceNorm { lambda, layer } => ("trace norm", *lambda, layer.clone()),
                Regularizer::TaskRelation { lambda, layer, every, eps } => {
                    if *every == 0 {
                        return bad(
                            "the task relation's update interval must be at least 1 step".into()
                        );
                    }
                    if !(*eps > 0.0 && eps.is_finite()) {
                        return bad(format!("the task relation's eps must be positive, got {eps}"));
                    }
                    ("task relation", *lambda, layer.clone())
                }
            };
            if !(lambda >= 0.0 && lambda.is_finite()) {
                return bad(format!(
                    "the {what}'s lambda must be finite and at least 0, got {lambda}"
                ));
            }
            let mut group = Vec::new();
            for task in &tasks {
                let Some(id) = per_task_param(params, task, &layer) else {
                    return bad(format!(
                        "the {what} is on layer `{layer}`, but task `{task}` has no `{TOWERS_PREFIX}{task}.{layer}` or `{HEADS_PREFIX}{task}.{layer}`"
                    ));
                };
                if params.get(id).shape()
                    != params.get(group.first().copied().unwrap_or(id)).shape()
                {
                    return bad(format!(
                        "the {what}'s layer `{layer}` has different shapes in different tasks"
                    ));
                }
                group.push(id);
            }
            let t = tasks.len();
            let identity_over_t: Vec<f64> =
                (0..t * t).map(|i| if i / t == i % t { 1.0 / t as f64 } else { 0.0 }).collect();
            let identity_times_t: Vec<f64> =
                identity_over_t.iter().map(|v| v * (t * t) as f64).collect();
            terms.push(Term {
                regularizer,
                group,
                omega: Mutex::new((identity_over_t, identity_times_t)),
            });
        }
        Ok(Regularized { inner: Box::new(inner), terms })
    }

    /// The current task covariance Ω of the first task-relation penalty (`T × T` row-major).
    pub fn omega(&self) -> Option<Vec<f64>> {
        self.terms
            .iter()
            .find(|t| matches!(t.regularizer, Regularizer::TaskRelation { .. }))
            .map(|t| t.omega.lock().expect("omega").0.clone())
    }

    fn penalty<'t>(&self, term: &Term, ctx: &Ctx<'_, 't>) -> Var<'t> {
        let flat: Vec<Var<'t>> = term
            .group
            .iter()
            .map(|&id| {
                let v = ctx.var(id);
                v.reshape(&[v.shape().iter().product()])
            })
            .collect();
        let w = Var::stack(&flat, 0);
        match term.regularizer {
            Regularizer::TraceNorm { lambda, .. } => nuclear_norm(w) * lambda,
            Regularizer::TaskRelation { lambda, .. } => {
                let t = flat.len();
                let inverse: Vec<f32> =
                    term.omega.lock().expect("omega").1.iter().map(|&v| v as f32).collect();
                let inverse = w.tape().constant(Tensor::from_vec(&[t, t], inverse).expect("T x T"));
                (w.matmul(w.transpose(0, 1)) * inverse).sum_all() * lambda
            }
        }
    }
}

impl MultiTaskModel for Regularized {
    fn tasks(&self) -> &[TaskSpec] {
        self.inner.tasks()
    }

    fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> ModelOutput<'t> {
        let mut out = self.inner.forward(x, ctx);
        for term in &self.terms {
            let p = self.penalty(term, ctx);
            out.aux_loss = Some(out.aux_loss.map_or(p, |a| a + p));
        }
        out
    }

    fn shared_params(&self) -> Vec<ParamId> {
        self.inner.shared_params()
    }

    fn shares_representation(&self) -> bool {
        self.inner.shares_representation()
    }

    fn input_shape(&self) -> Option<&[usize]> {
        self.inner.input_shape()
    }

    fn default_gradnorm_param(&self, params: &Params) -> Option<ParamId> {
        self.inner.default_gradnorm_param(params)
    }

    fn after_step(&self, params: &Params, step: u64) {
        self.inner.after_step(params, step);
        for term in &self.terms {
            if let Regularizer::TaskRelation { every, eps, .. } = term.regularizer {
                if (step + 1).is_multiple_of(every) {
                    let rows: Vec<f32> = term
                        .group
                        .iter()
                        .flat_map(|&id| params.get(id).as_slice().to_vec())
                        .collect();
                    *term.omega.lock().expect("omega") =
                        task_relation_omega(&rows, term.group.len(), eps);
                }
            }
        }
    }

    fn state(&self) -> Vec<(String, Vec<f64>)> {
        let mut out = self.inner.state();
        for (k, term) in self.terms.iter().enumerate() {
            if matches!(term.regularizer, Regularizer::TaskRelation { .. }) {
                let (omega, inverse) = term.omega.lock().expect("omega").clone();
                out.push((format!("task_relation.{k}.omega"), omega));
                out.push((format!("task_relation.{k}.omega_inverse"), inverse));
            }
        }
        out
    }

    fn set_state(&self, state: &[(String, Vec<f64>)]) -> Result<(), MtlError> {
        let (ours, inner): (Vec<_>, Vec<_>) =
            state.iter().cloned().partition(|(name, _)| name.starts_with("task_relation."));
        self.inner.set_state(&inner)?;
        let mut restored = vec![(None, None); self.terms.len()];
        for (name, values) in ours {
            let unknown = || MtlError::Model(format!("unknown model state `{name}`"));
            let rest = name.strip_prefix("task_relation.").ok_or_else(unknown)?;
            let (k, what) = rest.split_once('.').ok_or_else(unknown)?;
            let k: usize = k.parse().map_err(|_| unknown())?;
            let term = self.terms.get(k).ok_or_else(unknown)?;
            if !matches!(term.regularizer, Regularizer::TaskRelation { .. }) {
                return Err(unknown());
            }
            let t = term.group.len();
            if values.len() != t * t {
                return Err(MtlError::Model(format!(
                    "model state `{name}` has {} values, not {t} x {t}",
                    values.len()
                )));
            }
            match what {
                "omega" => restored[k].0 = Some(values),
                "omega_inverse" => restored[k].1 = Some(values),
                _ => return Err(unknown()),
            }
        }
        for (term, pair) in self.terms.iter().zip(restored) {
            match pair {
                (Some(omega), Some(inverse)) => {
                    *term.omega.lock().expect("omega") = (omega, inverse)
                }
                (None, None) => {}
                _ => {
                    return Err(MtlError::Model(
                        "the saved task covariance lacks Ω or its inverse".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    fn diagnostics(&self) -> Vec<(String, Vec<f64>)> {
        let mut out = self.inner.diagnostics();
        if let Some(omega) = self.omega() {
            out.push(("task_relation.omega".into(), omega));
        }
        out
    }
}
