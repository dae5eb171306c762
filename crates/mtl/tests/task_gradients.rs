//! Per-task gradients: the three modes agree with plain backward passes, and the weightings
//! built on them behave as documented.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_mtl::task_grads::{
    layer_gradient_norms, representation_gradients, GradMode, TaskSweep,
};
use tapestry_mtl::weighting::{
    EqualWeighting, GradNorm, GradNormalization, Mgda, MgdaUb, Requirement, StepInput, Weighting,
    WeightingError,
};

fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(-0.6..0.6)).collect()).unwrap()
}

struct Net<'t> {
    shared: Vec<Var<'t>>,
    heads: Vec<Var<'t>>,
    z: Var<'t>,
    losses: Vec<Var<'t>>,
}

/// Trunk of two linear layers, `tasks` linear heads with different losses.
fn net(tape: &Tape, tasks: usize, seed: u64) -> Net<'_> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let x = tape.constant(random(&mut r, &[6, 5]));
    let shared: Vec<Var<'_>> =
        [&[8, 5][..], &[8], &[7, 8], &[7]].iter().map(|s| tape.leaf(random(&mut r, s))).collect();
    let zero = tape.constant(Tensor::scalar(0.0));
    let h = x.linear(shared[0], Some(shared[1])).maximum(zero);
    let z = h.linear(shared[2], Some(shared[3])).maximum(zero);
    let heads: Vec<Var<'_>> = (0..tasks).map(|_| tape.leaf(random(&mut r, &[2, 7]))).collect();
    let losses = heads
        .iter()
        .enumerate()
        .map(|(t, &w)| {
            let y = z.linear(w, None);
            if t % 2 == 0 {
                (y - 0.3).pow_scalar(2.0).mean_all()
            } else {
                y.exp().mean_all() * (t as f32 + 1.0)
            }
        })
        .collect();
    Net { shared, heads, z, losses }
}

#[test]
fn param_and_batched_modes_agree() {
    for tasks in [2, 3, 5] {
        let tape = Tape::new();
        let n = net(&tape, tasks, 1);
        let param = TaskSweep::run(&tape, &n.losses, GradMode::Param);
        let batched = TaskSweep::run(&tape, &n.losses, GradMode::Batched);
        let (gp, gb) = (param.matrix(&n.shared), batched.matrix(&n.shared));
        assert_eq!((gp.tasks(), gp.dim()), (tasks, 8 * 5 + 8 + 7 * 8 + 7));
        for (a, b) in gp.as_slice().iter().zip(gb.as_slice()) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-3), "{a} vs {b}");
        }
        // Row t is exactly task t's own backward pass.
        for (t, &l) in n.losses.iter().enumerate() {
            let g = tape.backward(l);
            let want: Vec<f32> = n.shared.iter().flat_map(|&v| g.wrt(v).to_vec()).collect();
            assert_eq!(gp.row(t), &want[..]);
        }
        // Heads: task t's head gets gradient only from task t; combined = Σ w_t g_t.
        let w = [0.5f32, 2.0, 1.0, 0.25, 3.0];
        for (t, &h) in n.heads.iter().enumerate() {
            let c = batched.combined(&w[..tasks], h);
            let own = tape.backward(n.losses[t]).wrt(h);
            let want: Vec<f32> = own.as_slice().iter().map(|v| v * w[t]).collect();
            assert_eq!(c.to_vec(), want);
        }
    }
}

#[test]
fn representation_gradients_are_dl_dz() {
    let tape = Tape::new();
    let n = net(&tape, 3, 2);
    let r = representation_gradients(&tape, &n.losses, n.z);
    assert_eq!((r.tasks(), r.dim()), (3, 6 * 7));
    for (t, &l) in n.losses.iter().enumerate() {
        let want = tape.grad(l, &[n.z]).wrt(n.z).to_vec();
        for (a, b) in r.row(t).iter().zip(&want) {
            assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs());
        }
    }
}

#[test]
fn layer_norms_are_norms_of_each_tasks_gradient() {
    let tape = Tape::new();
    let n = net(&tape, 3, 3);
    let w = n.shared[2];
    let norms = layer_gradient_norms(&tape, &n.losses, w);
    for (t, &l) in n.losses.iter().enumerate() {
        let g = tape.backward(l).wrt(w);
        let want = g.as_slice().iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norms[t] - want).abs() <= 1e-5 * want, "{} vs {want}", norms[t]);
    }
}

#[test]
fn mgda_direction_is_a_descent_direction_for_every_task() {
    for seed in 0..20 {
        let tape = Tape::new();
        let n = net(&tape, 4, 100 + seed);
        let g = TaskSweep::run(&tape, &n.losses, GradMode::Batched).matrix(&n.shared);
        let losses: Vec<f64> = n.losses.iter().map(|l| l.value().item() as f64).collect();
        let input = StepInput {
            step: 0,
            epoch: 0,
            losses: &losses,
            shared: Some(&g),
            representation: None,
            layer_grad_norms: None,
        };
        let out = Mgda::default().weights(&input).unwrap();
        let sum: f64 = out.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9 && out.weights.iter().all(|&w| w >= 0.0));
        let d = g.combine(&out.weights.iter().map(|&w| w as f32).collect::<Vec<_>>());
        let d_sq: f64 = d.iter().map(|&v| v as f64 * v as f64).sum();
        for t in 0..4 {
            let dot: f64 = g.row(t).iter().zip(&d).map(|(&a, &b)| a as f64 * b as f64).sum();
            // ⟨g_t, d⟩ ≥ ‖d‖² ≥ 0 at the min-norm point (up to f32 rounding of the gradients).
            assert!(dot >= d_sq - 1e-4 * d_sq.max(1e-6), "seed {seed} task {t}: {dot} < {d_sq}");
        }
    }
}

#[test]
fn mgda_normalizations_and_mgda_ub() {
    let tape = Tape::new();
    let n = net(&tape, 3, 5);
    let g = TaskSweep::run(&tape, &n.losses, GradMode::Param).matrix(&n.shared);
    let r = representation_gradients(&tape, &n.losses, n.z);
    let losses: Vec<f64> = n.losses.iter().map(|l| l.value().item() as f64).collect();
    let input = StepInput {
        step: 0,
        epoch: 0,
        losses: &losses,
        shared: Some(&g),
        representation: Some(&r),
        layer_grad_norms: None,
    };
    for normalization in [
        GradNormalization::None,
        GradNormalization::L2,
        GradNormalization::Loss,
        GradNormalization::LossPlus,
    ] {
        let w = Mgda { normalization }.weights(&input).unwrap().weights;
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{normalization:?}");
        let w = MgdaUb { normalization }.weights(&input).unwrap();
        assert!(w.min_norm.unwrap().kkt_residual < 1e-9);
    }
    // With l2 normalisation every task's gradient counts alike: scaling one task's loss by
    // 1000 leaves the solve unchanged.
    let mut scaled = g.as_slice().to_vec();
    scaled[..g.dim()].iter_mut().for_each(|v| *v *= 1000.0);
    let g2 = tapestry_mtl::task_grads::TaskGradients::new(3, g.dim(), scaled);
    let a = Mgda { normalization: GradNormalization::L2 }.weights(&input).unwrap().weights;
    let b = Mgda { normalization: GradNormalization::L2 }
        .weights(&StepInput { shared: Some(&g2), ..input })
        .unwrap()
        .weights;
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
    }
}

#[test]
fn missing_inputs_and_bad_losses_are_errors() {
    let losses = [1.0, 2.0];
    let input = StepInput {
        step: 0,
        epoch: 0,
        losses: &losses,
        shared: None,
        representation: None,
        layer_grad_norms: None,
    };
    assert!(matches!(Mgda::default().weights(&input), Err(WeightingError::MissingInput { .. })));
    assert!(matches!(MgdaUb::default().weights(&input), Err(WeightingError::MissingInput { .. })));
    assert!(matches!(
        GradNorm::new(0.12, 0.01).weights(&input),
        Err(WeightingError::MissingInput { .. })
    ));
    let nan = [1.0, f64::NAN];
    let err = EqualWeighting.weights(&StepInput { losses: &nan, ..input }).unwrap_err();
    assert_eq!(err.to_string(), "ew: loss of task 1 is not finite (NaN)");
    assert_eq!(EqualWeighting.requirement(), Requirement::Losses);
}

#[test]
fn gradnorm_weights_sum_to_t_and_favour_the_slow_task() {
    let mut gn = GradNorm::new(1.5, 0.05);
    // Task 0 trains fast (loss ratio falls), task 1 stalls; equal gradient norms.
    for step in 0..20u64 {
        let losses = [1.0 / (1.0 + step as f64), 1.0];
        let norms = [1.0, 1.0];
        let input = StepInput {
            step,
            epoch: 0,
            losses: &losses,
            shared: None,
            representation: None,
            layer_grad_norms: Some(&norms),
        };
        let out = gn.weights(&input).unwrap();
        assert!((out.weights.iter().sum::<f64>() - 2.0).abs() < 1e-9);
        assert!((gn.current_weights().iter().sum::<f64>() - 2.0).abs() < 1e-9);
    }
    let w = gn.current_weights();
    assert!(w[1] > 1.2 && w[0] < 0.8, "{w:?}");
}
