//! The numeric hyper-parameters of the weightings, declared once per method in the registry.
//!
//! Each [`Method`](super::Method) lists its [`Hyper`]s (name, default, allowed range, one line);
//! a caller passes the values it wants changed by name, and [`by_name`](super::by_name) checks
//! every name and every range before building the method, so a bad value is one sentence
//! ("cagrad's c must lie in [0, 1), got -0.5") instead of a NaN many steps later. The CLI, the
//! docs test and `tapestry methods` read the same table.

use std::collections::BTreeMap;
use std::fmt;

use super::WeightingError;

/// The interval a hyper-parameter must lie in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The lower end.
    pub min: f64,
    /// Whether `min` itself is allowed.
    pub min_inclusive: bool,
    /// The upper end (`f64::INFINITY` for none).
    pub max: f64,
    /// Whether `max` itself is allowed.
    pub max_inclusive: bool,
}

impl Interval {
    /// `[0, ∞)`.
    pub const NON_NEGATIVE: Interval = Interval::new(0.0, true, f64::INFINITY, false);
    /// `(0, ∞)`.
    pub const POSITIVE: Interval = Interval::new(0.0, false, f64::INFINITY, false);
    /// `[0, 1)`, for decay rates.
    pub const UNIT_HALF_OPEN: Interval = Interval::new(0.0, true, 1.0, false);
    /// `[0, 1]`.
    pub const UNIT: Interval = Interval::new(0.0, true, 1.0, true);

    /// The interval from `min` to `max`, each end included or not.
    pub const fn new(min: f64, min_inclusive: bool, max: f64, max_inclusive: bool) -> Self {
        Interval { min, min_inclusive, max, max_inclusive }
    }

    /// Whether `value` lies in the interval (NaN never does).
    pub fn contains(&self, value: f64) -> bool {
        let above = if self.min_inclusive { value >= self.min } else { value > self.min };
        let below = if self.max_inclusive { value <= self.max } else { value < self.max };
        above && below
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = if self.min_inclusive { '[' } else { '(' };
        let close = if self.max_inclusive { ']' } else { ')' };
        let max = if self.max.is_infinite() { "∞".to_string() } else { self.max.to_string() };
        write!(f, "{open}{}, {max}{close}", self.min)
    }
}

/// One numeric hyper-parameter of a method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    /// Its name, as `--param NAME=VALUE` takes it.
    pub name: &'static str,
    /// Its default (the paper's or LibMTL's).
    pub default: f64,
    /// Where it must lie.
    pub range: Interval,
    /// What it does, in one line.
    pub about: &'static str,
}

/// The hyper-parameter values a method is built with: its declared defaults, overridden by the
/// values given by name.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperValues {
    values: BTreeMap<&'static str, f64>,
}

impl HyperValues {
    /// Checks `given` against `declared` (every name known to `method`, every value in its range)
    /// and fills in the defaults.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] naming the unknown parameter or the value out of range.
    pub fn resolve(
        method: &'static str,
        declared: &[Hyper],
        given: &BTreeMap<String, f64>,
    ) -> Result<Self, WeightingError> {
        let invalid = |message: String| WeightingError::Invalid { method, message };
        for name in given.keys() {
            if !declared.iter().any(|h| h.name == name) {
                let known: Vec<&str> = declared.iter().map(|h| h.name).collect();
                let takes = if known.is_empty() {
                    "it takes none".to_string()
                } else {
                    format!("it takes {}", known.join(", "))
                };
                return Err(invalid(format!("no hyper-parameter `{name}`; {takes}")));
            }
        }
        let mut values = BTreeMap::new();
        for h in declared {
            let value = given.get(h.name).copied().unwrap_or(h.default);
            if !h.range.contains(value) {
                return Err(invalid(format!("{} must lie in {}, got {value}", h.name, h.range)));
            }
            values.insert(h.name, value);
        }
        Ok(HyperValues { values })
    }

    /// The value of `name`.
    ///
    /// # Panics
    /// If the method did not declare `name` (a registry bug, caught by the registry's tests).
    pub fn get(&self, name: &str) -> f64 {
        match self.values.get(name) {
            Some(&v) => v,
            None => {
                panic!("hyper-parameter `{name}` is not declared in the method's registry entry")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: Hyper =
        Hyper { name: "tau", default: 2.0, range: Interval::POSITIVE, about: "temperature" };

    fn given(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn defaults_fill_in_and_given_values_override() {
        assert_eq!(HyperValues::resolve("dwa", &[TAU], &given(&[])).unwrap().get("tau"), 2.0);
        let v = HyperValues::resolve("dwa", &[TAU], &given(&[("tau", 0.5)])).unwrap();
        assert_eq!(v.get("tau"), 0.5);
    }

    #[test]
    fn out_of_range_and_unknown_names_are_one_sentence() {
        let err = |p: &[(&str, f64)]| {
            HyperValues::resolve("dwa", &[TAU], &given(p)).unwrap_err().to_string()
        };
        assert_eq!(err(&[("tau", -1.0)]), "dwa: tau must lie in (0, ∞), got -1");
        assert_eq!(err(&[("tau", 0.0)]), "dwa: tau must lie in (0, ∞), got 0");
        assert_eq!(err(&[("tau", f64::NAN)]), "dwa: tau must lie in (0, ∞), got NaN");
        assert_eq!(err(&[("c", 1.0)]), "dwa: no hyper-parameter `c`; it takes tau");
        let none = HyperValues::resolve("ew", &[], &given(&[("c", 1.0)])).unwrap_err();
        assert_eq!(none.to_string(), "ew: no hyper-parameter `c`; it takes none");
    }

    #[test]
    fn intervals_print_and_test_their_ends() {
        assert_eq!(Interval::UNIT_HALF_OPEN.to_string(), "[0, 1)");
        assert!(Interval::UNIT_HALF_OPEN.contains(0.0));
        assert!(!Interval::UNIT_HALF_OPEN.contains(1.0));
        assert!(Interval::UNIT.contains(1.0));
        assert!(!Interval::NON_NEGATIVE.contains(f64::INFINITY));
    }
}
