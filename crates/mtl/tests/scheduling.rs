//! Task schedules, gradient accumulation and multi-input steps: round-robin with accumulation
//! over T steps is one all-tasks step, k micro-batches are one batch k times as large, every
//! method's update is the mean of its per-step directions, the draws follow their rules, and a
//! task with its own data set trains through the shared trunk on its own batches.

use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::Tape;
use tapestry_data::{Batch, BatchOptions, MultiTaskDataset, TaskSpec, TaskTargets};
use tapestry_mtl::model::{input_tensor, task_loss, HardSharing, MultiTaskModel};
use tapestry_mtl::multi_input::{check_multi_input, TaskBatches, TaskData};
use tapestry_mtl::schedule::{Proportions, Schedule, StepPlan, TaskScheduler, LOSS_RATIO_FLOOR};
use tapestry_mtl::step::{StepCounters, StepOptions, StepReport, TrainStep};
use tapestry_mtl::task_grads::GradMode;
use tapestry_mtl::trainer::{NoObserver, Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{self, EqualWeighting, MethodOptions, Mgda, Weighting};
use tapestry_mtl::MtlError;
use tapestry_nn::optim::{Optimizer, Sgd};
use tapestry_nn::{Ctx, Linear, Params, Relu, Sequential};

/// An MLP trunk 4 → 8 (ReLU) with one linear head per task.
fn mlp(params: &mut Params, tasks: &[TaskSpec], seed: u64) -> HardSharing {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let trunk =
        Sequential::new().push(Linear::new(params, "trunk.0", 4, 8, &mut rng).unwrap()).push(Relu);
    let mut builder = HardSharing::builder(trunk);
    for spec in tasks {
        let out = match spec.kind {
            tapestry_data::TaskKind::Classification { classes } => classes,
            tapestry_data::TaskKind::Regression { dim } => dim,
            _ => unreachable!("vector tasks only"),
        };
        let head = Linear::new(params, &format!("heads.{}", spec.name), 8, out, &mut rng).unwrap();
        builder = builder.head(spec.clone(), head);
    }
    builder.input_shape(&[4]).build(params).unwrap()
}

fn three_tasks() -> Vec<TaskSpec> {
    vec![
        TaskSpec::regression("a", 1),
        TaskSpec::classification("b", 3),
        TaskSpec::regression("c", 2),
    ]
}

/// `n` samples of `tasks` (no missing labels, no masks), inputs uniform in [-1, 1].
fn data(name: &str, tasks: &[TaskSpec], n: usize, seed: u64) -> MultiTaskDataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * 4).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let targets = tasks
        .iter()
        .map(|spec| match spec.kind {
            tapestry_data::TaskKind::Classification { classes } => TaskTargets::Classes {
                labels: (0..n).map(|i| ((x[4 * i] + 1.0) * classes as f32 / 2.0) as i64).collect(),
            },
            tapestry_data::TaskKind::Regression { dim } => TaskTargets::Values {
                values: Array2::from_shape_fn((n, dim), |(i, j)| x[4 * i + 1 + j] * 2.0 - x[4 * i]),
                mask: None,
            },
            _ => unreachable!("vector tasks only"),
        })
        .collect();
    let inputs = ArrayD::from_shape_vec(vec![n, 4], x).unwrap();
    MultiTaskDataset::new(name, inputs, tasks.to_vec(), targets).unwrap()
}

fn whole_batch(data: &MultiTaskDataset) -> Batch {
    data.batches(&BatchOptions { shuffle: false, ..BatchOptions::new(data.len(), 0) }, 0)
        .unwrap()
        .next()
        .unwrap()
}

fn values(params: &Params) -> Vec<f32> {
    params.iter().flat_map(|(_, _, v)| v.to_vec()).collect()
}

fn counters(step: u64) -> StepCounters {
    StepCounters { step, epoch: 0, seed: 11 }
}

/// The largest `|a - b|` over the updates `a - before`, `b - before`, and the largest update.
fn update_gap(before: &[f32], a: &[f32], b: &[f32]) -> (f32, f32) {
    let mut gap = 0.0f32;
    let mut scale = 0.0f32;
    for ((p, x), y) in before.iter().zip(a).zip(b) {
        gap = gap.max(((x - p) - (y - p)).abs());
        scale = scale.max((y - p).abs());
    }
    (gap, scale)
}

// Round-robin over T steps on one batch, accumulated with k = T, is one all-tasks EW step:
// step t's gradient is ∇L_t (the heads of the other tasks get 0), the update is
// lr' (1/T) Σ_t ∇L_t, and with lr' = T lr that is the all-tasks step lr Σ_t ∇L_t. The two differ
// only in float rounding: Σ_t ∇L_t is summed inside one backward pass in one order and by the
// accumulator in another (a few ulps of the largest term), 1/3 and 3 lr are rounded, and each
// update is a difference of f32 parameters rounded to half an ulp. Measured: 3e-8, one ulp of
// a parameter of size 0.3, or 5e-7 of the largest update (0.06); the tolerance is 1e-5 of the
// largest update, and a wrong schedule or scale (one task missing, the sum taken for the mean)
// is off by a third of it or more.
#[test]
fn round_robin_accumulated_over_t_steps_is_one_all_tasks_step() {
    let tasks = three_tasks();
    let batch = whole_batch(&data("rr", &tasks, 24, 1));
    let lr = 0.05;

    let mut p_all = Params::new();
    let model = mlp(&mut p_all, &tasks, 2);
    let before = values(&p_all);
    let step = TrainStep::new(&model, &p_all, &EqualWeighting, StepOptions::default()).unwrap();
    step.run(&model, &mut p_all, &mut Sgd::new(lr), &mut EqualWeighting, &batch, counters(0))
        .unwrap();

    let mut p_rr = Params::new();
    let model_rr = mlp(&mut p_rr, &tasks, 2);
    let mut sgd = Sgd::new(3.0 * lr);
    let mut plan = StepPlan::new(Schedule::RoundRobin, 3, 3, &EqualWeighting).unwrap();
    for s in 0..3 {
        let report = plan
            .step(
                &step,
                &model_rr,
                &mut p_rr,
                &mut sgd,
                &mut EqualWeighting,
                TaskBatches::shared(&batch),
                counters(s),
            )
            .unwrap();
        let t = s as usize;
        assert_eq!(report.trained, vec![t], "round-robin trains task s mod T");
        assert_eq!(report.weights.iter().filter(|&&w| w == 1.0).count(), 1);
        assert!(report.losses[t].is_finite());
        assert!(report.losses.iter().enumerate().all(|(u, l)| u == t || l.is_nan()));
        if s < 2 {
            assert_eq!(values(&p_rr), before, "no update before the group of 3 is complete");
            assert_eq!(sgd.steps(), 0);
        }
    }
    assert_eq!(sgd.steps(), 1, "one update for three steps");
    let (gap, scale) = update_gap(&before, &values(&p_rr), &values(&p_all));
    assert!(scale > 1e-3, "the step moved the parameters");
    assert!(gap <= 1e-5 * scale, "updates differ by {gap} (largest update {scale})");
}

// k batches of b samples accumulated equal one step on the k·b samples for EW with mean losses
// and no masks: (1/k) Σ_i ∇ mean_{batch i} L = ∇ mean_{all} L. Through the trainer (batch 8,
// k = 4, against batch 32, k = 1, over two epochs): the updates agree to 1e-6 (measured 3e-8,
// one ulp of the parameters: summation order only); the trainer counts 4 steps per epoch and
// the optimizer one update per epoch.
#[test]
fn accumulating_k_batches_is_one_batch_k_times_as_large() {
    let tasks = three_tasks();
    let train = data("acc", &tasks, 32, 3);
    let run = |batch_size: usize, accumulate: usize| {
        let mut params = Params::new();
        let model = mlp(&mut params, &tasks, 4);
        let config = TrainerConfig {
            epochs: 2,
            batch_size,
            seed: 5,
            accumulate,
            ..TrainerConfig::default()
        };
        let mut trainer = Trainer::new(config, Sgd::new(0.1), EqualWeighting);
        let epochs = trainer.fit(&model, &mut params, &train, None, &mut NoObserver).unwrap();
        (values(&params), trainer.steps(), trainer.optimizer().steps(), epochs[0].steps)
    };
    let (small, steps, updates, per_epoch) = run(8, 4);
    let (large, large_steps, large_updates, _) = run(32, 1);
    assert_eq!((steps, updates, per_epoch), (8, 2, 4));
    assert_eq!((large_steps, large_updates), (2, 2));
    let mut before = Params::new();
    mlp(&mut before, &tasks, 4);
    let (gap, scale) = update_gap(&values(&before), &small, &large);
    assert!(scale > 1e-3, "training moved the parameters");
    assert!(gap <= 1e-6 * scale.max(1.0), "updates differ by {gap} (largest {scale})");
}

// An epoch's last group may be shorter: 5 batches with k = 3 give two updates per epoch, the
// second on the mean of 2 steps (so it still equals one step on those 16 samples).
#[test]
fn the_last_group_of_an_epoch_is_averaged_over_its_own_length() {
    let tasks = three_tasks();
    let train = data("tail", &tasks, 40, 6);
    let mut params = Params::new();
    let model = mlp(&mut params, &tasks, 7);
    let config =
        TrainerConfig { epochs: 1, batch_size: 8, accumulate: 3, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Sgd::new(0.1), EqualWeighting);
    trainer.fit(&model, &mut params, &train, None, &mut NoObserver).unwrap();
    assert_eq!((trainer.steps(), trainer.optimizer().steps()), (5, 2));

    // The plan's closing update on two batches of 8 is the step on their 16 samples.
    let batches: Vec<Batch> = train.batches(&BatchOptions::new(8, 1), 0).unwrap().take(2).collect();
    let joined =
        train.subset("joined", &[batches[0].indices.clone(), batches[1].indices.clone()].concat());
    let mut p_plan = Params::new();
    let model = mlp(&mut p_plan, &tasks, 8);
    let before = values(&p_plan);
    let step = TrainStep::new(&model, &p_plan, &EqualWeighting, StepOptions::default()).unwrap();
    let mut sgd = Sgd::new(0.1);
    let mut plan = StepPlan::new(Schedule::All, 3, 3, &EqualWeighting).unwrap();
    for (s, b) in batches.iter().enumerate() {
        plan.step(
            &step,
            &model,
            &mut p_plan,
            &mut sgd,
            &mut EqualWeighting,
            b.into(),
            counters(s as u64),
        )
        .unwrap();
    }
    assert_eq!((plan.pending(), sgd.steps()), (2, 0));
    assert!(plan.finish(&model, &mut p_plan, &mut sgd, 1));
    assert!(!plan.finish(&model, &mut p_plan, &mut sgd, 1), "nothing left to apply");
    let mut p_one = Params::new();
    mlp(&mut p_one, &tasks, 8);
    step.run(
        &model,
        &mut p_one,
        &mut Sgd::new(0.1),
        &mut EqualWeighting,
        &whole_batch(&joined),
        counters(0),
    )
    .unwrap();
    let (gap, scale) = update_gap(&before, &values(&p_plan), &values(&p_one));
    assert!(gap <= 1e-6 * scale.max(1.0), "updates differ by {gap} (largest {scale})");
}

// Every registered method accumulates the same way: the update is the mean of the per-step
// combined gradients (weights or direction, and the method's own parameters' gradients), each
// computed as without accumulation at the parameters of the last update. Two instances of each
// method see the same steps in the same order, so the plan's update must be bit for bit
// `(g_1 + g_2) / 2` applied by SGD.
#[test]
fn every_method_updates_on_the_mean_of_its_step_directions() {
    let tasks = three_tasks();
    let train = data("methods", &tasks, 32, 9);
    let batches: Vec<Batch> = train.batches(&BatchOptions::new(16, 2), 0).unwrap().collect();
    for method in weighting::METHODS {
        let options = MethodOptions::default();
        let build = || {
            let mut params = Params::new();
            let model = mlp(&mut params, &tasks, 10);
            let mut w = weighting::by_name(method.name, &options).unwrap();
            w.register(&mut params, model.tasks()).unwrap();
            (params, model, w)
        };
        let (mut p_plan, model, mut w_plan) = build();
        let step =
            TrainStep::new(&model, &p_plan, w_plan.as_ref(), StepOptions::default()).unwrap();
        let mut sgd = Sgd::new(0.1);
        let mut plan = StepPlan::new(Schedule::All, 2, 3, w_plan.as_ref()).unwrap();
        for (s, b) in batches.iter().enumerate() {
            plan.step(
                &step,
                &model,
                &mut p_plan,
                &mut sgd,
                w_plan.as_mut(),
                b.into(),
                counters(s as u64),
            )
            .unwrap();
        }
        assert_eq!(sgd.steps(), 1, "{}", method.name);

        let (mut p_hand, model_hand, mut w_hand) = build();
        let mut sum = None::<tapestry_nn::ParamGrads>;
        for (s, b) in batches.iter().enumerate() {
            let (g, _) = step
                .gradients(&model_hand, &mut p_hand, w_hand.as_mut(), b, counters(s as u64))
                .unwrap();
            match &mut sum {
                None => sum = Some(g),
                Some(total) => total.add_assign(&g),
            }
        }
        let mut mean = sum.unwrap();
        mean.scale(0.5);
        Sgd::new(0.1).step(&mut p_hand, &mean);
        assert_eq!(values(&p_plan), values(&p_hand), "{}", method.name);
    }
}

#[test]
fn round_robin_and_fixed_proportions_draw_as_documented() {
    let rr = TaskScheduler::new(Schedule::RoundRobin, 3).unwrap();
    let drawn: Vec<usize> = (0..7).map(|s| rr.draw(counters(s))[0]).collect();
    assert_eq!(drawn, [0, 1, 2, 0, 1, 2, 0]);
    assert_eq!(TaskScheduler::new(Schedule::All, 3).unwrap().draw(counters(4)), vec![0, 1, 2]);

    let sampled =
        TaskScheduler::new(Schedule::Sampled(Proportions::Fixed(vec![1.0, 2.0, 5.0])), 3).unwrap();
    assert_eq!(sampled.probabilities().unwrap(), vec![0.125, 0.25, 0.625]);
    let n = 20_000;
    let mut counts = [0usize; 3];
    for s in 0..n {
        counts[sampled.draw(counters(s))[0]] += 1;
    }
    for (c, p) in counts.iter().zip([0.125, 0.25, 0.625]) {
        // Four standard deviations of a binomial frequency at n = 20,000 are below 0.014.
        assert!((*c as f64 / n as f64 - p).abs() < 0.014, "{counts:?}");
    }
    // A pure function of the seed and the step.
    let again: Vec<usize> = (0..50).map(|s| sampled.draw(counters(s))[0]).collect();
    let first: Vec<usize> = (0..50).map(|s| sampled.draw(counters(s))[0]).collect();
    assert_eq!(again, first);
    let other: Vec<usize> =
        (0..50).map(|s| sampled.draw(StepCounters { seed: 12, ..counters(s) })[0]).collect();
    assert_ne!(other, first, "another seed draws another sequence");
}

/// A report of a step that trained `trained` with these losses (NaN elsewhere).
fn report(losses: &[f64], trained: &[usize]) -> StepReport {
    StepReport {
        step: 0,
        epoch: 0,
        batch_size: 1,
        trained: trained.to_vec(),
        losses: losses.to_vec(),
        weights: vec![0.0; losses.len()],
        shared: None,
        representation: None,
        layer_grad_norms: None,
        aux_loss: None,
        diagnostics: Vec::new(),
        affinity: None,
        outputs: Vec::new(),
    }
}

// p_t ∝ max(L_t / L_t(first), 0.01), a ratio of 1 until a task has been trained (by hand:
// ratios 0.5, 1 and 0.001 → 0.01, over their sum 1.51).
#[test]
fn loss_driven_proportions_follow_the_loss_ratios() {
    let mut s = TaskScheduler::new(Schedule::Sampled(Proportions::LossDriven), 4).unwrap();
    assert_eq!(s.probabilities().unwrap(), vec![0.25; 4]);
    s.observe(&report(&[2.0, 1.0, 1e6, f64::NAN], &[0, 1, 2]));
    s.observe(&report(&[1.0, 1.0, 1e3, f64::NAN], &[0, 1, 2]));
    let p = s.probabilities().unwrap();
    let want = [0.5, 1.0, LOSS_RATIO_FLOOR, 1.0].map(|r| r / 2.51);
    for (a, b) in p.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{p:?}");
    }
    // A task whose loss fell most is drawn least, and never never: over 5,000 draws task 2 is
    // drawn about 0.4% of the time.
    let counts = (0..5000).fold([0usize; 4], |mut c, step| {
        c[s.draw(counters(step))[0]] += 1;
        c
    });
    assert!(counts[2] > 0 && counts[2] < 60 && counts[1] > 1500, "{counts:?}");
    // Degenerate losses: zero first (ratio 1), zero later (the floor), NaN ignored.
    let mut d = TaskScheduler::new(Schedule::Sampled(Proportions::LossDriven), 3).unwrap();
    d.observe(&report(&[0.0, 1e6, f64::NAN], &[0, 1, 2]));
    d.observe(&report(&[5.0, 0.0, f64::INFINITY], &[0, 1, 2]));
    let p = d.probabilities().unwrap();
    assert!(p.iter().all(|v| v.is_finite() && *v > 0.0), "{p:?}");
    assert!((p[0] - 1.0 / 2.01).abs() < 1e-12 && (p[1] - 0.01 / 2.01).abs() < 1e-12, "{p:?}");
}

#[test]
fn bad_schedules_and_accumulation_are_refused_in_one_sentence() {
    let fixed = |p: Vec<f64>| Schedule::Sampled(Proportions::Fixed(p));
    let message = |e: MtlError| e.to_string();
    assert!(
        message(fixed(vec![1.0, 2.0]).check(3, "ew").unwrap_err()).contains("2 values for 3 tasks")
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(message(fixed(vec![1.0, bad]).check(2, "ew").unwrap_err()).contains("positive"));
    }
    assert!(fixed(vec![1.0, 3.0]).check(2, "ew").is_ok());
    let one_task = Schedule::RoundRobin.check(2, "mgda").unwrap_err().to_string();
    assert!(one_task.contains("`mgda`") && one_task.contains("ew"), "{one_task}");
    assert!(Schedule::All.check(2, "mgda").is_ok());
    let zero = StepPlan::new(Schedule::All, 0, 2, &EqualWeighting).unwrap_err().to_string();
    assert!(zero.contains("at least 1"), "{zero}");
    // The trainer refuses before any step.
    let tasks = three_tasks();
    let train = data("bad", &tasks, 8, 0);
    let mut params = Params::new();
    let model = mlp(&mut params, &tasks, 0);
    let before = values(&params);
    for config in [
        TrainerConfig { accumulate: 0, ..TrainerConfig::default() },
        TrainerConfig { schedule: fixed(vec![1.0]), ..TrainerConfig::default() },
    ] {
        let mut trainer = Trainer::new(config, Sgd::new(0.1), EqualWeighting);
        assert!(trainer.fit(&model, &mut params, &train, None, &mut NoObserver).is_err());
        assert_eq!(trainer.steps(), 0);
    }
    let mut trainer = Trainer::new(
        TrainerConfig { schedule: Schedule::RoundRobin, ..TrainerConfig::default() },
        Sgd::new(0.1),
        Mgda::default(),
    );
    assert!(trainer.fit(&model, &mut params, &train, None, &mut NoObserver).is_err());
    assert_eq!(values(&params), before);
}

fn two_task_specs() -> [TaskSpec; 2] {
    [TaskSpec::classification("left", 3), TaskSpec::regression("right", 1)]
}

/// Two one-task data sets of different sizes and contents for the two tasks.
fn per_task_sets(n_left: usize, n_right: usize, seed: u64) -> Vec<MultiTaskDataset> {
    let [left, right] = two_task_specs();
    vec![data("left", &[left], n_left, seed), data("right", &[right], n_right, seed + 100)]
}

// With one input per task, L_t is computed on task t's batch through the shared trunk and
// head t: an EW step equals SGD on ∇(L_left(x_left) + L_right(x_right)) written by hand.
#[test]
fn a_multi_input_step_reads_each_task_s_own_batch() {
    let sets = per_task_sets(12, 20, 1);
    let batches: Vec<Batch> = sets.iter().map(whole_batch).collect();
    let mut params = Params::new();
    let model = mlp(&mut params, &two_task_specs(), 3);
    let mut by_hand = params.clone();
    let step = TrainStep::new(&model, &params, &EqualWeighting, StepOptions::default()).unwrap();
    let report = step
        .run(
            &model,
            &mut params,
            &mut Sgd::new(0.1),
            &mut EqualWeighting,
            TaskBatches::per_task(&batches),
            counters(0),
        )
        .unwrap();
    assert_eq!(report.batch_size, 32);
    assert_eq!(report.outputs[0].shape(), [12, 3]);
    assert_eq!(report.outputs[1].shape(), [20, 1]);

    let grads = by_hand.on_tape(|tape, bound, _| {
        let mut total = None;
        let mut losses = Vec::new();
        for (t, b) in batches.iter().enumerate() {
            let out = model.forward(tape.constant(input_tensor(&b.inputs)), &mut Ctx::train(bound));
            let loss = task_loss(&model.tasks()[t], out.outputs[t], &b.targets[0]).unwrap();
            losses.push(loss.value().item() as f64);
            total = Some(total.map_or(loss, |s| s + loss));
        }
        assert_eq!(losses, report.losses);
        bound.grads(&tape.backward(total.unwrap()))
    });
    Sgd::new(0.1).step(&mut by_hand, &grads);
    for (a, b) in values(&params).iter().zip(values(&by_hand)) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
}

// The single-input step is the special case of one batch read by every task: two copies of one
// batch as per-task batches give the same losses and, up to summation order, the same update.
#[test]
fn one_shared_batch_is_the_special_case_of_per_task_batches() {
    let tasks = two_task_specs();
    let shared = whole_batch(&data("both", &tasks, 16, 4));
    let split: Vec<Batch> = (0..2)
        .map(|t| Batch { targets: vec![shared.targets[t].clone()], ..shared.clone() })
        .collect();
    let mut results = Vec::new();
    for batches in [TaskBatches::shared(&shared), TaskBatches::per_task(&split)] {
        let mut params = Params::new();
        let model = mlp(&mut params, &tasks, 5);
        let step =
            TrainStep::new(&model, &params, &Mgda::default(), StepOptions::default()).unwrap();
        let r = step
            .run(
                &model,
                &mut params,
                &mut Sgd::new(0.1),
                &mut Mgda::default(),
                batches,
                counters(0),
            )
            .unwrap();
        results.push((r.losses, r.weights, values(&params)));
    }
    assert_eq!(results[0].0, results[1].0, "the same losses");
    for (a, b) in results[0].1.iter().zip(&results[1].1) {
        assert!((a - b).abs() < 1e-6, "MGDA's weights {a} vs {b}");
    }
    for (a, b) in results[0].2.iter().zip(&results[1].2) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

// The T × P task gradients on the shared parameters are still defined with one input per task:
// row t is ∇_θ L_t(x_t), each from its own forward pass. MGDA gets them from T sweeps or from
// one batched sweep, and both agree with a hand-made gradient of each loss on its own tape.
#[test]
fn multi_input_task_gradients_are_each_loss_s_own_gradient() {
    let sets = per_task_sets(10, 14, 2);
    let batches: Vec<Batch> = sets.iter().map(whole_batch).collect();
    let mut params = Params::new();
    let model = mlp(&mut params, &two_task_specs(), 6);
    let shared = model.shared_params();
    let norms_by_hand: Vec<f64> = (0..2)
        .map(|t| {
            let g = params.clone().on_tape(|tape, bound, _| {
                let b = &batches[t];
                let out =
                    model.forward(tape.constant(input_tensor(&b.inputs)), &mut Ctx::train(bound));
                let loss = task_loss(&model.tasks()[t], out.outputs[t], &b.targets[0]).unwrap();
                bound.grads(&tape.grad(loss, &bound.vars(&shared)))
            });
            f64::from(g.norm_of(&shared))
        })
        .collect();
    let mut after = Vec::new();
    for mode in [GradMode::Param, GradMode::Batched] {
        let mut p = params.clone();
        let options = StepOptions { grad_mode: mode, ..StepOptions::default() };
        let step = TrainStep::new(&model, &p, &Mgda::default(), options).unwrap();
        let r = step
            .run(
                &model,
                &mut p,
                &mut Sgd::new(0.1),
                &mut Mgda::default(),
                TaskBatches::per_task(&batches),
                counters(0),
            )
            .unwrap();
        let norms = r.shared.expect("MGDA computes the shared gradients").norms;
        for (a, b) in norms.iter().zip(&norms_by_hand) {
            assert!((a - b).abs() <= 1e-5 * b.max(1.0), "{mode:?}: {norms:?} vs {norms_by_hand:?}");
        }
        assert!(r.representation.is_none());
        after.push(values(&p));
    }
    for (a, b) in after[0].iter().zip(&after[1]) {
        assert!((a - b).abs() <= 1e-6, "param vs batched: {a} vs {b}");
    }
}

#[test]
fn methods_at_the_representation_are_refused_with_one_input_per_task() {
    for name in ["mgda-ub", "graddrop"] {
        let w = weighting::by_name(name, &MethodOptions::default()).unwrap();
        let e = check_multi_input(w.as_ref()).unwrap_err().to_string();
        assert!(e.contains(&format!("`{name}`")) && e.contains("representation"), "{e}");
    }
    for name in ["ew", "mgda", "pcgrad", "gradnorm", "uw"] {
        check_multi_input(weighting::by_name(name, &MethodOptions::default()).unwrap().as_ref())
            .unwrap();
    }
    let sets = per_task_sets(8, 8, 3);
    let mut params = Params::new();
    let model = mlp(&mut params, &two_task_specs(), 7);
    let mgda_ub = weighting::by_name("mgda-ub", &MethodOptions::default()).unwrap();
    let mut trainer =
        Trainer::from_boxed(TrainerConfig::default(), Box::new(Sgd::new(0.1)), mgda_ub);
    let e = trainer
        .fit_data(&model, &mut params, TaskData::PerTask(&sets), None, &mut NoObserver)
        .unwrap_err();
    assert!(e.to_string().contains("representation"), "{e}");
    assert_eq!(trainer.steps(), 0);
}

#[test]
fn per_task_data_sets_must_each_hold_their_task_alone() {
    let mut params = Params::new();
    let model = mlp(&mut params, &two_task_specs(), 8);
    let sets = per_task_sets(8, 8, 4);
    TaskData::PerTask(&sets).check(&model).unwrap();
    let err = |sets: &[MultiTaskDataset]| TaskData::PerTask(sets).check(&model).unwrap_err();
    assert!(matches!(err(&sets[..1]), MtlError::TaskCount { expected: 2, found: 1, .. }));
    let swapped = [sets[1].clone(), sets[0].clone()];
    assert!(matches!(err(&swapped), MtlError::TaskMismatch { index: 0, .. }));
    let both = data("both", &two_task_specs(), 8, 0);
    assert!(matches!(err(&[both.clone(), sets[1].clone()]), MtlError::TaskMismatch { .. }));
    let mut wide = sets.clone();
    let [left, _] = two_task_specs();
    wide[0] = MultiTaskDataset::new(
        "wide",
        ArrayD::zeros(vec![8, 5]),
        vec![left],
        vec![sets[0].targets[0].clone()],
    )
    .unwrap();
    assert!(matches!(err(&wide), MtlError::InputShape { .. }));
}

#[derive(Default)]
struct Trained(Vec<(Vec<usize>, Vec<f64>, usize)>);

impl Observer for Trained {
    fn on_step(&mut self, r: &StepReport) {
        self.0.push((r.trained.clone(), r.weights.clone(), r.batch_size));
    }
}

// A multi-input run: an epoch lasts as many steps as the longest data set has batches (5 of
// 8 from 40 samples; the 24-sample set starts over after 3), each task is evaluated on its own
// validation set, and the run is deterministic.
#[test]
fn a_multi_input_run_trains_and_evaluates_each_task_on_its_own_data() {
    let train = per_task_sets(40, 24, 5);
    let valid = per_task_sets(16, 12, 50);
    let run = |schedule: Schedule| {
        let mut params = Params::new();
        let model = mlp(&mut params, &two_task_specs(), 9);
        let config = TrainerConfig {
            epochs: 2,
            batch_size: 8,
            seed: 3,
            schedule,
            ..TrainerConfig::default()
        };
        let mut trainer = Trainer::new(config, Sgd::new(0.05), EqualWeighting);
        let mut seen = Trained::default();
        let epochs = trainer
            .fit_data(
                &model,
                &mut params,
                TaskData::PerTask(&train),
                Some(TaskData::PerTask(&valid)),
                &mut seen,
            )
            .unwrap();
        (epochs, seen, values(&params), model, params)
    };
    let (epochs, seen, end, model, params) = run(Schedule::All);
    assert_eq!(epochs[0].steps, 5);
    assert!(seen.0.iter().all(|(t, w, n)| t == &[0, 1] && w == &[1.0, 1.0] && *n == 16));
    let validation = epochs[1].validation.as_ref().unwrap();
    assert_eq!(validation.samples, 28);
    // Task `right`'s validation loss is its head's loss on its own validation set.
    let b = whole_batch(&valid[1]);
    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let out = model.forward(tape.constant(input_tensor(&b.inputs)), &mut Ctx::eval(&bound));
    let loss = task_loss(&model.tasks()[1], out.outputs[1], &b.targets[0]).unwrap();
    let got = validation.task("right").unwrap().loss.unwrap();
    assert!((got - f64::from(loss.value().item())).abs() < 1e-6, "{got}");
    assert!(validation.task("left").unwrap().value.is_some());
    assert_eq!(run(Schedule::All).2, end, "the same seed gives the same parameters");

    // Round-robin on per-task data: step s trains task s mod 2 on its own batch.
    let (_, seen, rr_end, ..) = run(Schedule::RoundRobin);
    for (s, (trained, weights, n)) in seen.0.iter().enumerate() {
        assert_eq!(trained, &[s % 2]);
        assert_eq!(weights[s % 2], 1.0);
        assert_eq!(*n, 8);
    }
    assert_ne!(rr_end, end);
}

// Accumulation and multi-input together, with a gradient-based method: MGDA with k = 2 over
// per-task batches runs, updates every other step and stays finite.
#[test]
fn accumulation_runs_with_multi_input_and_gradient_methods() {
    let train = per_task_sets(32, 16, 6);
    let mut params = Params::new();
    let model = mlp(&mut params, &two_task_specs(), 10);
    let config =
        TrainerConfig { epochs: 1, batch_size: 8, accumulate: 2, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Sgd::new(0.05), Mgda::default());
    let epochs = trainer
        .fit_data(&model, &mut params, TaskData::PerTask(&train), None, &mut NoObserver)
        .unwrap();
    assert_eq!((epochs[0].steps, trainer.optimizer().steps()), (4, 2));
    assert!(values(&params).iter().all(|v| v.is_finite()));
    let _: &dyn Weighting = trainer.weighting();
}
