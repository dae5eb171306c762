//! `tapestry meta-train` and `tapestry meta-eval`: a short run writes its files and is scored
//! again from its checkpoint with the same numbers; bad settings are one sentence and exit 2
//! before anything is written.

use std::path::Path;
use std::process::{Command, Output};

fn tapestry(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapestry")).args(args).current_dir(cwd).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `steps` table rows of a printed evaluation.
fn table(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn meta_train_writes_a_run_that_meta_eval_scores_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for algo in ["maml", "fomaml", "metasgd", "reptile"] {
        let out = format!("runs/{algo}");
        let args = [
            "meta-train",
            "--algo",
            algo,
            "--iterations",
            "60",
            "--meta-batch",
            "5",
            "--eval-tasks",
            "30",
            "--eval-steps",
            "3",
            "--log-every",
            "20",
            "--threads",
            "1",
            "--out",
            &out,
        ];
        let r = tapestry(&args, d);
        assert!(r.status.success(), "{algo}: {}", text(&r.stderr));
        for f in [
            "config.toml",
            "metrics.jsonl",
            "checkpoint.safetensors",
            "meta_loss.svg",
            "meta_loss.png",
            "adaptation.svg",
            "adaptation.png",
        ] {
            assert!(d.join(&out).join(f).is_file(), "{algo}: {f}");
        }
        let log = std::fs::read_to_string(d.join(&out).join("metrics.jsonl")).unwrap();
        assert_eq!(log.lines().filter(|l| l.contains("\"iteration\"")).count(), 3, "{algo}");
        let trained = table(&text(&r.stdout));
        assert_eq!(trained.len(), 4, "{algo}: {}", text(&r.stdout));
        let e = tapestry(&["meta-eval", "--checkpoint", &out], d);
        assert!(e.status.success(), "{algo}: {}", text(&e.stderr));
        assert_eq!(table(&text(&e.stdout)), trained, "{algo}: meta-eval reproduces the scores");
    }
}

#[test]
fn episodes_train_from_the_shipped_digits() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "meta-train",
        "--benchmark",
        "episodes",
        "--ways",
        "3",
        "--shots",
        "2",
        "--queries",
        "4",
        "--iterations",
        "20",
        "--meta-batch",
        "4",
        "--inner-lr",
        "0.3",
        "--hidden",
        "16",
        "--eval-tasks",
        "10",
        "--eval-steps",
        "2",
        "--log-every",
        "10",
        "--out",
        "ep",
        "-q",
    ];
    let r = tapestry(&args, dir.path());
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(dir.path().join("ep/checkpoint.safetensors").is_file());
}

#[test]
fn bad_meta_settings_are_one_sentence_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["meta-train", "--inner-steps", "0"], "at least one inner step"),
        (&["meta-train", "--algo", "protonet"], "unknown meta-learning algorithm `protonet`"),
        (
            &["meta-train", "--benchmark", "sinusoid-reptile", "--shots", "51"],
            "more than the 50 points",
        ),
        (&["meta-train", "--benchmark", "episodes", "--ways", "6"], "N = 6 ways"),
        (
            &["meta-train", "--benchmark", "episodes", "--ways", "5", "--shots", "400"],
            "fewer than K + Q",
        ),
        (&["meta-train", "--inner-lr", "0"], "inner learning rate must be positive"),
        (&["meta-train", "--meta-batch", "0"], "at least one task"),
        (&["meta-eval", "--checkpoint", "nowhere"], "holds no meta-training run"),
    ];
    for (args, needle) in cases {
        let mut args = args.to_vec();
        if args[0] == "meta-train" {
            args.extend(["--out", "never"]);
        }
        let r = tapestry(&args, d);
        let stderr = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!d.join("never").exists());
}

#[test]
fn a_meta_run_is_not_overwritten_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |extra: &[&str]| {
        let mut args = vec!["meta-train", "--iterations", "5", "--meta-batch", "2"];
        args.extend_from_slice(&["--eval-tasks", "5", "--threads", "1", "-q", "--out", "m"]);
        args.extend_from_slice(extra);
        tapestry(&args, d)
    };
    assert!(run(&[]).status.success());
    let before = std::fs::read(d.join("m/checkpoint.safetensors")).unwrap();
    let again = run(&["--seed", "1"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already holds results"), "{}", text(&again.stderr));
    assert!(std::fs::read(d.join("m/checkpoint.safetensors")).unwrap() == before);
    assert!(run(&["--seed", "1", "--force"]).status.success());
    assert!(std::fs::read(d.join("m/checkpoint.safetensors")).unwrap() != before);
    let config = std::fs::read_to_string(d.join("m/config.toml")).unwrap();
    assert!(config.contains("seed = 1"), "{config}");
}
