//! Batched backward against separate passes, for the op tests that include this module.

use tapestry_autodiff::{Tape, Tensor, Var};

/// Records `f` on leaves holding `inputs`, then two different scalar losses of its output
/// (`Σ r·y` and `Σ (s·y)²`, with fixed uneven weights `r`, `s`), so their cotangents meet — and are stacked — at the op's output.
/// Asserts that one batched sweep gives, for every task and input, the gradient of the separate
/// backward pass of that task's loss, to 1e-5 relative to the gradient's largest element.
pub fn check_batched<F>(name: &str, f: F, inputs: &[Tensor])
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = f(&tape, &vars);
    let n = y.value().len();
    let weights = |a: usize, m: usize, c: f32| {
        let w = (0..n).map(|i| ((i * a % m) as f32 - (m / 2) as f32) / 4.0 + c).collect();
        tape.constant(Tensor::from_vec(&y.shape(), w).unwrap())
    };
    let (r, s) = (weights(7, 11, 0.0), weights(5, 13, 0.3));
    let losses = [(y * r).sum_all(), ((y * s) * (y * s)).sum_all()];
    let batched = tape.backward_batched(&losses);
    for (task, &loss) in losses.iter().enumerate() {
        let single = tape.backward(loss);
        for (i, &v) in vars.iter().enumerate() {
            let want = single.wrt(v);
            let got = batched.get(task, v).unwrap_or_else(|| Tensor::zeros(&v.shape()));
            let scale = want.as_slice().iter().fold(0.0f32, |m, w| m.max(w.abs()));
            let diff = got.max_abs_diff(&want).expect("same shape");
            assert!(
                diff <= 1e-5 * scale.max(1e-12),
                "{name}: task {task}, input {i}: batched differs from separate by {diff} (scale {scale})"
            );
            assert!(scale > 0.0 || i > 0, "{name}: task {task}: the gradient of input 0 is zero");
        }
    }
}
