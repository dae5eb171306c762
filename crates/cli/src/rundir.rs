//! A run directory is a unit: one run writes it, and what it holds always belongs together.
//!
//! - **The checkpoint is the commit.** `checkpoint.safetensors` carries, in its metadata, the
//!   run's configuration and everything a resume needs, and it is written (atomically) before
//!   anything else of an epoch. `metrics.jsonl`, `config.toml` and the plots are views of it,
//!   written after it: after a kill or a full disk they may lag one commit behind, never run
//!   ahead, and the next `--resume` rebuilds them from the checkpoint (a finished run too).
//! - **A run is never overwritten by accident.** `train` refuses a directory that holds a run
//!   unless `--resume` (continue it) or `--force` (replace it). A forced run leaves the old one
//!   untouched until its own first checkpoint, then removes what is left of the old one.
//! - **One process at a time.** The directory is locked (`.tapestry.lock`) while a command
//!   writes it; a second one is refused with a sentence.
//! - **No litter.** Temporary files (`.NAME.tmp-…`) of a killed run are removed at the next
//!   start, under the lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};
use crate::invalid;
use crate::output::create_dir;

/// The lock file of a directory being written.
pub const LOCK_FILE: &str = ".tapestry.lock";

/// A directory locked for writing.
#[derive(Debug)]
pub struct LockedDir {
    path: PathBuf,
    _lock: File,
}

impl LockedDir {
    /// Creates `path` if needed, locks it and removes stale temporary files.
    ///
    /// # Errors
    /// If the directory cannot be created or locked, or another process holds the lock.
    pub fn open(path: &Path) -> Result<Self> {
        create_dir(path)?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CliError::io("lock", path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(invalid!(
                    "{} is being written by another tapestry command; wait for it to finish or \
                     choose another --out",
                    path.display()
                ))
            }
            Err(TryLockError::Error(e)) => return Err(CliError::io("lock", path, e)),
        }
        remove_stale_temporaries(path)?;
        Ok(LockedDir { path: path.to_path_buf(), _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the temporary files (`.NAME.tmp-…`) a killed process left in `dir`.
fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| CliError::io("read", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") && entry.path().is_file() {
            fs::remove_file(entry.path()).map_err(|e| CliError::io("remove", entry.path(), e))?;
        }
    }
    Ok(())
}

/// The files of `dir` that belong to a run of `kind` (`files`), if any is there.
pub fn run_files(dir: &Path, files: &[&str]) -> Vec<String> {
    files.iter().filter(|f| dir.join(f).exists()).map(|f| f.to_string()).collect()
}

/// Removes the files of `dir` with the given names, if there.
pub fn remove_files(dir: &Path, names: &[String]) -> Result<()> {
    for name in names {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::io("remove", path, e)),
        }
    }
    Ok(())
}

/// The sentence refusing to write into `dir`, which holds `files` of an earlier run.
pub fn refuse_existing(dir: &Path, files: &[String], resumable: bool) -> CliError {
    let what = if resumable {
        "pass --resume to continue it, --force to replace it (once the new run has its first \
         checkpoint), or choose another --out"
    } else {
        "pass --force to replace it (once the new results are complete), or choose another --out"
    };
    invalid!("{} already holds results ({}); {what}", dir.display(), files.join(", "))
}
