//! `tapestry export --pytorch`: the exported `model.py` loads each run's checkpoint with
//! `strict=True` and reproduces `tapestry eval --outputs` on the test split, for every preset
//! and every architecture. Needs a Python with torch and numpy (`TAPESTRY_PYTHON`, `python3` or
//! `/usr/bin/python3`); without one the test prints why and passes, unless
//! `TAPESTRY_REQUIRE_TORCH` is set (as `.ci/run` sets it), where it fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{assert_bad, assert_ok, python_with, required, tapestry, text};

/// The relative error `export_check.py` allows: float32 rounding of two implementations.
const TOLERANCE: &str = "1e-5";
const FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// Trains `args` into `dir/name` for one epoch, exports it and writes its test outputs.
fn exported_run(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let mut train = vec!["train", "--epochs", "1", "-q", "--out", name];
    train.extend_from_slice(args);
    assert_ok(&tapestry(&train, dir), &format!("train {name}"));
    assert_ok(&tapestry(&["export", "--pytorch", name], dir), &format!("export {name}"));
    let outputs = format!("{name}/outputs");
    let eval = tapestry(&["eval", "--checkpoint", name, "--outputs", &outputs], dir);
    assert_ok(&eval, &format!("eval {name}"));
    assert!(text(&eval.stdout).contains("wrote inputs"), "{}", text(&eval.stdout));
    dir.join(name)
}

fn check(python: &str, runs: &[PathBuf]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export_check.py");
    Command::new(python).arg(script).arg(TOLERANCE).args(runs).output().unwrap()
}

#[test]
fn exported_modules_reproduce_eval_outputs_for_every_preset_and_architecture() {
    let Some(python) = required(python_with("torch, numpy"), "TAPESTRY_REQUIRE_TORCH") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = ["--limit", "192", "--batch-size", "64"];
    let with = |extra: &[&'static str]| [&small[..], extra].concat();
    let mut runs = vec![
        // MultiDigits, the MLP, every architecture; uncertainty weighting adds `weighting.*`
        // parameters that are not part of the model.
        exported_run(d, "mlp_hard", &with(&[])),
        exported_run(d, "mlp_uw", &with(&["--method", "uw"])),
        exported_run(d, "mlp_soft", &with(&["--arch", "soft", "--method", "ew"])),
        exported_run(d, "mlp_stitch", &with(&["--arch", "cross-stitch"])),
        exported_run(d, "mlp_mmoe", &with(&["--arch", "mmoe", "--experts", "3"])),
        exported_run(d, "mlp_cgc", &with(&["--arch", "cgc", "--experts", "2"])),
        exported_run(d, "mlp_ple", &with(&["--arch", "ple", "--experts", "2"])),
        exported_run(d, "mlp_mtan", &with(&["--arch", "mtan"])),
        exported_run(d, "conv_mmoe", &with(&["--model", "conv", "--arch", "mmoe"])),
        // Scenes: MultiTaskNet's feature maps, pixel heads, attention on maps.
        exported_run(d, "scenes", &["--dataset", "scenes", "--limit", "48"]),
        exported_run(d, "scenes_mtan", &["--dataset", "scenes", "--limit", "32", "--arch", "mtan"]),
        exported_run(
            d,
            "scenes_ple",
            &["--dataset", "scenes", "--limit", "32", "--arch", "ple", "--experts", "2"],
        ),
    ];
    if Path::new(FASHION).is_dir() {
        let fashion = ["--dataset", "multifashion", "--limit", "256", "--batch-size", "64"];
        let with_fashion = |extra: &[&'static str]| [&fashion[..], extra].concat();
        runs.push(exported_run(d, "lenet", &with_fashion(&[])));
        runs.push(exported_run(d, "lenet_mtan", &with_fashion(&["--arch", "mtan"])));
        runs.push(exported_run(
            d,
            "lenet_stitch",
            &with_fashion(&["--arch", "cross-stitch", "--method", "ew"]),
        ));
        runs.push(exported_run(
            d,
            "multi_input",
            &["--multi-input", "multidigits:left_digit,fashion:class", "--limit", "128"],
        ));
    } else if std::env::var_os("TAPESTRY_REQUIRE_TORCH").is_some() {
        panic!("{FASHION} is missing, so the LeNet runs cannot be checked");
    } else {
        println!("skipped the LeNet and multi-input runs: {FASHION} is missing");
    }
    let out = check(&python, &runs);
    println!("{}", text(&out.stdout));
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let lines = text(&out.stdout);
    assert!(lines.contains("mlp_hard left_digit"), "{lines}");
    assert!(lines.contains("scenes segmentation"), "{lines}");

    // The check can fail: the same run with one ReLU of the exported trunk removed, and with
    // Tapestry's outputs of another run, are both refused.
    let broken = d.join("broken");
    fs::create_dir(&broken).unwrap();
    let source = d.join("mlp_hard");
    for file in ["checkpoint.safetensors", "outputs"] {
        let (from, to) = (source.join(file), broken.join(file));
        if from.is_dir() {
            fs::create_dir(&to).unwrap();
            for entry in fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        } else {
            fs::copy(from, to).unwrap();
        }
    }
    let model = fs::read_to_string(source.join("model.py")).unwrap();
    let relu = "[nn.Linear(2 * hidden, hidden), nn.ReLU()]";
    assert!(model.contains(relu));
    fs::write(broken.join("model.py"), model.replacen(relu, "[nn.Linear(2 * hidden, hidden)]", 1))
        .unwrap();
    assert!(!check(&python, std::slice::from_ref(&broken)).status.success());
    fs::write(broken.join("model.py"), &model).unwrap();
    assert!(check(&python, std::slice::from_ref(&broken)).status.success());
    let other = d.join("mlp_uw/outputs/outputs.left_digit.npy");
    fs::copy(other, broken.join("outputs/outputs.left_digit.npy")).unwrap();
    assert!(!check(&python, &[broken]).status.success());
}

#[test]
fn export_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_bad(&tapestry(&["export", "--pytorch", "nothing"], d), "does not exist");
    fs::create_dir(d.join("empty")).unwrap();
    assert_bad(&tapestry(&["export", "--pytorch", "empty"], d), "holds no checkpoint.safetensors");
    // A task whose name holds a `.` cannot name a PyTorch module.
    let mut csv = String::from("x,y,size.class\n");
    for i in 0..40 {
        csv.push_str(&format!("{},{},{}\n", i % 7, i % 3, i % 2));
    }
    fs::write(d.join("t.csv"), csv).unwrap();
    let train = [
        "train",
        "--dataset",
        "csv",
        "--data-path",
        "t.csv",
        "--epochs",
        "1",
        "-q",
        "--method",
        "ew",
        "--target",
        "size.class",
    ];
    assert_ok(&tapestry(&[&train[..], &["--out", "dotted"]].concat(), d), "train dotted");
    assert_bad(&tapestry(&["export", "--pytorch", "dotted"], d), "cannot name a PyTorch module");
    assert!(!d.join("dotted/model.py").exists());
    // The format must be named.
    assert_bad(&tapestry(&["export", "dotted"], d), "--pytorch (RUN/model.py) or --data");
}

/// The epoch records' train and test losses and metrics of a run's log.
fn epoch_results(log: &Path) -> Vec<(serde_json::Value, serde_json::Value)> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "epoch")
        .map(|r| (r["train"].clone(), r["test"].clone()))
        .collect()
}

#[test]
fn exported_data_is_exactly_what_the_run_trains_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let common = ["--epochs", "2", "--limit", "256", "--batch-size", "64", "-q", "--seed", "4"];
    assert_ok(&tapestry(&[&["train", "--out", "digits"][..], &common].concat(), d), "train");
    let out = tapestry(&["export", "--data", "digits"], d);
    assert_ok(&out, "export --data");
    assert!(text(&out.stdout).contains("images.npy, labels.csv, test_images.npy, test_labels.csv"));
    // Trained again from the folder, the run is the same run: every loss and metric, bit for bit.
    let again = ["train", "--out", "again", "--dataset", "images", "--data-path", "digits/data"];
    assert_ok(&tapestry(&[&again[..], &common].concat(), d), "train on the folder");
    let (a, b) = (
        epoch_results(&d.join("digits/metrics.jsonl")),
        epoch_results(&d.join("again/metrics.jsonl")),
    );
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);

    // What an images folder cannot hold is refused with one sentence.
    assert_ok(
        &tapestry(
            &[
                "train",
                "--dataset",
                "scenes",
                "--limit",
                "16",
                "--epochs",
                "1",
                "-q",
                "--out",
                "scenes",
            ],
            d,
        ),
        "scenes",
    );
    assert_bad(&tapestry(&["export", "--data", "scenes"], d), "has no column in a labels file");
    assert!(!d.join("scenes/data").exists());
    assert_bad(&tapestry(&["export", "--out", "x", "digits"], d), "--data");
}
