//! Batched backward against separate passes, for the op-family tests.
#![allow(dead_code)]

use tapestry_autodiff::{Tape, Tensor, Var};

use crate::common::{rng, uniform};

/// Asserts that one batched sweep over two roots equals two separate backward passes, to 1e-5
/// relative, for every input of `f`.
///
/// The roots share `y = f(inputs)`: `L₁ = Σ r₁·y` and `L₂ = Σ r₂·y²`. Their cotangents meet at
/// `y`, so `f`'s own rules run once on a stacked `[2, ..]` cotangent (`ctx.lead() == 1`).
pub fn assert_batched_matches_separate<F>(name: &str, f: F, inputs: &[Tensor])
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let tape = Tape::new();
    let xs: Vec<Var<'_>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = f(&tape, &xs);
    let mut rng = rng(0xba7c);
    let r1 = tape.constant(uniform(&mut rng, &y.shape(), -1.5, 1.5));
    let r2 = tape.constant(uniform(&mut rng, &y.shape(), -1.5, 1.5));
    let l1 = (y * r1).sum_all();
    let l2 = (y * y * r2).sum_all();
    let batched = tape.backward_batched(&[l1, l2]);
    for (task, root) in [l1, l2].into_iter().enumerate() {
        let separate = tape.backward(root);
        for (i, &x) in xs.iter().enumerate() {
            let want = separate.wrt(x);
            let got = batched.get(task, x).unwrap_or_else(|| Tensor::zeros(&x.shape()));
            assert_eq!(got.shape(), want.shape(), "{name}: task {task}, input {i}: shape");
            let scale = want.as_slice().iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (k, (g, w)) in got.as_slice().iter().zip(want.as_slice()).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1e-2 * scale) + 1e-12,
                    "{name}: task {task}, input {i}, element {k}: batched {g}, separate {w}"
                );
            }
        }
    }
}
