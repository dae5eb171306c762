//! The weighting registry: every method builds under its name with its declared defaults, every
//! default lies in its declared range, bad values are refused by name, the guide documents every
//! method and hyper-parameter, every method repeats bit for bit, and every method's state saved
//! mid-run resumes the run bit for bit in a fresh instance.

use std::collections::BTreeMap;
use std::ops::Range;

use tapestry_data::{BatchOptions, MultiTaskDataset};
use tapestry_mtl::gradnorm::WeightOptimizer;
use tapestry_mtl::model::HardSharing;
use tapestry_mtl::step::{StepCounters, StepOptions, TrainStep};
use tapestry_mtl::toy::{gradnorm_toy, gradnorm_toy_model, GradNormToyConfig};
use tapestry_mtl::weighting::{
    by_name, method_names, MethodOptions, Weighting, WeightingState, METHODS,
};
use tapestry_nn::optim::{Adam, Optimizer};
use tapestry_nn::Params;

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
    use tapestry_mtl::trainer::{NoObserver, Trainer, TrainerConfig};

    let config = toy_config();
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

/// The GradNorm toy of the run tests: three tasks of noise scales 1, 10 and 3, 120 training
/// samples.
fn toy_config() -> GradNormToyConfig {
    GradNormToyConfig {
        sigmas: vec![1.0, 10.0, 3.0],
        input_dim: 20,
        output_dim: 4,
        train: 120,
        test: 10,
        ..GradNormToyConfig::default()
    }
}

/// Batches of 40 of the 120 samples: three steps an epoch.
const BATCH: BatchOptions =
    BatchOptions { batch_size: 40, shuffle: true, seed: 3, drop_last: false };
const STEPS_PER_EPOCH: u64 = 3;
/// Three epochs, so that DWA's weights come from two finished epochs' means in the last.
const STEPS: u64 = 9;

/// A run of one method on the toy: what a checkpoint restores (parameters, optimizer,
/// weighting) and, for the comparison, what every step taken logged.
struct Run {
    model: HardSharing,
    params: Params,
    optimizer: Adam,
    weighting: Box<dyn Weighting>,
    /// Each step's weights (as `"weights"`) and diagnostics, by name, as bits.
    log: Vec<Vec<(String, Vec<u64>)>>,
}

impl Run {
    /// A run of `method` before its first step, everything built anew as in a fresh process.
    fn start(method: &str, options: &MethodOptions, config: &GradNormToyConfig) -> Run {
        let mut params = Params::new();
        let model = gradnorm_toy_model(&mut params, config, 16, 2, 0).unwrap();
        let mut weighting = by_name(method, options).unwrap();
        weighting.register(&mut params, tapestry_mtl::MultiTaskModel::tasks(&model)).unwrap();
        Run { model, params, optimizer: Adam::new(1e-3), weighting, log: Vec::new() }
    }

    /// Takes the steps `steps` on `data` (batches by epoch and position, as the trainer
    /// draws them).
    fn advance(&mut self, data: &MultiTaskDataset, steps: Range<u64>) {
        let step = TrainStep::new(
            &self.model,
            &self.params,
            self.weighting.as_ref(),
            StepOptions::default(),
        )
        .unwrap();
        for s in steps {
            let (epoch, at) = (s / STEPS_PER_EPOCH, s % STEPS_PER_EPOCH);
            let batch = data.batches(&BATCH, epoch).unwrap().nth(at as usize).unwrap();
            let counters = StepCounters { step: s, epoch, seed: BATCH.seed };
            let report = step
                .run(
                    &self.model,
                    &mut self.params,
                    &mut self.optimizer,
                    self.weighting.as_mut(),
                    &batch,
                    counters,
                )
                .unwrap_or_else(|e| panic!("{}: step {s}: {e}", self.weighting.name()));
            let logged = std::iter::once(("weights".to_string(), report.weights))
                .chain(report.diagnostics)
                .map(|(name, values)| (name, bits(&values)))
                .collect();
            self.log.push(logged);
        }
    }

    /// A fresh run of `method` loaded from this one's parameters, optimizer and weighting state.
    fn resume(&self, method: &str, options: &MethodOptions, config: &GradNormToyConfig) -> Run {
        let mut resumed = Run::start(method, options, config);
        resumed.params = self.params.clone();
        resumed.optimizer.load_state(&resumed.params, &self.optimizer.state()).unwrap();
        resumed.weighting.set_state(&self.weighting.state()).unwrap();
        resumed.log = self.log.clone();
        resumed
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A state's keys and the bits of their values.
fn state_bits(state: &WeightingState) -> Vec<(String, Vec<u64>)> {
    state.iter().map(|(k, v)| (k.to_string(), bits(v))).collect()
}

/// Every method, stopped after k steps and resumed in a fresh instance from its state (and
/// the parameters and optimizer), takes the same remaining steps bit for bit as the run never
/// stopped: the same weights and diagnostics at every step, the same parameters and state at
/// the end. The
/// stops fall before the first step, within the first epoch, at the first epoch's end, within
/// the second and before the last step. Besides every method with its defaults, GradNorm with
/// gradient descent on its weights and DB-MTL with a decay that falls with its update count.
#[test]
fn every_method_resumes_from_its_state_bit_for_bit() {
    let config = toy_config();
    let data = gradnorm_toy(&config).train;
    let defaults = METHODS.iter().map(|m| (m.name, MethodOptions::default()));
    let variants = [
        (
            "gradnorm",
            MethodOptions {
                gradnorm_optimizer: WeightOptimizer::GradientDescent,
                ..MethodOptions::default()
            },
        ),
        (
            "db-mtl",
            MethodOptions {
                params: BTreeMap::from([("beta_sigma".into(), 0.5)]),
                ..MethodOptions::default()
            },
        ),
    ];
    for (name, options) in defaults.chain(variants) {
        let mut whole = Run::start(name, &options, &config);
        whole.advance(&data, 0..STEPS);
        for stop in [0, 1, 3, 4, STEPS - 1] {
            let mut first = Run::start(name, &options, &config);
            first.advance(&data, 0..stop);
            let mut resumed = first.resume(name, &options, &config);
            drop(first);
            resumed.advance(&data, stop..STEPS);
            for (s, (a, b)) in whole.log.iter().zip(&resumed.log).enumerate() {
                assert_eq!(a, b, "{name} stopped at {stop}: weights and diagnostics of step {s}");
            }
            for id in whole.params.ids() {
                let (a, b) = (whole.params.get(id).as_slice(), resumed.params.get(id).as_slice());
                assert!(
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{} stopped at {stop}: {}",
                    name,
                    whole.params.name(id)
                );
            }
            assert_eq!(
                state_bits(&whole.weighting.state()),
                state_bits(&resumed.weighting.state()),
                "{} stopped at {stop}: the state at the end",
                name
            );
        }
    }
}

/// The states of every method after four steps on the toy (within the second epoch).
fn states_after_four_steps() -> Vec<(&'static str, WeightingState)> {
    let config = toy_config();
    let data = gradnorm_toy(&config).train;
    (METHODS.iter())
        .map(|m| {
            let mut run = Run::start(m.name, &MethodOptions::default(), &config);
            run.advance(&data, 0..4);
            (m.name, run.weighting.state())
        })
        .collect()
}

/// The methods known to carry state, and the stateless ones' states are empty.
#[test]
fn the_stateful_methods_are_those_that_remember_steps() {
    let stateful: Vec<&str> = states_after_four_steps()
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(stateful, ["dwa", "gradvac", "gradnorm", "famo", "db-mtl"]);
}

/// A method's state before its first step loads into another fresh instance and comes back
/// unchanged.
#[test]
fn a_fresh_methods_state_round_trips() {
    for m in METHODS {
        let fresh = by_name(m.name, &MethodOptions::default()).unwrap().state();
        let mut other = by_name(m.name, &MethodOptions::default()).unwrap();
        other.set_state(&fresh).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        assert_eq!(state_bits(&other.state()), state_bits(&fresh), "{}", m.name);
    }
}

/// No method loads another's state (unless both are empty), and a refused state leaves the
/// method as it was.
#[test]
fn a_state_of_another_method_is_refused() {
    let states = states_after_four_steps();
    let config = toy_config();
    let data = gradnorm_toy(&config).train;
    for m in METHODS {
        let mut run = Run::start(m.name, &MethodOptions::default(), &config);
        run.advance(&data, 0..2);
        let before = state_bits(&run.weighting.state());
        for (other, state) in states.iter().filter(|(n, _)| *n != m.name) {
            match run.weighting.set_state(state) {
                Ok(()) => assert!(
                    state.is_empty() && before.is_empty(),
                    "{} loaded the state of {other}",
                    m.name
                ),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.starts_with(&format!("{}: the saved state", m.name)), "{e}");
                }
            }
            assert_eq!(state_bits(&run.weighting.state()), before, "{} after {other}'s", m.name);
        }
    }
}

/// A key no method keeps is refused by every method, by name.
#[test]
fn an_unknown_key_is_refused() {
    for (name, mut state) in states_after_four_steps() {
        state.insert("no_such_key", vec![1.0]);
        let err = by_name(name, &MethodOptions::default()).unwrap().set_state(&state).unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with(&format!("{name}: ")) && err.contains("`no_such_key`"), "{err}");
    }
}

/// Every key of a stateful method's state but FAMO's `pending` (absent between steps) is
/// needed: without it the state is refused, naming the key.
#[test]
fn a_missing_key_is_refused_by_name() {
    for (name, state) in states_after_four_steps() {
        for (key, _) in state.iter() {
            let mut cut = state.clone();
            cut.remove(key);
            let err = by_name(name, &MethodOptions::default()).unwrap().set_state(&cut);
            let err = err.err().unwrap_or_else(|| panic!("{name} loaded a state without {key}"));
            assert!(err.to_string().contains(&format!("`{key}`")), "{name}: {err}");
        }
    }
}

/// Vectors whose length does not fit the others are refused, naming the key.
#[test]
fn a_vector_of_the_wrong_length_is_refused() {
    let states: BTreeMap<_, _> = states_after_four_steps().into_iter().collect();
    let cases = [
        ("gradnorm", "initial_losses", "has 2 values, expected 3"),
        ("gradnorm", "optimizer.first_moment", "has 2 values, expected 3"),
        ("famo", "adam.second_moment", "has 2 values, expected 3"),
        ("famo", "pending", "has 2 values, expected 3"),
        ("dwa", "epoch_means", "has 2 values, its `epoch_means.tasks` count 3"),
        ("dwa", "current.steps", "has 0 values, expected 1"),
        ("db-mtl", "updates", "has 0 values, expected 1"),
    ];
    for (name, key, message) in cases {
        let mut state = states[name].clone();
        let values = state.get(key).map_or(vec![0.5; 3], <[f64]>::to_vec);
        let keep = if key.ends_with("steps") || key == "updates" { 0 } else { 2 };
        state.insert(key, values[..keep].to_vec());
        let err = by_name(name, &MethodOptions::default()).unwrap().set_state(&state).unwrap_err();
        assert_eq!(err.to_string(), format!("{name}: the saved state's `{key}` {message}"));
    }
}

/// Any value a method takes back, NaN and infinities included, comes back bit for bit; the
/// counters refuse them.
#[test]
fn odd_values_survive_a_round_trip() {
    let mut taken = Vec::new();
    for (name, state) in states_after_four_steps() {
        for (key, values) in state.iter().filter(|(_, v)| !v.is_empty()) {
            let mut accepted = 0;
            for odd in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
                let mut changed = state.clone();
                let mut values = values.to_vec();
                values[0] = odd;
                changed.insert(key, values);
                let mut w = by_name(name, &MethodOptions::default()).unwrap();
                if w.set_state(&changed).is_ok() {
                    assert_eq!(state_bits(&w.state()), state_bits(&changed), "{name}: {key}");
                    accepted += 1;
                }
            }
            assert!(accepted == 0 || accepted == 5, "{name}: {key} took {accepted} of 5");
            if accepted == 5 {
                taken.push(format!("{name} {key}"));
            }
        }
    }
    let expected = [
        "dwa current.loss_sums",
        "dwa epoch_means",
        "gradvac targets",
        "gradnorm current",
        "gradnorm initial_losses",
        "gradnorm optimizer.first_moment",
        "gradnorm optimizer.second_moment",
        "famo adam.first_moment",
        "famo adam.second_moment",
        "famo logits",
        "db-mtl average",
    ];
    assert_eq!(taken, expected);
}
