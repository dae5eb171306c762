//! The tape: an arena of nodes recorded during the forward pass.
//!
//! Every op appends one [`Node`] holding its output value and an [`Op`] that names its inputs by
//! [`NodeId`] and keeps what its backward rule needs. Node ids are positions in the arena, so
//! they are a topological order for free: every input has a smaller id than its consumer.
//!
//! The tape is never changed by a backward pass; gradients live in the [`Grads`](crate::Grads)
//! store each pass returns. Handles ([`Var`]) borrow the tape, so no value can outlive the step.
//! The one exception is the pass that is a tape's last, [`Tape::backward_final`]: it drops each
//! value once the sweep is past it, and the tape takes no pass after it.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;

use crate::ops::Op;
use crate::tensor::Tensor;

/// The position of a node on its tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The position as an index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One recorded value: what it is, how it was made, and whether gradients flow through it.
pub(crate) struct Node {
    pub(crate) value: Tensor,
    pub(crate) op: Op,
    pub(crate) requires_grad: bool,
}

impl Node {
    /// The value of node `id` (this node).
    ///
    /// # Panics
    /// If [`Tape::backward_final`] released it.
    #[track_caller]
    pub(crate) fn value(&self, id: NodeId) -> &Tensor {
        if matches!(self.op, Op::Released) {
            panic!(
                "the value of %{} was released by `Tape::backward_final`; read values before the \
                 final backward pass",
                id.0
            );
        }
        &self.value
    }

    /// Drops the value's elements but keeps its shape and the op: for a value the final pass's
    /// rules never read (see [`Tape::backward_final`]).
    pub(crate) fn release_elements(&mut self) {
        self.value = self.value.released_like();
    }

    /// Drops the value and what the op saved for its rule, once the final pass is past them.
    pub(crate) fn release(&mut self) {
        self.value = Tensor::zeros(&[0]);
        self.op = Op::Released;
    }
}

/// The arena of one forward pass. Create one per training step and drop it afterwards.
///
/// ```
/// use tapestry_autodiff::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from(vec![1.0, 2.0, 3.0]));
/// let y = (x * x).sum_all();          // y = Σ x²
/// let grads = tape.backward(y);
/// assert_eq!(grads.wrt(x).to_vec(), vec![2.0, 4.0, 6.0]);
/// ```
#[derive(Default)]
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
    no_grad_depth: Cell<u32>,
    /// Set by [`Tape::backward_final`]: the values it passed are gone.
    released: Cell<bool>,
}

/// A handle to a node on a tape: `Copy`, and only valid while the tape lives.
#[derive(Clone, Copy)]
pub struct Var<'t> {
    pub(crate) tape: &'t Tape,
    pub(crate) id: NodeId,
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tape with room for `n` nodes.
    pub fn with_capacity(n: usize) -> Self {
        Tape {
            nodes: RefCell::new(Vec::with_capacity(n)),
            no_grad_depth: Cell::new(0),
            released: Cell::new(false),
        }
    }

    /// A leaf that gradients are computed for (a parameter, or an input you differentiate).
    pub fn leaf(&self, value: Tensor) -> Var<'_> {
        let requires_grad = self.grad_enabled();
        self.push_node(Node { value, op: Op::Leaf, requires_grad })
    }

    /// A value that needs no gradient (data, labels, constants): costs nothing in backward.
    pub fn constant(&self, value: Tensor) -> Var<'_> {
        self.push_node(Node { value, op: Op::Constant, requires_grad: false })
    }

    /// Runs `f` with recording of gradients switched off: every op inside yields a constant.
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        self.no_grad_depth.set(self.no_grad_depth.get() + 1);
        struct Restore<'a>(&'a Cell<u32>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        let _restore = Restore(&self.no_grad_depth);
        f()
    }

    /// True unless inside [`Tape::no_grad`].
    pub fn grad_enabled(&self) -> bool {
        self.no_grad_depth.get() == 0
    }

    /// The number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True if nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle of node `id`.
    ///
    /// # Panics
    /// If `id` is not on this tape.
    pub fn var(&self, id: NodeId) -> Var<'_> {
        assert!(id.index() < self.len(), "node {} is not on this tape", id.0);
        Var { tape: self, id }
    }

    /// The nodes, for a backward pass.
    ///
    /// # Panics
    /// If [`Tape::backward_final`] has run: the values a pass would read are gone.
    #[track_caller]
    pub(crate) fn nodes(&self) -> Ref<'_, Vec<Node>> {
        self.check_not_released();
        self.nodes.borrow()
    }

    /// The nodes, for the final pass that releases their values as it goes.
    #[track_caller]
    pub(crate) fn nodes_to_release(&self) -> RefMut<'_, Vec<Node>> {
        self.check_not_released();
        self.released.set(true);
        self.nodes.borrow_mut()
    }

    #[track_caller]
    fn check_not_released(&self) {
        assert!(
            !self.released.get(),
            "this tape's values were released by `Tape::backward_final`, so it takes no further \
             backward pass; run the other passes before the final one"
        );
    }

    fn push_node(&self, node: Node) -> Var<'_> {
        let mut nodes = self.nodes.borrow_mut();
        let id = NodeId(u32::try_from(nodes.len()).expect("tape holds at most 2^32 nodes"));
        nodes.push(node);
        Var { tape: self, id }
    }

    /// Records the result of an op. If no input needs a gradient (or recording is off), the node
    /// is stored as a constant, so its inputs and saved values are dropped at once and backward
    /// never visits it.
    pub(crate) fn record(&self, value: Tensor, op: Op) -> Var<'_> {
        let mut nodes = self.nodes.borrow_mut();
        let mut requires_grad = false;
        if self.grad_enabled() {
            op.for_each_input(|i| requires_grad |= nodes[i.index()].requires_grad);
        }
        let op = if requires_grad { op } else { Op::Constant };
        let id = NodeId(u32::try_from(nodes.len()).expect("tape holds at most 2^32 nodes"));
        nodes.push(Node { value, op, requires_grad });
        Var { tape: self, id }
    }

    /// Runs `f` on the values of two nodes without cloning them.
    pub(crate) fn with_values<R>(
        &self,
        a: NodeId,
        b: NodeId,
        f: impl FnOnce(&Tensor, &Tensor) -> R,
    ) -> R {
        let nodes = self.nodes.borrow();
        f(nodes[a.index()].value(a), nodes[b.index()].value(b))
    }

    /// A human-readable listing of the tape, one node per line.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.borrow().iter().enumerate() {
            let mut inputs = Vec::new();
            node.op.for_each_input(|id| inputs.push(format!("%{}", id.0)));
            out.push_str(&format!(
                "%{i:<3} = {:<14} ({}) shape {:?}{}\n",
                node.op.name(),
                inputs.join(", "),
                node.value.shape(),
                if node.requires_grad { "  [grad]" } else { "" }
            ));
        }
        out
    }

    /// The tape as a Graphviz DOT graph (`dot -Tsvg`).
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph tape {\n  rankdir=LR;\n  node [shape=box, fontname=monospace];\n",
        );
        for (i, node) in self.nodes.borrow().iter().enumerate() {
            let style = if node.requires_grad { "" } else { ", style=dashed" };
            out.push_str(&format!(
                "  n{i} [label=\"%{i} {}\\n{:?}\"{style}];\n",
                node.op.name(),
                node.value.shape()
            ));
            node.op.for_each_input(|id| out.push_str(&format!("  n{} -> n{i};\n", id.0)));
        }
        out.push_str("}\n");
        out
    }
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dump())
    }
}

impl<'t> Var<'t> {
    /// The node's id on its tape.
    pub fn id(self) -> NodeId {
        self.id
    }

    /// The tape this value lives on.
    pub fn tape(self) -> &'t Tape {
        self.tape
    }

    /// The value (a cheap, shared clone).
    ///
    /// # Panics
    /// If [`Tape::backward_final`] released it.
    #[track_caller]
    pub fn value(self) -> Tensor {
        self.tape.nodes.borrow()[self.id.index()].value(self.id).clone()
    }

    /// The shape of the value.
    ///
    /// # Panics
    /// If [`Tape::backward_final`] released the value.
    #[track_caller]
    pub fn shape(self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.id.index()].value(self.id).shape().to_vec()
    }

    /// The number of axes.
    ///
    /// # Panics
    /// If [`Tape::backward_final`] released the value.
    #[track_caller]
    pub fn ndim(self) -> usize {
        self.tape.nodes.borrow()[self.id.index()].value(self.id).ndim()
    }

    /// True if gradients flow through this value.
    pub fn requires_grad(self) -> bool {
        self.tape.nodes.borrow()[self.id.index()].requires_grad
    }

    /// The same value as a constant: gradients stop here.
    pub fn detach(self) -> Var<'t> {
        self.tape.constant(self.value())
    }

    /// Records `value` as the result of `op` on this value's tape.
    pub(crate) fn record(self, value: Tensor, op: Op) -> Var<'t> {
        self.tape.record(value, op)
    }

    /// Records `op`, whose value is this value mapped elementwise: by `kernel(x, out)`, or for a
    /// tiny tensor by `one` on each element (see [`Tensor::map_kernel`]).
    pub(crate) fn record_map(
        self,
        one: impl Fn(f32) -> f32,
        kernel: impl FnOnce(&[f32], &mut [f32]),
        op: Op,
    ) -> Var<'t> {
        let value = self.tape.with_values(self.id, self.id, |v, _| v.map_kernel(one, kernel));
        self.record(value, op)
    }

    /// Panics if `other` lives on another tape.
    #[track_caller]
    pub(crate) fn same_tape(self, other: Var<'t>) {
        assert!(
            std::ptr::eq(self.tape, other.tape),
            "values from two different tapes were combined: {self:?} on tape {:p} and {other:?} \
             on tape {:p}",
            self.tape,
            other.tape
        );
    }
}

impl fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var(%{} {:?})", self.id.0, self.shape())
    }
}
