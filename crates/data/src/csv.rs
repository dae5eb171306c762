//! Multi-target CSV tables: chosen feature columns, one or more target columns per task.
//!
//! Cells are separated by a delimiter (`,` by default); a cell may be quoted with `"`, with `""`
//! standing for a quote inside it (a quoted cell cannot span lines). Lines end at `\n`, `\r\n`
//! or `\r`; blank lines are skipped, and a leading byte order mark is dropped. A
//! target cell that is empty, `NA`, `N/A`, `NaN` or `?` (any case) is missing: the sample is
//! masked out of that task's loss and metric. A feature cell must be a number.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Axis};

use crate::dataset::{check_test_fraction, MultiTaskDataset, Splits};
use crate::error::{DataError, Result};
use crate::targets::{parse_targets, task_columns, TargetTable};

/// The most classes an integer-labelled task may have when the count is taken from the labels
/// (the largest label plus one): one stray large label would otherwise ask for a head of that
/// many outputs.
pub const MAX_CSV_CLASSES: usize = 100_000;

/// A column, by header name or by 0-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// The column whose header cell is this name (needs a header).
    Name(String),
    /// The column at this 0-based position.
    Index(usize),
    /// The last column.
    Last,
}

/// What a CSV task predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsvTargetKind {
    /// One column of class labels, integers `0..classes`; `classes: None` takes the largest
    /// label in the file plus one.
    Classification {
        /// The number of classes, if known.
        classes: Option<usize>,
    },
    /// One column of class names (any text, such as `setosa`); the classes are the distinct
    /// names in the file, numbered in sorted order, and [`CsvTable::class_names`] lists them.
    NamedClasses,
    /// One or more columns of real values; a sample missing any of them is masked out.
    Regression,
}

/// One task of a CSV table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvTask {
    /// The task's name.
    pub name: String,
    /// The target columns (exactly one for classification).
    pub columns: Vec<Column>,
    /// Classification or regression.
    pub kind: CsvTargetKind,
}

/// How to read a CSV table and split it.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvConfig {
    /// The file.
    pub path: PathBuf,
    /// Whether the first non-blank line names the columns.
    pub has_header: bool,
    /// The cell separator.
    pub delimiter: char,
    /// The feature columns; `None` takes every column no task uses, in file order.
    pub features: Option<Vec<Column>>,
    /// The tasks.
    pub tasks: Vec<CsvTask>,
    /// The fraction of rows, drawn at random with `seed`, kept for the test split (`0..1`).
    pub test_fraction: f64,
    /// The seed of the split.
    pub seed: u64,
    /// Whether to standardise each feature with the mean and standard deviation of the
    /// training split (applied to both splits).
    pub standardize: bool,
}

impl CsvConfig {
    /// A configuration for a file with a header whose last column is a classification target
    /// named `"target"` and whose other columns are features; 20% test rows, standardised
    /// features.
    pub fn last_column_classification(path: impl Into<PathBuf>) -> Self {
        CsvConfig {
            path: path.into(),
            has_header: true,
            delimiter: ',',
            features: None,
            tasks: vec![CsvTask {
                name: "target".into(),
                columns: vec![Column::Last],
                kind: CsvTargetKind::Classification { classes: None },
            }],
            test_fraction: 0.2,
            seed: 0,
            standardize: true,
        }
    }
}

/// Per-feature affine standardisation, `(x - mean) / scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// The mean of each feature.
    pub mean: Vec<f32>,
    /// The standard deviation of each feature (1 where it is 0).
    pub scale: Vec<f32>,
}

impl Standardizer {
    /// The mean and (population) standard deviation of each column of `inputs` `[N, F]`,
    /// accumulated in `f64`.
    ///
    /// # Panics
    ///
    /// If `inputs` is not two-dimensional.
    pub fn fit(inputs: &ArrayD<f32>) -> Self {
        assert_eq!(inputs.ndim(), 2, "standardisation needs [N, F] inputs");
        let n = inputs.len_of(Axis(0)).max(1) as f64;
        let mut mean = Vec::new();
        let mut scale = Vec::new();
        for column in inputs.axis_iter(Axis(1)) {
            let m = column.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = column.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
            mean.push(m as f32);
            scale.push(if var > 0.0 { var.sqrt() as f32 } else { 1.0 });
        }
        Standardizer { mean, scale }
    }

    /// Standardises `inputs` `[N, F]` in place.
    ///
    /// # Panics
    ///
    /// If `inputs` does not have as many columns as the standardiser.
    pub fn apply(&self, inputs: &mut ArrayD<f32>) {
        assert_eq!(inputs.shape()[1], self.mean.len(), "feature count differs from the fit");
        for (j, mut column) in inputs.axis_iter_mut(Axis(1)).enumerate() {
            column.mapv_inplace(|x| (x - self.mean[j]) / self.scale[j]);
        }
    }
}

/// A CSV table read whole, before any split.
#[derive(Clone, Debug)]
pub struct CsvTable {
    /// All rows as one data set named after the file; inputs are `[N, F]`.
    pub dataset: MultiTaskDataset,
    /// The feature columns' names (header names, or `column N` without a header).
    pub feature_names: Vec<String>,
    /// For each task, the names of its classes in label order ([`CsvTargetKind::NamedClasses`]
    /// only; empty for other tasks).
    pub class_names: Vec<Vec<String>>,
}

/// A CSV table read and split.
#[derive(Clone, Debug)]
pub struct CsvData {
    /// The train and test splits; inputs are `[N, F]`.
    pub splits: Splits,
    /// The feature columns' names (header names, or `column N` without a header).
    pub feature_names: Vec<String>,
    /// For each task, the names of its classes in label order ([`CsvTargetKind::NamedClasses`]
    /// only; empty for other tasks).
    pub class_names: Vec<Vec<String>>,
    /// The standardisation applied, fitted on the training split.
    pub standardizer: Option<Standardizer>,
}

/// A parsed file: the header (if any) and the rows with their line numbers.
pub(crate) struct Table {
    /// The header's cells, trimmed.
    pub(crate) header: Option<Vec<String>>,
    /// Each data row's 1-based line number and cells.
    pub(crate) rows: Vec<(usize, Vec<String>)>,
    /// The number of cells of every line.
    pub(crate) width: usize,
}

/// Splits one line into cells.
fn split_record(line: &str, delimiter: char) -> std::result::Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        if quoted {
            if ch == '"' {
                if chars.peek() == Some(&'"') {
                    cell.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cell.push(ch);
            }
        } else if ch == '"' && cell.trim().is_empty() {
            cell.clear();
            quoted = true;
        } else if ch == delimiter {
            cells.push(std::mem::take(&mut cell));
        } else {
            cell.push(ch);
        }
    }
    if quoted {
        return Err("a quoted cell is not closed on its line".into());
    }
    cells.push(cell);
    Ok(cells)
}

/// Reads and splits the file into a header and rows of equal width.
pub(crate) fn read_table(path: &Path, has_header: bool, delimiter: char) -> Result<Table> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DataError::Io { path: path.into(), source })?;
    // A byte order mark (Excel's "CSV UTF-8") is not part of the first cell.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut header = None;
    let mut rows = Vec::new();
    let mut width = None;
    // A line ends at `\n`, `\r\n` or a lone `\r` (old Mac files).
    let text = text.replace("\r\n", "\n");
    for (index, line) in text.split(['\n', '\r']).enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let cells = split_record(line, delimiter).map_err(|message| DataError::Csv {
            path: path.into(),
            line: line_number,
            column: "-".into(),
            message,
        })?;
        match width {
            None => width = Some(cells.len()),
            Some(w) if w != cells.len() => {
                return Err(DataError::Csv {
                    path: path.into(),
                    line: line_number,
                    column: (cells.len().min(w) + 1).to_string(),
                    message: format!("{} cells where the first line has {w}", cells.len()),
                })
            }
            Some(_) => {}
        }
        if has_header && header.is_none() {
            header = Some(cells.into_iter().map(|c| c.trim().to_string()).collect());
        } else {
            rows.push((line_number, cells));
        }
    }
    let width = width.ok_or_else(|| DataError::Format {
        path: path.into(),
        message: "the file has no lines".into(),
    })?;
    Ok(Table { header, rows, width })
}

impl Table {
    /// Refuses a file without data rows.
    pub(crate) fn check_rows(&self, path: &Path) -> Result<()> {
        if self.rows.is_empty() {
            return Err(DataError::Format {
                path: path.into(),
                message: "the file has a header but no data rows".into(),
            });
        }
        Ok(())
    }

    /// The 0-based position of a column.
    pub(crate) fn resolve(&self, column: &Column, path: &Path) -> Result<usize> {
        match column {
            Column::Last => Ok(self.width - 1),
            Column::Index(i) if *i < self.width => Ok(*i),
            Column::Index(i) => Err(DataError::Format {
                path: path.into(),
                message: format!(
                    "column {} is out of range: the file has {} columns",
                    i + 1,
                    self.width
                ),
            }),
            Column::Name(name) => {
                let header = self.header.as_ref().ok_or_else(|| DataError::Format {
                    path: path.into(),
                    message: format!(
                        "column {name:?} is named but the file is read without a header"
                    ),
                })?;
                let matches: Vec<usize> =
                    (0..header.len()).filter(|&j| header[j] == *name).collect();
                match matches[..] {
                    [j] => Ok(j),
                    [] => Err(DataError::Format {
                        path: path.into(),
                        message: format!("no column is named {name:?}; the header has {header:?}"),
                    }),
                    _ => {
                        let numbers: Vec<String> =
                            matches.iter().map(|j| (j + 1).to_string()).collect();
                        let (last, rest) = numbers.split_last().expect("two or more");
                        Err(DataError::Format {
                            path: path.into(),
                            message: format!(
                                "the header name {name:?} names columns {} and {last}; \
                                 give the column by its number instead",
                                rest.join(", ")
                            ),
                        })
                    }
                }
            }
        }
    }

    /// How errors name column `j`: its 1-based position and, with a header, its name.
    pub(crate) fn describe(&self, j: usize) -> String {
        match &self.header {
            Some(h) => format!("{} ({:?})", j + 1, h[j]),
            None => (j + 1).to_string(),
        }
    }

    /// A [`DataError::Csv`] for the cell of column `j` on line `line`.
    pub(crate) fn cell_error(
        &self,
        path: &Path,
        line: usize,
        j: usize,
        message: String,
    ) -> DataError {
        DataError::Csv { path: path.into(), line, column: self.describe(j), message }
    }

    /// The name of column `j` for feature lists.
    fn name(&self, j: usize) -> String {
        match &self.header {
            Some(h) => h[j].clone(),
            None => format!("column {}", j + 1),
        }
    }
}

/// Why `cell` is not a number a feature or regression cell can hold.
pub(crate) fn not_a_number(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            format!("{cell:?} is too large for a 32-bit float (at most about 3.4e38)")
        }
        Ok(_) => format!("{cell:?} is not a finite number"),
        Err(_) => format!("cannot parse {cell:?} as a number"),
    }
}

/// Whether a target cell is missing.
pub(crate) fn is_missing(cell: &str) -> bool {
    let cell = cell.trim();
    cell.is_empty() || ["na", "n/a", "nan", "?"].iter().any(|m| cell.eq_ignore_ascii_case(m))
}

/// Reads the whole table as one data set named after the file, without splitting or
/// standardising.
///
/// # Errors
///
/// [`DataError::Io`] when the file cannot be read; [`DataError::Format`] when the file has no
/// data rows, a column does not exist, a header name used to pick a column names several
/// columns, a task has the wrong number of columns, a column is the target of two tasks or both
/// a feature and a target, no feature column is left, or a classification (regression) column
/// has no label (value) at all; and [`DataError::Csv`] (file, line, column) when a row has the
/// wrong number of cells, a feature cell is missing or not a finite 32-bit number, a regression
/// cell is not one, or a class label is not an integer in range (below the class count given,
/// or below [`MAX_CSV_CLASSES`] when the count is taken from the labels).
pub fn read_csv(config: &CsvConfig) -> Result<CsvTable> {
    let path = config.path.as_path();
    let table = read_table(path, config.has_header, config.delimiter)?;
    table.check_rows(path)?;
    let task_columns = task_columns(&table, path, &config.tasks)?;
    let used = task_columns.concat();
    let features = match &config.features {
        Some(columns) => {
            columns.iter().map(|c| table.resolve(c, path)).collect::<Result<Vec<_>>>()?
        }
        None => (0..table.width).filter(|j| !used.contains(j)).collect(),
    };
    if features.is_empty() {
        let first = table.header.as_ref().unwrap_or(&table.rows[0].1)[0].as_str();
        let other =
            [';', '\t', '|', ','].into_iter().find(|&c| c != config.delimiter && first.contains(c));
        let message = match other {
            Some(c) if table.width == 1 => format!(
                "every line is one column, so no feature column is left; the cells look separated \
                 by `{}`, but the file is read with `{}` between cells",
                c.escape_default(),
                config.delimiter.escape_default()
            ),
            _ if table.width == 1 => "the file has one column, so no feature column is left".into(),
            _ => "no feature columns are left".into(),
        };
        return Err(DataError::Format { path: path.into(), message });
    }
    if let Some(&j) = features.iter().find(|j| used.contains(j)) {
        return Err(DataError::Format {
            path: path.into(),
            message: format!("column {} is both a feature and a target", table.describe(j)),
        });
    }
    let cell_error =
        |line: usize, j: usize, message: String| table.cell_error(path, line, j, message);

    let n = table.rows.len();
    let mut inputs = Array2::<f32>::zeros((n, features.len()));
    for (i, (line, cells)) in table.rows.iter().enumerate() {
        for (k, &j) in features.iter().enumerate() {
            let cell = cells[j].trim();
            inputs[[i, k]] = match cell.parse::<f32>() {
                Ok(v) if v.is_finite() => v,
                _ if is_missing(cell) => {
                    return Err(cell_error(*line, j, "a feature value is missing".into()))
                }
                _ => return Err(cell_error(*line, j, not_a_number(cell))),
            };
        }
    }

    let TargetTable { tasks, targets, class_names, .. } =
        parse_targets(&table, path, &config.tasks, &task_columns)?;
    let name =
        path.file_stem().map_or_else(|| "csv".to_string(), |s| s.to_string_lossy().into_owned());
    let dataset = MultiTaskDataset::new(name, inputs.into_dyn(), tasks, targets)?;
    let feature_names = features.iter().map(|&j| table.name(j)).collect();
    Ok(CsvTable { dataset, feature_names, class_names })
}

/// Reads the table, splits its rows at random (seeded) into train and test, and, if asked,
/// standardises the features with statistics of the training rows only. Fails as [`read_csv`]
/// does, and with [`DataError::Config`] when the test fraction is outside `0..1`.
pub fn csv_splits(config: &CsvConfig) -> Result<CsvData> {
    check_test_fraction(config.test_fraction)?;
    let CsvTable { dataset, feature_names, class_names } = read_csv(config)?;
    let Splits { mut train, mut test } = dataset.random_splits(config.test_fraction, config.seed);
    let standardizer = config.standardize.then(|| {
        let s = Standardizer::fit(&train.inputs);
        s.apply(&mut train.inputs);
        s.apply(&mut test.inputs);
        s
    });
    Ok(CsvData { splits: Splits { train, test }, feature_names, class_names, standardizer })
}
