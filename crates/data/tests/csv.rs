//! CSV tables: column choice, masks for missing labels, errors naming file, line and column,
//! standardisation fitted on the training split.

use std::path::PathBuf;

use ndarray::Axis;

use tapestry_data::{
    csv_splits, read_csv, Column, CsvConfig, CsvTable, CsvTargetKind, CsvTask, DataError, TaskKind,
    TaskTargets, MISSING_LABEL,
};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn two_tasks(path: PathBuf) -> CsvConfig {
    CsvConfig {
        features: Some(vec![Column::Name("a".into()), Column::Index(1)]),
        tasks: vec![
            CsvTask {
                name: "kind".into(),
                columns: vec![Column::Name("kind".into())],
                kind: CsvTargetKind::Classification { classes: None },
            },
            CsvTask {
                name: "size".into(),
                columns: vec![Column::Name("w".into()), Column::Name("h".into())],
                kind: CsvTargetKind::Regression,
            },
        ],
        test_fraction: 0.0,
        standardize: false,
        ..CsvConfig::last_column_classification(path)
    }
}

const TABLE: &str = "a,b,kind,w,h,unused\n\
                     1.5,2,0,10,20,x\n\
                     \n\
                     -1,3e1,2,,21,y\n\
                     \"4\",5,,12,22,\"z, quoted\"\r\n\
                     0,0,1,13,NA,w\n";

#[test]
fn columns_targets_and_masks_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "table.csv", TABLE);
    let CsvTable { dataset: data, feature_names: names, class_names } =
        read_csv(&two_tasks(path)).unwrap();
    assert_eq!(class_names, vec![Vec::<String>::new(); 2]);
    assert_eq!(names, ["a", "b"]);
    assert_eq!(data.name, "table");
    assert_eq!(data.inputs.shape(), &[4, 2]);
    assert_eq!(
        data.inputs.iter().copied().collect::<Vec<_>>(),
        vec![1.5, 2.0, -1.0, 30.0, 4.0, 5.0, 0.0, 0.0]
    );
    assert_eq!(data.tasks[0].kind, TaskKind::Classification { classes: 3 });
    assert_eq!(data.targets[0], TaskTargets::Classes { labels: vec![0, 2, MISSING_LABEL, 1] });
    let TaskTargets::Values { values, mask } = &data.targets[1] else { panic!("values") };
    assert_eq!(data.tasks[1].kind, TaskKind::Regression { dim: 2 });
    assert_eq!(mask.as_deref(), Some(&[true, false, true, false][..]));
    assert_eq!(values.row(0).to_vec(), vec![10.0, 20.0]);
    assert_eq!(values.row(2).to_vec(), vec![12.0, 22.0]);
    assert_eq!(values.row(1).to_vec(), vec![0.0, 0.0]);
    assert_eq!(data.targets[0].present(), 3);
    assert_eq!(data.targets[1].present(), 2);
}

#[test]
fn default_features_are_the_unused_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "plain.csv", "1,2,0\n3,4,1\n5,6,1\n");
    let config = CsvConfig {
        has_header: false,
        test_fraction: 0.0,
        standardize: false,
        ..CsvConfig::last_column_classification(path)
    };
    let CsvTable { dataset: data, feature_names: names, .. } = read_csv(&config).unwrap();
    assert_eq!(names, ["column 1", "column 2"]);
    assert_eq!(data.inputs.shape(), &[3, 2]);
    assert_eq!(data.targets[0], TaskTargets::Classes { labels: vec![0, 1, 1] });
}

#[test]
fn an_unparsable_cell_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad.csv", "a,b,kind,w,h,unused\n1,2,0,10,20,x\n1,two,1,10,20,x\n");
    let err = read_csv(&two_tasks(path.clone())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}, line 3, column 2 (\"b\"): cannot parse \"two\" as a number", path.display())
    );

    let path = write(&dir, "label.csv", "a,b,kind,w,h,unused\n1,2,0.5,10,20,x\n");
    let err = read_csv(&two_tasks(path)).unwrap_err();
    assert!(
        matches!(&err, DataError::Csv { line: 2, column, .. } if column == "3 (\"kind\")"),
        "{err}"
    );
    assert!(err.to_string().contains("cannot parse \"0.5\" as a class label"), "{err}");

    let path = write(&dir, "regression.csv", "a,b,kind,w,h,unused\n1,2,0,wide,20,x\n");
    let err = read_csv(&two_tasks(path)).unwrap_err();
    assert!(err.to_string().contains("line 2, column 4 (\"w\"): cannot parse \"wide\""), "{err}");

    let path = write(&dir, "missing.csv", "a,b,kind,w,h,unused\n,2,0,1,20,x\n");
    let err = read_csv(&two_tasks(path)).unwrap_err();
    assert!(
        err.to_string().contains("line 2, column 1 (\"a\"): a feature value is missing"),
        "{err}"
    );

    let path = write(&dir, "ragged.csv", "a,b,kind,w,h,unused\n1,2,0,1,20\n");
    let err = read_csv(&two_tasks(path)).unwrap_err();
    assert!(
        err.to_string().contains("line 2, column 6: 5 cells where the first line has 6"),
        "{err}"
    );

    let path = write(&dir, "range.csv", "a,b,kind,w,h,unused\n1,2,7,1,20,x\n");
    let mut config = two_tasks(path);
    config.tasks[0].kind = CsvTargetKind::Classification { classes: Some(3) };
    let err = read_csv(&config).unwrap_err();
    assert!(err.to_string().contains("class label 7 is not below 3"), "{err}");

    let path = write(&dir, "quote.csv", "a,b,kind,w,h,unused\n1,2,0,1,20,\"open\n");
    let err = read_csv(&two_tasks(path)).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn unknown_columns_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "table.csv", TABLE);
    let mut config = two_tasks(path.clone());
    config.tasks[1].columns.push(Column::Name("depth".into()));
    let err = read_csv(&config).unwrap_err();
    assert!(err.to_string().contains("no column is named \"depth\""), "{err}");
    assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");

    let config = CsvConfig { features: Some(vec![Column::Index(6)]), ..two_tasks(path) };
    assert!(read_csv(&config).unwrap_err().to_string().contains("column 7 is out of range"));

    let err = read_csv(&two_tasks(dir.path().join("absent.csv"))).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("absent.csv"), "{err}");
}

#[test]
fn standardisation_uses_training_statistics_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("x,y,label\n");
    for i in 0..100 {
        text.push_str(&format!("{},{},{}\n", i as f32 * 0.5, 7.0, i % 2));
    }
    let path = write(&dir, "numbers.csv", &text);
    let config =
        CsvConfig { seed: 3, test_fraction: 0.25, ..CsvConfig::last_column_classification(path) };
    let data = csv_splits(&config).unwrap();
    let (train, test) = (&data.splits.train, &data.splits.test);
    assert_eq!((train.len(), test.len()), (75, 25));
    let s = data.standardizer.as_ref().unwrap();
    let column = |a: &ndarray::ArrayD<f32>, j: usize| {
        a.index_axis(Axis(1), j).iter().copied().collect::<Vec<f32>>()
    };
    // The constant column keeps scale 1 and becomes 0.
    assert_eq!((s.mean[1], s.scale[1]), (7.0, 1.0));
    assert!(column(&train.inputs, 1).iter().chain(&column(&test.inputs, 1)).all(|&v| v == 0.0));
    // Training features have mean 0 and variance 1.
    let x = column(&train.inputs, 0);
    let mean = x.iter().sum::<f32>() / 75.0;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 75.0;
    assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{mean} {var}");
    // The fitted statistics are those of the 75 raw training values, not of all 100: undo
    // the map, then recompute them.
    let raw_train: Vec<f64> = x.iter().map(|&v| (v * s.scale[0] + s.mean[0]) as f64).collect();
    let raw_mean = raw_train.iter().sum::<f64>() / 75.0;
    assert!((raw_mean - s.mean[0] as f64).abs() < 1e-3, "{raw_mean} {}", s.mean[0]);
    assert!((s.mean[0] - 24.75).abs() > 0.01, "the mean of all rows would be 24.75");
    // Test features use the training mean and scale: undoing that map gives the raw values,
    // and train and test together hold each raw value 0, 0.5, ..., 49.5 exactly once.
    let mut all: Vec<i32> = x
        .iter()
        .chain(&column(&test.inputs, 0))
        .map(|v| ((v * s.scale[0] + s.mean[0]) * 2.0).round() as i32)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    let again = csv_splits(&config).unwrap();
    assert_eq!(again.splits.test.inputs, test.inputs);
    let other = csv_splits(&CsvConfig { seed: 4, ..config }).unwrap();
    assert_ne!(other.splits.test.inputs, test.inputs);
}

#[test]
fn named_classes_are_numbered_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = "x,species\n1,virginica\n2,setosa\n3,\n4, versicolor \n5,setosa\n";
    let path = write(&dir, "iris.csv", text);
    let mut config = CsvConfig {
        test_fraction: 0.0,
        standardize: false,
        ..CsvConfig::last_column_classification(path)
    };
    config.tasks[0].kind = CsvTargetKind::NamedClasses;
    let table = read_csv(&config).unwrap();
    assert_eq!(table.class_names[0], ["setosa", "versicolor", "virginica"]);
    assert_eq!(table.dataset.tasks[0].kind, TaskKind::Classification { classes: 3 });
    assert_eq!(
        table.dataset.targets[0],
        TaskTargets::Classes { labels: vec![2, 0, MISSING_LABEL, 1, 0] }
    );
    // The same file read as integer labels names the cell and points to named classes.
    config.tasks[0].kind = CsvTargetKind::Classification { classes: None };
    let err = read_csv(&config).unwrap_err();
    assert!(
        err.to_string().contains("line 2, column 2 (\"species\"): cannot parse \"virginica\""),
        "{err}"
    );
    assert!(err.to_string().contains("named classes"), "{err}");
}

#[test]
fn leaks_and_empty_tasks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "table.csv", TABLE);
    let config = CsvConfig {
        features: Some(vec![Column::Index(0), Column::Name("w".into())]),
        ..two_tasks(path)
    };
    let err = read_csv(&config).unwrap_err();
    assert!(err.to_string().contains("column 4 (\"w\") is both a feature and a target"), "{err}");

    let path = write(&dir, "unlabelled.csv", "x,y\n1,\n2,NA\n");
    let err = read_csv(&CsvConfig::last_column_classification(path)).unwrap_err();
    assert!(err.to_string().contains("has no label in any row"), "{err}");
}

/// The last-column classification of `text`, read whole.
fn read_text(dir: &tempfile::TempDir, name: &str, text: &str) -> Result<CsvTable, DataError> {
    read_csv(&CsvConfig::last_column_classification(write(dir, name, text)))
}

#[test]
fn a_stray_huge_class_label_is_refused_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for label in ["1000000000000", "9223372036854775807"] {
        let text = format!("a,b,y\n0.1,0.2,0\n0.3,0.4,1\n0.5,0.6,{label}\n0.7,0.8,1\n");
        let err = read_text(&dir, "stray.csv", &text).unwrap_err();
        assert!(
            matches!(&err, DataError::Csv { line: 4, column, .. } if column == "3 (\"y\")"),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(label) && text.contains("named classes"), "{text}");
    }
    // The largest class count accepted still works.
    let text = format!("a,y\n1,0\n2,{}\n", tapestry_data::MAX_CSV_CLASSES - 1);
    let table = read_text(&dir, "wide.csv", &text).unwrap();
    assert_eq!(
        table.dataset.tasks[0].kind,
        TaskKind::Classification { classes: tapestry_data::MAX_CSV_CLASSES }
    );
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "excel.csv", "\u{feff}a,b,y\n1,2,0\n3,4,1\n");
    let config = CsvConfig {
        tasks: vec![CsvTask {
            name: "a".into(),
            columns: vec![Column::Name("a".into())],
            kind: CsvTargetKind::Regression,
        }],
        ..CsvConfig::last_column_classification(path)
    };
    let table = read_csv(&config).unwrap();
    assert_eq!(table.feature_names, ["b", "y"]);
    let table = read_text(&dir, "excel_features.csv", "\u{feff}a,b,y\n1,2,0\n3,4,1\n").unwrap();
    assert_eq!(table.feature_names, ["a", "b"]);
}

#[test]
fn a_column_number_out_of_range_is_counted_from_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "three.csv", "a,b,y\n1,2,0\n3,4,1\n");
    let config = CsvConfig {
        tasks: vec![CsvTask {
            name: "column_4".into(),
            columns: vec![Column::Index(3)],
            kind: CsvTargetKind::Classification { classes: None },
        }],
        ..CsvConfig::last_column_classification(path)
    };
    let err = read_csv(&config).unwrap_err().to_string();
    assert!(err.ends_with("column 4 is out of range: the file has 3 columns"), "{err}");
}

#[test]
fn a_regression_column_without_any_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "novalue.csv", "a,b,v\n1,2,\n3,4,NA\n5,6,?\n");
    let config = CsvConfig {
        tasks: vec![CsvTask {
            name: "v".into(),
            columns: vec![Column::Name("v".into())],
            kind: CsvTargetKind::Regression,
        }],
        ..CsvConfig::last_column_classification(path)
    };
    let err = read_csv(&config).unwrap_err().to_string();
    assert!(err.contains("regression task \"v\" has no value in any row"), "{err}");
}

#[test]
fn duplicate_names_and_reused_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let task = |name: &str, column: Column, kind| CsvTask {
        name: name.into(),
        columns: vec![column],
        kind,
    };
    let path = write(&dir, "twice.csv", "a,a,y\n1,2,0\n3,4,1\n");
    let config = CsvConfig {
        tasks: vec![task("a", Column::Name("a".into()), CsvTargetKind::Regression)],
        ..CsvConfig::last_column_classification(path.clone())
    };
    let err = read_csv(&config).unwrap_err().to_string();
    assert!(err.contains("\"a\" names columns 1 and 2"), "{err}");
    // By number the duplicate name is no ambiguity.
    let config = CsvConfig {
        tasks: vec![task("column_2", Column::Index(1), CsvTargetKind::Regression)],
        ..CsvConfig::last_column_classification(path)
    };
    assert_eq!(read_csv(&config).unwrap().feature_names, ["a", "y"]);

    let path = write(&dir, "reuse.csv", "a,b,label\n1,2,0\n3,4,1\n");
    let class = CsvTargetKind::Classification { classes: None };
    let config = CsvConfig {
        tasks: vec![
            task("column_3", Column::Index(2), class.clone()),
            task("label", Column::Name("label".into()), class),
        ],
        ..CsvConfig::last_column_classification(path)
    };
    let err = read_csv(&config).unwrap_err().to_string();
    assert!(
        err.contains(
            "column 3 (\"label\") is the target of both task \"column_3\" and task \"label\""
        ),
        "{err}"
    );
}

#[test]
fn odd_files_get_messages_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // Semicolons: every line is one cell.
    let err = read_text(&dir, "semi.csv", "a;b;y\n1;2;0\n3;4;1\n").unwrap_err().to_string();
    assert!(err.contains("one column") && err.contains("`;`"), "{err}");
    // Old Mac line ends are line ends.
    let table = read_text(&dir, "cr.csv", "a,b,y\r1,2,0\r3,4,1\r").unwrap();
    assert_eq!(table.dataset.len(), 2);
    // A header and nothing else.
    let err = read_text(&dir, "header.csv", "a,b,y\n").unwrap_err().to_string();
    assert!(err.contains("header.csv") && err.contains("no data rows"), "{err}");
    // A number outside f32 is called that, not unparsable.
    let err = read_text(&dir, "big.csv", "a,b,y\n1e39,2,0\n3,4,1\n").unwrap_err().to_string();
    assert!(err.contains("\"1e39\" is too large"), "{err}");
}
