//! tapestry-data: multi-task data sets and a seeded, shuffling batch iterator.
//!
//! The crate hands out plain `ndarray` arrays and knows nothing of tapes: inputs `[N, ...]`
//! (images as `[N, C, H, W]`), and for each task a [`TaskSpec`] (its kind and the loss and
//! metric that fit it) with its [`TaskTargets`].
//!
//! - [`multidigits`]: two embedded UCI digits on a 12x12 canvas; left digit, right digit, and
//!   their sum; [`derived_tasks`] adds the parity of a digit and "digit ≥ 5" for fine-tuning.
//! - [`multifashion`]: Multi-Fashion (or MultiMNIST) from an MNIST-format folder, read with the
//!   [`read_idx`] family; [`fashion_mnist`]: the folder as it is, one image and one class.
//! - [`scenes`]: synthetic shapes with segmentation, depth and an image label.
//! - [`csv_splits`]: users' own multi-target CSV tables.
//! - [`images_splits`]: users' own images, a `.npy` (or IDX) array and a CSV of labels.
//! - [`DatasetConfig::by_name`]: any of them by name.
//!
//! ```
//! use tapestry_data::{BatchOptions, DatasetConfig};
//!
//! let splits = DatasetConfig::by_name("multidigits", 7, None)?.load()?;
//! assert_eq!(splits.train.sample_shape(), &[1, 12, 12]);
//! let batch = splits.train.batches(&BatchOptions::new(64, 7), 0)?.next().unwrap();
//! assert_eq!(batch.inputs.shape(), &[64, 1, 12, 12]);
//! # Ok::<(), tapestry_data::DataError>(())
//! ```
//!
//! See `docs/data.md` for how each data set is built.

#![forbid(unsafe_code)]

mod batch;
mod compose;
mod csv;
mod dataset;
mod derived;
mod digits;
mod error;
mod fashion;
mod idx;
mod images;
pub mod npy;
mod registry;
mod scenes;
mod targets;
mod task;

pub use batch::{Batch, BatchIter, BatchOptions};
pub use csv::{
    csv_splits, read_csv, Column, CsvConfig, CsvData, CsvTable, CsvTargetKind, CsvTask,
    Standardizer, MAX_CSV_CLASSES,
};
pub use dataset::{MultiTaskDataset, Splits, TaskTargets};
pub use derived::{derived_tasks, DerivedTask, MULTIDIGITS_DERIVED};
pub use digits::{
    multidigits, multidigits_tasks, parse_uci_digits, uci_digits, MultiDigitsConfig, PairedSplits,
    UciDigits, UCI_DIGITS_CLASS_COUNTS, UCI_DIGITS_LEN, UCI_DIGIT_SIDE,
};
pub use error::{DataError, Result};
pub use fashion::{
    fashion_mnist, fashion_tasks, multifashion, multifashion_tasks, read_mnist_folder,
    FashionConfig, LabelledImages, MnistFolder, MultiFashionConfig, FASHION_MNIST_DIR,
    MNIST_CLASSES,
};
pub use idx::{
    parse_idx, read_idx, read_idx_images, read_idx_labels, write_idx, IdxArray, IdxImages,
};
pub use images::{images_folder_files, images_splits, read_images, ImagesConfig, ImagesData};
pub use registry::{DatasetConfig, DATASET_NAMES};
pub use scenes::{
    generate_scene, generate_scenes, scenes, scenes_tasks, Scene, ScenesConfig, Shape, ShapeKind,
    BACKGROUND_DEPTH, FARTHEST_DEPTH, NEAREST_DEPTH,
};
pub use targets::{read_target_table, TargetTable};
pub use task::{LossKind, MetricKind, TaskKind, TaskSpec, MISSING_LABEL};

/// A ChaCha8 generator for one purpose of one seed: each purpose draws from its own stream, so
/// changing how much one part draws never changes another.
pub(crate) fn seeded_rng(seed: u64, stream: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
