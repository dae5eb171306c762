//! The error paths of the CSV and IDX readers and of `write_idx`, each with the message it
//! gives today.

use std::path::PathBuf;

use tapestry_data::{
    csv_splits, parse_idx, read_csv, write_idx, Column, CsvConfig, CsvTargetKind, CsvTask,
    DataError,
};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The message of a CSV or IDX error, after the path.
fn message(err: DataError) -> String {
    match err {
        DataError::Format { message, .. } => message,
        DataError::Csv { line, column, message, .. } => {
            format!("line {line}, column {column}: {message}")
        }
        DataError::Config(message) => format!("config: {message}"),
        other => panic!("unexpected error {other:?}"),
    }
}

fn read_err(config: &CsvConfig) -> String {
    message(read_csv(config).expect_err("the read fails"))
}

#[test]
fn an_empty_file_has_no_lines() {
    let dir = tempfile::tempdir().unwrap();
    for text in ["", "\n\n  \n"] {
        let config = CsvConfig::last_column_classification(write(&dir, "e.csv", text));
        assert_eq!(read_err(&config), "the file has no lines", "{text:?}");
    }
}

#[test]
fn a_named_column_needs_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let config = CsvConfig {
        has_header: false,
        features: Some(vec![Column::Name("a".into())]),
        ..CsvConfig::last_column_classification(write(&dir, "n.csv", "1,2,0\n3,4,1\n"))
    };
    assert_eq!(read_err(&config), r#"column "a" is named but the file is read without a header"#);
}

#[test]
fn tasks_need_the_right_number_of_target_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "t.csv", "a,b,c\n1,2,0\n3,4,1\n");
    let task = |columns: Vec<Column>, kind| CsvTask { name: "y".into(), columns, kind };
    for (columns, kind, count) in [
        (
            vec![Column::Index(1), Column::Index(2)],
            CsvTargetKind::Classification { classes: None },
            2,
        ),
        (vec![Column::Index(1), Column::Index(2)], CsvTargetKind::NamedClasses, 2),
        (vec![], CsvTargetKind::Regression, 0),
    ] {
        let config = CsvConfig {
            tasks: vec![task(columns, kind)],
            ..CsvConfig::last_column_classification(path.clone())
        };
        assert_eq!(
            read_err(&config),
            format!(
                r#"task "y" has {count} target columns; classification needs 1, regression at least 1"#
            )
        );
    }
}

#[test]
fn a_table_of_targets_has_no_features() {
    let dir = tempfile::tempdir().unwrap();
    let config = CsvConfig::last_column_classification(write(&dir, "o.csv", "target\n0\n1\n"));
    assert_eq!(read_err(&config), "the file has one column, so no feature column is left");
}

#[test]
fn another_delimiter_splits_the_cells() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "s.csv", "a;b;target\n1.5;2;0\n3;-4;1\n");
    let config = CsvConfig { delimiter: ';', ..CsvConfig::last_column_classification(path) };
    let table = read_csv(&config).unwrap();
    assert_eq!(table.feature_names, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(
        table.dataset.inputs.iter().copied().collect::<Vec<f32>>(),
        vec![1.5, 2.0, 3.0, -4.0]
    );
    // Read with the default comma, each line is one cell: no feature is left, and the message
    // points at the delimiter.
    let comma = CsvConfig { delimiter: ',', ..config };
    assert_eq!(
        read_err(&comma),
        "every line is one column, so no feature column is left; the cells look separated by `;`, but the file is read with `,` between cells"
    );
}

#[test]
fn the_test_fraction_lies_in_0_to_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "f.csv", "a,target\n1,0\n2,1\n");
    for fraction in [1.0, 1.5, -0.1, f64::NAN] {
        let config =
            CsvConfig { test_fraction: fraction, ..CsvConfig::last_column_classification(&path) };
        let err = message(csv_splits(&config).map(|_| ()).expect_err("rejected"));
        assert_eq!(err, format!("config: the test fraction must lie in 0..1, got {fraction}"));
    }
}

#[test]
fn infinite_and_nan_feature_cells_are_rejected() {
    // "inf" parses as a number and fails the finiteness check, "1e39" overflows f32: each is
    // named for what it is. "nan" is one of the spellings of a missing value.
    let dir = tempfile::tempdir().unwrap();
    for (cell, want) in [
        ("inf", r#""inf" is not a finite number"#),
        ("-Infinity", r#""-Infinity" is not a finite number"#),
        ("1e39", r#""1e39" is too large for a 32-bit float (at most about 3.4e38)"#),
        ("nan", "a feature value is missing"),
        ("NaN", "a feature value is missing"),
    ] {
        let path = write(&dir, "x.csv", &format!("a,b,target\n1,2,0\n3,{cell},1\n"));
        let config = CsvConfig::last_column_classification(path);
        assert_eq!(read_err(&config), format!(r#"line 3, column 2 ("b"): {want}"#), "{cell}");
    }
}

#[test]
fn idx_dimensions_whose_product_overflows_are_rejected() {
    // Four dimensions of 2^32 − 1: their product does not fit in 64 bits.
    let mut bytes = vec![0, 0, 0x08, 4];
    for _ in 0..4 {
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    let err = parse_idx(&bytes, "big.idx".as_ref()).expect_err("rejected");
    let d = u32::MAX;
    assert_eq!(message(err), format!("dimensions [{d}, {d}, {d}, {d}] overflow"));
}

#[test]
fn write_idx_rejects_data_that_does_not_fill_its_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.idx");
    let shown = path.display().to_string();
    let many = vec![1usize; 256];
    for (dims, data, gzip) in [
        (&[2usize, 3][..], &[0u8; 5][..], false),
        (&[][..], &[][..], false),
        (&many[..], &[7u8][..], true),
    ] {
        let err = write_idx(&path, dims, data, gzip).expect_err("rejected");
        assert_eq!(
            message(err),
            format!(
                "config: cannot write {shown}: {} bytes do not fill dimensions {dims:?}",
                data.len()
            )
        );
        assert!(!path.exists(), "nothing is written");
    }
    // 255 dimensions are the most an IDX header holds; they round-trip.
    let most = vec![1usize; 255];
    write_idx(&path, &most, &[9], false).unwrap();
    let back = parse_idx(&std::fs::read(&path).unwrap(), &path).unwrap();
    assert_eq!((back.dims, back.data), (most, vec![9]));
}
