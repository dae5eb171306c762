//! GradVac against its published rule over several steps (so that the moving targets matter),
//! PCGrad as its β = 0 case, degenerate inputs, seeded orders and a training run.
//!
//! Directions from numpy: LibMTL's `GradVac.backward` with given orders, plus the two rounding
//! rules of `GradVac` (what is left of `g'_i` below 1e-6 of the lengths it was summed from is 0;
//! a cosine within 1e-12 of its target meets it). The first changes the last per-block step: at
//! step 2 the rows' second halves are exactly opposite, `g'_0` cancels, and plain float64 leaves
//! 7e-9 of it, whose cosine with `g_2` (−0.14) is rounding; exactly, it is 0.
//!
//! ```text
//! import numpy as np
//! np.set_printoptions(precision=9)
//! def gradvac(grads, rho_T, groups, orders, beta):
//!     pc = grads.copy(); T = len(grads); n = 0
//!     for i in range(T):
//!         terms = [np.linalg.norm(grads[i, beg:end]) for beg, end in groups]
//!         for j in [j for j in orders[i] if j != i]:
//!             for k, (beg, end) in enumerate(groups):
//!                 a, b = pc[i, beg:end], grads[j, beg:end]
//!                 na, nb = np.linalg.norm(a), np.linalg.norm(b)
//!                 na = na if na > 1e-6 * terms[k] else 0.0  # below float32 precision: 0
//!                 rho = a @ b / (na * nb) if na > 0 and nb > 0 else 0.0
//!                 if rho < rho_T[i, j, k] - 1e-12:  # met up to rounding: no step
//!                     w = na * (rho_T[i, j, k] * np.sqrt(1 - rho**2)
//!                               - rho * np.sqrt(1 - rho_T[i, j, k]**2)) \
//!                         / (nb * np.sqrt(1 - rho_T[i, j, k]**2))
//!                     pc[i, beg:end] += grads[j, beg:end] * w; n += 1; terms[k] += abs(w) * nb
//!                 rho_T[i, j, k] = (1 - beta) * rho_T[i, j, k] + beta * rho
//!     return pc.sum(0), n
//! steps = [np.array([[1.0, 2.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0], [0.5, -2.0, 0.0, 1.5]]),
//!          np.array([[0.5, 1.0, 1.0, -0.5], [1.0, 0.5, -2.0, 1.0], [0.5, 2.0, 0.5, 1.5]]),
//!          np.array([[1.0, 1.0, 1.0, 1.0], [0.8, 1.2, 1.0, 0.9], [-1.0, 0.5, 0.5, -1.0]])]
//! orders = [[[2, 1], [0, 2], [1, 0]], [[1, 2], [2, 0], [0, 1]], [[2, 1], [2, 0], [1, 0]]]
//! for name, groups in [('whole', [(0, 4)]), ('per block', [(0, 2), (2, 4)])]:
//!     rho_T = np.zeros((3, 3, len(groups)))
//!     for g, o in zip(steps, orders):
//!         print(name, *gradvac(g, rho_T, groups, o, 0.5))
//!     print(name, 'targets', rho_T.reshape(-1))
//! # whole [1.202307692 0.930769231 0.8         4.366923077] 5
//! # whole [ 2.373055457  4.003910775 -0.399756125  1.949878063] 2
//! # whole [0.073258414 3.637534161 3.382169722 0.200940634] 4
//! # whole targets [ 0.           0.332745553 -0.060605518  0.323915178  0.
//! #  -0.03255363   0.080457806 -0.019220269  0.         ]
//! # per block [-0.4          0.641176471  0.4          3.9        ] 7
//! # per block [2.          3.5         0.508678163 2.370660918] 6
//! # per block [ 0.054119919  3.762425666  3.398470462 -0.041991075] 8
//! # per block targets [ 0.           0.           0.560148426  0.139108476 -0.008974193
//! #  -0.102212184  0.642296705  0.094625467  0.           0.
//! #   0.019331554  0.014194239  0.10206441  -0.005733056  0.019331554
//! #  -0.132964499  0.           0.         ]
//! ```

#![allow(clippy::single_range_in_vec_init)] // one group, the whole model, is the common case

mod common;

use tapestry_mtl::task_grads::TaskGradients;
use tapestry_mtl::weighting::{
    Direction, GradVac, GradVacGrouping, Needs, PcGrad, StepInput, Weighting,
};

fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{got:?} vs {want:?}");
    }
}

fn steps() -> [Vec<Vec<f32>>; 3] {
    [
        vec![vec![1.0, 2.0, -1.0, 0.5], vec![-1.0, 0.5, 2.0, 1.0], vec![0.5, -2.0, 0.0, 1.5]],
        vec![vec![0.5, 1.0, 1.0, -0.5], vec![1.0, 0.5, -2.0, 1.0], vec![0.5, 2.0, 0.5, 1.5]],
        vec![vec![1.0, 1.0, 1.0, 1.0], vec![0.8, 1.2, 1.0, 0.9], vec![-1.0, 0.5, 0.5, -1.0]],
    ]
}

fn orders() -> [Vec<Vec<usize>>; 3] {
    [
        vec![vec![2, 1], vec![0, 2], vec![1, 0]],
        vec![vec![1, 2], vec![2, 0], vec![0, 1]],
        vec![vec![2, 1], vec![2, 0], vec![1, 0]],
    ]
}

#[test]
fn gradvac_matches_the_published_rule_over_several_steps() {
    let mut whole = GradVac::new(0.5, GradVacGrouping::WholeModel);
    let want = [
        ([1.202_307_7, 0.930_769_2, 0.8, 4.366_923], 5),
        ([2.373_055_5, 4.003_910_7, -0.399_756_13, 1.949_878], 2),
        ([0.073_258_414, 3.637_534_2, 3.382_169_7, 0.200_940_63], 4),
    ];
    for ((rows, order), (d_want, n_want)) in steps().iter().zip(orders()).zip(want) {
        let (d, n) = whole.direction(rows, &[0..4], &order);
        close(&d, &d_want, 1e-6);
        assert_eq!(n, n_want);
    }
    let targets = [0.0, 0.332745553, -0.060605518, 0.323915178, 0.0, -0.03255363];
    for (a, b) in whole.targets().iter().zip(targets) {
        assert!((a - b).abs() < 1e-8, "{:?}", whole.targets());
    }
    let mut blocks = GradVac::new(0.5, GradVacGrouping::PerParameter);
    let want = [
        ([-0.4, 0.641_176_5, 0.4, 3.9], 7),
        ([2.0, 3.5, 0.508_678_16, 2.370_661], 6),
        ([0.054_119_92, 3.762_425_6, 3.398_470_5, -0.041_991_075], 8),
    ];
    for ((rows, order), (d_want, n_want)) in steps().iter().zip(orders()).zip(want) {
        let (d, n) = blocks.direction(rows, &[0..2, 2..4], &order);
        close(&d, &d_want, 1e-6);
        assert_eq!(n, n_want);
    }
    let targets = [0.0, 0.0, 0.560148426, 0.139108476, -0.008974193, -0.102212184, 0.642296705];
    for (a, b) in blocks.targets().iter().zip(targets) {
        assert!((a - b).abs() < 1e-8, "{:?}", blocks.targets());
    }
    assert_eq!(blocks.targets().len(), 3 * 3 * 2);
}

#[test]
fn with_beta_zero_the_targets_stay_at_zero_and_gradvac_is_pcgrad() {
    let mut gradvac = GradVac::new(0.0, GradVacGrouping::WholeModel);
    for (rows, order) in steps().iter().zip(orders()) {
        let (d, _) = gradvac.direction(rows, &[0..4], &order);
        let (want, _) = common::pcgrad_direction(rows, &order);
        close(&d, &want, 1e-6);
    }
    assert!(gradvac.targets().iter().all(|&t| t == 0.0));
    // Whatever β, the first step (targets at 0) is PCGrad's.
    let mut first = GradVac::default();
    let (d, _) = first.direction(&steps()[0], &[0..4], &orders()[0]);
    close(&d, &common::pcgrad_direction(&steps()[0], &orders()[0]).0, 1e-6);
}

#[test]
fn degenerate_gradients_give_finite_directions() {
    // Parallel gradients drive the targets to exactly 1 (β = 1: at once), where no finite step
    // reaches the target: a later conflict is skipped, not divided by √(1 − φ̂²) = 0.
    let mut gradvac = GradVac::new(1.0, GradVacGrouping::WholeModel);
    let parallel = vec![vec![1.0, 2.0], vec![2.0, 4.0]];
    let (d, n) = gradvac.direction(&parallel, &[0..2], &[vec![1], vec![0]]);
    assert_eq!((d, n), (vec![3.0, 6.0], 0));
    assert!(gradvac.targets().iter().all(|&t| t == 0.0 || (t - 1.0).abs() < 1e-15));
    let apart = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let (d, n) = gradvac.direction(&apart, &[0..2], &[vec![1], vec![0]]);
    assert_eq!((d, n), (vec![1.0, 1.0], 0));
    // Long runs of parallel gradients with β = 0.5 take the targets to 1 from below; a later
    // conflict is skipped as well, not blown up by the rounding left in 1 − φ̂.
    let mut slow = GradVac::new(0.5, GradVacGrouping::WholeModel);
    for _ in 0..80 {
        slow.direction(&parallel, &[0..2], &[vec![1], vec![0]]);
    }
    let (d, n) = slow.direction(&apart, &[0..2], &[vec![1], vec![0]]);
    assert_eq!((d, n), (vec![1.0, 1.0], 0));
    // A target near 1 but clear of rounding still gets its (large, finite) step.
    let mut near = GradVac::new(0.5, GradVacGrouping::WholeModel);
    for _ in 0..10 {
        near.direction(&parallel, &[0..2], &[vec![1], vec![0]]);
    }
    let (d, n) = near.direction(&apart, &[0..2], &[vec![1], vec![0]]);
    assert_eq!(n, 2);
    assert!(d.iter().all(|v| v.is_finite() && *v > 10.0), "{d:?}");
    // A zero gradient: cosine 0, nothing added to or from it; opposite gradients cancel as
    // PCGrad's do at first.
    let mut gradvac = GradVac::default();
    let zero = vec![vec![0.0, 0.0], vec![1.0, -1.0]];
    for _ in 0..3 {
        let (d, _) = gradvac.direction(&zero, &[0..2], &[vec![1], vec![0]]);
        assert_eq!(d, vec![1.0, -1.0]);
    }
    let mut gradvac = GradVac::default();
    let (d, _) =
        gradvac.direction(&[vec![1.0, 1.0], vec![-1.0, -1.0]], &[0..2], &[vec![1], vec![0]]);
    close(&d, &[0.0, 0.0], 1e-6);
}

#[test]
fn a_gradient_cancelled_to_zero_is_zero_in_every_later_cosine() {
    // g_0 against its opposite g_1 lands on exactly 0 (as in the parameters' own arithmetic),
    // so its cosine with g_2 is 0 and that target stays at 0, where a norm taken as cᵀGc would
    // leave rounding whose cosine with g_2 is anything in [−1, 1]. Per parameter every group
    // has one dimension for three tasks. From `gradvac` of the module docs:
    //
    //   g = np.array([[1.0, 2.0, 0.5], [-1.0, -2.0, -0.5], [3.0, -1.0, 0.25]])
    //   orders = [[1, 2], [0, 2], [0, 1]]
    //   for groups in [[(0, 3)], [(0, 1), (1, 2), (2, 3)]]:
    //       rho_T = np.zeros((3, 3, len(groups)))
    //       print(gradvac(g, rho_T, groups, orders, 0.5), rho_T[0, 2])
    //   # [2.785714286 -1.428571429 0.142857143] 3 [0.]
    //   # [0. 0. 0.] 9 [0. 0. 0.]
    let rows = vec![vec![1.0, 2.0, 0.5], vec![-1.0, -2.0, -0.5], vec![3.0, -1.0, 0.25]];
    let orders = vec![vec![1, 2], vec![0, 2], vec![0, 1]];
    for grouping in [GradVacGrouping::WholeModel, GradVacGrouping::PerParameter] {
        let groups = match grouping {
            GradVacGrouping::WholeModel => vec![0..3],
            GradVacGrouping::PerParameter => vec![0..1, 1..2, 2..3],
        };
        let mut gradvac = GradVac::new(0.5, grouping);
        let (d, n) = gradvac.direction(&rows, &groups, &orders);
        let k = groups.len();
        for group in 0..k {
            assert_eq!(
                gradvac.targets()[2 * k + group],
                0.0,
                "{grouping:?}: {:?}",
                gradvac.targets()
            );
        }
        let (want, n_want) = match grouping {
            GradVacGrouping::WholeModel => ([2.785_714_3, -1.428_571_4, 0.142_857_14], 3),
            GradVacGrouping::PerParameter => ([0.0; 3], 9),
        };
        close(&d, &want, 1e-6);
        assert_eq!(n, n_want, "{grouping:?}");
    }
}

#[test]
fn through_the_interface_the_orders_come_from_the_seed_and_the_groups_from_the_blocks() {
    let g = TaskGradients::from_matrix(3, 4, steps()[0].concat());
    let losses = [1e6, 1.0, 2.0];
    let input = StepInput { step: 3, seed: 9, shared: Some(&g), ..StepInput::with_losses(&losses) };
    let (mut a, mut b) = (GradVac::default(), GradVac::default());
    for _ in 0..3 {
        let (x, y) = (a.weights(&input).unwrap(), b.weights(&input).unwrap());
        assert_eq!(x, y);
        assert_eq!(x.weights, vec![1.0; 3]);
        assert!(x.diagnostic("gradvac.adjustments").is_some());
    }
    // On the whole model the direction is a combination of the gradients, from their Gram.
    let mut fresh = GradVac::default();
    let out = fresh.weights(&input).unwrap();
    let Some(Direction::Combination(c)) = &out.direction else { panic!("a combination") };
    let orders = PcGrad::orders(9, 3, 3);
    let (want, _) = GradVac::default().coefficients(&[g.gram().to_vec()], &orders);
    assert_eq!(c, &want[0]);
    let (d, _) = GradVac::default().direction(&steps()[0], &[0..4], &orders);
    close(&common::shared_direction(&g, &out.direction), &d, 1e-6);
    assert_eq!(fresh.needs(), Needs { shared_gram: true, ..Needs::LOSSES });
    let per_parameter = GradVac::new(0.5, GradVacGrouping::PerParameter);
    assert_eq!(per_parameter.needs(), Needs { shared_gradients: true, ..Needs::LOSSES });
    assert!(fresh.weights(&StepInput { shared: None, ..input }).is_err());
    // Targets sized for three tasks refuse two.
    let two = TaskGradients::from_matrix(2, 4, steps()[0][..2].concat());
    assert!(fresh.weights(&StepInput { shared: Some(&two), ..input }).is_err());
}

#[test]
fn a_step_groups_by_shared_parameter_and_updates_the_trunk_along_the_direction() {
    use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
    use tapestry_nn::Params;
    let data = common::dataset(32, 3);
    let batch = data.batches(&tapestry_data::BatchOptions::new(32, 0), 0).unwrap().next().unwrap();
    let mut params = Params::new();
    let model = common::conv_model(&mut params, 4, 0.0);
    let mut gradvac = GradVac::new(0.5, GradVacGrouping::PerParameter);
    let step = TrainStep::new(&model, &params, &gradvac, StepOptions::default()).unwrap();
    let counters = StepCounters { step: 2, epoch: 0, seed: 5 };
    let (grads, _) = step.gradients(&model, &mut params, &mut gradvac, &batch, counters).unwrap();
    let tape = tapestry_autodiff::Tape::new();
    let bound = params.bind(&tape);
    let out = tapestry_mtl::MultiTaskModel::forward(
        &model,
        tape.constant(tapestry_mtl::model::input_tensor(&batch.inputs)),
        &mut tapestry_nn::Ctx::train(&bound),
    );
    let losses: Vec<_> =
        (tapestry_mtl::MultiTaskModel::tasks(&model).iter().zip(&out.outputs).zip(&batch.targets))
            .map(|((s, &o), t)| tapestry_mtl::model::task_loss(s, o, t).unwrap())
            .collect();
    let shared = step.shared_params().to_vec();
    let g = TaskGradients::on_params(&tape, &losses, &bound, &shared, Default::default());
    let groups: Vec<_> = shared.iter().map(|&id| g.range(id).unwrap()).collect();
    assert_eq!(groups.len(), 4, "weight and bias of two convolutions");
    let rows: Vec<Vec<f32>> = (0..g.tasks()).map(|t| g.row(t)).collect();
    let mut replay = GradVac::new(0.5, GradVacGrouping::PerParameter);
    let (want, _) = replay.direction(&rows, &groups, &PcGrad::orders(5, 2, g.tasks()));
    assert_eq!(grads.flatten(&shared), want);
    assert_eq!(gradvac.targets(), replay.targets());
}

#[test]
fn gradvac_trains_the_toy_end_to_end_and_deterministically() {
    use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
    use tapestry_mtl::trainer::{NoObserver, Trainer, TrainerConfig};
    use tapestry_nn::optim::Adam;
    use tapestry_nn::Params;
    let config = GradNormToyConfig {
        sigmas: vec![1.0, 10.0, 3.0],
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
        let mut trainer = Trainer::new(trainer_config, Adam::new(1e-2), GradVac::default());
        let epochs =
            trainer.fit(&model, &mut params, &splits.train, None, &mut NoObserver).unwrap();
        let loss =
            |e: usize| -> f64 { epochs[e].train.tasks.iter().map(|t| t.loss.unwrap()).sum() };
        (loss(0), loss(3), params)
    };
    let (first, last, params) = run();
    assert!(last < 0.8 * first, "the summed loss went from {first} to {last}");
    let (_, _, again) = run();
    for id in params.ids() {
        assert_eq!(params.get(id), again.get(id), "{}", params.name(id));
    }
}
