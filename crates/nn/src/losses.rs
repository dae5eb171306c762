//! Loss functions with PyTorch's defaults (mean reduction); each returns a scalar `Var`.
//!
//! Thin wrappers over the autodiff crate's loss ops, which also offer sum reduction,
//! `ignore_index`, smooth L1 and BCE with logits.

use tapestry_autodiff::ops::loss::Reduction;
use tapestry_autodiff::Var;

/// Mean squared error `mean((pred − target)²)`, as `torch.nn.functional.mse_loss`.
///
/// # Panics
/// If the shapes differ.
pub fn mse_loss<'t>(pred: Var<'t>, target: Var<'t>) -> Var<'t> {
    pred.mse_loss(target, Reduction::Mean)
}

/// Mean absolute error `mean(|pred − target|)`, as `torch.nn.functional.l1_loss`.
///
/// # Panics
/// If the shapes differ.
pub fn l1_loss<'t>(pred: Var<'t>, target: Var<'t>) -> Var<'t> {
    pred.l1_loss(target, Reduction::Mean)
}

/// Mean cross-entropy of `logits` `[N, C]` against class indices `targets` (length N), as
/// `torch.nn.functional.cross_entropy` with mean reduction.
///
/// # Panics
/// If `logits` is not `[N, C]`, `targets` has another length than N, or a target is `>= C`.
pub fn cross_entropy<'t>(logits: Var<'t>, targets: &[usize]) -> Var<'t> {
    let labels: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    logits.cross_entropy(&labels, None, Reduction::Mean)
}
