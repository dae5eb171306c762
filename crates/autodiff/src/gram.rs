//! Gram matrices of per-root gradients, `G[s][t] = ⟨∇_θ L_s, ∇_θ L_t⟩`, without holding the
//! gradients (the idea of TorchJD's `autogram`).
//!
//! Methods such as MGDA look at the T per-root gradients on the shared parameters only through
//! their `T × T` Gram. [`Tape::grad_grams_batched`] runs one batched sweep (T stacked
//! cotangents, as [`Tape::grad_batched`]) and reduces each wanted value's `[T, ..shape]` block
//! to its `T × T` contribution the moment the block is complete (for a parameter, right after
//! the rule of its last consumer), then drops it: at most a few blocks are alive at once, never
//! the `T × P` matrix.
//!
//! A weight that feeds a single linear layer needs not even its block. For `y = x·wᵀ + b` with
//! `x` flattened to `X` (`N × in`) and the cotangent of root `t` at `y` flattened to `Δ_t`
//! (`N × out`), the gradient is `Δ_tᵀ X`, and
//!
//! ```text
//! ⟨Δ_sᵀ X, Δ_tᵀ X⟩ = tr(Δ_sᵀ X Xᵀ Δ_t) = ⟨Δ_s, K Δ_t⟩,   K = X Xᵀ  (N × N)      (the Gram identity)
//! ```
//!
//! So the sweep takes the Gram at `y`, where `Δ` is complete, and never forms the weight
//! gradient: `K` is one product shared by every root (`N²·in` multiply-adds), each root adds
//! `K Δ_t` (`N²·out`) and each pair a dot product (`N·out`), against `T·N·in·out` for the T
//! weight gradients and `in·out` per pair for their Gram. The sweep uses the identity where it
//! is cheaper, which is when the batch is small against the layer: with a batch of 128,
//! `in = 3136`, `out = 256` and three roots it is 64 against 313 million multiply-adds. The
//! bias takes the ordinary path: its gradient `1ᵀΔ_t` is a short block.
//!
//! Everything is summed in `f64` in a fixed order, so the result is deterministic.

use crate::backward::{ids, plan, run, unit_seeds, Cot, Keep, Nodes, SweepHook};
use crate::compute;
use crate::ops::matmul::MatmulOp;
use crate::ops::Op;
use crate::tape::{Node, Tape, Var};

/// The Gram matrix `G[s][t] = <g_s, g_t>` of `t` gradients of length `p`, stored row-major in
/// `grads` (task `s` is `grads[s * p..(s + 1) * p]`).
///
/// Products and sums are taken in `f64` (a product of two `f32` is exact in `f64`), in a fixed
/// order, so the result is deterministic; it is exactly symmetric and its diagonal is never
/// negative.
///
/// ```
/// let gram = tapestry_autodiff::gram_matrix(&[1.0, 2.0, 3.0, -1.0], 2, 2);
/// assert_eq!(gram, vec![5.0, 1.0, 1.0, 10.0]);
/// ```
///
/// # Panics
///
/// Panics if `grads.len() != t * p`.
pub fn gram_matrix(grads: &[f32], t: usize, p: usize) -> Vec<f64> {
    let expected = t.checked_mul(p);
    assert!(
        expected == Some(grads.len()),
        "gram_matrix: grads has {} entries, expected t * p = {t} * {p}",
        grads.len()
    );
    let mut gram = vec![0.0; t * t];
    for s in 0..t {
        let gs = &grads[s * p..(s + 1) * p];
        for u in s..t {
            let value = dot_f64(gs, &grads[u * p..(u + 1) * p]);
            gram[s * t + u] = value;
            gram[u * t + s] = value;
        }
    }
    gram
}

/// `<a, b>` accumulated in `f64` over eight fixed lanes, combined in a fixed order.
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0_f64; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            acc[lane] += f64::from(x[lane]) * f64::from(y[lane]);
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// True if the Gram identity costs fewer multiply-adds than forming the `T` weight gradients
/// of a linear layer (`n` rows, `inn → out`) and their Gram.
fn identity_is_cheaper(n: usize, inn: usize, out: usize, t: usize) -> bool {
    let (n, inn, out, t) = (n as u128, inn as u128, out as u128, t as u128);
    let pairs = t * (t + 1) / 2;
    let identity = n * n * inn + t * n * n * out + pairs * n * out;
    let materialised = t * n * inn * out + pairs * inn * out;
    identity < materialised
}

/// The rows of a cotangent: `(task, values)` for every task it carries.
fn rows(cot: &Cot, tasks: usize) -> Vec<(usize, &[f32])> {
    match cot {
        Cot::Task(t, g) => vec![(*t as usize, g.as_slice())],
        Cot::Stacked(g) => {
            let n = g.len() / tasks.max(1);
            g.as_slice().chunks(n.max(1)).take(tasks).enumerate().collect()
        }
    }
}

/// The `T × T` Gram of one value's gradients, from its cotangent.
fn block_gram(cot: &Cot, tasks: usize) -> Vec<f64> {
    match cot {
        Cot::Stacked(g) => gram_matrix(g.as_slice(), tasks, g.len() / tasks.max(1)),
        Cot::Task(..) => {
            let mut gram = vec![0.0; tasks * tasks];
            for (t, row) in rows(cot, tasks) {
                gram[t * tasks + t] = dot_f64(row, row);
            }
            gram
        }
    }
}

/// The `T × T` Gram of a linear weight's gradients `Δ_tᵀ X` by the identity: `x` is
/// `n × inn`, each row of `cot` `n × out`.
fn linear_gram(x: &[f32], n: usize, inn: usize, cot: &Cot, tasks: usize, out: usize) -> Vec<f64> {
    let mut k = vec![0.0f32; n * n];
    compute::gemm((n, inn, n), x, (inn, 1), x, (1, inn), &mut k, (n, 1), false);
    let rows = rows(cot, tasks);
    let mut gram = vec![0.0; tasks * tasks];
    let mut kd = vec![0.0f32; n * out];
    for (b, &(u, du)) in rows.iter().enumerate() {
        // K Δ_u (n × out), then ⟨Δ_s, K Δ_u⟩ for every s up to u.
        compute::gemm((n, n, out), &k, (n, 1), du, (out, 1), &mut kd, (out, 1), false);
        for &(s, ds) in &rows[..=b] {
            let value = dot_f64(ds, &kd);
            gram[s * tasks + u] = value;
            gram[u * tasks + s] = value;
        }
    }
    gram
}

/// Collects the Grams as the sweep completes cotangents.
struct GramHook {
    tasks: usize,
    /// At a linear node: its weight's and its input's indices, when the identity gives the
    /// weight's Gram there.
    linear_at: Vec<Option<(usize, usize)>>,
    /// Each wanted node's Gram, by node index.
    grams: Vec<Option<Vec<f64>>>,
}

impl SweepHook for GramHook {
    fn visit(&mut self, nodes: &[Node], i: usize, cot: &Cot) {
        if let Some((w, x)) = self.linear_at[i] {
            let shape = nodes[w].value.shape();
            let (out, inn) = (shape[0], shape[1]);
            let xv = &nodes[x].value;
            let n = xv.len() / inn.max(1);
            self.grams[w] = Some(linear_gram(xv.as_slice(), n, inn, cot, self.tasks, out));
        }
    }

    fn kept(&mut self, i: usize, cot: Cot) {
        self.grams[i] = Some(block_gram(&cot, self.tasks));
    }
}

/// For each wanted node: the linear node and input of its only use that can pass a cotangent,
/// if that use is as a linear op's weight.
fn sole_linear_uses(
    nodes: &[Node],
    wanted: &[usize],
    needs: &[bool],
) -> Vec<Option<(usize, usize)>> {
    let top = needs.len();
    let mut slot = vec![usize::MAX; top];
    for (k, &w) in wanted.iter().enumerate() {
        if w < top {
            slot[w] = k;
        }
    }
    let mut uses = vec![0usize; wanted.len()];
    let mut found = vec![None; wanted.len()];
    let bottom = wanted.iter().copied().min().unwrap_or(top);
    for j in bottom..top {
        if !needs[j] {
            continue;
        }
        nodes[j].op.for_each_input(|id| {
            let k = slot[id.index()];
            if k == usize::MAX {
                return;
            }
            uses[k] += 1;
            found[k] = match nodes[j].op {
                Op::Matmul(MatmulOp::Linear { x, w, .. }) if w == id && x != id => {
                    Some((j, x.index()))
                }
                _ => None,
            };
        });
    }
    found.into_iter().zip(uses).map(|(f, u)| if u == 1 { f } else { None }).collect()
}

impl Tape {
    /// The `T × T` Gram matrix of the roots' gradients on each value of `wrt`, in f64,
    /// row-major: `grams[v][s * T + t] = ⟨∂L_s/∂wrt[v], ∂L_t/∂wrt[v]⟩`. The sum over `wrt` is
    /// the Gram of the gradients on all of them.
    ///
    /// One batched sweep (as [`Tape::grad_batched`]); each value's block is reduced to its Gram
    /// as soon as it is complete and dropped, and the weight of a linear layer whose only use
    /// is that layer takes the Gram identity where it is cheaper (see the module
    /// documentation), so neither the T gradients nor all the blocks are ever held. The result
    /// equals the Gram of the gradients from [`Tape::grad_batched`] to rounding. A value the
    /// roots do not depend on has a Gram of zeros.
    ///
    /// ```
    /// use tapestry_autodiff::{gram_matrix, Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
    /// let w = tape.leaf(Tensor::from_vec(&[2, 3], vec![0.5, -1., 0., 1., 0., 2.]).unwrap());
    /// let y = x.linear(w, None);
    /// let (l1, l2) = (y.sum_all(), (y * y).sum_all());
    /// let grams = tape.grad_grams_batched(&[l1, l2], &[w]);
    /// let g = tape.grad_batched(&[l1, l2], &[w]).stacked(w);
    /// let want = gram_matrix(g.as_slice(), 2, 6);
    /// for (a, b) in grams[0].iter().zip(&want) {
    ///     assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0));
    /// }
    /// ```
    ///
    /// # Panics
    /// If a root does not hold exactly one element.
    pub fn grad_grams_batched(&self, roots: &[Var<'_>], wrt: &[Var<'_>]) -> Vec<Vec<f64>> {
        let tasks = roots.len();
        let nodes = self.nodes();
        let seeds = unit_seeds(roots);
        let root_ids = ids(roots);
        let wanted = ids(wrt);
        let mut plan = plan(&nodes, &root_ids, Keep::Nodes(&wanted));
        let top = plan.top;
        let wanted_at: Vec<usize> = wanted.iter().map(|w| w.index()).collect();
        let mut hook =
            GramHook { tasks, linear_at: vec![None; top], grams: vec![None; nodes.len()] };
        for (&w, found) in wanted_at.iter().zip(sole_linear_uses(&nodes, &wanted_at, &plan.needs)) {
            let Some((y, x)) = found else { continue };
            let shape = nodes[w].value.shape();
            let (out, inn) = (shape[0], shape[1]);
            let n = nodes[x].value.len() / inn.max(1);
            if identity_is_cheaper(n, inn, out, tasks) {
                // The weight's cotangent is never formed: the Gram comes from y's.
                plan.needs[w] = false;
                plan.kept[w] = false;
                hook.linear_at[y] = Some((w, x));
            }
        }
        run(Nodes::Read(&nodes), seeds, tasks, plan, Some(&mut hook));
        wanted_at
            .iter()
            .map(|&w| hook.grams[w].clone().unwrap_or_else(|| vec![0.0; tasks * tasks]))
            .collect()
    }

    /// `‖∂L_t/∂w‖` for each root `L_t` (each root a scalar), in f64: the square roots of the
    /// diagonal of [`Tape::grad_grams_batched`], so a weight that feeds one linear layer takes
    /// the Gram identity (`‖Δ_tᵀ X‖² = ⟨Δ_t, X Xᵀ Δ_t⟩`) where it is cheaper.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap());
    /// let w = tape.leaf(Tensor::from_vec(&[1, 2], vec![0.5, -1.]).unwrap());
    /// let y = x.linear(w, None);
    /// let (l1, l2) = (y.sum_all(), y.mul_scalar(3.0).sum_all());
    /// let norms = tape.grad_norms_batched(&[l1, l2], w);
    /// // ∂l1/∂w = column sums of x = [4, 6]; ∂l2/∂w = 3·[4, 6].
    /// assert!((norms[0] - 52f64.sqrt()).abs() < 1e-9);
    /// assert!((norms[1] - 3.0 * 52f64.sqrt()).abs() < 1e-9);
    /// ```
    ///
    /// # Panics
    /// If a root does not hold exactly one element.
    pub fn grad_norms_batched(&self, roots: &[Var<'_>], w: Var<'_>) -> Vec<f64> {
        let t = roots.len();
        let gram = self.grad_grams_batched(roots, &[w]).pop().expect("one value");
        (0..t).map(|i| gram[i * t + i].max(0.0).sqrt()).collect()
    }
}
