//! `Tape::grad_grams_batched`: the Gram of the per-root gradients on each value, reduced block
//! by block during the sweep (and by the Gram identity for a linear weight), against the Gram
//! of the gradients themselves.

use tapestry_autodiff::{gram_matrix, Tape, Tensor, Var};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32 * 7919 + seed * 104_729) % 1013) as f32 / 1013.0) - 0.5).collect()
}

fn t(shape: &[usize], seed: u32) -> Tensor {
    Tensor::from_vec(shape, values(shape.iter().product(), seed)).unwrap()
}

/// The Gram of the gradients themselves, one per value.
fn direct(tape: &Tape, roots: &[Var<'_>], wrt: &[Var<'_>]) -> Vec<Vec<f64>> {
    let b = tape.grad_batched(roots, wrt);
    wrt.iter()
        .map(|&v| {
            let s = b.stacked(v);
            gram_matrix(s.as_slice(), roots.len(), s.len() / roots.len())
        })
        .collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-5 * scale, "got {got:?}, want {want:?}");
        }
    }
}

/// A trunk `x → linear(w, b) → relu` with three heads and losses of different scales.
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
fn the_identity_gives_the_gram_of_a_linear_weight_and_its_bias() {
    // N = 4, in = 50, out = 8, T = 3: the identity is cheaper, so the weight takes it; the
    // bias takes the ordinary path. Both against the gradients themselves.
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 1));
    let w = tape.leaf(t(&[8, 50], 2));
    let b = tape.leaf(t(&[8], 3));
    let roots = heads(&tape, x.linear(w, Some(b)));
    let got = tape.grad_grams_batched(&roots, &[w, b]);
    assert_close(&got, &direct(&tape, &roots, &[w, b]));
    // Off-diagonal entries are not trivially zero, and the matrix is exactly symmetric.
    assert!(got[0][1].abs() > 1e-6 && got[0][1] == got[0][3]);
}

#[test]
fn a_deeper_trunk_mixes_the_identity_and_the_blocks() {
    // Two linear layers: both weights take the identity, at their own layer, and the stacked
    // cotangent passes through the second layer's input to reach the first.
    let tape = Tape::new();
    let x = tape.constant(t(&[3, 60], 4));
    let w0 = tape.leaf(t(&[20, 60], 5));
    let w1 = tape.leaf(t(&[6, 20], 6));
    let h = x.linear(w0, None).tanh();
    let roots = heads(&tape, h.linear(w1, None));
    let got = tape.grad_grams_batched(&roots, &[w0, w1]);
    assert_close(&got, &direct(&tape, &roots, &[w0, w1]));
}

#[test]
fn leading_axes_of_the_input_are_flattened_into_the_batch() {
    let tape = Tape::new();
    let x = tape.leaf(t(&[2, 3, 40], 7));
    let w = tape.leaf(t(&[6, 40], 8));
    let roots = heads(&tape, x.linear(w, None));
    assert_close(&tape.grad_grams_batched(&roots, &[w, x]), &direct(&tape, &roots, &[w, x]));
}

#[test]
fn a_value_one_root_reaches_alone_has_one_diagonal_entry() {
    // `v` feeds only the last root, so its cotangent is never stacked; `other` feeds no root.
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 9));
    let w = tape.leaf(t(&[8, 50], 10));
    let v = tape.leaf(t(&[5], 11));
    let other = tape.leaf(t(&[2], 12));
    let mut roots = heads(&tape, x.linear(w, None));
    roots.push(v.pow_scalar(2.0).sum_all());
    let _unused = other.sum_all();
    let got = tape.grad_grams_batched(&roots, &[w, v, other]);
    assert_close(&got, &direct(&tape, &roots, &[w, v, other]));
    let diag: f64 = values(5, 11).iter().map(|&a| f64::from(2.0 * a).powi(2)).sum();
    assert!((got[1][15] - diag).abs() < 1e-9 && got[1].iter().filter(|&&g| g != 0.0).count() == 1);
    assert!(got[2].iter().all(|&g| g == 0.0));
    // w's Gram has a zero last row and column: the fourth root does not reach it.
    assert!((0..4).all(|s| got[0][s * 4 + 3] == 0.0 && got[0][12 + s] == 0.0));
}

#[test]
fn other_uses_of_the_weight_and_large_batches_take_the_blocks() {
    // w also enters a penalty, so its gradient is not Δᵀ X alone.
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 13));
    let w = tape.leaf(t(&[8, 50], 14));
    let penalty = w.pow_scalar(2.0).sum_all();
    let roots: Vec<Var<'_>> =
        heads(&tape, x.linear(w, None)).into_iter().map(|l| l.add(penalty)).collect();
    assert_close(&tape.grad_grams_batched(&roots, &[w]), &direct(&tape, &roots, &[w]));
    // N = 200 with in = 10, out = 4: the identity would cost more than the gradients.
    let tape = Tape::new();
    let x = tape.constant(t(&[200, 10], 15));
    let w = tape.leaf(t(&[4, 10], 16));
    let roots = heads(&tape, x.linear(w, None));
    assert_close(&tape.grad_grams_batched(&roots, &[w]), &direct(&tape, &roots, &[w]));
}

#[test]
fn convolution_weights_take_their_blocks() {
    let tape = Tape::new();
    let x = tape.constant(t(&[2, 2, 6, 6], 17));
    let k = tape.leaf(t(&[3, 2, 3, 3], 18));
    let c = tape.leaf(t(&[3], 19));
    let y = x.conv2d(k, Some(c), (1, 1), (1, 1), (1, 1)).relu();
    let flat = y.reshape(&[2, 3 * 36]);
    let roots = heads(&tape, flat);
    let got = tape.grad_grams_batched(&roots, &[k, c]);
    assert_close(&got, &direct(&tape, &roots, &[k, c]));
    assert_eq!(got, tape.grad_grams_batched(&roots, &[k, c]), "deterministic");
}

#[test]
fn norms_are_the_square_roots_of_the_diagonal() {
    let tape = Tape::new();
    let x = tape.constant(t(&[4, 50], 20));
    let w = tape.leaf(t(&[8, 50], 21));
    let roots = heads(&tape, x.linear(w, None));
    let gram = &direct(&tape, &roots, &[w])[0];
    let norms = tape.grad_norms_batched(&roots, w);
    for (i, n) in norms.iter().enumerate() {
        let want = gram[i * 3 + i].sqrt();
        assert!((n - want).abs() <= 1e-5 * want, "{norms:?}");
    }
}
