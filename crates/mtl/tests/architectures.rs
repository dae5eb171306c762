//! The model families beyond hard sharing: soft sharing's coupling, cross-stitch units, the
//! trace norm and task relations (MTRL), uncertainty weighting in the graph, and the checks
//! that refuse what cannot run.

use nalgebra::DMatrix;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::gradcheck::{gradcheck, GradcheckOptions};
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_data::{MultiTaskDataset, TaskSpec, TaskTargets};
use tapestry_mtl::model::{
    nuclear_norm, soft_sharing_penalty, task_relation_omega, trace_norm_subgradient, CrossStitch,
    HardSharing, MultiTaskModel, Regularized, Regularizer, SoftSharing,
};
use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry_mtl::trainer::{NoObserver, Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{EqualWeighting, Mgda, MgdaUb, UncertaintyWeighting, Weighting};
use tapestry_mtl::StepReport;
use tapestry_nn::optim::{Adam, Sgd};
use tapestry_nn::{Ctx, Linear, Module, Params, Sequential, Sigmoid, Tanh};

fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(-scale..scale)).collect()).unwrap()
}

#[test]
fn soft_sharing_penalty_equals_the_pairwise_sum_and_its_gradient_checks() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for tasks in [2, 3, 5] {
        let thetas: Vec<Tensor> = (0..tasks).map(|_| random(&mut rng, &[3, 4], 1.0)).collect();
        let tape = Tape::new();
        let vars: Vec<Var<'_>> = thetas.iter().map(|t| tape.leaf(t.clone())).collect();
        let lambda = 0.3;
        let through_mean = soft_sharing_penalty(std::slice::from_ref(&vars), lambda).unwrap();
        // λ Σ_{i≠j} ‖θ_i − θ_j‖², directly over ordered pairs.
        let mut direct = 0.0f64;
        for i in 0..tasks {
            for j in 0..tasks {
                if i != j {
                    let d = thetas[i].as_slice().iter().zip(thetas[j].as_slice());
                    direct += d.map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
                }
            }
        }
        direct *= lambda as f64;
        let got = through_mean.value().item() as f64;
        assert!((got - direct).abs() <= 1e-5 * direct, "T = {tasks}: {got} vs {direct}");
        // Its gradient, 4Tλ(θ_i − θ̄), against the pairwise form's 4λ Σ_j (θ_i − θ_j).
        let grads = tape.grad(through_mean, &vars);
        for i in 0..tasks {
            for k in 0..12 {
                let want: f64 = (0..tasks)
                    .map(|j| {
                        4.0 * lambda as f64
                            * (thetas[i].as_slice()[k] - thetas[j].as_slice()[k]) as f64
                    })
                    .sum();
                let g = grads.wrt(vars[i]).as_slice()[k] as f64;
                assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "{g} vs {want}");
            }
        }
        // And against finite differences.
        gradcheck(penalty_of, &thetas, &GradcheckOptions::default()).unwrap();
    }
}

fn penalty_of<'t>(_: &'t Tape, v: &[Var<'t>]) -> Var<'t> {
    soft_sharing_penalty(&[v.to_vec()], 0.3).unwrap()
}

/// A `T × n` matrix of rank `rank` (or full).
fn matrix(rng: &mut ChaCha8Rng, t: usize, n: usize, rank: usize) -> Vec<f32> {
    let a = random(rng, &[t, rank], 1.0);
    let b = random(rng, &[rank, n], 1.0);
    (0..t * n)
        .map(|i| {
            (0..rank).map(|k| a.as_slice()[i / n * rank + k] * b.as_slice()[k * n + i % n]).sum()
        })
        .collect()
}

#[test]
fn trace_norm_and_subgradient_equal_a_dense_svd() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (t, n, rank) in [(3, 7, 3), (4, 9, 2), (5, 5, 1), (2, 30, 2), (4, 4, 4)] {
        let w = matrix(&mut rng, t, n, rank);
        let m = DMatrix::from_row_slice(t, n, &w.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let svd = m.clone().svd(true, true);
        let want_norm: f64 = svd.singular_values.iter().sum();
        // U Vᵀ over the non-zero singular values.
        let (u, vt) = (svd.u.unwrap(), svd.v_t.unwrap());
        let top = svd.singular_values.max();
        let mut uv = DMatrix::<f64>::zeros(t, n);
        for (k, &s) in svd.singular_values.iter().enumerate() {
            if s > 1e-6 * top {
                uv += u.column(k) * vt.row(k);
            }
        }
        let got = trace_norm_subgradient(&w, t);
        for i in 0..t {
            for j in 0..n {
                let (a, b) = (got[i * n + j] as f64, uv[(i, j)]);
                assert!((a - b).abs() < 1e-4, "rank {rank}: UVᵀ[{i},{j}] {a} vs {b}");
            }
        }
        let tape = Tape::new();
        let wv = tape.leaf(Tensor::from_vec(&[t, n], w.clone()).unwrap());
        let norm = nuclear_norm(wv);
        assert!((norm.value().item() as f64 - want_norm).abs() < 1e-4 * want_norm, "rank {rank}");
        let g = tape.backward(norm).wrt(wv);
        assert_eq!(g.to_vec(), got, "the gradient is the subgradient");
    }
}

#[test]
fn at_the_closed_form_task_covariance_the_mtrl_penalty_is_the_squared_trace_norm() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (t, n) in [(3, 8), (4, 6), (2, 10)] {
        let w = matrix(&mut rng, t, n, t);
        let (omega, inverse) = task_relation_omega(&w, t, 0.0);
        let trace: f64 = (0..t).map(|i| omega[i * t + i]).sum();
        assert!((trace - 1.0).abs() < 1e-12, "Ω has unit trace");
        // tr(Wᵀ Ω⁻¹ W) = Σ_{s,u} (Ω⁻¹)_{su} ⟨w_s, w_u⟩
        let row = |s: usize| &w[s * n..(s + 1) * n];
        let mut penalty = 0.0f64;
        for s in 0..t {
            for u in 0..t {
                let dot: f64 = row(s).iter().zip(row(u)).map(|(a, b)| *a as f64 * *b as f64).sum();
                penalty += inverse[s * t + u] * dot;
            }
        }
        let m = DMatrix::from_row_slice(t, n, &w.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let nuclear: f64 = m.svd(false, false).singular_values.iter().sum();
        assert!(
            (penalty - nuclear * nuclear).abs() < 1e-6 * penalty,
            "{penalty} vs {}",
            nuclear * nuclear
        );
        // Ω Ω⁻¹ = I.
        for i in 0..t {
            for j in 0..t {
                let p: f64 = (0..t).map(|k| omega[i * t + k] * inverse[k * t + j]).sum();
                assert!((p - f64::from(u8::from(i == j))).abs() < 1e-9);
            }
        }
    }
}

/// Two-stage towers of `Linear` layers under `towers.<task>.`, with linear heads.
fn stages(params: &mut Params, task: &str, rng: &mut ChaCha8Rng) -> Vec<Box<dyn Module>> {
    vec![
        Box::new(
            Sequential::new()
                .push(Linear::new(params, &format!("towers.{task}.0"), 4, 6, rng).unwrap())
                .push(Tanh),
        ),
        Box::new(
            Sequential::new()
                .push(Linear::new(params, &format!("towers.{task}.1"), 6, 5, rng).unwrap())
                .push(Tanh),
        ),
    ]
}

#[test]
fn cross_stitch_with_identity_units_equals_independent_towers() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let names = ["a", "b", "c"];
    let mut params = Params::new();
    let mut builder = CrossStitch::builder().initial_diagonal(1.0);
    let mut towers = Vec::new();
    for name in names {
        let st = stages(&mut params, name, &mut rng);
        let head = Linear::new(&mut params, &format!("heads.{name}"), 5, 2, &mut rng).unwrap();
        // The same layers again, to run on their own (they share the parameter ids).
        towers.push((st[0].params(), st[1].params(), head.weight(), head.bias()));
        builder = builder.task(TaskSpec::regression(name, 2), st, head);
    }
    let model = builder.build(&mut params).unwrap();
    assert_eq!(model.shared_params().len(), 1, "one unit, after stage 0");
    let x = random(&mut rng, &[7, 4], 1.0);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let out = model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
    for (t, (s0, s1, hw, hb)) in towers.iter().enumerate() {
        let v = |id| bound.var(id);
        let h = tape.constant(x.clone()).linear(v(s0[0]), Some(v(s0[1]))).tanh();
        let h = h.linear(v(s1[0]), Some(v(s1[1]))).tanh();
        let y = h.linear(v(*hw), hb.map(v));
        assert_eq!(out.outputs[t].value().to_vec(), y.value().to_vec(), "task {t} exactly");
    }
    // The default start mixes: 0.9 on the diagonal, 0.05 off it for three tasks.
    let mut params = Params::new();
    let mut builder = CrossStitch::builder();
    for name in names {
        let st = stages(&mut params, name, &mut rng);
        let head = Linear::new(&mut params, &format!("heads.{name}"), 5, 2, &mut rng).unwrap();
        builder = builder.task(TaskSpec::regression(name, 2), st, head);
    }
    let model = builder.build(&mut params).unwrap();
    let unit = params.get(model.shared_params()[0]).to_vec();
    let want = [0.9, 0.05, 0.05, 0.05, 0.9, 0.05, 0.05, 0.05, 0.9];
    assert!(unit.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{unit:?}");
}

/// The TNRDMTL synthetic demo: three regression tasks with 3, 2 and 5 outputs, N = 100, D = 20,
/// a tower of H = 10 sigmoid units per task whose weights share a low-rank structure.
fn tnrdmtl_data(rng: &mut ChaCha8Rng) -> MultiTaskDataset {
    let (n, d, h) = (100, 20, 10);
    let outs = [3usize, 2, 5];
    let x = Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0f32..1.0));
    let basis = random(rng, &[2, d], 1.0);
    let mut targets = Vec::new();
    let mut specs = Vec::new();
    for (t, &o) in outs.iter().enumerate() {
        // Hidden weights from a shared rank-2 basis: every task's first layer lies in one plane.
        let mix = random(rng, &[h, 2], 1.0);
        let out = random(rng, &[o, h], 1.0);
        let hidden = Array2::from_shape_fn((n, h), |(i, k)| {
            let z: f32 = (0..d)
                .map(|j| {
                    x[[i, j]]
                        * (0..2)
                            .map(|r| mix.as_slice()[k * 2 + r] * basis.as_slice()[r * d + j])
                            .sum::<f32>()
                })
                .sum();
            1.0 / (1.0 + (-z).exp())
        });
        let y = Array2::from_shape_fn((n, o), |(i, c)| {
            (0..h).map(|k| hidden[[i, k]] * out.as_slice()[c * h + k]).sum::<f32>()
                + rng.gen_range(-0.05..0.05)
        });
        specs.push(TaskSpec::regression(format!("task{t}"), o));
        targets.push(TaskTargets::Values { values: y, mask: None });
    }
    MultiTaskDataset::new("tnrdmtl", x.into_dyn(), specs, targets).unwrap()
}

/// The demo's model: a tower of 10 sigmoid units per task under `towers.<task>.0`, and a linear
/// head per task, coupled by soft sharing's `lambda` over `layers` (every layer if empty).
fn demo_towers(
    data: &MultiTaskDataset,
    params: &mut Params,
    lambda: f32,
    layers: &[&str],
    rng: &mut ChaCha8Rng,
) -> SoftSharing {
    let mut builder = SoftSharing::builder(lambda);
    if !layers.is_empty() {
        builder = builder.coupled_layers(layers);
    }
    for spec in &data.tasks {
        let out = match spec.kind {
            tapestry_data::TaskKind::Regression { dim } => dim,
            _ => unreachable!("the demo's tasks are regressions"),
        };
        let name = &spec.name;
        let layer = Linear::new(params, &format!("towers.{name}.0"), 20, 10, rng).unwrap();
        let head = Linear::new(params, &format!("heads.{name}"), 10, out, rng).unwrap();
        builder = builder.task(spec.clone(), Sequential::new().push(layer).push(Sigmoid), head);
    }
    builder.build(params).unwrap()
}

#[derive(Default)]
struct Trace {
    aux: Vec<f64>,
    losses: Vec<Vec<f64>>,
}

impl Observer for Trace {
    fn on_step(&mut self, r: &StepReport) {
        self.aux.push(r.aux_loss.expect("the trace norm is an auxiliary loss"));
        self.losses.push(r.losses.clone());
    }
}

/// Trains the demo's towers with a trace norm of strength `lambda` on their hidden layer: the
/// penalty at each step, the losses at each step, and the final trace norm of the layer.
fn tnrdmtl_run(lambda: f32) -> (Trace, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let data = tnrdmtl_data(&mut rng);
    let mut params = Params::new();
    let towers = demo_towers(&data, &mut params, 0.0, &[], &mut rng);
    // The towers start from N(0, 1) weights: three unrelated full-rank layers.
    let ids: Vec<_> = data
        .tasks
        .iter()
        .map(|s| params.id(&format!("towers.{}.0.weight", s.name)).unwrap())
        .collect();
    for &id in &ids {
        let w: Vec<f32> =
            (0..200).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect();
        params.set(id, Tensor::from_vec(&[10, 20], w).unwrap()).unwrap();
    }
    let regularizer = Regularizer::TraceNorm { lambda, layer: "0.weight".into() };
    let model = Regularized::new(towers, &params, vec![regularizer]).unwrap();
    // Full batch, 1000 iterations of Adam 0.01.
    let config = TrainerConfig { epochs: 1000, batch_size: 100, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Adam::new(0.01), EqualWeighting);
    let mut trace = Trace::default();
    trainer.fit(&model, &mut params, &data, None, &mut trace).unwrap();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| params.get(id).to_vec()).collect();
    let m = DMatrix::from_row_slice(3, 200, &rows.iter().map(|&v| v as f64).collect::<Vec<_>>());
    (trace, m.svd(false, false).singular_values.iter().sum())
}

#[test]
fn the_trace_norm_falls_while_the_task_losses_converge_on_the_tnrdmtl_demo() {
    let (trace, with_penalty) = tnrdmtl_run(1e-3);
    let (first, last) = (trace.aux[0], *trace.aux.last().unwrap());
    assert!(last < 0.5 * first, "the trace norm penalty should fall: {first} -> {last}");
    for t in 0..3 {
        let (l0, l_end) = (trace.losses[0][t], trace.losses[999][t]);
        let l_before = trace.losses[899][t];
        assert!(l_end < 0.05 * l0, "task {t} should learn: {l0} -> {l_end}");
        assert!(
            (l_before - l_end).abs() < 0.01 * l0,
            "task {t} should have converged: {l_before} -> {l_end}"
        );
    }
    // The penalty, not the data alone, lowers the trace norm.
    let (_, without) = tnrdmtl_run(0.0);
    assert!(
        with_penalty < 0.7 * without,
        "trace norm {with_penalty} with the penalty, {without} without"
    );
}

#[test]
fn the_task_covariance_is_learned_and_reported() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let data = tnrdmtl_data(&mut rng);
    let mut params = Params::new();
    let towers = demo_towers(&data, &mut params, 0.0, &[], &mut rng);
    let relation =
        Regularizer::TaskRelation { lambda: 1e-2, layer: "0.weight".into(), every: 5, eps: 1e-6 };
    let model = Regularized::new(towers, &params, vec![relation]).unwrap();
    assert_eq!(model.omega().unwrap()[0], 1.0 / 3.0, "Ω starts at I/T");
    let config = TrainerConfig { epochs: 20, batch_size: 50, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Adam::new(0.01), EqualWeighting);
    let epochs = trainer.fit(&model, &mut params, &data, None, &mut NoObserver).unwrap();
    let (name, omega) = &epochs.last().unwrap().model_diagnostics[0];
    assert_eq!(name, "task_relation.omega");
    assert_eq!(omega.len(), 9);
    let trace: f64 = (0..3).map(|i| omega[i * 3 + i]).sum();
    assert!((trace - 1.0).abs() < 1e-9);
    // It is the closed form at the current weights (the last update was at the last step).
    let rows: Vec<f32> = ["task0", "task1", "task2"]
        .iter()
        .flat_map(|t| params.get(params.id(&format!("towers.{t}.0.weight")).unwrap()).to_vec())
        .collect();
    let (want, _) = task_relation_omega(&rows, 3, 1e-6);
    for (a, b) in omega.iter().zip(&want) {
        assert!((a - b).abs() < 1e-9);
    }
    assert!(omega[1].abs() > 1e-3, "related tasks have off-diagonal covariance: {omega:?}");
}

#[test]
fn uncertainty_weighting_learns_its_variances_in_the_graph() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let data = tnrdmtl_data(&mut rng);
    let mut params = Params::new();
    let trunk = Sequential::new()
        .push(Linear::new(&mut params, "trunk.0", 20, 10, &mut rng).unwrap())
        .push(Tanh);
    let mut builder = HardSharing::builder(trunk);
    for (spec, o) in data.tasks.iter().zip([3, 2, 5]) {
        builder = builder.head(
            spec.clone(),
            Linear::new(&mut params, &format!("heads.{}", spec.name), 10, o, &mut rng).unwrap(),
        );
    }
    let model = builder.build(&params).unwrap();
    let mut uw = UncertaintyWeighting::default();
    uw.register(&mut params, model.tasks()).unwrap();
    let s = params.id("weighting.uw.log_var").unwrap();
    assert_eq!(params.get(s).to_vec(), vec![-0.5; 3]);
    // One step by hand: the gradient of s_t is (1 − e^{−s_t} L_t) / 2.
    let step = TrainStep::new(&model, &params, &uw, StepOptions::default()).unwrap();
    let batch = data.batches(&tapestry_data::BatchOptions::new(100, 0), 0).unwrap().next().unwrap();
    let (grads, report) =
        step.gradients(&model, &mut params, &mut uw, &batch, StepCounters::default()).unwrap();
    for t in 0..3 {
        let want = (1.0 - (0.5f64).exp() * report.losses[t]) / 2.0;
        let got = grads.get(s).as_slice()[t] as f64;
        assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "task {t}: {got} vs {want}");
        assert!((report.weights[t] - (0.5f64).exp() / 2.0).abs() < 1e-6);
    }
    // Training moves s toward ln L_t: the task with the larger loss gets the larger variance.
    let mut params2 = params.clone();
    let config = TrainerConfig { epochs: 300, batch_size: 100, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Adam::new(0.01), uw);
    let epochs = trainer.fit(&model, &mut params2, &data, None, &mut NoObserver).unwrap();
    let losses: Vec<f64> =
        epochs.last().unwrap().train.tasks.iter().map(|t| t.loss.unwrap()).collect();
    // Every loss ends far below e^{-0.5}, so every s_t moves down toward ln L_t (it lags the
    // falling losses), and it ends lowest for the task with the lowest loss.
    let s_end = params2.get(s).to_vec();
    for t in 0..3 {
        assert!(
            s_end[t] < -2.0 && (s_end[t] as f64) > losses[t].ln(),
            "task {t}: s = {} vs ln L = {}",
            s_end[t],
            losses[t].ln()
        );
    }
    let lowest = |v: &[f64]| (0..3).min_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let s64: Vec<f64> = s_end.iter().map(|&v| v as f64).collect();
    assert_eq!(lowest(&s64), lowest(&losses), "s {s_end:?}, losses {losses:?}");
}

#[test]
fn what_cannot_run_is_refused_before_training() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut params = Params::new();
    let mut builder = SoftSharing::builder(0.1);
    for name in ["a", "b"] {
        let tower = Linear::new(&mut params, &format!("towers.{name}.0"), 4, 3, &mut rng).unwrap();
        let head = Linear::new(&mut params, &format!("heads.{name}"), 3, 1, &mut rng).unwrap();
        builder = builder.task(TaskSpec::regression(name, 1), tower, head);
    }
    let soft = builder.build(&params).unwrap();
    let e = TrainStep::new(&soft, &params, &Mgda::default(), StepOptions::default()).unwrap_err();
    assert!(e.to_string().contains("method `mgda` needs per-task gradients on shared parameters, and this model shares none"), "{e}");
    let e = TrainStep::new(&soft, &params, &MgdaUb::default(), StepOptions::default()).unwrap_err();
    assert!(e.to_string().contains("has one per task"), "{e}");
    let diag = StepOptions { diagnostics: true, ..StepOptions::default() };
    let e = TrainStep::new(&soft, &params, &EqualWeighting, diag).unwrap_err();
    assert!(e.to_string().contains("gradient diagnostics need"), "{e}");
    assert!(TrainStep::new(&soft, &params, &EqualWeighting, StepOptions::default()).is_ok());

    // Soft sharing with one task, a negative λ, a coupled layer the towers lack.
    let one = |lambda: f32, layers: Option<&[&str]>, tasks: &[&str]| {
        let mut params = Params::new();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut b = SoftSharing::builder(lambda);
        if let Some(l) = layers {
            b = b.coupled_layers(l);
        }
        for name in tasks {
            let tower =
                Linear::new(&mut params, &format!("towers.{name}.0"), 4, 3, &mut rng).unwrap();
            let head = Linear::new(&mut params, &format!("heads.{name}"), 3, 1, &mut rng).unwrap();
            b = b.task(TaskSpec::regression(*name, 1), tower, head);
        }
        b.build(&params).map(|_| ()).unwrap_err().to_string()
    };
    assert!(one(0.1, None, &["a"]).contains("needs at least two"));
    assert!(one(-1.0, None, &["a", "b"]).contains("lambda must be finite and at least 0, got -1"));
    assert!(one(f32::NAN, None, &["a", "b"]).contains("lambda must be finite"));
    assert!(one(0.1, Some(&["3.weight"]), &["a", "b"])
        .contains("couples layer `3.weight`, which the towers lack (they have 0.weight, 0.bias)"));

    // A trace norm on a layer the model lacks, or of different shapes.
    let e = Regularized::new(
        soft,
        &params,
        vec![Regularizer::TraceNorm { lambda: 1.0, layer: "9.weight".into() }],
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.to_string().contains("task `a` has no `towers.a.9.weight` or `heads.a.9.weight`"),
        "{e}"
    );
}

#[test]
fn soft_sharing_trains_and_its_penalty_pulls_the_towers_together() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let data = tnrdmtl_data(&mut rng);
    let spread = |lambda: f32| {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut params = Params::new();
        let model = demo_towers(&data, &mut params, lambda, &["0.weight"], &mut rng);
        let config = TrainerConfig { epochs: 100, batch_size: 100, ..TrainerConfig::default() };
        let mut trainer = Trainer::new(config, Sgd::new(0.1), EqualWeighting);
        trainer.fit(&model, &mut params, &data, None, &mut NoObserver).unwrap();
        let w: Vec<Vec<f32>> = data
            .tasks
            .iter()
            .map(|s| {
                params.get(params.id(&format!("towers.{}.0.weight", s.name)).unwrap()).to_vec()
            })
            .collect();
        let dist: f32 = w[0].iter().zip(&w[1]).map(|(a, b)| (a - b).powi(2)).sum();
        dist
    };
    let (free, coupled) = (spread(0.0), spread(0.05));
    assert!(
        coupled < 0.5 * free,
        "the coupling should pull the towers together: {free} vs {coupled}"
    );
}
