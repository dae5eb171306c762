//! Reverse sweeps over a recorded tape.
//!
//! A sweep walks node ids from the root down. Each node that holds a cotangent hands it to its
//! op's backward rule, which adds cotangents to the op's inputs. Because ids are a topological
//! order, a node's cotangent is complete when the sweep reaches it: all of its consumers have
//! larger ids. The loop is iterative, so a chain of any length needs no stack.
//!
//! Three entry points share the sweep:
//! - [`Tape::backward`]: one scalar root, gradients of every leaf;
//! - [`Tape::grad`]: one scalar root, gradients of chosen nodes (leaves or intermediates); only
//!   nodes on a path from those nodes to the root are visited;
//! - [`Tape::backward_batched`]: T scalar roots in one sweep. A cotangent that belongs to one task
//!   travels alone (its rule runs as in a single backward); where the cotangents of several tasks
//!   meet — in the shared trunk — they are stacked along a leading task axis, and from then on
//!   each rule runs once for all T tasks, with GEMMs T times larger.

use crate::broadcast::sum_to_owned;
use crate::compute::elementwise as ew;
use crate::fill::TINY;
use crate::ops::Op;
use crate::tape::{Node, NodeId, Tape, Var};
use crate::tensor::Tensor;

/// A cotangent on its way through the sweep.
#[derive(Clone)]
pub(crate) enum Cot {
    /// The cotangent of task `t` alone, with the node's own shape.
    Task(u32, Tensor),
    /// Cotangents of all T tasks, stacked: shape `[T, ..node shape]`.
    Stacked(Tensor),
}

/// What a backward rule sees: input values, which inputs need a cotangent, and a sink for them.
pub(crate) struct Ctx<'a> {
    nodes: &'a [Node],
    needs: &'a [bool],
    lead: usize,
    out: Vec<(NodeId, Tensor)>,
}

impl<'a> Ctx<'a> {
    /// The forward value of node `id`.
    pub(crate) fn value(&self, id: NodeId) -> &'a Tensor {
        self.nodes[id.index()].value(id)
    }

    /// The number of leading task axes on every cotangent (0, or 1 in a stacked sweep).
    pub(crate) fn lead(&self) -> usize {
        self.lead
    }

    /// True if node `id` wants a cotangent in this sweep.
    pub(crate) fn needs(&self, id: NodeId) -> bool {
        self.needs[id.index()]
    }

    /// Adds a cotangent for input `id`, computed by `grad` only if `id` needs one. The result may
    /// carry broadcast axes; they are summed away here, once for every op.
    pub(crate) fn acc(&mut self, id: NodeId, grad: impl FnOnce() -> Tensor) {
        if self.needs(id) {
            let g = sum_to_owned(grad(), self.lead, self.nodes[id.index()].value.shape());
            self.out.push((id, g));
        }
    }
}

/// `dst += src` on the kernels (a plain loop for tiny tensors: the same sums).
fn add_slices(dst: &mut [f32], src: &[f32]) {
    if src.len() <= TINY {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    } else {
        ew::add_assign(dst, src);
    }
}

/// `dst += src`, where two cotangents of one node meet.
fn add_into(dst: &mut Tensor, src: &Tensor) {
    debug_assert_eq!(dst.shape(), src.shape());
    add_slices(dst.make_mut(), src.as_slice());
}

/// Adds task `t`'s cotangent `src` into its row of a stack.
fn add_into_row(stacked: &mut Tensor, t: usize, src: &Tensor) {
    let n = src.len();
    add_slices(&mut stacked.make_mut()[t * n..(t + 1) * n], src.as_slice());
}

fn stacked_zeros(tasks: usize, shape: &[usize]) -> Tensor {
    let mut full = Vec::with_capacity(shape.len() + 1);
    full.push(tasks);
    full.extend_from_slice(shape);
    Tensor::zeros(&full)
}

/// Adds `new` into `slot`, stacking along a task axis when two tasks meet. The common cases
/// (a first cotangent, or one more of the same kind) add in place without moving the slot.
fn accumulate(slot: &mut Option<Cot>, new: Cot, tasks: usize) {
    let new = match (slot.as_mut(), new) {
        (None, new) => {
            *slot = Some(new);
            return;
        }
        (Some(Cot::Task(a, x)), Cot::Task(b, y)) if *a == b => return add_into(x, &y),
        (Some(Cot::Stacked(s)), Cot::Task(b, y)) => return add_into_row(s, b as usize, &y),
        (Some(Cot::Stacked(s)), Cot::Stacked(y)) => return add_into(s, &y),
        (Some(_), new) => new,
    };
    *slot = Some(match (slot.take(), new) {
        (Some(Cot::Task(a, x)), Cot::Task(b, y)) => {
            let mut s = stacked_zeros(tasks, x.shape());
            add_into_row(&mut s, a as usize, &x);
            add_into_row(&mut s, b as usize, &y);
            Cot::Stacked(s)
        }
        (Some(Cot::Task(b, y)), Cot::Stacked(mut s)) => {
            add_into_row(&mut s, b as usize, &y);
            Cot::Stacked(s)
        }
        _ => unreachable!("the other pairs were added in place above"),
    });
}

/// Which nodes a sweep keeps the cotangent of.
pub(crate) enum Keep<'a> {
    /// Every leaf that requires a gradient.
    Leaves,
    /// Exactly these nodes.
    Nodes(&'a [NodeId]),
}

/// The part of the tape a sweep walks: node ids `bottom..top`, of which those marked in `needs`
/// receive a cotangent and those marked in `kept` hand it back to the caller.
pub(crate) struct Plan {
    pub(crate) needs: Vec<bool>,
    pub(crate) kept: Vec<bool>,
    pub(crate) bottom: usize,
    pub(crate) top: usize,
}

/// Plans a sweep from `roots` down to the nodes `keep` asks for. With [`Keep::Nodes`] a node
/// needs a cotangent only if a wanted node is at or below it on some path, so a sweep walks just
/// the part of the tape between its root and its targets.
pub(crate) fn plan(nodes: &[Node], roots: &[NodeId], keep: Keep<'_>) -> Plan {
    let top = roots.iter().map(|r| r.index()).max().map_or(0, |m| m + 1);
    let mut kept = vec![false; top];
    match keep {
        Keep::Leaves => {
            for (i, node) in nodes[..top].iter().enumerate() {
                kept[i] = node.requires_grad && matches!(node.op, Op::Leaf);
            }
            let needs = nodes[..top].iter().map(|nd| nd.requires_grad).collect();
            Plan { needs, kept, bottom: 0, top }
        }
        Keep::Nodes(wanted) => {
            let bottom = wanted.iter().map(|w| w.index()).min().unwrap_or(top).min(top);
            let mut needs = vec![false; top];
            for w in wanted.iter().filter(|w| w.index() < top) {
                needs[w.index()] = nodes[w.index()].requires_grad;
                kept[w.index()] = true;
            }
            for i in bottom..top {
                if !needs[i] && nodes[i].requires_grad {
                    let mut any = false;
                    nodes[i].op.for_each_input(|j| any |= j.index() >= bottom && needs[j.index()]);
                    needs[i] = any;
                }
            }
            Plan { needs, kept, bottom, top }
        }
    }
}

/// Panics unless `value` is a scalar: a root without a seed must be one.
#[track_caller]
pub(crate) fn check_scalar_root(value: &Tensor) {
    assert_eq!(
        value.len(),
        1,
        "backward root must be a scalar, got shape {:?}; give a seed of that shape to vjp",
        value.shape()
    );
}

/// Panics unless `seed` has the shape of `output` (behind `lead` leading task axes).
#[track_caller]
pub(crate) fn check_seed(output: &[usize], seed: &[usize], lead: usize) {
    assert!(
        seed.len() == output.len() + lead && &seed[lead..] == output,
        "vjp seed of shape {seed:?} does not match the output's shape {output:?}"
    );
}

/// Sees cotangents as a sweep completes them ([`run`] with a hook), so that a caller can reduce
/// each one as soon as it exists and never hold them all.
pub(crate) trait SweepHook {
    /// Node `i`'s cotangent is complete; its backward rule runs next.
    fn visit(&mut self, nodes: &[Node], i: usize, cot: &Cot);
    /// Kept node `i`'s cotangent is complete and the sweep drops it after this call: a leaf's
    /// right after its last consumer's rule, any other node's at its own visit.
    fn kept(&mut self, i: usize, cot: Cot);
}

/// The shared reverse sweep from the seeded roots; returns the kept cotangents and the number
/// of backward rules run.
fn sweep(
    tape: &Tape,
    seeds: Vec<(NodeId, Cot)>,
    tasks: usize,
    keep: Keep<'_>,
) -> (Vec<Option<Cot>>, usize) {
    let nodes = tape.nodes();
    let roots: Vec<NodeId> = seeds.iter().map(|s| s.0).collect();
    let plan = plan(&nodes, &roots, keep);
    run(Nodes::Read(&nodes), seeds, tasks, plan, None)
}

/// For each node `i`, the kept leaves whose last consumer in the sweep is `i` (the consumer
/// with the smallest id that passes cotangents on): after `i`'s rule their cotangents are
/// complete.
fn last_consumers(nodes: &[Node], plan: &Plan) -> Vec<Vec<usize>> {
    let mut at = vec![Vec::new(); plan.top];
    let mut seen = vec![false; plan.top];
    for j in plan.bottom..plan.top {
        if plan.needs[j] {
            nodes[j].op.for_each_input(|k| {
                let k = k.index();
                if plan.kept[k] && !seen[k] && matches!(nodes[k].op, Op::Leaf) {
                    seen[k] = true;
                    at[j].push(k);
                }
            });
        }
    }
    at
}

/// The tape's nodes as a sweep sees them: read, or released as it goes.
pub(crate) enum Nodes<'a> {
    Read(&'a [Node]),
    Release(&'a mut [Node]),
}

impl Nodes<'_> {
    fn get(&self) -> &[Node] {
        match self {
            Nodes::Read(n) => n,
            Nodes::Release(n) => n,
        }
    }
}

/// Before a final pass from `root`: drops the elements of every value the pass will visit but
/// no rule of it reads (a convolution's output feeding a relu, which takes its mask from its own
/// output; a max-pool's output feeding a reshape), so that they are gone for the whole sweep
/// instead of until the sweep reaches them. `needs` is the plan's. A visited node is one the
/// root's cotangent reaches; its rule runs if an input needs a cotangent, and reads the elements
/// of its output and of its inputs as [`Op::reads_output`] and [`Op::reads_inputs`] declare.
fn release_unread(nodes: &mut [Node], root: NodeId, needs: &[bool]) {
    let top = root.index() + 1;
    let mut reached = vec![false; top];
    let mut read = vec![false; top];
    reached[root.index()] = needs[root.index()];
    for i in (0..top).rev() {
        if !reached[i] {
            continue;
        }
        let op = &nodes[i].op;
        let mut runs = false;
        op.for_each_input(|j| runs |= needs[j.index()]);
        if !runs {
            continue;
        }
        read[i] |= op.reads_output();
        let reads_inputs = op.reads_inputs();
        op.for_each_input(|j| {
            reached[j.index()] |= needs[j.index()];
            read[j.index()] |= reads_inputs;
        });
    }
    for (i, node) in nodes[..top].iter_mut().enumerate() {
        if reached[i] && !read[i] && !matches!(node.op, Op::Leaf | Op::Constant | Op::Released) {
            node.release_elements();
        }
    }
}

/// Runs a planned sweep. Without a hook the kept cotangents come back; with one they go to the
/// hook as they complete (see [`SweepHook::kept`]) and come back empty.
///
/// With [`Nodes::Release`] (the final pass, [`Tape::backward_final`]), each node's value and
/// saved state are dropped right after its rule has run: no later rule reads them, because a
/// rule reads only its own output and its inputs, and inputs have smaller ids.
pub(crate) fn run(
    mut nodes: Nodes<'_>,
    seeds: Vec<(NodeId, Cot)>,
    tasks: usize,
    plan: Plan,
    mut hook: Option<&mut dyn SweepHook>,
) -> (Vec<Option<Cot>>, usize) {
    let leaves_done = if hook.is_some() { last_consumers(nodes.get(), &plan) } else { Vec::new() };
    let Plan { needs, kept, bottom, top } = plan;
    let mut cots: Vec<Option<Cot>> = vec![None; top];
    let mut rules_run = 0;
    for (root, cot) in seeds {
        if needs[root.index()] {
            accumulate(&mut cots[root.index()], cot, tasks);
        }
    }

    let mut out = Vec::new();
    for i in (bottom..top).rev() {
        if let Some(cot) = cots[i].take() {
            let view = nodes.get();
            let node = &view[i];
            if let Some(h) = hook.as_deref_mut() {
                h.visit(view, i, &cot);
            }
            let mut inputs_need = false;
            node.op.for_each_input(|j| inputs_need |= needs[j.index()]);
            let mut cot = Some(cot);
            if inputs_need {
                let (task, g) = match cot.as_ref().expect("set above") {
                    Cot::Task(t, g) => (Some(*t), g),
                    Cot::Stacked(g) => (None, g),
                };
                let lead = usize::from(task.is_none());
                let mut ctx = Ctx { nodes: view, needs: &needs, lead, out };
                let value = node.value(NodeId(i as u32));
                if kept[i] {
                    node.op.backward(value, g, &mut ctx);
                } else {
                    // Nothing reads this cotangent after its rule: the rule may reuse its buffer.
                    let g = match cot.take().expect("set above") {
                        Cot::Task(_, g) | Cot::Stacked(g) => g,
                    };
                    node.op.backward_owned(value, g, &mut ctx);
                }
                rules_run += 1;
                out = ctx.out;
                for (id, grad) in out.drain(..) {
                    let grad = match task {
                        Some(t) => Cot::Task(t, grad),
                        None => Cot::Stacked(grad),
                    };
                    accumulate(&mut cots[id.index()], grad, tasks);
                }
            }
            if let (true, Some(cot)) = (kept[i], cot) {
                match hook.as_deref_mut() {
                    Some(h) => h.kept(i, cot),
                    None => cots[i] = Some(cot),
                }
            }
            if let Nodes::Release(all) = &mut nodes {
                if !matches!(all[i].op, Op::Leaf | Op::Constant) {
                    all[i].release();
                }
            }
        }
        if let Some(h) = hook.as_deref_mut() {
            for &k in &leaves_done[i] {
                if let Some(cot) = cots[k].take() {
                    h.kept(k, cot);
                }
            }
        }
    }
    (cots, rules_run)
}

/// Gradients from one backward pass, keyed by node.
///
/// A fresh store comes back from every pass; the tape is untouched, so any number of passes
/// over one forward pass are independent.
#[derive(Clone, Default)]
pub struct Grads {
    grads: Vec<Option<Tensor>>,
    rules_run: usize,
}

impl Grads {
    /// The gradient of `var`, or `None` if the root does not depend on it.
    pub fn get(&self, var: Var<'_>) -> Option<&Tensor> {
        self.grads.get(var.id.index()).and_then(|g| g.as_ref())
    }

    /// The gradient of `var`, zeros if the root does not depend on it.
    pub fn wrt(&self, var: Var<'_>) -> Tensor {
        self.get(var).cloned().unwrap_or_else(|| Tensor::zeros(&var.shape()))
    }

    /// The number of nodes that have a gradient.
    pub fn len(&self) -> usize {
        self.grads.iter().filter(|g| g.is_some()).count()
    }

    /// True if no node has a gradient.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many backward rules the pass ran (nodes it visited): a measure of the work done.
    pub fn rules_run(&self) -> usize {
        self.rules_run
    }
}

/// Gradients of T roots from one batched sweep.
#[derive(Clone)]
pub struct BatchedGrads {
    tasks: usize,
    cots: Vec<Option<Cot>>,
    rules_run: usize,
}

impl BatchedGrads {
    /// The number of roots (tasks).
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// How many backward rules the sweep ran (a node with a stacked cotangent counts once).
    pub fn rules_run(&self) -> usize {
        self.rules_run
    }

    /// The gradient of root `task` with respect to `var`, or `None` if that root does not depend
    /// on it.
    ///
    /// # Panics
    /// If `task >= self.tasks()`.
    pub fn get(&self, task: usize, var: Var<'_>) -> Option<Tensor> {
        assert!(task < self.tasks, "task {task} out of range for {} roots", self.tasks);
        match self.cots.get(var.id.index())?.as_ref()? {
            Cot::Task(t, g) => (*t as usize == task).then(|| g.clone()),
            Cot::Stacked(g) => {
                let n = g.len() / self.tasks;
                let row = g.as_slice()[task * n..(task + 1) * n].to_vec();
                Some(Tensor::from_vec(&g.shape()[1..], row).expect("row of a stack"))
            }
        }
    }

    /// All T gradients of `var` stacked: shape `[T, ..var shape]`, zeros where a root does not
    /// depend on it.
    pub fn stacked(&self, var: Var<'_>) -> Tensor {
        match self.cots.get(var.id.index()).and_then(|c| c.as_ref()) {
            Some(Cot::Stacked(g)) => g.clone(),
            Some(Cot::Task(t, g)) => {
                let mut s = stacked_zeros(self.tasks, g.shape());
                add_into_row(&mut s, *t as usize, g);
                s
            }
            None => stacked_zeros(self.tasks, &var.shape()),
        }
    }
}

fn single((cots, rules_run): (Vec<Option<Cot>>, usize)) -> Grads {
    let grads = cots
        .into_iter()
        .map(|c| match c {
            Some(Cot::Task(_, g)) => Some(g),
            Some(Cot::Stacked(_)) => unreachable!("a single root never stacks"),
            None => None,
        })
        .collect();
    Grads { grads, rules_run }
}

/// The seed of one scalar root: a cotangent of 1 for task `task`.
fn unit_seed(root: Var<'_>, task: u32) -> (NodeId, Cot) {
    let value = root.value();
    check_scalar_root(&value);
    (root.id, Cot::Task(task, Tensor::ones(value.shape())))
}

pub(crate) fn unit_seeds(roots: &[Var<'_>]) -> Vec<(NodeId, Cot)> {
    roots.iter().enumerate().map(|(t, &r)| unit_seed(r, t as u32)).collect()
}

pub(crate) fn ids(vars: &[Var<'_>]) -> Vec<NodeId> {
    vars.iter().map(|v| v.id).collect()
}

impl Tape {
    /// Reverse sweep from the scalar `root`: gradients of every leaf that requires one.
    ///
    /// # Panics
    /// If `root` does not hold exactly one element (the message names its shape).
    pub fn backward(&self, root: Var<'_>) -> Grads {
        single(sweep(self, vec![unit_seed(root, 0)], 1, Keep::Leaves))
    }

    /// [`Tape::backward`] as the tape's last pass: each recorded value, and what its op saved
    /// for its rule (a pooling's argmax, a dropout mask), is dropped as soon as the sweep has run
    /// that node's rule, so the pass holds only the activations it has not reached yet and the
    /// cotangents in flight, not every activation of the forward pass (PyTorch's
    /// `retain_graph=False`). The gradients are those of [`Tape::backward`], bit for bit.
    ///
    /// Afterwards the tape takes no other backward pass, and reading a released value
    /// ([`Var::value`], [`Var::shape`], or an op on it) panics naming the node; leaves, constants
    /// and nodes the sweep did not visit keep their values.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![1.0, 2.0, 3.0]));
    /// let y = (x * x).sum_all();
    /// let loss = y.value().item();                // read what you need first
    /// let grads = tape.backward_final(y);
    /// assert_eq!((loss, grads.wrt(x).to_vec()), (14.0, vec![2.0, 4.0, 6.0]));
    /// assert_eq!(x.value().to_vec(), vec![1.0, 2.0, 3.0]);   // a leaf keeps its value
    /// ```
    ///
    /// # Panics
    /// If `root` does not hold exactly one element, or a final pass already ran on this tape.
    pub fn backward_final(&self, root: Var<'_>) -> Grads {
        let seeds = vec![unit_seed(root, 0)];
        let mut nodes = self.nodes_to_release();
        let plan = plan(&nodes, &[root.id], Keep::Leaves);
        release_unread(&mut nodes, root.id, &plan.needs);
        single(run(Nodes::Release(&mut nodes), seeds, 1, plan, None))
    }

    /// Gradients of the scalar `root` with respect to the nodes in `wrt`, which may be
    /// intermediate values (for example a shared representation). Only nodes on a path from
    /// `wrt` to `root` are visited; a node the root does not depend on has no gradient
    /// ([`Grads::wrt`] gives zeros for it).
    ///
    /// # Panics
    /// If `root` does not hold exactly one element.
    pub fn grad(&self, root: Var<'_>, wrt: &[Var<'_>]) -> Grads {
        single(sweep(self, vec![unit_seed(root, 0)], 1, Keep::Nodes(&ids(wrt))))
    }

    /// The vector-Jacobian product `seedᵀ·∂output/∂wrt` for an output of any shape: the
    /// gradients of `Σ seed ⊙ output` with respect to `wrt`, in one sweep.
    ///
    /// ```
    /// use tapestry_autodiff::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from(vec![1.0, 2.0]));
    /// let y = x * x;                                         // a non-scalar output
    /// let g = tape.vjp(y, &Tensor::from(vec![1.0, 10.0]), &[x]);
    /// assert_eq!(g.wrt(x).to_vec(), vec![2.0, 40.0]);
    /// ```
    ///
    /// # Panics
    /// If `seed` does not have the shape of `output`.
    pub fn vjp(&self, output: Var<'_>, seed: &Tensor, wrt: &[Var<'_>]) -> Grads {
        check_seed(&output.shape(), seed.shape(), 0);
        let seeds = vec![(output.id, Cot::Task(0, seed.clone()))];
        single(sweep(self, seeds, 1, Keep::Nodes(&ids(wrt))))
    }

    /// T vector-Jacobian products of one output in one sweep: `seeds` has shape
    /// `[T, ..output shape]`, and task t's gradients are those of `Σ seeds[t] ⊙ output`. Every
    /// rule runs once for all T cotangents (for example T directions pushed back from a shared
    /// representation).
    ///
    /// # Panics
    /// If `seeds` is not `[T, ..output shape]`.
    pub fn vjp_batched(&self, output: Var<'_>, seeds: &Tensor, wrt: &[Var<'_>]) -> BatchedGrads {
        check_seed(&output.shape(), seeds.shape(), 1);
        let tasks = seeds.shape()[0];
        let (cots, rules_run) = sweep(
            self,
            vec![(output.id, Cot::Stacked(seeds.clone()))],
            tasks,
            Keep::Nodes(&ids(wrt)),
        );
        BatchedGrads { tasks, cots, rules_run }
    }

    /// One reverse sweep for T scalar roots: equal to T separate calls of [`Tape::backward`],
    /// but the shared part of the graph is traversed once with T stacked cotangents.
    ///
    /// # Panics
    /// If a root does not hold exactly one element.
    pub fn backward_batched(&self, roots: &[Var<'_>]) -> BatchedGrads {
        let (cots, rules_run) = sweep(self, unit_seeds(roots), roots.len(), Keep::Leaves);
        BatchedGrads { tasks: roots.len(), cots, rules_run }
    }

    /// Like [`Tape::backward_batched`], keeping only the gradients of the nodes in `wrt` and
    /// visiting only nodes on a path from them to a root.
    ///
    /// # Panics
    /// If a root does not hold exactly one element.
    pub fn grad_batched(&self, roots: &[Var<'_>], wrt: &[Var<'_>]) -> BatchedGrads {
        let seeds = unit_seeds(roots);
        let (cots, rules_run) = sweep(self, seeds, roots.len(), Keep::Nodes(&ids(wrt)));
        BatchedGrads { tasks: roots.len(), cots, rules_run }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reduction, Tape, Tensor};

    #[test]
    fn the_final_pass_drops_first_the_values_no_rule_reads() {
        let tape = Tape::new();
        let ramp = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            Tensor::from_vec(shape, (0..n).map(|i| (i as f32 * 0.7).sin()).collect()).unwrap()
        };
        let x = tape.constant(ramp(&[2, 2, 6, 6]));
        let w = tape.leaf(ramp(&[3, 2, 3, 3]));
        let fc = tape.leaf(ramp(&[4, 12]));
        let conv = x.conv2d(w, None, (1, 1), (0, 0), (1, 1));
        let relu = conv.relu();
        let pool1 = relu.max_pool2d((2, 2), (2, 2), (0, 0));
        let pool = pool1.max_pool2d((1, 1), (1, 1), (0, 0));
        let flat = pool.reshape(&[2, 12]);
        let logits = flat.linear(fc, None);
        let loss = logits.cross_entropy(&[0, 3], None, Reduction::Mean);
        let mut nodes = tape.nodes_to_release();
        let plan = plan(&nodes, &[loss.id], Keep::Leaves);
        release_unread(&mut nodes, loss.id, &plan.needs);
        let released = |v: Var<'_>| nodes[v.id.index()].value.is_released();
        // The convolution's output feeds only relu (which masks by its own output); a max-pool's
        // rule reads its argmax, so neither its input nor its output is read, and a reshape's
        // rule only shapes.
        assert!(released(conv) && released(pool1) && released(pool));
        assert!(!released(relu), "relu's rule reads its output");
        assert!(!released(flat), "the linear layer's rule reads its input");
        assert!(!released(logits), "cross-entropy's rule reads its logits");
        assert!(!released(loss) && !released(w) && !released(x));
        assert_eq!(nodes[conv.id.index()].value.shape(), &[2, 3, 4, 4], "the shape stays");
    }
}
