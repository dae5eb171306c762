//! MNIST-format folders, Fashion-MNIST as it is (one image, one class), and Multi-Fashion (or
//! MultiMNIST) built from them as in Pareto MTL.

use std::path::{Path, PathBuf};

use ndarray::Array4;
use rand::seq::SliceRandom;

use crate::compose::PairLayout;
use crate::dataset::{MultiTaskDataset, Splits, TaskTargets};
use crate::digits::PairedSplits;
use crate::error::{DataError, Result};
use crate::idx::{find_idx_file, read_idx_images, read_idx_labels, IdxImages};
use crate::seeded_rng;
use crate::task::TaskSpec;

/// Where Debian's package `dataset-fashion-mnist` puts Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The number of classes of MNIST and Fashion-MNIST.
pub const MNIST_CLASSES: usize = 10;

/// Images and labels of one split of an MNIST-format folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledImages {
    /// The images.
    pub images: IdxImages,
    /// One label per image, each below [`MNIST_CLASSES`].
    pub labels: Vec<u8>,
}

/// Both splits of an MNIST-format folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistFolder {
    /// From `train-images-idx3-ubyte` and `train-labels-idx1-ubyte`.
    pub train: LabelledImages,
    /// From `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`.
    pub test: LabelledImages,
}

/// Reads an MNIST-format folder: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each plain or with `.gz` appended.
///
/// Besides the errors of [`read_idx`](crate::read_idx), fails with [`DataError::Format`] when an
/// images file and its labels file disagree on the count, images are not square, the two splits
/// have different image sizes, images have no pixel, or a label is not below 10.
pub fn read_mnist_folder(dir: impl AsRef<Path>) -> Result<MnistFolder> {
    let dir = dir.as_ref();
    let train = read_labelled(dir, "train")?;
    let test = read_labelled(dir, "t10k")?;
    if (train.images.rows, train.images.cols) != (test.images.rows, test.images.cols) {
        return Err(DataError::Format {
            path: dir.into(),
            message: format!(
                "train images are {}x{} but test images are {}x{}",
                train.images.rows, train.images.cols, test.images.rows, test.images.cols
            ),
        });
    }
    Ok(MnistFolder { train, test })
}

/// Reads `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` and checks that they fit.
fn read_labelled(dir: &Path, prefix: &str) -> Result<LabelledImages> {
    let images_path = find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::Format {
            path: labels_path,
            message: format!(
                "{} labels but {} holds {} images",
                labels.len(),
                images_path.display(),
                images.count
            ),
        });
    }
    if images.rows == 0 || images.cols == 0 {
        return Err(DataError::Format {
            path: images_path,
            message: format!(
                "images are {}x{}: an image needs at least one pixel",
                images.rows, images.cols
            ),
        });
    }
    if images.rows != images.cols {
        return Err(DataError::Format {
            path: images_path,
            message: format!("images are {}x{}, not square", images.rows, images.cols),
        });
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= MNIST_CLASSES) {
        return Err(DataError::Format {
            path: labels_path,
            message: format!("label {} of sample {i} is not below {MNIST_CLASSES}", labels[i]),
        });
    }
    Ok(LabelledImages { images, labels })
}

/// How to read Fashion-MNIST (or MNIST) as it is: one image, one task.
#[derive(Clone, Debug, PartialEq)]
pub struct FashionConfig {
    /// An MNIST-format folder; see [`read_mnist_folder`].
    pub dir: PathBuf,
    /// Keep only the first this many images of each split (for quick runs).
    pub max_samples: Option<usize>,
}

impl Default for FashionConfig {
    fn default() -> Self {
        FashionConfig { dir: PathBuf::from(FASHION_MNIST_DIR), max_samples: None }
    }
}

/// The task of Fashion-MNIST as it is: `class`, 10 classes.
pub fn fashion_tasks() -> Vec<TaskSpec> {
    vec![TaskSpec::classification("class", MNIST_CLASSES)]
}

/// Reads the MNIST-format folder `config.dir` as it is: inputs `[N, 1, 28, 28]` (the files'
/// side), pixels scaled from 0..=255 to 0..=1, one task ([`fashion_tasks`]); the files' train
/// and test splits, in the files' order.
///
/// Fails as [`read_mnist_folder`] does.
pub fn fashion_mnist(config: &FashionConfig) -> Result<Splits> {
    let folder = read_mnist_folder(&config.dir)?;
    let split = |source: &LabelledImages, name: &str| {
        let n = config.max_samples.map_or(source.labels.len(), |m| m.min(source.labels.len()));
        let (rows, cols) = (source.images.rows, source.images.cols);
        let pixels = source.images.pixels[..n * rows * cols].iter().map(|&v| v as f32 / 255.0);
        let inputs = Array4::from_shape_vec((n, 1, rows, cols), pixels.collect())
            .expect("n images of rows * cols pixels")
            .into_dyn();
        let labels = source.labels[..n].iter().map(|&l| l as i64).collect();
        MultiTaskDataset::new(name, inputs, fashion_tasks(), vec![TaskTargets::Classes { labels }])
    };
    Ok(Splits {
        train: split(&folder.train, "fashion/train")?,
        test: split(&folder.test, "fashion/test")?,
    })
}

/// How to build Multi-Fashion (or MultiMNIST, from an MNIST folder).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiFashionConfig {
    /// An MNIST-format folder; see [`read_mnist_folder`].
    pub dir: PathBuf,
    /// Seed of the pairing and of the shifts.
    pub seed: u64,
    /// The side of the square canvas.
    pub canvas: usize,
    /// The largest shift of each item along each axis, in pixels.
    pub max_shift: usize,
    /// How many composed images have each source image as their top-left item.
    pub copies: usize,
    /// Use only the first this many source images of each split (for quick runs).
    pub max_sources: Option<usize>,
    /// Compose only the first this many images of each split: the same images a full build
    /// starts with, without the time and memory of the rest (for quick runs).
    pub max_images: Option<usize>,
}

impl Default for MultiFashionConfig {
    fn default() -> Self {
        MultiFashionConfig {
            dir: PathBuf::from(FASHION_MNIST_DIR),
            seed: 0,
            canvas: 36,
            max_shift: 4,
            copies: 2,
            max_sources: None,
            max_images: None,
        }
    }
}

/// The tasks of Multi-Fashion: `top_left` and `bottom_right`, 10 classes each.
pub fn multifashion_tasks() -> Vec<TaskSpec> {
    vec![
        TaskSpec::classification("top_left", MNIST_CLASSES),
        TaskSpec::classification("bottom_right", MNIST_CLASSES),
    ]
}

/// Builds Multi-Fashion from the MNIST-format folder `config.dir`, as in Pareto MTL: on a
/// `canvas`-sided canvas (36), one item in the top-left corner shifted right and down by up to
/// `max_shift` (4) pixels along each axis, one in the bottom-right corner shifted left and up by
/// up to as much, the pixel maximum where they overlap, pixels scaled from 0..=255 to 0..=1.
///
/// Each split is composed from its own source split. In each of `copies` (2) passes, source
/// image `i` is the top-left item of one image and the bottom-right item is source `perm(i)` for
/// a fresh random permutation, so each source image is used `copies` times in each corner:
/// 60,000 Fashion-MNIST training images give 120,000 training images and 10,000 test images give
/// 20,000. Inputs are `[N, 1, canvas, canvas]`; `train_sources` index the source training split,
/// `test_sources` the source test split.
pub fn multifashion(config: &MultiFashionConfig) -> Result<PairedSplits> {
    let folder = read_mnist_folder(&config.dir)?;
    let side = folder.train.images.rows;
    let layout = PairLayout::new(config.canvas, side, config.max_shift, 255.0);
    if !layout.fits() {
        return Err(DataError::Config(format!(
            "a canvas of {} pixels cannot hold a {side}-pixel image shifted by up to {}",
            config.canvas, config.max_shift
        )));
    }
    if config.copies == 0 {
        return Err(DataError::Config("Multi-Fashion needs at least one copy".into()));
    }
    let (train, train_sources) =
        compose_split(&folder.train, config, &layout, 1, "multifashion/train")?;
    let (test, test_sources) =
        compose_split(&folder.test, config, &layout, 2, "multifashion/test")?;
    Ok(PairedSplits { splits: Splits { train, test }, train_sources, test_sources })
}

/// Composes one split; `stream` keeps the random draws of the splits apart.
fn compose_split(
    source: &LabelledImages,
    config: &MultiFashionConfig,
    layout: &PairLayout,
    stream: u64,
    name: &str,
) -> Result<(MultiTaskDataset, Vec<[usize; 2]>)> {
    let n = config.max_sources.map_or(source.labels.len(), |m| m.min(source.labels.len()));
    let side = layout.canvas;
    let mut rng = seeded_rng(config.seed, stream);
    let mut sources = Vec::with_capacity(n * config.copies);
    for _ in 0..config.copies {
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        sources.extend(perm.into_iter().enumerate().map(|(i, j)| [i, j]));
    }
    // The pairs are drawn first and the shifts image by image, so a prefix of the images is
    // the same whether or not the rest is composed.
    if let Some(max) = config.max_images {
        sources.truncate(max);
    }
    let len = sources.len();
    let mut pixels = vec![0.0f32; len * side * side];
    for (canvas, &[a, b]) in pixels.chunks_exact_mut(side * side).zip(&sources) {
        let offsets = layout.draw_offsets(&mut rng);
        layout.compose(canvas, [source.images.image(a), source.images.image(b)], offsets);
    }
    let inputs = Array4::from_shape_vec((len, 1, side, side), pixels)
        .expect("the pixel buffer has len * side * side values")
        .into_dyn();
    let label = |k: usize| sources.iter().map(|s| source.labels[s[k]] as i64).collect();
    let targets =
        vec![TaskTargets::Classes { labels: label(0) }, TaskTargets::Classes { labels: label(1) }];
    let dataset = MultiTaskDataset::new(name, inputs, multifashion_tasks(), targets)?;
    Ok((dataset, sources))
}
