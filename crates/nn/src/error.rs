//! Errors of the nn crate.
//!
//! Policy, as in the autodiff crate: wiring a model with incompatible shapes is a programming
//! error and panics (each function documents it under `# Panics`); anything that depends on data
//! from outside the program — names chosen at run time, files, checkpoints — returns [`NnError`].

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// An error of the nn crate.
#[derive(Debug, Error)]
pub enum NnError {
    /// A parameter or buffer name was registered twice.
    #[error("duplicate name `{0}`: every parameter and buffer needs its own name")]
    DuplicateName(String),
    /// A name is empty, or starts with the prefix reserved for optimizer state in checkpoints.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A name that is not in the store.
    #[error("no parameter or buffer named `{0}`")]
    UnknownName(String),
    /// A value did not have the shape it had to have.
    #[error("shape mismatch for `{name}`: expected {expected:?}, got {found:?}")]
    Shape {
        /// The parameter, buffer or argument.
        name: String,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it had.
        found: Vec<usize>,
    },
    /// A flat vector whose length does not match the parameters it is meant for.
    #[error("flat vector of length {found} does not fit {expected} parameter elements")]
    FlatLength {
        /// The number of elements of the selected parameters.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// Reading or writing a file failed.
    #[error("{op} `{path}`: {source}")]
    Io {
        /// What was being done ("cannot write checkpoint", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint file is truncated, corrupted or not a safetensors file.
    #[error("checkpoint `{path}` is corrupted or truncated: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint does not fit the model (or optimizer) it is loaded into.
    #[error("checkpoint `{path}` does not match the model:\n{report}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Every difference found.
        report: Box<MismatchReport>,
    },
    /// A checkpoint holds NaN or infinite values.
    #[error(
        "checkpoint `{path}` holds values that are not finite (NaN or infinite) in `{name}`: \
         {count} of {numel}"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The first tensor found holding one.
        name: String,
        /// How many of its values are not finite.
        count: usize,
        /// Its number of values.
        numel: usize,
    },
    /// Optimizer state of another kind, or for other parameters.
    #[error("optimizer state does not fit: {0}")]
    OptimizerState(String),
    /// Any other invalid argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Every difference between a checkpoint and the store it is loaded into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// Names the model has and the checkpoint lacks.
    pub missing: Vec<String>,
    /// Names the checkpoint has and the model lacks.
    pub unexpected: Vec<String>,
    /// `(name, shape in the model, shape in the checkpoint)`.
    pub shapes: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// `(name, dtype in the model, dtype in the checkpoint)`.
    pub dtypes: Vec<(String, String, String)>,
    /// Anything else (for example optimizer kind).
    pub other: Vec<String>,
}

impl MismatchReport {
    /// True if nothing differs.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.shapes.is_empty()
            && self.dtypes.is_empty()
            && self.other.is_empty()
    }
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        if !self.missing.is_empty() {
            lines.push(format!("  missing in checkpoint: {}", self.missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            lines.push(format!("  unexpected in checkpoint: {}", self.unexpected.join(", ")));
        }
        for (name, model, file) in &self.shapes {
            lines.push(format!("  shape of `{name}`: model {model:?} vs checkpoint {file:?}"));
        }
        for (name, model, file) in &self.dtypes {
            lines.push(format!("  dtype of `{name}`: model {model} vs checkpoint {file}"));
        }
        for other in &self.other {
            lines.push(format!("  {other}"));
        }
        f.write_str(&lines.join("\n"))
    }
}
