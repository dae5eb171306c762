//! Tasks derived from another task's class labels: new classification tasks on the same inputs,
//! for transfer and few-shot fine-tuning (a MultiDigits run trained on the digits meets the
//! parity of a digit, or "digit ≥ 5", for the first time).
//!
//! | data set | task | from | classes |
//! | --- | --- | --- | --- |
//! | multidigits | `left_parity` | `left_digit` | 0 even, 1 odd |
//! | multidigits | `left_ge5` | `left_digit` | 0 for 0..=4, 1 for 5..=9 |
//! | multidigits | `right_parity` | `right_digit` | 0 even, 1 odd |
//! | multidigits | `right_ge5` | `right_digit` | 0 for 0..=4, 1 for 5..=9 |

use crate::dataset::{MultiTaskDataset, TaskTargets};
use crate::error::{DataError, Result};
use crate::task::{TaskSpec, MISSING_LABEL};

/// A classification task whose label is a function of another task's class label.
#[derive(Clone, Copy, Debug)]
pub struct DerivedTask {
    /// The new task's name.
    pub name: &'static str,
    /// The task whose labels it is computed from.
    pub source: &'static str,
    /// Its number of classes.
    pub classes: usize,
    /// What its classes mean, for messages.
    pub about: &'static str,
    /// The new label of a source label (never called on [`MISSING_LABEL`]).
    label: fn(i64) -> i64,
}

fn parity(digit: i64) -> i64 {
    digit % 2
}

fn at_least_five(digit: i64) -> i64 {
    i64::from(digit >= 5)
}

/// The derived tasks of MultiDigits (see the table at the top of this module).
pub const MULTIDIGITS_DERIVED: [DerivedTask; 4] = [
    DerivedTask {
        name: "left_parity",
        source: "left_digit",
        classes: 2,
        about: "the left digit is odd",
        label: parity,
    },
    DerivedTask {
        name: "left_ge5",
        source: "left_digit",
        classes: 2,
        about: "the left digit is 5 or more",
        label: at_least_five,
    },
    DerivedTask {
        name: "right_parity",
        source: "right_digit",
        classes: 2,
        about: "the right digit is odd",
        label: parity,
    },
    DerivedTask {
        name: "right_ge5",
        source: "right_digit",
        classes: 2,
        about: "the right digit is 5 or more",
        label: at_least_five,
    },
];

/// The derived tasks of the data set called `dataset` (as
/// [`DatasetConfig::by_name`](crate::DatasetConfig::by_name) takes it); none for most.
pub fn derived_tasks(dataset: &str) -> &'static [DerivedTask] {
    match dataset {
        "multidigits" => &MULTIDIGITS_DERIVED,
        _ => &[],
    }
}

impl DerivedTask {
    /// The task's description: a classification with cross-entropy and accuracy.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec::classification(self.name, self.classes)
    }

    /// The new label of each of `labels` (missing labels stay missing).
    pub fn labels(&self, labels: &[i64]) -> Vec<i64> {
        labels.iter().map(|&l| if l == MISSING_LABEL { l } else { (self.label)(l) }).collect()
    }

    /// The data set holding this task alone, on the inputs of `data` (named `<data>/<task>`).
    ///
    /// # Errors
    /// [`DataError::Config`] if `data` has no class-label task named [`DerivedTask::source`].
    pub fn apply(&self, data: &MultiTaskDataset) -> Result<MultiTaskDataset> {
        let missing = || {
            DataError::Config(format!(
                "task {:?} is derived from the class labels of {:?}, which data set {:?} lacks",
                self.name, self.source, data.name
            ))
        };
        let t = data.task_index(self.source).ok_or_else(missing)?;
        let TaskTargets::Classes { labels } = &data.targets[t] else {
            return Err(missing());
        };
        MultiTaskDataset::new(
            format!("{}/{}", data.name, self.name),
            data.inputs.clone(),
            vec![self.spec()],
            vec![TaskTargets::Classes { labels: self.labels(labels) }],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_labels_follow_the_digit() {
        let digits: Vec<i64> = (0..10).chain([MISSING_LABEL]).collect();
        let by_name = |n: &str| MULTIDIGITS_DERIVED.iter().find(|d| d.name == n).unwrap();
        assert_eq!(by_name("left_parity").labels(&digits), [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, -1]);
        assert_eq!(by_name("right_ge5").labels(&digits), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1]);
        assert!(derived_tasks("scenes").is_empty());
    }

    #[test]
    fn applied_to_multidigits_the_task_reads_its_source_labels() {
        let config = crate::MultiDigitsConfig { train_len: 50, test_len: 20, ..Default::default() };
        let splits = crate::multidigits(&config).unwrap().splits;
        let ge5 = MULTIDIGITS_DERIVED[1].apply(&splits.train).unwrap();
        assert_eq!(ge5.tasks, [TaskSpec::classification("left_ge5", 2)]);
        assert_eq!(ge5.inputs, splits.train.inputs);
        let (TaskTargets::Classes { labels: new }, TaskTargets::Classes { labels: digits }) =
            (&ge5.targets[0], &splits.train.targets[0])
        else {
            panic!("class labels");
        };
        assert!(new.iter().zip(digits).all(|(&n, &d)| n == i64::from(d >= 5)));
        let scenes_like = ge5.clone();
        assert!(MULTIDIGITS_DERIVED[0].apply(&scenes_like).is_err());
    }
}
