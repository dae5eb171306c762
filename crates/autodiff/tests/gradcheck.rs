//! The gradient-check harness itself: what it rejects, and how tight its tolerance is.

mod common;

use common::{rng, uniform};
use tapestry_autodiff::gradcheck::{
    analytic_gradients, compare, gradcheck, numeric_gradients, GradcheckError, GradcheckOptions,
};
use tapestry_autodiff::{Tape, Tensor, Var};

/// The tolerance the harness had before it measured its noise.
fn old_options() -> GradcheckOptions {
    GradcheckOptions { rtol: 2e-3, atol_fraction: 1e-4, noise_sigmas: 0.0, ..Default::default() }
}

#[test]
fn a_non_finite_numeric_derivative_fails() {
    // Within 2h of 0, sqrt and log step outside their domain: the finite difference is NaN
    // (sqrt of a negative number) or infinite (log 0), while the analytic derivative, taken at
    // the point itself, is finite.
    let near_zero = Tensor::from_vec(&[2], vec![0.5, 0.005]).unwrap();
    let err = gradcheck(|_, v| v[0].sqrt(), std::slice::from_ref(&near_zero), &Default::default());
    assert_eq!(err.unwrap_err(), GradcheckError::NonFinite { input: 0, what: "numeric gradient" });
    let at_2h = Tensor::from_vec(&[2], vec![0.5, 0.02]).unwrap();
    let opts = GradcheckOptions::default();
    let numeric = numeric_gradients(&|_, v: &[_]| v[0].log(), std::slice::from_ref(&at_2h), &opts);
    assert!(numeric.values[0].as_slice()[1].is_infinite(), "{:?}", numeric.values[0]);
    let err = gradcheck(|_, v| v[0].log(), &[at_2h], &opts);
    assert_eq!(err.unwrap_err(), GradcheckError::NonFinite { input: 0, what: "numeric gradient" });
}

/// `tanh(x · s)` with scales `s = 0.33ᵏ` from 1 down to 0.004 along the last axis (6): a
/// function whose derivatives span more than two decades.
fn scaled_tanh<'t>(tape: &'t Tape, v: &[Var<'t>]) -> Var<'t> {
    let scales: Vec<f32> = (0..6).map(|k| 0.33f32.powi(k)).collect();
    (v[0] * tape.constant(Tensor::from_vec(&[6], scales).unwrap())).tanh()
}

#[test]
fn catches_errors_the_old_tolerance_missed() {
    let x = uniform(&mut rng(31), &[4, 6], -1.0, 1.0);
    let f = scaled_tanh;
    let inputs = [x];
    let opts = GradcheckOptions::default();
    let analytic = analytic_gradients(&f, &inputs, &opts);
    let numeric = numeric_gradients(&f, &inputs, &opts);
    compare(&analytic, &numeric, &opts).expect("the correct gradient passes");
    compare(&analytic, &numeric, &old_options()).expect("and passed before");

    // Every element 0.2% off: inside the old relative tolerance, outside the new one.
    let off = [analytic[0].map(|v| v * 1.002)];
    compare(&off, &numeric, &old_options()).expect("the old tolerance let 0.2% through");
    assert!(matches!(compare(&off, &numeric, &opts), Err(GradcheckError::Mismatch { .. })));

    // One element 1% off, where its derivative is below 1.25% of the largest (so the old
    // absolute tolerance, 1e-4 of the largest, covered the error) and above 0.2%.
    let n = numeric.values[0].as_slice();
    let max = n.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (j, _) = n
        .iter()
        .enumerate()
        .filter(|(_, v)| (0.002..0.0125).contains(&(v.abs() / max)))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .expect("an element between 0.2% and 1.25% of the largest");
    let mut values = analytic[0].to_vec();
    values[j] *= 1.01;
    let off = [Tensor::from_vec(analytic[0].shape(), values).unwrap()];
    compare(&off, &numeric, &old_options()).expect("the old tolerance let this 1% through");
    match compare(&off, &numeric, &opts) {
        Err(GradcheckError::Mismatch { input: 0, index, .. }) => assert_eq!(index, j),
        other => panic!("a 1% error at element {j} went unnoticed: {other:?}"),
    }
}

#[test]
fn the_noise_estimate_tracks_rounding_in_the_forward_pass() {
    // A sum in f32 of many values rounds at about 6e-8 of its size; the estimate sees it (and
    // a function computed without rounding, a single product, has almost none).
    let x = uniform(&mut rng(32), &[2000], 0.5, 1.5);
    let opts = GradcheckOptions::default();
    let numeric = numeric_gradients(&|_, v: &[_]| v[0].sum_all(), std::slice::from_ref(&x), &opts);
    let exact = numeric_gradients(
        &|_, v: &[_]| v[0].narrow(0, 0, 1) * 2.0,
        std::slice::from_ref(&x),
        &opts,
    );
    // ‖L‖ ≈ 2000 · 1 · (weight ≈ 1): rounding of order 1e-4 in L, divided by h = 1e-2.
    assert!(numeric.noise[0] > 1e-4 && numeric.noise[0] < 1e-1, "{}", numeric.noise[0]);
    assert!(exact.noise[0] < 1e-6, "{}", exact.noise[0]);
    gradcheck(|_, v| v[0].sum_all(), &[x], &opts).expect("the sum's gradient passes");
}
