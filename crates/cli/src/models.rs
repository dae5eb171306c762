//! Model presets: an MLP, a small conv net, the LeNet of Pareto MTL and the three-head
//! MultiTaskNet, each checked against the data set's sample shape and tasks *before* any layer
//! is built, so that no shape a user can choose reaches a shape panic of the autodiff engine.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::Var;
use tapestry_data::{TaskKind, TaskSpec};
use tapestry_mtl::model::HardSharing;
use tapestry_nn::{Conv2d, Ctx, Linear, MaxPool2d, Module, Params, Relu, Sequential, Upsample2};

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

/// `[B, ...]` to `[B, F]`.
#[derive(Debug)]
pub struct Flatten;

impl Module for Flatten {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        let shape = x.shape();
        x.reshape(&[shape[0], shape[1..].iter().product()])
    }
}

/// `[B, C, H, W]` to `[B, C]`, the mean over each feature map.
#[derive(Debug)]
pub struct GlobalAvgPool;

impl Module for GlobalAvgPool {
    fn forward<'t>(&self, x: Var<'t>, _ctx: &mut Ctx<'_, 't>) -> Var<'t> {
        x.mean(&[2, 3], false)
    }
}

/// A model, its parameters and a one-line description.
#[derive(Debug)]
pub struct BuiltModel {
    /// The model.
    pub model: HardSharing,
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

/// Adds a linear head per task on a `[B, width]` representation.
fn linear_heads(
    mut builder: tapestry_mtl::model::HardSharingBuilder,
    params: &mut Params,
    tasks: &[TaskSpec],
    outputs: &[usize],
    width: usize,
    rng: &mut ChaCha8Rng,
) -> Result<tapestry_mtl::model::HardSharingBuilder> {
    for (task, &out) in tasks.iter().zip(outputs) {
        let head = Linear::new(params, &format!("heads.{}", task.name), width, out, rng)?;
        builder = builder.head(task.clone(), head);
    }
    Ok(builder)
}

/// Builds the preset of `config` for samples of shape `sample` and the given tasks, after
/// checking that it fits them.
pub fn build_model(config: &RunConfig, sample: &[usize], tasks: &[TaskSpec]) -> Result<BuiltModel> {
    let preset = resolve_preset(&config.model, &config.dataset);
    if tasks.is_empty() {
        return Err(invalid!("the data set has no task"));
    }
    if sample.contains(&0) || sample.is_empty() {
        return Err(invalid!("the data set's samples have an empty shape {}", describe(sample)));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(0x5EED));
    let mut params = Params::new();
    let p = &mut params;
    let (model, description) = match preset.as_str() {
        "mlp" => {
            let outputs = vector_outputs(&preset, tasks)?;
            let features: usize = sample.iter().product();
            let h = config.hidden;
            let trunk = Sequential::new()
                .push(Flatten)
                .push(Linear::new(p, "trunk.1", features, 2 * h, &mut rng)?)
                .push(Relu)
                .push(Linear::new(p, "trunk.3", 2 * h, h, &mut rng)?)
                .push(Relu);
            let b = linear_heads(HardSharing::builder(trunk), p, tasks, &outputs, h, &mut rng)?;
            (b, format!("MLP {features} → {} → {h}, linear heads", 2 * h))
        }
        "conv" => {
            let outputs = vector_outputs(&preset, tasks)?;
            let (c, h, w) = image(&preset, sample)?;
            if h < 4 || w < 4 {
                return Err(invalid!(
                    "model `conv` needs images of at least 4x4 pixels, got {}",
                    describe(sample)
                ));
            }
            let flat = 32 * (h / 2 / 2) * (w / 2 / 2);
            let width = config.hidden;
            let trunk = Sequential::new()
                .push(conv(p, "trunk.0", (c, 16, 3, 1), &mut rng)?)
                .push(Relu)
                .push(pool2())
                .push(conv(p, "trunk.3", (16, 32, 3, 1), &mut rng)?)
                .push(Relu)
                .push(pool2())
                .push(Flatten)
                .push(Linear::new(p, "trunk.7", flat, width, &mut rng)?)
                .push(Relu);
            let b = linear_heads(HardSharing::builder(trunk), p, tasks, &outputs, width, &mut rng)?;
            (b, format!("conv {c}→16 k3, pool, conv 16→32 k3, pool, linear {flat}→{width}, linear heads"))
        }
        "lenet" => {
            let outputs = vector_outputs(&preset, tasks)?;
            let (c, h, w) = image(&preset, sample)?;
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
            let trunk = Sequential::new()
                .push(conv(p, "trunk.0", (c, 10, 9, 0), &mut rng)?)
                .push(pool2())
                .push(Relu)
                .push(conv(p, "trunk.3", (10, 20, 5, 0), &mut rng)?)
                .push(pool2())
                .push(Relu)
                .push(Flatten)
                .push(Linear::new(p, "trunk.7", flat, 50, &mut rng)?)
                .push(Relu);
            let b = linear_heads(HardSharing::builder(trunk), p, tasks, &outputs, 50, &mut rng)?;
            (b, format!("LeNet: conv {c}→10 k9, pool, conv 10→20 k5, pool, linear {flat}→50, heads 50→classes"))
        }
        "multitasknet" => {
            let (c, h, w) = image(&preset, sample)?;
            if h % 2 != 0 || w % 2 != 0 || h < 2 || w < 2 {
                return Err(invalid!(
                    "model `multitasknet` needs images with even sides, got {}",
                    describe(sample)
                ));
            }
            let trunk = Sequential::new()
                .push(conv(p, "trunk.0", (c, 16, 3, 1), &mut rng)?)
                .push(Relu)
                .push(pool2())
                .push(conv(p, "trunk.3", (16, 32, 3, 1), &mut rng)?)
                .push(Relu);
            let mut b = HardSharing::builder(trunk);
            for task in tasks {
                let name = format!("heads.{}", task.name);
                let pixel_head =
                    |p: &mut Params, out: usize, rng: &mut ChaCha8Rng| -> Result<Sequential> {
                        Ok(Sequential::new()
                            .push(conv(p, &format!("{name}.0"), (32, 16, 3, 1), rng)?)
                            .push(Relu)
                            .push(Upsample2)
                            .push(conv(p, &format!("{name}.3"), (16, out, 1, 0), rng)?))
                    };
                b = match task.kind {
                    TaskKind::Classification { classes: out }
                    | TaskKind::Regression { dim: out } => {
                        let head = Sequential::new().push(GlobalAvgPool).push(Linear::new(
                            p,
                            &format!("{name}.1"),
                            32,
                            out,
                            &mut rng,
                        )?);
                        b.head(task.clone(), head)
                    }
                    TaskKind::PixelClassification { classes, .. } => {
                        b.head(task.clone(), pixel_head(p, classes, &mut rng)?)
                    }
                    TaskKind::PixelRegression => b.head(task.clone(), pixel_head(p, 1, &mut rng)?),
                };
            }
            (
                b,
                format!(
                    "MultiTaskNet: encoder conv {c}→16 k3, pool, conv 16→32 k3; image heads avg-pool + linear, pixel heads conv 32→16 k3, upsample x2, conv 1x1"
                ),
            )
        }
        other => return Err(invalid!("unknown model `{other}`")),
    };
    let model = model.input_shape(sample).build(&params)?;
    Ok(BuiltModel { model, params, preset, description })
}
