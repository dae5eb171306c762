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
    /// Training stopped by a value that overflowed gets a hint about the learning rate.
    pub fn sentence(&self) -> String {
        use tapestry_mtl::MtlError;
        let hint = matches!(
            self,
            CliError::Mtl(
                MtlError::NonFiniteLoss { .. }
                    | MtlError::NonFiniteGradient { .. }
                    | MtlError::NonFiniteTaskGradient { .. }
            )
        );
        let mut text = self.to_string();
        if hint {
            text.push_str(" (a smaller learning rate, --lr, may keep it finite)");
        }
        one_sentence(&text)
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
