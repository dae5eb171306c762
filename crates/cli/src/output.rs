//! What the command writes. Files, each atomically: the bytes go to a temporary file in the
//! same directory, which is flushed and renamed over the target, so an interrupted run leaves
//! either the old file or the new one, never half of one. And the console: a closed or full
//! standard output (`tapestry train | head -1`, a pager the user quits, `> /dev/full`) stops
//! the printing, never the run.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{CliError, Result};

/// Set once a write to standard output has failed: nothing more is printed there.
static STDOUT_LOST: AtomicBool = AtomicBool::new(false);

/// Set by `--verbose`: a line per training step on standard output.
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Turns the per-step lines of `--verbose` on or off.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// True with `--verbose`.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Prints `text` on standard output. The first failure (a closed pipe, a full disk) says so on
/// standard error, once, and every later call prints nothing: the command goes on.
pub fn print_out(text: &str) {
    if STDOUT_LOST.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        STDOUT_LOST.store(true, Ordering::Relaxed);
        print_err(&format!(
            "tapestry: note: standard output failed ({e}); the command goes on without printing to it.\n"
        ));
    }
}

/// Prints `text` on standard error, ignoring a failure (there is nowhere left to report it).
pub fn print_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// `println!` on standard output through [`print_out`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::print_out(&format!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` through [`print_err`].
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::output::print_err(&format!("{}\n", format_args!($($arg)*))) };
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| CliError::io("write", path, e))?;
        // Errors name the file the user asked for, not the hidden temporary one.
        file.write_all(bytes).map_err(|e| CliError::io("write", path, e))?;
        file.sync_all().map_err(|e| CliError::io("flush", path, e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| CliError::io("write", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and its parents) if needed.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| CliError::io("create the directory", dir, e))
}

/// The JSON lines of `records`, each followed by a newline.
pub fn json_lines(records: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&r.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_names_the_file_not_its_temporary_copy() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing").join("config.toml");
        let err = write_atomic(&target, b"x").unwrap_err().to_string();
        assert!(err.contains(&target.display().to_string()), "{err}");
        assert!(!err.contains(".config.toml.tmp"), "{err}");
    }
}
