//! IMTL (IMTL-L and IMTL-G together): IMTL-G applied to the gradients of the scaled losses, the
//! scales trained as IMTL-L trains them, degenerate inputs, and a training run.
//!
//! The weights from numpy, LibMTL's `IMTL.backward` on the scaled losses `e^s L − s` (whose
//! shared gradients are `e^{s_t} g_t`):
//!
//! ```text
//! import numpy as np
//! g = np.array([[1.0, 2.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0], [0.5, -2.0, 0.0, 1.5]])
//! s = np.array([0.5, -1.0, 0.2], dtype=np.float32).astype(np.float64)
//! grads = np.exp(s)[:, None] * g
//! u = grads / np.linalg.norm(grads, axis=1, keepdims=True)
//! D = grads[0:1] - grads[1:]; U = u[0:1] - u[1:]
//! a = grads[0] @ U.T @ np.linalg.inv(D @ U.T)
//! alpha = np.concatenate([[1 - a.sum()], a])
//! print(alpha)               # [0.1896342291 0.5884985739 0.221867197 ]
//! print(alpha * np.exp(s))   # [0.3126539871 0.2164965265 0.2709892072]   (weights of L_t)
//! print(alpha @ grads)       # [0.2316520642 0.1915778231 0.1203390659 0.7793073308]   (d)
//! ```

mod common;

use tapestry_autodiff::{Tape, Tensor};
use tapestry_data::TaskSpec;
use tapestry_mtl::task_grads::TaskGradients;
use tapestry_mtl::weighting::{Direction, Imtl, ImtlG, ImtlL, StepInput, Weighting};
use tapestry_nn::Params;

const ROWS: [f32; 12] = [1.0, 2.0, -1.0, 0.5, -1.0, 0.5, 2.0, 1.0, 0.5, -2.0, 0.0, 1.5];

/// An IMTL registered for three tasks with log-scales `s`, bound once (as a step does).
fn imtl_with_scales(s: [f32; 3]) -> (Imtl, Params) {
    let mut params = Params::new();
    let mut imtl = Imtl::default();
    let tasks: Vec<TaskSpec> =
        ["a", "b", "c"].iter().map(|n| TaskSpec::regression(*n, 1)).collect();
    imtl.register(&mut params, &tasks).unwrap();
    let id = params.id("weighting.imtl_l.log_scale").unwrap();
    params.set(id, Tensor::from(s.to_vec())).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let losses: Vec<_> = (0..3).map(|_| tape.leaf(Tensor::scalar(1.0))).collect();
    assert!(imtl.combined_loss(&losses, &bound).is_some());
    (imtl, params)
}

#[test]
fn imtl_is_imtl_g_on_the_gradients_of_the_scaled_losses() {
    let s = [0.5f32, -1.0, 0.2];
    let (mut imtl, _) = imtl_with_scales(s);
    let g = TaskGradients::from_matrix(3, 4, ROWS.to_vec());
    let losses = [2.0, 0.5, 1e6];
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
    let out = imtl.weights(&input).unwrap();
    for (w, want) in out.weights.iter().zip([0.3126539871, 0.2164965265, 0.2709892072]) {
        assert!((w - want).abs() < 1e-7, "{:?}", out.weights);
    }
    let Some(Direction::Combination(c)) = &out.direction else { panic!("a combination") };
    assert_eq!(c, &out.weights, "the shared update is Σ_t w_t g_t");
    let d = &common::shared_direction(&g, &out.direction);
    for (x, want) in d.iter().zip([0.231_652_06f32, 0.191_577_82, 0.120_339_07, 0.779_307_3]) {
        assert!((x - want).abs() < 1e-6, "{d:?}");
    }
    // The same as IMTL-G on the scaled gradients e^{s_t} g_t, through its own interface.
    let scaled: Vec<f32> =
        ROWS.iter().enumerate().map(|(k, &v)| v * (f64::from(s[k / 4]).exp() as f32)).collect();
    let scaled = TaskGradients::from_matrix(3, 4, scaled);
    let alpha = ImtlG
        .weights(&StepInput { shared: Some(&scaled), ..StepInput::with_losses(&losses) })
        .unwrap()
        .weights;
    let combined = scaled.combine(&alpha.iter().map(|&a| a as f32).collect::<Vec<_>>());
    for (x, y) in d.iter().zip(combined[0].as_slice()) {
        assert!((x - y).abs() < 1e-6, "{d:?} vs {combined:?}");
    }
    for t in 0..3 {
        let e = f64::from(s[t]).exp();
        assert!((out.weights[t] - alpha[t] * e).abs() < 1e-7, "{:?} vs {alpha:?}", out.weights);
    }
    assert_eq!(out.diagnostic("imtl.singular"), Some(&[0.0][..]));
    let logged = out.diagnostic("imtl_l.log_scale").unwrap();
    assert!(logged.iter().zip(s).all(|(a, b)| *a == f64::from(b)), "{logged:?}");
    // At s = 0 it is IMTL-G itself.
    let (mut plain, _) = imtl_with_scales([0.0; 3]);
    let out = plain.weights(&input).unwrap();
    assert_eq!(out.weights, ImtlG::weights_from_gram(g.gram(), 3).unwrap());
}

#[test]
fn degenerate_inputs_fall_back_to_equal_alphas_and_missing_inputs_are_errors() {
    let s = [0.5f32, -1.0, 0.2];
    let (mut imtl, _) = imtl_with_scales(s);
    // Parallel gradients, and a zero gradient: IMTL-G's system is singular; α = 1/T.
    for rows in [vec![1.0, 2.0, 2.0, 4.0, -0.5, -1.0], vec![0.0, 0.0, 1.0, 1.0, 1.0, -1.0]] {
        let g = TaskGradients::from_matrix(3, 2, rows);
        let losses = [1e6, 1.0, 1e-6];
        let out = imtl.weights(&StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) });
        let out = out.unwrap();
        for (w, st) in out.weights.iter().zip(s) {
            let want = f64::from(st).exp() / 3.0;
            assert!((w - want).abs() < 1e-12, "{:?}", out.weights);
        }
        assert_eq!(out.diagnostic("imtl.singular"), Some(&[1.0][..]));
        let d = common::shared_direction(&g, &out.direction);
        assert!(d.iter().all(|v| v.is_finite()));
    }
    let g = TaskGradients::from_matrix(3, 4, ROWS.to_vec());
    let losses = [1.0; 3];
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
    assert!(imtl.weights(&StepInput { shared: None, ..input }).is_err());
    assert!(Imtl::default().weights(&input).is_err(), "register() first");
    let nan = [1.0, f64::NAN, 1.0];
    assert!(imtl.weights(&StepInput { losses: &nan, ..input }).is_err());
}

#[test]
fn a_step_gives_the_trunk_the_direction_and_the_heads_and_scales_imtl_ls_gradients() {
    use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
    let data = common::dataset(32, 3);
    let batch = data.batches(&tapestry_data::BatchOptions::new(32, 0), 0).unwrap().next().unwrap();
    let mut params = Params::new();
    let model = common::conv_model(&mut params, 4, 0.0);
    let tasks = tapestry_mtl::MultiTaskModel::tasks(&model).to_vec();
    let mut imtl = Imtl::default();
    imtl.register(&mut params, &tasks).unwrap();
    let s = params.id("weighting.imtl_l.log_scale").unwrap();
    params.set(s, Tensor::from(vec![0.3, -0.4])).unwrap();
    let counters = StepCounters { step: 0, epoch: 0, seed: 1 };
    let step = TrainStep::new(&model, &params, &imtl, StepOptions::default()).unwrap();
    let (grads, report) = step.gradients(&model, &mut params, &mut imtl, &batch, counters).unwrap();
    // IMTL-L alone on the same parameters: the heads and the scales get the same gradients.
    let mut imtl_l = ImtlL::default();
    imtl_l.register(&mut params, &tasks).unwrap();
    let step_l = TrainStep::new(&model, &params, &imtl_l, StepOptions::default()).unwrap();
    let (grads_l, report_l) =
        step_l.gradients(&model, &mut params, &mut imtl_l, &batch, counters).unwrap();
    assert_eq!(report.losses, report_l.losses);
    let shared = step.shared_params().to_vec();
    let others: Vec<_> = params.ids().into_iter().filter(|id| !shared.contains(id)).collect();
    assert!(others.contains(&s));
    for &id in &others {
        let (a, b) = (grads.get(id).to_vec(), grads_l.get(id).to_vec());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "{}: {a:?} vs {b:?}",
                params.name(id)
            );
        }
    }
    // ∂/∂s_t = e^{s_t} L_t − 1, IMTL-L's.
    let gs = grads.get(s).to_vec();
    for (t, &st) in [0.3f64, -0.4].iter().enumerate() {
        let want = (st as f32 as f64).exp() * report.losses[t] - 1.0;
        assert!((f64::from(gs[t]) - want).abs() < 1e-4, "{gs:?}");
    }
    // The trunk: Σ_t (α_t e^{s_t}) g_t with the reported weights, not IMTL-L's e^{s_t}.
    let (trunk, trunk_l) = (grads.flatten(&shared), grads_l.flatten(&shared));
    let gap: f32 = trunk.iter().zip(&trunk_l).map(|(a, b)| (a - b).abs()).sum();
    assert!(gap > 1e-4, "IMTL's trunk gradient should differ from IMTL-L's");
    let weights_sum: f64 =
        report.weights.iter().zip([0.3f64, -0.4]).map(|(w, s)| w / s.exp()).sum();
    assert!((weights_sum - 1.0).abs() < 1e-5, "Σ α_t = 1: {:?}", report.weights);
}

#[test]
fn imtl_trains_the_toy_and_its_scales_move_as_imtl_l_s() {
    use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
    use tapestry_mtl::trainer::{NoObserver, Trainer, TrainerConfig};
    use tapestry_nn::optim::Adam;
    let config = GradNormToyConfig {
        sigmas: vec![1.0, 10.0],
        input_dim: 12,
        output_dim: 4,
        train: 200,
        test: 10,
        ..GradNormToyConfig::default()
    };
    let splits = gradnorm_toy(&config);
    let run = || {
        let mut params = Params::new();
        let model = gradnorm_toy_model(&mut params, &config, 16, 2, 0).unwrap();
        let trainer_config =
            TrainerConfig { epochs: 4, batch_size: 20, ..TrainerConfig::default() };
        let mut trainer = Trainer::new(trainer_config, Adam::new(1e-2), Imtl::default());
        let epochs =
            trainer.fit(&model, &mut params, &splits.train, None, &mut NoObserver).unwrap();
        assert!(epochs.iter().all(|e| e.mean_weights.iter().all(|w| w.is_finite())));
        let loss = |e: usize, t: usize| epochs[e].train.tasks[t].loss.unwrap();
        assert!(loss(3, 0) + loss(3, 1) < loss(0, 0) + loss(0, 1), "the losses fall");
        let s = params.get(params.id("weighting.imtl_l.log_scale").unwrap()).to_vec();
        // IMTL-L drives each scaled loss e^{s_t} L_t towards 1: s_t moves against ln L_t.
        for (t, &st) in s.iter().enumerate() {
            let first = loss(0, t).ln();
            assert!(f64::from(st) * first < 0.0, "task {t}: s {st}, ln L {first}");
        }
        (s, params)
    };
    let (s, params) = run();
    // σ = 10's loss is far above 1, σ = 1's below it.
    assert!(s[1] < 0.0 && s[0] > 0.0, "{s:?}");
    let (_, again) = run();
    for id in params.ids() {
        assert_eq!(params.get(id), again.get(id), "{}", params.name(id));
    }
}
