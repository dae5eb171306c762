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
    /// Training stopped at a step: where (as the progress line counts), and why.
    #[error("training stopped at step {step}/{steps} of epoch {epoch}/{epochs}: {source}")]
    Stopped {
        /// The step within the epoch, from 1.
        step: u64,
        /// Steps per epoch.
        steps: u64,
        /// The epoch, from 1.
        epoch: u64,
        /// Epochs of the run.
        epochs: u64,
        /// Why.
        source: tapestry_mtl::MtlError,
    },
    /// Stopped by Ctrl-C (SIGINT) or SIGTERM, after writing a checkpoint: the sentence says
    /// where and how to resume.
    #[error("{0}")]
    Interrupted(String),
}

impl CliError {
    /// An [`CliError::Io`] for `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io { op, path: path.into(), source }
    }

    /// The message as one line: inner line breaks become `; `, and it ends with a full stop.
    /// Training stopped by a value that overflowed gets a hint about the learning rate.
    pub fn sentence(&self) -> String {
        use tapestry_mtl::MtlError;
        let cause = match self {
            CliError::Mtl(e) | CliError::Stopped { source: e, .. } => Some(e),
            _ => None,
        };
        let mut text = self.to_string();
        match cause {
            Some(
                MtlError::NonFiniteLoss { .. }
                | MtlError::NonFiniteGradient { .. }
                | MtlError::NonFiniteTaskGradient { .. },
            ) => text.push_str(" (a smaller learning rate, --lr, may keep it finite)"),
            Some(MtlError::Diverged { .. }) => text.push_str(
                " (a smaller learning rate, --lr, may keep it down; --divergence sets the bound, 0 turns it off)",
            ),
            _ => {}
        }
        one_sentence(&text)
    }

    /// The process's exit code: 130 after Ctrl-C or SIGTERM (as a shell reports SIGINT), 2 for
    /// every other failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Interrupted(_) => 130,
            _ => 2,
        }
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

/// A command-line parse error as one sentence (without the `see --help` the caller adds): the
/// message with what clap lists under it (the missing arguments, the valid values, a similar
/// name), without the usage lines.
pub fn clap_sentence(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a command is needed: train, eval, compare or methods".into();
    }
    let text = e.render().to_string();
    let mut lines = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_start_matches('[').trim_end_matches(']'));
    let mut sentence =
        lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
    let rest: Vec<&str> = lines.collect();
    if !rest.is_empty() {
        // "…not provided:" followed by the arguments, one per line; or tips.
        let joined = rest.join(", ");
        if sentence.ends_with(':') {
            sentence.push(' ');
        } else {
            sentence.push_str("; ");
        }
        sentence.push_str(&joined);
    }
    one_sentence(&sentence).trim_end_matches('.').to_string()
}

/// The command's result type.
pub type Result<T> = std::result::Result<T, CliError>;

/// A [`CliError::Invalid`] from a format string.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::CliError::Invalid(format!($($arg)*)) };
}
