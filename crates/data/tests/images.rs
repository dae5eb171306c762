//! Users' own images: `.npy` and IDX arrays, labels read as CSV targets, the fixed or random test
//! split, and one sentence naming the file for every malformed folder.

use std::path::{Path, PathBuf};

use ndarray::{Array, Array2, Array3, Array4, ShapeBuilder};
use ndarray_npy::write_npy;
use tapestry_data::{
    images_splits, read_images, write_idx, Column, CsvTargetKind, CsvTask, DataError,
    DatasetConfig, ImagesConfig, TaskKind, TaskTargets, MISSING_LABEL,
};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `labels.csv` text: a header and one row per label.
fn labels(header: &str, rows: impl IntoIterator<Item = String>) -> String {
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(&row);
        text.push('\n');
    }
    text
}

/// A folder of `n` uint8 images of `side` x `side` whose label `i % classes` is in `labels.csv`.
fn folder(n: usize, side: usize, classes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pixels =
        Array3::from_shape_fn((n, side, side), |(i, r, c)| ((i + r * side + c) % 256) as u8);
    write_npy(dir.path().join("images.npy"), &pixels).unwrap();
    write(dir.path(), "labels.csv", &labels("class", (0..n).map(|i| (i % classes).to_string())));
    dir
}

/// Every image of `dir` (made by [`folder`]) in one split, put back in the files' order (image
/// `i`'s first pixel is `i / 255`).
fn in_file_order(config: ImagesConfig) -> tapestry_data::MultiTaskDataset {
    let all = images_splits(&ImagesConfig { test_fraction: 0.0, ..config }).unwrap().splits.train;
    let first = |k: usize| (all.inputs[[k, 0, 0, 0]] * 255.0).round() as usize;
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&k| first(k));
    all.subset("in file order", &order)
}

fn read(dir: &Path) -> tapestry_data::Result<tapestry_data::ImagesData> {
    images_splits(&ImagesConfig::new(dir))
}

/// The error of reading `dir`, as the command line shows it.
fn error(dir: &Path) -> String {
    read(dir).map(|_| ()).expect_err("the folder is refused").to_string()
}

/// Asserts that `message` names `file` and says `what`.
fn assert_names(message: &str, file: &Path, what: &str) {
    assert!(message.contains(&file.display().to_string()), "{file:?} not in {message:?}");
    assert!(message.contains(what), "{what:?} not in {message:?}");
}

/// The bytes of a `.npy` file (version 1.0) with this descriptor, shape and data.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("{},", dims[0]) } else { dims.join(", ") };
    let mut text = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({shape}), }}");
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn uint8_images_of_n_h_w_are_scaled_and_get_one_channel() {
    let dir = folder(10, 4, 2);
    let images = read_images(dir.path().join("images.npy")).unwrap();
    assert_eq!(images.shape(), &[10, 1, 4, 4]);
    assert_eq!(images[[3, 0, 1, 2]], ((3 + 4 + 2) as f32) / 255.0);
    assert!(images.iter().all(|&v| (0.0..=1.0).contains(&v)));
    let data = read(dir.path()).unwrap();
    let (train, test) = (&data.splits.train, &data.splits.test);
    assert_eq!((train.len(), test.len()), (8, 2));
    assert_eq!(train.sample_shape(), &[1, 4, 4]);
    assert_eq!(train.tasks[0].name, "class");
    assert_eq!(train.tasks[0].kind, TaskKind::Classification { classes: 2 });
    assert_eq!((train.name.as_str(), test.name.as_str()), ("images/train", "images/test"));
    // Each image keeps its label: image i's first pixel is i / 255, its label i % 2.
    for split in [train, test] {
        let TaskTargets::Classes { labels } = &split.targets[0] else { panic!("classes") };
        for (k, &label) in labels.iter().enumerate() {
            let i = (split.inputs[[k, 0, 0, 0]] * 255.0).round() as i64;
            assert_eq!(label, i % 2);
        }
    }
}

#[test]
fn float32_images_of_n_c_h_w_are_taken_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = Array4::from_shape_fn((5, 3, 2, 4), |(i, c, r, w)| {
        i as f32 - 1.5 * c as f32 + 0.25 * r as f32 - 10.0 * w as f32
    });
    write_npy(dir.path().join("images.npy"), &pixels).unwrap();
    assert_eq!(read_images(dir.path().join("images.npy")).unwrap(), pixels);
    // Fortran order: the same values, laid out column-major in the file.
    let fortran = Array::from_shape_vec((5, 3, 2, 4).f(), vec![0.0f32; 120]).unwrap();
    let mut fortran = fortran;
    fortran.assign(&pixels);
    write_npy(dir.path().join("fortran.npy"), &fortran).unwrap();
    let read_back = read_images(dir.path().join("fortran.npy")).unwrap();
    assert_eq!(read_back, pixels);
    assert!(read_back.is_standard_layout());
    // Big-endian float32, as numpy writes `x.astype('>f4')`.
    let values = [1.5f32, -2.0, 0.25, 8.0];
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    std::fs::write(dir.path().join("big.npy"), npy_bytes(">f4", &[1, 2, 2], &data)).unwrap();
    let big = read_images(dir.path().join("big.npy")).unwrap();
    assert_eq!(big.iter().copied().collect::<Vec<_>>(), values);
}

#[test]
fn idx_images_are_read_plain_and_gzipped() {
    let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
    for (name, gzip) in [
        ("images-idx3-ubyte", false),
        ("images-idx3-ubyte.gz", true),
        ("images.idx", false),
        ("images.idx.gz", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path().join(name), &[4, 3, 3], &pixels, gzip).unwrap();
        write(dir.path(), "labels.csv", "a,b\n0,1\n1,0\n0,0\n1,1\n");
        let images = read_images(dir.path().join(name)).unwrap();
        assert_eq!(images.shape(), &[4, 1, 3, 3]);
        assert_eq!(images[[1, 0, 2, 1]], pixels[9 + 7] as f32 / 255.0);
        let data =
            images_splits(&ImagesConfig { test_fraction: 0.5, ..ImagesConfig::new(dir.path()) })
                .unwrap();
        assert_eq!((data.splits.train.len(), data.splits.test.len()), (2, 2), "{name}");
        assert_eq!(data.splits.train.tasks.len(), 2);
    }
    // Four axes in IDX are channels.
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path().join("images.idx"), &[2, 3, 2, 2], &[9; 24], false).unwrap();
    assert_eq!(read_images(dir.path().join("images.idx")).unwrap().shape(), &[2, 3, 2, 2]);
}

#[test]
fn a_fixed_test_split_is_read_from_the_test_files() {
    let dir = folder(12, 3, 3);
    let test = Array3::from_shape_fn((4, 3, 3), |(i, r, c)| (200 + i + r + c) as u8);
    write_npy(dir.path().join("test_images.npy"), &test).unwrap();
    write(dir.path(), "test_labels.csv", "class\n2\n1\n\n0\n?\n");
    let data = read(dir.path()).unwrap();
    let (train, test_split) = (&data.splits.train, &data.splits.test);
    assert_eq!((train.len(), test_split.len()), (12, 4));
    assert_eq!(test_split.inputs[[1, 0, 0, 0]], 201.0 / 255.0);
    // The training images stay in the file's order.
    assert_eq!(train.inputs[[5, 0, 0, 0]], 5.0 / 255.0);
    assert_eq!(
        test_split.targets[0],
        TaskTargets::Classes { labels: vec![2, 1, 0, MISSING_LABEL] }
    );
    // The seed does not change a fixed split.
    let other = images_splits(&ImagesConfig { seed: 9, ..ImagesConfig::new(dir.path()) }).unwrap();
    assert_eq!(other.splits.test.inputs, test_split.inputs);
}

#[test]
fn the_class_count_is_the_larger_of_the_two_files() {
    for (train_labels, test_labels, classes) in
        [("0\n1\n2\n", "4\n0\n", 5), ("0\n6\n2\n", "1\n0\n", 7)]
    {
        let dir = folder(3, 2, 1);
        write(dir.path(), "labels.csv", &format!("digit\n{train_labels}"));
        write_npy(dir.path().join("test_images.npy"), &Array3::<u8>::zeros((2, 2, 2))).unwrap();
        write(dir.path(), "test_labels.csv", &format!("digit\n{test_labels}"));
        let data = read(dir.path()).unwrap();
        for split in [&data.splits.train, &data.splits.test] {
            assert_eq!(split.tasks[0].kind, TaskKind::Classification { classes }, "{split:?}");
        }
    }
}

#[test]
fn named_classes_of_both_files_are_numbered_together() {
    let dir = folder(3, 2, 1);
    write(dir.path(), "labels.csv", "kind\ncat\ndog\ncat\n");
    write_npy(dir.path().join("test_images.npy"), &Array3::<u8>::zeros((3, 2, 2))).unwrap();
    write(dir.path(), "test_labels.csv", "kind\nant\ndog\nNA\n");
    let tasks = vec![CsvTask {
        name: "kind".into(),
        columns: vec![Column::Name("kind".into())],
        kind: CsvTargetKind::NamedClasses,
    }];
    let config = ImagesConfig { tasks: Some(tasks), ..ImagesConfig::new(dir.path()) };
    let data = images_splits(&config).unwrap();
    assert_eq!(data.class_names, [["ant", "cat", "dog"]]);
    assert_eq!(data.splits.train.targets[0], TaskTargets::Classes { labels: vec![1, 2, 1] });
    assert_eq!(
        data.splits.test.targets[0],
        TaskTargets::Classes { labels: vec![0, 2, MISSING_LABEL] }
    );
    assert_eq!(data.splits.test.tasks[0].kind, TaskKind::Classification { classes: 3 });
}

#[test]
fn the_random_split_is_drawn_with_the_seed() {
    let dir = folder(50, 2, 5);
    let split = |seed| {
        let data = images_splits(&ImagesConfig { seed, ..ImagesConfig::new(dir.path()) }).unwrap();
        data.splits
    };
    let (a, b, c) = (split(3), split(3), split(4));
    assert_eq!((a.train.len(), a.test.len()), (40, 10));
    assert_eq!(a.test.inputs, b.test.inputs);
    assert_eq!(a.train.targets, b.train.targets);
    assert_ne!(a.test.inputs, c.test.inputs);
    // Train and test hold every image once.
    let mut firsts: Vec<i64> = [&a.train, &a.test]
        .iter()
        .flat_map(|s| s.inputs.outer_iter().map(|x| (x[[0, 0, 0]] * 255.0).round() as i64))
        .collect();
    firsts.sort_unstable();
    assert_eq!(firsts, (0..50).collect::<Vec<_>>());
    // By name, the seed is the run's.
    let named =
        DatasetConfig::by_name("images", 3, Some(dir.path().into())).unwrap().load().unwrap();
    assert_eq!(named.test.inputs, a.test.inputs);
}

#[test]
fn missing_labels_are_masked_as_the_csv_reader_masks_them() {
    let dir = folder(6, 2, 1);
    write(dir.path(), "labels.csv", "class,size\n1,0.5\n,NA\nNA,2\nN/A,3\nNaN,?\n?,4.5\n");
    let all = in_file_order(ImagesConfig::new(dir.path()));
    assert_eq!(
        all.targets[0],
        TaskTargets::Classes { labels: vec![1, MISSING_LABEL, -1, -1, -1, -1] }
    );
    assert_eq!(all.tasks[0].kind, TaskKind::Classification { classes: 2 });
    assert_eq!(all.targets[0].present(), 1);
    let TaskTargets::Values { values, mask } = &all.targets[1] else { panic!("values") };
    assert_eq!(mask.as_deref(), Some(&[true, false, true, true, false, true][..]));
    assert_eq!(values.column(0).to_vec(), vec![0.5, 0.0, 2.0, 3.0, 0.0, 4.5]);
}

#[test]
fn a_column_with_a_fraction_or_a_negative_number_is_a_regression() {
    let dir = folder(4, 2, 1);
    write(dir.path(), "labels.csv", "count,score,offset\n0,1,-1\n3,2.5,2\n1,3,0\n2,1e1,4\n");
    let all = in_file_order(ImagesConfig::new(dir.path()));
    let kinds: Vec<&TaskKind> = all.tasks.iter().map(|t| &t.kind).collect();
    assert_eq!(
        kinds,
        [
            &TaskKind::Classification { classes: 4 },
            &TaskKind::Regression { dim: 1 },
            &TaskKind::Regression { dim: 1 },
        ]
    );
    let expected = Array2::from_shape_vec((4, 1), vec![1.0, 2.5, 3.0, 10.0]).unwrap();
    assert_eq!(all.targets[1], TaskTargets::Values { values: expected, mask: None });
    // Tasks picked by hand: one column, read as a regression.
    let tasks = vec![CsvTask {
        name: "count".into(),
        columns: vec![Column::Name("count".into())],
        kind: CsvTargetKind::Regression,
    }];
    let picked =
        in_file_order(ImagesConfig { tasks: Some(tasks), ..ImagesConfig::new(dir.path()) });
    assert_eq!(picked.tasks.len(), 1);
    assert_eq!(picked.tasks[0].kind, TaskKind::Regression { dim: 1 });
    let expected = Array2::from_shape_vec((4, 1), vec![0.0, 3.0, 1.0, 2.0]).unwrap();
    assert_eq!(picked.targets[0], TaskTargets::Values { values: expected, mask: None });
}

#[test]
fn a_missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nothere");
    assert_names(&error(&absent), &absent, "no such folder");
    let file = write(dir.path(), "file.csv", "a\n1\n");
    assert_names(&error(&file), &file, "is a file, not a folder");
}

#[test]
fn a_missing_images_file_names_the_names_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "labels.csv", "class\n0\n");
    let message = error(dir.path());
    assert_names(&message, &dir.path().join("images.npy"), "no such file");
    for name in ["images-idx3-ubyte", "images-idx3-ubyte.gz", "images.idx", "images.idx.gz"] {
        assert!(message.contains(name), "{name} not in {message}");
    }
}

#[test]
fn two_images_files_are_refused() {
    let dir = folder(2, 2, 1);
    write_idx(dir.path().join("images.idx"), &[2, 2, 2], &[0; 8], false).unwrap();
    let message = error(dir.path());
    assert_names(&message, dir.path(), "holds both images.npy and images.idx: keep one");
}

#[test]
fn a_missing_labels_file_is_named() {
    let dir = folder(2, 2, 1);
    std::fs::remove_file(dir.path().join("labels.csv")).unwrap();
    assert_names(&error(dir.path()), &dir.path().join("labels.csv"), "no such file");
}

#[test]
fn a_test_split_needs_both_files() {
    let dir = folder(4, 2, 2);
    write_npy(dir.path().join("test_images.npy"), &Array3::<u8>::zeros((2, 2, 2))).unwrap();
    assert_names(&error(dir.path()), dir.path(), "holds test_images.npy but no test_labels.csv");
    std::fs::remove_file(dir.path().join("test_images.npy")).unwrap();
    write(dir.path(), "test_labels.csv", "class\n0\n");
    assert_names(&error(dir.path()), dir.path(), "holds test_labels.csv but no test_images.npy");
}

#[test]
fn an_image_count_other_than_the_row_count_names_both() {
    let dir = folder(5, 2, 2);
    write(dir.path(), "labels.csv", "class\n0\n1\n0\n1\n");
    let message = error(dir.path());
    assert_names(&message, &dir.path().join("labels.csv"), "4 label rows");
    assert_names(&message, &dir.path().join("images.npy"), "holds 5 images");

    // The same for the test files.
    let dir = folder(4, 2, 2);
    write_npy(dir.path().join("test_images.npy"), &Array3::<u8>::zeros((3, 2, 2))).unwrap();
    write(dir.path(), "test_labels.csv", "class\n0\n1\n");
    let message = error(dir.path());
    assert_names(&message, &dir.path().join("test_labels.csv"), "2 label rows");
    assert_names(&message, &dir.path().join("test_images.npy"), "holds 3 images");
}

#[test]
fn an_array_of_other_than_3_or_4_axes_is_refused() {
    for shape in [vec![6, 16], vec![6], vec![2, 1, 2, 2, 2]] {
        let dir = folder(6, 2, 2);
        let n: usize = shape.iter().product();
        let array = Array::from_shape_vec(shape.clone(), vec![0u8; n]).unwrap();
        write_npy(dir.path().join("images.npy"), &array).unwrap();
        let message = error(dir.path());
        assert_names(&message, &dir.path().join("images.npy"), &format!("shape {shape:?}"));
        assert!(message.contains("images are [N, H, W] or [N, C, H, W]"), "{message}");
    }
}

#[test]
fn an_empty_array_is_refused() {
    let dir = folder(2, 2, 1);
    let path = dir.path().join("images.npy");
    write_npy(&path, &Array3::<u8>::zeros((0, 4, 4))).unwrap();
    assert_names(&error(dir.path()), &path, "holds no images (shape [0, 4, 4])");
    write_npy(&path, &Array4::<f32>::zeros((2, 1, 0, 4))).unwrap();
    assert_names(&error(dir.path()), &path, "an image needs at least one pixel");
}

#[test]
fn an_unsupported_dtype_names_it_and_the_two_accepted() {
    let dir = folder(2, 2, 1);
    let path = dir.path().join("images.npy");
    write_npy(&path, &Array3::<f64>::zeros((2, 2, 2))).unwrap();
    let message = error(dir.path());
    assert_names(&message, &path, "dtype float64, '<f8'");
    assert!(message.contains("uint8 or float32"), "{message}");
    write_npy(&path, &Array3::<i64>::zeros((2, 2, 2))).unwrap();
    assert_names(&error(dir.path()), &path, "dtype int64, '<i8'");
    write_npy(&path, &Array3::<bool>::from_elem((2, 2, 2), false)).unwrap();
    assert_names(&error(dir.path()), &path, "dtype bool, '|b1'");
}

#[test]
fn a_truncated_npy_file_is_refused() {
    let dir = folder(4, 3, 2);
    let path = dir.path().join("images.npy");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    assert_names(&error(dir.path()), &path, "truncated");
    assert!(error(dir.path()).contains("shape [4, 3, 3]"));
    // float32: the file holds a byte per value but not four.
    std::fs::write(&path, npy_bytes("<f4", &[4, 3, 3], &[0; 40])).unwrap();
    assert_names(&error(dir.path()), &path, "truncated");
    // A header announcing more values than memory holds is refused before any allocation.
    std::fs::write(&path, npy_bytes("<f4", &[1 << 20, 1 << 20, 1 << 20], &[0; 16])).unwrap();
    assert_names(&error(dir.path()), &path, "truncated");
    // Inside the header.
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert_names(&error(dir.path()), &path, "truncated");
    // Extra bytes, and a file that is not .npy at all.
    std::fs::write(&path, [&bytes[..], &[0, 0, 0]].concat()).unwrap();
    assert_names(&error(dir.path()), &path, "3 bytes follow the data");
    std::fs::write(&path, "class\n0\n1\n").unwrap();
    assert_names(&error(dir.path()), &path, "not a .npy file");
}

#[test]
fn a_non_finite_float_names_its_flat_index() {
    let dir = folder(3, 2, 1);
    let path = dir.path().join("images.npy");
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "-inf")] {
        let mut pixels = Array4::<f32>::zeros((3, 2, 2, 2));
        pixels[[1, 1, 0, 1]] = bad;
        write_npy(&path, &pixels).unwrap();
        let message = error(dir.path());
        assert_names(&message, &path, &format!("holds {shown} at flat index 13 (image 1)"));
        assert!(message.contains("must be finite"), "{message}");
    }
}

#[test]
fn a_bad_label_cell_names_its_line_and_column() {
    let dir = folder(3, 2, 1);
    let labels = write(dir.path(), "labels.csv", "class,size\n0,1.5\n1,wide\n0,2\n");
    let message = error(dir.path());
    assert_names(&message, &labels, "line 3, column 2 (\"size\"): cannot parse \"wide\"");
    let tasks = vec![CsvTask {
        name: "class".into(),
        columns: vec![Column::Name("class".into())],
        kind: CsvTargetKind::Classification { classes: None },
    }];
    write(dir.path(), "labels.csv", "class\n0\n0.5\n1\n");
    let config = ImagesConfig { tasks: Some(tasks), ..ImagesConfig::new(dir.path()) };
    let err = images_splits(&config).map(|_| ()).unwrap_err();
    assert!(matches!(&err, DataError::Csv { line: 3, .. }), "{err:?}");
    assert_names(&err.to_string(), &labels, "cannot parse \"0.5\" as a class label");
    write(dir.path(), "labels.csv", "class,class\n0,1\n1,0\n0,1\n");
    assert_names(&error(dir.path()), &labels, "columns 1 and 2 are both named \"class\"");
    write(dir.path(), "labels.csv", "class,\n0,1\n1,0\n0,1\n");
    assert_names(&error(dir.path()), &labels, "the header cell of column 2 is empty");
}

#[test]
fn a_labels_file_with_a_header_only_is_refused() {
    let dir = folder(3, 2, 1);
    let labels = write(dir.path(), "labels.csv", "class,size\n");
    assert_names(&error(dir.path()), &labels, "a header but no data rows");
    write(dir.path(), "labels.csv", "");
    assert_names(&error(dir.path()), &labels, "no lines");
}

#[test]
fn test_images_of_another_shape_name_both_files() {
    let dir = folder(4, 3, 2);
    write_npy(dir.path().join("test_images.npy"), &Array3::<u8>::zeros((2, 4, 3))).unwrap();
    write(dir.path(), "test_labels.csv", "class\n0\n1\n");
    let message = error(dir.path());
    assert_names(&message, &dir.path().join("test_images.npy"), "shape [1, 4, 3]");
    assert_names(&message, &dir.path().join("images.npy"), "shape [1, 3, 3]");
}

#[test]
fn a_data_set_written_as_an_images_folder_reads_back_exactly() {
    use tapestry_data::images_folder_files;
    let mut splits = DatasetConfig::by_name("multidigits", 3, None).unwrap().load().unwrap();
    // A missing label and a missing value must survive the trip as empty cells.
    if let TaskTargets::Classes { labels } = &mut splits.train.targets[0] {
        labels[5] = MISSING_LABEL;
    }
    let n = splits.train.len();
    if let TaskTargets::Values { mask, .. } = &mut splits.train.targets[2] {
        let mut m = vec![true; n];
        m[7] = false;
        *mask = Some(m);
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in images_folder_files(&splits).unwrap() {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let back = images_splits(&ImagesConfig::new(dir.path())).unwrap().splits;
    for (ours, theirs) in [(&splits.train, &back.train), (&splits.test, &back.test)] {
        assert_eq!(ours.inputs, theirs.inputs, "the inputs, bit for bit");
        assert_eq!(ours.tasks, theirs.tasks, "the tasks, with their kinds and class counts");
        for (a, b) in ours.targets.iter().zip(&theirs.targets) {
            match (a, b) {
                (
                    TaskTargets::Values { values: va, mask: ma },
                    TaskTargets::Values { values: vb, mask: mb },
                ) => {
                    assert_eq!(ma, mb);
                    let present = |i: usize| ma.as_ref().is_none_or(|m| m[i]);
                    for i in (0..va.nrows()).filter(|&i| present(i)) {
                        assert_eq!(va[[i, 0]].to_bits(), vb[[i, 0]].to_bits());
                    }
                }
                _ => assert_eq!(a, b),
            }
        }
    }
    // Per-pixel targets have no column.
    let scenes = DatasetConfig::by_name("scenes", 0, None).unwrap().load().unwrap();
    let err = images_folder_files(&scenes).unwrap_err().to_string();
    assert!(err.contains("has no column in a labels file"), "{err}");
}
