//! GradNorm's closed-form derivative of the balancing loss, checked against autodiff through the
//! recorded backward pass, as the paper computes it.
//!
//! On the reference model of the MTL step benchmark (`benches/mtl_step.rs`: conv 3→32 → ReLU →
//! max-pool → conv 32→64 → ReLU → max-pool → flatten → linear 3136→256 → ReLU, three linear
//! heads 256→10 with cross-entropy; GradNorm's layer is the last shared weight,
//! `trunk.7.weight`, 802 816 elements), batch 128 of seeded random inputs and labels:
//!
//! 1. each task's weighted gradient `w_t·∇_W L_t` is a recorded gradient
//!    (`Tape::grad_graph(w_t·L_t, [W])`) with the weights `w_t` leaves on the tape;
//! 2. `G_t = sqrt(sum(g_t²))` and `L_grad = Σ_t |G_t − target_t|` are engine ops, the targets
//!    `mean_s(G_s)·r_t^α` detached (constants), as in the paper;
//! 3. one backward pass of `L_grad` gives `dL_grad/dw_t`, which must equal the crate's closed
//!    form `sign(G_t − target_t)·n_t` ([`GradNormStep::weight_gradient`], from the norms
//!    `n_t` of [`layer_gradient_norms`], which take the Gram identity instead of forming the
//!    gradients), and one gradient-descent update of the weights from it (floor,
//!    renormalisation to T) must equal the crate's update.
//!
//! Tolerances (float32 rounding; the crate's side works in f64 from f32 norms): relative 4e-6
//! (about 30 f32 ulps) on `G_t`, the targets, `L_grad` (relative to `Σ G_t`) and
//! `dL_grad/dw_t`, and absolute 1e-6 on the updated weights (which are O(1)). Measured: at
//! most 3e-7 relative (2.5 ulps) and 4e-8 on the weights; the differences are printed.

use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_data::{Batch, TaskSpec, TaskTargets};
use tapestry_mtl::gradnorm::{gradnorm_update, GradNormConfig, GradNormStep, WeightOptimizerState};
use tapestry_mtl::model::{input_tensor, task_loss};
use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry_mtl::task_grads::layer_gradient_norms;
use tapestry_mtl::weighting::GradNorm;
use tapestry_mtl::{HardSharing, MultiTaskModel};
use tapestry_nn::optim::Adam;
use tapestry_nn::{Conv2d, Ctx, Flatten, Linear, MaxPool2d, Params, Relu, Sequential};

const BATCH: usize = 128;
const TASKS: usize = 3;
/// Relative tolerance on norms, targets, the balancing loss and its derivative.
const RTOL: f64 = 4e-6;
/// Absolute tolerance on the updated weights.
const WTOL: f64 = 1e-6;

/// The reference model of `benches/mtl_step.rs`, built from the nn crate's layers (the same
/// shapes, names and initialisation order).
fn reference_model(params: &mut Params, rng: &mut ChaCha8Rng) -> HardSharing {
    let conv = |params: &mut Params, name, c_in, c_out, rng: &mut ChaCha8Rng| {
        Conv2d::new(params, name, c_in, c_out, (3, 3), rng).unwrap().padding((1, 1))
    };
    let trunk = Sequential::new()
        .push(conv(params, "trunk.0", 3, 32, rng))
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(conv(params, "trunk.3", 32, 64, rng))
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(Flatten)
        .push(Linear::new(params, "trunk.7", 3136, 256, rng).unwrap())
        .push(Relu);
    let mut builder = HardSharing::builder(trunk).input_shape(&[3, 28, 28]);
    for t in 0..TASKS {
        let name = format!("task{t}");
        let head = Linear::new(params, &format!("heads.{name}"), 256, 10, rng).unwrap();
        builder = builder.head(TaskSpec::classification(name, 10), head);
    }
    builder.build(params).unwrap()
}

fn random_batch(rng: &mut ChaCha8Rng) -> Batch {
    let inputs: Vec<f32> = (0..BATCH * 3 * 28 * 28).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Batch {
        inputs: ArrayD::from_shape_vec(vec![BATCH, 3, 28, 28], inputs).unwrap(),
        targets: (0..TASKS)
            .map(|_| TaskTargets::Classes {
                labels: (0..BATCH).map(|_| rng.gen_range(0..10)).collect(),
            })
            .collect(),
        indices: (0..BATCH).collect(),
    }
}

fn setup() -> (HardSharing, Params, Batch) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = Params::new();
    let model = reference_model(&mut params, &mut rng);
    let batch = random_batch(&mut rng);
    (model, params, batch)
}

/// GradNorm's quantities as the paper computes them: autodiff through the recorded backward.
#[derive(Debug)]
struct Recorded {
    /// `L_t`.
    losses: Vec<f64>,
    /// `n_t = ‖∇_W L_t‖` as the crate's training step computes it (Gram identity).
    crate_norms: Vec<f64>,
    /// `G_t = ‖∇_W (w_t L_t)‖` from the recorded gradient.
    weighted_norms: Vec<f64>,
    /// `mean_s(G_s)·r_t^α`, detached.
    targets: Vec<f64>,
    /// `L_grad`.
    balance_loss: f64,
    /// `dL_grad/dw_t` by one backward pass.
    weight_gradient: Vec<f64>,
}

/// Runs the model on `batch` with the parameters `params` and differentiates GradNorm's
/// balancing loss with respect to the weights `weights` (leaves). `initial_losses` are the
/// `L_t(0)`, or `None` for this step's losses (the first step of training).
fn recorded(
    model: &HardSharing,
    params: &Params,
    batch: &Batch,
    weights: &[f64],
    initial_losses: Option<&[f64]>,
    alpha: f64,
) -> Recorded {
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = tape.constant(input_tensor(&batch.inputs));
    let out = model.forward(x, &mut Ctx::train(&bound));
    let specs = model.tasks();
    let losses: Vec<Var<'_>> = (specs.iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((spec, &o), targets)| task_loss(spec, o, targets).unwrap())
        .collect();
    let values: Vec<f64> = losses.iter().map(|l| f64::from(l.value().item())).collect();
    let layer = bound.var(model.default_gradnorm_param(params).unwrap());
    let crate_norms = layer_gradient_norms(&tape, &losses, layer);

    let w: Vec<Var<'_>> = weights.iter().map(|&w| tape.leaf(Tensor::scalar(w as f32))).collect();
    let g: Vec<Var<'_>> = (losses.iter().zip(&w))
        .map(|(&l, &w)| {
            let grad = tape.grad_graph(w * l, &[layer])[0];
            (grad * grad).sum_all().sqrt()
        })
        .collect();
    let mean = g.iter().copied().reduce(|a, b| a + b).unwrap().mul_scalar(1.0 / TASKS as f32);
    let initial = initial_losses.unwrap_or(&values);
    let ratios: Vec<f64> = values.iter().zip(initial).map(|(l, l0)| l / l0).collect();
    let mean_ratio = ratios.iter().sum::<f64>() / TASKS as f64;
    let targets: Vec<Var<'_>> = ratios
        .iter()
        .map(|r| mean.detach().mul_scalar((r / mean_ratio).powf(alpha) as f32))
        .collect();
    let balance =
        (g.iter().zip(&targets)).map(|(&g, &c)| (g - c).abs()).reduce(|a, b| a + b).unwrap();
    let grads = tape.grad(balance, &w);
    let scalar = |v: Var<'_>| f64::from(v.value().item());
    Recorded {
        losses: values,
        crate_norms,
        weighted_norms: g.iter().map(|&v| scalar(v)).collect(),
        targets: targets.iter().map(|&v| scalar(v)).collect(),
        balance_loss: scalar(balance),
        weight_gradient: w.iter().map(|&v| f64::from(grads.wrt(v).item())).collect(),
    }
}

/// Gradient descent on the weights from `gradient`, floored and renormalised to sum to T: the
/// update of [`GradNormConfig::new`], written out here.
fn descent_update(weights: &[f64], gradient: &[f64], config: &GradNormConfig) -> Vec<f64> {
    let stepped: Vec<f64> = (weights.iter().zip(gradient))
        .map(|(w, g)| (w - config.learning_rate * g).max(config.min_weight))
        .collect();
    let total: f64 = stepped.iter().sum();
    stepped.iter().map(|w| w * weights.len() as f64 / total).collect()
}

/// `max_t |a_t − b_t| / |b_t|`.
fn relative(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f64::max)
}

fn absolute(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

/// Asserts that the closed form `step` (at the weights `weights`) agrees with the recorded
/// backward `rec`, and that one update from the recorded derivative gives `step.weights`.
fn assert_agree(
    at: &str,
    weights: &[f64],
    rec: &Recorded,
    step: &GradNormStep,
    c: &GradNormConfig,
) {
    let errors = [
        ("G_t", relative(&rec.weighted_norms, &step.weighted_grad_norms)),
        ("target_t", relative(&rec.targets, &step.targets)),
        (
            "L_grad",
            (rec.balance_loss - step.balance_loss).abs()
                / step.weighted_grad_norms.iter().sum::<f64>(),
        ),
        ("dL_grad/dw_t", relative(&rec.weight_gradient, &step.weight_gradient)),
    ];
    let updated = descent_update(weights, &rec.weight_gradient, c);
    let update_error = absolute(&updated, &step.weights);
    println!("{at}: {errors:?}, updated weights {update_error:.1e} ({:?})", step.weights);
    for (what, error) in errors {
        assert!(error < RTOL, "{at}: {what} differs by {error:e} (relative)");
    }
    assert!(update_error < WTOL, "{at}: weights {updated:?} vs {:?}", step.weights);
    // Away from the kinks of |.|: a sign flip would be a real disagreement, not rounding.
    for t in 0..weights.len() {
        let margin = (step.weighted_grad_norms[t] - step.targets[t]).abs();
        assert!(margin > 1e3 * RTOL * step.targets[t], "{at}: task {t} is at a kink");
    }
}

#[test]
fn the_closed_form_weight_gradient_is_what_autodiff_of_the_balancing_loss_gives() {
    let (model, params, batch) = setup();
    assert_eq!(params.name(model.default_gradnorm_param(&params).unwrap()), "trunk.7.weight");
    // Unequal weights (summing to 3) and initial losses, so the loss ratios and α matter.
    let weights = [0.6, 1.5, 0.9];
    let probe = recorded(&model, &params, &batch, &weights, None, 1.5);
    let initial: Vec<f64> = probe.losses.iter().zip([0.8, 1.3, 1.0]).map(|(l, s)| l * s).collect();
    for (alpha, learning_rate) in [(1.5, 0.05), (0.12, 0.5), (0.0, 0.01)] {
        let rec = recorded(&model, &params, &batch, &weights, Some(&initial), alpha);
        let config = GradNormConfig::new(alpha, learning_rate);
        let mut state = WeightOptimizerState::default();
        let step =
            gradnorm_update(&weights, &rec.crate_norms, &rec.losses, &initial, &config, &mut state)
                .unwrap();
        assert_agree(&format!("alpha {alpha}"), &weights, &rec, &step, &config);
        // The derivative is ±n_t, the norm of the unweighted gradient, whatever w_t.
        let parts = rec.weighted_norms.iter().zip(&weights).zip(&rec.weight_gradient);
        for (t, ((g, w), d)) in parts.enumerate() {
            let n = g / w;
            assert!((d.abs() - n).abs() < RTOL * n, "task {t}: {d} vs ±{n}");
        }
    }
}

#[test]
fn the_training_steps_gradnorm_updates_are_what_autodiff_gives() {
    // Three steps of the MTL training step with GradNorm (gradient descent on the weights) and
    // Adam on the model: each step's update of the weights, computed by the step from its own
    // norms and losses, against autodiff on a copy of the parameters taken before the step.
    let (model, mut params, batch) = setup();
    let config = GradNormConfig::new(1.5, 0.2);
    let mut weighting = GradNorm::with_config(config);
    let mut adam = Adam::new(1e-3);
    let step = TrainStep::new(&model, &params, &weighting, StepOptions::default()).unwrap();
    let mut initial: Option<Vec<f64>> = None;
    for k in 0..3 {
        let before = params.clone();
        let counters = StepCounters { step: k, ..StepCounters::default() };
        let report = step.run(&model, &mut params, &mut adam, &mut weighting, &batch, counters);
        let report = report.unwrap();
        // The update as the step reported it (its diagnostics).
        let get =
            |name: &str| report.diagnostic(name).expect("GradNorm reports its update").to_vec();
        let update = &GradNormStep {
            weights: get("gradnorm.next_weights"),
            balance_loss: get("gradnorm.balance_loss")[0],
            weighted_grad_norms: get("gradnorm.weighted_grad_norms"),
            mean_grad_norm: 0.0,
            loss_ratios: Vec::new(),
            relative_inverse_rates: Vec::new(),
            targets: get("gradnorm.targets"),
            weight_gradient: get("gradnorm.weight_gradient"),
        };
        let rec = recorded(&model, &before, &batch, &report.weights, initial.as_deref(), 1.5);
        assert_eq!(rec.losses, report.losses, "step {k}: the same forward pass");
        assert_eq!(Some(&rec.crate_norms), report.layer_grad_norms.as_ref(), "step {k}");
        assert_agree(&format!("training step {k}"), &report.weights, &rec, update, &config);
        initial.get_or_insert(report.losses);
    }
}
