//! Runs the `tapestry` binary on tiny settings: what train, eval and compare write, and one
//! sentence with exit code 2 for every kind of bad input.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn tapestry(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapestry"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a clean failure: exit code 2, one line on stderr that names `needle`, and no panic.
fn assert_bad(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("backtrace")
            && !stderr.contains("internal error"),
        "panic text: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.to_lowercase().contains(&needle.to_lowercase()), "{needle:?} not in {stderr:?}");
    assert!(
        stderr.trim_end().ends_with('.') || stderr.contains("--help"),
        "not a sentence: {stderr:?}"
    );
}

/// No temporary file (`.name.tmp-*`) anywhere under `dir`.
fn assert_no_temp_files(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "temporary file left behind: {}", entry.path().display());
        if entry.path().is_dir() {
            assert_no_temp_files(&entry.path());
        }
    }
}

const TINY: &[&str] = &["--limit", "256", "--epochs", "1", "--batch-size", "64", "--threads", "1"];

#[test]
fn train_writes_log_plots_checkpoint_and_eval_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--out", "run", "--method", "mgda", "--epochs", "2"];
    args.extend_from_slice(&TINY[..2]);
    args.extend_from_slice(&TINY[4..]);
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("left_digit") && stdout.contains("accuracy"), "{stdout}");
    let run = dir.path().join("run");
    // Exactly the log, checkpoint and configuration, and every plot as SVG and as PNG.
    let plots = ["loss", "weights", "metrics", "cosines", "cosines_over_time"];
    let mut expected: Vec<String> = ["metrics.jsonl", "checkpoint.safetensors", "config.toml"]
        .iter()
        .map(|f| f.to_string())
        .chain(plots.iter().flat_map(|p| [format!("{p}.svg"), format!("{p}.png")]))
        .collect();
    expected.sort();
    let mut files: Vec<String> = fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    files.sort();
    assert_eq!(files, expected);
    for plot in plots {
        let s = fs::read_to_string(run.join(format!("{plot}.svg"))).unwrap();
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{plot}.svg is not a whole SVG"
        );
        let png = fs::read(run.join(format!("{plot}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "{plot}.png");
    }
    // metrics.jsonl: a run header, 4 steps per epoch (256 / 64), 2 epochs, every line JSON.
    let log = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records[0]["kind"], "run");
    let steps: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    let epochs: Vec<_> = records.iter().filter(|r| r["kind"] == "epoch").collect();
    assert_eq!((steps.len(), epochs.len()), (8, 2));
    let weights: Vec<f64> =
        steps[0]["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
    assert_eq!(weights.len(), 3);
    assert!(
        (weights.iter().sum::<f64>() - 1.0).abs() < 1e-6,
        "MGDA weights lie on the simplex: {weights:?}"
    );
    let cosines = steps[0]["cosines"].as_array().unwrap();
    assert_eq!(cosines.len(), 9);
    assert!((cosines[0].as_f64().unwrap() - 1.0).abs() < 1e-4, "a gradient's cosine with itself");
    let test = epochs[1]["test"].as_array().unwrap();
    assert_eq!(test[0]["metric"], "accuracy");
    assert_eq!(test[2]["metric"], "RMSE");
    assert_no_temp_files(dir.path());

    // A config.toml edited after the run.
    fs::create_dir(dir.path().join("changed")).unwrap();
    fs::copy(run.join("checkpoint.safetensors"), dir.path().join("changed/checkpoint.safetensors"))
        .unwrap();
    let config =
        fs::read_to_string(run.join("config.toml")).unwrap().replace("hidden = 128", "hidden = 64");
    fs::write(dir.path().join("changed/config.toml"), config).unwrap();
    // The checkpoint records its own configuration: eval uses it and says that config.toml
    // differs.
    let out = tapestry(&["eval", "--checkpoint", "changed", "--threads", "1"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("differs from the configuration recorded"));
    let acc = test[0]["value"].as_f64().unwrap();
    assert!(text(&out.stdout).contains(&format!("{acc:.4}")), "{}", text(&out.stdout));

    // eval on the run directory and on the file reproduce the last epoch's test metrics.
    for target in ["run", "run/checkpoint.safetensors"] {
        let out = tapestry(&["eval", "--checkpoint", target, "--threads", "1"], dir.path());
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let acc = test[0]["value"].as_f64().unwrap();
        assert!(
            stdout.contains(&format!("{acc:.4}")),
            "eval does not reproduce {acc:.4}: {stdout}"
        );
    }
}

#[test]
fn train_with_affinity_logs_and_plots_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "--out",
        "run",
        "--method",
        "ew",
        "--limit",
        "128",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--affinity",
        "--affinity-every",
        "2",
        "-q",
    ];
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let run = dir.path().join("run");
    let log = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let matrix = |r: &serde_json::Value| -> Option<Vec<f64>> {
        Some(r["affinity"].as_array()?.iter().map(|v| v.as_f64().unwrap()).collect())
    };
    let steps: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    assert_eq!(steps.len(), 4);
    let measured: Vec<Vec<f64>> = steps.iter().filter_map(|r| matrix(r)).collect();
    assert_eq!(measured.len(), 2, "steps 0 and 2");
    assert!(matrix(steps[1]).is_none() && measured[0].len() == 9);
    let epoch = records.iter().find(|r| r["kind"] == "epoch").unwrap();
    let mean = matrix(epoch).expect("the epoch's mean affinity");
    for (k, m) in mean.iter().enumerate() {
        assert!((m - (measured[0][k] + measured[1][k]) / 2.0).abs() < 1e-12, "{mean:?}");
    }
    let svg = fs::read_to_string(run.join("affinity.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("task affinity"), "a heatmap");
    assert!(run.join("affinity.png").is_file(), "and its PNG");
    assert!(fs::read_to_string(run.join("config.toml")).unwrap().contains("affinity = true"));
}

#[test]
fn compare_prints_delta_p_table_and_writes_the_tradeoff_plot() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "compare",
        "--methods",
        "mgda-ub,gradnorm",
        "--out",
        "cmp",
        "--quiet",
        "--cosines",
        "false",
    ];
    args.extend_from_slice(TINY);
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Δp"), "{stdout}");
    for method in ["ew", "mgda-ub", "gradnorm"] {
        assert!(stdout.lines().any(|l| l.starts_with(method)), "no row for {method}: {stdout}");
        assert!(dir.path().join("cmp").join(method).join("checkpoint.safetensors").is_file());
    }
    let ew_row = stdout.lines().find(|l| l.starts_with("ew ")).unwrap();
    assert!(ew_row.contains("+0.00"), "EW's Δp against itself is 0: {ew_row}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("cmp/compare.json")).unwrap())
            .unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 3);
    assert!(dir.path().join("cmp/tradeoff.svg").is_file());
    assert!(dir.path().join("cmp/tradeoff.png").is_file());
    assert_no_temp_files(dir.path());
}

#[test]
fn train_reads_a_toml_config_and_options_override_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("run.toml"),
        "method = \"ew\"\nepochs = 3\nlimit = 128\nbatch_size = 64\nthreads = 1\noptimizer = \"sgd\"\nlr = 0.01\n",
    )
    .unwrap();
    let out = tapestry(
        &["train", "--config", "run.toml", "--epochs", "1", "--out", "r", "--quiet"],
        dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let saved = fs::read_to_string(dir.path().join("r/config.toml")).unwrap();
    assert!(
        saved.contains("method = \"ew\"")
            && saved.contains("epochs = 1")
            && saved.contains("optimizer = \"sgd\""),
        "{saved}"
    );
    let log = fs::read_to_string(dir.path().join("r/metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"kind\":\"step\"")).count(), 2);
}

#[test]
fn bad_input_gives_one_sentence_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("bad.toml"), "epochs = \"many\"\n").unwrap();
    fs::write(d.join("unknown.toml"), "epoch = 3\n").unwrap();
    fs::write(d.join("bad.csv"), "a,b,target\n1,2,0\n3,x,1\n").unwrap();
    fs::create_dir(d.join("fake")).unwrap();
    fs::write(d.join("fake/checkpoint.safetensors"), b"not a checkpoint at all").unwrap();
    fs::write(d.join("fake/config.toml"), "limit = 16\n").unwrap();
    fs::write(d.join("one.csv"), "a,b,target\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n").unwrap();
    fs::create_dir(d.join("noconfig")).unwrap();
    fs::write(d.join("noconfig/checkpoint.safetensors"), b"x").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--method", "no-such-method"], "unknown weighting method"),
        (&["train", "--optimizer", "lbfgs"], "unknown optimizer"),
        (&["train", "--gradnorm-optimizer", "rmsprop"], "unknown GradNorm optimizer"),
        (&["train", "--dataset", "imagenet"], "unknown data set"),
        (&["train", "--model", "resnet"], "unknown model"),
        (&["train", "--batch-size", "0"], "batch size"),
        (&["train", "--epochs", "0"], "epochs"),
        (&["train", "--limit", "0"], "limit"),
        (&["train", "--lr=-1"], "learning rate"),
        (&["train", "--lr", "0"], "learning rate"),
        (&["train", "--epochs", "abc"], "--epochs"),
        (&["train", "--bogus"], "--bogus"),
        (&["train", "--config", "missing.toml"], "missing.toml"),
        (&["train", "--config", "bad.toml"], "bad.toml"),
        (&["train", "--config", "unknown.toml"], "epoch"),
        (&["train", "--model", "lenet", "--limit", "16"], "lenet"),
        (&["train", "--dataset", "scenes", "--model", "mlp", "--limit", "16"], "per-pixel"),
        (&["train", "--dataset", "csv"], "csv"),
        (&["train", "--dataset", "csv", "--data-path", "nothere.csv"], "nothere.csv"),
        (&["train", "--dataset", "csv", "--data-path", "bad.csv"], "bad.csv"),
        (&["train", "--dataset", "multifashion", "--data-path", "fake"], "fake"),
        (&["train", "--out", "bad.toml", "--limit", "16"], "not a directory"),
        (&["eval", "--checkpoint", "nowhere"], "does not exist"),
        (&["eval", "--checkpoint", "noconfig"], "corrupted"),
        (&["eval", "--checkpoint", "fake"], "corrupted"),
        (&["compare", "--methods", "ew,foo"], "`foo`"),
        (&["train", "--hidden", "0"], "hidden width"),
        (&["train", "--hidden", "100000000"], "hidden width"),
        (&["train", "--target", "a"], "csv"),
        (
            &[
                "train",
                "--limit",
                "128",
                "--method",
                "ew",
                "--optimizer",
                "sgd",
                "--lr",
                "1e6",
                "-q",
                "--out",
                "nan",
            ],
            "training stopped",
        ),
        (&["compare", "--batch-size", "0"], "batch size"),
        (
            &["train", "--method", "gradnorm", "--param", "alpha=-1"],
            "alpha must lie in [0, ∞), got -1",
        ),
        (&["train", "--method", "gradnorm", "--param", "lr=-1"], "lr must lie in (0, ∞), got -1"),
        (&["train", "--method", "gradnorm", "--param", "lr=0"], "lr must lie in (0, ∞), got 0"),
        (&["train", "--threads", "5000"], "at most 1024 threads, got 5000"),
        (&["train", "--arch", "tree"], "unknown architecture `tree`"),
        (
            &["train", "--arch", "soft", "--soft-lambda=-1"],
            "soft sharing's lambda must be a number >= 0",
        ),
        (&["train", "--arch", "soft", "--soft-lambda", "inf"], "soft sharing's lambda"),
        (&["train", "--trace-norm", "nan"], "the trace norm's lambda"),
        (&["train", "--task-relation", "0.1", "--task-relation-every", "0"], "update interval"),
        (&["train", "--soft-layers", "1.weight"], "only apply to --arch soft"),
        (
            &[
                "train",
                "--arch",
                "soft",
                "--trace-norm",
                "0.1",
                "--trace-norm-layer",
                "9.weight",
                "--limit",
                "16",
                "--out",
                "never",
            ],
            "task `left_digit` has no `towers.left_digit.9.weight`",
        ),
        (
            &[
                "train",
                "--arch",
                "soft",
                "--soft-layers",
                "5.weight",
                "--limit",
                "16",
                "--out",
                "never",
            ],
            "couples layer `5.weight`, which the towers lack",
        ),
        (
            &["train", "--arch", "soft", "--method", "mgda", "--limit", "16", "--out", "never"],
            "shares none",
        ),
        (
            &[
                "train",
                "--arch",
                "cross-stitch",
                "--method",
                "mgda-ub",
                "--limit",
                "16",
                "--out",
                "never",
            ],
            "one per task",
        ),
        (&["train", "--trace-norm", "0.1", "--limit", "16", "--out", "never"], "different shapes"),
        (
            &[
                "train",
                "--dataset",
                "csv",
                "--data-path",
                "one.csv",
                "--arch",
                "soft",
                "--out",
                "never",
            ],
            "has one task",
        ),
        (&["compare", "--archs", "hard,tree"], "unknown architecture `tree`"),
        (&["train", "--method", "dwa", "--param", "tau=-1", "--out", "never"], "tau must lie in"),
        (
            &["train", "--method", "cagrad", "--param", "c=-0.5", "--out", "never"],
            "cagrad: c must lie in [0, ∞), got -0.5",
        ),
        (
            &["train", "--method", "gradvac", "--param", "beta=1.5", "--out", "never"],
            "gradvac: beta must lie in [0, 1], got 1.5",
        ),
        (&["train", "--method", "dwa", "--param", "c=0.5", "--out", "never"], "takes tau"),
        (&["train", "--method", "famo", "--param", "w_lr=0", "--out", "never"], "w_lr must lie in"),
        (
            &["train", "--method", "db-mtl", "--param", "beta=1", "--out", "never"],
            "beta must lie in",
        ),
        (&["train", "--method", "ew", "--param", "tau", "--out", "never"], "NAME=VALUE"),
        (&["train", "--method", "dwa", "--param", "tau=x", "--out", "never"], "not a number"),
        (&["train", "--param", "alpha=1", "--param", "alpha=2", "--out", "never"], "twice"),
        (
            &[
                "train",
                "--method",
                "nash-mtl",
                "--param",
                "update_weights_every=2",
                "--out",
                "never",
            ],
            "nash-mtl: no hyper-parameter `update_weights_every`; it takes none",
        ),
        (&["compare", "--methods", "ew,mgda", "--param", "tau=1", "--out", "never"], "none of"),
        (&["compare", "--methods", "dwa", "--param", "tau=0", "--out", "never"], "tau must lie"),
        (&["train", "--affinity", "--affinity-every", "0"], "affinity's interval"),
        (&["train", "--affinity-lr=-1"], "affinity's learning rate"),
        (
            &[
                "train",
                "--arch",
                "soft",
                "--method",
                "ew",
                "--affinity",
                "--limit",
                "16",
                "--out",
                "never",
            ],
            "task affinity",
        ),
        (&["train", "--schedule", "often"], "unknown schedule `often`"),
        (&["train", "--schedule", "round-robin"], "nothing to weigh"),
        (&["train", "--method", "ew", "--proportions", "1,2"], "sampled schedule"),
        (
            &["train", "--method", "ew", "--schedule", "sampled", "--proportions=1,0,1"],
            "positive numbers, got 0",
        ),
        (
            &[
                "train",
                "--method",
                "ew",
                "--schedule",
                "sampled",
                "--proportions",
                "1,2",
                "--limit",
                "16",
                "--out",
                "never",
            ],
            "2 values for 3 tasks",
        ),
        (&["train", "--accumulate", "0"], "at least 1 step per update"),
        (
            &[
                "train",
                "--multi-input",
                "multidigits:left_digit,fashion:class",
                "--method",
                "mgda-ub",
            ],
            "one representation shared by every task",
        ),
        (&["train", "--multi-input", "multidigits:left_digit"], "at least two"),
        (
            &["train", "--multi-input", "multidigits:left_digit,multidigits:left_digit"],
            "`left_digit` twice",
        ),
        (
            &["train", "--multi-input", "multidigits:sum,multidigits:left_digit", "--out", "never"],
            "no task `sum`",
        ),
        (
            &[
                "train",
                "--dataset",
                "scenes",
                "--multi-input",
                "multidigits:left_digit,fashion:class",
            ],
            "--dataset does not apply",
        ),
    ];
    for (args, needle) in cases {
        let out = tapestry(args, d);
        assert_bad(&out, needle);
    }
    assert!(!d.join("never").exists(), "a refused run wrote nothing");
    assert_no_temp_files(d);
}

#[test]
fn every_architecture_trains_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, extra) in [
        ("soft", &["--method", "ew", "--soft-lambda", "0.01", "--trace-norm", "0.001"][..]),
        (
            "cross-stitch",
            &["--method", "mgda", "--task-relation", "0.01", "--task-relation-every", "2"][..],
        ),
        ("hard", &["--method", "uw"][..]),
    ] {
        let mut args = vec!["train", "--arch", arch, "--out", arch, "--quiet"];
        args.extend_from_slice(extra);
        args.extend_from_slice(TINY);
        let out = tapestry(&args, dir.path());
        assert!(out.status.success(), "{arch}: {}", text(&out.stderr));
        let run = dir.path().join(arch);
        assert!(run.join("checkpoint.safetensors").is_file(), "{arch}");
        let out = tapestry(&["eval", "--checkpoint", arch], dir.path());
        assert!(out.status.success(), "{arch} eval: {}", text(&out.stderr));
        let log = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        if arch == "soft" {
            assert!(log.contains("\"aux_loss\""), "the penalty is logged");
        }
        if arch == "cross-stitch" {
            assert!(log.contains("task_relation.omega") && run.join("task_relation.svg").is_file());
            assert!(run.join("task_relation.png").is_file(), "{arch}");
        }
        if arch == "hard" {
            assert!(log.contains("uw.log_var"), "uncertainty weighting's variances are logged");
        }
    }
    // compare across architectures: hard-sharing EW is the baseline; MGDA skips soft sharing.
    let mut args = vec![
        "compare",
        "--methods",
        "ew,mgda",
        "--archs",
        "soft,cross-stitch",
        "--out",
        "cmp",
        "--quiet",
    ];
    args.extend_from_slice(TINY);
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "compare: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("skipping mgda on soft: soft sharing shares no parameter"), "{stdout}");
    for row in ["hard-ew", "hard-mgda", "soft-ew", "cross-stitch-ew", "cross-stitch-mgda"] {
        assert!(stdout.lines().any(|l| l.starts_with(row)), "no row {row}: {stdout}");
    }
    let first = stdout.lines().find(|l| l.starts_with("hard-ew")).unwrap();
    assert!(first.contains("+0.00"), "{first}");
}

#[test]
fn help_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = tapestry(&["train", "--help"], dir.path());
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--method"));
}

/// The checksum a checkpoint carries in its header (over names, shapes, data and metadata).
fn checkpoint_checksum(path: &Path) -> String {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"]["tapestry.checksum"].as_str().unwrap().to_string()
}

/// The step records of a run's log (losses, weights, cosines: no wall-clock times).
fn step_records(path: &Path) -> Vec<String> {
    let log = fs::read_to_string(path).unwrap();
    log.lines().filter(|l| l.contains("\"kind\":\"step\"")).map(String::from).collect()
}

#[test]
fn same_seed_same_run_other_seed_another() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &str, seed: &str| {
        let mut args = vec!["train", "--out", out, "--quiet", "--seed", seed];
        args.extend_from_slice(TINY);
        let o = tapestry(&args, dir.path());
        assert!(o.status.success(), "stderr: {}", text(&o.stderr));
        let run = dir.path().join(out);
        (
            checkpoint_checksum(&run.join("checkpoint.safetensors")),
            step_records(&run.join("metrics.jsonl")),
        )
    };
    let a = run("a", "3");
    assert_eq!(a.1.len(), 4);
    assert!(a == run("b", "3"), "the same seed gave different runs");
    let c = run("c", "4");
    assert!(a.0 != c.0 && a.1 != c.1, "another seed gave the same run");
}

#[test]
fn scenes_with_multitasknet_and_a_multi_target_csv_train() {
    let dir = tempfile::tempdir().unwrap();
    let out = tapestry(
        &["train", "--dataset", "scenes", "--limit", "32", "--batch-size", "16", "--epochs", "1"],
        dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("model multitasknet"), "{stdout}");
    for metric in ["mIoU", "MAE", "accuracy"] {
        assert!(stdout.contains(metric), "{metric} missing: {stdout}");
    }

    let mut csv = String::from("a,b,c,label,value\n");
    for i in 0..200 {
        let (a, b, c) = ((i % 7) as f32 - 3.0, (i % 5) as f32, (i % 3) as f32);
        let label = if i % 11 == 0 { "NA".to_string() } else { u8::from(a > 0.0).to_string() };
        csv.push_str(&format!("{a},{b},{c},{label},{}\n", b + c));
    }
    fs::write(dir.path().join("table.csv"), csv).unwrap();
    let args = [
        "train",
        "--dataset",
        "csv",
        "--data-path",
        "table.csv",
        "--target",
        "label",
        "--target",
        "value:regression",
        "--epochs",
        "2",
        "--out",
        "csv",
        "--quiet",
    ];
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let log = fs::read_to_string(dir.path().join("csv/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["tasks"], serde_json::json!(["label", "value"]));
    assert_eq!(first["metrics"], serde_json::json!(["accuracy", "RMSE"]));
    let out = tapestry(&["eval", "--checkpoint", "csv"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let bad = tapestry(
        &[
            "train",
            "--dataset",
            "csv",
            "--data-path",
            "table.csv",
            "--target",
            "nope",
            "--out",
            "n",
        ],
        dir.path(),
    );
    assert_bad(&bad, "nope");
}

/// Multi-Fashion with the LeNet of Pareto MTL; skipped (with a note) without the Debian package
/// `dataset-fashion-mnist`.
#[test]
fn multifashion_trains_the_lenet() {
    if !Path::new("/usr/share/datasets/fashion-mnist").is_dir() {
        eprintln!("skipped: /usr/share/datasets/fashion-mnist is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--dataset", "multifashion", "--cosines", "false"];
    args.extend_from_slice(TINY);
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("model lenet") && stdout.contains("linear 500→50"), "{stdout}");
    assert!(stdout.contains("top_left") && stdout.contains("bottom_right"), "{stdout}");
}

/// An MNIST-format folder of 28x28 images whose mean brightness follows the label.
fn fake_mnist(dir: &Path, train: usize, test: usize) {
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
        let pixels: Vec<u8> = (0..n * 784)
            .map(|p| ((p * 31 % 97) as u8).wrapping_add(labels[p / 784] * 15))
            .collect();
        let path = |what: &str| dir.join(format!("{prefix}-{what}"));
        tapestry_data::write_idx(path("images-idx3-ubyte"), &[n, 28, 28], &pixels, false).unwrap();
        tapestry_data::write_idx(path("labels-idx1-ubyte"), &[n], &labels, false).unwrap();
    }
}

/// Two tasks from two data sets (MultiDigits' left digit, 12x12, and Fashion-MNIST's class,
/// 28x28) through one trunk: each is trained and tested on its own data, eval reads the run
/// back, and round-robin with accumulation logs the task each step trained.
#[test]
fn a_multi_input_run_trains_and_tests_each_task_on_its_own_data() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("fashion")).unwrap();
    fake_mnist(&dir.path().join("fashion"), 150, 90);
    let mut args = vec![
        "train",
        "--multi-input",
        "multidigits:left_digit,fashion:class",
        "--data-path",
        "fashion",
        "--method",
        "mgda",
        "--out",
        "mi",
    ];
    args.extend_from_slice(&[
        "--limit",
        "120",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--threads",
        "1",
    ]);
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // 120 + 120 training samples, 120 + 90 test samples, padded to 28x28.
    assert!(stdout.contains("(240 train / 210 test samples of shape [1, 28, 28])"), "{stdout}");
    assert!(stdout.contains("left_digit") && stdout.contains("class"), "{stdout}");
    let log = fs::read_to_string(dir.path().join("mi/metrics.jsonl")).unwrap();
    let epoch: serde_json::Value =
        serde_json::from_str(log.lines().find(|l| l.contains("\"kind\":\"epoch\"")).unwrap())
            .unwrap();
    let test = epoch["test"].as_array().unwrap();
    assert_eq!(test.len(), 2);
    assert!(test.iter().all(|t| t["value"].as_f64().is_some()), "{test:?}");
    assert_eq!(epoch["steps"], 4, "ceil(120 / 32) steps: both sets have 120 samples");

    let out = tapestry(&["eval", "--checkpoint", "mi"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("(210 samples)") && stdout.contains("class"), "{stdout}");
    // The test losses eval prints are the run's last epoch's.
    let loss = test[1]["loss"].as_f64().unwrap();
    assert!(stdout.contains(&format!("{loss:.4}")), "{loss} not in {stdout}");

    let mut args = vec![
        "train",
        "--multi-input",
        "multidigits:left_digit,fashion:class",
        "--data-path",
        "fashion",
        "--method",
        "ew",
        "--schedule",
        "round-robin",
        "--accumulate",
        "2",
        "--out",
        "rr",
        "-q",
    ];
    args.extend_from_slice(&[
        "--limit",
        "120",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--threads",
        "1",
    ]);
    let out = tapestry(&args, dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let steps: Vec<serde_json::Value> = fs::read_to_string(dir.path().join("rr/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "step")
        .collect();
    assert_eq!(steps.len(), 4);
    for (s, r) in steps.iter().enumerate() {
        assert_eq!(r["trained"], serde_json::json!([s % 2]), "{r}");
        assert!(r["losses"][1 - s % 2].is_null() && r["losses"][s % 2].is_f64(), "{r}");
    }
}

/// A run killed mid-way leaves every output file whole: the log parses line by line, each plot
/// is a complete SVG, and the checkpoint loads. The kill comes on an event, not after a time:
/// the moment the first epoch's log appears, which is when the run goes on to write its
/// checkpoint and plots. Wherever it lands, every file that exists under its final name must be
/// whole (each is written to a temporary name and renamed).
/// The first step's task weights in a run's log.
fn first_weights(run: &Path) -> Vec<f64> {
    let step: serde_json::Value =
        serde_json::from_str(&step_records(&run.join("metrics.jsonl"))[0]).unwrap();
    step["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect()
}

#[test]
fn rarely_used_options_run_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let train = |out: &str, extra: &[&str]| -> std::path::PathBuf {
        let mut args = vec!["train", "--out", out, "--quiet"];
        args.extend_from_slice(TINY);
        args.extend_from_slice(extra);
        let o = tapestry(&args, dir.path());
        assert!(o.status.success(), "{extra:?}: stderr: {}", text(&o.stderr));
        dir.path().join(out)
    };
    let config = |run: &Path| fs::read_to_string(run.join("config.toml")).unwrap();
    // Each MGDA normalisation is recorded and changes the weights of the first step.
    let mut weights = vec![];
    for norm in ["none", "l2", "loss", "loss+"] {
        let run = train(norm, &["--method", "mgda", "--normalization", norm]);
        assert!(config(&run).contains(&format!("normalization = \"{norm}\"")), "{norm}");
        weights.push(first_weights(&run));
    }
    for i in 0..weights.len() {
        for j in i + 1..weights.len() {
            let gap =
                weights[i].iter().zip(&weights[j]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(
                gap > 1e-6,
                "normalisations {i} and {j} gave the same weights {:?}",
                weights[i]
            );
        }
    }
    // T reverse sweeps give the gradients of the one batched sweep: the same MGDA weights.
    let param = train("param", &["--method", "mgda", "--grad-mode", "param"]);
    assert!(config(&param).contains("grad_mode = \"param\""), "{}", config(&param));
    for (a, b) in first_weights(&param).iter().zip(&weights[0]) {
        assert!((a - b).abs() < 1e-5, "param {a} vs batched {b}");
    }
    for (out, extra, recorded) in [
        ("adamw", &["--optimizer", "adamw"][..], "optimizer = \"adamw\""),
        ("gd", &["--method", "gradnorm", "--gradnorm-optimizer", "gd"][..], "gd"),
        ("conv", &["--model", "conv"][..], "model = \"conv\""),
        ("mlp", &["--model", "mlp"][..], "model = \"mlp\""),
    ] {
        let run = train(out, extra);
        assert!(config(&run).contains(recorded), "{extra:?}: {}", config(&run));
    }
    // compare with cosines on logs them for every method.
    let mut args =
        vec!["compare", "--methods", "mgda-ub", "--out", "cmp", "--quiet", "--cosines", "true"];
    args.extend_from_slice(TINY);
    let o = tapestry(&args, dir.path());
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    for method in ["ew", "mgda-ub"] {
        let steps = step_records(&dir.path().join("cmp").join(method).join("metrics.jsonl"));
        assert!(steps[0].contains("\"cosines\""), "{method}: {}", steps[0]);
    }
}

/// MMoE, CGC, PLE and MTAN: each trains on MultiDigits (MLP experts or backbone) and on the
/// scenes (MultiTaskNet's conv stages, per-pixel heads), writes its checkpoint and evaluates;
/// the gates and masks are logged; the methods that need one shared representation are refused,
/// and skipped by compare.
#[test]
fn the_mixtures_of_experts_and_mtan_train_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = |arch: &str| match arch {
        "mtan" => "mtan.mask.left_digit",
        "ple" => "ple.shared_gate.0",
        "cgc" => "cgc.gate.left_digit",
        _ => "mmoe.gate.left_digit",
    };
    for arch in ["mmoe", "cgc", "ple", "mtan"] {
        let mut args = vec!["train", "--arch", arch, "--method", "mgda", "--out", arch, "--quiet"];
        args.extend_from_slice(&["--experts", "2"]);
        args.extend_from_slice(TINY);
        let out = tapestry(&args, d);
        assert!(out.status.success(), "{arch}: {}", text(&out.stderr));
        assert!(d.join(arch).join("checkpoint.safetensors").is_file(), "{arch}");
        let log = fs::read_to_string(d.join(arch).join("metrics.jsonl")).unwrap();
        assert!(log.contains(key(arch)), "{arch}: no {} in the log", key(arch));
        let out = tapestry(&["eval", "--checkpoint", arch], d);
        assert!(out.status.success(), "{arch} eval: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("digit_sum"), "{arch} eval: {}", text(&out.stdout));

        let scenes = format!("scenes-{arch}");
        let args = [
            "train",
            "--dataset",
            "scenes",
            "--arch",
            arch,
            "--experts",
            "2",
            "--method",
            "ew",
            "--limit",
            "16",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--quiet",
            "--out",
            &scenes,
        ];
        let out = tapestry(&args, d);
        assert!(out.status.success(), "{scenes}: {}", text(&out.stderr));
        let out = tapestry(&["eval", "--checkpoint", &scenes], d);
        assert!(out.status.success(), "{scenes} eval: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("mIoU"), "{scenes} eval: {}", text(&out.stdout));

        for method in ["mgda-ub", "graddrop"] {
            let out = tapestry(&["train", "--arch", arch, "--method", method, "--out", "never"], d);
            assert_bad(&out, "works at a representation shared by every task");
        }
    }
    assert_bad(&tapestry(&["train", "--arch", "mmoe", "--experts", "0"], d), "1..=64, got 0");
    assert_bad(&tapestry(&["train", "--arch", "cgc", "--task-experts", "65"], d), "0..=64");
    assert!(!d.join("never").exists(), "a refused run wrote nothing");

    let mut args =
        vec!["compare", "--methods", "ew,mgda-ub", "--archs", "mmoe,mtan", "--out", "cmp", "-q"];
    args.extend_from_slice(&["--experts", "2"]);
    args.extend_from_slice(TINY);
    let out = tapestry(&args, d);
    assert!(out.status.success(), "compare: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("skipping mgda-ub on mmoe: the gates give one representation per task"),
        "{stdout}"
    );
    assert!(stdout.contains("skipping mgda-ub on mtan: the attention masks give"), "{stdout}");
    for row in ["hard-ew", "hard-mgda-ub", "mmoe-ew", "mtan-ew"] {
        assert!(stdout.lines().any(|l| l.starts_with(row)), "no row {row}: {stdout}");
    }
}
