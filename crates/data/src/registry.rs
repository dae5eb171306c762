//! Data sets by name, for the command line: `multidigits`, `multifashion`, `scenes`, `csv`,
//! `images`, `fashion`.

use std::path::PathBuf;

use crate::csv::{csv_splits, CsvConfig};
use crate::dataset::Splits;
use crate::digits::{multidigits, MultiDigitsConfig};
use crate::error::{DataError, Result};
use crate::fashion::{fashion_mnist, multifashion, FashionConfig, MultiFashionConfig};
use crate::images::{images_splits, ImagesConfig};
use crate::scenes::{scenes, ScenesConfig};

/// The names [`DatasetConfig::by_name`] knows, the default first.
pub const DATASET_NAMES: [&str; 6] =
    ["multidigits", "multifashion", "scenes", "csv", "images", "fashion"];

/// The configuration of any data set of the crate.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetConfig {
    /// MultiDigits, from the embedded UCI digits.
    MultiDigits(MultiDigitsConfig),
    /// Multi-Fashion (or MultiMNIST) from an MNIST-format folder.
    MultiFashion(MultiFashionConfig),
    /// Synthetic scenes.
    Scenes(ScenesConfig),
    /// A CSV table.
    Csv(CsvConfig),
    /// A folder of images and their labels.
    Images(ImagesConfig),
    /// Fashion-MNIST (or MNIST) as it is, from an MNIST-format folder.
    Fashion(FashionConfig),
}

impl DatasetConfig {
    /// The default configuration of the data set called `name` (case-insensitive), with the
    /// given seed. `path` is the folder of `multifashion` and `fashion` (default
    /// [`FASHION_MNIST_DIR`](crate::FASHION_MNIST_DIR)), the file of `csv` (required; read
    /// with [`CsvConfig::last_column_classification`]) and the folder of `images` (required; read
    /// with [`ImagesConfig::new`]); the other data sets take no path.
    ///
    /// Fails with [`DataError::UnknownDataset`] for an unknown name, and with
    /// [`DataError::Config`] when `csv` or `images` has no path or a data set that takes no path
    /// gets one.
    pub fn by_name(name: &str, seed: u64, path: Option<PathBuf>) -> Result<Self> {
        let name = name.to_ascii_lowercase();
        let no_path = |config: DatasetConfig| match &path {
            Some(p) => Err(DataError::Config(format!(
                "data set {name:?} takes no path, got {}",
                p.display()
            ))),
            None => Ok(config),
        };
        match name.as_str() {
            "multidigits" => no_path(DatasetConfig::MultiDigits(MultiDigitsConfig {
                seed,
                ..Default::default()
            })),
            "scenes" => no_path(DatasetConfig::Scenes(ScenesConfig { seed, ..Default::default() })),
            "multifashion" => {
                let mut config = MultiFashionConfig { seed, ..Default::default() };
                if let Some(dir) = path {
                    config.dir = dir;
                }
                Ok(DatasetConfig::MultiFashion(config))
            }
            "fashion" => {
                let mut config = FashionConfig::default();
                if let Some(dir) = path {
                    config.dir = dir;
                }
                Ok(DatasetConfig::Fashion(config))
            }
            "csv" => {
                let path = path.ok_or_else(|| {
                    DataError::Config("data set \"csv\" needs the path of a CSV file".into())
                })?;
                Ok(DatasetConfig::Csv(CsvConfig {
                    seed,
                    ..CsvConfig::last_column_classification(path)
                }))
            }
            "images" => {
                let dir = path.ok_or_else(|| {
                    DataError::Config(
                        "data set \"images\" needs the path of a folder holding images.npy and \
                         labels.csv"
                            .into(),
                    )
                })?;
                Ok(DatasetConfig::Images(ImagesConfig { seed, ..ImagesConfig::new(dir) }))
            }
            _ => Err(DataError::UnknownDataset(name)),
        }
    }

    /// The data set's name, as [`DatasetConfig::by_name`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            DatasetConfig::MultiDigits(_) => "multidigits",
            DatasetConfig::MultiFashion(_) => "multifashion",
            DatasetConfig::Scenes(_) => "scenes",
            DatasetConfig::Csv(_) => "csv",
            DatasetConfig::Images(_) => "images",
            DatasetConfig::Fashion(_) => "fashion",
        }
    }

    /// Builds or reads the data set and returns its train and test splits.
    pub fn load(&self) -> Result<Splits> {
        match self {
            DatasetConfig::MultiDigits(c) => Ok(multidigits(c)?.splits),
            DatasetConfig::MultiFashion(c) => Ok(multifashion(c)?.splits),
            DatasetConfig::Scenes(c) => scenes(c),
            DatasetConfig::Csv(c) => Ok(csv_splits(c)?.splits),
            DatasetConfig::Images(c) => Ok(images_splits(c)?.splits),
            DatasetConfig::Fashion(c) => fashion_mnist(c),
        }
    }
}
