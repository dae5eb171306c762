//! The configuration of a run: what `tapestry train` takes from a TOML file or its options, and
//! what it stores as `config.toml` next to the checkpoint so `tapestry eval` can rebuild the
//! model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tapestry_data::{Column, CsvTargetKind, CsvTask};
use tapestry_mtl::gradnorm::GradNormConfig;
use tapestry_mtl::task_grads::GradMode;
use tapestry_mtl::weighting::{self, GradNormalization, MethodOptions, Weighting};
use tapestry_nn::optim::{Adam, AdamW, Optimizer, Sgd};

use crate::error::{CliError, Result};
use crate::invalid;

/// The weighting methods the command knows: the registry of `tapestry_mtl::weighting`.
pub fn method_names() -> Vec<&'static str> {
    weighting::method_names()
}
/// The architectures the command knows.
pub const ARCHS: [&str; 7] = ["hard", "soft", "cross-stitch", "mmoe", "cgc", "ple", "mtan"];
/// The optimizers the command knows.
pub const OPTIMIZERS: [&str; 3] = ["adam", "sgd", "adamw"];
/// The model presets the command knows; `auto` picks the data set's default.
pub const MODELS: [&str; 6] = ["auto", "mlp", "conv", "lenet", "multitasknet", "linear"];
/// The rules GradNorm's weights can follow: Adam (as in the paper) or plain gradient descent.
pub const GRADNORM_OPTIMIZERS: [&str; 2] = ["adam", "gd"];
/// The gradient normalisations of MGDA and MGDA-UB.
pub const NORMALIZATIONS: [&str; 4] = ["none", "l2", "loss", "loss+"];

/// Everything a training run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The data set: `multidigits`, `multifashion`, `scenes` or `csv`.
    pub dataset: String,
    /// The folder of `multifashion`, the file of `csv`.
    pub data_path: Option<PathBuf>,
    /// Use at most this many training and test samples (for quick runs).
    pub limit: Option<usize>,
    /// The tasks of a CSV table, each `COLUMN` or `COLUMN:KIND` (see [`parse_target`]); empty
    /// means one classification task on the last column.
    pub targets: Vec<String>,
    /// The model preset (see [`MODELS`]).
    pub model: String,
    /// The width of the MLP's hidden layers.
    pub hidden: usize,
    /// The architecture (see [`ARCHS`]): one shared trunk, a tower per task coupled by a
    /// penalty or by cross-stitch units, mixtures of experts, or attention masks.
    pub arch: String,
    /// MMoE's experts; CGC's and PLE's shared experts.
    pub experts: usize,
    /// CGC's and PLE's experts of each task.
    pub task_experts: usize,
    /// Soft sharing's λ in `λ Σ_{i≠j} ‖θ_i − θ_j‖²`.
    pub soft_lambda: f64,
    /// The tower layers soft sharing couples (`3.weight`, ...); empty means all.
    pub soft_layers: Vec<String>,
    /// The trace norm's λ on the stacked per-task copies of a layer; 0 is off.
    pub trace_norm: f64,
    /// The layer of the trace norm, named inside a tower or head; empty means the towers' last
    /// weight (the heads' weight with `hard`).
    pub trace_norm_layer: String,
    /// The task-relation (MTRL) penalty's λ; 0 is off.
    pub task_relation: f64,
    /// Steps between the closed-form updates of the task covariance Ω.
    pub task_relation_every: u64,
    /// The layer of the task-relation penalty (as for the trace norm).
    pub task_relation_layer: String,
    /// The ridge ε added to `(W Wᵀ)^{½}` in Ω's update.
    pub task_relation_eps: f64,
    /// The weighting method (see [`method_names`]).
    pub method: String,
    /// MGDA's and MGDA-UB's gradient normalisation (see [`NORMALIZATIONS`]).
    pub normalization: String,
    /// How per-task gradients on the shared parameters are computed: `param` or `batched`.
    pub grad_mode: String,
    /// GradNorm's asymmetry.
    pub gradnorm_alpha: f64,
    /// GradNorm's learning rate of the weights.
    pub gradnorm_lr: f64,
    /// How GradNorm's weights follow their gradient (see [`GRADNORM_OPTIMIZERS`]): `adam`, as in
    /// the paper, or `gd` (plain gradient descent).
    pub gradnorm_optimizer: String,
    /// Compute per-task gradient cosines on the shared parameters every step.
    pub cosines: bool,
    /// The optimizer (see [`OPTIMIZERS`]).
    pub optimizer: String,
    /// The learning rate.
    pub lr: f64,
    /// The number of epochs.
    pub epochs: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// The seed of the data, the initialisation and the batch order.
    pub seed: u64,
    /// Threads of the one rayon pool; 0 lets rayon choose (one per core).
    pub threads: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            dataset: "multidigits".into(),
            data_path: None,
            limit: None,
            targets: Vec::new(),
            model: "auto".into(),
            hidden: 128,
            arch: "hard".into(),
            experts: 4,
            task_experts: 1,
            soft_lambda: 1e-3,
            soft_layers: Vec::new(),
            trace_norm: 0.0,
            trace_norm_layer: String::new(),
            task_relation: 0.0,
            task_relation_every: 10,
            task_relation_layer: String::new(),
            task_relation_eps: 1e-6,
            method: "gradnorm".into(),
            normalization: "none".into(),
            grad_mode: "batched".into(),
            gradnorm_alpha: 1.5,
            gradnorm_lr: 0.025,
            gradnorm_optimizer: "adam".into(),
            cosines: true,
            optimizer: "adam".into(),
            lr: 2e-3,
            epochs: 25,
            batch_size: 64,
            seed: 0,
            threads: 0,
        }
    }
}

/// Checks that `value` is one of `known`, case-insensitively; returns it in lower case.
fn one_of(what: &str, value: &str, known: &[&str]) -> Result<String> {
    let lower = value.to_ascii_lowercase();
    if known.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(invalid!("unknown {what} `{value}`; expected one of {}", known.join(", ")))
    }
}

impl RunConfig {
    /// Reads a TOML configuration file; missing keys take their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| {
                    format!(" (line {})", text[..s.start.min(text.len())].lines().count().max(1))
                })
                .unwrap_or_default();
            invalid!("config file {}{line}: {}", path.display(), e.message().trim())
        })
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a run configuration always serialises")
    }

    /// Checks every value and normalises the names to lower case.
    pub fn validate(mut self) -> Result<Self> {
        self.dataset = one_of("data set", &self.dataset, &tapestry_data::DATASET_NAMES)?;
        self.model = one_of("model", &self.model, &MODELS)?;
        self.method = one_of("weighting method", &self.method, &method_names())?;
        self.arch = one_of("architecture", &self.arch, &ARCHS)?;
        for (what, value) in [
            ("soft sharing's lambda", self.soft_lambda),
            ("the trace norm's lambda", self.trace_norm),
            ("the task relation's lambda", self.task_relation),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid!("{what} must be a number >= 0, got {value}"));
            }
        }
        if self.task_relation_every == 0 {
            return Err(invalid!("the task relation's update interval must be at least 1 step"));
        }
        if !(self.task_relation_eps.is_finite() && self.task_relation_eps > 0.0) {
            return Err(invalid!(
                "the task relation's eps must be a positive number, got {}",
                self.task_relation_eps
            ));
        }
        if !(1..=64).contains(&self.experts) {
            return Err(invalid!("the number of experts must lie in 1..=64, got {}", self.experts));
        }
        if self.task_experts > 64 {
            return Err(invalid!(
                "the number of experts per task must lie in 0..=64, got {}",
                self.task_experts
            ));
        }
        if !self.soft_layers.is_empty() && self.arch != "soft" {
            return Err(invalid!("soft layers only apply to --arch soft, not to `{}`", self.arch));
        }
        self.normalization = one_of("normalization", &self.normalization, &NORMALIZATIONS)?;
        self.grad_mode = one_of("gradient mode", &self.grad_mode, &["param", "batched"])?;
        self.optimizer = one_of("optimizer", &self.optimizer, &OPTIMIZERS)?;
        self.gradnorm_optimizer =
            one_of("GradNorm optimizer", &self.gradnorm_optimizer, &GRADNORM_OPTIMIZERS)?;
        if self.epochs == 0 {
            return Err(invalid!("the number of epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid!("the batch size must be at least 1"));
        }
        if self.limit == Some(0) {
            return Err(invalid!("the sample limit must be at least 1"));
        }
        if !(1..=16_384).contains(&self.hidden) {
            return Err(invalid!("the hidden width must lie in 1..=16384, got {}", self.hidden));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid!("the learning rate must be a positive number, got {}", self.lr));
        }
        if !(self.gradnorm_alpha.is_finite() && self.gradnorm_alpha >= 0.0) {
            return Err(invalid!(
                "GradNorm's alpha must be a number >= 0, got {}",
                self.gradnorm_alpha
            ));
        }
        if !(self.gradnorm_lr.is_finite() && self.gradnorm_lr >= 0.0) {
            return Err(invalid!(
                "GradNorm's learning rate must be a number >= 0, got {}",
                self.gradnorm_lr
            ));
        }
        if !self.targets.is_empty() && self.dataset != "csv" {
            return Err(invalid!(
                "targets only apply to the csv data set, not to `{}`",
                self.dataset
            ));
        }
        for target in &self.targets {
            parse_target(target)?;
        }
        if self.threads > 1024 {
            return Err(invalid!("at most 1024 threads, got {}", self.threads));
        }
        Ok(self)
    }

    /// The weighting method, built from the registry.
    pub fn weighting(&self) -> Result<Box<dyn Weighting>> {
        let normalization = match self.normalization.as_str() {
            "none" => GradNormalization::None,
            "l2" => GradNormalization::L2,
            "loss" => GradNormalization::Loss,
            "loss+" => GradNormalization::LossPlus,
            other => return Err(invalid!("unknown normalization `{other}`")),
        };
        let (alpha, lr) = (self.gradnorm_alpha, self.gradnorm_lr);
        let gradnorm = if self.gradnorm_optimizer == "adam" {
            GradNormConfig::adam(alpha, lr)
        } else {
            GradNormConfig::new(alpha, lr)
        };
        weighting::by_name(&self.method, &MethodOptions { normalization, gradnorm })
            .ok_or_else(|| invalid!("unknown weighting method `{}`", self.method))
    }

    /// The gradient mode.
    pub fn grad_mode(&self) -> GradMode {
        if self.grad_mode == "param" {
            GradMode::Param
        } else {
            GradMode::Batched
        }
    }

    /// The optimizer, built.
    pub fn optimizer(&self) -> Result<Box<dyn Optimizer>> {
        Ok(match self.optimizer.as_str() {
            "adam" => Box::new(Adam::new(self.lr)),
            "adamw" => Box::new(AdamW::new(self.lr)),
            "sgd" => Box::new(Sgd::new(self.lr)),
            other => return Err(invalid!("unknown optimizer `{other}`")),
        })
    }
}

/// Parses a CSV task: `COLUMN` or `COLUMN:KIND`, where `COLUMN` is a header name or a 1-based
/// column number and `KIND` is `class` (integer labels, the default), `named` (class names) or
/// `regression`. The task is named after the column.
pub fn parse_target(spec: &str) -> Result<CsvTask> {
    let (column, kind) = match spec.rsplit_once(':') {
        Some((c, k)) => (c.trim(), k.trim().to_ascii_lowercase()),
        None => (spec.trim(), "class".to_string()),
    };
    if column.is_empty() {
        return Err(invalid!("target `{spec}` names no column"));
    }
    let kind = match kind.as_str() {
        "class" | "classification" => CsvTargetKind::Classification { classes: None },
        "named" => CsvTargetKind::NamedClasses,
        "regression" | "reg" => CsvTargetKind::Regression,
        other => {
            return Err(invalid!(
                "target `{spec}`: unknown kind `{other}`; expected class, named or regression"
            ))
        }
    };
    let (name, column) = match column.parse::<usize>() {
        Ok(0) => return Err(invalid!("target `{spec}`: column numbers start at 1")),
        Ok(n) => (format!("column_{n}"), Column::Index(n - 1)),
        Err(_) => (column.to_string(), Column::Name(column.to_string())),
    };
    Ok(CsvTask { name, columns: vec![column], kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = RunConfig::default();
        let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validation_rejects_bad_values() {
        let bad = |c: RunConfig| c.validate().unwrap_err().to_string();
        assert!(bad(RunConfig { method: "no-such-method".into(), ..Default::default() })
            .contains("unknown weighting method `no-such-method`"));
        assert!(bad(RunConfig { epochs: 0, ..Default::default() }).contains("epochs"));
        assert!(bad(RunConfig { batch_size: 0, ..Default::default() }).contains("batch size"));
        assert!(bad(RunConfig { lr: -1.0, ..Default::default() }).contains("learning rate"));
        assert!(bad(RunConfig { targets: vec!["a".into()], ..Default::default() }).contains("csv"));
        let csv = |t: &str| RunConfig {
            dataset: "csv".into(),
            targets: vec![t.into()],
            ..Default::default()
        };
        assert!(bad(csv("price:banana")).contains("unknown kind `banana`"));
        assert!(bad(csv("0")).contains("start at 1"));
        assert_eq!(parse_target("3:regression").unwrap().columns, [Column::Index(2)]);
        assert_eq!(parse_target("species:named").unwrap().kind, CsvTargetKind::NamedClasses);
        let ok = RunConfig { method: "MGDA".into(), ..Default::default() }.validate().unwrap();
        assert_eq!(ok.method, "mgda");
    }
}
