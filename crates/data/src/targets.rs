//! The target columns of a table: which columns each task reads, and their cells parsed into
//! class labels, class names or real values, with errors naming the file, the line and the
//! column.
//!
//! The CSV data set reads its targets here ([`read_csv`](crate::read_csv)), and so does a table
//! of targets alone, such as the `labels.csv` of an images folder ([`read_target_table`]).

use std::collections::BTreeSet;
use std::path::Path;

use ndarray::Array2;

use crate::csv::{
    is_missing, not_a_number, read_table, Column, CsvTargetKind, CsvTask, Table, MAX_CSV_CLASSES,
};
use crate::dataset::TaskTargets;
use crate::error::{DataError, Result};
use crate::task::{TaskSpec, MISSING_LABEL};

/// The targets of a table's tasks, every row read.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetTable {
    /// The number of data rows.
    pub rows: usize,
    /// The tasks, in the order they were asked for (or of the columns).
    pub tasks: Vec<TaskSpec>,
    /// Each task's targets, one per row.
    pub targets: Vec<TaskTargets>,
    /// For each task, the names of its classes in label order ([`CsvTargetKind::NamedClasses`]
    /// only; empty for other tasks).
    pub class_names: Vec<Vec<String>>,
}

/// Reads a comma-separated table of targets alone: a header row naming the columns, then one
/// row per sample. `tasks` picks the columns and their kinds; `None` makes a task of every
/// column, named after its header cell: a classification when every present cell is an
/// integer from 0 (the class count is the largest label plus one), a regression otherwise.
/// Missing cells are read as [`read_csv`](crate::read_csv) reads them: the sample is masked out
/// of that task.
///
/// # Errors
///
/// Those of [`read_csv`](crate::read_csv) for its target columns, and [`DataError::Format`]
/// when, without `tasks`, a header cell is empty or two header cells are the same.
///
/// ```
/// use tapestry_data::{read_target_table, TaskKind, TaskTargets, MISSING_LABEL};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("labels.csv");
/// std::fs::write(&path, "digit,size\n3,0.5\nNA,1.5\n7,2\n")?;
/// let table = read_target_table(&path, None)?;
/// assert_eq!(table.rows, 3);
/// assert_eq!(table.tasks[0].kind, TaskKind::Classification { classes: 8 });
/// assert_eq!(table.targets[0], TaskTargets::Classes { labels: vec![3, MISSING_LABEL, 7] });
/// assert_eq!(table.tasks[1].kind, TaskKind::Regression { dim: 1 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_target_table(path: impl AsRef<Path>, tasks: Option<&[CsvTask]>) -> Result<TargetTable> {
    let path = path.as_ref();
    let table = read_table(path, true, ',')?;
    table.check_rows(path)?;
    let inferred;
    let tasks = match tasks {
        Some(tasks) => tasks,
        None => {
            inferred = every_column(&table, path)?;
            &inferred
        }
    };
    let columns = task_columns(&table, path, tasks)?;
    parse_targets(&table, path, tasks, &columns)
}

/// One task per column, named after its header cell: a classification when every present cell
/// is an integer from 0, a regression otherwise.
fn every_column(table: &Table, path: &Path) -> Result<Vec<CsvTask>> {
    let header = table.header.as_deref().unwrap_or_default();
    let mut tasks: Vec<CsvTask> = Vec::new();
    for (j, name) in header.iter().enumerate() {
        let problem = if name.is_empty() {
            Some(format!("the header cell of column {} is empty: every column names a task", j + 1))
        } else {
            header[..j].iter().position(|other| other == name).map(|first| {
                format!(
                    "columns {} and {} are both named {name:?}: every column names a task",
                    first + 1,
                    j + 1
                )
            })
        };
        if let Some(message) = problem {
            return Err(DataError::Format { path: path.into(), message });
        }
        let labels = table.rows.iter().map(|(_, cells)| cells[j].trim()).filter(|c| !is_missing(c));
        let classes = labels.clone().all(|c| c.parse::<i64>().is_ok_and(|l| l >= 0));
        let kind = if classes {
            CsvTargetKind::Classification { classes: None }
        } else {
            CsvTargetKind::Regression
        };
        tasks.push(CsvTask { name: name.clone(), columns: vec![Column::Index(j)], kind });
    }
    Ok(tasks)
}

/// The 0-based columns of each task, checked: every column exists, no column serves two tasks
/// or one task twice, a classification has one column and at most [`MAX_CSV_CLASSES`] classes,
/// a regression at least one column.
pub(crate) fn task_columns(
    table: &Table,
    path: &Path,
    tasks: &[CsvTask],
) -> Result<Vec<Vec<usize>>> {
    let mut used = Vec::new();
    let mut owners: Vec<&str> = Vec::new();
    let mut task_columns = Vec::new();
    for task in tasks {
        let columns =
            task.columns.iter().map(|c| table.resolve(c, path)).collect::<Result<Vec<_>>>()?;
        let mut seen: Vec<usize> = Vec::new();
        for &j in &columns {
            let reuse = if seen.contains(&j) {
                Some(format!("is listed twice in task {:?}", task.name))
            } else {
                used.iter().position(|&u| u == j).map(|k| {
                    format!("is the target of both task {:?} and task {:?}", owners[k], task.name)
                })
            };
            if let Some(reuse) = reuse {
                return Err(DataError::Format {
                    path: path.into(),
                    message: format!("column {} {reuse}", table.describe(j)),
                });
            }
            seen.push(j);
        }
        if let CsvTargetKind::Classification { classes: Some(c) } = task.kind {
            if c > MAX_CSV_CLASSES {
                return Err(DataError::Format {
                    path: path.into(),
                    message: format!(
                        "task {:?} asks for {c} classes, more than the {MAX_CSV_CLASSES} a task may have",
                        task.name
                    ),
                });
            }
        }
        let arity_ok = match task.kind {
            CsvTargetKind::Classification { .. } | CsvTargetKind::NamedClasses => {
                columns.len() == 1
            }
            CsvTargetKind::Regression => !columns.is_empty(),
        };
        if !arity_ok {
            return Err(DataError::Format {
                path: path.into(),
                message: format!(
                    "task {:?} has {} target columns; classification needs 1, regression at least 1",
                    task.name,
                    columns.len()
                ),
            });
        }
        owners.extend(columns.iter().map(|_| task.name.as_str()));
        used.extend_from_slice(&columns);
        task_columns.push(columns);
    }
    Ok(task_columns)
}

/// Parses every row's cells of each task's columns (from [`task_columns`]).
pub(crate) fn parse_targets(
    table: &Table,
    path: &Path,
    tasks: &[CsvTask],
    task_columns: &[Vec<usize>],
) -> Result<TargetTable> {
    let n = table.rows.len();
    let cell_error =
        |line: usize, j: usize, message: String| table.cell_error(path, line, j, message);
    let no_labels = |task: &str| DataError::Format {
        path: path.into(),
        message: format!("classification task {task:?} has no label in any row"),
    };
    let mut specs = Vec::new();
    let mut targets = Vec::new();
    let mut class_names = Vec::new();
    for (task, columns) in tasks.iter().zip(task_columns) {
        match task.kind {
            CsvTargetKind::Classification { classes } => {
                let j = columns[0];
                let mut labels = Vec::with_capacity(n);
                for (line, cells) in &table.rows {
                    let cell = cells[j].trim();
                    if is_missing(cell) {
                        labels.push(MISSING_LABEL);
                        continue;
                    }
                    let label = cell.parse::<i64>().ok().filter(|&l| l >= 0).ok_or_else(|| {
                        cell_error(
                            *line,
                            j,
                            format!(
                                "cannot parse {cell:?} as a class label (an integer from 0; \
                                 text labels need named classes)"
                            ),
                        )
                    })?;
                    if classes.is_none() && label >= MAX_CSV_CLASSES as i64 {
                        return Err(cell_error(
                            *line,
                            j,
                            format!(
                                "class label {label} would make {} classes, more than the \
                                 {MAX_CSV_CLASSES} a task may have; correct it if it is a typo, or \
                                 read the column as named classes if the labels are identifiers",
                                label as u64 + 1
                            ),
                        ));
                    }
                    if let Some(c) = classes.filter(|&c| label >= c as i64) {
                        return Err(cell_error(
                            *line,
                            j,
                            format!("class label {label} is not below {c}"),
                        ));
                    }
                    labels.push(label);
                }
                let Some(largest) = labels.iter().copied().max().filter(|&l| l >= 0) else {
                    return Err(no_labels(&task.name));
                };
                let classes = classes.unwrap_or(largest as usize + 1);
                specs.push(TaskSpec::classification(task.name.clone(), classes));
                targets.push(TaskTargets::Classes { labels });
                class_names.push(Vec::new());
            }
            CsvTargetKind::NamedClasses => {
                let j = columns[0];
                let cells = || table.rows.iter().map(|(_, cells)| cells[j].trim());
                let names: BTreeSet<&str> = cells().filter(|c| !is_missing(c)).collect();
                if names.is_empty() {
                    return Err(no_labels(&task.name));
                }
                let names: Vec<String> = names.into_iter().map(String::from).collect();
                let labels = cells()
                    .map(|c| match names.binary_search_by(|name| name.as_str().cmp(c)) {
                        Ok(label) => label as i64,
                        Err(_) => MISSING_LABEL,
                    })
                    .collect();
                specs.push(TaskSpec::classification(task.name.clone(), names.len()));
                targets.push(TaskTargets::Classes { labels });
                class_names.push(names);
            }
            CsvTargetKind::Regression => {
                let mut values = Array2::<f32>::zeros((n, columns.len()));
                let mut mask = vec![true; n];
                for (i, (line, cells)) in table.rows.iter().enumerate() {
                    for (k, &j) in columns.iter().enumerate() {
                        let cell = cells[j].trim();
                        match cell.parse::<f32>() {
                            Ok(v) if v.is_finite() => values[[i, k]] = v,
                            _ if is_missing(cell) => mask[i] = false,
                            _ => return Err(cell_error(*line, j, not_a_number(cell))),
                        }
                    }
                    if !mask[i] {
                        values.row_mut(i).fill(0.0);
                    }
                }
                if !mask.contains(&true) {
                    return Err(DataError::Format {
                        path: path.into(),
                        message: format!("regression task {:?} has no value in any row", task.name),
                    });
                }
                let mask = if mask.iter().all(|&m| m) { None } else { Some(mask) };
                specs.push(TaskSpec::regression(task.name.clone(), columns.len()));
                targets.push(TaskTargets::Values { values, mask });
                class_names.push(Vec::new());
            }
        }
    }
    Ok(TargetTable { rows: n, tasks: specs, targets, class_names })
}
