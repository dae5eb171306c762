//! What the command-line tests of the exporters, the report and the images data set share:
//! running the binary, reading its output, and finding the external programs they check against.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `tapestry ARGS` in `cwd`.
pub fn tapestry(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapestry"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout; `what` names the command in the failure.
pub fn assert_ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Asserts a clean failure: exit code 2, one sentence on stderr that names `needle`, no panic.
pub fn assert_bad(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("backtrace")
            && !stderr.contains("internal error"),
        "panic text: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(stderr.trim_end().ends_with('.'), "not a sentence: {stderr:?}");
}

/// The first of `TAPESTRY_<var>`, then `candidates`, for which `probe` (its arguments) succeeds,
/// or why there is none.
fn first_that_runs(var: &str, candidates: &[&str], probe: &[&str]) -> Result<String, String> {
    let mut all: Vec<String> = std::env::var(format!("TAPESTRY_{var}")).into_iter().collect();
    all.extend(candidates.iter().map(|c| c.to_string()));
    all.iter()
        .find(|c| Command::new(c).args(probe).output().is_ok_and(|o| o.status.success()))
        .cloned()
        .ok_or_else(|| format!("none of {all:?} runs `{}`", probe.join(" ")))
}

/// A Python that imports every module of `modules` (`TAPESTRY_PYTHON`, `python3`,
/// `/usr/bin/python3`), or why there is none.
pub fn python_with(modules: &str) -> Result<String, String> {
    let import = format!("import {modules}");
    first_that_runs("PYTHON", &["python3", "/usr/bin/python3"], &["-c", &import])
}

/// A headless Chromium (`TAPESTRY_CHROMIUM`, `chromium`, `/usr/bin/chromium`), or why there is
/// none.
pub fn chromium() -> Result<String, String> {
    first_that_runs("CHROMIUM", &["chromium", "/usr/bin/chromium"], &["--version"])
}

/// `found`, or, without it, `None` after printing why the check is skipped; a panic instead when
/// the environment variable `require` is set (`.ci/run` sets it, so there nothing skips).
pub fn required(found: Result<String, String>, require: &str) -> Option<String> {
    match found {
        Ok(program) => Some(program),
        Err(why) if std::env::var_os(require).is_none() => {
            println!("skipped: {why}");
            None
        }
        Err(why) => panic!("{require} is set, but {why}"),
    }
}
