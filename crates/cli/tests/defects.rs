//! Hostile input at the command line: numbers TOML cannot hold, stray labels, empty images,
//! damaged or foreign checkpoints, configurations that do not belong to their checkpoint,
//! degenerate tables, and the messages each of them gets.

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

/// Asserts success and returns stdout.
fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A run of one epoch on 128 MultiDigits samples into `out`, with `extra` options.
fn tiny_run(dir: &Path, out: &str, extra: &[&str]) {
    let mut args = vec!["train", "--limit", "128", "--epochs", "1", "--threads", "1", "-q"];
    args.extend_from_slice(&["--out", out]);
    args.extend_from_slice(extra);
    assert_ok(&tapestry(&args, dir));
}

/// The header of a checkpoint file as JSON, and the data after it.
fn split_checkpoint(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// A checkpoint file from a header and data.
fn join_checkpoint(header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) -> Vec<u8> {
    let mut text = serde_json::to_vec(header).unwrap();
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

#[test]
fn integers_toml_cannot_hold_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = "9223372036854775808";
    let max = "18446744073709551615";
    for (option, value, needle) in [
        ("--seed", big, "seed"),
        ("--seed", max, "seed"),
        ("--epochs", max, "epochs"),
        ("--batch-size", big, "batch size"),
        ("--limit", max, "limit"),
        ("--task-relation-every", max, "update interval"),
    ] {
        for command in ["train", "compare"] {
            let mut args = vec![command, option, value, "-q", "--out", "r"];
            if command == "compare" {
                args.extend_from_slice(&["--methods", "ew"]);
            }
            let out = tapestry(&args, d);
            assert_bad(&out, needle);
            assert!(text(&out.stderr).contains(value), "the value is named: {}", text(&out.stderr));
            assert!(!d.join("r").exists(), "{command} {option} {value} left a directory behind");
        }
    }
    // The largest value TOML holds is fine.
    tiny_run(d, "ok", &["--seed", "9223372036854775807"]);
    let saved = fs::read_to_string(d.join("ok/config.toml")).unwrap();
    assert!(saved.contains("seed = 9223372036854775807"), "{saved}");
    assert_bad(&tapestry(&["eval", "--checkpoint", "ok", "--limit", max], d), "limit");
}

#[test]
fn a_stray_huge_class_label_is_one_sentence_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for label in ["1000000000000", "9223372036854775807"] {
        let csv = format!("a,b,y\n0.1,0.2,0\n0.3,0.4,1\n0.5,0.6,{label}\n0.7,0.8,1\n0.9,1.0,0\n");
        fs::write(dir.path().join("r4.csv"), csv).unwrap();
        let args = ["train", "--dataset", "csv", "--data-path", "r4.csv", "-q", "--out", "r4"];
        let out = tapestry(&args, dir.path());
        assert_bad(&out, "r4.csv, line 4, column 3 (\"y\")");
        assert!(text(&out.stderr).contains(label), "{}", text(&out.stderr));
        assert!(!dir.path().join("r4").exists());
    }
}

#[test]
fn idx_images_of_no_pixels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let z = dir.path().join("z");
    fs::create_dir(&z).unwrap();
    for (prefix, n) in [("train", 4), ("t10k", 2)] {
        tapestry_data::write_idx(
            z.join(format!("{prefix}-images-idx3-ubyte")),
            &[n, 0, 0],
            &[],
            false,
        )
        .unwrap();
        tapestry_data::write_idx(
            z.join(format!("{prefix}-labels-idx1-ubyte")),
            &[n],
            &vec![0; n],
            false,
        )
        .unwrap();
    }
    let args = ["train", "--dataset", "multifashion", "--data-path", "z", "-q", "--out", "r8"];
    assert_bad(&tapestry(&args, dir.path()), "0x0");
}

#[test]
fn eval_refuses_non_finite_weights_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    tiny_run(dir.path(), "r9", &["--method", "ew"]);
    let path = dir.path().join("r9/checkpoint.safetensors");
    let (mut header, mut data) = split_checkpoint(&fs::read(&path).unwrap());
    // As a file written elsewhere (no checksum, which such files are allowed to lack).
    header.remove("__metadata__");
    let offsets = header["trunk.3.weight"]["data_offsets"].as_array().unwrap().clone();
    let (start, end) =
        (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
    for chunk in data[start..end].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    fs::write(&path, join_checkpoint(&header, &data)).unwrap();
    let out = tapestry(&["eval", "--checkpoint", "r9"], dir.path());
    assert_bad(&out, "`trunk.3.weight`");
    assert!(text(&out.stderr).contains("not finite"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "no metrics are printed: {}", text(&out.stdout));
}

#[test]
fn a_damaged_checksum_key_does_not_turn_verification_off() {
    let dir = tempfile::tempdir().unwrap();
    tiny_run(dir.path(), "r10", &["--method", "ew"]);
    let path = dir.path().join("r10/checkpoint.safetensors");
    let mut bytes = fs::read(&path).unwrap();
    let (header, _) = split_checkpoint(&bytes);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let start = header["heads.left_digit.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[8 + n + start + 3] ^= 0x20;
    let at = bytes.windows(17).position(|w| w == b"tapestry.checksum").unwrap() + 16;
    bytes[at] = b'M';
    fs::write(&path, bytes).unwrap();
    assert_bad(&tapestry(&["eval", "--checkpoint", "r10"], dir.path()), "checksum");
}

#[test]
fn eval_refuses_a_config_that_does_not_belong_to_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    tiny_run(dir.path(), "r11", &["--method", "gradnorm"]);
    let config = dir.path().join("r11/config.toml");
    let text_before = fs::read_to_string(&config).unwrap();
    fs::write(&config, text_before.replace("\"gradnorm\"", "\"mgda\"")).unwrap();
    // The checkpoint records its configuration: an edited config.toml cannot relabel it.
    let out = tapestry(&["eval", "--checkpoint", "r11"], dir.path());
    let stdout = assert_ok(&out);
    assert!(stdout.contains("after 1 epoch of gradnorm"), "{stdout}");
    assert!(text(&out.stderr).contains("differs from the configuration recorded"));
    // A checkpoint written elsewhere records no configuration (only what it was trained
    // with): the config.toml beside it must agree with that.
    let file = dir.path().join("r11/checkpoint.safetensors");
    let (mut header, data) = split_checkpoint(&fs::read(&file).unwrap());
    let meta = header["__metadata__"].as_object_mut().unwrap();
    meta.retain(|k, _| {
        !k.starts_with("tapestry.") && !["config", "state", "records"].contains(&k.as_str())
    });
    fs::write(&file, join_checkpoint(&header, &data)).unwrap();
    let out = tapestry(&["eval", "--checkpoint", "r11"], dir.path());
    assert_bad(&out, "gradnorm");
    assert!(text(&out.stderr).contains("mgda"), "{}", text(&out.stderr));
    fs::write(&config, &text_before).unwrap();
    let stdout = assert_ok(&tapestry(&["eval", "--checkpoint", "r11"], dir.path()));
    assert!(stdout.contains("after 1 epoch of gradnorm"), "{stdout}");
    fs::remove_file(&config).unwrap();
    assert_bad(&tapestry(&["eval", "--checkpoint", "r11"], dir.path()), "records no configuration");
}

#[test]
fn eval_scores_runs_of_every_seed_on_one_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_run(d, "s0", &["--method", "ew"]);
    fs::create_dir(d.join("s5")).unwrap();
    for file in ["checkpoint.safetensors", "config.toml"] {
        fs::copy(d.join("s0").join(file), d.join("s5").join(file)).unwrap();
    }
    let config = fs::read_to_string(d.join("s5/config.toml")).unwrap();
    assert!(config.contains("\nseed = 0\n"), "{config}");
    fs::write(d.join("s5/config.toml"), config.replace("\nseed = 0\n", "\nseed = 5\n")).unwrap();
    let table = |run: &str| {
        let stdout = assert_ok(&tapestry(&["eval", "--checkpoint", run, "--threads", "1"], d));
        stdout.lines().skip(1).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(table("s0"), table("s5"), "the same checkpoint scores differently under seed 5");
}

#[test]
fn config_errors_name_the_line_they_are_on() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, line) in [
        ("epochs = 1\n\n\nbogus = 3\n", "line 4"),
        ("epochs = 1\nepochs = 2\n", "line 2"),
        ("bogus = 3\n", "line 1"),
        ("lr = 0.1\nepochs = \"many\"\n", "line 2"),
    ] {
        fs::write(dir.path().join("r12.toml"), toml).unwrap();
        let out = tapestry(&["train", "--config", "r12.toml", "-q", "--out", "r12"], dir.path());
        assert_bad(&out, &format!("r12.toml ({line})"));
    }
}

#[test]
fn an_out_of_range_target_column_is_named_as_given() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("r13.csv"), "a,b,y\n1,2,0\n3,4,1\n").unwrap();
    let args = ["train", "--dataset", "csv", "--data-path", "r13.csv", "--target", "4", "-q"];
    assert_bad(&tapestry(&args, dir.path()), "column 4 is out of range: the file has 3 columns");
}

#[test]
fn every_model_the_command_offers_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = tapestry(&["train", "--model", "foo"], dir.path());
    assert_bad(&out, "unknown model");
    let stderr = text(&out.stderr);
    let list = stderr.split("expected one of ").nth(1).unwrap().trim_end().trim_end_matches('.');
    let models: Vec<&str> = list.split(", ").collect();
    assert!(models.len() >= 4, "{models:?}");
    for model in models {
        let args =
            ["train", "--model", model, "--limit", "16", "--epochs", "1", "-q", "--out", model];
        let out = tapestry(&args, dir.path());
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("unknown model"), "`{model}` is offered but unknown: {stderr}");
    }
}

#[test]
fn degenerate_csv_tasks_are_refused_in_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("r16.csv"), "a,b,y\n1,2,0\n3,4,0\n5,6,0\n7,8,0\n9,0,0\n").unwrap();
    for method in ["gradnorm", "ew"] {
        let args = [
            "train",
            "--dataset",
            "csv",
            "--data-path",
            "r16.csv",
            "--method",
            method,
            "--out",
            "r",
        ];
        let out = tapestry(&args, d);
        assert_bad(&out, "r16.csv");
        assert!(text(&out.stderr).contains("only one class"), "{}", text(&out.stderr));
    }
    fs::write(d.join("novalue.csv"), "a,b,v\n1,2,NA\n3,4,\n5,6,?\n").unwrap();
    let args =
        ["train", "--dataset", "csv", "--data-path", "novalue.csv", "--target", "v:regression"];
    assert_bad(&tapestry(&args, d), "regression task \"v\" has no value in any row");

    // A task whose values all fall in the training rows: find the test rows of the split first.
    let rows = 20;
    let mut full = String::from("a,y,v\n");
    for i in 0..rows {
        full.push_str(&format!("{i},{},{}\n", i % 2, i * 3));
    }
    fs::write(d.join("full.csv"), &full).unwrap();
    let split = tapestry_data::csv_splits(&tapestry_data::CsvConfig {
        standardize: false,
        ..tapestry_data::CsvConfig::last_column_classification(d.join("full.csv"))
    })
    .unwrap();
    let test_rows: Vec<usize> =
        split.splits.test.inputs.iter().step_by(2).map(|&a| a as usize).collect();
    assert_eq!(test_rows.len(), 4);
    let mut sparse = String::from("a,y,v\n");
    for i in 0..rows {
        let v = if test_rows.contains(&i) { "NA".to_string() } else { (i * 3).to_string() };
        sparse.push_str(&format!("{i},{},{v}\n", i % 2));
    }
    fs::write(d.join("sparse.csv"), sparse).unwrap();
    let args = [
        "train",
        "--dataset",
        "csv",
        "--data-path",
        "sparse.csv",
        "--target",
        "y",
        "--target",
        "v:regression",
        "--out",
        "r",
    ];
    assert_bad(&tapestry(&args, d), "no test row has a value for task \"v\"");
    assert!(!d.join("r").exists());
}

#[test]
fn duplicate_header_names_and_reused_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("r17.csv"), "a,a,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,0,1\n").unwrap();
    let csv = ["train", "--dataset", "csv", "--data-path", "r17.csv", "-q", "--out", "r17"];
    let with = |targets: &[&str]| {
        let mut args = csv.to_vec();
        for t in targets {
            args.extend_from_slice(&["--target", t]);
        }
        tapestry(&args, dir.path())
    };
    assert_bad(&with(&["a:regression", "y"]), "\"a\" names columns 1 and 2");
    assert_bad(&with(&["3", "y"]), "column 3 (\"y\") is the target of both task");
    assert!(!dir.path().join("r17").exists());
}

#[test]
fn clap_errors_keep_the_part_that_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["eval"][..], "--checkpoint"),
        (&[][..], "train, eval, compare"),
        (&["train", "--lr", "-1"][..], "learning rate"),
        (&["train", "--metod", "ew"][..], "'--method'"),
        (&["train", "--cosines", "maybe"][..], "true, false"),
        (&["frobnicate"][..], "'frobnicate'"),
    ] {
        assert_bad(&tapestry(args, dir.path()), needle);
    }
}

#[test]
fn vague_messages_now_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = |name: &str, content: &str, extra: &[&str]| {
        fs::write(d.join(name), content).unwrap();
        let mut args = vec!["train", "--dataset", "csv", "--data-path", name, "-q", "--out", "r"];
        args.extend_from_slice(extra);
        tapestry(&args, d)
    };
    assert_bad(&csv("semi.csv", "a;b;y\n1;2;0\n3;4;1\n", &[]), "`;`");
    assert_bad(&csv("header.csv", "a,b,y\n", &["--target", "y:regression"]), "header.csv");
    assert_bad(&csv("header.csv", "a,b,y\n", &[]), "no data rows");
    assert_bad(&csv("big.csv", "a,b,y\n1e39,2,0\n3,4,1\n", &[]), "too large");
    // CR-only line ends are read.
    let out = csv("cr.csv", "a,b,y\r1,2,0\r3,4,1\r5,6,0\r7,8,1\r9,1,1\r", &["--epochs", "1"]);
    assert_ok(&out);

    // A dangling symbolic link as the output directory.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        let out = tapestry(&["train", "--limit", "16", "-q", "--out", "dangling"], d);
        assert_bad(&out, "symbolic link");
    }
    // A config.toml that is a folder.
    fs::create_dir_all(d.join("odd/config.toml")).unwrap();
    fs::write(d.join("odd/checkpoint.safetensors"), b"x").unwrap();
    assert_bad(&tapestry(&["eval", "--checkpoint", "odd"], d), "is not a file");
    // Training stopped by a non-finite loss: the epoch as the progress line counts it, and a
    // hint.
    let args = ["train", "--limit", "128", "--method", "ew", "--optimizer", "sgd", "--lr", "1e6"];
    let out = tapestry(&[&args[..], &["-q", "--out", "nan"]].concat(), d);
    assert_bad(&out, "of epoch 1/");
    assert!(text(&out.stderr).contains("--lr"), "{}", text(&out.stderr));
    // A GradNorm run diverging (its loss, or its gradient norm on the watched layer, whichever
    // overflows first): the task and the step are named.
    let args = ["train", "--limit", "256", "--epochs", "2", "--threads", "1", "--lr", "1e5"];
    let out = tapestry(&[&args[..], &["--optimizer", "sgd", "-q", "--out", "inf"]].concat(), d);
    assert_bad(&out, "task `");
    assert!(text(&out.stderr).contains("at step") && text(&out.stderr).contains("--lr"));
}

#[test]
fn options_that_would_be_dropped_are_refused_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = tapestry(&["compare", "--method", "gradnorm", "--out", "never"], d);
    assert_bad(&out, "--methods");
    assert!(!d.join("never").exists());

    let run = |extra: &[&str]| {
        let mut args =
            vec!["train", "--limit", "64", "--epochs", "1", "-q", "--out", "w", "--force"];
        args.extend_from_slice(extra);
        let out = tapestry(&args, d);
        assert_ok(&out);
        text(&out.stderr)
    };
    let stderr = run(&["--method", "ew", "--normalization", "l2"]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--normalization") && stderr.contains("`ew`"), "{stderr}");
    let stderr = run(&["--method", "mgda", "--gradnorm-optimizer", "gd"]);
    assert!(stderr.contains("--gradnorm-optimizer") && stderr.contains("`mgda`"), "{stderr}");
    assert_eq!(run(&["--method", "mgda", "--normalization", "l2"]), "", "MGDA reads it");
}

#[test]
fn metric_tables_stay_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("a,b,größe,深度\n");
    for i in 0..40 {
        csv.push_str(&format!("{},{},{},{}\n", i % 7, i % 3, i % 2, 1e6 * (i as f64 + 1.0)));
    }
    fs::write(dir.path().join("wide.csv"), csv).unwrap();
    let args = [
        "train",
        "--dataset",
        "csv",
        "--data-path",
        "wide.csv",
        "--target",
        "größe",
        "--target",
        "深度:regression",
        "--method",
        "ew",
        "--epochs",
        "1",
        "--out",
        "wide",
    ];
    let stdout = assert_ok(&tapestry(&args, dir.path()));
    let table: Vec<&str> =
        stdout.lines().skip_while(|l| !l.contains("train loss")).take(3).collect();
    assert_eq!(table.len(), 3, "{stdout}");
    // Display columns: the CJK characters take two each.
    let width = |l: &str| {
        l.chars().map(|c| if ('\u{4e00}'..='\u{9fff}').contains(&c) { 2 } else { 1 }).sum::<usize>()
    };
    let widths: Vec<usize> = table.iter().map(|l| width(l)).collect();
    assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}:\n{}", table.join("\n"));
}
