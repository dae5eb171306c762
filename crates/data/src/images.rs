//! Users' own images: a folder holding an array of images and a table of their labels.
//!
//! ```text
//! DIR/images.npy        [N, H, W] or [N, C, H, W]; uint8 (scaled by 1/255) or float32 (as is)
//!                       (or images-idx3-ubyte / images.idx, optionally .gz: IDX unsigned bytes)
//! DIR/labels.csv        a header row naming the tasks, one column per task, one row per image
//! DIR/test_images.npy   optional: a fixed test split (same formats),
//! DIR/test_labels.csv   with its labels
//! ```
//!
//! `.npy` files are what `numpy.save` writes, read with `ndarray-npy` (either byte order, C or
//! Fortran order). `[N, H, W]` images get one channel. Labels are read as the CSV data set reads
//! its targets ([`read_target_table`]): a cell that is empty, `NA`, `N/A`, `NaN` or `?` is
//! missing and masks that image out of that task.

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayD, Axis, Ix4, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt};

use crate::csv::{Column, CsvTargetKind, CsvTask};
use crate::dataset::{check_test_fraction, MultiTaskDataset, Splits, TaskTargets};
use crate::error::{DataError, Result};
use crate::idx::read_idx;
use crate::targets::{read_target_table, TargetTable};
use crate::task::{TaskKind, TaskSpec, MISSING_LABEL};

/// The endings an images file may have after `images` (or `test_images`), in the order they
/// are looked for.
const IMAGE_ENDINGS: [&str; 5] = [".npy", "-idx3-ubyte", "-idx3-ubyte.gz", ".idx", ".idx.gz"];
/// The labels of the images (of the training split, when the folder has a test split).
const LABELS_FILE: &str = "labels.csv";
/// The labels of the fixed test split.
const TEST_LABELS_FILE: &str = "test_labels.csv";

/// How to read an images folder.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagesConfig {
    /// The folder.
    pub dir: PathBuf,
    /// The tasks, as columns of `labels.csv` and their kinds; `None` makes a task of every
    /// column (see [`read_target_table`]).
    pub tasks: Option<Vec<CsvTask>>,
    /// Without a fixed test split, the fraction of the images, drawn at random with `seed`,
    /// kept for test (`0..1`).
    pub test_fraction: f64,
    /// The seed of the split.
    pub seed: u64,
}

impl ImagesConfig {
    /// The folder `dir`, every column of its labels a task, 20% of the images for test unless
    /// the folder has a test split, seed 0.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ImagesConfig { dir: dir.into(), tasks: None, test_fraction: 0.2, seed: 0 }
    }

    /// The labels files of the training and of the test split: `labels.csv` for both, or
    /// `labels.csv` and `test_labels.csv` when the folder holds the latter.
    pub fn label_files(&self) -> (PathBuf, PathBuf) {
        let (train, test) = (self.dir.join(LABELS_FILE), self.dir.join(TEST_LABELS_FILE));
        let test = if test.is_file() { test } else { train.clone() };
        (train, test)
    }
}

/// An images folder read and split.
#[derive(Clone, Debug)]
pub struct ImagesData {
    /// The train and test splits; inputs are `[N, C, H, W]`.
    pub splits: Splits,
    /// For each task, the names of its classes in label order ([`CsvTargetKind::NamedClasses`]
    /// only; empty for other tasks).
    pub class_names: Vec<Vec<String>>,
}

/// Reads the images folder `config.dir` (see the [module](self) documentation for its
/// layout). With `test_images` and `test_labels.csv`, those are the test split, and a
/// classification task has as many classes as the larger of the two labels files asks for;
/// without them, `config.test_fraction` of the images, drawn with `config.seed`, are.
///
/// # Errors
///
/// Those of [`read_images`] and of [`read_target_table`] (a label cell names its file, line and
/// column), and, naming the file: [`DataError::Io`] when the folder, the images file or
/// `labels.csv` is missing; [`DataError::Format`] when the folder holds two images files of one
/// split, only one of the two test files, a labels file whose row count is not the image count,
/// or test images of another shape than the training images; [`DataError::Config`] when the
/// test fraction is outside `0..1`.
pub fn images_splits(config: &ImagesConfig) -> Result<ImagesData> {
    check_test_fraction(config.test_fraction)?;
    let files = FolderFiles::find(&config.dir)?;
    let (train_inputs, mut train) =
        read_split(&files.images, &files.labels, config.tasks.as_deref())?;
    let Some((test_images, test_labels)) = files.test else {
        let class_names = train.class_names.clone();
        let all =
            MultiTaskDataset::new("images", train_inputs.into_dyn(), train.tasks, train.targets)?;
        let splits = all.random_splits(config.test_fraction, config.seed);
        return Ok(ImagesData { splits, class_names });
    };
    let tasks = config.tasks.clone().unwrap_or_else(|| same_tasks(&train.tasks));
    let (test_inputs, mut test) = read_split(&test_images, &test_labels, Some(&tasks))?;
    let (train_shape, test_shape) = (&train_inputs.shape()[1..], &test_inputs.shape()[1..]);
    if train_shape != test_shape {
        return Err(DataError::Format {
            path: test_images,
            message: format!(
                "test images have shape {test_shape:?} but {} holds images of shape {train_shape:?}",
                files.images.display(),
            ),
        });
    }
    let class_names = merge_classes(&mut train, &mut test);
    let split = |name: &str, inputs: Array4<f32>, table: TargetTable| {
        MultiTaskDataset::new(name, inputs.into_dyn(), table.tasks, table.targets)
    };
    let splits = Splits {
        train: split("images/train", train_inputs, train)?,
        test: split("images/test", test_inputs, test)?,
    };
    Ok(ImagesData { splits, class_names })
}

/// The files of an images folder holding `splits` with a fixed test split, as
/// `(file name, bytes)`: `images.npy` and `test_images.npy` (float32 `[N, C, H, W]`, the inputs
/// exactly) and `labels.csv` and `test_labels.csv` (a column per task, a missing label as an
/// empty cell, regression values written with a decimal point so that reading infers them as
/// regression). [`images_splits`] reads the folder back to the same inputs and targets; a
/// classification task comes back with as many classes as its largest label asks for.
///
/// # Errors
/// [`DataError::Config`] if the samples are not images `[C, H, W]`, or a task is not a
/// classification or a regression of one value (per-pixel and multi-value targets have no
/// column of their own).
pub fn images_folder_files(splits: &Splits) -> Result<Vec<(String, Vec<u8>)>> {
    let shape = splits.train.sample_shape();
    if shape.len() != 3 {
        return Err(DataError::Config(format!(
            "an images folder holds images [C, H, W], but the samples have shape {shape:?}"
        )));
    }
    let mut files = Vec::new();
    for (prefix, split) in [("", &splits.train), ("test_", &splits.test)] {
        let inputs = split.inputs.as_standard_layout();
        let values = inputs.as_slice().expect("standard layout");
        files.push((
            format!("{prefix}images.npy"),
            crate::npy::f32_npy_bytes(inputs.shape(), values),
        ));
        files.push((format!("{prefix}{LABELS_FILE}"), labels_csv(split)?.into_bytes()));
    }
    Ok(files)
}

/// The targets of `split` as `labels.csv`.
fn labels_csv(split: &MultiTaskDataset) -> Result<String> {
    let quote = |name: &str| {
        if name.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.to_string()
        }
    };
    let names: Vec<String> = split.tasks.iter().map(|t| quote(&t.name)).collect();
    let mut columns: Vec<Vec<String>> = Vec::new();
    for (spec, targets) in split.tasks.iter().zip(&split.targets) {
        let column = match (&spec.kind, targets) {
            (TaskKind::Classification { .. }, TaskTargets::Classes { labels }) => labels
                .iter()
                .map(|&l| if l == MISSING_LABEL { String::new() } else { l.to_string() })
                .collect(),
            (TaskKind::Regression { dim: 1 }, TaskTargets::Values { values, mask }) => (0..values
                .nrows())
                .map(|i| match mask {
                    Some(m) if !m[i] => String::new(),
                    // `{:?}` writes the shortest exact form, with a decimal point.
                    _ => format!("{:?}", values[[i, 0]]),
                })
                .collect(),
            _ => {
                return Err(DataError::Config(format!(
                    "task `{}` ({:?}) has no column in a labels file: an images folder holds classifications and regressions of one value",
                    spec.name, spec.kind
                )))
            }
        };
        columns.push(column);
    }
    let mut text = names.join(",");
    text.push('\n');
    for i in 0..split.len() {
        let row: Vec<&str> = columns.iter().map(|c| c[i].as_str()).collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    Ok(text)
}

/// The files of an images folder.
struct FolderFiles {
    /// The images file.
    images: PathBuf,
    /// `labels.csv`.
    labels: PathBuf,
    /// The test images file and `test_labels.csv`, if the folder has them.
    test: Option<(PathBuf, PathBuf)>,
}

impl FolderFiles {
    /// Finds the files of the folder `dir`, and refuses a folder without images or labels, with
    /// two images files of one split, or with one test file without the other.
    fn find(dir: &Path) -> Result<Self> {
        let not_found = |path: &Path, message: String| DataError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, message),
        };
        if !dir.is_dir() {
            if !dir.exists() {
                return Err(not_found(dir, "no such folder".into()));
            }
            return Err(DataError::Format {
                path: dir.into(),
                message: format!("is a file, not a folder holding images.npy and {LABELS_FILE}"),
            });
        }
        let images = find_images(dir, "images")?.ok_or_else(|| {
            let others: Vec<String> =
                IMAGE_ENDINGS[1..].iter().map(|e| format!("images{e}")).collect();
            let (last, rest) = others.split_last().expect("several endings");
            let message = format!("no such file, nor {} or {last} in that folder", rest.join(", "));
            not_found(&dir.join("images.npy"), message)
        })?;
        let labels = dir.join(LABELS_FILE);
        if !labels.is_file() {
            let message = "no such file: the labels of the images, a header row naming the \
                           tasks and one row per image";
            return Err(not_found(&labels, message.into()));
        }
        let test_labels = Some(dir.join(TEST_LABELS_FILE)).filter(|p| p.exists());
        let test = match (find_images(dir, "test_images")?, test_labels) {
            (Some(images), Some(labels)) => Some((images, labels)),
            (None, None) => None,
            (Some(present), None) | (None, Some(present)) => {
                let name = file_name(&present);
                let other =
                    if name == TEST_LABELS_FILE { "test_images.npy" } else { TEST_LABELS_FILE };
                return Err(DataError::Format {
                    path: dir.into(),
                    message: format!(
                        "holds {name} but no {other}: a fixed test split needs both, or neither \
                         for a random one"
                    ),
                });
            }
        };
        Ok(FolderFiles { images, labels, test })
    }
}

/// The last component of `path`, for messages.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The images file of `stem` in `dir`, if there is one.
fn find_images(dir: &Path, stem: &str) -> Result<Option<PathBuf>> {
    let found: Vec<PathBuf> = IMAGE_ENDINGS
        .iter()
        .map(|e| dir.join(format!("{stem}{e}")))
        .filter(|p| p.exists())
        .collect();
    match &found[..] {
        [] => Ok(None),
        [one] if one.is_file() => Ok(Some(one.clone())),
        [one] => {
            Err(DataError::Format { path: one.clone(), message: "is a folder, not a file".into() })
        }
        [first, second, ..] => Err(DataError::Format {
            path: dir.into(),
            message: format!(
                "holds both {} and {}: keep one images file",
                file_name(first),
                file_name(second)
            ),
        }),
    }
}

/// Reads the images and their labels, and checks that there is one row of labels per image.
fn read_split(
    images: &Path,
    labels: &Path,
    tasks: Option<&[CsvTask]>,
) -> Result<(Array4<f32>, TargetTable)> {
    let inputs = read_images(images)?;
    let table = read_target_table(labels, tasks)?;
    let n = inputs.len_of(Axis(0));
    if table.rows != n {
        return Err(DataError::Format {
            path: labels.into(),
            message: format!(
                "{} label rows but {} holds {n} images: give one row per image",
                table.rows,
                images.display()
            ),
        });
    }
    Ok((inputs, table))
}

/// The tasks of the training labels, found by their header names and with their kinds, for
/// the test labels.
fn same_tasks(specs: &[TaskSpec]) -> Vec<CsvTask> {
    specs
        .iter()
        .map(|spec| CsvTask {
            name: spec.name.clone(),
            columns: vec![Column::Name(spec.name.clone())],
            kind: match spec.kind {
                TaskKind::Regression { .. } => CsvTargetKind::Regression,
                _ => CsvTargetKind::Classification { classes: None },
            },
        })
        .collect()
}

/// Gives each classification task of both splits the larger class count of the two, and the
/// named classes of both, numbered in sorted order, returning those names.
fn merge_classes(train: &mut TargetTable, test: &mut TargetTable) -> Vec<Vec<String>> {
    let mut class_names = Vec::new();
    for t in 0..train.tasks.len() {
        let (mut names, test_names) = (train.class_names[t].clone(), &test.class_names[t]);
        if !names.is_empty() {
            names.extend(test_names.iter().cloned());
            names.sort();
            names.dedup();
            renumber(&mut train.targets[t], &train.class_names[t], &names);
            renumber(&mut test.targets[t], test_names, &names);
        }
        if let (TaskKind::Classification { classes: a }, TaskKind::Classification { classes: b }) =
            (&train.tasks[t].kind, &test.tasks[t].kind)
        {
            let classes = (*a).max(*b).max(names.len());
            for table in [&mut *train, &mut *test] {
                table.tasks[t] = TaskSpec::classification(table.tasks[t].name.clone(), classes);
            }
        }
        class_names.push(names);
    }
    train.class_names.clone_from(&class_names);
    test.class_names.clone_from(&class_names);
    class_names
}

/// Maps class labels numbered by `from` (label `l` is `from[l]`) to the numbering of `to`.
fn renumber(targets: &mut TaskTargets, from: &[String], to: &[String]) {
    if let TaskTargets::Classes { labels } = targets {
        for label in labels.iter_mut().filter(|l| **l != MISSING_LABEL) {
            *label = to.binary_search(&from[*label as usize]).map_or(MISSING_LABEL, |l| l as i64);
        }
    }
}

/// Reads an array of images as `[N, C, H, W]` floats: a `.npy` file (by its name's ending) of
/// `uint8`, scaled by 1/255, or of `float32`, taken as they are; or else an IDX file of unsigned
/// bytes (gzipped or not), scaled by 1/255. An `[N, H, W]` array gets one channel.
///
/// # Errors
///
/// Those of [`read_idx`](crate::read_idx) for IDX files, and, naming the file:
/// [`DataError::Io`] when it cannot be read; [`DataError::Format`] when a `.npy` file is not
/// one, is truncated or longer than its header says, holds another dtype than `uint8` or
/// `float32`, or a `float32` value that is not finite (naming its flat index); and when the
/// array does not have 3 or 4 axes, or has no image or an image without pixels.
pub fn read_images(path: impl AsRef<Path>) -> Result<Array4<f32>> {
    let path = path.as_ref();
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let array = if is_npy {
        read_npy_images(path)?
    } else {
        let idx = read_idx(path)?;
        let pixels = idx.data.iter().map(|&v| v as f32 / 255.0).collect();
        ArrayD::from_shape_vec(IxDyn(&idx.dims), pixels).map_err(|e| DataError::Format {
            path: path.into(),
            message: format!("dimensions {:?} do not fit the data: {e}", idx.dims),
        })?
    };
    let shape = array.shape().to_vec();
    let array = match shape.len() {
        3 => array.insert_axis(Axis(1)),
        4 => array,
        _ => {
            return Err(DataError::Format {
                path: path.into(),
                message: format!(
                    "holds an array of shape {shape:?}: images are [N, H, W] or [N, C, H, W]"
                ),
            })
        }
    };
    if shape[0] == 0 {
        return Err(DataError::Format {
            path: path.into(),
            message: format!("holds no images (shape {shape:?})"),
        });
    }
    if shape.contains(&0) {
        return Err(DataError::Format {
            path: path.into(),
            message: format!("holds images of shape {shape:?}: an image needs at least one pixel"),
        });
    }
    let array = array.into_dimensionality::<Ix4>().map_err(|e| DataError::Format {
        path: path.into(),
        message: format!("cannot read shape {shape:?} as images: {e}"),
    })?;
    Ok(if array.is_standard_layout() { array } else { array.as_standard_layout().into_owned() })
}

/// Reads a `.npy` file of `float32` (as they are) or `uint8` (scaled by 1/255) values.
fn read_npy_images(path: &Path) -> Result<ArrayD<f32>> {
    let bytes =
        std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })?;
    let format = |message: String| DataError::Format { path: path.into(), message };
    let shape = npy_shape(&bytes);
    // The reader allocates the array its header announces before reading it: a header that
    // announces more values than the file has bytes is refused first.
    if let Some(shape) = &shape {
        let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let data = bytes.len().saturating_sub(npy_header_len(&bytes).unwrap_or(0));
        if values.is_none_or(|v| v > data) {
            return Err(format(truncated(Some(shape))));
        }
    }
    let why = |e: ReadNpyError| match e {
        ReadNpyError::MissingData => format(truncated(shape.as_deref())),
        ReadNpyError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format("truncated: the file ends inside its .npy header".into())
        }
        ReadNpyError::Io(source) => DataError::Io { path: path.into(), source },
        ReadNpyError::ParseHeader(e) => format(format!("not a .npy file numpy can read: {e}")),
        ReadNpyError::ExtraBytes(n) => {
            format(format!("{n} bytes follow the data that the .npy header announces"))
        }
        ReadNpyError::LengthOverflow => {
            format("the shape in the .npy header is too large to hold in memory".into())
        }
        other => format(format!("cannot read it as .npy: {other}")),
    };
    match ArrayD::<f32>::read_npy(bytes.as_slice()) {
        Ok(array) => {
            if let Some((i, v)) = array.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let per_image = array.shape()[1..].iter().product::<usize>().max(1);
                return Err(format(format!(
                    "holds {v} at flat index {i} (image {}): float32 images must be finite",
                    i / per_image
                )));
            }
            Ok(array)
        }
        Err(ReadNpyError::WrongDescriptor(_)) => match ArrayD::<u8>::read_npy(bytes.as_slice()) {
            Ok(array) => Ok(array.mapv(|v| v as f32 / 255.0)),
            Err(ReadNpyError::WrongDescriptor(found)) => {
                let found = found.to_string();
                let name = dtype_name(&found).map_or_else(String::new, |n| format!("{n}, "));
                Err(format(format!(
                    "holds values of dtype {name}{found}; images are uint8 or float32 \
                     (x.astype(np.float32) converts them)"
                )))
            }
            Err(e) => Err(why(e)),
        },
        Err(e) => Err(why(e)),
    }
}

/// Why a `.npy` file is short.
fn truncated(shape: Option<&[usize]>) -> String {
    let announced = shape.map_or_else(String::new, |s| format!(" (shape {s:?})"));
    format!("truncated: the file ends before the values its .npy header announces{announced}")
}

/// Where a `.npy` file's header text starts and ends (after the magic string, the version and
/// the text's length: 2 bytes in version 1, 4 after), if the file starts as one.
fn npy_header_text(bytes: &[u8]) -> Option<(usize, usize)> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return None;
    }
    let (start, len) = match bytes.get(6)? {
        1 => (10, u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?) as usize),
        _ => (12, u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize),
    };
    Some((start, start.checked_add(len)?))
}

/// The length of a `.npy` file's header, if the file starts as one.
fn npy_header_len(bytes: &[u8]) -> Option<usize> {
    npy_header_text(bytes).map(|(_, end)| end)
}

/// The `shape` a `.npy` header announces (`'shape': (200, 8, 8)`), if it reads as one.
fn npy_shape(bytes: &[u8]) -> Option<Vec<usize>> {
    let (start, end) = npy_header_text(bytes)?;
    let text = std::str::from_utf8(bytes.get(start..end)?).ok()?;
    let after = &text[text.find("'shape'")? + "'shape'".len()..];
    let tuple = &after[after.find('(')? + 1..];
    let tuple = &tuple[..tuple.find(')')?];
    tuple.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().ok()).collect()
}

/// numpy's name of a `.npy` type descriptor such as `'<f8'` (`float64`), if it is a number.
fn dtype_name(descriptor: &str) -> Option<String> {
    let code = descriptor.trim_matches('\'').trim_start_matches(['<', '>', '|', '=']);
    let (kind, bytes) = code.split_at_checked(1)?;
    let bits = bytes.parse::<usize>().ok()? * 8;
    Some(match kind {
        "f" => format!("float{bits}"),
        "i" => format!("int{bits}"),
        "u" => format!("uint{bits}"),
        "c" => format!("complex{bits}"),
        "b" if bits == 8 => "bool".into(),
        _ => return None,
    })
}
