//! Tests of GradNorm's weight update: golden values, direction, renormalisation, the closed-form
//! derivative against finite differences, and input checks.

mod common;

use common::{assert_same, gradnorm_gd_reference};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_mtl::gradnorm::{
    gradnorm_update, GradNormConfig, GradNormError, WeightOptimizer, WeightOptimizerState,
};

/// A new optimizer state, for updates that do not carry one over.
fn fresh() -> WeightOptimizerState {
    WeightOptimizerState::default()
}

fn sum(values: &[f64]) -> f64 {
    values.iter().sum()
}

#[test]
fn crafted_two_task_case_moves_weight_to_the_slow_task() {
    // Task A's loss fell to a quarter of its start, task B's did not move.
    //   Ltilde = (0.25, 1), mean 0.625, r = (0.4, 1.6)
    //   G = w * n = (1, 1), G_bar = 1, target = r^1.5 = (0.252982.., 2.023858..)
    //   L_grad = |1 - 0.252982| + |1 - 2.023858| = 1.770875..
    //   (python3 -c "a=0.4**1.5; b=1.6**1.5; print(a, b, abs(1-a)+abs(1-b))"
    //    -> 0.2529822128134704 2.023857702507763 1.7708754896942926)
    //   dL/dw = sign(G - target) * n = (+1, -1); w - 0.1 * dL/dw = (0.9, 1.1), sum 2 already.
    let config = GradNormConfig::new(1.5, 0.1);
    let step =
        gradnorm_update(&[1.0, 1.0], &[1.0, 1.0], &[0.25, 1.0], &[1.0, 1.0], &config, &mut fresh())
            .unwrap();
    assert_eq!(step.loss_ratios, vec![0.25, 1.0]);
    assert!((step.relative_inverse_rates[0] - 0.4).abs() < 1e-15);
    assert!((step.relative_inverse_rates[1] - 1.6).abs() < 1e-15);
    assert_eq!(step.weighted_grad_norms, vec![1.0, 1.0]);
    assert_eq!(step.mean_grad_norm, 1.0);
    assert!((step.targets[0] - 0.4_f64.powf(1.5)).abs() < 1e-15);
    assert!((step.targets[1] - 1.6_f64.powf(1.5)).abs() < 1e-15);
    assert!((step.balance_loss - 1.770_875_489_694_292_5).abs() < 1e-14, "{}", step.balance_loss);
    assert_eq!(step.weight_gradient, vec![1.0, -1.0]);
    assert!((step.weights[0] - 0.9).abs() < 1e-15 && (step.weights[1] - 1.1).abs() < 1e-15);
}

#[test]
fn repeated_updates_keep_the_sum_and_the_direction() {
    // A trains faster (smaller loss ratio) and has the larger raw gradient norm: its weight
    // must fall and B's rise, step after step, until the weighted norms meet the targets.
    let config = GradNormConfig::new(0.5, 0.05);
    let mut weights = vec![1.0, 1.0];
    let (norms, losses, initial) = ([2.0, 0.5], [0.2, 0.9], [1.0, 1.0]);
    for step_index in 0..20 {
        let step =
            gradnorm_update(&weights, &norms, &losses, &initial, &config, &mut fresh()).unwrap();
        assert!((sum(&step.weights) - 2.0).abs() < 1e-12, "step {step_index}");
        if step.weighted_grad_norms[0] > step.targets[0] {
            assert!(step.weights[0] < weights[0] && step.weights[1] > weights[1]);
        }
        weights = step.weights;
    }
    assert!(weights[0] < 0.5 && weights[1] > 1.5, "{weights:?}");
}

#[test]
fn every_update_follows_the_papers_rule_for_any_t() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for t in 1..=10 {
        let mut weights = vec![1.0; t];
        let initial: Vec<f64> = (0..t).map(|_| rng.gen_range(0.5..5.0)).collect();
        let config = GradNormConfig::new(rng.gen_range(0.0..3.0), rng.gen_range(0.001..1.0));
        for _ in 0..50 {
            let norms: Vec<f64> = (0..t).map(|_| rng.gen_range(0.0..10.0)).collect();
            let losses: Vec<f64> = initial.iter().map(|l| l * rng.gen_range(0.0..1.2)).collect();
            let step = gradnorm_update(&weights, &norms, &losses, &initial, &config, &mut fresh())
                .unwrap();
            let want = gradnorm_gd_reference(
                &weights,
                &norms,
                &losses,
                &initial,
                (config.alpha, config.learning_rate, config.min_weight),
            );
            assert_same(&step.weights, &want, &format!("T = {t}"));
            assert!(step.weights.iter().all(|w| w.is_finite() && *w > 0.0));
            weights = step.weights;
        }
    }
}

#[test]
fn the_floor_keeps_a_task_alive() {
    // A huge learning rate drives A below zero; the floor holds it at min_weight before the
    // renormalisation: (1e-3, 1 + 100) * 2 / (1e-3 + 101).
    let config = GradNormConfig::new(1.5, 100.0);
    let step =
        gradnorm_update(&[1.0, 1.0], &[1.0, 1.0], &[0.25, 1.0], &[1.0, 1.0], &config, &mut fresh())
            .unwrap();
    let total = 1e-3 + 101.0;
    assert!((step.weights[0] - 2.0 * 1e-3 / total).abs() < 1e-15, "{:?}", step.weights);
    assert!((step.weights[1] - 2.0 * 101.0 / total).abs() < 1e-12);
}

#[test]
fn alpha_zero_gives_equal_targets_and_zero_losses_give_equal_rates() {
    let config = GradNormConfig::new(0.0, 0.1);
    let step =
        gradnorm_update(&[0.5, 1.5], &[2.0, 1.0], &[0.1, 0.9], &[1.0, 1.0], &config, &mut fresh())
            .unwrap();
    // G = (1, 1.5), G_bar = 1.25: both targets 1.25 whatever the loss ratios.
    assert_eq!(step.targets, vec![1.25, 1.25]);
    let step =
        gradnorm_update(&[1.0, 1.0], &[1.0, 3.0], &[0.0, 0.0], &[1.0, 2.0], &config, &mut fresh())
            .unwrap();
    assert_eq!(step.relative_inverse_rates, vec![1.0, 1.0]);
    assert_eq!(step.targets, vec![2.0, 2.0]);
}

#[test]
fn adam_on_the_weights_golden_values() {
    // Step 1: G = (1, 100), both loss ratios 1, so both targets are G_bar = 50.5 and
    // dL/dw = (-1, +100); Adam's first bias-corrected step is the sign, lr each way.
    // Step 2: norms (1, 1), G = w, targets 1, dL/dw = (+1, -1): the moments remember step 1.
    //   python3 -c "
    //   import math
    //   b1,b2,eps,lr=0.9,0.999,1e-8,0.025; m=[0,0]; v=[0,0]
    //   def upd(w,g,k):
    //       out=[]
    //       for i in range(2):
    //           m[i]=b1*m[i]+(1-b1)*g[i]; v[i]=b2*v[i]+(1-b2)*g[i]**2
    //           out.append(w[i]-lr*(m[i]/(1-b1**k))/(math.sqrt(v[i]/(1-b2**k))+eps))
    //       s=sum(out); return [x*2/s for x in out]
    //   w=upd([1.0,1.0],[-1.0,100.0],1); print(w); print(upd(w,[1.0,-1.0],2))"
    //   -> [1.0249999998768438, 0.9750000001231561]
    //      [1.032918652678737, 0.9670813473212628]
    let config = GradNormConfig::adam(0.12, 0.025);
    let mut state = WeightOptimizerState::default();
    let one = [1.0, 1.0];
    let step = gradnorm_update(&one, &[1.0, 100.0], &one, &one, &config, &mut state).unwrap();
    assert_eq!(step.weight_gradient, vec![-1.0, 100.0]);
    assert!((step.weights[0] - 1.024_999_999_876_843_8).abs() < 1e-15, "{:?}", step.weights);
    assert!((step.weights[1] - 0.975_000_000_123_156_1).abs() < 1e-15, "{:?}", step.weights);
    assert_eq!(state.steps, 1);
    let step = gradnorm_update(&step.weights, &one, &one, &one, &config, &mut state).unwrap();
    assert_eq!(step.weight_gradient, vec![1.0, -1.0]);
    assert!((step.weights[0] - 1.032_918_652_678_737).abs() < 1e-14, "{:?}", step.weights);
    assert!((step.weights[1] - 0.967_081_347_321_262_8).abs() < 1e-14, "{:?}", step.weights);
    assert_eq!(state.steps, 2);
    // Gradient descent at the same rate moves the weight of the large-norm task by 100 lr.
    let step = gradnorm_update(
        &one,
        &[1.0, 100.0],
        &one,
        &one,
        &GradNormConfig::new(0.12, 0.025),
        &mut fresh(),
    )
    .unwrap();
    let total = 1.025 + 1e-3; // task 1 falls to 1 - 2.5 < 0 and is floored at 1e-3
    assert!((step.weights[0] - 2.0 * 1.025 / total).abs() < 1e-12, "{:?}", step.weights);
}

#[test]
fn adam_steps_do_not_depend_on_the_scale_of_the_gradient_norms() {
    // The point of Adam here: multiplying every n_t by c multiplies dL/dw by c and leaves
    // Adam's steps (and the weights) unchanged, while gradient descent's steps grow c-fold.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let t = 4;
    let initial: Vec<f64> = (0..t).map(|_| rng.gen_range(0.5..5.0)).collect();
    let inputs: Vec<(Vec<f64>, Vec<f64>)> = (0..40)
        .map(|_| {
            let norms = (0..t).map(|i| rng.gen_range(0.1..1.0) * 10f64.powi(i as i32)).collect();
            let losses = initial.iter().map(|l| l * rng.gen_range(0.2..1.2)).collect();
            (norms, losses)
        })
        .collect();
    let run = |config: &GradNormConfig, scale: f64| {
        let (mut weights, mut state) = (vec![1.0; t], fresh());
        for (norms, losses) in &inputs {
            let scaled: Vec<f64> = norms.iter().map(|n| n * scale).collect();
            let step =
                gradnorm_update(&weights, &scaled, losses, &initial, config, &mut state).unwrap();
            weights = step.weights;
        }
        weights
    };
    let adam = GradNormConfig::adam(0.5, 0.01);
    let (unit, scaled) = (run(&adam, 1.0), run(&adam, 1000.0));
    // Equal up to eps = 1e-8 against |dL/dw| >= 0.1: at most lr * 1e-7 per step.
    for (a, b) in unit.iter().zip(&scaled) {
        assert!((a - b).abs() < 1e-7, "{unit:?} vs {scaled:?}");
    }
    let descent = GradNormConfig::new(0.5, 1e-4);
    let (unit, scaled) = (run(&descent, 1.0), run(&descent, 1000.0));
    let gap = unit.iter().zip(&scaled).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(gap > 0.1, "gradient descent should depend on the scale: {unit:?} vs {scaled:?}");
}

#[test]
fn the_gradnorm_weighting_keeps_adams_state_between_steps() {
    use tapestry_mtl::weighting::{GradNorm, StepInput, Weighting};
    let config = GradNormConfig::adam(0.12, 0.025);
    let mut weighting = GradNorm::with_config(config);
    let (mut weights, mut state) = (vec![1.0, 1.0], fresh());
    let initial = [2.0, 3.0];
    for step in 0..6u64 {
        let losses = [2.0 / (1.0 + step as f64), 3.0 - 0.1 * step as f64];
        let norms = [0.5 + step as f64, 40.0 - 5.0 * step as f64];
        let input =
            StepInput { step, layer_grad_norms: Some(&norms), ..StepInput::with_losses(&losses) };
        let out = weighting.weights(&input).unwrap();
        assert_eq!(out.weights, weights, "step {step}: the weights in use are last step's");
        let expected = gradnorm_update(&weights, &norms, &losses, &initial, &config, &mut state)
            .unwrap()
            .weights;
        assert_eq!(
            out.diagnostic("gradnorm.next_weights"),
            Some(expected.as_slice()),
            "step {step}"
        );
        assert_eq!(weighting.current_weights(), expected.as_slice());
        weights = expected;
    }
    assert_eq!(state.steps, 6);
}

/// `L_grad(w) = sum_t |w_t n_t - target_t|` with the targets held fixed, written out here
/// independently of the library.
fn balance_loss(weights: &[f64], norms: &[f64], targets: &[f64]) -> f64 {
    weights.iter().zip(norms).zip(targets).map(|((w, n), c)| (w * n - c).abs()).sum()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        rng_seed: RngSeed::Fixed(18),
        ..ProptestConfig::default()
    })]

    #[test]
    fn closed_form_derivative_matches_finite_differences(
        t in 1_usize..=8,
        seed in any::<u64>(),
        alpha in 0.0_f64..3.0,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let weights: Vec<f64> = (0..t).map(|_| rng.gen_range(0.1..3.0)).collect();
        let norms: Vec<f64> = (0..t).map(|_| rng.gen_range(0.01..10.0)).collect();
        let initial: Vec<f64> = (0..t).map(|_| rng.gen_range(0.5..5.0)).collect();
        let losses: Vec<f64> = initial.iter().map(|l| l * rng.gen_range(0.05..1.5)).collect();
        let config = GradNormConfig::new(alpha, 0.01);
        let step = gradnorm_update(&weights, &norms, &losses, &initial, &config, &mut fresh()).unwrap();
        prop_assert!((balance_loss(&weights, &norms, &step.targets) - step.balance_loss).abs()
            < 1e-12 * (1.0 + step.balance_loss));
        let h = 1e-6;
        for k in 0..t {
            // Away from the kink |.| at G_k = target_k, where the derivative jumps.
            prop_assume!((step.weighted_grad_norms[k] - step.targets[k]).abs() > 10.0 * h * norms[k]);
            let mut plus = weights.clone();
            let mut minus = weights.clone();
            plus[k] += h;
            minus[k] -= h;
            let numeric = (balance_loss(&plus, &norms, &step.targets)
                - balance_loss(&minus, &norms, &step.targets)) / (2.0 * h);
            prop_assert!(
                (numeric - step.weight_gradient[k]).abs() < 1e-6 * (1.0 + norms[k]),
                "task {}: numeric {} vs closed form {}", k, numeric, step.weight_gradient[k]
            );
        }
    }
}

#[test]
fn invalid_inputs_are_rejected_with_a_clear_error() {
    let config = GradNormConfig::new(1.5, 0.1);
    let ok = [1.0, 1.0];
    assert_eq!(
        gradnorm_update(&[], &[], &[], &[], &config, &mut fresh()),
        Err(GradNormError::NoTasks)
    );
    assert!(matches!(
        gradnorm_update(&ok, &[1.0], &ok, &ok, &config, &mut fresh()),
        Err(GradNormError::LengthMismatch { name: "grad_norms", len: 1, expected: 2 })
    ));
    let err = gradnorm_update(&ok, &ok, &[1.0, f64::NAN], &ok, &config, &mut fresh()).unwrap_err();
    assert!(matches!(err, GradNormError::NonFinite { name: "losses", index: 1, .. }));
    assert!(err.to_string().contains("losses[1]"), "{err}");
    assert!(matches!(
        gradnorm_update(&ok, &ok, &ok, &[1.0, 0.0], &config, &mut fresh()),
        Err(GradNormError::OutOfRange { name: "initial_losses", index: 1, .. })
    ));
    assert!(matches!(
        gradnorm_update(&[1.0, -1.0], &ok, &ok, &ok, &config, &mut fresh()),
        Err(GradNormError::OutOfRange { name: "weights", index: 1, .. })
    ));
    assert!(matches!(
        gradnorm_update(&ok, &[-1.0, 1.0], &ok, &ok, &config, &mut fresh()),
        Err(GradNormError::OutOfRange { name: "grad_norms", index: 0, .. })
    ));
    let bad = GradNormConfig { alpha: -1.0, ..config };
    assert!(matches!(
        gradnorm_update(&ok, &ok, &ok, &ok, &bad, &mut fresh()),
        Err(GradNormError::InvalidConfig { name: "alpha", .. })
    ));
    let bad = GradNormConfig { min_weight: 0.0, ..config };
    assert!(matches!(
        gradnorm_update(&ok, &ok, &ok, &ok, &bad, &mut fresh()),
        Err(GradNormError::InvalidConfig { name: "min_weight", .. })
    ));
    let bad = GradNormConfig {
        optimizer: WeightOptimizer::Adam { beta1: 1.0, beta2: 0.999, eps: 1e-8 },
        ..config
    };
    let err = gradnorm_update(&ok, &ok, &ok, &ok, &bad, &mut fresh()).unwrap_err();
    assert!(matches!(err, GradNormError::InvalidConfig { name: "optimizer.beta1", .. }));
    assert!(err.to_string().contains("config.optimizer.beta1 = 1"), "{err}");
    let bad = GradNormConfig {
        optimizer: WeightOptimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 0.0 },
        ..config
    };
    assert!(matches!(
        gradnorm_update(&ok, &ok, &ok, &ok, &bad, &mut fresh()),
        Err(GradNormError::InvalidConfig { name: "optimizer.eps", .. })
    ));
    let mut three =
        WeightOptimizerState { steps: 1, first_moment: vec![0.0; 3], second_moment: vec![0.0; 3] };
    let before = three.clone();
    assert!(matches!(
        gradnorm_update(&ok, &ok, &ok, &ok, &GradNormConfig::adam(1.5, 0.1), &mut three),
        Err(GradNormError::LengthMismatch { name: "state.first_moment", len: 3, expected: 2 })
    ));
    assert_eq!(three, before, "the state is unchanged on error");
}
