//! `tapestry`: train, evaluate and compare multi-task models from the command line.
//!
//! ```text
//! tapestry train                       # MultiDigits, MLP, GradNorm, 25 epochs (about 20 s on 2 cores)
//! tapestry train --config run.toml     # or every option from a TOML file
//! tapestry eval --checkpoint runs/train
//! tapestry compare --methods ew,mgda,mgda-ub,gradnorm
//! tapestry methods                     # every weighting, with its hyper-parameters
//! tapestry meta-train --algo maml      # MAML on sinusoids; meta-eval scores a run
//! tapestry finetune --from runs/train --task left_parity --shots 5
//! ```
//!
//! Every failure prints one sentence on stderr and exits with code 2. `docs/cli.md` describes
//! the commands, their options and outputs.
#![forbid(unsafe_code)]

mod compare;
mod config;
mod error;
mod export;
mod finetune;
mod inputs;
mod meta;
mod models;
mod output;
mod plots;
mod report;
mod run;
mod rundir;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::RunConfig;
use crate::error::{clap_sentence, one_sentence, CliError, Result};

/// Train, evaluate and compare multi-task models.
#[derive(Debug, Parser)]
#[command(name = "tapestry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a multi-task model (defaults: MultiDigits, an MLP, GradNorm, Adam, 25 epochs).
    #[command(allow_negative_numbers = true)]
    Train {
        #[command(flatten)]
        run: RunArgs,
        /// The output directory (refused if it holds a run, unless --resume or --force).
        #[arg(long, default_value = "runs/train")]
        out: PathBuf,
        /// Continue the run in --out from its last checkpoint, as it was configured (only
        /// --epochs, a new total, and --threads may be given).
        #[arg(long, conflicts_with = "force")]
        resume: bool,
        /// Replace the run in --out; the old one stays until the new one's first checkpoint.
        #[arg(long)]
        force: bool,
    },
    /// Evaluate a saved run's checkpoint on its data set's test split.
    Eval {
        /// A run directory (holding checkpoint.safetensors and config.toml) or a checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Use at most this many test samples.
        #[arg(long)]
        limit: Option<usize>,
        /// Threads of the rayon pool (0: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Also write the test inputs and the model's outputs on them to this directory, as
        /// .npy files (inputs.npy, outputs.TASK.npy).
        #[arg(long)]
        outputs: Option<PathBuf>,
    },
    /// Write a run's model as PyTorch code (RUN/model.py, a torch.nn.Module with the
    /// checkpoint's parameter names and a loader for checkpoint.safetensors) and its data as an
    /// images folder of .npy arrays and CSV labels.
    Export {
        /// The run directory.
        run: PathBuf,
        /// Write RUN/model.py.
        #[arg(long)]
        pytorch: bool,
        /// Write the run's train and test data, exactly as it trains on them, as an images
        /// folder (images.npy, labels.csv, test_images.npy, test_labels.csv) that
        /// `--dataset images` and numpy read.
        #[arg(long)]
        data: bool,
        /// The folder of --data (default: RUN/data).
        #[arg(long, requires = "data")]
        out: Option<PathBuf>,
    },
    /// Write one self-contained HTML page (report.html) of runs or comparisons: summaries,
    /// per-epoch tables, the plots inline, the configuration, and for several runs Δp against
    /// the first.
    Report {
        /// Run directories, or a compare directory (its runs, baseline first).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The page to write (default: report.html in the one directory given, or in the
        /// current directory for several).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train several weighting methods and architectures on the same data and seed and compare
    /// them (Δp over hard-sharing EW).
    #[command(allow_negative_numbers = true)]
    Compare {
        /// Comma-separated methods (`tapestry methods` lists them; `all` is every one); ew is
        /// the baseline, run first. A `--param` applies to every listed method that takes it.
        #[arg(long, default_value = "ew,mgda,mgda-ub,gradnorm")]
        methods: String,
        /// Comma-separated architectures (hard, soft, cross-stitch, mmoe, cgc, ple, mtan); hard is added as the
        /// baseline. Every method runs on every architecture it can run on.
        #[arg(long, default_value = "hard")]
        archs: String,
        #[command(flatten)]
        run: RunArgs,
        /// The output directory (one subdirectory per method; refused if it holds results,
        /// unless --force).
        #[arg(long, default_value = "runs/compare")]
        out: PathBuf,
        /// Replace the results in --out once every method has finished.
        #[arg(long)]
        force: bool,
    },
    /// List the weighting methods with their hyper-parameters (defaults and ranges).
    Methods,
    /// Learn an initialisation from many tasks (MAML, first-order MAML, Meta-SGD, Reptile) and
    /// score it on held-out tasks.
    MetaTrain {
        #[command(flatten)]
        run: MetaArgs,
        /// The output directory (refused if it holds a run, unless --force).
        #[arg(long, default_value = "runs/meta")]
        out: PathBuf,
        /// Replace the run in --out when the new one ends.
        #[arg(long)]
        force: bool,
    },
    /// Fine-tune a run's trunk (or a random one) with a fresh head on K labelled examples per
    /// class of a task the run did not see, and score it on the test split.
    Finetune(finetune::FinetuneArgs),
    /// Score a meta-training run on held-out tasks after 0..k adaptation steps.
    MetaEval {
        /// The run directory.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Held-out tasks (default: the run's).
        #[arg(long)]
        tasks: Option<usize>,
        /// Adaptation steps (default: the run's).
        #[arg(long)]
        steps: Option<usize>,
    },
}

/// The options of a meta-training run; each overrides the config file, which overrides the
/// defaults (MAML's sinusoid setting).
#[derive(Debug, Args)]
struct MetaArgs {
    /// A TOML file with any of the options below.
    #[arg(long)]
    config: Option<PathBuf>,
    /// maml, fomaml, metasgd or reptile.
    #[arg(long)]
    algo: Option<String>,
    /// sinusoid (Finn et al.), sinusoid-reptile (Nichol et al.) or episodes (N-way K-shot).
    #[arg(long)]
    benchmark: Option<String>,
    /// Episodes: digits (UCI, shipped), fashion (Fashion-MNIST) or multidigits (MultiDigits
    /// training images, labelled by the left digit).
    #[arg(long)]
    pool: Option<String>,
    /// Episodes: the Fashion-MNIST folder.
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// K: support points (sinusoids) or examples per class (episodes).
    #[arg(long)]
    shots: Option<usize>,
    /// N: classes per episode.
    #[arg(long)]
    ways: Option<usize>,
    /// Query points (sinusoids) or query examples per class (episodes).
    #[arg(long)]
    queries: Option<usize>,
    /// Inner steps in meta-training.
    #[arg(long)]
    inner_steps: Option<usize>,
    /// Inner learning rate.
    #[arg(long)]
    inner_lr: Option<f32>,
    /// Tasks per meta-iteration.
    #[arg(long)]
    meta_batch: Option<usize>,
    /// Outer learning rate (Adam's; Reptile's initial ε).
    #[arg(long)]
    outer_lr: Option<f64>,
    /// Reptile's inner optimizer: sgd or adam.
    #[arg(long)]
    reptile_inner: Option<String>,
    /// Meta-iterations.
    #[arg(long)]
    iterations: Option<u64>,
    /// Hidden width.
    #[arg(long)]
    hidden: Option<usize>,
    /// The hidden layers' widths, comma-separated (default: two layers of --hidden); 256,128 is
    /// the trunk of `tapestry train --hidden 128`.
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<usize>>,
    /// Held-out tasks of the evaluation.
    #[arg(long)]
    eval_tasks: Option<usize>,
    /// Adaptation steps of the evaluation.
    #[arg(long)]
    eval_steps: Option<usize>,
    /// Meta-iterations between log records.
    #[arg(long)]
    log_every: Option<u64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Threads (0: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar or tables.
    #[arg(long, short)]
    quiet: bool,
}

impl MetaArgs {
    fn config(&self) -> Result<meta::MetaRunConfig> {
        let mut c = match &self.config {
            Some(path) => meta::MetaRunConfig::from_toml_file(path)?,
            None => meta::MetaRunConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { c.$field = v.clone(); } )* };
        }
        set!(algo, benchmark, pool, shots, ways, queries, inner_steps, inner_lr, meta_batch);
        set!(outer_lr, reptile_inner, iterations, hidden, widths, eval_tasks, eval_steps);
        set!(log_every);
        set!(seed, threads);
        if self.data_path.is_some() {
            c.data_path = self.data_path.clone();
        }
        c.validate()
    }
}

/// The options of a run; each overrides the config file, which overrides the defaults.
#[derive(Debug, Args)]
struct RunArgs {
    /// A TOML file with any of the options below (names with underscores: batch_size = 64).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data set: multidigits (default), multifashion, scenes, csv, images.
    #[arg(long)]
    dataset: Option<String>,
    /// The folder of multifashion (MNIST-format files) or of images (images.npy and
    /// labels.csv), or the file of csv.
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Use at most this many training and test samples.
    #[arg(long)]
    limit: Option<usize>,
    /// A task of the csv data set or of the images' labels.csv, `COLUMN[:class|named|regression]`
    /// (repeat for more tasks; COLUMN is a header name or a 1-based number). Default: csv, a
    /// class label in the last column; images, every column of labels.csv.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Train only these tasks of the data set, comma-separated (`--tasks left_digit`: a
    /// single-task run); default all.
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Model preset: auto, mlp, conv, lenet, multitasknet.
    #[arg(long)]
    model: Option<String>,
    /// Width of the MLP's last hidden layer (and of conv's linear layer).
    #[arg(long)]
    hidden: Option<usize>,
    /// Architecture: hard (one shared trunk), soft (a tower per task, coupled by
    /// λ Σ_{i≠j} ‖θ_i − θ_j‖²), cross-stitch (a tower per task, mixed between stages), mmoe
    /// (experts mixed by a gate per task), cgc (shared and per-task experts), ple (CGC levels,
    /// one per stage), mtan (a shared trunk, an attention mask per task and stage).
    #[arg(long)]
    arch: Option<String>,
    /// MMoE's experts; CGC's and PLE's shared experts (default 4).
    #[arg(long)]
    experts: Option<usize>,
    /// CGC's and PLE's experts of each task (default 1).
    #[arg(long)]
    task_experts: Option<usize>,
    /// Soft sharing's λ.
    #[arg(long)]
    soft_lambda: Option<f64>,
    /// The tower layers soft sharing couples, comma-separated (`1.weight,3.weight`); default all.
    #[arg(long, value_delimiter = ',')]
    soft_layers: Option<Vec<String>>,
    /// The trace norm's λ on the per-task copies of a layer (0: off).
    #[arg(long)]
    trace_norm: Option<f64>,
    /// The trace norm's layer, named inside a tower or head (default: the towers' last weight).
    #[arg(long)]
    trace_norm_layer: Option<String>,
    /// The task-relation (MTRL) penalty's λ (0: off).
    #[arg(long)]
    task_relation: Option<f64>,
    /// Steps between the closed-form updates of the task covariance.
    #[arg(long)]
    task_relation_every: Option<u64>,
    /// The task-relation penalty's layer (as for the trace norm).
    #[arg(long)]
    task_relation_layer: Option<String>,
    /// The ridge ε of the task covariance's update.
    #[arg(long)]
    task_relation_eps: Option<f64>,
    /// Weighting method (`tapestry methods` lists them).
    #[arg(long)]
    method: Option<String>,
    /// MGDA / MGDA-UB gradient normalisation: none, l2, loss, loss+.
    #[arg(long)]
    normalization: Option<String>,
    /// Per-task gradients on the shared parameters: param (T sweeps), batched (one sweep) or
    /// gram (one sweep keeping only their Gram, for the methods that read nothing else).
    #[arg(long)]
    grad_mode: Option<String>,
    /// A hyper-parameter of the method, NAME=VALUE (repeatable; `tapestry methods` lists each
    /// method's, with defaults and ranges).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// How GradNorm's weights follow their gradient: adam (as in the paper) or gd.
    #[arg(long)]
    gradnorm_optimizer: Option<String>,
    /// Compute per-task gradient cosines every step (true/false).
    #[arg(long)]
    cosines: Option<bool>,
    /// Measure the inter-task affinity (TAG) every --affinity-every steps (`--affinity` alone
    /// is `--affinity true`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    affinity: Option<bool>,
    /// Steps between affinity measurements (default 10).
    #[arg(long)]
    affinity_every: Option<u64>,
    /// Learning rate of the affinity's lookahead SGD step (default: --lr).
    #[arg(long)]
    affinity_lr: Option<f64>,
    /// Optimizer: adam, sgd, adamw.
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// One input per task: comma-separated DATASET:TASK entries
    /// (multidigits:left_digit,fashion:class), each task trained and tested on its own data set
    /// through the shared trunk (images zero-padded to one size).
    #[arg(long, value_delimiter = ',')]
    multi_input: Option<Vec<String>>,
    /// Which tasks each step trains: all (default), round-robin (one task in turn), sampled (one
    /// task drawn; with ew only).
    #[arg(long)]
    schedule: Option<String>,
    /// The sampled schedule's proportions: one positive number per task (1,2,1), or loss (drawn
    /// in proportion to each task's current over initial loss); default equal.
    #[arg(long)]
    proportions: Option<String>,
    /// Steps per optimizer update, on the mean of their gradients (default 1).
    #[arg(long)]
    accumulate: Option<usize>,
    /// Stop when a task's loss exceeds this many times its first value (default 1e6; 0: off).
    #[arg(long)]
    divergence: Option<f64>,
    /// Seed of the data, the initialisation and the batch order.
    #[arg(long)]
    seed: Option<u64>,
    /// Threads of the rayon pool (0: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bars or tables.
    #[arg(long, short)]
    quiet: bool,
    /// Also print a line per step (its losses and weights) on stdout.
    #[arg(long, short, conflicts_with = "quiet")]
    verbose: bool,
}

impl RunArgs {
    /// The configuration: defaults, then the config file, then the options; checked.
    fn config(&self) -> Result<RunConfig> {
        self.merged()?.validate()
    }

    /// The configuration, merged but not yet checked.
    fn merged(&self) -> Result<RunConfig> {
        let base = match &self.config {
            Some(path) => RunConfig::from_toml_file(path)?,
            None => RunConfig::default(),
        };
        self.merged_onto(base)
    }

    /// The options given, set on `base`.
    fn merged_onto(&self, mut c: RunConfig) -> Result<RunConfig> {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { c.$field = v.clone(); } )* };
        }
        set!(dataset, model, hidden, method, normalization, grad_mode);
        set!(gradnorm_optimizer, arch, soft_lambda, soft_layers, trace_norm, trace_norm_layer);
        set!(task_relation, task_relation_every, task_relation_layer, task_relation_eps);
        set!(experts, task_experts);
        set!(cosines, optimizer, lr, epochs, batch_size, seed, threads);
        set!(affinity, affinity_every);
        if self.affinity_lr.is_some() {
            c.affinity_lr = self.affinity_lr;
        }
        set!(multi_input, tasks, schedule, proportions, accumulate, divergence);
        if self.dataset.is_some() && self.multi_input.is_some() {
            return Err(CliError::Invalid(
                "--multi-input names each task's data set, so --dataset does not apply".into(),
            ));
        }
        if self.data_path.is_some() {
            c.data_path = self.data_path.clone();
        }
        if self.limit.is_some() {
            c.limit = self.limit;
        }
        if !self.targets.is_empty() {
            c.targets = self.targets.clone();
        }
        c.params.extend(config::parse_params(&self.params)?);
        Ok(c)
    }
}

/// Builds the one rayon pool with `threads` threads (0: rayon's default).
pub(crate) fn init_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Ok(());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| CliError::Invalid(format!("cannot start {threads} threads: {e}")))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { run, out, resume, force } => {
            run::check_out_dir(&out)?;
            let (config, start) = if resume {
                if run.config.is_some() {
                    return Err(CliError::Invalid(
                        "--resume continues the run as its checkpoint records it, so --config does not apply".into(),
                    ));
                }
                let saved = run::Saved::read(&out)?;
                let config = resumed_config(&run, &saved.config)?;
                (config, run::Start::Resume(Box::new(saved)))
            } else {
                let config = run.config()?;
                (config, if force { run::Start::Replace } else { run::Start::Fresh })
            };
            note_ignored(&config, std::slice::from_ref(&config.method));
            init_threads(config.threads)?;
            run::install_stop_handler();
            output::set_verbose(run.verbose);
            run::train(&config, &out, run.quiet, start)?;
        }
        Command::Eval { checkpoint, limit, threads, outputs } => {
            if limit == Some(0) {
                return Err(CliError::Invalid("the sample limit must be at least 1".into()));
            }
            run::eval(&checkpoint, limit, threads, outputs.as_deref())?;
        }
        Command::Compare { methods, archs, run, out, force } => {
            if let Some(m) = &run.method {
                return Err(CliError::Invalid(format!(
                    "compare takes --methods (a comma-separated list, for example --methods {m}), not --method"
                )));
            }
            let methods = compare::parse_methods(&methods)?;
            let archs = compare::parse_archs(&archs)?;
            // The hyper-parameters go to the methods that take them, not to the base run's.
            let mut config = run.merged()?;
            let params = std::mem::take(&mut config.params);
            compare::check_params(&methods, &params)?;
            let mut config = config.validate()?;
            config.params = params;
            note_ignored(&config, &methods);
            run::check_out_dir(&out)?;
            init_threads(config.threads)?;
            run::install_stop_handler();
            output::set_verbose(run.verbose);
            let table = compare::compare(&config, &methods, &archs, &out, run.quiet, force)?;
            say!("{table}");
            say!("wrote compare.json, compare.txt and tradeoff.svg to {}", out.display());
        }
        Command::Export { run, pytorch, data, out } => {
            if !pytorch && !data {
                return Err(CliError::Invalid(
                    "export needs something to write: --pytorch (RUN/model.py) or --data (the run's data as .npy and CSV)".into(),
                ));
            }
            let data = data.then(|| out.unwrap_or_else(|| run.join("data")));
            for line in export::export(&run, &export::Export { pytorch, data })? {
                say!("{line}");
            }
        }
        Command::Report { runs, out } => {
            let path = report::report(&runs, out.as_deref())?;
            say!("wrote {}", path.display());
        }
        Command::Methods => output::print_out(&compare::methods_table()),
        Command::MetaTrain { run, out, force } => {
            let config = run.config()?;
            run::check_out_dir(&out)?;
            init_threads(config.threads)?;
            meta::meta_train(&config, &out, run.quiet, force)?;
        }
        Command::Finetune(args) => finetune::finetune(&args)?,
        Command::MetaEval { checkpoint, tasks, steps } => {
            meta::meta_eval(&checkpoint, tasks, steps)?
        }
    }
    Ok(())
}

/// The configuration of a resumed run: the saved one, with a new total of epochs or another
/// thread count if given; any other option is refused by name.
fn resumed_config(run: &RunArgs, saved: &RunConfig) -> Result<RunConfig> {
    let merged = run.merged_onto(saved.clone())?;
    let as_table = |c: &RunConfig| -> toml::Table {
        toml::from_str(&c.to_toml()).expect("a configuration's TOML parses")
    };
    let (old, new) = (as_table(saved), as_table(&merged));
    let changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| !matches!(k.as_str(), "epochs" | "threads") && old.get(*k) != Some(*v))
        .chain(old.iter().filter(|(k, _)| !new.contains_key(*k)))
        .map(|(k, _)| format!("--{}", k.replace('_', "-")))
        .collect();
    if !changed.is_empty() {
        return Err(CliError::Invalid(format!(
            "--resume continues the run as it was configured, so {} cannot change (only --epochs and --threads can); start a new run with --force or another --out to change it",
            changed.join(", ")
        )));
    }
    merged.validate()
}

/// Prints one line on stderr for each option none of `methods` reads.
fn note_ignored(config: &RunConfig, methods: &[String]) {
    for note in config::ignored_options(config, methods) {
        note!("tapestry: note: {note}.");
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        note!("tapestry: internal error: {}", one_sentence(&message));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            note!("tapestry: {} (see tapestry --help).", clap_sentence(&e));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note!("tapestry: {}", e.sentence());
            ExitCode::from(e.exit_code())
        }
    }
}
