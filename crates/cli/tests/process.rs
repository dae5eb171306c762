//! The process layer: a run directory is a unit that no kill, signal, full disk or closed pipe
//! can tear or mislabel; `--resume` continues a run bit for bit; `--force` replaces a run only
//! once the new one has a checkpoint; a comparison replaces its results only once complete.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn tapestry(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapestry")).args(args).current_dir(cwd).output().unwrap()
}

fn spawn(args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tapestry"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

fn assert_bad(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one sentence: {stderr}");
}

/// A run of three epochs of 16 steps.
const RUN: &[&str] = &["--limit", "1024", "--epochs", "3", "--threads", "1", "-q"];

/// `tapestry train` with [`RUN`]'s options, each of `extra` replacing RUN's of the same name.
fn train(cwd: &Path, out: &str, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--out", out];
    let mut base = RUN.iter().peekable();
    while let Some(&option) = base.next() {
        let value = base.next_if(|v| !v.starts_with('-'));
        if !extra.contains(&option) {
            args.push(option);
            args.extend(value);
        }
    }
    args.extend_from_slice(extra);
    tapestry(&args, cwd)
}

/// A checkpoint's header metadata.
fn metadata(file: &Path) -> serde_json::Map<String, Value> {
    let bytes = fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].as_object().unwrap().clone()
}

/// The log's records without their timings.
fn records(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).expect("a whole JSON line");
            let fields = r.as_object_mut().unwrap();
            fields.remove("seconds");
            fields.remove("samples_per_second");
            r
        })
        .collect()
}

fn epochs_logged(run: &Path) -> usize {
    records(run).iter().filter(|r| r["kind"] == "epoch").count()
}

fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// Waits until `path` exists, or the child ends (then panics), within 10 minutes.
fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {} appeared", path.display());
        }
        assert!(Instant::now() < deadline, "{} did not appear in 10 minutes", path.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// What every state of a run directory must satisfy: whole files, a log never ahead of the
/// checkpoint, a config.toml (once written) that is the checkpoint's, and an evaluable model.
fn check_directory(cwd: &Path, out: &str) {
    let run = cwd.join(out);
    let checkpoint = run.join("checkpoint.safetensors");
    for svg in ["loss.svg", "weights.svg", "metrics.svg", "cosines.svg"] {
        if let Ok(s) = fs::read_to_string(run.join(svg)) {
            assert!(s.trim_end().ends_with("</svg>"), "{svg} is cut short");
        }
    }
    if !checkpoint.exists() {
        assert!(!run.join("metrics.jsonl").exists() && !run.join("config.toml").exists());
        return;
    }
    let meta = metadata(&checkpoint);
    let epochs: usize = meta["epoch"].as_str().unwrap().parse().unwrap();
    if run.join("metrics.jsonl").exists() {
        assert!(epochs_logged(&run) <= epochs, "the log is ahead of the checkpoint");
    }
    if let Ok(config) = fs::read_to_string(run.join("config.toml")) {
        assert_eq!(config, meta["config"].as_str().unwrap(), "config.toml is another run's");
    }
    let out = tapestry(&["eval", "--checkpoint", out, "--limit", "64"], cwd);
    assert_ok(&out);
}

/// A deterministic stream of delays (a small linear congruential generator).
fn delays(seed: u64, count: usize, max_ms: u64) -> Vec<u64> {
    let mut x = seed;
    (0..count)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % max_ms
        })
        .collect()
}

#[test]
fn two_epochs_then_a_resume_equal_three_epochs_straight_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for method in ["gradnorm", "famo", "dwa"] {
        let (a, b) = (format!("straight-{method}"), format!("resumed-{method}"));
        assert_ok(&train(d, &a, &["--method", method]));
        let mut args = vec!["train", "--out", &b, "--method", method];
        args.extend_from_slice(&RUN[..2]);
        args.extend_from_slice(&["--epochs", "2", "--threads", "1", "-q"]);
        assert_ok(&tapestry(&args, d));
        assert_ok(&tapestry(&["train", "--resume", "--out", &b, "--epochs", "3", "-q"], d));
        assert_eq!(records(&d.join(&a)), records(&d.join(&b)), "{method}: the logs differ");
        let bytes = |run: &str| fs::read(d.join(run).join("checkpoint.safetensors")).unwrap();
        assert!(bytes(&a) == bytes(&b), "{method}: the checkpoints differ");
    }
}

#[test]
fn killed_or_interrupted_at_random_points_the_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_ok(&train(d, "straight", &[]));
    let expected = records(&d.join("straight"));
    let checkpoint = fs::read(d.join("straight/checkpoint.safetensors")).unwrap();
    for (trial, delay) in delays(7, 6, 1500).into_iter().enumerate() {
        let out = format!("k{trial}");
        let sig = if trial % 2 == 0 { "KILL" } else { "INT" };
        let mut args = vec!["train", "--out", &out];
        args.extend_from_slice(RUN);
        let mut child = spawn(&args, d);
        // After the first checkpoint, at a point that differs from trial to trial.
        wait_for(&d.join(&out).join(".tapestry.lock"), &mut child);
        std::thread::sleep(Duration::from_millis(delay));
        signal(&child, sig);
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        if sig == "INT" && status.code() != Some(0) {
            assert_eq!(status.code(), Some(130), "Ctrl-C exits with 130: {stderr}");
            assert!(stderr.contains("--resume") || stderr.contains("nothing was written"));
        }
        check_directory(d, &out);
        // Resume what is there (or start again if nothing was committed), to the end.
        let run = d.join(&out);
        if run.join("checkpoint.safetensors").exists() {
            let resumed = tapestry(&["train", "--resume", "--out", &out, "-q"], d);
            if !resumed.status.success() {
                assert!(
                    text(&resumed.stderr).contains("has finished"),
                    "{}",
                    text(&resumed.stderr)
                );
            }
        } else {
            assert_ok(&train(d, &out, &[]));
        }
        assert!(temporaries(&run).is_empty(), "{:?}", temporaries(&run));
        assert_eq!(records(&run), expected, "trial {trial} ({sig} after {delay} ms)");
        let resumed = fs::read(run.join("checkpoint.safetensors")).unwrap();
        assert!(resumed == checkpoint, "trial {trial}: the final checkpoint differs");
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = spawn(&["train", "--out", "twice", "--epochs", "50", "--threads", "1"], d);
    wait_for(&d.join("twice/checkpoint.safetensors"), &mut child);
    signal(&child, "INT");
    signal(&child, "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    check_directory(d, "twice");
}

#[test]
fn a_run_directory_is_refused_replaced_only_when_asked_and_only_once_the_new_run_has_a_checkpoint()
{
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_ok(&train(d, "r", &["--epochs", "2", "--affinity"]));
    let files = |names: &[&str]| -> Vec<Vec<u8>> {
        names.iter().map(|n| fs::read(d.join("r").join(n)).unwrap()).collect()
    };
    let all =
        ["checkpoint.safetensors", "config.toml", "metrics.jsonl", "affinity.svg", "affinity.png"];
    let before = files(&all);
    // Without --resume or --force: refused, untouched.
    assert_bad(&train(d, "r", &[]), "already holds results");
    // A user's own configuration file in the output directory is not overwritten either.
    fs::create_dir(d.join("p")).unwrap();
    fs::write(d.join("p/config.toml"), "# my notes\nepochs = 1\nlimit = 64\n").unwrap();
    assert_bad(&tapestry(&["train", "--config", "p/config.toml", "--out", "p"], d), "--force");
    assert!(fs::read_to_string(d.join("p/config.toml")).unwrap().starts_with("# my notes"));
    // A replacing run that fails before its first checkpoint leaves the old run whole.
    let failed = train(d, "r", &["--force", "--lr", "1e300", "--hidden", "64"]);
    assert_bad(&failed, "epoch 1/3");
    assert!(files(&all) == before, "a failed replacement changed the old run");
    let eval = assert_ok(&tapestry(&["eval", "--checkpoint", "r"], d));
    assert!(eval.contains("after 2 epochs"), "{eval}");
    // A replacing run that gets a checkpoint replaces all of it (the old affinity plot too).
    assert_ok(&train(d, "r", &["--force", "--epochs", "1", "--hidden", "64"]));
    assert!(!d.join("r/affinity.svg").exists(), "a plot of the old run is left");
    assert!(!d.join("r/affinity.png").exists(), "a PNG of the old run is left");
    assert_eq!(epochs_logged(&d.join("r")), 1);
    assert!(fs::read_to_string(d.join("r/config.toml")).unwrap().contains("hidden = 64"));
    check_directory(d, "r");
}

#[test]
fn resume_continues_only_the_run_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_bad(&tapestry(&["train", "--resume", "--out", "none"], d), "no run to resume");
    fs::create_dir(d.join("empty")).unwrap();
    assert_bad(&tapestry(&["train", "--resume", "--out", "empty"], d), "no run to resume");
    assert_ok(&train(d, "r", &["--epochs", "1"]));
    assert_bad(&tapestry(&["train", "--resume", "--out", "r", "--lr", "0.1"], d), "--lr");
    assert_bad(&tapestry(&["train", "--resume", "--out", "r"], d), "finished its 1 epochs");
    let fewer = tapestry(&["train", "--resume", "--out", "r", "--epochs", "0"], d);
    assert_eq!(fewer.status.code(), Some(2), "{}", text(&fewer.stderr));
    assert_bad(&tapestry(&["train", "--resume", "--force", "--out", "r"], d), "--force");
    // Killed between the checkpoint and the log: the log lags one epoch, and the checkpoint's
    // own copy of that epoch's records fills the gap.
    let log = d.join("r/metrics.jsonl");
    let first_epoch = fs::read(&log).unwrap();
    assert_ok(&tapestry(&["train", "--resume", "--out", "r", "--epochs", "2", "-q"], d));
    fs::write(&log, &first_epoch).unwrap();
    assert_ok(&tapestry(&["train", "--resume", "--out", "r", "--epochs", "3", "-q"], d));
    assert_ok(&train(d, "straight", &[]));
    assert_eq!(records(&d.join("r")), records(&d.join("straight")));
    // The same after the last checkpoint: the run has finished, and the resume that says so
    // first brings the log, the configuration and the plots up to the checkpoint.
    let third_epoch = fs::read_to_string(&log).unwrap();
    let two_epochs: String = third_epoch
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["epoch"] != 2)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(two_epochs.len() < third_epoch.len());
    fs::write(&log, two_epochs).unwrap();
    for view in ["config.toml", "loss.svg", "metrics.svg"] {
        fs::remove_file(d.join("r").join(view)).unwrap();
    }
    let done = tapestry(&["train", "--resume", "--out", "r", "--epochs", "3"], d);
    assert_bad(&done, "finished its 3 epochs");
    assert_eq!(records(&d.join("r")), records(&d.join("straight")));
    for view in ["config.toml", "loss.svg", "metrics.svg"] {
        assert!(d.join("r").join(view).is_file(), "{view} was not rebuilt");
    }
    fs::write(&log, &third_epoch).unwrap();
    // A log that lost records the checkpoint does not hold cannot go on: said, not papered over.
    fs::write(&log, "").unwrap();
    let out = tapestry(&["train", "--resume", "--out", "r", "--epochs", "4"], d);
    assert_bad(&out, "does not hold the first");
}

#[test]
fn another_process_writing_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("busy")).unwrap();
    let lock = fs::File::create(d.join("busy/.tapestry.lock")).unwrap();
    lock.lock().unwrap();
    assert_bad(&train(d, "busy", &[]), "another tapestry command");
    drop(lock);
    assert_ok(&train(d, "busy", &["--epochs", "1"]));
}

#[test]
fn a_closed_or_full_stdout_stops_the_printing_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["train", "--out", "pipe", "--limit", "256", "--epochs", "2", "--threads", "1"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapestry"))
        .args(args)
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the first line (as `| head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("standard output failed"), "{}", text(&out.stderr));
    assert_eq!(epochs_logged(&d.join("pipe")), 2);
    let full = Command::new(env!("CARGO_BIN_EXE_tapestry"))
        .args(["train", "--out", "full", "--limit", "256", "--epochs", "1", "--threads", "1"])
        .current_dir(d)
        .stdout(fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
        .output()
        .unwrap();
    assert!(full.status.success(), "stderr: {}", text(&full.stderr));
    check_directory(d, "full");
    for command in [&["eval", "--checkpoint", "full"][..], &["methods"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_tapestry"))
            .args(command)
            .current_dir(d)
            .stdout(fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
    }
}

#[test]
fn divergence_is_named_with_its_task_step_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["--lr", "1e3", "--limit", "500"];
    let out = train(d, "dv", &args);
    assert_bad(&out, "diverged");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("task `") && stderr.contains("of epoch 1/3"), "{stderr}");
    assert!(stderr.contains("--divergence"), "{stderr}");
    // The bound is configurable, and 0 turns it off.
    let out = train(d, "dv2", &[&args[..], &["--divergence", "1e10"]].concat());
    assert_bad(&out, "1e10 times");
    assert_ok(&train(d, "dv3", &[&args[..], &["--divergence", "0", "--epochs", "1"]].concat()));
    assert_bad(&train(d, "dv4", &["--divergence", "0.5"]), "divergence bound");
}

/// Mounts a tmpfs of `size` at `dir`, if this machine allows it (root with mount rights).
fn small_filesystem(dir: &Path, size: &str) -> bool {
    fs::create_dir_all(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("skipped: cannot mount a small tmpfs here (needs root and mount rights)");
    }
    mounted
}

#[test]
fn a_full_disk_fails_with_a_sentence_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    if !small_filesystem(&disk, "1400k") {
        return;
    }
    let result = std::panic::catch_unwind(|| {
        // One checkpoint (about 0.9 MB) fits; a second copy beside it, while it is written,
        // does not.
        let out = train(&disk, "r", &["--epochs", "3"]);
        assert_bad(&out, "No space left on device");
        let run = disk.join("r");
        check_directory(&disk, "r");
        let meta = metadata(&run.join("checkpoint.safetensors"));
        assert_eq!(meta["epoch"], "1", "the first epoch's checkpoint is kept");
        assert!(temporaries(&run).is_empty(), "{:?}", temporaries(&run));
    });
    let _ = Command::new("umount").arg(&disk).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_comparison_replaces_its_results_only_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut good = String::from("a,b,y\n");
    for i in 0..100 {
        good.push_str(&format!("{},{},{}\n", i % 7, (i * 3) % 11, i % 2));
    }
    fs::write(d.join("g.csv"), good).unwrap();
    fs::write(d.join("one.csv"), "a,b,y\n1,2,0\n3,4,0\n5,6,0\n7,8,0\n9,0,0\n").unwrap();
    let compare = |data: &str, extra: &[&str]| {
        let mut args = vec!["compare", "--methods", "ew,gradnorm", "--dataset", "csv"];
        args.extend_from_slice(&["--data-path", data, "--epochs", "1", "-q", "--out", "c"]);
        args.extend_from_slice(extra);
        tapestry(&args, d)
    };
    assert_ok(&compare("g.csv", &[]));
    let table = fs::read(d.join("c/compare.json")).unwrap();
    assert_bad(&compare("g.csv", &[]), "--force");
    // A comparison that fails leaves the old one as it was, with no staging directory.
    assert_bad(&compare("one.csv", &["--force"]), "one class");
    assert!(fs::read(d.join("c/compare.json")).unwrap() == table);
    for method in ["ew", "gradnorm"] {
        let config = fs::read_to_string(d.join("c").join(method).join("config.toml")).unwrap();
        assert!(config.contains("g.csv"), "{method} was touched: {config}");
    }
    assert!(!d.join("c/.staging").exists());
    // A complete one replaces it, methods it no longer lists included.
    let mut args = vec!["compare", "--methods", "ew,uw", "--dataset", "csv", "--data-path"];
    args.extend_from_slice(&["g.csv", "--epochs", "1", "-q", "--out", "c", "--force"]);
    assert_ok(&tapestry(&args, d));
    assert!(d.join("c/uw/checkpoint.safetensors").exists());
    assert!(!d.join("c/gradnorm").exists(), "a method of the old comparison is left");
    let json: Value = serde_json::from_slice(&fs::read(d.join("c/compare.json")).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 2);
}

#[test]
fn verbose_prints_a_line_per_step_and_quiet_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["train", "--limit", "256", "--epochs", "2", "--threads", "1"];
    let out = tapestry(&[&args[..], &["--verbose", "--out", "v"]].concat(), d);
    let stdout = assert_ok(&out);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch ")).collect();
    let steps = records(&d.join("v")).iter().filter(|r| r["kind"] == "step").count();
    let per_step = lines.iter().filter(|l| l.contains("(run step")).count();
    assert_eq!(per_step, steps, "{stdout}");
    assert!(
        lines[0].starts_with("epoch 1 step 1/4 (run step 0): losses left_digit"),
        "{}",
        lines[0]
    );
    let quiet = assert_ok(&tapestry(&[&args[..], &["-q", "--out", "q"]].concat(), d));
    assert_eq!(quiet, "");
    assert_bad(&tapestry(&[&args[..], &["-q", "-v", "--out", "qv"]].concat(), d), "--quiet");
}
