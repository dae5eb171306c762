//! `tapestry finetune`: a trained multi-task trunk beats a random one at small K, a frozen trunk
//! stays bit for bit what the run saved, the same seed prints the same numbers, and every bad
//! input is one sentence and exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tapestry_nn::checkpoint::Checkpoint;

fn tapestry(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapestry")).args(args).current_dir(cwd).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a clean failure: exit code 2 and one sentence on stderr that names `needle`.
fn assert_bad(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.trim_end().ends_with('.'), "not a sentence: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
}

/// A short hard-sharing run on MultiDigits (all three tasks, GradNorm), trained once for every
/// test of this file.
fn mtl_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let args = ["train", "--epochs", "6", "--limit", "4000", "--threads", "1", "-q"];
        let out = tapestry(&[&args[..], &["--out", "mtl"]].concat(), dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let run = dir.path().join("mtl");
        (dir, run)
    })
    .1
}

/// The test accuracies `finetune` prints, one per run, in order.
fn accuracies(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter_map(|l| l.split("test accuracy ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn a_multi_task_trunk_beats_a_random_one_at_ten_shots() {
    let run = mtl_run().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "finetune",
        "--from",
        &format!("mtl={run},scratch"),
        "--task",
        "left_parity",
        "--shots",
        "10",
        "--seed",
        "0,1,2",
        "--threads",
        "1",
    ];
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Seed by seed: mtl, then scratch.
    let acc = accuracies(&stdout);
    assert_eq!(acc.len(), 6, "{stdout}");
    let mtl: Vec<f64> = acc.iter().step_by(2).copied().collect();
    let scratch: Vec<f64> = acc.iter().skip(1).step_by(2).copied().collect();
    assert!(mean(&mtl) > mean(&scratch) + 0.02, "mtl {mtl:?} against scratch {scratch:?}");
    assert!(stdout.contains("mean ± sd over 3 seed(s)"), "{stdout}");
}

/// The tensors named `prefix*` of a checkpoint file, by name.
fn tensors(file: &Path, prefix: &str) -> Vec<(String, Vec<f32>)> {
    let c = Checkpoint::read(file).unwrap();
    c.names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| (n.to_string(), c.tensor(n).unwrap().as_slice().to_vec()))
        .collect()
}

#[test]
fn a_frozen_trunk_is_left_as_the_run_saved_it_and_a_trained_one_is_not() {
    let run = mtl_run();
    let dir = tempfile::tempdir().unwrap();
    let saved = tensors(&run.join("checkpoint.safetensors"), "trunk.");
    assert_eq!(saved.len(), 4, "two linear layers");
    for (trunk_lr, out) in [("0", "frozen"), ("0.001", "tuned")] {
        let args = [
            "finetune",
            "--from",
            run.to_str().unwrap(),
            "--task",
            "left_ge5",
            "--shots",
            "5",
            "--trunk-lr",
            trunk_lr,
            "--threads",
            "1",
            "--out",
            out,
        ];
        let r = tapestry(&args, dir.path());
        assert!(r.status.success(), "{}", text(&r.stderr));
        let file = dir.path().join(out).join("checkpoint.safetensors");
        let trunk = tensors(&file, "trunk.");
        let head = tensors(&file, "heads.left_ge5.");
        assert_eq!(head.len(), 2, "a fresh head for the new task");
        assert_eq!(tensors(&file, "heads.left_digit").len(), 0, "the old heads are gone");
        let names = |t: &[(String, Vec<f32>)]| t.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&trunk), names(&saved));
        if out == "frozen" {
            assert_eq!(trunk, saved, "the frozen trunk changed");
        } else {
            assert!(trunk.iter().zip(&saved).all(|(a, b)| a.1 != b.1), "a layer did not train");
        }
        assert!(dir.path().join(out).join("finetune.json").is_file());
    }
}

#[test]
fn the_same_seed_prints_the_same_numbers_and_another_seed_does_not() {
    let run = mtl_run().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let go = |seed: &str| {
        let args = [
            "finetune",
            "--from",
            &run,
            "--task",
            "right_parity",
            "--shots",
            "3",
            "--seed",
            seed,
            "--trunk-lr",
            "1e-3",
            "--steps",
            "30",
            "--threads",
            "1",
        ];
        let out = tapestry(&args, dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let first = go("4");
    assert_eq!(first, go("4"));
    assert_ne!(accuracies(&first), accuracies(&go("5")));
}

#[test]
fn bad_inputs_are_one_sentence_and_exit_2() {
    let run = mtl_run().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let finetune = |from: &str, task: &str, shots: &str| {
        let args = ["finetune", "--from", from, "--task", task, "--shots", shots, "--threads", "1"];
        tapestry(&args, d)
    };
    assert_bad(
        &finetune("runs/none", "left_parity", "5"),
        "run directory runs/none does not exist",
    );
    assert_bad(&finetune(&run, "middle_digit", "5"), "unknown task `middle_digit`");
    assert_bad(&finetune(&run, "left_parity", "6000"), "K = 6000 shots per class");
    assert_bad(&finetune(&run, "left_digit", "5"), "trained task `left_digit` already");
    assert_bad(&finetune(&run, "digit_sum", "5"), "not a classification");
    assert_bad(&finetune(&run, "left_parity", "0"), "at least 1");
    let args = ["train", "--tasks", "left_digit,middle_digit", "--threads", "1", "--out", "x"];
    assert_bad(&tapestry(&args, d), "data set `multidigits` has no task `middle_digit`");
    // A meta-trained network on the 8x8 UCI digits: its trunk reads 64 pixels, not 144.
    let meta = [
        "meta-train",
        "--benchmark",
        "episodes",
        "--pool",
        "digits",
        "--widths",
        "256,128",
        "--iterations",
        "2",
        "--meta-batch",
        "2",
        "--eval-tasks",
        "2",
        "--eval-steps",
        "1",
        "--threads",
        "1",
        "-q",
        "--out",
        "digits8",
    ];
    assert!(tapestry(&meta, d).status.success());
    assert_bad(
        &finetune("digits8", "left_parity", "5"),
        "does not fit the new task's inputs, samples of shape [1, 12, 12]",
    );
    // Its default widths [40, 40] are no MLP trunk of `tapestry train`.
    let square: Vec<&str> =
        meta.iter().map(|a| if *a == "256,128" { "40,40" } else { a }).collect();
    let square = [&square[..square.len() - 1], &["square"]].concat();
    assert!(tapestry(&square, d).status.success());
    assert_bad(&finetune("square", "left_parity", "5"), "hidden widths [40, 40]");
    // A run on another data set: the trunk of a three-column table cannot read 144 pixels.
    let rows: String =
        (0..40).map(|i| format!("{},{},{},{}\n", i % 7, i % 5, i % 3, i % 2)).collect();
    std::fs::write(d.join("table.csv"), format!("a,b,c,label\n{rows}")).unwrap();
    let args = [
        "train",
        "--dataset",
        "csv",
        "--data-path",
        "table.csv",
        "--method",
        "ew",
        "--epochs",
        "1",
        "--threads",
        "1",
        "-q",
        "--out",
        "table",
    ];
    let r = tapestry(&args, d);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let args = [
        "finetune",
        "--from",
        "table",
        "--dataset",
        "multidigits",
        "--task",
        "left_parity",
        "--threads",
        "1",
    ];
    assert_bad(&tapestry(&args, d), "`trunk.1.weight` is [256, 3] in the checkpoint");
}
