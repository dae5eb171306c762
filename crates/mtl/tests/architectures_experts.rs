//! The per-task-representation architectures: MMoE, CGC, PLE and MTAN. Their outputs against
//! the papers' formulas written out op by op, the gates as softmaxes of the input, MMoE with one
//! expert as hard sharing, CGC without task experts as MMoE, gradients to every expert and gate
//! against finite differences, the shared parameters as exactly those several tasks reach,
//! training, determinism, and the refusal of the methods that need one shared representation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::gradcheck::{compare, gradcheck, GradcheckOptions, NumericGradients};
use tapestry_autodiff::{Tape, Tensor, Var};
use tapestry_data::TaskSpec;
use tapestry_mtl::model::{mix_experts, HardSharing, Mmoe, ModelOutput, Mtan, MultiTaskModel, Ple};
use tapestry_mtl::toy::{gradnorm_toy, GradNormToyConfig};
use tapestry_mtl::trainer::{Observer, Trainer, TrainerConfig};
use tapestry_mtl::weighting::{self, EqualWeighting, MethodOptions, Mgda};
use tapestry_mtl::{StepOptions, StepReport, TrainStep};
use tapestry_nn::optim::Adam;
use tapestry_nn::{
    Bound, Conv2d, Ctx, Flatten, Linear, MaxPool2d, Module, Params, Sequential, Tanh,
};

fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.gen_range(-scale..scale)).collect()).unwrap()
}

/// One stage per consecutive pair of `dims`: stage `i` is linear `dims[i] → dims[i+1]` (named
/// `{prefix}.{i}`) then tanh.
fn stages(
    params: &mut Params,
    prefix: &str,
    dims: &[usize],
    rng: &mut ChaCha8Rng,
) -> Vec<Box<dyn Module>> {
    (0..dims.len() - 1)
        .map(|i| {
            let layer = Linear::new(params, &format!("{prefix}.{i}"), dims[i], dims[i + 1], rng);
            Box::new(Sequential::new().push(layer.unwrap()).push(Tanh)) as Box<dyn Module>
        })
        .collect()
}

/// Stages joined into one module.
fn joined(stages: Vec<Box<dyn Module>>) -> Sequential {
    let mut s = Sequential::new();
    for stage in stages {
        s.push_boxed(stage);
    }
    s
}

/// The sizes of a test model: the experts' (or backbone's) widths, input first, and the tasks
/// with their output sizes.
struct Setup {
    dims: Vec<usize>,
    tasks: Vec<(TaskSpec, usize)>,
}

/// `[4]` inputs, experts 4 → 5 → 3; task `a` regresses 2 values, `b` has 3 classes.
fn small() -> Setup {
    Setup {
        dims: vec![4, 5, 3],
        tasks: vec![(TaskSpec::regression("a", 2), 2), (TaskSpec::classification("b", 3), 3)],
    }
}

/// As [`small`] with experts of three stages, 4 → 5 → 5 → 3.
fn deep() -> Setup {
    Setup { dims: vec![4, 5, 5, 3], ..small() }
}

fn head(params: &mut Params, setup: &Setup, t: usize, rng: &mut ChaCha8Rng) -> Linear {
    let (spec, out) = &setup.tasks[t];
    let width = *setup.dims.last().unwrap();
    Linear::new(params, &format!("heads.{}", spec.name), width, *out, rng).unwrap()
}

fn mmoe(setup: &Setup, params: &mut Params, k: usize, seed: u64) -> Mmoe {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = Mmoe::builder();
    for e in 0..k {
        b = b.expert(joined(stages(params, &format!("experts_shared.{e}"), &setup.dims, &mut rng)));
    }
    for t in 0..setup.tasks.len() {
        b = b.head(setup.tasks[t].0.clone(), head(params, setup, t, &mut rng));
    }
    b.input_shape(&setup.dims[..1]).build(params, &mut rng).unwrap()
}

/// CGC (`levels` false: each expert one joined stage) or PLE (a level per stage), with `ks`
/// shared experts and `kt` experts per task.
fn ple(
    setup: &Setup,
    params: &mut Params,
    levels: bool,
    (ks, kt): (usize, usize),
    seed: u64,
) -> Ple {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut expert = |params: &mut Params, prefix: &str| -> Vec<Box<dyn Module>> {
        let s = stages(params, prefix, &setup.dims, &mut rng);
        if levels {
            s
        } else {
            vec![Box::new(joined(s))]
        }
    };
    let mut b = Ple::builder();
    for e in 0..ks {
        b = b.shared_expert(expert(params, &format!("experts_shared.{e}")));
    }
    let own: Vec<Vec<Vec<Box<dyn Module>>>> = (setup.tasks.iter())
        .map(|(spec, _)| {
            (0..kt)
                .map(|e| expert(params, &format!("experts_specific.{}.{e}", spec.name)))
                .collect()
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    for (t, experts) in own.into_iter().enumerate() {
        b = b.task(setup.tasks[t].0.clone(), experts, head(params, setup, t, &mut rng));
    }
    b.input_shape(&setup.dims[..1]).build(params, &mut rng).unwrap()
}

fn mtan(setup: &Setup, params: &mut Params, seed: u64) -> Mtan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = Mtan::builder(stages(params, "trunk", &setup.dims, &mut rng));
    for t in 0..setup.tasks.len() {
        b = b.head(setup.tasks[t].0.clone(), head(params, setup, t, &mut rng));
    }
    b.input_shape(&setup.dims[..1]).build(params, &mut rng).unwrap()
}

/// Every architecture on `setup`, with its parameters: MMoE (3 experts), CGC (2 shared, 1 per
/// task), PLE (2 shared, 1 per task, a level per stage), MTAN.
fn all(setup: &Setup, seed: u64) -> Vec<(&'static str, Box<dyn MultiTaskModel>, Params)> {
    let mut out: Vec<(&'static str, Box<dyn MultiTaskModel>, Params)> = Vec::new();
    let mut p = Params::new();
    out.push(("mmoe", Box::new(mmoe(setup, &mut p, 3, seed)), p));
    let mut p = Params::new();
    out.push(("cgc", Box::new(ple(setup, &mut p, false, (2, 1), seed)), p));
    let mut p = Params::new();
    out.push(("ple", Box::new(ple(setup, &mut p, true, (2, 1), seed)), p));
    let mut p = Params::new();
    out.push(("mtan", Box::new(mtan(setup, &mut p, seed)), p));
    out
}

/// Conv 1→2 k3 p1, tanh, max-pool 2 (`[2, 4, 4]` from `[1, 8, 8]`); flatten, linear 32→3, tanh.
fn conv_stages(params: &mut Params, prefix: &str, rng: &mut ChaCha8Rng) -> Vec<Box<dyn Module>> {
    let conv = Conv2d::new(params, &format!("{prefix}.0"), 1, 2, (3, 3), rng).unwrap();
    let linear = Linear::new(params, &format!("{prefix}.3"), 32, 3, rng).unwrap();
    vec![
        Box::new(
            Sequential::new().push(conv.padding((1, 1))).push(Tanh).push(MaxPool2d::new((2, 2))),
        ),
        Box::new(Sequential::new().push(Flatten).push(linear).push(Tanh)),
    ]
}

/// MMoE, PLE (a level per stage) and MTAN on `[1, 8, 8]` images, with conv experts or backbone.
fn conv_models() -> Vec<(&'static str, Box<dyn MultiTaskModel>, Params)> {
    let setup = small();
    let mut rng = ChaCha8Rng::seed_from_u64(40);
    let mut out: Vec<(&'static str, Box<dyn MultiTaskModel>, Params)> = Vec::new();
    let mut p = Params::new();
    let mut b = Mmoe::builder();
    for e in 0..2 {
        b = b.expert(joined(conv_stages(&mut p, &format!("experts_shared.{e}"), &mut rng)));
    }
    for t in 0..2 {
        b = b.head(setup.tasks[t].0.clone(), head(&mut p, &setup, t, &mut rng));
    }
    out.push(("mmoe", Box::new(b.input_shape(&[1, 8, 8]).build(&mut p, &mut rng).unwrap()), p));
    let mut p = Params::new();
    let mut b = Ple::builder();
    for e in 0..2 {
        b = b.shared_expert(conv_stages(&mut p, &format!("experts_shared.{e}"), &mut rng));
    }
    for t in 0..2 {
        let name = &setup.tasks[t].0.name;
        let own = vec![conv_stages(&mut p, &format!("experts_specific.{name}.0"), &mut rng)];
        b = b.task(setup.tasks[t].0.clone(), own, head(&mut p, &setup, t, &mut rng));
    }
    out.push(("ple", Box::new(b.input_shape(&[1, 8, 8]).build(&mut p, &mut rng).unwrap()), p));
    let mut p = Params::new();
    let mut b = Mtan::builder(conv_stages(&mut p, "trunk", &mut rng));
    for t in 0..2 {
        b = b.head(setup.tasks[t].0.clone(), head(&mut p, &setup, t, &mut rng));
    }
    out.push(("mtan", Box::new(b.input_shape(&[1, 8, 8]).build(&mut p, &mut rng).unwrap()), p));
    out
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.as_slice().iter().zip(b.as_slice()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn mix_experts_is_the_gate_weighted_sum_per_sample() {
    let tape = Tape::new();
    let gate =
        tape.constant(Tensor::from_vec(&[2, 3], vec![0.2, 0.3, 0.5, 1.0, 0.0, 0.0]).unwrap());
    let experts: Vec<Var<'_>> = (0..3)
        .map(|k| {
            let k = k as f32;
            tape.constant(
                Tensor::from_vec(&[2, 2], vec![k, 10.0 + k, 100.0 + k, 1000.0 + k]).unwrap(),
            )
        })
        .collect();
    // Sample 0: 0.2·0 + 0.3·1 + 0.5·2 = 1.3 and 0.2·10 + 0.3·11 + 0.5·12 = 11.3; sample 1 takes
    // expert 0 alone.
    let want = Tensor::from_vec(&[2, 2], vec![1.3, 11.3, 100.0, 1000.0]).unwrap();
    let got = mix_experts(gate, &experts).value();
    assert_eq!(got.shape(), &[2, 2]);
    assert!(max_diff(&got, &want) < 1e-4, "{:?}", got.to_vec());
}

#[test]
fn every_architecture_gives_one_output_and_representation_per_task() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let cases = all(&small(), 2).into_iter().map(|(n, m, p)| (n, m, p, vec![4]));
    let conv = conv_models().into_iter().map(|(n, m, p)| (n, m, p, vec![1, 8, 8]));
    for (name, model, params, sample) in cases.chain(conv) {
        assert_eq!(model.input_shape(), Some(&sample[..]), "{name}");
        assert!(!model.shares_representation(), "{name}");
        let x = random(&mut rng, &[&[5], &sample[..]].concat(), 1.0);
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let out = model.forward(tape.constant(x), &mut Ctx::train(&bound));
        assert_eq!(out.outputs[0].shape(), [5, 2], "{name}");
        assert_eq!(out.outputs[1].shape(), [5, 3], "{name}");
        assert_eq!(out.representations.len(), 2, "{name}");
        assert!(out.representations.iter().all(|z| z.shape() == [5, 3]), "{name}");
        assert!(out.shared_representation().is_none() && out.aux_loss.is_none(), "{name}");
    }
}

/// Asserts that every row of `g` (`[B, K]`) is a probability vector and that not every row is
/// the same.
fn assert_softmax_rows(name: &str, g: &Tensor, k: usize) {
    assert_eq!(g.shape()[1], k, "{name}: {:?}", g.shape());
    let rows: Vec<&[f32]> = g.as_slice().chunks(k).collect();
    for row in &rows {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6 && row.iter().all(|&v| v > 0.0), "{name}: {row:?}");
    }
    let spread = rows.iter().flat_map(|r| r.iter().zip(rows[0]).map(|(a, b)| (a - b).abs()));
    assert!(spread.fold(0.0, f32::max) > 1e-3, "{name}: the gate does not depend on the input");
}

#[test]
fn the_gates_are_softmaxes_of_the_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = random(&mut rng, &[6, 4], 2.0);
    let setup = small();
    // MMoE: softmax(W x + b) per task, recomputed here in f64.
    let mut params = Params::new();
    let model = mmoe(&setup, &mut params, 3, 4);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let (_, gates) = model.forward_with_gates(tape.constant(x.clone()), &mut Ctx::train(&bound));
    let names: Vec<&str> = gates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mmoe.gate.a", "mmoe.gate.b"]);
    for ((name, g), task) in gates.iter().zip(["a", "b"]) {
        let g = g.value();
        assert_softmax_rows(name, &g, 3);
        let w = params.get(params.id(&format!("gate_specific.{task}.0.weight")).unwrap());
        let b = params.get(params.id(&format!("gate_specific.{task}.0.bias")).unwrap());
        for i in 0..6 {
            let logits: Vec<f64> = (0..3)
                .map(|k| {
                    let dot: f64 = (0..4)
                        .map(|j| w.as_slice()[k * 4 + j] as f64 * x.as_slice()[i * 4 + j] as f64)
                        .sum();
                    dot + b.as_slice()[k] as f64
                })
                .collect();
            let z: f64 = logits.iter().map(|l| l.exp()).sum();
            for (k, logit) in logits.iter().enumerate() {
                let want = logit.exp() / z;
                assert!((g.as_slice()[i * 3 + k] as f64 - want).abs() < 1e-6, "{name} [{i}, {k}]");
            }
        }
    }
    // CGC: a gate per task over 2 shared + 1 own expert, no shared gate.
    let mut params = Params::new();
    let model = ple(&setup, &mut params, false, (2, 1), 5);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let (_, gates) = model.forward_with_gates(tape.constant(x.clone()), &mut Ctx::train(&bound));
    let names: Vec<&str> = gates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cgc.gate.a", "cgc.gate.b"]);
    for (name, g) in &gates {
        assert_softmax_rows(name, &g.value(), 3);
    }
    // PLE with two levels: the shared gate of level 0 weighs all 2 + 2·1 experts.
    let mut params = Params::new();
    let model = ple(&setup, &mut params, true, (2, 1), 6);
    assert_eq!(model.levels(), 2);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let (_, gates) = model.forward_with_gates(tape.constant(x), &mut Ctx::train(&bound));
    let names: Vec<&str> = gates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["ple.gate.a.0", "ple.gate.b.0", "ple.shared_gate.0", "ple.gate.a.1", "ple.gate.b.1"]
    );
    for (name, g) in &gates {
        let k = if name.contains("shared") { 4 } else { 3 };
        assert_softmax_rows(name, &g.value(), k);
    }
}

/// `x Wᵀ + b` with the linear layer `prefix` of `params` as bound.
fn affine<'t>(bound: &Bound<'t>, params: &Params, prefix: &str, x: Var<'t>) -> Var<'t> {
    let v = |name: String| bound.var(params.id(&name).unwrap());
    x.linear(v(format!("{prefix}.weight")), Some(v(format!("{prefix}.bias"))))
}

/// `Σ_k g[:, k] · e_k`, from column slices (independently of [`mix_experts`]).
fn by_hand_mix<'t>(g: Var<'t>, experts: &[Var<'t>]) -> Var<'t> {
    (experts.iter().enumerate()).map(|(k, &e)| g.narrow(1, k, 1) * e).reduce(|a, b| a + b).unwrap()
}

#[test]
fn ple_follows_the_papers_equations() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = random(&mut rng, &[5, 4], 1.0);
    for (setup, levels) in [(small(), 2), (deep(), 3)] {
        let mut params = Params::new();
        let model = ple(&setup, &mut params, true, (2, 1), 8);
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let got = model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
        let layer = |prefix: String, x| affine(&bound, &params, &prefix, x);
        // h_t^l = Σ softmax(W_t^l h_t^{l-1}) · [E_s,k(h_s^{l-1}) ; E_t,k(h_t^{l-1})],
        // h_s^l = Σ softmax(W_s^l h_s^{l-1}) · [E_s,k(h_s^{l-1}) ; E_t,k(h_t^{l-1}) for every t].
        let x = tape.constant(x.clone());
        let (mut h_a, mut h_b, mut h_s) = (x, x, x);
        for l in 0..levels {
            let s: Vec<Var<'_>> =
                (0..2).map(|k| layer(format!("experts_shared.{k}.{l}"), h_s).tanh()).collect();
            let e_a = layer(format!("experts_specific.a.0.{l}"), h_a).tanh();
            let e_b = layer(format!("experts_specific.b.0.{l}"), h_b).tanh();
            let g_a = layer(format!("gate_specific.a.{l}"), h_a).softmax(1);
            let g_b = layer(format!("gate_specific.b.{l}"), h_b).softmax(1);
            if l + 1 < levels {
                let g_s = layer(format!("gate_shared.{l}"), h_s).softmax(1);
                h_s = by_hand_mix(g_s, &[s[0], s[1], e_a, e_b]);
            } else {
                assert!(
                    params.id(&format!("gate_shared.{l}.weight")).is_none(),
                    "the last level is a CGC"
                );
            }
            (h_a, h_b) =
                (by_hand_mix(g_a, &[s[0], s[1], e_a]), by_hand_mix(g_b, &[s[0], s[1], e_b]));
        }
        let want = [layer("heads.a".into(), h_a), layer("heads.b".into(), h_b)];
        for (t, w) in want.iter().enumerate() {
            let d = max_diff(&got.outputs[t].value(), &w.value());
            assert!(d < 1e-6, "{levels} levels, task {t}: off by {d}");
        }
    }
}

#[test]
fn mtan_follows_its_equations() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = random(&mut rng, &[5, 4], 1.0);
    let mut params = Params::new();
    let model = mtan(&small(), &mut params, 10);
    assert_eq!(params.get(params.id("attention.a.0.weight").unwrap()).shape(), [5, 5]);
    assert_eq!(params.get(params.id("attention.a.1.weight").unwrap()).shape(), [3, 6]);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let got = model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
    let layer = |prefix: &str, x| affine(&bound, &params, prefix, x);
    // p_0 = S_0(x), p_1 = S_1(p_0); â_0 = σ(A_0 p_0) ⊙ p_0; â_1 = σ(A_1 [p_1 ; S_1(â_0)]) ⊙ p_1.
    let p0 = layer("trunk.0", tape.constant(x)).tanh();
    let p1 = layer("trunk.1", p0).tanh();
    for (t, task) in ["a", "b"].iter().enumerate() {
        let a0 = layer(&format!("attention.{task}.0"), p0).sigmoid() * p0;
        let f1 = layer("trunk.1", a0).tanh();
        let a1 = layer(&format!("attention.{task}.1"), Var::concat(&[p1, f1], 1)).sigmoid() * p1;
        let want = layer(&format!("heads.{task}"), a1).value();
        assert!(max_diff(&got.outputs[t].value(), &want) < 1e-6, "task {task}");
    }
    // On feature maps the mask is a 1 × 1 convolution: [C, C] at stage 0, [C, 2C] after.
    let (_, _, conv) = conv_models().remove(2);
    assert_eq!(conv.get(conv.id("attention.a.0.weight").unwrap()).shape(), [2, 2, 1, 1]);
    assert_eq!(conv.get(conv.id("attention.a.1.weight").unwrap()).shape(), [3, 6]);
}

#[test]
fn mmoe_with_one_expert_is_hard_sharing_with_that_expert() {
    let setup = small();
    let mut params = Params::new();
    let model = mmoe(&setup, &mut params, 1, 11);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut hard_params = Params::new();
    let mut b =
        HardSharing::builder(joined(stages(&mut hard_params, "trunk", &setup.dims, &mut rng)));
    for t in 0..2 {
        b = b.head(setup.tasks[t].0.clone(), head(&mut hard_params, &setup, t, &mut rng));
    }
    let hard = b.build(&hard_params).unwrap();
    // The same values: trunk.* is the expert experts_shared.0.*, the heads are the heads.
    for id in hard_params.ids() {
        let name = hard_params.name(id).replace("trunk.", "experts_shared.0.");
        let value = params.get(params.id(&name).unwrap()).clone();
        hard_params.set(id, value).unwrap();
    }
    let x = random(&mut rng, &[7, 4], 1.0);
    let run = |model: &dyn MultiTaskModel, params: &Params| {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let out = model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
        out.outputs.iter().map(|o| o.value().to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(run(&model, &params), run(&hard, &hard_params), "exactly");
}

#[test]
fn cgc_without_task_experts_is_mmoe() {
    let setup = small();
    let mut mmoe_params = Params::new();
    let mixture = mmoe(&setup, &mut mmoe_params, 3, 13);
    let mut params = Params::new();
    let cgc = ple(&setup, &mut params, false, (3, 0), 14);
    // The same names (experts_shared.k.*, gate_specific.<t>.0.*, heads.<t>.*): copy the values.
    assert_eq!(params.len(), mmoe_params.len());
    for id in params.ids() {
        let value = mmoe_params.get(mmoe_params.id(params.name(id)).unwrap()).clone();
        params.set(id, value).unwrap();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let x = random(&mut rng, &[7, 4], 1.0);
    let run = |model: &dyn MultiTaskModel, params: &Params| {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let out = model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
        out.outputs.iter().map(|o| o.value().to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(run(&cgc, &params), run(&mixture, &mmoe_params));
    assert_eq!(cgc.shared_params(), mixture.shared_params());
}

/// The forward pass with the gates (or masks) it computed.
trait Traced {
    fn traced<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>);
}

impl Traced for Mmoe {
    fn traced<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>) {
        self.forward_with_gates(x, ctx)
    }
}

impl Traced for Ple {
    fn traced<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>) {
        self.forward_with_gates(x, ctx)
    }
}

impl Traced for Mtan {
    fn traced<'t>(
        &self,
        x: Var<'t>,
        ctx: &mut Ctx<'_, 't>,
    ) -> (ModelOutput<'t>, Vec<(String, Var<'t>)>) {
        self.forward_with_masks(x, ctx)
    }
}

/// The outputs and the gates (or masks) on `x`, flattened and joined, with the parameters
/// bound to `vars`.
fn traced_of<'t>(
    model: &dyn Traced,
    params: &Params,
    x: &Tensor,
    tape: &'t Tape,
    vars: &[Var<'t>],
) -> Var<'t> {
    let bound = Bound::from_vars(params, vars.to_vec()).unwrap();
    let (out, traced) = model.traced(tape.constant(x.clone()), &mut Ctx::train(&bound));
    let flat: Vec<Var<'t>> = (out.outputs.iter().chain(traced.iter().map(|(_, v)| v)))
        .map(|v| v.reshape(&[v.shape().iter().product()]))
        .collect();
    Var::concat(&flat, 0)
}

/// The gradients of the outputs, gates and masks with respect to every parameter against finite
/// differences, with a tolerance shown to reject a 1% error; and a gradient for every
/// parameter. The gates and masks are checked too: the lowest levels reach the outputs through
/// chains of softmax and sigmoid slopes, and their gradients on the outputs alone sit near
/// f32's rounding in the differences.
#[test]
fn gradients_reach_every_expert_gate_and_attention_layer() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let x = random(&mut rng, &[3, 4], 1.0);
    let setup = small();
    let mut cases: Vec<(&str, Box<dyn Traced>, Params)> = Vec::new();
    let mut p = Params::new();
    cases.push(("mmoe", Box::new(mmoe(&setup, &mut p, 2, 17)), p));
    let mut p = Params::new();
    cases.push(("cgc", Box::new(ple(&setup, &mut p, false, (1, 1), 17)), p));
    let mut p = Params::new();
    cases.push(("ple", Box::new(ple(&setup, &mut p, true, (1, 1), 17)), p));
    let mut p = Params::new();
    cases.push(("ple, three levels", Box::new(ple(&deep(), &mut p, true, (1, 1), 18)), p));
    let mut p = Params::new();
    cases.push(("mtan", Box::new(mtan(&setup, &mut p, 17)), p));
    // A step of 5e-2 (relative): the fourth-order difference's truncation stays far below the
    // tolerance at this size, while f32's rounding in the forward values, divided by the step,
    // shrinks fivefold from the default 1e-2.
    let options = GradcheckOptions { step: 5e-2, ..GradcheckOptions::default() };
    for (name, model, params) in &cases {
        let inputs: Vec<Tensor> = params.ids().iter().map(|&id| params.get(id).clone()).collect();
        let report = gradcheck(
            |tape, vars| traced_of(model.as_ref(), params, &x, tape, vars),
            &inputs,
            &options,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let off: Vec<Tensor> = report.analytic.iter().map(|g| g.map(|v| v * 1.01)).collect();
        let numeric =
            NumericGradients { values: report.numeric.clone(), noise: report.noise.clone() };
        assert!(compare(&off, &numeric, &options).is_err(), "{name}: a 1% error passes");
        for (id, g) in params.ids().iter().zip(&report.analytic) {
            assert!(
                g.as_slice().iter().any(|v| v.abs() > 1e-6),
                "{name}: no gradient reaches `{}`",
                params.name(*id)
            );
        }
    }
}

#[test]
fn the_shared_parameters_are_exactly_those_several_tasks_reach() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let x = random(&mut rng, &[5, 4], 1.0);
    let mut cases = all(&small(), 20);
    let mut p = Params::new();
    cases.push(("ple, three levels", Box::new(ple(&deep(), &mut p, true, (2, 2), 21)), p));
    for (name, model, params) in &cases {
        let shared = model.shared_params();
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let out = model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
        let reached: Vec<Vec<bool>> = out
            .outputs
            .iter()
            .map(|o| {
                let r = tape.constant(random(&mut rng, &o.shape(), 1.0));
                let grads = tape.grad((*o * r).sum_all(), bound.all_vars());
                (bound.all_vars().iter())
                    .map(|&v| grads.get(v).is_some_and(|g| g.as_slice().iter().any(|&e| e != 0.0)))
                    .collect()
            })
            .collect();
        for id in params.ids() {
            let tasks = reached.iter().filter(|r| r[id.index()]).count();
            let want = if shared.contains(&id) { 2 } else { 1 };
            assert_eq!(tasks, want, "{name}: `{}` reached by {tasks} tasks", params.name(id));
        }
        let mut unique = shared.clone();
        unique.sort_by_key(|id| id.index());
        unique.dedup();
        assert_eq!(unique.len(), shared.len(), "{name}: repeated shared parameters");
    }
}

#[derive(Default)]
struct Losses(Vec<Vec<f64>>);

impl Observer for Losses {
    fn on_step(&mut self, r: &StepReport) {
        self.0.push(r.losses.clone());
    }
}

/// The GradNorm toy at a small size: 8 inputs, two tasks of 3 outputs, scales 1 and 3.
fn toy() -> tapestry_data::Splits {
    gradnorm_toy(&GradNormToyConfig {
        sigmas: vec![1.0, 3.0],
        input_dim: 8,
        output_dim: 3,
        train: 256,
        test: 32,
        ..GradNormToyConfig::default()
    })
}

fn toy_setup() -> Setup {
    Setup {
        dims: vec![8, 16, 8],
        tasks: vec![(TaskSpec::regression("task0", 3), 3), (TaskSpec::regression("task1", 3), 3)],
    }
}

/// Trains `model` for `epochs` with EW and Adam; the per-step losses.
fn train(
    model: &dyn MultiTaskModel,
    params: &mut Params,
    epochs: usize,
    seed: u64,
) -> Vec<Vec<f64>> {
    let data = toy();
    let config = TrainerConfig { epochs, batch_size: 64, seed, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(config, Adam::new(0.01), EqualWeighting);
    let mut losses = Losses::default();
    trainer.fit(model, params, &data.train, None, &mut losses).unwrap();
    losses.0
}

#[test]
fn each_architecture_learns_the_gradnorm_toy() {
    for (name, model, mut params) in all(&toy_setup(), 22) {
        let losses = train(model.as_ref(), &mut params, 40, 0);
        let mean = |steps: &[Vec<f64>], t: usize| steps.iter().map(|l| l[t]).sum::<f64>() / 4.0;
        for t in 0..2 {
            let (first, last) = (mean(&losses[..4], t), mean(&losses[losses.len() - 4..], t));
            assert!(last < 0.4 * first, "{name}, task {t}: {first} -> {last}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for ((name, a, mut pa), (_, b, mut pb)) in
        all(&toy_setup(), 23).into_iter().zip(all(&toy_setup(), 23))
    {
        let (la, lb) = (train(a.as_ref(), &mut pa, 2, 5), train(b.as_ref(), &mut pb, 2, 5));
        assert_eq!(la, lb, "{name}");
        for id in pa.ids() {
            assert_eq!(pa.get(id), pb.get(id), "{name}: {}", pa.name(id));
        }
        assert_eq!(a.diagnostics(), b.diagnostics(), "{name}");
        let (c, mut pc) = all(&toy_setup(), 24)
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, m, p)| (m, p))
            .unwrap();
        assert_ne!(train(c.as_ref(), &mut pc, 2, 5), la, "{name}: another seed, the same run");
    }
}

#[test]
fn the_diagnostics_are_the_last_training_batchs_mean_gates_and_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let (x, other) = (random(&mut rng, &[6, 4], 2.0), random(&mut rng, &[6, 4], 2.0));
    for (name, model, params) in all(&small(), 26) {
        assert!(model.diagnostics().is_empty(), "{name}: nothing before a training pass");
        let tape = Tape::new();
        let bound = params.bind(&tape);
        model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
        let logged = model.diagnostics();
        model.forward(tape.constant(other.clone()), &mut Ctx::eval(&bound));
        assert_eq!(model.diagnostics(), logged, "{name}: an evaluation pass changes nothing");
        let names: Vec<&str> = logged.iter().map(|(n, _)| n.as_str()).collect();
        match name {
            "mtan" => {
                assert_eq!(names, ["mtan.mask.a", "mtan.mask.b"]);
                assert!(logged
                    .iter()
                    .all(|(_, v)| v.len() == 2 && v.iter().all(|&m| m > 0.0 && m < 1.0)));
            }
            _ => {
                let prefix =
                    if name == "ple" { "ple.gate.a.0" } else { &*format!("{name}.gate.a") };
                assert_eq!(names[0], prefix, "{name}: {names:?}");
                for (n, means) in &logged {
                    let sum: f64 = means.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-6, "{name}: {n} {means:?}");
                }
            }
        }
    }
    // They are the batch means of that pass's gates.
    let mut params = Params::new();
    let model = mmoe(&small(), &mut params, 3, 29);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    model.forward(tape.constant(x.clone()), &mut Ctx::train(&bound));
    let logged = model.diagnostics();
    let (_, gates) = model.forward_with_gates(tape.constant(x.clone()), &mut Ctx::eval(&bound));
    for ((_, means), (_, g)) in logged.iter().zip(&gates) {
        let g = g.value();
        for (k, mean) in means.iter().enumerate() {
            let column: f64 = (0..6).map(|i| g.as_slice()[i * 3 + k] as f64).sum::<f64>() / 6.0;
            assert!((mean - column).abs() < 1e-9, "{mean} vs {column}");
        }
    }
    assert_eq!(logged.len(), 2);
}

#[test]
fn the_methods_that_need_one_shared_representation_are_refused() {
    for (name, model, params) in all(&small(), 27) {
        for method in ["mgda-ub", "graddrop"] {
            let method = weighting::by_name(method, &MethodOptions::default()).unwrap();
            let e = TrainStep::new(&model, &params, method.as_ref(), StepOptions::default())
                .unwrap_err();
            assert!(
                e.to_string().contains(&format!(
                    "method `{}` works at a representation shared by every task, and this model has one per task",
                    method.name()
                )),
                "{name}: {e}"
            );
        }
        // The methods on the shared parameters run: the experts or the backbone are shared.
        assert!(TrainStep::new(&model, &params, &Mgda::default(), StepOptions::default()).is_ok());
        assert!(TrainStep::new(&model, &params, &EqualWeighting, StepOptions::default()).is_ok());
    }
}

/// `[B, 6]` to `[B, 2, 3]`: a stage whose output MTAN cannot mask.
#[derive(Debug)]
struct ToThreeAxes;

impl Module for ToThreeAxes {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.reshape(&[x.shape()[0], 2, 3])
    }
}

#[test]
fn the_builders_refuse_what_cannot_be_built() {
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    let spec = || TaskSpec::regression("a", 1);
    let err = |r: Result<(), tapestry_mtl::MtlError>| r.unwrap_err().to_string();
    // MMoE: no input shape, no expert, experts of different output shapes, a misnamed expert.
    let mut p = Params::new();
    let e = joined(stages(&mut p, "experts_shared.0", &[4, 3], &mut rng));
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Mmoe::builder().expert(e).head(spec(), h);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ())).contains("give the input shape"));
    let mut p = Params::new();
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Mmoe::builder().head(spec(), h).input_shape(&[4]);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ())).contains("at least one expert"));
    let mut p = Params::new();
    let e0 = joined(stages(&mut p, "experts_shared.0", &[4, 3], &mut rng));
    let e1 = joined(stages(&mut p, "experts_shared.1", &[4, 2], &mut rng));
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Mmoe::builder().expert(e0).expert(e1).head(spec(), h).input_shape(&[4]);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ())).contains(
        "the shared experts must give outputs of one shape: expert 0 gives [3], expert 1 [2]"
    ));
    let mut p = Params::new();
    let e = joined(stages(&mut p, "experts.0", &[4, 3], &mut rng));
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Mmoe::builder().expert(e).head(spec(), h).input_shape(&[4]);
    assert!(
        err(b.build(&mut p, &mut rng).map(|_| ())).contains("is not named `experts_shared.0.*`")
    );
    // PLE: experts of different depths; a task expert no task lists.
    let mut p = Params::new();
    let s = stages(&mut p, "experts_shared.0", &[4, 3, 3], &mut rng);
    let own = vec![stages(&mut p, "experts_specific.a.0", &[4, 3], &mut rng)];
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Ple::builder().shared_expert(s).task(spec(), own, h).input_shape(&[4]);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ())).contains("the same number of stages"));
    let mut p = Params::new();
    let s = stages(&mut p, "experts_shared.0", &[4, 3], &mut rng);
    let _stray = stages(&mut p, "experts_specific.b.0", &[4, 3], &mut rng);
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Ple::builder().shared_expert(s).task(spec(), Vec::new(), h).input_shape(&[4]);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ()))
        .contains("`experts_specific.b.0.0.weight` is registered under `experts_specific.`"));
    // MTAN: no input shape; a stage it cannot mask.
    let mut p = Params::new();
    let s = stages(&mut p, "trunk", &[4, 6], &mut rng);
    let h = Linear::new(&mut p, "heads.a", 6, 1, &mut rng).unwrap();
    let b = Mtan::builder(s).head(spec(), h);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ())).contains("from the input shape"));
    let mut p = Params::new();
    let mut s = stages(&mut p, "trunk", &[4, 6], &mut rng);
    s.push(Box::new(ToThreeAxes));
    let h = Linear::new(&mut p, "heads.a", 3, 1, &mut rng).unwrap();
    let b = Mtan::builder(s).head(spec(), h).input_shape(&[4]);
    assert!(err(b.build(&mut p, &mut rng).map(|_| ()))
        .contains("MTAN's stage 1 gives samples of shape [2, 3]; its masks need [C] or [C, H, W]"));
}
