//! Inter-task affinity (TAG): the library function against a direct computation, its signs and
//! symmetries on toy problems, and its wiring into the step and the trainer.

mod common;

use common::{conv_model, dataset, param_bits};
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Var};
use tapestry_data::{Batch, BatchOptions, MultiTaskDataset, TaskSpec, TaskTargets};
use tapestry_mtl::affinity::{task_affinity, AffinityOptions};
use tapestry_mtl::model::{input_tensor, task_loss, HardSharing, MultiTaskModel};
use tapestry_mtl::step::{StepCounters, StepOptions};
use tapestry_mtl::task_grads::{GradMode, TaskGradients};
use tapestry_mtl::trainer::{EpochReport, Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{EqualWeighting, Mgda};
use tapestry_mtl::StepReport;
use tapestry_nn::optim::Sgd;
use tapestry_nn::{Ctx, Linear, Params, Sequential};

fn first_batch(data: &MultiTaskDataset, size: usize) -> Batch {
    data.batches(&BatchOptions::new(size, 3), 0).unwrap().next().unwrap()
}

/// Each task's loss on `batch` at `params`, in train mode with the dropout seed `seed`.
fn losses_at(model: &HardSharing, params: &Params, batch: &Batch, seed: u64) -> Vec<f64> {
    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let mut buffers = params.buffers().clone();
    let mut ctx = Ctx::train(&bound).with_buffers(&mut buffers).with_seed(seed);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
    (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((s, &o), t)| f64::from(task_loss(s, o, t).unwrap().value().item()))
        .collect()
}

/// The losses and the per-task gradients on the shared parameters at `params`.
fn gradients(
    model: &HardSharing,
    params: &Params,
    batch: &Batch,
    seed: u64,
) -> (Vec<f64>, TaskGradients) {
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut buffers = params.buffers().clone();
    let mut ctx = Ctx::train(&bound).with_buffers(&mut buffers).with_seed(seed);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
    let losses: Vec<Var<'_>> = (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((s, &o), t)| task_loss(s, o, t).unwrap())
        .collect();
    let values = losses.iter().map(|l| f64::from(l.value().item())).collect();
    let shared = model.shared_params();
    (values, TaskGradients::on_params(&tape, &losses, &bound, &shared, GradMode::Batched))
}

#[test]
fn affinity_matches_a_direct_computation() {
    // Dropout on: the lookaheads must draw the step's masks.
    let mut params = Params::new();
    let model = conv_model(&mut params, 1, 0.3);
    let batch = first_batch(&dataset(24, 2), 24);
    let (seed, lr) = (17, 0.05);
    let (losses, grads) = gradients(&model, &params, &batch, seed);
    let got = task_affinity(&model, &params, &batch, &grads, &losses, lr, seed).unwrap();
    let t = 2;
    for i in 0..t {
        // Clone the parameters, step the shared ones along task i's gradient by hand.
        let mut stepped = params.clone();
        for &id in &model.shared_params() {
            let g = grads.row(i)[grads.range(id).unwrap()].to_vec();
            stepped.update(id, |v| v.iter_mut().zip(&g).for_each(|(p, g)| *p -= lr as f32 * g));
        }
        let after = losses_at(&model, &stepped, &batch, seed);
        for j in 0..t {
            let want = 1.0 - after[j] / losses[j];
            assert!((got[i * t + j] - want).abs() < 1e-12, "Z[{i}][{j}] {got:?} vs {want}");
        }
    }
    assert!(got.iter().all(|z| z.abs() > 1e-6), "a real step moves every loss: {got:?}");
    assert_eq!(losses, losses_at(&model, &params, &batch, seed), "the base losses reproduce");
    // Same inputs, same matrix; a step of 0 changes nothing.
    assert_eq!(got, task_affinity(&model, &params, &batch, &grads, &losses, lr, seed).unwrap());
    let zero = task_affinity(&model, &params, &batch, &grads, &losses, 0.0, seed).unwrap();
    assert!(zero.iter().all(|&z| z == 0.0), "{zero:?}");
}

/// A linear trunk `x ↦ W x + b` (4 features to 3) and linear regression heads, so each task's
/// loss is a convex quadratic of the shared parameters.
fn linear_model(params: &mut Params, heads: usize, rng: &mut ChaCha8Rng) -> HardSharing {
    let trunk = Sequential::new().push(Linear::new(params, "trunk.0", 4, 3, rng).unwrap());
    let mut b = HardSharing::builder(trunk).input_shape(&[4]);
    for h in 0..heads {
        let name = format!("t{h}");
        let head = Linear::new(params, &format!("heads.{name}"), 3, 1, rng).unwrap();
        b = b.head(TaskSpec::regression(name, 1), head);
    }
    b.build(params).unwrap()
}

/// `n` samples of 4 features with one regression target per entry of `targets`, each a fixed
/// linear function of the features.
fn linear_data(n: usize, targets: &[[f32; 4]], rng: &mut ChaCha8Rng) -> MultiTaskDataset {
    let x: Vec<f32> = (0..n * 4).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let tasks = (0..targets.len()).map(|h| TaskSpec::regression(format!("t{h}"), 1)).collect();
    let values = targets
        .iter()
        .map(|w| {
            let v = Array2::from_shape_fn((n, 1), |(i, _)| {
                (0..4).map(|k| w[k] * x[i * 4 + k]).sum::<f32>()
            });
            TaskTargets::Values { values: v, mask: None }
        })
        .collect();
    MultiTaskDataset::new("linear", ArrayD::from_shape_vec(vec![n, 4], x).unwrap(), tasks, values)
        .unwrap()
}

#[test]
fn the_diagonal_is_positive_for_a_small_step_on_a_convex_problem() {
    for seed in 0..5 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Params::new();
        let model = linear_model(&mut params, 3, &mut rng);
        let targets = [[1.0, -2.0, 0.5, 0.0], [-1.0, 0.3, 2.0, 1.0], [0.2, 0.2, -0.7, 3.0]];
        let batch = first_batch(&linear_data(32, &targets, &mut rng), 32);
        let (losses, grads) = gradients(&model, &params, &batch, 0);
        let z = task_affinity(&model, &params, &batch, &grads, &losses, 1e-3, 0).unwrap();
        for i in 0..3 {
            assert!(z[i * 3 + i] > 0.0, "seed {seed}: Z[{i}][{i}] = {}", z[i * 3 + i]);
        }
        assert!(z.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn two_identical_tasks_give_one_value_everywhere() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut params = Params::new();
    let model = linear_model(&mut params, 2, &mut rng);
    // The second head a copy of the first, the targets the same: the tasks are one task twice.
    for suffix in ["weight", "bias"] {
        let a = params.get(params.id(&format!("heads.t0.{suffix}")).unwrap()).clone();
        params.set(params.id(&format!("heads.t1.{suffix}")).unwrap(), a).unwrap();
    }
    let w = [1.0, -2.0, 0.5, 0.0];
    let batch = first_batch(&linear_data(32, &[w, w], &mut rng), 32);
    let (losses, grads) = gradients(&model, &params, &batch, 0);
    let z = task_affinity(&model, &params, &batch, &grads, &losses, 1e-2, 0).unwrap();
    assert!(z[0] > 0.0, "{z:?}");
    for v in &z[1..] {
        assert!((v - z[0]).abs() <= 1e-12, "{z:?}");
    }
    assert_eq!(z[1], z[2], "symmetric");
}

#[test]
fn bad_inputs_are_errors_not_nans() {
    let mut params = Params::new();
    let model = conv_model(&mut params, 4, 0.0);
    let batch = first_batch(&dataset(16, 5), 16);
    let (losses, grads) = gradients(&model, &params, &batch, 0);
    // Gradients at a representation are not keyed by parameters.
    let rep = TaskGradients::from_matrix(2, 3, vec![0.0; 6]);
    assert!(task_affinity(&model, &params, &batch, &rep, &losses, 0.1, 0).is_err());
    assert!(task_affinity(&model, &params, &batch, &grads, &losses[..1], 0.1, 0).is_err());
    assert!(task_affinity(&model, &params, &batch, &grads, &losses, f64::NAN, 0).is_err());
    // A step so large that a loss overflows says so.
    let huge = task_affinity(&model, &params, &batch, &grads, &losses, 1e30, 0);
    assert!(huge.is_err_and(|e| e.to_string().contains("lower the affinity learning rate")));
    // A zero loss gives an affinity of 0, not a NaN.
    let zero = [0.0, losses[1]];
    let z = task_affinity(&model, &params, &batch, &grads, &zero, 0.1, 0).unwrap();
    assert!(z[0] == 0.0 && z[2] == 0.0 && z.iter().all(|v| v.is_finite()), "{z:?}");
}

#[derive(Default)]
struct Collect {
    steps: Vec<Option<Vec<f64>>>,
    epochs: Vec<Option<Vec<f64>>>,
}

impl Observer for Collect {
    fn on_step(&mut self, r: &StepReport) {
        self.steps.push(r.affinity.clone());
    }
    fn on_epoch(&mut self, r: &EpochReport) {
        self.epochs.push(r.affinity.clone());
    }
}

/// Trains two epochs of MGDA (the Gram path, so the step forms the task gradients only for the
/// affinity) and returns the parameters' bits and what the observer saw.
fn train(affinity: Option<AffinityOptions>) -> (Vec<u32>, Collect) {
    let data = dataset(40, 6);
    let mut params = Params::new();
    let model = conv_model(&mut params, 7, 0.2);
    let step = StepOptions { affinity, ..StepOptions::default() };
    let config = TrainerConfig { epochs: 2, batch_size: 8, step, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Sgd::new(0.05), Mgda::default());
    let mut seen = Collect::default();
    trainer.fit(&model, &mut params, &data, None, &mut seen).unwrap();
    (param_bits(&params), seen)
}

#[test]
fn the_trainer_measures_every_n_steps_and_averages_per_epoch() {
    let options = AffinityOptions { every: 3, lr: 0.05 };
    let (bits, seen) = train(Some(options));
    assert_eq!(seen.steps.len(), 10);
    for (s, z) in seen.steps.iter().enumerate() {
        assert_eq!(z.is_some(), s % 3 == 0, "step {s}");
    }
    // Epoch 0 holds steps 0..5 (measured at 0 and 3), epoch 1 steps 5..10 (at 6 and 9).
    for (e, measured) in [(0, [0, 3]), (1, [6, 9])] {
        let (a, b) = (seen.steps[measured[0]].as_ref(), seen.steps[measured[1]].as_ref());
        let mean: Vec<f64> =
            a.unwrap().iter().zip(b.unwrap()).map(|(x, y)| (x + y) / 2.0).collect();
        assert_eq!(seen.epochs[e].as_ref(), Some(&mean), "epoch {e}");
    }
    // Measuring changes nothing of the training itself, and is deterministic.
    let (plain, none) = train(None);
    assert_eq!(bits, plain);
    assert!(none.steps.iter().all(Option::is_none) && none.epochs.iter().all(Option::is_none));
    let (again, seen2) = train(Some(options));
    assert_eq!((again, seen2.steps), (bits, seen.steps));
}

#[test]
fn the_step_reuses_the_gradients_it_already_formed() {
    // EW with diagnostics forms the T x P gradients; the affinity from the step equals the
    // library function on those gradients.
    let mut params = Params::new();
    let model = conv_model(&mut params, 8, 0.0);
    let batch = first_batch(&dataset(16, 9), 16);
    let counters = StepCounters { step: 0, epoch: 0, seed: 4 };
    let (losses, grads) = gradients(&model, &params, &batch, counters.dropout_seed());
    let want =
        task_affinity(&model, &params, &batch, &grads, &losses, 0.1, counters.dropout_seed())
            .unwrap();
    for diagnostics in [true, false] {
        let options = StepOptions {
            diagnostics,
            affinity: Some(AffinityOptions { every: 1, lr: 0.1 }),
            ..StepOptions::default()
        };
        let step = tapestry_mtl::TrainStep::new(&model, &params, &EqualWeighting, options).unwrap();
        let (_, report) = step
            .gradients(&model, &mut params.clone(), &mut EqualWeighting, &batch, counters)
            .unwrap();
        assert_eq!(report.affinity.as_ref(), Some(&want), "diagnostics {diagnostics}");
    }
}
