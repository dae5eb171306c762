//! The gradient-based weightings beyond MGDA against their published formulas, including
//! degenerate inputs (identical, opposite and zero gradients, huge losses), and one real step.
//!
//! PCGrad's expected direction from numpy (the paper's algorithm, as LibMTL writes it):
//!
//! ```text
//! import numpy as np
//! g = np.array([[1.0, 2.0, -1.0], [-1.0, 0.5, 2.0], [0.5, -2.0, 0.0]])
//! orders = [[2, 1, 0], [0, 2, 1], [1, 0, 2]]
//! pc = g.copy()
//! for i in range(3):
//!     for j in orders[i]:
//!         gij = pc[i] @ g[j]
//!         if gij < 0: pc[i] -= gij * g[j] / (g[j] @ g[j])
//! print(pc.sum(0))        # [1.33543417 0.07282913 1.79201681]
//! ```
//!
//! IMTL-G's weights from numpy (the paper's closed form, as LibMTL writes it):
//!
//! ```text
//! g = np.array([[1.0, 2.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0], [0.5, -2.0, 0.0, 1.5]])
//! u = g / np.linalg.norm(g, axis=1, keepdims=True)
//! D = g[0:1] - g[1:]; U = u[0:1] - u[1:]
//! a = g[0] @ U.T @ np.linalg.inv(D @ U.T)
//! print(np.concatenate([[1 - a.sum()], a]))   # [0.39074924 0.2705734  0.33867736]
//! ```
//!
//! Aligned-MTL's weights from numpy (LibMTL's form, with `numpy.linalg.eigh` for `symeig`):
//!
//! ```text
//! def aligned(g):
//!     M = g @ g.T; lmbda, V = np.linalg.eigh(M)
//!     tol = lmbda.max() * max(M.shape) * np.finfo(np.float32).eps
//!     rank = (lmbda > tol).sum(); order = np.argsort(-lmbda)
//!     lmbda, V = lmbda[order][:rank], V[:, order][:, :rank]
//!     B = np.sqrt(lmbda[-1]) * (V @ np.diag(1 / np.sqrt(lmbda)) @ V.T)
//!     return B.sum(0)
//! print(aligned(g))                                    # [1.0816933  0.87163714 0.97805922]
//! print(aligned(np.array([[1., 2.], [2., 4.], [.5, 1.]])))   # [0.66666667 1.33333333 0.33333333]
//! ```
//!
//! GradDrop's direction from numpy (LibMTL's form) for fixed draws:
//!
//! ```text
//! r = np.array([[0.5, -1.0, 0.2, 0.0], [-0.25, -0.5, 0.6, 1.0]])
//! u = np.array([0.3, 0.9, 0.1, 0.5], dtype=np.float32)
//! P = 0.5 * (1 + r.sum(0) / (np.abs(r).sum(0) + 1e-7))
//! M = (P > u) * (r > 0) + (P < u) * (r < 0)
//! print((r * M).sum(0))                   # [ 0.5  -1.5   0.8   1. ]
//! print((r * (0.2 + 0.8 * M)).sum(0))     # [ 0.45 -1.5   0.8   1.  ]   (leak 0.2)
//! ```

use tapestry_mtl::task_grads::TaskGradients;
use tapestry_mtl::weighting::{
    AlignedMtl, Direction, GradDrop, ImtlG, PcGrad, StepInput, Weighting,
};

fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{got:?} vs {want:?}");
    }
}

#[test]
fn pcgrad_matches_the_published_algorithm() {
    let rows = vec![vec![1.0, 2.0, -1.0], vec![-1.0, 0.5, 2.0], vec![0.5, -2.0, 0.0]];
    let orders = vec![vec![2, 1, 0], vec![0, 2, 1], vec![1, 0, 2]];
    let (d, projections) = common::pcgrad_direction(&rows, &orders);
    close(&d, &[1.335_434_2, 0.072_829_13, 1.792_016_8], 1e-6);
    assert!(projections >= 2);
    // Identical gradients never conflict: the sum passes unchanged.
    let same = vec![vec![1.0, -2.0]; 3];
    let (d, n) = common::pcgrad_direction(&same, &PcGrad::orders(0, 0, 3));
    assert_eq!(n, 0);
    close(&d, &[3.0, -6.0], 1e-7);
    // Opposite gradients cancel: each loses its whole component along the other.
    let (d, _) = common::pcgrad_direction(&[vec![1.0, 1.0], vec![-1.0, -1.0]], &[vec![1], vec![0]]);
    close(&d, &[0.0, 0.0], 1e-6);
    // A zero gradient is skipped, not divided by.
    let (d, _) = common::pcgrad_direction(&[vec![0.0, 0.0], vec![1.0, -1.0]], &[vec![1], vec![0]]);
    assert_eq!(d, vec![1.0, -1.0]);
}

#[test]
fn pcgrad_orders_come_from_the_seed_and_the_step() {
    assert_eq!(PcGrad::orders(3, 9, 4), PcGrad::orders(3, 9, 4));
    assert_ne!(PcGrad::orders(3, 9, 4), PcGrad::orders(3, 10, 4));
    for order in PcGrad::orders(1, 2, 5) {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4], "a permutation");
    }
}

#[test]
fn pcgrad_through_the_interface_returns_a_combination_of_the_gradients() {
    let g = TaskGradients::from_matrix(2, 3, vec![1.0, 2.0, -1.0, -1.0, 0.5, 2.0]);
    let losses = [1e6, 2.0];
    let input = StepInput { step: 4, seed: 1, shared: Some(&g), ..StepInput::with_losses(&losses) };
    let out = PcGrad.weights(&input).unwrap();
    assert_eq!(out.weights, vec![1.0, 1.0]);
    let Some(Direction::Combination(_)) = &out.direction else { panic!("a combination") };
    let d = &common::shared_direction(&g, &out.direction);
    let (want, _) = common::pcgrad_direction(&[g.row(0), g.row(1)], &PcGrad::orders(1, 4, 2));
    close(d, &want, 1e-6);
    assert!(d.iter().all(|v| v.is_finite()));
    // The direction conflicts with neither task (for two tasks PCGrad removes the conflict).
    for t in 0..2 {
        let dot: f32 = g.row(t).iter().zip(d).map(|(a, b)| a * b).sum();
        assert!(dot >= -1e-6, "task {t}: {dot}");
    }
    assert!(PcGrad.weights(&StepInput { shared: None, ..input }).is_err());
}

mod common;

#[test]
fn a_pcgrad_step_updates_the_trunk_along_its_direction() {
    use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
    use tapestry_nn::Params;
    let data = common::dataset(32, 3);
    let batch = data.batches(&tapestry_data::BatchOptions::new(32, 0), 0).unwrap().next().unwrap();
    let mut params = Params::new();
    let model = common::conv_model(&mut params, 4, 0.0);
    let mut pcgrad = PcGrad;
    let step = TrainStep::new(&model, &params, &pcgrad, StepOptions::default()).unwrap();
    let counters = StepCounters { step: 2, epoch: 0, seed: 5 };
    let (grads, report) =
        step.gradients(&model, &mut params, &mut pcgrad, &batch, counters).unwrap();
    // Recompute the direction from the reported per-task gradients' pieces: the trunk's
    // gradient, flattened in the shared order, is PCGrad's direction of the T rows.
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
    let rows: Vec<Vec<f32>> = (0..g.tasks()).map(|t| g.row(t)).collect();
    let (want, _) = common::pcgrad_direction(&rows, &PcGrad::orders(5, 2, g.tasks()));
    close(&grads.flatten(&shared), &want, 1e-5);
    assert!(report.diagnostic("pcgrad.projections").is_some());
}

#[test]
fn imtl_g_weights_make_the_projections_equal() {
    let g = TaskGradients::from_matrix(
        3,
        4,
        vec![1.0, 2.0, -1.0, 0.5, -1.0, 0.5, 2.0, 1.0, 0.5, -2.0, 0.0, 1.5],
    );
    let alpha = ImtlG::weights_from_gram(g.gram(), 3).unwrap();
    for (a, w) in alpha.iter().zip([0.39074924, 0.2705734, 0.33867736]) {
        assert!((a - w).abs() < 1e-7, "{alpha:?}");
    }
    // ⟨d, u_t⟩ is the same for every task.
    let d: Vec<f64> = (0..4).map(|j| (0..3).map(|t| alpha[t] * g.row(t)[j] as f64).sum()).collect();
    let proj: Vec<f64> = (0..3)
        .map(|t| {
            let r = g.row(t);
            let n = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            r.iter().zip(&d).map(|(&a, b)| a as f64 * b).sum::<f64>() / n
        })
        .collect();
    assert!((proj[0] - proj[1]).abs() < 1e-6 && (proj[0] - proj[2]).abs() < 1e-6, "{proj:?}");
    // Degenerate: parallel or zero gradients have no unique answer: equal weights, flagged.
    for rows in [vec![1.0, 2.0, 2.0, 4.0], vec![0.0, 0.0, 1.0, 1.0]] {
        let g = TaskGradients::from_matrix(2, 2, rows);
        let losses = [1e6, 1.0];
        let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&losses) };
        let out = ImtlG.weights(&input).unwrap();
        assert_eq!(out.weights, vec![0.5, 0.5]);
        assert_eq!(out.diagnostic("imtl.singular"), Some(&[1.0][..]));
    }
    // Two orthogonal tasks of norms 3 and 1: equal projections means d = (1, 1)·c.
    let g = TaskGradients::from_matrix(2, 2, vec![3.0, 0.0, 0.0, 1.0]);
    let a = ImtlG::weights_from_gram(g.gram(), 2).unwrap();
    let d = [a[0] * 3.0, a[1]];
    assert!((d[0] - d[1]).abs() < 1e-12 && (a[0] + a[1] - 1.0).abs() < 1e-12, "{a:?}");
}

#[test]
fn aligned_mtl_weights_match_the_published_form() {
    let g = TaskGradients::from_matrix(
        3,
        4,
        vec![1.0, 2.0, -1.0, 0.5, -1.0, 0.5, 2.0, 1.0, 0.5, -2.0, 0.0, 1.5],
    );
    let (w, rank) = AlignedMtl::weights_from_gram(g.gram(), 3);
    assert_eq!(rank, 3);
    for (a, b) in w.iter().zip([1.0816933, 0.87163714, 0.97805922]) {
        assert!((a - b).abs() < 1e-7, "{w:?}");
    }
    // Rank-deficient (parallel gradients): only the non-zero eigenvalue counts.
    let g = TaskGradients::from_matrix(3, 2, vec![1.0, 2.0, 2.0, 4.0, 0.5, 1.0]);
    let (w, rank) = AlignedMtl::weights_from_gram(g.gram(), 3);
    assert_eq!(rank, 1);
    for (a, b) in w.iter().zip([2.0 / 3.0, 4.0 / 3.0, 1.0 / 3.0]) {
        assert!((a - b).abs() < 1e-6, "{w:?}");
    }
    // All-zero gradients: weights of 1, rank 0; huge losses change nothing (it reads gradients).
    let zero = TaskGradients::from_matrix(2, 3, vec![0.0; 6]);
    let losses = [1e6, 1e6];
    let out = AlignedMtl
        .weights(&StepInput { shared: Some(&zero), ..StepInput::with_losses(&losses) })
        .unwrap();
    assert_eq!(out.weights, vec![1.0, 1.0]);
    assert_eq!(out.diagnostic("aligned.rank"), Some(&[0.0][..]));
}

#[test]
fn graddrop_keeps_one_sign_per_element_as_published() {
    let r = [0.5, -1.0, 0.2, 0.0, -0.25, -0.5, 0.6, 1.0];
    let u = [0.3, 0.9, 0.1, 0.5];
    close(&GradDrop::direction(&r, 2, &u, 0.0), &[0.5, -1.5, 0.8, 1.0], 1e-6);
    close(&GradDrop::direction(&r, 2, &u, 0.2), &[0.45, -1.5, 0.8, 1.0], 1e-6);
    // Identical gradients keep their sign everywhere (P is 0 or 1); a zero gradient stays 0.
    let same = [1.0, -2.0, 0.0, 1.0, -2.0, 0.0];
    close(&GradDrop::direction(&same, 2, &[0.5, 0.5, 0.5], 0.0), &[2.0, -4.0, 0.0], 1e-6);
    // Opposite gradients (P = ½): the draw picks which one survives, never both, never a NaN.
    assert_eq!(GradDrop::direction(&[1.0, -1.0], 2, &[0.3], 0.0), vec![1.0]);
    assert_eq!(GradDrop::direction(&[1.0, -1.0], 2, &[0.7], 0.0), vec![-1.0]);
    // Through the interface: a direction of Z's shape, from the seed and the step.
    let z = TaskGradients::from_matrix(2, 4, r.to_vec());
    let losses = [1e6, 1.0];
    let input =
        StepInput { seed: 3, step: 8, representation: Some(&z), ..StepInput::with_losses(&losses) };
    let out = GradDrop::default().weights(&input).unwrap();
    let Some(Direction::Representation(d)) = &out.direction else { panic!("a direction at Z") };
    assert_eq!(d.shape(), &[4]);
    assert_eq!(d.to_vec(), GradDrop::direction(&r, 2, &GradDrop::draws(3, 8, 4), 0.0));
    assert!(GradDrop { leak: 1.5 }.weights(&input).is_err());
}
