//! `tapestry export --pytorch RUN`: the run's model as PyTorch code, so that a model trained
//! here carries on in PyTorch; `tapestry export --data RUN`: the run's data, exactly as it
//! trains on them, as an images folder that numpy (and `--dataset images`) reads.
//!
//! `RUN/model.py` is one self-contained file: `torch.nn.Module` classes for every architecture
//! of `--arch` and the layers of every preset of `--model`, laid out so that PyTorch's own
//! naming (`nn.Sequential` indices, `nn.ModuleDict` keys) gives exactly the parameter names of
//! `checkpoint.safetensors`, the run's configuration (preset, architecture, sample shape and
//! tasks), and `load()`, which reads the checkpoint (with the `safetensors` package, or numpy
//! alone) and calls `load_state_dict(strict=True)`. The Python classes are written out in
//! `export_model.py` beside this file; the test `tests/export.rs` runs the exported module on
//! each run's test split and compares its outputs with `tapestry eval --outputs`.

use std::path::{Path, PathBuf};

use serde_json::json;
use tapestry_data::TaskKind;

use crate::error::Result;
use crate::inputs::RunData;
use crate::invalid;
use crate::models::resolve_preset;
use crate::output::{create_dir, write_atomic};
use crate::run::{load_run, LoadedRun};
use crate::rundir::LockedDir;

/// The Python classes and loader of `model.py`; the file starts with the run's description and
/// `RUN_JSON`, the run's configuration.
const MODEL_PY: &str = include_str!("export_model.py");

/// The file `export --pytorch` writes beside the checkpoint.
pub const MODEL_FILE: &str = "model.py";

/// What `tapestry export` writes.
#[derive(Debug, Default)]
pub struct Export {
    /// `model.py` beside the checkpoint.
    pub pytorch: bool,
    /// The run's data, to this folder.
    pub data: Option<PathBuf>,
}

/// Loads the run in `run` (a run directory or its checkpoint file, as for `tapestry eval`)
/// once and writes what `what` asks for; returns one line per folder written.
///
/// # Errors
/// If the run cannot be loaded, or as [`export_pytorch`] and [`export_data`].
pub fn export(run: &Path, what: &Export) -> Result<Vec<String>> {
    let loaded = load_run(run, None, None)?;
    let mut lines = Vec::new();
    if what.pytorch {
        lines.push(format!("wrote {}", export_pytorch(&loaded)?.display()));
    }
    if let Some(dir) = &what.data {
        let files = export_data(&loaded, run, dir)?;
        lines.push(format!("wrote {} to {}", files.join(", "), dir.display()));
    }
    Ok(lines)
}

/// Writes `model.py` for the loaded run beside its checkpoint and returns its path.
///
/// # Errors
/// If a task's name cannot be a PyTorch module name (empty, or holding a `.`), the directory
/// is being written by another command, or the file cannot be written.
pub fn export_pytorch(loaded: &LoadedRun) -> Result<PathBuf> {
    let LoadedRun { file, config, data, built, .. } = loaded;
    let tasks = data.tasks();
    if let Some(bad) = tasks.iter().find(|t| t.name.is_empty() || t.name.contains('.')) {
        return Err(invalid!(
            "task {:?} cannot name a PyTorch module (names may not be empty or hold a `.`), so the run cannot be exported",
            bad.name
        ));
    }
    let dataset = if config.multi_input.is_empty() { config.dataset.as_str() } else { "" };
    let task_json: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let (kind, outputs) = match t.kind {
                TaskKind::Classification { classes } => ("classification", classes),
                TaskKind::Regression { dim } => ("regression", dim),
                TaskKind::PixelClassification { classes, .. } => ("pixel-classification", classes),
                TaskKind::PixelRegression => ("pixel-regression", 1),
            };
            json!({"name": t.name, "kind": kind, "outputs": outputs})
        })
        .collect();
    let run_json = json!({
        "preset": resolve_preset(&config.model, dataset),
        "arch": config.arch,
        "sample": data.sample_shape(),
        "hidden": config.hidden,
        "experts": config.experts,
        "task_experts": config.task_experts,
        "tasks": task_json,
        "description": built.description,
    });
    let text = serde_json::to_string(&run_json).expect("JSON values serialise");
    let names = tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    let source = format!(
        "\"\"\"The model of a Tapestry run as a PyTorch module: {description}.\n\n\
         Written by `tapestry export --pytorch` for {checkpoint}. `build()` makes the\n\
         architecture with PyTorch's parameter names equal to the checkpoint's; `load(path)`\n\
         reads checkpoint.safetensors into it with strict=True and returns it in eval mode:\n\n    \
         import model\n    \
         net = model.load(\"checkpoint.safetensors\")\n    \
         outputs = net(x)   # x: float32 [B, {sample}]; a dict task -> output\n\n\
         Tasks, in order: {names}. Needs torch and numpy; uses the safetensors package when it\n\
         is installed. `python model.py` loads the checkpoint beside it and prints the outputs'\n\
         shapes.\n\"\"\"\n\nRUN_JSON = {literal}\n",
        description = built.description,
        checkpoint = file.display(),
        sample = data.sample_shape().iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
        // A JSON string literal is a Python string literal.
        literal = serde_json::to_string(&text).expect("a string serialises"),
    );
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let _lock = LockedDir::open(&dir)?;
    let path = dir.join(MODEL_FILE);
    write_atomic(&path, format!("{source}{MODEL_PY}").as_bytes())?;
    Ok(path)
}

/// Writes the train and test data of the loaded run (from `run`) to `dir` as an images folder
/// (`images.npy`, `labels.csv`, `test_images.npy`, `test_labels.csv`; see
/// [`tapestry_data::images_folder_files`]) and returns the file names.
///
/// # Errors
/// If the run has one data set per task (`--multi-input`), its samples are not images or a
/// task has no column in a labels file (per-pixel and multi-value targets), or a file cannot be
/// written.
pub fn export_data(loaded: &LoadedRun, run: &Path, dir: &Path) -> Result<Vec<String>> {
    let RunData::Shared(splits) = &loaded.data else {
        return Err(invalid!(
            "{} trains each task on its own data set (--multi-input), which one images folder cannot hold",
            run.display()
        ));
    };
    let files = tapestry_data::images_folder_files(splits)?;
    create_dir(dir)?;
    for (name, bytes) in &files {
        write_atomic(&dir.join(name), bytes)?;
    }
    Ok(files.into_iter().map(|(name, _)| name).collect())
}
