//! The embedded UCI handwritten digits (8x8) and MultiDigits, two of them on one canvas.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array4};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::compose::PairLayout;
use crate::dataset::{MultiTaskDataset, Splits, TaskTargets};
use crate::error::{DataError, Result};
use crate::seeded_rng;
use crate::task::TaskSpec;

/// The gzip-compressed CSV of the UCI digits, as shipped in `assets/` (see its README for the
/// credit and licence).
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../assets/digits.csv.gz");

/// The name used for the embedded file in error messages.
const EMBEDDED_NAME: &str = "<embedded>/crates/data/assets/digits.csv.gz";

/// The number of digits in the embedded file.
pub const UCI_DIGITS_LEN: usize = 1797;

/// The number of digits of each class 0..9 in the embedded file.
pub const UCI_DIGITS_CLASS_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

/// Side of a UCI digit image.
pub const UCI_DIGIT_SIDE: usize = 8;

/// The UCI optical handwritten digits: 8x8 images with pixels 0..=16, and their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UciDigits {
    /// The pixels, 64 per digit, row-major, each 0..=16.
    pub pixels: Vec<u8>,
    /// The labels, 0..=9.
    pub labels: Vec<u8>,
}

impl UciDigits {
    /// The number of digits.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no digits.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 64 pixels of digit `i`.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * 64..(i + 1) * 64]
    }
}

/// Decodes the embedded UCI digits and checks them: 1797 rows with the documented class counts.
pub fn uci_digits() -> Result<UciDigits> {
    let path = Path::new(EMBEDDED_NAME);
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|source| DataError::Io { path: path.into(), source })?;
    let digits = parse_uci_digits(&text, path)?;
    if digits.len() != UCI_DIGITS_LEN {
        return Err(DataError::Format {
            path: path.into(),
            message: format!("expected {UCI_DIGITS_LEN} digits, found {}", digits.len()),
        });
    }
    let mut counts = [0usize; 10];
    for &l in &digits.labels {
        counts[l as usize] += 1;
    }
    if counts != UCI_DIGITS_CLASS_COUNTS {
        return Err(DataError::Format {
            path: path.into(),
            message: format!(
                "class counts {counts:?} differ from the expected {UCI_DIGITS_CLASS_COUNTS:?}"
            ),
        });
    }
    Ok(digits)
}

/// Parses digits in the UCI CSV layout: per line 64 pixels 0..=16 and a label 0..=9, no header.
/// Errors name `path`, the line and the column.
pub fn parse_uci_digits(text: &str, path: &Path) -> Result<UciDigits> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let csv_error = |column: usize, message: String| DataError::Csv {
            path: PathBuf::from(path),
            line: line_index + 1,
            column: column.to_string(),
            message,
        };
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != 65 {
            return Err(csv_error(
                cells.len(),
                format!("expected 65 cells, found {}", cells.len()),
            ));
        }
        for (c, cell) in cells.iter().enumerate() {
            let max = if c == 64 { 9 } else { 16 };
            let value = cell.trim().parse::<u8>().ok().filter(|&v| v <= max).ok_or_else(|| {
                csv_error(c + 1, format!("{cell:?} is not an integer in 0..={max}"))
            })?;
            if c == 64 {
                labels.push(value);
            } else {
                pixels.push(value);
            }
        }
    }
    Ok(UciDigits { pixels, labels })
}

/// How to build MultiDigits.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiDigitsConfig {
    /// Seed of the pairing and of the shifts of the training images.
    pub seed: u64,
    /// Seed of the split of the 1797 source digits into train and test sources and of the
    /// composition of the test images; kept apart from `seed` so that runs with different seeds
    /// share one test set.
    pub split_seed: u64,
    /// The fraction of the source digits kept for the test split.
    pub test_fraction: f64,
    /// The side of the square canvas (at least `8 + max_shift`).
    pub canvas: usize,
    /// The largest shift of each digit along each axis, in pixels.
    pub max_shift: usize,
    /// The number of composed training images.
    pub train_len: usize,
    /// The number of composed test images.
    pub test_len: usize,
}

impl Default for MultiDigitsConfig {
    fn default() -> Self {
        MultiDigitsConfig {
            seed: 0,
            split_seed: 0,
            test_fraction: 0.2,
            canvas: 12,
            max_shift: 1,
            train_len: 10_000,
            test_len: 2_000,
        }
    }
}

/// Train and test splits made of pairs of source images, with the source indices of each pair.
#[derive(Clone, Debug)]
pub struct PairedSplits {
    /// The composed data sets.
    pub splits: Splits,
    /// For each training image, the indices of its two sources (top-left, bottom-right).
    pub train_sources: Vec<[usize; 2]>,
    /// For each test image, the indices of its two sources (top-left, bottom-right).
    pub test_sources: Vec<[usize; 2]>,
}

/// The tasks of MultiDigits: `left_digit` and `right_digit` (10 classes each) and `digit_sum`
/// (one value, 0..=18, mean squared error).
pub fn multidigits_tasks() -> Vec<TaskSpec> {
    vec![
        TaskSpec::classification("left_digit", 10),
        TaskSpec::classification("right_digit", 10),
        TaskSpec::regression("digit_sum", 1),
    ]
}

/// Builds MultiDigits from the embedded UCI digits: the source digits are split into train and
/// test sources first (so no source digit is in both splits), then each composed image pairs two
/// different source digits of its split, one towards the top-left and one towards the
/// bottom-right of a `canvas`-sided canvas, each shifted by up to `max_shift` pixels, the pixel
/// maximum where they overlap, pixels scaled from 0..=16 to 0..=1. Inputs are `[N, 1, canvas,
/// canvas]`; see [`multidigits_tasks`] for the tasks.
pub fn multidigits(config: &MultiDigitsConfig) -> Result<PairedSplits> {
    let layout = PairLayout::new(config.canvas, UCI_DIGIT_SIDE, config.max_shift, 16.0);
    if !layout.fits() {
        return Err(DataError::Config(format!(
            "a MultiDigits canvas of {} pixels cannot hold an 8-pixel digit shifted by up to {}",
            config.canvas, config.max_shift
        )));
    }
    if !(config.test_fraction > 0.0 && config.test_fraction < 1.0) {
        return Err(DataError::Config(format!(
            "the test fraction must lie strictly between 0 and 1, got {}",
            config.test_fraction
        )));
    }
    let digits = uci_digits()?;
    let mut order: Vec<usize> = (0..digits.len()).collect();
    order.shuffle(&mut seeded_rng(config.split_seed, 0));
    let n_test =
        ((digits.len() as f64 * config.test_fraction).round() as usize).clamp(2, digits.len() - 2);
    let (test_pool, train_pool) = order.split_at(n_test);

    let mut rng = seeded_rng(config.seed, 1);
    let (train, train_sources) = compose_digits(
        &digits,
        train_pool,
        config.train_len,
        &layout,
        &mut rng,
        "multidigits/train",
    )?;
    // The test images follow the split seed alone, so runs with different seeds are scored on
    // the same test set.
    let mut rng = seeded_rng(config.split_seed, 2);
    let (test, test_sources) =
        compose_digits(&digits, test_pool, config.test_len, &layout, &mut rng, "multidigits/test")?;
    Ok(PairedSplits { splits: Splits { train, test }, train_sources, test_sources })
}

/// Composes `len` images from pairs of distinct digits of `pool`.
fn compose_digits(
    digits: &UciDigits,
    pool: &[usize],
    len: usize,
    layout: &PairLayout,
    rng: &mut ChaCha8Rng,
    name: &str,
) -> Result<(MultiTaskDataset, Vec<[usize; 2]>)> {
    let side = layout.canvas;
    let mut pixels = vec![0.0f32; len * side * side];
    let mut sources = Vec::with_capacity(len);
    let mut left = Vec::with_capacity(len);
    let mut right = Vec::with_capacity(len);
    let mut sum = Array2::<f32>::zeros((len, 1));
    for (i, canvas) in pixels.chunks_exact_mut(side * side).enumerate() {
        let a = pool[rng.gen_range(0..pool.len())];
        let b = loop {
            let b = pool[rng.gen_range(0..pool.len())];
            if b != a {
                break b;
            }
        };
        let offsets = layout.draw_offsets(rng);
        layout.compose(canvas, [digits.image(a), digits.image(b)], offsets);
        let (la, lb) = (digits.labels[a] as i64, digits.labels[b] as i64);
        left.push(la);
        right.push(lb);
        sum[[i, 0]] = (la + lb) as f32;
        sources.push([a, b]);
    }
    let inputs = Array4::from_shape_vec((len, 1, side, side), pixels)
        .expect("the pixel buffer has len * side * side values")
        .into_dyn();
    let targets = vec![
        TaskTargets::Classes { labels: left },
        TaskTargets::Classes { labels: right },
        TaskTargets::Values { values: sum, mask: None },
    ];
    let dataset = MultiTaskDataset::new(name, inputs, multidigits_tasks(), targets)?;
    Ok((dataset, sources))
}
