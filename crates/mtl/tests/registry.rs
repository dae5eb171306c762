//! The weighting registry: every method builds under its name with its declared defaults, every
//! default lies in its declared range, bad values are refused by name, and the guide documents
//! every method and hyper-parameter.

use std::collections::BTreeMap;

use tapestry_mtl::weighting::{by_name, method_names, MethodOptions, METHODS};

#[test]
fn every_method_builds_under_its_name_with_its_defaults() {
    for m in METHODS {
        let w = by_name(m.name, &MethodOptions::default()).unwrap();
        assert_eq!(w.name(), m.name);
        for h in m.hypers {
            assert!(h.range.contains(h.default), "{}: default {} of {}", m.name, h.default, h.name);
        }
    }
    let mut names = method_names();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), METHODS.len(), "a method name is registered twice");
}

#[test]
fn values_outside_a_range_or_unknown_names_are_refused_by_name() {
    let with = |name: &str, value: f64| MethodOptions {
        params: BTreeMap::from([(name.to_string(), value)]),
        ..MethodOptions::default()
    };
    for m in METHODS {
        for h in m.hypers {
            let below = if h.range.min_inclusive { h.range.min - 1.0 } else { h.range.min };
            let err = by_name(m.name, &with(h.name, below)).err().unwrap().to_string();
            assert!(err.contains(h.name) && err.contains(m.name), "{err}");
            assert!(by_name(m.name, &with(h.name, f64::NAN)).is_err());
        }
        let err = by_name(m.name, &with("no-such-parameter", 1.0)).err().unwrap().to_string();
        assert!(err.contains("no hyper-parameter `no-such-parameter`"), "{err}");
    }
    let err = by_name("no-such-method", &MethodOptions::default()).err().unwrap().to_string();
    assert!(err.starts_with("unknown weighting method `no-such-method`; expected one of ew,"));
}

#[test]
fn the_guide_documents_every_method_and_hyper_parameter() {
    let guide = include_str!("../../../docs/mtl.md");
    for m in METHODS {
        assert!(guide.contains(&format!("`{}`", m.name)), "docs/mtl.md does not name `{}`", m.name);
        for h in m.hypers {
            let param = format!("`{}={}`", h.name, h.default);
            assert!(guide.contains(&param), "docs/mtl.md does not give {}'s {param}", m.name);
        }
    }
}

/// Every registered method, trained twice from the same seed on the GradNorm toy (two epochs,
/// Adam), ends with the same parameters bit for bit, and with parameters that moved.
#[test]
fn every_method_repeats_bit_for_bit_for_a_seed() {
    use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
    use tapestry_mtl::trainer::{NoObserver, Trainer, TrainerConfig};
    use tapestry_nn::optim::Adam;
    use tapestry_nn::Params;

    let config = GradNormToyConfig {
        sigmas: vec![1.0, 10.0, 3.0],
        input_dim: 20,
        output_dim: 4,
        train: 120,
        test: 10,
        ..GradNormToyConfig::default()
    };
    let splits = gradnorm_toy(&config);
    let run = |name: &str| {
        let mut params = Params::new();
        let model = gradnorm_toy_model(&mut params, &config, 16, 2, 0).unwrap();
        let mut weighting = by_name(name, &MethodOptions::default()).unwrap();
        weighting.register(&mut params, tapestry_mtl::MultiTaskModel::tasks(&model)).unwrap();
        let start = params.clone();
        let trainer_config =
            TrainerConfig { epochs: 2, batch_size: 40, seed: 3, ..TrainerConfig::default() };
        let mut trainer = Trainer::from_boxed(trainer_config, Box::new(Adam::new(1e-3)), weighting);
        trainer.fit(&model, &mut params, &splits.train, None, &mut NoObserver).unwrap();
        (start, params)
    };
    for m in METHODS {
        let ((start, a), (_, b)) = (run(m.name), run(m.name));
        let mut moved = false;
        for id in a.ids() {
            assert_eq!(a.get(id).as_slice(), b.get(id).as_slice(), "{}: {}", m.name, a.name(id));
            moved |= a.get(id).as_slice() != start.get(id).as_slice();
        }
        assert!(moved, "{}: training moved no parameter", m.name);
    }
}
