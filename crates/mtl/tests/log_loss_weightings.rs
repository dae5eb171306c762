//! FAMO and DB-MTL, the two weightings of log-losses, against their reference code on fixed
//! numbers, on degenerate inputs (zero and huge losses, identical, opposite and zero
//! gradients), through a real step, and on the GradNorm toy.
//!
//! FAMO's expected weights and logits from torch, mirroring the authors' `famo.py`
//! (`get_weighted_loss`, `update`) with torch's own Adam:
//!
//! ```text
//! import torch
//! import torch.nn.functional as F
//! torch.set_default_dtype(torch.float64)
//! steps = [([2.0, 0.5, 10.0], [1.5, 0.45, 9.0]),
//!          ([1.4, 0.44, 8.0], [1.0, 0.43, 7.5]),
//!          ([0.9, 0.40, 7.0], [0.8, 0.39, 5.0])]
//! for gamma in [0.001, 0.1]:
//!     w = torch.zeros(3, requires_grad=True)
//!     opt = torch.optim.Adam([w], lr=0.025, weight_decay=gamma)
//!     for before, after in steps:
//!         L = torch.tensor(before, requires_grad=True)
//!         z = F.softmax(w, -1); D = L + 1e-8; c = (z / D).sum().detach()
//!         (gL,) = torch.autograd.grad((D.log() * z / c).sum(), L)
//!         print(gamma, "weights", [repr(v) for v in gL.tolist()])
//!         delta = (torch.tensor(before) + 1e-8).log() - (torch.tensor(after) + 1e-8).log()
//!         d = torch.autograd.grad(F.softmax(w, -1), w, grad_outputs=delta)[0]
//!         opt.zero_grad(); w.grad = d; opt.step()
//!         print(gamma, "logits", [repr(v) for v in w.tolist()])
//! ```
//!
//! DB-MTL's expected scales and directions from numpy, mirroring LibMTL's `DB_MTL.py` (the
//! gradients of `log(L + 1e-8)` are those of `L` divided by `L + 1e-8`):
//!
//! ```text
//! import numpy as np
//! grads = [np.array([[1.0, 2.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0], [0.5, -2.0, 0.0, 1.5]]),
//!          np.array([[0.5, 1.0, -2.0, 0.0], [-2.0, 1.0, 1.0, 0.5], [1.0, -1.0, 0.5, 0.5]]),
//!          np.array([[2.0, 0.0, -1.0, 1.0], [0.0, 0.5, 1.5, -1.0], [0.5, -0.5, 1.0, 2.0]])]
//! losses = [np.array([2.0, 0.5, 10.0]), np.array([1.5, 0.4, 8.0]), np.array([1.2, 0.3, 9.0])]
//! for beta, sigma in [(0.9, 0.0), (0.9, 0.5)]:
//!     buf = np.zeros((3, 4))
//!     for step, (g, L) in enumerate(zip(grads, losses), start=1):
//!         lg = g / (L + 1e-8)[:, None]
//!         buf = lg + (beta / step**sigma) * (buf - lg)
//!         u = np.linalg.norm(buf, axis=1)
//!         alpha = u.max() / (u + 1e-8)
//!         print(beta, sigma, step, "alpha", alpha.tolist())
//!         print(beta, sigma, step, "d", (alpha[:, None] * buf).sum(0).tolist())
//! ```

mod common;

use tapestry_data::BatchOptions;
use tapestry_mtl::model::{input_tensor, task_loss};
use tapestry_mtl::step::{StepCounters, StepOptions, StepReport, TrainStep};
use tapestry_mtl::task_grads::TaskGradients;
use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
use tapestry_mtl::trainer::{Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{
    by_name, DbMtl, Direction, Famo, MethodOptions, Needs, StepInput, StepWeights, Weighting,
    WeightingError,
};
use tapestry_mtl::MultiTaskModel;
use tapestry_nn::optim::{Adam, Sgd};
use tapestry_nn::{Ctx, Params};

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{got:?} vs {want:?}");
    }
}

fn losses_input(losses: &[f64]) -> StepInput<'_> {
    StepInput::with_losses(losses)
}

const FAMO_STEPS: [([f64; 3], [f64; 3]); 3] = [
    ([2.0, 0.5, 10.0], [1.5, 0.45, 9.0]),
    ([1.4, 0.44, 8.0], [1.0, 0.43, 7.5]),
    ([0.9, 0.40, 7.0], [0.8, 0.39, 5.0]),
];

/// Three tasks' values at each of three steps.
type PerStep = [[f64; 3]; 3];

#[test]
fn famo_weights_and_logits_follow_the_reference_for_three_steps() {
    // (gamma, [weights of step k], [logits after step k]), from the torch script above.
    let expected: [(f64, PerStep, PerStep); 2] = [
        (
            0.001,
            [
                [0.1923076944970414, 0.7692307664497041, 0.03846153905325443],
                [0.22080291024340798, 0.738575439700616, 0.04062165005597609],
                [0.27578779604343745, 0.6850370205971541, 0.03917518335940859],
            ],
            [
                [-0.024999993829584687, 0.024999987659172634, 0.02499998765917221],
                [-0.04968029544514102, 0.049230668615121015, 0.05000211325600841],
                [-0.0656298859063395, 0.07369525763129668, 0.04496761087886322],
            ],
        ),
        (
            0.1,
            [
                [0.1923076944970414, 0.7692307664497041, 0.03846153905325443],
                [0.22080291024340798, 0.738575439700616, 0.04062165005597609],
                [0.2757424087645688, 0.6850848096473418, 0.03917278158808939],
            ],
            [
                [-0.024999993829584687, 0.024999987659172634, 0.02499998765917221],
                [-0.04975178164913064, 0.04939352798360523, 0.05003390342216913],
                [-0.06440485028605109, 0.07401690187189218, 0.04365787740754351],
            ],
        ),
    ];
    for (gamma, weights, logits) in expected {
        let mut famo = Famo::new(gamma, 0.025);
        for (k, (before, after)) in FAMO_STEPS.iter().enumerate() {
            let out = famo.weights(&losses_input(before)).unwrap();
            close(&out.weights, &weights[k], 1e-12);
            assert!((out.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            famo.after_update(after).unwrap();
            close(famo.logits(), &logits[k], 1e-12);
        }
        let out = famo.weights(&losses_input(&[1.0; 3])).unwrap();
        assert_eq!(out.diagnostic("famo.logits").unwrap(), famo.logits());
        assert_eq!(out.diagnostic("famo.z").unwrap(), Famo::softmax(famo.logits()));
    }
}

#[test]
fn famo_logit_gradient_is_the_softmax_jacobian_times_the_log_decrease() {
    // z = (1/2, 1/2) and δ = (ln 2, 0): Jᵀδ = z ⊙ (δ − ⟨z, δ⟩) = (ln 2 / 4, −ln 2 / 4).
    let g = Famo::logit_gradient(&[0.0, 0.0], &[2.0, 1.0], &[1.0, 1.0]);
    let q = 2f64.ln() / 4.0;
    close(&g, &[q, -q], 1e-7);
    // Equal decreases (up to ε) move nothing, whatever the logits.
    let g = Famo::logit_gradient(&[0.3, -1.0, 2.0], &[2.0, 4.0, 8.0], &[1.0, 2.0, 4.0]);
    assert!(g.iter().all(|v| v.abs() < 1e-8), "{g:?}");
}

#[test]
fn famo_weights_stay_positive_and_finite_for_huge_and_zero_losses() {
    for losses in [[1e6, 1.0], [0.0, 1.0], [0.0, 0.0], [1e6, 0.0], [1e6, 1e6]] {
        let mut famo = Famo::default();
        for _ in 0..3 {
            let w = famo.weights(&losses_input(&losses)).unwrap().weights;
            assert!(w.iter().all(|&v| v > 0.0 && v.is_finite()), "{losses:?}: {w:?}");
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{losses:?}: {w:?}");
            famo.after_update(&[losses[0] * 0.5, losses[1]]).unwrap();
            assert!(famo.logits().iter().all(|v| v.is_finite()), "{:?}", famo.logits());
        }
    }
    // At equal logits the weights are proportional to 1/L: the 1e6 loss all but vanishes.
    let w = Famo::loss_weights(&[0.0, 0.0], &[1e6, 1.0]);
    close(&w, &[1.0 / (1.0 + 1e6), 1e6 / (1.0 + 1e6)], 1e-12);
}

#[test]
fn famo_refuses_bad_inputs_with_one_sentence() {
    let mut famo = Famo::default();
    let err = famo.after_update(&[1.0, 1.0]).unwrap_err().to_string();
    assert!(err.contains("came before the step's weights"), "{err}");
    assert!(matches!(
        famo.weights(&losses_input(&[f64::NAN, 1.0])),
        Err(WeightingError::NonFiniteLoss { .. })
    ));
    let err = famo.weights(&losses_input(&[-0.5, 1.0])).unwrap_err().to_string();
    assert!(err.contains("loss of task 0 is negative"), "{err}");
    famo.weights(&losses_input(&[1.0, 1.0])).unwrap();
    let err = famo.after_update(&[1.0]).unwrap_err().to_string();
    assert!(err.contains("1 losses after the update for 2 tasks"), "{err}");
    assert!(Famo::new(0.001, 0.0).weights(&losses_input(&[1.0])).is_err());
    assert!(Famo::new(-1.0, 0.025).weights(&losses_input(&[1.0])).is_err());
    assert_eq!(Famo::default().needs(), Needs { losses_after_update: true, ..Needs::LOSSES });
}

/// FAMO, with a record of the losses its `after_update` receives.
struct Recording {
    famo: Famo,
    after: Vec<Vec<f64>>,
}

impl Weighting for Recording {
    fn name(&self) -> &'static str {
        self.famo.name()
    }
    fn needs(&self) -> Needs {
        self.famo.needs()
    }
    fn weights(&mut self, input: &StepInput<'_>) -> Result<StepWeights, WeightingError> {
        self.famo.weights(input)
    }
    fn after_update(&mut self, losses_after: &[f64]) -> Result<(), WeightingError> {
        self.after.push(losses_after.to_vec());
        self.famo.after_update(losses_after)
    }
}

/// The task losses of `model` on `batch` at `params`, from a forward pass of our own.
fn forward_losses(
    model: &impl MultiTaskModel,
    params: &Params,
    batch: &tapestry_data::Batch,
) -> Vec<f64> {
    let tape = tapestry_autodiff::Tape::new();
    let bound = params.bind(&tape);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut Ctx::train(&bound));
    (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((s, &o), t)| f64::from(task_loss(s, o, t).unwrap().value().item()))
        .collect()
}

#[test]
fn famo_after_update_sees_the_losses_at_the_updated_parameters() {
    let data = common::dataset(32, 3);
    let batch = data.batches(&BatchOptions::new(32, 0), 0).unwrap().next().unwrap();
    let mut params = Params::new();
    let model = common::conv_model(&mut params, 4, 0.0);
    let mut famo = Recording { famo: Famo::default(), after: Vec::new() };
    let step = TrainStep::new(&model, &params, &famo, StepOptions::default()).unwrap();
    let counters = StepCounters { step: 0, epoch: 0, seed: 5 };
    let lr = 0.2;
    // The update by hand: θ − lr · g, with the gradient of the step's weighted loss.
    let mut by_hand = params.clone();
    let (grads, _) = step
        .gradients(
            &model,
            &mut by_hand,
            &mut Recording { famo: Famo::default(), after: vec![] },
            &batch,
            counters,
        )
        .unwrap();
    for id in by_hand.ids() {
        let (value, g) = (by_hand.get(id), grads.get(id));
        let v = value.to_vec().iter().zip(g.as_slice()).map(|(p, g)| p - lr as f32 * g).collect();
        let updated = tapestry_autodiff::Tensor::from_vec(value.shape(), v).unwrap();
        by_hand.set(id, updated).unwrap();
    }
    let want = forward_losses(&model, &by_hand, &batch);

    let report =
        step.run(&model, &mut params, &mut Sgd::new(lr), &mut famo, &batch, counters).unwrap();
    assert_eq!(famo.after.len(), 1);
    let got = &famo.after[0];
    close(got, &want, 1e-5);
    close(&forward_losses(&model, &params, &batch), got, 0.0);
    for (before, after) in report.losses.iter().zip(got) {
        assert!((before - after).abs() > 1e-4, "the update moved nothing: {before} vs {after}");
    }
    // ... and the logits took Adam's first step along Jᵀδ of those losses: −w_lr · sign.
    let g = Famo::logit_gradient(&[0.0, 0.0], &report.losses, got);
    let want: Vec<f64> = g.iter().map(|g| -0.025 * g / (g.abs() + 1e-8)).collect();
    close(famo.famo.logits(), &want, 1e-9);
}

type DbStep = ([[f32; 4]; 3], [f64; 3]);

const DB_STEPS: [DbStep; 3] = [
    ([[1.0, 2.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0], [0.5, -2.0, 0.0, 1.5]], [2.0, 0.5, 10.0]),
    ([[0.5, 1.0, -2.0, 0.0], [-2.0, 1.0, 1.0, 0.5], [1.0, -1.0, 0.5, 0.5]], [1.5, 0.4, 8.0]),
    ([[2.0, 0.0, -1.0, 1.0], [0.0, 0.5, 1.5, -1.0], [0.5, -0.5, 1.0, 2.0]], [1.2, 0.3, 9.0]),
];

fn db_step(db: &mut DbMtl, rows: &[[f32; 4]], losses: &[f64]) -> (StepWeights, Vec<f64>) {
    let g = TaskGradients::from_matrix(rows.len(), 4, rows.iter().flatten().copied().collect());
    let out =
        db.weights(&StepInput { shared: Some(&g), ..StepInput::with_losses(losses) }).unwrap();
    let Some(Direction::Shared(d)) = &out.direction else { panic!("a shared direction") };
    let d = d.iter().map(|&v| f64::from(v)).collect();
    (out, d)
}

/// DB-MTL's scales α and direction d at one step.
type DbExpected = ([f64; 3], [f64; 4]);

#[test]
fn db_mtl_follows_the_reference_average_and_rescaling() {
    // (beta_sigma, [(alpha, d) of step k]), from the numpy script above.
    #[rustfmt::skip]
    let expected: [(f64, [DbExpected; 3]); 2] = [
        (0.0, [
            ([3.9999996200000325, 0.9999999799999999, 19.61160544889323],
             [0.09805801514640954, 0.10776784741437101, 0.20000000399999865, 0.594174063439225]),
            ([4.069431894231294, 0.9999999902088923, 25.1559110815833],
             [0.0664226738667838, 0.21028902793495574, 0.04150907470243717, 0.8933914507762397]),
            ([3.410476110614394, 0.9999999923344526, 22.35884983405648],
             [0.6631574983020361, 0.2155775195524361, 0.5916124053759254, 1.1887270377188228]),
        ]),
        (0.5, [
            ([3.9999996200000325, 0.9999999799999999, 19.61160544889323],
             [0.09805801514640954, 0.10776784741437101, 0.20000000399999865, 0.594174063439225]),
            ([4.088449893375814, 0.9999999960541129, 29.64589937050878],
             [0.12207370308641052, 0.4991362886666062, -0.2749169826403467, 1.6035392197862013]),
            ([3.0844567915598793, 0.999999997273702, 22.9942342102353],
             [2.898727489459992, 0.4877521929103854, 2.442615894993943, 2.8015578432572035]),
        ]),
    ];
    for (sigma, steps) in expected {
        let mut db = DbMtl::new(0.9, sigma);
        for ((rows, losses), (alpha, d)) in DB_STEPS.iter().zip(steps) {
            let (out, got) = db_step(&mut db, rows, losses);
            close(out.diagnostic("db_mtl.alpha").unwrap(), &alpha, 1e-6);
            close(&got, &d, 1e-6);
            let heads: Vec<f64> = losses.iter().map(|l| 1.0 / (l + 1e-8)).collect();
            assert_eq!(out.weights, heads, "the heads get the log-losses' gradients");
        }
    }
    assert_eq!(DbMtl::decay(0.9, 0.5, 4), 0.45);
    assert_eq!(DbMtl::decay(0.9, 0.0, 7), 0.9);
}

#[test]
fn db_mtl_degenerate_gradients_give_finite_directions_of_the_documented_shape() {
    // Identical gradients and losses: every scale is 1, the direction is T times the average.
    let (out, d) = db_step(&mut DbMtl::default(), &[[1.0, -2.0, 0.5, 0.0]; 3], &[2.0; 3]);
    close(out.diagnostic("db_mtl.alpha").unwrap(), &[1.0; 3], 1e-7);
    close(&d, &[0.15, -0.3, 0.075, 0.0], 1e-6);
    // Opposite gradients of equal losses cancel exactly.
    let (_, d) = db_step(
        &mut DbMtl::default(),
        &[[1.0, 2.0, 0.0, -1.0], [-1.0, -2.0, 0.0, 1.0]],
        &[1.0, 1.0],
    );
    assert_eq!(d, vec![0.0; 4]);
    // A zero gradient: scaled by ε, it stays zero; the other task passes unscaled.
    let (out, d) = db_step(&mut DbMtl::default(), &[[0.0; 4], [1.0, 0.0, 0.0, 2.0]], &[1.0, 1.0]);
    assert!(out.diagnostic("db_mtl.alpha").unwrap().iter().all(|a| a.is_finite()));
    close(&d, &[0.1, 0.0, 0.0, 0.2], 1e-6);
    // All zero: a zero direction, no NaN.
    let (_, d) = db_step(&mut DbMtl::default(), &[[0.0; 4], [0.0; 4]], &[1.0, 1.0]);
    assert_eq!(d, vec![0.0; 4]);
    // Losses of 1e6 and 0 (with a non-zero gradient): the log balances both to the largest norm.
    let rows = [[3.0, 0.0, 0.0, 4.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
    let (out, d) = db_step(&mut DbMtl::default(), &rows, &[1e6, 0.0, 1.0]);
    assert!(d.iter().all(|v| v.is_finite()) && out.weights.iter().all(|w| w.is_finite()));
    // g̃ = 0.1 g / (L + ε): norms 5e-7, 1e7 (the largest) and 0.1; α_t g̃_t has the norm
    // top · n_t / (n_t + ε).
    let top = 0.1 / 1e-8;
    let s = |n: f64| top * n / (n + 1e-8);
    close(&d, &[0.6 * s(5e-7), s(top), s(0.1 / (1.0 + 1e-8)), 0.8 * s(5e-7)], 1e-6);
    assert!(db_step_err(&[-1.0, 1.0]).contains("loss of task 0 is negative"));
    assert!(DbMtl::new(1.0, 0.0).weights(&losses_input(&[1.0])).is_err());
    let missing = DbMtl::default().weights(&losses_input(&[1.0])).unwrap_err();
    assert!(missing.to_string().contains("missing input shared gradients"), "{missing}");
}

fn db_step_err(losses: &[f64]) -> String {
    let g = TaskGradients::from_matrix(losses.len(), 1, vec![1.0; losses.len()]);
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(losses) };
    DbMtl::default().weights(&input).unwrap_err().to_string()
}

#[test]
fn db_mtl_is_deterministic() {
    let run = || {
        let mut db = DbMtl::new(0.9, 0.5);
        DB_STEPS.iter().map(|(rows, losses)| db_step(&mut db, rows, losses).1).collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    let bits = |v: &Vec<Vec<f64>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn a_db_mtl_step_sets_the_trunk_to_its_direction_and_the_heads_to_the_log_loss_gradients() {
    let data = common::dataset(32, 3);
    let batch = data.batches(&BatchOptions::new(32, 0), 0).unwrap().next().unwrap();
    let mut params = Params::new();
    let model = common::conv_model(&mut params, 4, 0.0);
    let mut db = DbMtl::default();
    let step = TrainStep::new(&model, &params, &db, StepOptions::default()).unwrap();
    let counters = StepCounters { step: 0, epoch: 0, seed: 5 };
    let (grads, report) = step.gradients(&model, &mut params, &mut db, &batch, counters).unwrap();
    // The per-task gradients, from our own forward pass.
    let tape = tapestry_autodiff::Tape::new();
    let bound = params.bind(&tape);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut Ctx::train(&bound));
    let losses: Vec<_> = (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((s, &o), t)| task_loss(s, o, t).unwrap())
        .collect();
    let shared = step.shared_params().to_vec();
    let g = TaskGradients::on_params(&tape, &losses, &bound, &shared, Default::default());
    // First step, average from zero: g̃_t = (1 − β) g_t / L_t.
    let mut average = vec![0.0; g.tasks() * g.dim()];
    DbMtl::fold(&mut average, &g.matrix(), &report.losses, 0.9);
    let (want, _, _) = DbMtl::direction(&average, g.tasks());
    let got = grads.flatten(&shared);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{a} vs {b}");
    }
    // On these gradients (one block per shared parameter), the step folds block by block and
    // sums the norms on the way: exactly the numbers of the T × P matrix's fold and direction.
    assert!(g.blocks() > 1, "several blocks");
    let mut fresh = DbMtl::default();
    let input = StepInput { shared: Some(&g), ..StepInput::with_losses(&report.losses) };
    let out = fresh.weights(&input).unwrap();
    let Some(Direction::Shared(d)) = &out.direction else { panic!("a shared direction") };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(d), bits(&want), "the block-wise fold differs from the matrix's");
    assert_eq!(bits(fresh.average()), bits(&average));
    let (_, alpha, norms) = DbMtl::direction(&average, g.tasks());
    assert_eq!(out.diagnostic("db_mtl.alpha").unwrap(), &alpha[..]);
    assert_eq!(out.diagnostic("db_mtl.ema_norms").unwrap(), &norms[..]);
    // Each head: the gradient of log L_t, that is ∇L_t / L_t.
    for (t, name) in ["heads.shape.weight", "heads.size.weight"].iter().enumerate() {
        let id = params.id(name).unwrap();
        let head = tape.grad(losses[t], &[bound.var(id)]).wrt(bound.var(id)).to_vec();
        let scale = 1.0 / (report.losses[t] + 1e-8);
        for (a, b) in grads.get(id).to_vec().iter().zip(&head) {
            assert!((f64::from(*a) - scale * f64::from(*b)).abs() < 1e-5, "{name}: {a} vs {b}");
        }
    }
    assert!(report.diagnostic("db_mtl.ema_norms").is_some());
}

#[derive(Default)]
struct Log(Vec<StepReport>);

impl Observer for Log {
    fn on_step(&mut self, report: &StepReport) {
        self.0.push(report.clone());
    }
}

/// Trains the two-task toy (σ = 1 and 100) with `method` for `epochs` epochs; returns the steps'
/// reports, the epochs' mean training losses and the parameters' bits.
fn train_toy(method: &str, epochs: usize) -> (Vec<StepReport>, Vec<Vec<f64>>, Vec<u32>) {
    let config = GradNormToyConfig {
        sigmas: vec![1.0, 100.0],
        input_dim: 20,
        output_dim: 10,
        train: 400,
        test: 10,
        ..GradNormToyConfig::default()
    };
    let splits = gradnorm_toy(&config);
    let mut params = Params::new();
    let model = gradnorm_toy_model(&mut params, &config, 16, 2, 0).unwrap();
    let trainer_config =
        TrainerConfig { epochs, batch_size: 40, seed: 3, ..TrainerConfig::default() };
    let weighting = by_name(method, &MethodOptions::default()).unwrap();
    let mut trainer = Trainer::from_boxed(trainer_config, Box::new(Adam::new(1e-2)), weighting);
    let mut log = Log::default();
    let reports = trainer.fit(&model, &mut params, &splits.train, None, &mut log).unwrap();
    let losses =
        reports.iter().map(|r| r.train.tasks.iter().map(|t| t.loss.unwrap()).collect()).collect();
    (log.0, losses, common::param_bits(&params))
}

#[test]
fn famo_and_db_mtl_train_the_toy_deterministically() {
    for method in ["famo", "db-mtl"] {
        let (steps, losses, bits) = train_toy(method, 4);
        assert_eq!(steps.len(), 40);
        let (first, last) = (&losses[0], losses.last().unwrap());
        for t in 0..2 {
            assert!(last[t] < first[t], "{method}: task {t} did not learn: {losses:?}");
        }
        for s in &steps {
            assert!(
                s.weights.iter().all(|w| w.is_finite() && *w > 0.0),
                "{method}: {:?}",
                s.weights
            );
        }
        if method == "famo" {
            // The weights sum to 1 and start as 1/L. The σ = 100 task's log-loss falls slower
            // (its loss is ~1e4 and its weight ~1e-4), so its logit rises above the other's.
            for s in &steps {
                assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{:?}", s.weights);
            }
            assert!(steps[0].weights[0] > 100.0 * steps[0].weights[1], "{:?}", steps[0].weights);
            let z = steps.last().unwrap().diagnostic("famo.z").unwrap();
            assert!(z[1] > z[0] + 0.1, "{z:?}");
        }
        let (again, _, bits_again) = train_toy(method, 4);
        assert_eq!(bits, bits_again, "{method}: the same seed gives the same parameters");
        assert_eq!(steps.last().unwrap().weights, again.last().unwrap().weights);
    }
}
