//! Recorded backward passes: gradients that are themselves values on the tape.
//!
//! The first-order sweep (`backward.rs`) runs each op's rule on tensors and records nothing.
//! A recorded sweep walks the same part of the tape in the same order, but runs each op's
//! *recorded rule* (`backward_graph`, written beside the eager one in every `ops/*.rs` file):
//! the same formula written with the engine's own ops on `Var`s. Every cotangent it produces is
//! a node on the tape, so a gradient combines with any other op and can be differentiated
//! again: a second recorded sweep gives third derivatives, and so on.
//!
//! Where an ordinary op cannot express a rule, the rule gets an op of its own with its own
//! rules: conv2d's input gradient is a transposed convolution and its weight gradient a
//! correlation of the input with the cotangent (both bilinear, so each one's rule is the other
//! one and conv2d); max-pool's and gather's rules scatter-add by saved indices, whose rule is a
//! gather; avg-pool's rule spreads the cotangent over each window, whose rule is avg-pool.
//!
//! Memory: a recorded sweep adds about as many nodes as the part of the forward pass it walks
//! (two to three per op), each holding one value; a node that depends on no value requiring a
//! gradient is stored as a constant, so nothing a further pass cannot use keeps inputs alive.
//! Each later sweep plans its walk from its own root down to its own targets, so a pass over a
//! long unrolled graph visits only the part that leads to what it asks for.

use crate::backward::{check_scalar_root, check_seed, plan, Keep, Plan};
use crate::tape::{NodeId, Tape, Var};
use crate::tensor::Tensor;

/// What a recorded rule sees: the handles of its inputs, which of them need a cotangent, and a
/// sink for the cotangents (as `Var`s on the same tape).
pub(crate) struct GraphCtx<'t> {
    tape: &'t Tape,
    needs: Vec<bool>,
    out: Vec<(NodeId, Var<'t>)>,
}

impl<'t> GraphCtx<'t> {
    /// The handle of node `id` (an input of the op whose rule runs).
    pub(crate) fn var(&self, id: NodeId) -> Var<'t> {
        Var { tape: self.tape, id }
    }

    /// True if node `id` wants a cotangent in this sweep.
    pub(crate) fn needs(&self, id: NodeId) -> bool {
        self.needs[id.index()]
    }

    /// A constant on the sweep's tape (a mask, a sign, a saved index pattern).
    pub(crate) fn constant(&self, value: Tensor) -> Var<'t> {
        self.tape.constant(value)
    }

    /// Adds a cotangent for input `id`, built by `grad` only if `id` needs one; broadcast axes
    /// are summed away here (with recorded sums), once for every op.
    pub(crate) fn acc(&mut self, id: NodeId, grad: impl FnOnce() -> Var<'t>) {
        if self.needs(id) {
            let shape = self.var(id).shape();
            let g = sum_to(grad(), &shape);
            self.out.push((id, g));
        }
    }
}

/// Sums `g` down to `shape` with recorded ops: the reverse of broadcasting `shape` to `g`'s.
pub(crate) fn sum_to<'t>(g: Var<'t>, shape: &[usize]) -> Var<'t> {
    let gs = g.shape();
    if gs == shape {
        return g;
    }
    assert!(gs.len() >= shape.len(), "sum_to: {gs:?} cannot reduce to {shape:?}");
    let extra = gs.len() - shape.len();
    let axes: Vec<usize> =
        (0..gs.len()).filter(|&i| i < extra || (shape[i - extra] == 1 && gs[i] != 1)).collect();
    let summed = if axes.is_empty() { g } else { g.sum(&axes, true) };
    summed.reshape(shape)
}

/// The recorded sweep from seeded outputs to the nodes `wrt`; one gradient `Var` per target
/// (a constant zero where no seed depends on it).
fn sweep_graph<'t>(tape: &'t Tape, seeds: &[(NodeId, Var<'t>)], wrt: &[NodeId]) -> Vec<Var<'t>> {
    let roots: Vec<NodeId> = seeds.iter().map(|s| s.0).collect();
    let Plan { needs, bottom, top, .. } = plan(&tape.nodes(), &roots, Keep::Nodes(wrt));
    let mut cots: Vec<Option<Var<'t>>> = vec![None; top];
    let add = |slot: &mut Option<Var<'t>>, g: Var<'t>| {
        *slot = Some(match slot.take() {
            None => g,
            Some(prev) => prev + g,
        })
    };
    for &(root, seed) in seeds {
        if needs[root.index()] {
            add(&mut cots[root.index()], seed);
        }
    }
    let mut ctx = GraphCtx { tape, needs, out: Vec::new() };
    for i in (bottom..top).rev() {
        let Some(g) = cots[i] else { continue };
        // The rule records new nodes, so it runs on a copy of the op, not under a borrow.
        let op = {
            let nodes = tape.nodes();
            let mut inputs_need = false;
            nodes[i].op.for_each_input(|j| inputs_need |= ctx.needs[j.index()]);
            if !inputs_need {
                continue;
            }
            nodes[i].op.clone()
        };
        op.backward_graph(ctx.var(NodeId(i as u32)), g, &mut ctx);
        for (id, gi) in std::mem::take(&mut ctx.out) {
            add(&mut cots[id.index()], gi);
        }
    }
    wrt.iter()
        .map(|&w| match cots.get(w.index()).copied().flatten() {
            Some(g) => g,
            None => tape.constant(Tensor::zeros(&tape.var(w).shape())),
        })
        .collect()
}

fn check_tape(tape: &Tape, vars: &[Var<'_>], what: &str) {
    for v in vars {
        assert!(
            std::ptr::eq(tape, v.tape),
            "{what} {v:?} lives on another tape than the one asked for its gradient"
        );
    }
}

impl Tape {
    /// Gradients of the scalar `root` with respect to `wrt` (leaves or intermediate values), as
    /// values on this tape that can be differentiated again (PyTorch's `create_graph=True`).
    /// A target the root does not depend on gets a constant zero.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![2.0]));
    /// let y = (x * x * x).sum_all();                           // y = x³
    /// let dy = tape.grad_graph(y, &[x])[0];                    // 3x², on the tape
    /// let d2y = tape.grad_graph(dy.sum_all(), &[x])[0];        // 6x
    /// let d3y = tape.grad(d2y.sum_all(), &[x]).wrt(x);         // 6
    /// assert_eq!((dy.value().item(), d2y.value().item(), d3y.item()), (12.0, 12.0, 6.0));
    /// ```
    ///
    /// # Panics
    /// If `root` is not a scalar (the message names its shape), or a `Var` lives on another
    /// tape.
    pub fn grad_graph<'t>(&'t self, root: Var<'t>, wrt: &[Var<'t>]) -> Vec<Var<'t>> {
        check_tape(self, &[root], "root");
        check_tape(self, wrt, "target");
        check_scalar_root(&root.value());
        let seed = self.constant(Tensor::ones(&root.shape()));
        let ids: Vec<NodeId> = wrt.iter().map(|v| v.id).collect();
        sweep_graph(self, &[(root.id, seed)], &ids)
    }

    /// The recorded vector-Jacobian product `seedᵀ·∂output/∂wrt` for an output of any shape.
    /// The seed is itself a `Var`, so the result is differentiable in the seed as well (which
    /// gives forward-mode products: the VJP is linear in the seed).
    ///
    /// # Panics
    /// If `seed` does not have the shape of `output`, or a `Var` lives on another tape.
    pub fn vjp_graph<'t>(
        &'t self,
        output: Var<'t>,
        seed: Var<'t>,
        wrt: &[Var<'t>],
    ) -> Vec<Var<'t>> {
        check_tape(self, &[output, seed], "output or seed");
        check_tape(self, wrt, "target");
        check_seed(&output.shape(), &seed.shape(), 0);
        let ids: Vec<NodeId> = wrt.iter().map(|v| v.id).collect();
        sweep_graph(self, &[(output.id, seed)], &ids)
    }

    /// The Hessian-vector product `H·v` of the scalar `root` with respect to `wrt`, by reverse
    /// over reverse: a recorded gradient `g`, the scalar `Σ ⟨gᵢ, vᵢ⟩` on the tape, then one
    /// ordinary backward pass of it. Costs about three gradients (`docs/benchmarks.md`).
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    /// let f = (x * x * x).sum_all();                          // H = diag(6x)
    /// let hv = tape.hvp(f, &[x], &[Tensor::from(vec![1.0, 1.0])]);
    /// assert_eq!(hv[0].to_vec(), vec![6.0, 12.0]);
    /// ```
    ///
    /// # Panics
    /// If `root` is not a scalar, `v` and `wrt` differ in length, or a `vᵢ` does not have the
    /// shape of `wrt[i]`.
    pub fn hvp<'t>(&'t self, root: Var<'t>, wrt: &[Var<'t>], v: &[Tensor]) -> Vec<Tensor> {
        assert_eq!(wrt.len(), v.len(), "hvp: {} targets but {} directions", wrt.len(), v.len());
        let grads = self.grad_graph(root, wrt);
        let mut dot: Option<Var<'t>> = None;
        for ((g, vi), w) in grads.iter().zip(v).zip(wrt) {
            check_seed(&w.shape(), vi.shape(), 0);
            let term = (*g * self.constant(vi.clone())).sum_all();
            dot = Some(dot.map_or(term, |d| d + term));
        }
        let Some(dot) = dot else { return Vec::new() };
        let second = self.grad(dot, wrt);
        wrt.iter().map(|&w| second.wrt(w)).collect()
    }

    /// The dense Hessian of the scalar `root` with respect to `x`, as an `[n, n]` tensor with
    /// `n = x`'s element count: one recorded gradient, then one backward pass per element. For
    /// tiny problems (tests, teaching).
    ///
    /// # Panics
    /// If `root` is not a scalar.
    pub fn hessian<'t>(&'t self, root: Var<'t>, x: Var<'t>) -> Tensor {
        let n: usize = x.shape().iter().product();
        let g = self.grad_graph(root, &[x])[0].reshape(&[n]);
        let mut h = Vec::with_capacity(n * n);
        for i in 0..n {
            let row = self.grad(g.narrow(0, i, 1).sum_all(), &[x]).wrt(x);
            h.extend_from_slice(row.as_slice());
        }
        Tensor::from_vec(&[n, n], h).expect("n x n")
    }
}
