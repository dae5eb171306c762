//! The one error type of the command: every failure becomes one sentence and exit code 2.

use std::path::PathBuf;

use thiserror::Error;

/// Why a command could not run.
#[derive(Debug, Error)]
pub enum CliError {
    /// An option or configuration value that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// A file that could not be read or written.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "create the directory").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data set could not be built or read.
    #[error(transparent)]
    Data(#[from] tapestry_data::DataError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Mtl(#[from] tapestry_mtl::MtlError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Nn(#[from] tapestry_nn::NnError),
}

impl CliError {
    /// An [`CliError::Io`] for `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io { op, path: path.into(), source }
    }

    /// The message as one line: inner line breaks become `; `, and it ends with a full stop.
    pub fn sentence(&self) -> String {
        one_sentence(&self.to_string())
    }
}

/// Joins the lines of `message` with `; ` and ends it with a full stop.
pub fn one_sentence(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(|l| l.trim().trim_end_matches([':', ';']))
        .filter(|l| !l.is_empty())
        .collect();
    let mut s = parts.join("; ");
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// The command's result type.
pub type Result<T> = std::result::Result<T, CliError>;

/// A [`CliError::Invalid`] from a format string.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::CliError::Invalid(format!($($arg)*)) };
}
