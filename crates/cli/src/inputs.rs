//! What a run reads: one data set every task reads (`--dataset`, all its tasks or those of
//! `--tasks`), or a data set per task (`--multi-input DATASET:TASK,...`), each task's samples
//! zero-padded to one image size.

use tapestry_data::{MultiTaskDataset, Splits, TaskSpec};
use tapestry_mtl::multi_input::TaskData;

use crate::config::{parse_multi_input, RunConfig};
use crate::error::Result;
use crate::invalid;
use crate::run::load_data;

/// The data of a run.
#[derive(Debug)]
pub enum RunData {
    /// One data set, every task reads its inputs.
    Shared(Box<Splits>),
    /// One data set per task, each holding that task alone, all with samples of one shape.
    PerTask {
        /// The training sets, in task order.
        train: Vec<MultiTaskDataset>,
        /// The test sets, in task order.
        test: Vec<MultiTaskDataset>,
    },
}

impl RunData {
    /// Loads the data of `config`, at most `config.limit` samples of each split of each data
    /// set; the multi-input entries' images are zero-padded, centred, to the largest height and
    /// width among them.
    pub fn load(config: &RunConfig) -> Result<Self> {
        if config.multi_input.is_empty() {
            let splits = load_data(config)?;
            if config.tasks.is_empty() {
                return Ok(RunData::Shared(Box::new(splits)));
            }
            let keep = config
                .tasks
                .iter()
                .map(|name| task_position(&splits.train, &config.dataset, name))
                .collect::<Result<Vec<_>>>()?;
            let train = some_tasks(&splits.train, &keep)?;
            let test = some_tasks(&splits.test, &keep)?;
            return Ok(RunData::Shared(Box::new(Splits { train, test })));
        }
        let takes_path = |d: &str| matches!(d, "fashion" | "multifashion" | "csv" | "images");
        if config.data_path.is_some() && !config.multi_input_datasets().any(takes_path) {
            return Err(invalid!(
                "--data-path applies to none of the --multi-input data sets ({})",
                config.multi_input.join(", ")
            ));
        }
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for entry in &config.multi_input {
            let (dataset, task) = parse_multi_input(entry)?;
            let one = RunConfig {
                dataset: dataset.clone(),
                data_path: config.data_path.clone().filter(|_| takes_path(&dataset)),
                multi_input: Vec::new(),
                ..config.clone()
            };
            let splits = load_data(&one)?;
            let t = task_position(&splits.train, &dataset, &task)?;
            train.push(some_tasks(&splits.train, &[t])?);
            test.push(some_tasks(&splits.test, &[t])?);
        }
        let shapes: Vec<Vec<usize>> = train.iter().map(|d| d.sample_shape().to_vec()).collect();
        if shapes.iter().any(|s| s != &shapes[0]) {
            let images = shapes.iter().all(|s| s.len() == 3 && s[0] == shapes[0][0]);
            if !images {
                return Err(invalid!(
                    "the --multi-input data sets have samples of shapes {shapes:?}, which padding cannot bring to one size (images need the same channels)"
                ));
            }
            let height = shapes.iter().map(|s| s[1]).max().unwrap_or(0);
            let width = shapes.iter().map(|s| s[2]).max().unwrap_or(0);
            for set in train.iter_mut().chain(test.iter_mut()) {
                *set = set.padded(height, width)?;
            }
        }
        Ok(RunData::PerTask { train, test })
    }

    /// The tasks, in order.
    pub fn tasks(&self) -> Vec<TaskSpec> {
        match self {
            RunData::Shared(splits) => splits.train.tasks.clone(),
            RunData::PerTask { train, .. } => train.iter().map(|d| d.tasks[0].clone()).collect(),
        }
    }

    /// The shape of one input sample.
    pub fn sample_shape(&self) -> &[usize] {
        match self {
            RunData::Shared(splits) => splits.train.sample_shape(),
            RunData::PerTask { train, .. } => train[0].sample_shape(),
        }
    }

    /// The training data.
    pub fn train(&self) -> TaskData<'_> {
        match self {
            RunData::Shared(splits) => TaskData::Shared(&splits.train),
            RunData::PerTask { train, .. } => TaskData::PerTask(train),
        }
    }

    /// The test data.
    pub fn test(&self) -> TaskData<'_> {
        match self {
            RunData::Shared(splits) => TaskData::Shared(&splits.test),
            RunData::PerTask { test, .. } => TaskData::PerTask(test),
        }
    }

    /// Training steps per epoch with batches of `batch_size`: the batches of the data set, or of
    /// the longest per-task data set.
    pub fn steps_per_epoch(&self, batch_size: usize) -> u64 {
        let batches = |d: &MultiTaskDataset| d.len().div_ceil(batch_size) as u64;
        match self {
            RunData::Shared(splits) => batches(&splits.train),
            RunData::PerTask { train, .. } => train.iter().map(batches).max().unwrap_or(0),
        }
    }
}

/// The position of the task called `task` in `data` (of the data set called `dataset`), or an
/// error that lists its tasks.
fn task_position(data: &MultiTaskDataset, dataset: &str, task: &str) -> Result<usize> {
    data.task_index(task).ok_or_else(|| {
        let names: Vec<&str> = data.tasks.iter().map(|s| s.name.as_str()).collect();
        invalid!("data set `{dataset}` has no task `{task}`; its tasks are {}", names.join(", "))
    })
}

/// The data set holding the tasks at `positions` of `data` alone, in that order (named
/// `<data set>/<task>,<task>`).
pub(crate) fn some_tasks(data: &MultiTaskDataset, positions: &[usize]) -> Result<MultiTaskDataset> {
    let names: Vec<&str> = positions.iter().map(|&t| data.tasks[t].name.as_str()).collect();
    Ok(MultiTaskDataset::new(
        format!("{}/{}", data.name, names.join(",")),
        data.inputs.clone(),
        positions.iter().map(|&t| data.tasks[t].clone()).collect(),
        positions.iter().map(|&t| data.targets[t].clone()).collect(),
    )?)
}
