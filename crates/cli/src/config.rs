//! The configuration of a run: what `tapestry train` takes from a TOML file or its options, and
//! what it stores as `config.toml` next to the checkpoint so `tapestry eval` can rebuild the
//! model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tapestry_data::{Column, CsvTargetKind, CsvTask};
use tapestry_mtl::affinity::AffinityOptions;
use tapestry_mtl::gradnorm::WeightOptimizer;
use tapestry_mtl::multi_input::check_multi_input;
use tapestry_mtl::schedule::{Proportions, Schedule};
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
pub const MODELS: [&str; 5] = ["auto", "mlp", "conv", "lenet", "multitasknet"];
/// The rules GradNorm's weights can follow: Adam (as in the paper) or plain gradient descent.
pub const GRADNORM_OPTIMIZERS: [&str; 2] = ["adam", "gd"];
/// The gradient normalisations of MGDA and MGDA-UB.
pub const NORMALIZATIONS: [&str; 4] = ["none", "l2", "loss", "loss+"];
/// The task schedules: every task each step, one task in turn, one task drawn.
pub const SCHEDULES: [&str; 3] = ["all", "round-robin", "sampled"];

/// Everything a training run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The data set: `multidigits`, `multifashion`, `scenes`, `csv` or `images`.
    pub dataset: String,
    /// The folder of `multifashion` and `images`, the file of `csv`.
    pub data_path: Option<PathBuf>,
    /// Use at most this many training and test samples (for quick runs).
    pub limit: Option<usize>,
    /// The tasks of a CSV table or of an images folder's `labels.csv`, each `COLUMN` or
    /// `COLUMN:KIND` (see [`parse_target`]); empty means one classification task on the last
    /// column of a table, and a task of every column of `labels.csv` (a classification when
    /// every label is an integer from 0, a regression otherwise).
    pub targets: Vec<String>,
    /// The tasks of the data set to train, by name (`left_digit`); empty means all of them.
    pub tasks: Vec<String>,
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
    /// How per-task gradients on the shared parameters are computed: `param`, `batched` or
    /// `gram`.
    pub grad_mode: String,
    /// Hyper-parameters of the method by name (`tau = 2.0`); each method declares its own with
    /// a default and a range (`tapestry methods` lists them), the rest keep their defaults.
    pub params: BTreeMap<String, f64>,
    /// How GradNorm's weights follow their gradient (see [`GRADNORM_OPTIMIZERS`]): `adam`, as in
    /// the paper, or `gd` (plain gradient descent).
    pub gradnorm_optimizer: String,
    /// Compute per-task gradient cosines on the shared parameters every step.
    pub cosines: bool,
    /// Measure the inter-task affinity (TAG) every `affinity_every` steps.
    pub affinity: bool,
    /// Steps between affinity measurements.
    pub affinity_every: u64,
    /// The learning rate of the affinity's lookahead SGD step; `None` is the run's `lr`.
    pub affinity_lr: Option<f64>,
    /// The optimizer (see [`OPTIMIZERS`]).
    pub optimizer: String,
    /// The learning rate.
    pub lr: f64,
    /// The number of epochs.
    pub epochs: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// One input per task: `DATASET:TASK` entries (task `TASK` of data set `DATASET`, on its own
    /// data); empty means every task of `dataset` reads one input.
    pub multi_input: Vec<String>,
    /// Which tasks each step trains (see [`SCHEDULES`]).
    pub schedule: String,
    /// The sampled schedule's proportions: comma-separated positive numbers (one per task),
    /// `loss` (proportional to each task's loss ratio), or empty (equal).
    pub proportions: String,
    /// Steps per optimizer update, on the mean of their gradients.
    pub accumulate: usize,
    /// Stop the run when a task's loss exceeds this many times its first value (0: only
    /// non-finite losses stop it).
    pub divergence: f64,
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
            tasks: Vec::new(),
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
            params: BTreeMap::new(),
            gradnorm_optimizer: "adam".into(),
            cosines: true,
            affinity: false,
            affinity_every: 10,
            affinity_lr: None,
            optimizer: "adam".into(),
            lr: 2e-3,
            epochs: 25,
            batch_size: 64,
            multi_input: Vec::new(),
            schedule: "all".into(),
            proportions: String::new(),
            accumulate: 1,
            divergence: 1e6,
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
        Self::from_toml_str(&text, &format!("config file {}", path.display()))
    }

    /// Parses a TOML configuration; errors name `source` and the line.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| {
                    let before = &text.as_bytes()[..s.start.min(text.len())];
                    format!(" (line {})", before.iter().filter(|&&b| b == b'\n').count() + 1)
                })
                .unwrap_or_default();
            invalid!("{source}{line}: {}", e.message().trim())
        })
    }

    /// The configuration as TOML text.
    ///
    /// # Panics
    /// If an integer exceeds `i64::MAX`, the largest TOML holds ([`RunConfig::validate`]
    /// refuses those).
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
        self.grad_mode = one_of("gradient mode", &self.grad_mode, &["param", "batched", "gram"])?;
        self.optimizer = one_of("optimizer", &self.optimizer, &OPTIMIZERS)?;
        self.gradnorm_optimizer =
            one_of("GradNorm optimizer", &self.gradnorm_optimizer, &GRADNORM_OPTIMIZERS)?;
        // TOML integers are i64: a larger value could not be written to config.toml.
        for (what, value) in [
            ("seed", Some(self.seed)),
            ("number of epochs", Some(self.epochs as u64)),
            ("batch size", Some(self.batch_size as u64)),
            ("sample limit", self.limit.map(|l| l as u64)),
            ("task relation's update interval", Some(self.task_relation_every)),
        ] {
            if let Some(v) = value.filter(|&v| v > i64::MAX as u64) {
                return Err(invalid!(
                    "the {what} {v} is too large: config.toml holds integers up to {}",
                    i64::MAX
                ));
            }
        }
        if self.epochs == 0 {
            return Err(invalid!("the number of epochs must be at least 1"));
        }
        if self.affinity_every == 0 {
            return Err(invalid!("the affinity's interval must be at least 1 step"));
        }
        if let Some(lr) = self.affinity_lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
            return Err(invalid!(
                "the affinity's learning rate must be a positive number, got {lr}"
            ));
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
        self.weighting()?;
        self.schedule = one_of("schedule", &self.schedule, &SCHEDULES)?;
        if !self.proportions.is_empty() && self.schedule != "sampled" {
            return Err(invalid!(
                "proportions apply to the sampled schedule, not to `{}`",
                self.schedule
            ));
        }
        self.proportions()?;
        if self.schedule != "all" && self.method != "ew" {
            return Err(invalid!(
                "the {} schedule trains one task per step, which leaves method `{}` nothing to weigh; use --method ew or --schedule all",
                self.schedule,
                self.method
            ));
        }
        if !(self.divergence == 0.0 || (self.divergence.is_finite() && self.divergence > 1.0)) {
            return Err(invalid!(
                "the divergence bound must be a factor above 1, or 0 to turn it off; got {}",
                self.divergence
            ));
        }
        if self.accumulate == 0 {
            return Err(invalid!("gradient accumulation needs at least 1 step per update, got 0"));
        }
        if !self.multi_input.is_empty() {
            if self.dataset != RunConfig::default().dataset {
                return Err(invalid!(
                    "--multi-input names each task's data set, so --dataset `{}` does not apply",
                    self.dataset
                ));
            }
            if self.multi_input.len() < 2 {
                return Err(invalid!(
                    "--multi-input needs at least two DATASET:TASK entries, got {}",
                    self.multi_input.len()
                ));
            }
            let mut seen: Vec<String> = Vec::new();
            for entry in &mut self.multi_input {
                let (dataset, task) = parse_multi_input(entry)?;
                if seen.contains(&task) {
                    return Err(invalid!("--multi-input names the task `{task}` twice"));
                }
                *entry = format!("{dataset}:{task}");
                seen.push(task);
            }
            check_multi_input(self.weighting()?.as_ref())?;
        }
        let reads_targets = |d: &str| matches!(d, "csv" | "images");
        let uses_targets =
            reads_targets(&self.dataset) || self.multi_input_datasets().any(reads_targets);
        if !self.targets.is_empty() && !uses_targets {
            return Err(invalid!(
                "targets only apply to the csv and images data sets, not to `{}`",
                self.dataset
            ));
        }
        for target in &self.targets {
            parse_target(target)?;
        }
        if !self.tasks.is_empty() && !self.multi_input.is_empty() {
            return Err(invalid!(
                "--multi-input names each task already, so --tasks does not apply"
            ));
        }
        for (i, task) in self.tasks.iter().enumerate() {
            if self.tasks[..i].contains(task) {
                return Err(invalid!("--tasks names the task `{task}` twice"));
            }
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
        let gradnorm_optimizer = if self.gradnorm_optimizer == "gd" {
            WeightOptimizer::GradientDescent
        } else {
            WeightOptimizer::ADAM
        };
        let options =
            MethodOptions { params: self.params.clone(), normalization, gradnorm_optimizer };
        weighting::by_name(&self.method, &options).map_err(|e| invalid!("{e}"))
    }

    /// When and with which step the affinity is measured, if it is.
    pub fn affinity_options(&self) -> Option<AffinityOptions> {
        let lr = self.affinity_lr.unwrap_or(self.lr);
        self.affinity.then_some(AffinityOptions { every: self.affinity_every, lr })
    }

    /// The data sets of the `--multi-input` entries, in order.
    pub fn multi_input_datasets(&self) -> impl Iterator<Item = &str> {
        self.multi_input.iter().map(|e| e.split_once(':').map_or(e.as_str(), |(d, _)| d))
    }

    /// What the run trains on, for messages: the data set, or the multi-input entries.
    pub fn data_name(&self) -> String {
        if self.multi_input.is_empty() {
            self.dataset.clone()
        } else {
            self.multi_input.join(",")
        }
    }

    /// The task schedule for `tasks` tasks (the sampled schedule without proportions draws every
    /// task equally often).
    pub fn schedule(&self, tasks: usize) -> Result<Schedule> {
        Ok(match self.schedule.as_str() {
            "round-robin" => Schedule::RoundRobin,
            "sampled" => Schedule::Sampled(match self.proportions()? {
                Some(values) => Proportions::Fixed(values),
                None if self.proportions.trim() == "loss" => Proportions::LossDriven,
                None => Proportions::Fixed(vec![1.0; tasks]),
            }),
            _ => Schedule::All,
        })
    }

    /// The fixed proportions, if `proportions` lists numbers (`None` for empty or `loss`).
    fn proportions(&self) -> Result<Option<Vec<f64>>> {
        let list = self.proportions.trim();
        if list.is_empty() || list == "loss" {
            return Ok(None);
        }
        let mut values = Vec::new();
        for item in list.split(',') {
            let v: f64 = item.trim().parse().map_err(|_| {
                invalid!(
                    "the proportions are positive numbers or `loss`, and `{}` is neither",
                    item.trim()
                )
            })?;
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid!("the proportions must be positive numbers, got {v}"));
            }
            values.push(v);
        }
        Ok(Some(values))
    }

    /// The gradient mode.
    pub fn grad_mode(&self) -> GradMode {
        match self.grad_mode.as_str() {
            "param" => GradMode::Param,
            "gram" => GradMode::Gram,
            _ => GradMode::Batched,
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

/// The methods that read `--normalization`.
pub const NORMALIZED_METHODS: [&str; 2] = ["mgda", "mgda-ub"];

/// One line for each option of `config` that none of `methods` reads (a normalisation other
/// than `none`, a GradNorm optimizer other than `adam`), so that it is not dropped silently.
pub fn ignored_options(config: &RunConfig, methods: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    let list = methods.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
    if config.normalization != "none"
        && !methods.iter().any(|m| NORMALIZED_METHODS.contains(&m.as_str()))
    {
        notes.push(format!(
            "--normalization {} has no effect on {list}: only {} read it",
            config.normalization,
            NORMALIZED_METHODS.join(" and ")
        ));
    }
    if config.gradnorm_optimizer != "adam" && !methods.iter().any(|m| m == "gradnorm") {
        notes.push(format!(
            "--gradnorm-optimizer {} has no effect on {list}: only gradnorm reads it",
            config.gradnorm_optimizer
        ));
    }
    notes
}

/// Parses `NAME=VALUE` hyper-parameter assignments into a map; a name given twice is an error.
pub fn parse_params(assignments: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut params = BTreeMap::new();
    for a in assignments {
        let Some((name, value)) = a.split_once('=') else {
            return Err(invalid!("hyper-parameter `{a}` is not NAME=VALUE"));
        };
        let name = name.trim().to_ascii_lowercase();
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| invalid!("hyper-parameter `{a}`: `{}` is not a number", value.trim()))?;
        if params.insert(name.clone(), value).is_some() {
            return Err(invalid!("hyper-parameter `{name}` is given twice"));
        }
    }
    Ok(params)
}

/// Parses a `--multi-input` entry `DATASET:TASK` into the data set's name (lower case, one of
/// [`tapestry_data::DATASET_NAMES`]) and the task's name.
pub fn parse_multi_input(entry: &str) -> Result<(String, String)> {
    let Some((dataset, task)) = entry.split_once(':') else {
        return Err(invalid!("multi-input entry `{entry}` is not DATASET:TASK"));
    };
    let dataset = one_of("data set", dataset.trim(), &tapestry_data::DATASET_NAMES)?;
    let task = task.trim();
    if task.is_empty() {
        return Err(invalid!("multi-input entry `{entry}` names no task"));
    }
    Ok((dataset, task.to_string()))
}

/// Parses a task of a CSV table or of an images folder's labels: `COLUMN` or `COLUMN:KIND`, where `COLUMN` is a header name or a 1-based
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
        assert!(bad(RunConfig { affinity_every: 0, ..Default::default() }).contains("interval"));
        assert!(bad(RunConfig { affinity_lr: Some(0.0), ..Default::default() })
            .contains("affinity's learning rate"));
        assert!(bad(RunConfig { targets: vec!["a".into()], ..Default::default() }).contains("csv"));
        let csv = |t: &str| RunConfig {
            dataset: "csv".into(),
            targets: vec![t.into()],
            ..Default::default()
        };
        assert!(bad(csv("price:banana")).contains("unknown kind `banana`"));
        assert!(bad(csv("0")).contains("start at 1"));
        let images = RunConfig {
            dataset: "images".into(),
            targets: vec!["digit".into(), "size:regression".into()],
            ..Default::default()
        };
        assert_eq!(images.validate().unwrap().targets, ["digit", "size:regression"]);
        assert_eq!(parse_target("3:regression").unwrap().columns, [Column::Index(2)]);
        assert_eq!(parse_target("species:named").unwrap().kind, CsvTargetKind::NamedClasses);
        let ok = RunConfig { method: "MGDA".into(), ..Default::default() }.validate().unwrap();
        assert_eq!(ok.method, "mgda");
    }

    #[test]
    fn schedules_and_multi_input_entries_parse() {
        let sampled = |p: &str| RunConfig {
            method: "ew".into(),
            schedule: "Sampled".into(),
            proportions: p.into(),
            ..Default::default()
        };
        let equal = sampled("").validate().unwrap().schedule(3).unwrap();
        assert_eq!(equal, Schedule::Sampled(Proportions::Fixed(vec![1.0; 3])));
        let loss = sampled(" loss ").validate().unwrap().schedule(3).unwrap();
        assert_eq!(loss, Schedule::Sampled(Proportions::LossDriven));
        let fixed = sampled("1, 2.5").validate().unwrap().schedule(2).unwrap();
        assert_eq!(fixed, Schedule::Sampled(Proportions::Fixed(vec![1.0, 2.5])));
        assert_eq!(RunConfig::default().schedule(3).unwrap(), Schedule::All);
        let c = RunConfig {
            multi_input: vec!["MultiDigits:left_digit".into(), "fashion: class".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(c.multi_input, ["multidigits:left_digit", "fashion:class"]);
        assert_eq!(c.data_name(), "multidigits:left_digit,fashion:class");
        let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }
}
