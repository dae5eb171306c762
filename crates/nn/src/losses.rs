//! Loss functions, built from the autodiff crate's ops; each returns a scalar `Var`.

use tapestry_autodiff::{Tensor, Var};

/// Mean squared error `mean((pred − target)²)`, as `torch.nn.functional.mse_loss`.
///
/// # Panics
/// If the shapes do not broadcast.
pub fn mse_loss<'t>(pred: Var<'t>, target: Var<'t>) -> Var<'t> {
    let d = pred.sub(target);
    d.mul(d).mean_all()
}

/// Mean absolute error `mean(|pred − target|)`, as `torch.nn.functional.l1_loss`.
///
/// # Panics
/// If the shapes do not broadcast.
pub fn l1_loss<'t>(pred: Var<'t>, target: Var<'t>) -> Var<'t> {
    pred.sub(target).abs().mean_all()
}

/// Mean cross-entropy of `logits` `[N, C]` against class indices `targets` (length N), as
/// `torch.nn.functional.cross_entropy` with mean reduction.
///
/// Computed as `mean_n(logsumexp(z_n) − z_n[target_n])` with `z = logits − max` per row; the
/// row maximum is a constant (it cancels from the gradient), which keeps `exp` from
/// overflowing.
///
/// # Panics
/// If `logits` is not 2-D, `targets` has another length than N, or a target is `>= C`.
pub fn cross_entropy<'t>(logits: Var<'t>, targets: &[usize]) -> Var<'t> {
    let shape = logits.shape();
    assert!(shape.len() == 2, "cross_entropy needs [N, C] logits, got {shape:?}");
    let (n, c) = (shape[0], shape[1]);
    assert_eq!(targets.len(), n, "cross_entropy: {n} rows of logits but {} targets", targets.len());
    let value = logits.value();
    let mut max = Vec::with_capacity(n);
    let mut one_hot = vec![0.0f32; n * c];
    for (i, row) in value.as_slice().chunks(c).enumerate() {
        max.push(row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert!(
            targets[i] < c,
            "cross_entropy: target {} out of range for {c} classes",
            targets[i]
        );
        one_hot[i * c + targets[i]] = 1.0;
    }
    let tape = logits.tape();
    let max = tape.constant(Tensor::from_vec(&[n, 1], max).expect("n values"));
    let one_hot = tape.constant(Tensor::from_vec(&[n, c], one_hot).expect("n*c values"));
    let z = logits.sub(max);
    let lse = z.exp().sum(&[1], false).log();
    let picked = z.mul(one_hot).sum(&[1], false);
    lse.sub(picked).mean_all()
}
