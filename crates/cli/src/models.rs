//! Model presets: an MLP, a small conv net, the LeNet of Pareto MTL and the three-head
//! MultiTaskNet, each checked against the data set's sample shape and tasks *before* any layer
//! is built, so that no shape a user can choose reaches a shape panic of the autodiff engine.
//!
//! A preset is a trunk in stages and a head per task. The architecture (`--arch`) decides how
//! the trunk is used: once, shared by every task (`hard`, under `trunk.`); once per task, coupled
//! by a penalty (`soft`, under `towers.<task>.`); or once per task with cross-stitch units
//! between the stages (`cross-stitch`); as the experts of a mixture (`mmoe`, `cgc`, `ple`, under
//! `experts_shared.<k>.` and `experts_specific.<task>.<k>.`, PLE with a level per stage); or
//! once, with an attention mask per task after every stage (`mtan`). The structure-encoding
//! penalties (trace norm, task relations) wrap any of them.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_data::{TaskKind, TaskSpec};
use tapestry_mtl::model::{
    CrossStitch, HardSharing, Mmoe, Mtan, MultiTaskModel, Ple, Regularized, Regularizer,
    SoftSharing,
};
use tapestry_nn::{
    Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, Module, Params, Relu, Sequential, Upsample2,
};

use crate::config::RunConfig;
use crate::error::Result;
use crate::invalid;

/// A `c_in → c_out` convolution with a `k × k` kernel, stride 1 and `padding` on each side, with
/// PyTorch's default initialisation.
fn conv(
    params: &mut Params,
    name: &str,
    (c_in, c_out, k, padding): (usize, usize, usize, usize),
    rng: &mut ChaCha8Rng,
) -> Result<Conv2d> {
    Ok(Conv2d::new(params, name, c_in, c_out, (k, k), rng)?.padding((padding, padding)))
}

/// 2 × 2 max pooling with stride 2.
fn pool2() -> MaxPool2d {
    MaxPool2d::new((2, 2))
}

/// A model, its parameters and a one-line description.
#[derive(Debug)]
pub struct BuiltModel {
    /// The model.
    pub model: Box<dyn MultiTaskModel>,
    /// Its parameters.
    pub params: Params,
    /// The preset's name.
    pub preset: String,
    /// A short description of the architecture.
    pub description: String,
}

/// The preset `auto` stands for on `dataset`.
pub fn resolve_preset(model: &str, dataset: &str) -> String {
    match (model, dataset) {
        ("auto", "multifashion") => "lenet".into(),
        ("auto", "scenes") => "multitasknet".into(),
        ("auto", _) => "mlp".into(),
        (m, _) => m.into(),
    }
}

fn describe(sample: &[usize]) -> String {
    format!("{sample:?}")
}

/// The image shape `[C, H, W]` of the samples, or an error naming the preset.
fn image(preset: &str, sample: &[usize]) -> Result<(usize, usize, usize)> {
    match *sample {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok((c, h, w)),
        _ => Err(invalid!(
            "model `{preset}` needs image samples [C, H, W], but the data set's samples have shape {}",
            describe(sample)
        )),
    }
}

/// The output size of the heads of a vector representation, or an error for per-pixel tasks.
fn vector_outputs(preset: &str, tasks: &[TaskSpec]) -> Result<Vec<usize>> {
    tasks
        .iter()
        .map(|t| match t.kind {
            TaskKind::Classification { classes } => Ok(classes),
            TaskKind::Regression { dim } => Ok(dim),
            _ => Err(invalid!(
                "model `{preset}` cannot predict the per-pixel task `{}`; use --model multitasknet",
                t.name
            )),
        })
        .collect()
}

/// What a trunk hands the heads.
#[derive(Clone, Copy, Debug)]
enum Representation {
    /// `[B, width]`.
    Vector(usize),
    /// `[B, 32, H/2, W/2]` feature maps (MultiTaskNet).
    Maps,
}

/// A preset's trunk in stages, every layer named `{prefix}.{index}` (one index sequence over
/// all stages, so a hard-sharing checkpoint reads `trunk.0.weight`, `trunk.3.weight`, ...), and
/// the name of its last weight (the layer that makes the representation).
struct Trunk {
    stages: Vec<Sequential>,
    rep: Representation,
    last_weight: String,
    description: String,
}

fn trunk(
    preset: &str,
    prefix: &str,
    p: &mut Params,
    sample: &[usize],
    config: &RunConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Trunk> {
    let name = |i: usize| format!("{prefix}.{i}");
    Ok(match preset {
        "mlp" => {
            let features: usize = sample.iter().product();
            let h = config.hidden;
            Trunk {
                stages: vec![
                    Sequential::new()
                        .push(Flatten)
                        .push(Linear::new(p, &name(1), features, 2 * h, rng)?)
                        .push(Relu),
                    Sequential::new().push(Linear::new(p, &name(3), 2 * h, h, rng)?).push(Relu),
                ],
                rep: Representation::Vector(h),
                last_weight: "3.weight".into(),
                description: format!("MLP {features} → {} → {h}, linear heads", 2 * h),
            }
        }
        "conv" => {
            let (c, h, w) = image(preset, sample)?;
            if h < 4 || w < 4 {
                return Err(invalid!(
                    "model `conv` needs images of at least 4x4 pixels, got {}",
                    describe(sample)
                ));
            }
            let flat = 32 * (h / 2 / 2) * (w / 2 / 2);
            let width = config.hidden;
            Trunk {
                stages: vec![
                    Sequential::new().push(conv(p, &name(0), (c, 16, 3, 1), rng)?).push(Relu).push(pool2()),
                    Sequential::new().push(conv(p, &name(3), (16, 32, 3, 1), rng)?).push(Relu).push(pool2()),
                    Sequential::new().push(Flatten).push(Linear::new(p, &name(7), flat, width, rng)?).push(Relu),
                ],
                rep: Representation::Vector(width),
                last_weight: "7.weight".into(),
                description: format!("conv {c}→16 k3, pool, conv 16→32 k3, pool, linear {flat}→{width}, linear heads"),
            }
        }
        "lenet" => {
            let (c, h, w) = image(preset, sample)?;
            // conv k9 (−8), pool /2, conv k5 (−4), pool /2: the sides must stay >= 1.
            let side =
                |s: usize| (s >= 9).then(|| (s - 8) / 2).filter(|&s| s >= 6).map(|s| (s - 4) / 2);
            let (Some(oh), Some(ow)) = (side(h), side(w)) else {
                return Err(invalid!(
                    "model `lenet` needs images of at least 20x20 pixels (a 9x9 and a 5x5 kernel, two poolings), got {}",
                    describe(sample)
                ));
            };
            let flat = 20 * oh * ow;
            Trunk {
                stages: vec![
                    Sequential::new().push(conv(p, &name(0), (c, 10, 9, 0), rng)?).push(pool2()).push(Relu),
                    Sequential::new().push(conv(p, &name(3), (10, 20, 5, 0), rng)?).push(pool2()).push(Relu),
                    Sequential::new().push(Flatten).push(Linear::new(p, &name(7), flat, 50, rng)?).push(Relu),
                ],
                rep: Representation::Vector(50),
                last_weight: "7.weight".into(),
                description: format!("LeNet: conv {c}→10 k9, pool, conv 10→20 k5, pool, linear {flat}→50, heads 50→classes"),
            }
        }
        "multitasknet" => {
            let (c, h, w) = image(preset, sample)?;
            if h % 2 != 0 || w % 2 != 0 || h < 2 || w < 2 {
                return Err(invalid!(
                    "model `multitasknet` needs images with even sides, got {}",
                    describe(sample)
                ));
            }
            Trunk {
                stages: vec![
                    Sequential::new().push(conv(p, &name(0), (c, 16, 3, 1), rng)?).push(Relu).push(pool2()),
                    Sequential::new().push(conv(p, &name(3), (16, 32, 3, 1), rng)?).push(Relu),
                ],
                rep: Representation::Maps,
                last_weight: "3.weight".into(),
                description: format!(
                    "MultiTaskNet: encoder conv {c}→16 k3, pool, conv 16→32 k3; image heads avg-pool + linear, pixel heads conv 32→16 k3, upsample x2, conv 1x1"
                ),
            }
        }
        other => return Err(invalid!("unknown model `{other}`")),
    })
}

/// Task `task`'s head on the representation `rep`, under `heads.<task>.`.
fn head(
    preset: &str,
    p: &mut Params,
    task: &TaskSpec,
    rep: Representation,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Module>> {
    let name = format!("heads.{}", task.name);
    Ok(match rep {
        Representation::Vector(width) => {
            let out = vector_outputs(preset, std::slice::from_ref(task))?[0];
            Box::new(Linear::new(p, &name, width, out, rng)?)
        }
        Representation::Maps => {
            let pixel_head =
                |p: &mut Params, out: usize, rng: &mut ChaCha8Rng| -> Result<Box<dyn Module>> {
                    Ok(Box::new(
                        Sequential::new()
                            .push(conv(p, &format!("{name}.0"), (32, 16, 3, 1), rng)?)
                            .push(Relu)
                            .push(Upsample2)
                            .push(conv(p, &format!("{name}.3"), (16, out, 1, 0), rng)?),
                    ))
                };
            match task.kind {
                TaskKind::Classification { classes: out } | TaskKind::Regression { dim: out } => {
                    Box::new(Sequential::new().push(GlobalAvgPool).push(Linear::new(
                        p,
                        &format!("{name}.1"),
                        32,
                        out,
                        rng,
                    )?))
                }
                TaskKind::PixelClassification { classes, .. } => pixel_head(p, classes, rng)?,
                TaskKind::PixelRegression => pixel_head(p, 1, rng)?,
            }
        }
    })
}

/// A copy of the preset's trunk per task (under `towers.<task>.`) with its head.
struct Towers {
    per_task: Vec<(Vec<Sequential>, Box<dyn Module>)>,
    description: String,
    last_weight: String,
}

fn towers(
    what: &str,
    preset: &str,
    p: &mut Params,
    sample: &[usize],
    tasks: &[TaskSpec],
    config: &RunConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Towers> {
    if tasks.len() < 2 {
        return Err(invalid!(
            "--arch {what} the towers of several tasks, but the data set has one task"
        ));
    }
    let mut out =
        Towers { per_task: Vec::new(), description: String::new(), last_weight: String::new() };
    for task in tasks {
        let t = trunk(preset, &format!("towers.{}", task.name), p, sample, config, rng)?;
        let h = head(preset, p, task, t.rep, rng)?;
        out.per_task.push((t.stages, h));
        (out.description, out.last_weight) = (t.description, t.last_weight);
    }
    Ok(out)
}

/// Stages joined into one sequence.
fn joined(stages: Vec<Sequential>) -> Sequential {
    stages.into_iter().fold(Sequential::new(), |s, stage| s.push(stage))
}

/// `count` copies of the preset's trunk as experts, copy `k` under `{prefix}.{k}.`: each one's
/// stages, with the representation and description of one copy.
struct Experts {
    stages: Vec<Vec<Sequential>>,
    rep: Option<Representation>,
    description: String,
}

fn experts(
    preset: &str,
    prefix: &str,
    count: usize,
    p: &mut Params,
    sample: &[usize],
    config: &RunConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Experts> {
    let mut out = Experts { stages: Vec::new(), rep: None, description: String::new() };
    for k in 0..count {
        let t = trunk(preset, &format!("{prefix}.{k}"), p, sample, config, rng)?;
        out.stages.push(t.stages);
        (out.rep, out.description) = (Some(t.rep), t.description);
    }
    Ok(out)
}

/// An expert as CGC (one stage, the whole trunk) or PLE (a level per stage) takes it.
fn expert_levels(stages: Vec<Sequential>, per_stage: bool) -> Vec<Box<dyn Module>> {
    if per_stage {
        stages.into_iter().map(|s| Box::new(s) as Box<dyn Module>).collect()
    } else {
        vec![Box::new(joined(stages))]
    }
}

/// Builds the preset and architecture of `config` for samples of shape `sample` and the given
/// tasks, after checking that they fit.
pub fn build_model(config: &RunConfig, sample: &[usize], tasks: &[TaskSpec]) -> Result<BuiltModel> {
    // With one input per task, `auto` is the MLP, whatever the data sets.
    let dataset = if config.multi_input.is_empty() { config.dataset.as_str() } else { "" };
    let preset = resolve_preset(&config.model, dataset);
    if tasks.is_empty() {
        return Err(invalid!("the data set has no task"));
    }
    if sample.contains(&0) || sample.is_empty() {
        return Err(invalid!("the data set's samples have an empty shape {}", describe(sample)));
    }
    // Per-pixel tasks need the feature-map trunk; a vector trunk cannot feed them.
    if preset != "multitasknet" {
        vector_outputs(&preset, tasks)?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(0x5EED));
    let mut params = Params::new();
    let p = &mut params;
    let (model, description, last_weight): (Box<dyn MultiTaskModel>, String, String) = match config
        .arch
        .as_str()
    {
        "hard" => {
            let t = trunk(&preset, "trunk", p, sample, config, &mut rng)?;
            let mut b = HardSharing::builder(joined(t.stages));
            for task in tasks {
                b = b.head(task.clone(), head(&preset, p, task, t.rep, &mut rng)?);
            }
            let model = b.input_shape(sample).build(p)?;
            (Box::new(model), t.description, "weight".into())
        }
        "soft" => {
            let towers = towers("soft couples", &preset, p, sample, tasks, config, &mut rng)?;
            let mut b = SoftSharing::builder(config.soft_lambda as f32);
            let layers: Vec<&str> = config.soft_layers.iter().map(String::as_str).collect();
            if !layers.is_empty() {
                b = b.coupled_layers(&layers);
            }
            for (task, (stages, h)) in tasks.iter().zip(towers.per_task) {
                b = b.task(task.clone(), joined(stages), h);
            }
            let model = b.input_shape(sample).build(p)?;
            let description = format!(
                "soft sharing (λ = {}): a tower per task, {}",
                config.soft_lambda, towers.description
            );
            (Box::new(model), description, towers.last_weight)
        }
        "cross-stitch" => {
            let towers = towers("cross-stitch mixes", &preset, p, sample, tasks, config, &mut rng)?;
            let mut b = CrossStitch::builder();
            for (task, (stages, h)) in tasks.iter().zip(towers.per_task) {
                let stages = stages.into_iter().map(|s| Box::new(s) as Box<dyn Module>).collect();
                b = b.task(task.clone(), stages, h);
            }
            let model = b.input_shape(sample).build(p)?;
            let description = format!(
                "cross-stitch: a tower per task, units between stages, {}",
                towers.description
            );
            (Box::new(model), description, towers.last_weight)
        }
        "mmoe" => {
            let shared =
                experts(&preset, "experts_shared", config.experts, p, sample, config, &mut rng)?;
            let rep = shared.rep.expect("at least one expert");
            let mut b = Mmoe::builder();
            for stages in shared.stages {
                b = b.expert(joined(stages));
            }
            for task in tasks {
                b = b.head(task.clone(), head(&preset, p, task, rep, &mut rng)?);
            }
            let model = b.input_shape(sample).build(p, &mut rng)?;
            let description = format!(
                "MMoE: {} experts mixed by a softmax gate per task on the input; each expert {}",
                config.experts, shared.description
            );
            (Box::new(model), description, "weight".into())
        }
        "cgc" | "ple" => {
            let per_stage = config.arch == "ple";
            let shared =
                experts(&preset, "experts_shared", config.experts, p, sample, config, &mut rng)?;
            let rep = shared.rep.expect("at least one expert");
            let levels = if per_stage { shared.stages[0].len() } else { 1 };
            let mut b = Ple::builder();
            for stages in shared.stages {
                b = b.shared_expert(expert_levels(stages, per_stage));
            }
            for task in tasks {
                let prefix = format!("experts_specific.{}", task.name);
                let own =
                    experts(&preset, &prefix, config.task_experts, p, sample, config, &mut rng)?;
                let own = own.stages.into_iter().map(|s| expert_levels(s, per_stage)).collect();
                b = b.task(task.clone(), own, head(&preset, p, task, rep, &mut rng)?);
            }
            let model = b.input_shape(sample).build(p, &mut rng)?;
            let name = if per_stage {
                format!("PLE ({levels} levels, one per stage)")
            } else {
                "CGC".to_string()
            };
            let description = format!(
                "{name}: {} shared experts and {} per task, mixed by a softmax gate per task; each expert {}",
                config.experts, config.task_experts, shared.description
            );
            (Box::new(model), description, "weight".into())
        }
        "mtan" => {
            let t = trunk(&preset, "trunk", p, sample, config, &mut rng)?;
            let stages = t.stages.len();
            let mut b = Mtan::builder(
                t.stages.into_iter().map(|s| Box::new(s) as Box<dyn Module>).collect(),
            );
            for task in tasks {
                b = b.head(task.clone(), head(&preset, p, task, t.rep, &mut rng)?);
            }
            let model = b.input_shape(sample).build(p, &mut rng)?;
            let description = format!(
                "MTAN: a sigmoid attention mask per task on each of the {stages} stages of {}",
                t.description
            );
            (Box::new(model), description, "weight".into())
        }
        other => return Err(invalid!("unknown architecture `{other}`")),
    };
    let mut regularizers = Vec::new();
    let layer_or =
        |layer: &str| if layer.is_empty() { last_weight.clone() } else { layer.to_string() };
    if config.trace_norm > 0.0 {
        regularizers.push(Regularizer::TraceNorm {
            lambda: config.trace_norm as f32,
            layer: layer_or(&config.trace_norm_layer),
        });
    }
    if config.task_relation > 0.0 {
        regularizers.push(Regularizer::TaskRelation {
            lambda: config.task_relation as f32,
            layer: layer_or(&config.task_relation_layer),
            every: config.task_relation_every,
            eps: config.task_relation_eps,
        });
    }
    let (model, description): (Box<dyn MultiTaskModel>, String) = if regularizers.is_empty() {
        (model, description)
    } else {
        let names: Vec<String> = regularizers
            .iter()
            .map(|r| match r {
                Regularizer::TraceNorm { lambda, layer } => {
                    format!("trace norm λ = {lambda} on {layer}")
                }
                Regularizer::TaskRelation { lambda, layer, every, .. } => {
                    format!("task relations λ = {lambda} on {layer}, Ω every {every} steps")
                }
            })
            .collect();
        let description = format!("{description}; {}", names.join("; "));
        (Box::new(Regularized::new(model, &params, regularizers)?), description)
    };
    Ok(BuiltModel { model, params, preset, description })
}
