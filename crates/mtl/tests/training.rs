//! The training step and the trainer on a small conv model: the gradient modes agree, MGDA
//! descends for every task, GradNorm's weights sum to T, runs are deterministic, and bad data
//! or NaN losses stop with a clear error.

mod common;

use common::{assert_same, conv_model, dataset, gradnorm_gd_reference, param_bits, Conv};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_data::{BatchOptions, MultiTaskDataset, TaskSpec};
use tapestry_mtl::model::{input_tensor, task_loss, HardSharing, MultiTaskModel};
use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry_mtl::task_grads::{GradMode, TaskGradients};
use tapestry_mtl::trainer::{EpochReport, NoObserver, Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{
    EqualWeighting, GradNorm, Mgda, MgdaUb, PcGrad, StepInput, Weighting,
};
use tapestry_mtl::{MtlError, StepReport};
use tapestry_nn::optim::{Adam, Sgd};
use tapestry_nn::{Ctx, Module, ParamId, Params};

fn first_batch(data: &MultiTaskDataset, size: usize) -> tapestry_data::Batch {
    data.batches(&BatchOptions::new(size, 3), 0).unwrap().next().unwrap()
}

#[test]
fn param_and_batched_gradients_agree_on_a_conv_model() {
    let mut params = Params::new();
    let model = conv_model(&mut params, 1, 0.0);
    let batch = first_batch(&dataset(24, 2), 24);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
    let losses: Vec<_> = (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((s, &o), t)| task_loss(s, o, t).unwrap())
        .collect();
    let shared = model.shared_params();
    let gp = TaskGradients::on_params(&tape, &losses, &bound, &shared, GradMode::Param).matrix();
    let gb = TaskGradients::on_params(&tape, &losses, &bound, &shared, GradMode::Batched).matrix();
    assert_eq!(gp.len(), 2 * params.numel_of(&shared));
    let scale = gp.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "gradients are not trivially zero");
    for (a, b) in gp.iter().zip(&gb) {
        assert!((a - b).abs() <= 1e-5 * scale.max(1.0), "{a} vs {b}");
    }
}

/// PCGrad reads the T x P gradients themselves, so it runs on the materialised path in either
/// mode (MGDA reads only their Gram, which one sweep gives in both).
#[test]
fn materialised_steps_in_param_and_batched_modes_agree() {
    let data = dataset(32, 4);
    let batch = first_batch(&data, 32);
    let mut results = Vec::new();
    for mode in [GradMode::Param, GradMode::Batched] {
        let mut params = Params::new();
        let model = conv_model(&mut params, 5, 0.0);
        let options = StepOptions { grad_mode: mode, ..StepOptions::default() };
        let step = TrainStep::new(&model, &params, &EqualWeighting, options).unwrap();
        let report = step
            .run(
                &model,
                &mut params,
                &mut Sgd::new(0.1),
                &mut PcGrad,
                &batch,
                StepCounters::default(),
            )
            .unwrap();
        let shared = report.shared.clone().expect("PCGrad reports shared gradient statistics");
        assert_eq!(shared.norms.len(), 2);
        assert!((shared.cosine(0, 1) - shared.cosine(1, 0)).abs() < 1e-12);
        results.push((
            report.weights,
            params.iter().flat_map(|(_, _, v)| v.to_vec()).collect::<Vec<f32>>(),
        ));
    }
    for (a, b) in results[0].0.iter().zip(&results[1].0) {
        assert!((a - b).abs() < 1e-5, "weights {a} vs {b}");
    }
    for (a, b) in results[0].1.iter().zip(&results[1].1) {
        assert!((a - b).abs() < 1e-5, "parameters {a} vs {b}");
    }
}

/// The loss of each task on `batch` (train mode, no dropout in this model).
fn losses_on(model: &HardSharing, params: &Params, batch: &tapestry_data::Batch) -> Vec<f64> {
    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let mut ctx = Ctx::train(&bound);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
    (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
        .map(|((s, &o), t)| task_loss(s, o, t).unwrap().value().item() as f64)
        .collect()
}

#[test]
fn mgda_direction_descends_for_every_task_on_a_real_step() {
    let data = dataset(48, 6);
    let batch = first_batch(&data, 48);
    let mut params = Params::new();
    let model = conv_model(&mut params, 7, 0.0);
    // The KKT property on the shared gradients: <g_t, d> >= |d|^2 for every task.
    {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let mut ctx = Ctx::train(&bound);
        let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
        let losses: Vec<_> = (model.tasks().iter().zip(&out.outputs).zip(&batch.targets))
            .map(|((s, &o), t)| task_loss(s, o, t).unwrap())
            .collect();
        let values: Vec<f64> = losses.iter().map(|l| l.value().item() as f64).collect();
        let g = TaskGradients::on_params(
            &tape,
            &losses,
            &bound,
            &model.shared_params(),
            GradMode::Batched,
        );
        let w = Mgda::default()
            .weights(&StepInput { shared: Some(&g), ..StepInput::with_losses(&values) })
            .unwrap();
        let d: Vec<f32> = g
            .combine(&w.weights.iter().map(|&a| a as f32).collect::<Vec<_>>())
            .iter()
            .flat_map(|t| t.to_vec())
            .collect();
        let dot =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>();
        let dd = dot(&d, &d);
        assert!(dd > 0.0, "the point is not Pareto-stationary");
        for t in 0..2 {
            assert!(
                dot(&g.row(t), &d) >= dd * (1.0 - 1e-4),
                "task {t}: {} < {dd}",
                dot(&g.row(t), &d)
            );
        }
    }
    // A small step along the MGDA direction lowers every task's loss.
    let before = losses_on(&model, &params, &batch);
    let step = TrainStep::new(&model, &params, &EqualWeighting, StepOptions::default()).unwrap();
    step.run(
        &model,
        &mut params,
        &mut Sgd::new(1e-3),
        &mut Mgda::default(),
        &batch,
        StepCounters::default(),
    )
    .unwrap();
    let after = losses_on(&model, &params, &batch);
    for t in 0..2 {
        assert!(after[t] < before[t], "task {t}: {} -> {}", before[t], after[t]);
    }
}

#[derive(Default)]
struct Recorder {
    steps: Vec<StepReport>,
    epochs: Vec<EpochReport>,
}

impl Observer for Recorder {
    fn on_step(&mut self, report: &StepReport) {
        self.steps.push(report.clone());
    }
    fn on_epoch(&mut self, report: &EpochReport) {
        self.epochs.push(report.clone());
    }
}

#[test]
fn gradnorm_weights_follow_the_papers_rule_every_step_on_the_conv_model() {
    let data = dataset(96, 8);
    let mut params = Params::new();
    let model = conv_model(&mut params, 9, 0.0);
    let config = TrainerConfig { epochs: 2, batch_size: 16, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Adam::new(1e-2), GradNorm::new(1.5, 0.05));
    let mut rec = Recorder::default();
    trainer.fit(&model, &mut params, &data, None, &mut rec).unwrap();
    assert_eq!(rec.steps.len(), 12);
    let mut moved = false;
    // Each step weighs its losses with the weights the previous update left (1 at first), and
    // its update is the paper's rule on the norms and losses that step measured.
    let initial = rec.steps[0].losses.clone();
    let mut want = vec![1.0, 1.0];
    for r in &rec.steps {
        let norms = r.layer_grad_norms.as_ref().expect("GradNorm's layer norms");
        assert_eq!(norms.len(), 2);
        assert_same(&r.weights, &want, &format!("step {}", r.step));
        want = gradnorm_gd_reference(&r.weights, norms, &r.losses, &initial, (1.5, 0.05, 1e-3));
        let next = r.diagnostic("gradnorm.next_weights").expect("GradNorm reports its update");
        assert_same(next, &want, &format!("update of step {}", r.step));
        moved |= (r.weights[0] - 1.0).abs() > 1e-3;
    }
    assert!(moved, "the weights never moved from 1");
    // The default layer is the last shared weight.
    let step =
        TrainStep::new(&model, &params, &GradNorm::new(1.5, 0.05), StepOptions::default()).unwrap();
    assert_eq!(params.name(step.gradnorm_param().unwrap()), "trunk.3.weight");
}

#[test]
fn each_weighting_reports_what_it_computed() {
    let data = dataset(32, 10);
    let batch = first_batch(&data, 32);
    let mut params = Params::new();
    let model = conv_model(&mut params, 11, 0.0);
    let plain = TrainStep::new(&model, &params, &EqualWeighting, StepOptions::default()).unwrap();
    let diag = StepOptions { diagnostics: true, ..StepOptions::default() };
    let diag = TrainStep::new(&model, &params, &EqualWeighting, diag).unwrap();
    let mut adam = Adam::new(1e-3);
    let c = StepCounters::default();

    let r = plain.run(&model, &mut params, &mut adam, &mut EqualWeighting, &batch, c).unwrap();
    assert_eq!(r.weights, vec![1.0, 1.0]);
    assert!(r.shared.is_none() && r.representation.is_none() && r.layer_grad_norms.is_none());
    let r = diag.run(&model, &mut params, &mut adam, &mut EqualWeighting, &batch, c).unwrap();
    assert!(r.shared.is_some());

    let r = plain.run(&model, &mut params, &mut adam, &mut MgdaUb::default(), &batch, c).unwrap();
    let rep = r.representation.clone().expect("MGDA-UB reports representation gradients");
    assert!(rep.norms.iter().all(|&n| n > 0.0));
    assert!((r.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(r.diagnostic("min_norm.kkt_residual").is_some() && r.shared.is_none());
    assert_eq!(r.outputs[0].shape(), &[32, 3, 1, 1]);
}

/// With diagnostics on, EW's update comes from the task sweep; it must equal the plain one.
#[test]
fn diagnostics_do_not_change_the_update() {
    let batch = first_batch(&dataset(32, 12), 32);
    let mut out = Vec::new();
    for diagnostics in [false, true] {
        let mut params = Params::new();
        let model = conv_model(&mut params, 13, 0.0);
        let step = TrainStep::new(
            &model,
            &params,
            &EqualWeighting,
            StepOptions { diagnostics, ..Default::default() },
        )
        .unwrap();
        step.run(
            &model,
            &mut params,
            &mut Sgd::new(0.1),
            &mut EqualWeighting,
            &batch,
            StepCounters::default(),
        )
        .unwrap();
        out.push(params.iter().flat_map(|(_, _, v)| v.to_vec()).collect::<Vec<f32>>());
    }
    for (a, b) in out[0].iter().zip(&out[1]) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

fn run(seed: u64, weighting: impl Weighting + 'static) -> (Vec<u32>, Vec<EpochReport>) {
    let train = dataset(80, 20);
    let valid = dataset(30, 21);
    let mut params = Params::new();
    let model = conv_model(&mut params, 22, 0.25);
    let config = TrainerConfig { epochs: 2, batch_size: 16, seed, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Adam::new(1e-2), weighting);
    let epochs = trainer.fit(&model, &mut params, &train, Some(&valid), &mut NoObserver).unwrap();
    (param_bits(&params), epochs)
}

#[test]
fn training_is_bitwise_deterministic() {
    let makers: [fn() -> Box<dyn Weighting>; 2] =
        [|| Box::new(Mgda::default()), || Box::new(GradNorm::new(0.5, 0.05))];
    for make in makers {
        let (a, ea) = run_boxed(1, make());
        let (b, eb) = run_boxed(1, make());
        assert_eq!(a, b, "same seed, different parameters");
        for (x, y) in ea.iter().zip(&eb) {
            assert_eq!(x.train, y.train);
            assert_eq!(x.validation, y.validation);
            assert_eq!(x.mean_weights, y.mean_weights);
        }
        let (c, _) = run_boxed(2, make());
        assert_ne!(a, c, "another seed (batch order, dropout) must change the run");
    }
    let (a, _) = run(3, EqualWeighting);
    let (b, _) = run(3, EqualWeighting);
    assert_eq!(a, b);
}

fn run_boxed(seed: u64, weighting: Box<dyn Weighting>) -> (Vec<u32>, Vec<EpochReport>) {
    let train = dataset(80, 20);
    let valid = dataset(30, 21);
    let mut params = Params::new();
    let model = conv_model(&mut params, 22, 0.25);
    let config = TrainerConfig { epochs: 2, batch_size: 16, seed, ..TrainerConfig::default() };
    let mut trainer = Trainer::from_boxed(config, Box::new(Adam::new(1e-2)), weighting);
    let epochs = trainer.fit(&model, &mut params, &train, Some(&valid), &mut NoObserver).unwrap();
    (param_bits(&params), epochs)
}

#[test]
fn epochs_report_train_and_validation_metrics() {
    let (_, epochs) = run(4, EqualWeighting);
    assert_eq!(epochs.len(), 2);
    for e in &epochs {
        assert_eq!(e.train.samples, 80);
        let v = e.validation.as_ref().unwrap();
        assert_eq!(v.samples, 30);
        let acc = v.task("shape").unwrap().value.unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(v.task("size").unwrap().value.unwrap() > 0.0);
        assert_eq!(e.mean_weights, vec![1.0, 1.0]);
    }
    assert_eq!(epochs[1].epoch, 1);
}

#[test]
fn mismatched_data_is_rejected_before_training() {
    let mut params = Params::new();
    let model = conv_model(&mut params, 1, 0.0);
    let mut trainer = Trainer::new(TrainerConfig::default(), Adam::new(1e-3), EqualWeighting);
    let good = dataset(8, 1);

    let one_task = MultiTaskDataset::new(
        "one",
        good.inputs.clone(),
        vec![good.tasks[0].clone()],
        vec![good.targets[0].clone()],
    )
    .unwrap();
    let e = trainer.fit(&model, &mut params, &one_task, None, &mut NoObserver).unwrap_err();
    assert!(matches!(e, MtlError::TaskCount { expected: 2, found: 1, .. }), "{e}");
    assert_eq!(e.to_string(), "data set `one` has 1 tasks but the model has 2");

    let mut renamed = good.clone();
    renamed.tasks[1] = TaskSpec::regression("weight", 2);
    let e = trainer.fit(&model, &mut params, &renamed, None, &mut NoObserver).unwrap_err();
    assert!(matches!(e, MtlError::TaskMismatch { index: 1, .. }), "{e}");

    let wide = MultiTaskDataset::new(
        "wide",
        ndarray::ArrayD::zeros(vec![8, 1, 9, 9]),
        good.tasks.clone(),
        good.targets.clone(),
    )
    .unwrap();
    let e = trainer.fit(&model, &mut params, &good, Some(&wide), &mut NoObserver).unwrap_err();
    assert!(matches!(e, MtlError::InputShape { .. }), "{e}");
    assert!(e.to_string().contains("[1, 9, 9]"), "{e}");
    assert_eq!(trainer.steps(), 0);

    let zero = TrainerConfig { batch_size: 0, ..TrainerConfig::default() };
    let mut t0 = Trainer::new(zero, Adam::new(1e-3), EqualWeighting);
    assert!(matches!(
        t0.fit(&model, &mut params, &good, None, &mut NoObserver),
        Err(MtlError::Config(_))
    ));
}

#[test]
fn a_nan_loss_stops_training_naming_task_and_step() {
    let mut params = Params::new();
    let model = conv_model(&mut params, 1, 0.0);
    let mut data = dataset(32, 1);
    // Sample 20 has a NaN target for "size" (unmasked); it shows up in whichever batch holds it.
    if let tapestry_data::TaskTargets::Values { values, mask } = &mut data.targets[1] {
        values[[20, 0]] = f32::NAN;
        mask.as_mut().unwrap()[20] = true;
    }
    let config = TrainerConfig { epochs: 1, batch_size: 8, seed: 5, ..TrainerConfig::default() };
    let options = BatchOptions::new(8, 5);
    let bad_step =
        data.batches(&options, 0).unwrap().position(|b| b.indices.contains(&20)).unwrap();
    let mut trainer = Trainer::new(config, Adam::new(1e-3), EqualWeighting);
    let mut rec = Recorder::default();
    let e = trainer.fit(&model, &mut params, &data, None, &mut rec).unwrap_err();
    match &e {
        MtlError::NonFiniteLoss { task, step, epoch, value } => {
            assert_eq!((task.as_str(), *step, *epoch), ("size", bad_step as u64, 0));
            assert!(value.is_nan());
        }
        other => panic!("expected a non-finite loss, got {other}"),
    }
    assert!(e.to_string().contains(&format!("task `size` is NaN at step {bad_step}")), "{e}");
    assert_eq!(rec.steps.len(), bad_step);
    assert!(params.iter().all(|(_, _, v)| v.all_finite()));
}

#[test]
fn model_names_and_gradnorm_layer_are_checked() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = Params::new();
    let trunk = Conv::new(&mut params, "encoder.0", (1, 2, 3, 1), &mut rng);
    let head = Conv::new(&mut params, "heads.a", (2, 2, 1, 0), &mut rng);
    let e = HardSharing::builder(trunk)
        .head(TaskSpec::classification("a", 2), head)
        .build(&params)
        .unwrap_err();
    assert!(
        e.to_string().contains("parameter `encoder.0.weight` of the trunk is not named `trunk.*`"),
        "{e}"
    );

    let mut params = Params::new();
    let trunk = Conv::new(&mut params, "trunk.0", (1, 2, 3, 1), &mut rng);
    let head = Conv::new(&mut params, "heads.b", (2, 2, 1, 0), &mut rng);
    let e = HardSharing::builder(trunk)
        .head(TaskSpec::classification("a", 2), head)
        .build(&params)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("parameter `heads.b.weight` of task `a`'s head is not named `heads.a.*`"),
        "{e}"
    );

    // A module that forgets to list a parameter in `params()` is caught, not silently left out
    // of the shared parameters.
    #[derive(Debug)]
    struct Forgetful(Conv);
    impl Module for Forgetful {
        fn forward<'t>(&self, x: Var<'t>, ctx: &mut Ctx<'_, 't>) -> Var<'t> {
            self.0.forward(x, ctx)
        }
        fn params(&self) -> Vec<ParamId> {
            self.0.params()[..1].to_vec()
        }
    }
    let mut params = Params::new();
    let trunk = Forgetful(Conv::new(&mut params, "trunk.0", (1, 2, 3, 1), &mut rng));
    let head = Conv::new(&mut params, "heads.a", (2, 2, 1, 0), &mut rng);
    let e = HardSharing::builder(trunk)
        .head(TaskSpec::classification("a", 2), head)
        .build(&params)
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "`trunk.0.bias` is registered under `trunk.`, but the trunk does not list it"
        ),
        "{e}"
    );

    let mut params = Params::new();
    let model = conv_model(&mut params, 1, 0.0);
    for (name, reason) in [("trunk.9.weight", "no such"), ("heads.size.weight", "must be a shared")]
    {
        let options = StepOptions { gradnorm_param: Some(name.into()), ..Default::default() };
        let e = TrainStep::new(&model, &params, &EqualWeighting, options).unwrap_err();
        assert!(e.to_string().contains(reason), "{e}");
    }
    let options =
        StepOptions { gradnorm_param: Some("trunk.0.weight".into()), ..Default::default() };
    let step = TrainStep::new(&model, &params, &EqualWeighting, options).unwrap();
    assert_eq!(step.gradnorm_param(), params.id("trunk.0.weight"));
}

#[test]
fn a_head_of_the_wrong_shape_is_reported() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = Params::new();
    let model = conv_model(&mut params, 1, 0.0);
    let _ = &mut rng;
    let data = dataset(8, 1);
    // The model's "shape" head gives 3 classes; a data set with 4 classes does not fit.
    let mut four = data.clone();
    four.tasks[0] = TaskSpec::classification("shape", 4);
    let batch = first_batch(&four, 8);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound);
    let out = model.forward(tape.constant(input_tensor(&batch.inputs)), &mut ctx);
    let e = task_loss(&four.tasks[0], out.outputs[0], &batch.targets[0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task `shape`: the head's output has shape [8, 3, 1, 1], expected [8, 4]"
    );
    let mse = TaskSpec { loss: tapestry_data::LossKind::Mse, ..data.tasks[0].clone() };
    let e = task_loss(&mse, out.outputs[0], &batch.targets[0]).unwrap_err();
    assert!(matches!(e, MtlError::Targets { .. }), "{e}");
    let _ = Tensor::scalar(0.0);
}

/// Evaluation runs in eval mode (dropout off) over the whole set in order: it is repeatable,
/// and its accuracy is that of the eval-mode outputs.
#[test]
fn evaluation_is_in_eval_mode_and_matches_the_metric_functions() {
    let mut params = Params::new();
    let model = conv_model(&mut params, 30, 0.5);
    let data = dataset(40, 31);
    let a = tapestry_mtl::metrics::evaluate(&model, &params, &data, 16).unwrap();
    let b = tapestry_mtl::metrics::evaluate(&model, &params, &data, 7).unwrap();
    assert_eq!(a.samples, 40);
    let acc = |e: &tapestry_mtl::metrics::Evaluation| e.task("shape").unwrap().value.unwrap();
    assert_eq!(acc(&a), acc(&b), "batching must not change the metric");

    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let mut ctx = Ctx::eval(&bound);
    let x = tape.constant(input_tensor(&data.inputs));
    let out = model.forward(x, &mut ctx);
    let tapestry_data::TaskTargets::Classes { labels } = &data.targets[0] else { unreachable!() };
    let want = tapestry_mtl::metrics::accuracy(
        out.outputs[0].value().as_slice(),
        3,
        labels,
        tapestry_data::MISSING_LABEL,
    )
    .unwrap();
    assert_eq!(acc(&a), want);
}

/// A weighting that weighs every loss by 1 but returns, as a direction at the representation,
/// twice the sum of the tasks' gradients there: pushed back through the trunk it must give twice
/// equal weighting's trunk gradient, and the heads keep equal weighting's.
struct SumAtRepresentation;

impl Weighting for SumAtRepresentation {
    fn name(&self) -> &'static str {
        "sum-at-z"
    }
    fn needs(&self) -> tapestry_mtl::weighting::Needs {
        tapestry_mtl::weighting::Needs { representation_gradients: true, ..Default::default() }
    }
    fn weights(
        &mut self,
        input: &StepInput<'_>,
    ) -> Result<tapestry_mtl::weighting::StepWeights, tapestry_mtl::weighting::WeightingError> {
        let r = input.representation.expect("asked for");
        let (_, stacked) = r.block(0);
        let n = stacked.len() / r.tasks();
        let mut sum = vec![0.0f32; n];
        for row in stacked.as_slice().chunks(n) {
            sum.iter_mut().zip(row).for_each(|(s, v)| *s += 2.0 * v);
        }
        let d = Tensor::from_vec(&stacked.shape()[1..], sum).unwrap();
        Ok(tapestry_mtl::weighting::StepWeights {
            weights: vec![1.0; r.tasks()],
            direction: Some(tapestry_mtl::weighting::Direction::Representation(d)),
            ..Default::default()
        })
    }
}

#[test]
fn a_direction_at_the_representation_is_pushed_back_through_the_trunk() {
    let batch = first_batch(&dataset(32, 30), 32);
    let mut params = Params::new();
    let model = conv_model(&mut params, 31, 0.0);
    let c = StepCounters::default();
    let ew = TrainStep::new(&model, &params, &EqualWeighting, StepOptions::default()).unwrap();
    let (want, _) = ew.gradients(&model, &mut params, &mut EqualWeighting, &batch, c).unwrap();
    let mut z = SumAtRepresentation;
    let step = TrainStep::new(&model, &params, &z, StepOptions::default()).unwrap();
    let (got, _) = step.gradients(&model, &mut params, &mut z, &batch, c).unwrap();
    let trunk = model.shared_params();
    for (id, g) in got.iter() {
        let factor = if trunk.contains(&id) { 2.0 } else { 1.0 };
        let w = want.get(id).map(|v| v * factor);
        let scale = w.as_slice().iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (a, b) in g.as_slice().iter().zip(w.as_slice()) {
            assert!((a - b).abs() <= 1e-5 * scale, "{}: {a} vs {b}", params.name(id));
        }
    }
}
