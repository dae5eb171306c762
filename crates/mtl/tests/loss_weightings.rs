//! The loss-based weightings against their published formulas, on fixed inputs, including
//! degenerate ones (identical, zero and huge losses): no NaN, weights of the documented shape.
//!
//! Expected values from numpy:
//!
//! ```text
//! import numpy as np
//! before = np.array([2.0, 0.5, 10.0]); last = np.array([1.0, 0.45, 12.0])
//! r = last / before; tau = 2.0
//! print(3 * np.exp(r / tau) / np.exp(r / tau).sum())   # DWA: [0.82406935 1.00652058 1.16941007]
//! L = np.array([0.5, 2.0, 8.0]); g = np.prod(L) ** (1 / 3)
//! print(g / (3 * L))                                   # GLS: [1.33333333 0.33333333 0.08333333]
//! L = np.array([1e6, 1e6, 1e-3]); g = np.prod(L) ** (1 / 3)
//! print(g / (3 * L))                                   # GLS: [3.333e-04 3.333e-04 3.333e+05]
//! ```

use tapestry_mtl::weighting::{
    by_name, DynamicWeightAverage, GeometricLossStrategy, MethodOptions, RandomLossWeighting,
    StepInput, Weighting,
};

fn input(step: u64, epoch: u64, losses: &[f64]) -> StepInput<'_> {
    StepInput { step, epoch, seed: 7, ..StepInput::with_losses(losses) }
}

fn close(got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= rtol * w.abs(), "{got:?} vs {want:?}");
    }
}

#[test]
fn dwa_is_t_times_the_softmax_of_the_loss_ratios_over_tau() {
    let want = [0.82406935, 1.00652058, 1.16941007];
    close(
        &DynamicWeightAverage::weights_from(&[2.0, 0.5, 10.0], &[1.0, 0.45, 12.0], 2.0),
        &want,
        1e-7,
    );
    // Through the interface: epochs 0 and 1 have equal weights, epoch 2 uses their means.
    let mut dwa = DynamicWeightAverage::default();
    let epochs: [&[[f64; 3]]; 3] = [
        &[[3.0, 0.4, 9.0], [1.0, 0.6, 11.0]],
        &[[1.0, 0.45, 12.0], [1.0, 0.45, 12.0]],
        &[[0.9, 0.4, 11.0]],
    ];
    let mut step = 0;
    for (epoch, steps) in epochs.iter().enumerate() {
        for losses in steps.iter() {
            let w = dwa.weights(&input(step, epoch as u64, losses)).unwrap().weights;
            if epoch < 2 {
                assert_eq!(w, vec![1.0; 3], "epoch {epoch}");
            } else {
                close(&w, &want, 1e-7);
            }
            step += 1;
        }
    }
    // Degenerate: identical ratios give equal weights; a zero or huge loss stays finite.
    close(&DynamicWeightAverage::weights_from(&[1.0; 3], &[2.0; 3], 2.0), &[1.0; 3], 1e-12);
    let w = DynamicWeightAverage::weights_from(&[0.0, 1e-6, 1.0], &[0.0, 1e6, 1.0], 2.0);
    assert!(w.iter().all(|v| v.is_finite()) && (w.iter().sum::<f64>() - 3.0).abs() < 1e-9, "{w:?}");
    let bad = DynamicWeightAverage::new(-1.0).weights(&input(0, 0, &[1.0, 1.0]));
    assert!(bad.unwrap_err().to_string().contains("τ must be positive, got -1"));
}

#[test]
fn gls_weights_are_the_gradient_of_the_geometric_mean() {
    let w = GeometricLossStrategy.weights(&input(0, 0, &[0.5, 2.0, 8.0])).unwrap();
    close(&w.weights, &[4.0 / 3.0, 1.0 / 3.0, 1.0 / 12.0], 1e-12);
    assert_eq!(w.diagnostic("gls.geometric_mean"), Some(&[2.0][..]));
    let w = GeometricLossStrategy.weights(&input(0, 0, &[1e6, 1e6, 1e-3])).unwrap().weights;
    close(&w, &[3.333_333_333_333e-4, 3.333_333_333_333e-4, 3.333_333_333_333e5], 1e-9);
    // Identical losses: equal weights 1/T. A zero loss: finite (floored), no NaN.
    close(
        &GeometricLossStrategy.weights(&input(0, 0, &[3.0; 4])).unwrap().weights,
        &[0.25; 4],
        1e-12,
    );
    let w = GeometricLossStrategy.weights(&input(0, 0, &[0.0, 1.0])).unwrap().weights;
    assert!(w.iter().all(|v| v.is_finite()), "{w:?}");
    assert!(GeometricLossStrategy.weights(&input(0, 0, &[f64::NAN, 1.0])).is_err());
}

#[test]
fn rlw_draws_a_fresh_softmax_each_step_from_the_seed() {
    let mut rlw = RandomLossWeighting;
    let a = rlw.weights(&input(3, 0, &[1.0, 2.0, 3.0])).unwrap().weights;
    let b = rlw.weights(&input(3, 5, &[9.0, 9.0, 9.0])).unwrap().weights;
    let c = rlw.weights(&input(4, 0, &[1.0, 2.0, 3.0])).unwrap().weights;
    assert_eq!(a, b, "a function of the seed and the step only");
    assert_ne!(a, c, "a new draw every step");
    assert!(a.iter().all(|&w| w > 0.0) && (a.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // Over many steps the mean weight of each of T tasks is 1/T.
    let t = 4;
    let mut mean = vec![0.0; t];
    for step in 0..4000 {
        for (m, w) in mean.iter_mut().zip(RandomLossWeighting::draw(7, step, t)) {
            *m += w / 4000.0;
        }
    }
    close(&mean, &[0.25; 4], 0.03);
    // A softmax of large draws stays finite.
    assert!(RandomLossWeighting::draw(0, 0, 50).iter().all(|w| w.is_finite()));
}

#[test]
fn the_registry_builds_the_loss_weightings() {
    for name in ["dwa", "rlw", "gls", "uw", "ew"] {
        let w = by_name(name, &MethodOptions::default()).unwrap();
        assert_eq!(w.name(), name);
        assert!(w.needs() == tapestry_mtl::weighting::Needs::LOSSES);
    }
}

#[test]
fn imtl_l_drives_every_scaled_loss_to_one() {
    use tapestry_autodiff::Tape;
    use tapestry_data::TaskSpec;
    use tapestry_mtl::weighting::ImtlL;
    use tapestry_nn::Params;
    let mut params = Params::new();
    let mut imtl = ImtlL::default();
    let tasks = [TaskSpec::regression("a", 1), TaskSpec::regression("b", 1)];
    imtl.register(&mut params, &tasks).unwrap();
    let s = params.id("weighting.imtl_l.log_scale").unwrap();
    params.set(s, tapestry_autodiff::Tensor::from(vec![0.5, -1.0])).unwrap();
    // ∂L/∂s_t = e^{s_t} L_t − 1 and ∂L/∂L_t = e^{s_t}, from the graph.
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let l = [
        tape.leaf(tapestry_autodiff::Tensor::scalar(4.0)),
        tape.leaf(tapestry_autodiff::Tensor::scalar(0.25)),
    ];
    let total = imtl.combined_loss(&l, &bound).unwrap();
    let g = tape.backward(total);
    let gs = g.wrt(bound.var(s)).to_vec();
    for (t, (&st, lt)) in [0.5f32, -1.0].iter().zip([4.0f32, 0.25]).enumerate() {
        assert!((gs[t] - (st.exp() * lt - 1.0)).abs() < 1e-6, "{gs:?}");
        assert!((g.wrt(l[t]).item() - st.exp()).abs() < 1e-6);
    }
    let w = imtl.weights(&input(0, 0, &[4.0, 0.25])).unwrap().weights;
    close(&w, &[0.5f64.exp(), (-1.0f64).exp()], 1e-6);
    assert!(ImtlL::default().weights(&input(0, 0, &[1.0])).is_err(), "register() first");
}
