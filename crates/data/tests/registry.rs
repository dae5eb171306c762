//! Data sets by name.

use tapestry_data::{write_idx, DataError, DatasetConfig, DATASET_NAMES};

#[test]
fn every_name_is_known_and_others_are_refused() {
    assert_eq!(
        DATASET_NAMES,
        ["multidigits", "multifashion", "scenes", "csv", "images", "fashion"]
    );
    for name in ["multidigits", "scenes", "multifashion", "fashion"] {
        assert_eq!(DatasetConfig::by_name(name, 0, None).unwrap().name(), name);
    }
    assert_eq!(DatasetConfig::by_name("MultiDigits", 0, None).unwrap().name(), "multidigits");
    let err = DatasetConfig::by_name("imagenet", 0, None).unwrap_err();
    assert!(matches!(err, DataError::UnknownDataset(_)), "{err}");
    assert!(
        err.to_string().contains("\"imagenet\"") && err.to_string().contains("multidigits"),
        "{err}"
    );
    let err = DatasetConfig::by_name("csv", 0, None).unwrap_err();
    assert!(err.to_string().contains("needs the path"), "{err}");
    let err = DatasetConfig::by_name("images", 0, None).unwrap_err();
    assert!(err.to_string().contains("needs the path of a folder"), "{err}");
    assert!(DatasetConfig::by_name("scenes", 0, Some("x".into())).is_err());
}

#[test]
fn named_data_sets_load() {
    let digits = DatasetConfig::by_name("multidigits", 1, None).unwrap().load().unwrap();
    assert_eq!((digits.train.len(), digits.test.len()), (10_000, 2_000));
    assert_eq!(digits.train.sample_shape(), &[1, 12, 12]);
    let scenes = DatasetConfig::by_name("scenes", 1, None).unwrap().load().unwrap();
    assert_eq!(scenes.train.sample_shape(), &[3, 28, 28]);

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "f,g,y\n1,2,0\n2,3,1\n3,4,1\n4,5,0\n5,6,1\n").unwrap();
    let table = DatasetConfig::by_name("csv", 1, Some(csv)).unwrap().load().unwrap();
    assert_eq!(table.train.len() + table.test.len(), 5);
    assert_eq!(table.train.sample_shape(), &[2]);

    for (prefix, n) in [("train", 4usize), ("t10k", 2)] {
        let images: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 256) as u8).collect();
        write_idx(
            dir.path().join(format!("{prefix}-images-idx3-ubyte")),
            &[n, 28, 28],
            &images,
            false,
        )
        .unwrap();
        write_idx(dir.path().join(format!("{prefix}-labels-idx1-ubyte")), &[n], &vec![3; n], false)
            .unwrap();
    }
    let fashion =
        DatasetConfig::by_name("multifashion", 1, Some(dir.path().into())).unwrap().load().unwrap();
    assert_eq!(fashion.train.inputs.shape(), &[8, 1, 36, 36]);
    assert_eq!(fashion.test.len(), 4);
    let plain =
        DatasetConfig::by_name("fashion", 1, Some(dir.path().into())).unwrap().load().unwrap();
    assert_eq!(plain.train.inputs.shape(), &[4, 1, 28, 28]);
    assert_eq!(plain.test.len(), 2);
    assert_eq!(plain.train.tasks[0].name, "class");
}
