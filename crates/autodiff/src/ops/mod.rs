//! Every op, one family per file, each op's forward and backward side by side.
//!
//! An op is a method on [`Var`](crate::Var) that computes its value and records an `Op` on the
//! tape; its derivative rule is the matching arm of the family's `backward`. A rule receives the
//! op's output value and the cotangent `g` of that output, and adds a cotangent for each input
//! with `ctx.acc(input, || ...)`. Cotangents may carry leading task axes (see `backward.rs`);
//! broadcasting is undone inside `ctx.acc`, never in a rule.
//!
//! Every op also has a *recorded* rule, `backward_graph`, right below the eager one: the same
//! formula written with `Var` ops, so that the gradient it builds is on the tape and can be
//! differentiated again (see `graph.rs`). The eager rule is the fast path (fused kernels, a task
//! axis); the recorded rule is the formula as it reads in the rule table. Tests check that the
//! two give the same values for every op.

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod shape;

use crate::backward::Ctx;
use crate::graph::GraphCtx;
use crate::tape::{NodeId, Var};
use crate::tensor::Tensor;

/// The interface of an op family: its name for dumps, its inputs, and its derivative rule.
pub(crate) trait Family {
    /// A short name for tape dumps.
    fn name(&self) -> &'static str;
    /// Calls `f` on every input id.
    fn for_each_input(&self, f: &mut dyn FnMut(NodeId));
    /// Adds the cotangents of the inputs, given the output `out` and its cotangent `g`.
    fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>);
    /// [`Family::backward`] for a cotangent nothing reads afterwards, handed over so that a rule
    /// may write its result over it (relu's mask); by default the same rule.
    fn backward_owned(&self, out: &Tensor, g: Tensor, ctx: &mut Ctx<'_>) {
        self.backward(out, &g, ctx);
    }
    /// The same rule recorded on the tape: adds the inputs' cotangents as `Var`s, given the
    /// output `out` and its cotangent `g` (no task axis).
    fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>);
    /// Whether `backward` reads the elements of its output `out` (not only its shape).
    /// [`Tape::backward_final`](crate::Tape::backward_final) drops, before its sweep, every value
    /// that neither its own rule nor a consumer's reads; the default keeps it.
    fn reads_output(&self) -> bool {
        true
    }
    /// Whether `backward` reads the elements of its inputs' values (not only their shapes).
    fn reads_inputs(&self) -> bool {
        true
    }
}

/// What produced a node.
#[derive(Clone)]
pub(crate) enum Op {
    /// A value gradients are computed for.
    Leaf,
    /// A value that needs no gradient; backward stops here.
    Constant,
    /// A node whose value and saved state [`Tape::backward_final`](crate::Tape::backward_final)
    /// dropped once its sweep was past it.
    Released,
    Elementwise(elementwise::ElementwiseOp),
    Activation(activation::ActivationOp),
    Reduce(reduce::ReduceOp),
    Shape(shape::ShapeOp),
    Matmul(matmul::MatmulOp),
    Conv(conv::ConvOp),
    Norm(norm::NormOp),
    Loss(loss::LossOp),
}

impl Op {
    fn family(&self) -> Option<&dyn Family> {
        Some(match self {
            Op::Leaf | Op::Constant | Op::Released => return None,
            Op::Elementwise(op) => op,
            Op::Activation(op) => op,
            Op::Reduce(op) => op,
            Op::Shape(op) => op,
            Op::Matmul(op) => op,
            Op::Conv(op) => op,
            Op::Norm(op) => op,
            Op::Loss(op) => op,
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "leaf",
            Op::Constant => "constant",
            Op::Released => "released",
            op => op.family().expect("not a leaf").name(),
        }
    }

    pub(crate) fn for_each_input(&self, mut f: impl FnMut(NodeId)) {
        if let Some(op) = self.family() {
            op.for_each_input(&mut f);
        }
    }

    pub(crate) fn backward(&self, out: &Tensor, g: &Tensor, ctx: &mut Ctx<'_>) {
        if let Some(op) = self.family() {
            op.backward(out, g, ctx);
        }
    }

    pub(crate) fn backward_owned(&self, out: &Tensor, g: Tensor, ctx: &mut Ctx<'_>) {
        if let Some(op) = self.family() {
            op.backward_owned(out, g, ctx);
        }
    }

    pub(crate) fn backward_graph<'t>(&self, out: Var<'t>, g: Var<'t>, ctx: &mut GraphCtx<'t>) {
        if let Some(op) = self.family() {
            op.backward_graph(out, g, ctx);
        }
    }

    /// See [`Family::reads_output`]; false for nodes without a rule.
    pub(crate) fn reads_output(&self) -> bool {
        self.family().is_some_and(|op| op.reads_output())
    }

    /// See [`Family::reads_inputs`]; false for nodes without a rule.
    pub(crate) fn reads_inputs(&self) -> bool {
        self.family().is_some_and(|op| op.reads_inputs())
    }
}
