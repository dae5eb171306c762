//! A task of meta-learning: a support set to adapt on and a query set to score the adapted model
//! on, and the loss of a model on either.

use tapestry_autodiff::{Reduction, Tensor, Var};
use tapestry_nn::{Bound, Buffers, Ctx, Module};

/// The targets of a set: regression values or class labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Regression targets, the model's output shape (`[n, 1]` for sinusoids); the loss is the
    /// mean squared error.
    Values(Tensor),
    /// Class labels `0..N`, one per sample; the loss is the cross-entropy of the logits.
    Classes(Vec<i64>),
}

/// Inputs and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The inputs, `[n, ..]`.
    pub x: Tensor,
    /// The targets of the `n` samples.
    pub y: Targets,
}

impl Split {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.x.shape().first().copied().unwrap_or(0)
    }

    /// Whether the set has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One task: adapt on `support`, score on `query`.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The examples the model adapts on (K per task, or N·K for episodes).
    pub support: Split,
    /// The examples the adapted model is scored on.
    pub query: Split,
}

/// The loss of `model` with the parameters `bound` on `split`, recorded on `bound`'s tape.
///
/// The model runs in training mode. BatchNorm in it is *transductive*, as in MAML's reference
/// code: it normalises with the statistics of the set it is given (support or query), and its
/// running statistics, kept in `buffers`, are scratch (the caller passes a copy).
pub fn loss<'t>(
    model: &dyn Module,
    bound: &Bound<'t>,
    buffers: &mut Buffers,
    split: &Split,
) -> Var<'t> {
    let tape = bound.tape();
    let out =
        model.forward(tape.constant(split.x.clone()), &mut Ctx::train(bound).with_buffers(buffers));
    match &split.y {
        Targets::Values(y) => out.mse_loss(tape.constant(y.clone()), Reduction::Mean),
        Targets::Classes(labels) => out.cross_entropy(labels, None, Reduction::Mean),
    }
}
