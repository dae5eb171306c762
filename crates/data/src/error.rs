//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading or building a data set.
///
/// Every variant that comes from a file names the file; CSV errors also name the line and the
/// column, so the message alone tells a user where to look.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read (missing, unreadable, or not valid gzip).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes of an IDX file are not a magic number this reader accepts.
    #[error("{}: bad magic number 0x{found:08x} ({reason})", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The four bytes read, big-endian.
        found: u32,
        /// What was expected instead.
        reason: String,
    },
    /// The file ends before the data its header announces.
    #[error("{}: truncated: {what} needs {expected} bytes, the file has {found}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The part that is short (`"header"`, `"data"`).
        what: &'static str,
        /// The number of bytes needed.
        expected: usize,
        /// The number of bytes present.
        found: usize,
    },
    /// The file is readable but its content does not fit (wrong sizes, counts or values).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A CSV cell that cannot be used as asked.
    #[error("{}, line {line}, column {column}: {message}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The 1-based line number in the file (the header, if any, is line 1).
        line: usize,
        /// The column: its 1-based index and, when the file has a header, its name.
        column: String,
        /// What is wrong with the cell.
        message: String,
    },
    /// A configuration that cannot work (batch size 0, a canvas too small, an unknown column).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Arrays handed to [`MultiTaskDataset::new`](crate::MultiTaskDataset::new) that do not fit
    /// together.
    #[error("inconsistent data set {dataset:?}: {message}")]
    Inconsistent {
        /// The data set's name.
        dataset: String,
        /// What does not fit.
        message: String,
    },
    /// A data set name that [`DatasetConfig::by_name`](crate::DatasetConfig::by_name) does not
    /// know.
    #[error("unknown data set {0:?}; known: multidigits, multifashion, scenes, csv, images")]
    UnknownDataset(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, DataError>;
