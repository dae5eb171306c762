//! `Tape::grad_norms_batched`: the Gram-identity path for a weight feeding one linear layer,
//! against the norms of the gradients themselves, and the fallback for every other case.

use tapestry_autodiff::{Tape, Tensor, Var};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32 * 7919 + seed * 104_729) % 1013) as f32 / 1013.0) - 0.5).collect()
}

fn t(shape: &[usize], seed: u32) -> Tensor {
    Tensor::from_vec(shape, values(shape.iter().product(), seed)).unwrap()
}

/// The norms of the gradients themselves.
fn direct(tape: &Tape, roots: &[Var<'_>], w: Var<'_>) -> Vec<f64> {
    let stacked = tape.grad_batched(roots, &[w]).stacked(w);
    let len = stacked.len() / roots.len();
    stacked
        .as_slice()
        .chunks(len)
        .map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt())
        .collect()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "got {got:?}, want {want:?}");
    }
}

/// A trunk `x → linear(w) → relu` with three heads and losses of different scales.
fn heads<'t>(tape: &'t Tape, y: Var<'t>) -> Vec<Var<'t>> {
    let z = y.relu();
    (0..3)
        .map(|k| {
            let h = tape.constant(t(&[3, z.value().shape()[z.value().ndim() - 1]], 10 + k));
            z.linear(h, None).pow_scalar(2.0).sum_all().mul_scalar(1.0 + k as f32)
        })
        .collect()
}

#[test]
fn gram_identity_matches_the_gradients_of_a_linear_weight() {
    // N = 4, in = 50, out = 8, T = 3: 4·(50 + 24) < 3·50·8, so the Gram path runs.
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 1));
    let w = tape.leaf(t(&[8, 50], 2));
    let b = tape.leaf(t(&[8], 3));
    let roots = heads(&tape, x.linear(w, Some(b)));
    let got = tape.grad_norms_batched(&roots, w);
    assert_close(&got, &direct(&tape, &roots, w));
    assert!(got.iter().all(|&n| n > 0.0));
}

#[test]
fn leading_axes_of_the_input_are_flattened_into_the_batch() {
    let tape = Tape::new();
    let x = tape.leaf(t(&[2, 3, 40], 4));
    let w = tape.leaf(t(&[6, 40], 5));
    let roots = heads(&tape, x.linear(w, None));
    assert_close(&tape.grad_norms_batched(&roots, w), &direct(&tape, &roots, w));
}

#[test]
fn a_root_that_does_not_reach_the_weight_has_norm_zero() {
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 6));
    let w = tape.leaf(t(&[8, 50], 7));
    let other = tape.leaf(t(&[5], 8));
    let mut roots = heads(&tape, x.linear(w, None));
    roots.push(other.pow_scalar(2.0).sum_all());
    let got = tape.grad_norms_batched(&roots, w);
    assert_eq!(got[3], 0.0);
    assert_close(&got, &direct(&tape, &roots, w));
}

#[test]
fn other_uses_of_the_weight_take_the_general_path() {
    // w also enters a penalty, so its gradient is not δᵀX alone.
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 9));
    let w = tape.leaf(t(&[8, 50], 10));
    let penalty = w.pow_scalar(2.0).sum_all();
    let roots: Vec<Var<'_>> =
        heads(&tape, x.linear(w, None)).into_iter().map(|l| l.add(penalty)).collect();
    assert_close(&tape.grad_norms_batched(&roots, w), &direct(&tape, &roots, w));
}

#[test]
fn a_batch_too_large_for_the_identity_takes_the_general_path() {
    // N = 200 with in = 10, out = 4: N·(in + T·out) > T·in·out.
    let tape = Tape::new();
    let x = tape.constant(t(&[200, 10], 11));
    let w = tape.leaf(t(&[4, 10], 12));
    let roots = heads(&tape, x.linear(w, None));
    assert_close(&tape.grad_norms_batched(&roots, w), &direct(&tape, &roots, w));
}
