//! `--dataset images`: a folder of `.npy` images and a `labels.csv` trains, evaluates above
//! chance, and every malformed folder fails with one sentence and exit code 2.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::{assert_bad, python_with, required, tapestry, text};

use ndarray::{Array2, Array3, Array4};
use ndarray_npy::write_npy;

/// A small linear congruential generator, so the images differ without a dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `n` images of `side` x `side` pixels (uint8): one quadrant bright, the rest dim noise. The
/// labels are the bright quadrant (`quadrant`, 0..4) and its brightness in 0..1 (`brightness`).
fn quadrant_images(n: usize, side: usize, seed: u64) -> (Array3<u8>, String) {
    let mut rng = Lcg(seed);
    let mut images = Array3::<u8>::zeros((n, side, side));
    let mut labels = String::from("quadrant,brightness\n");
    let half = side / 2;
    for i in 0..n {
        let quadrant = (rng.next() % 4) as usize;
        let bright = 150 + (rng.next() % 100) as u8;
        for r in 0..side {
            for c in 0..side {
                let inside = (r / half) * 2 + c / half == quadrant;
                let noise = (rng.next() % 60) as u8;
                images[[i, r, c]] = if inside { bright - noise / 2 } else { noise };
            }
        }
        labels.push_str(&format!("{quadrant},{:.4}\n", bright as f32 / 255.0));
    }
    (images, labels)
}

/// Writes a folder of `n` quadrant images of `side` pixels; with `test`, 40 more as a fixed test
/// split.
fn write_folder(dir: &Path, n: usize, side: usize, test: bool) {
    fs::create_dir_all(dir).unwrap();
    let (images, labels) = quadrant_images(n, side, 7);
    write_npy(dir.join("images.npy"), &images).unwrap();
    fs::write(dir.join("labels.csv"), labels).unwrap();
    if test {
        let (images, labels) = quadrant_images(40, side, 8);
        write_npy(dir.join("test_images.npy"), &images).unwrap();
        fs::write(dir.join("test_labels.csv"), labels).unwrap();
    }
}

/// The value column of `task` in a metric table.
fn metric(stdout: &str, task: &str) -> f64 {
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(task))
        .unwrap_or_else(|| panic!("no row for {task} in {stdout}"));
    row.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn images_train_and_eval_scores_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("quadrants");
    write_folder(&data, 200, 8, false);
    let data = data.to_str().unwrap();
    let args = ["train", "--dataset", "images", "--data-path", data, "--epochs", "3"];
    let out =
        tapestry(&[&args[..], &["--batch-size", "16", "--out", "run", "-q"]].concat(), dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let config = fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(config.contains("dataset = \"images\""), "{config}");

    let out = tapestry(&["eval", "--checkpoint", "run"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // `auto` is the MLP; the test split is 20% of 200 images; four classes, chance is 1/4.
    assert!(stdout.contains("(mlp after 3 epochs"), "{stdout}");
    assert!(stdout.contains("(40 samples)"), "{stdout}");
    let accuracy = metric(&stdout, "quadrant");
    assert!(accuracy > 0.5, "accuracy {accuracy} is not above chance: {stdout}");
    assert!(stdout.contains("RMSE"), "{stdout}");
}

#[test]
fn conv_and_lenet_train_on_a_fixed_test_split() {
    let dir = tempfile::tempdir().unwrap();
    for (model, side) in [("conv", 8), ("lenet", 20)] {
        let data = dir.path().join(format!("{model}-data"));
        write_folder(&data, 64, side, true);
        let args = [
            "train",
            "--dataset",
            "images",
            "--data-path",
            data.to_str().unwrap(),
            "--model",
            model,
            "--target",
            "quadrant",
            "--target",
            "brightness:regression",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--out",
            model,
            "-q",
        ];
        let out = tapestry(&args, dir.path());
        assert!(out.status.success(), "{model}: {}", text(&out.stderr));
        let out = tapestry(&["eval", "--checkpoint", model], dir.path());
        assert!(out.status.success(), "{model}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("({model} after 1 epoch")), "{stdout}");
        assert!(stdout.contains("(40 samples)"), "the fixed test split: {stdout}");
    }
}

#[test]
fn float32_images_with_channels_train() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = quadrant_images(50, 6, 3);
    let rgb = Array4::from_shape_fn((50, 3, 6, 6), |(i, c, r, w)| {
        images[[i, r, w]] as f32 / 255.0 * (c as f32 + 1.0) - 0.5
    });
    write_npy(dir.path().join("images.npy"), &rgb).unwrap();
    fs::write(dir.path().join("labels.csv"), labels).unwrap();
    let args = ["train", "--dataset", "images", "--data-path", ".", "--model", "conv"];
    let out = tapestry(&[&args[..], &["--epochs", "1", "--out", "run", "-q"]].concat(), dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    // The run records the relative path; eval from the same folder reads the same images.
    let out = tapestry(&["eval", "--checkpoint", "run"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("(10 samples)"), "{}", text(&out.stdout));
}

#[test]
fn malformed_image_folders_exit_2_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = |folder: &str, extra: &[&str]| {
        let args = ["train", "--dataset", "images", "--data-path", folder, "--epochs", "1"];
        tapestry(&[&args[..], extra, &["--out", "bad", "-q"]].concat(), d)
    };
    let folder = |name: &str, prepare: &dyn Fn(&Path)| {
        let path = d.join(name);
        write_folder(&path, 20, 4, false);
        prepare(&path);
        name.to_string()
    };

    assert_bad(&tapestry(&["train", "--dataset", "images", "-q"], d), "needs the path of a folder");
    assert_bad(&train("nothere", &[]), "nothere: no such folder");
    let f = folder("no-images", &|p| fs::remove_file(p.join("images.npy")).unwrap());
    assert_bad(&train(&f, &[]), "images.npy: no such file, nor images-idx3-ubyte");
    let f = folder("no-labels", &|p| fs::remove_file(p.join("labels.csv")).unwrap());
    assert_bad(&train(&f, &[]), "labels.csv: no such file");
    let f = folder("count", &|p| fs::write(p.join("labels.csv"), "quadrant\n0\n1\n").unwrap());
    assert_bad(&train(&f, &[]), "labels.csv: 2 label rows but");
    let f = folder("dtype", &|p| {
        write_npy(p.join("images.npy"), &Array3::<f64>::zeros((20, 4, 4))).unwrap();
    });
    assert_bad(&train(&f, &[]), "images.npy: holds values of dtype float64, '<f8'");
    let f = folder("ndim", &|p| {
        write_npy(p.join("images.npy"), &Array2::<u8>::zeros((20, 16))).unwrap();
    });
    assert_bad(&train(&f, &[]), "holds an array of shape [20, 16]");
    let f = folder("nan", &|p| {
        let mut x = Array3::<f32>::zeros((20, 4, 4));
        x[[2, 0, 3]] = f32::NAN;
        write_npy(p.join("images.npy"), &x).unwrap();
    });
    assert_bad(&train(&f, &[]), "holds NaN at flat index 35 (image 2)");
    let f = folder("truncated", &|p| {
        let bytes = fs::read(p.join("images.npy")).unwrap();
        fs::write(p.join("images.npy"), &bytes[..bytes.len() - 100]).unwrap();
    });
    assert_bad(&train(&f, &[]), "images.npy: truncated");
    let f = folder("cell", &|p| {
        let labels = fs::read_to_string(p.join("labels.csv")).unwrap();
        fs::write(p.join("labels.csv"), labels.replacen("\n1,", "\n1.5,", 1)).unwrap();
    });
    assert_bad(
        &train(&f, &["--target", "quadrant"]),
        "column 1 (\"quadrant\"): cannot parse \"1.5\"",
    );
    let f = folder("header", &|p| fs::write(p.join("labels.csv"), "quadrant\n").unwrap());
    assert_bad(&train(&f, &[]), "labels.csv: the file has a header but no data rows");
    let f = folder("half-test", &|p| {
        write_npy(p.join("test_images.npy"), &Array3::<u8>::zeros((4, 4, 4))).unwrap();
    });
    assert_bad(&train(&f, &[]), "holds test_images.npy but no test_labels.csv");
    let f = folder("one-class", &|p| {
        fs::write(p.join("labels.csv"), "quadrant\n".to_string() + &"2\n".repeat(20)).unwrap();
    });
    assert_bad(&train(&f, &[]), "only one class (label 2)");
    let f = folder("column", &|_| {});
    assert_bad(&train(&f, &["--target", "colour"]), "no column is named \"colour\"");
    assert_bad(&train(&f, &["--target", "quadrant:banana"]), "unknown kind `banana`");
}

/// The recipe of docs/data.md, run by numpy itself: images saved with `np.save` (uint8, one
/// quadrant bright) and labels with `np.savetxt`, then trained and evaluated. Needs a Python
/// with numpy (`TAPESTRY_PYTHON`, `python3` or `/usr/bin/python3`); without one it prints why and
/// passes, unless `TAPESTRY_REQUIRE_TORCH` is set (`.ci/run` installs numpy with torch).
#[test]
fn a_folder_written_by_numpy_trains_and_evaluates() {
    let Some(python) = required(python_with("numpy"), "TAPESTRY_REQUIRE_TORCH") else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import numpy as np
rng = np.random.default_rng(0)
quadrant = rng.integers(0, 4, 300)
size = rng.uniform(0.5, 1.0, 300)
images = rng.integers(0, 40, (300, 8, 8))
for i, q in enumerate(quadrant):
    r, c = divmod(int(q), 2)
    images[i, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += (200 * size[i]).astype(int)
digit = quadrant
np.save("DIR/images.npy", images.astype(np.uint8))
np.savetxt("DIR/labels.csv", np.column_stack([digit, size]), delimiter=",",
           header="digit,size", comments="", fmt=["%d", "%.4f"])
"#;
    let data = dir.path().join("DIR");
    fs::create_dir(&data).unwrap();
    let out = Command::new(python).arg("-c").arg(script).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "numpy: {}", text(&out.stderr));
    let train = ["train", "--dataset", "images", "--data-path", "DIR", "--epochs", "4", "-q"];
    let out = tapestry(&[&train[..], &["--batch-size", "16", "--out", "run"]].concat(), dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let out = tapestry(&["eval", "--checkpoint", "run"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // `digit` (integers) is a classification of four classes, `size` a regression.
    let accuracy = metric(&stdout, "digit");
    assert!(accuracy > 0.5, "accuracy {accuracy} is not above chance 0.25: {stdout}");
    assert!(stdout.contains("size") && stdout.contains("RMSE"), "{stdout}");
}
