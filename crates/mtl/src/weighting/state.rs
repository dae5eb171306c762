//! What a weighting carries from one step to the next, for checkpoints.
//!
//! A method whose weights depend on earlier steps (GradNorm's weights and their Adam moments,
//! DWA's epoch means, FAMO's logits, GradVac's targets, DB-MTL's averaged gradients) hands that
//! memory out as named vectors of `f64` ([`Weighting::state`](super::Weighting::state)) and takes
//! it back ([`Weighting::set_state`](super::Weighting::set_state)), so that a resumed run takes
//! the same steps bit for bit as one never interrupted. Every value it keeps fits an `f64`
//! exactly: an `f64` itself (NaN and infinities included), an `f32`, a counter below 2^53; an
//! `Option` is a key present or absent, a tuple several keys. Parameters registered in `Params`
//! are not part of it: they are saved with the model.

use std::collections::BTreeMap;

use super::WeightingError;
use crate::gradnorm::WeightOptimizerState;

/// The largest counter an `f64` holds exactly together with every smaller one, 2^53.
const MAX_EXACT_COUNT: u64 = 1 << 53;

/// What a weighting carries from one step to the next besides its parameters in `Params`:
/// named vectors of numbers, for checkpoints.
///
/// Equality compares the values as numbers (a NaN equals nothing); compare
/// [`f64::to_bits`] to tell states apart bit for bit.
///
/// ```
/// use tapestry_mtl::weighting::WeightingState;
///
/// let mut state = WeightingState::new();
/// state.insert("logits", vec![0.25, f64::NAN]);
/// state.insert_count("adam.steps", 3);
/// assert_eq!(state.count("famo", "adam.steps").unwrap(), 3);
/// let err = state.required("famo", "pending").unwrap_err();
/// assert_eq!(err.to_string(), "famo: the saved state has no `pending`");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightingState {
    values: BTreeMap<String, Vec<f64>>,
}

impl WeightingState {
    /// An empty state (a stateless method's, or one to fill).
    pub fn new() -> Self {
        WeightingState::default()
    }

    /// Stores `values` under `key`, returning what was there.
    pub fn insert(&mut self, key: impl Into<String>, values: Vec<f64>) -> Option<Vec<f64>> {
        self.values.insert(key.into(), values)
    }

    /// Stores the counter `count` under `key` as one value.
    ///
    /// # Panics
    /// If `count` exceeds 2^53, past which an `f64` does not hold every integer.
    pub fn insert_count(&mut self, key: impl Into<String>, count: u64) {
        assert!(count <= MAX_EXACT_COUNT, "a counter of {count} does not fit an f64 exactly");
        self.insert(key, vec![count as f64]);
    }

    /// Removes `key`, returning its values.
    pub fn remove(&mut self, key: &str) -> Option<Vec<f64>> {
        self.values.remove(key)
    }

    /// The values under `key`.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every key and its values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[f64])> + '_ {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The values under `key`, which `method`'s state must have.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] naming `method` and `key` if the key is absent.
    pub fn required(&self, method: &'static str, key: &str) -> Result<&[f64], WeightingError> {
        self.get(key).ok_or_else(|| invalid(method, format!("the saved state has no `{key}`")))
    }

    /// The `len` values under `key`, which `method`'s state must have.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if the key is absent or holds another number of values.
    pub fn required_len(
        &self,
        method: &'static str,
        key: &str,
        len: usize,
    ) -> Result<&[f64], WeightingError> {
        let values = self.required(method, key)?;
        check_len(method, key, values, len)?;
        Ok(values)
    }

    /// The `len` values under `key` if it is there (an `Option` saved as a key present or
    /// absent).
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if the key holds another number of values.
    pub fn optional_len(
        &self,
        method: &'static str,
        key: &str,
        len: usize,
    ) -> Result<Option<&[f64]>, WeightingError> {
        match self.get(key) {
            Some(values) => check_len(method, key, values, len).map(|()| Some(values)),
            None => Ok(None),
        }
    }

    /// The counter under `key` (one value, an integer from 0 to 2^53).
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if the key is absent or does not hold one such integer.
    pub fn count(&self, method: &'static str, key: &str) -> Result<u64, WeightingError> {
        as_count(method, key, self.required_len(method, key, 1)?[0])
    }

    /// The counters under `key` (each an integer from 0 to 2^53).
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if the key is absent or holds a value that is no such integer.
    pub fn counts(&self, method: &'static str, key: &str) -> Result<Vec<u64>, WeightingError> {
        self.required(method, key)?.iter().map(|&v| as_count(method, key, v)).collect()
    }

    /// The values under `key` as `f32`s (each must be one: an `f32` saved as `f64`).
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] if the key is absent or holds a value no `f32` equals.
    pub fn f32s(&self, method: &'static str, key: &str) -> Result<Vec<f32>, WeightingError> {
        let values = self.required(method, key)?;
        match values.iter().find(|&&v| !v.is_nan() && f64::from(v as f32) != v) {
            Some(v) => Err(invalid(
                method,
                format!("the saved state's `{key}` holds {v}, which is not an f32"),
            )),
            None => Ok(values.iter().map(|&v| v as f32).collect()),
        }
    }

    /// Checks that every key is one of `known`, the keys `method` saves.
    ///
    /// # Errors
    /// [`WeightingError::Invalid`] listing the keys `method` does not know (a state saved by
    /// another method, most likely).
    pub fn check_keys(&self, method: &'static str, known: &[&str]) -> Result<(), WeightingError> {
        let unknown: Vec<String> = (self.values.keys())
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("`{k}`"))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(invalid(
            method,
            format!(
                "the saved state has {} {} this method does not keep (saved by another method?)",
                if unknown.len() == 1 { "a key" } else { "keys" },
                unknown.join(", ")
            ),
        ))
    }

    /// Stores a weight optimizer's state under `prefix` (`{prefix}.steps`,
    /// `{prefix}.first_moment`, `{prefix}.second_moment`).
    pub(crate) fn insert_optimizer(&mut self, prefix: &str, optimizer: &WeightOptimizerState) {
        self.insert_count(format!("{prefix}.steps"), optimizer.steps);
        self.insert(format!("{prefix}.first_moment"), optimizer.first_moment.clone());
        self.insert(format!("{prefix}.second_moment"), optimizer.second_moment.clone());
    }

    /// The weight optimizer's state stored under `prefix` for `tasks` weights: its moments are
    /// empty (before the first Adam update, or for gradient descent) or hold one value a task.
    pub(crate) fn optimizer(
        &self,
        method: &'static str,
        prefix: &str,
        tasks: usize,
    ) -> Result<WeightOptimizerState, WeightingError> {
        let moment = |name: &str| {
            let key = format!("{prefix}.{name}");
            let values = self.required(method, &key)?;
            if !values.is_empty() {
                check_len(method, &key, values, tasks)?;
            }
            Ok::<_, WeightingError>(values.to_vec())
        };
        let (first_moment, second_moment) = (moment("first_moment")?, moment("second_moment")?);
        if first_moment.len() != second_moment.len() {
            return Err(invalid(
                method,
                format!(
                    "the saved state's `{prefix}.first_moment` has {} values and its `{prefix}.second_moment` {}",
                    first_moment.len(),
                    second_moment.len()
                ),
            ));
        }
        let steps = self.count(method, &format!("{prefix}.steps"))?;
        Ok(WeightOptimizerState { steps, first_moment, second_moment })
    }
}

impl FromIterator<(String, Vec<f64>)> for WeightingState {
    fn from_iter<I: IntoIterator<Item = (String, Vec<f64>)>>(pairs: I) -> Self {
        WeightingState { values: pairs.into_iter().collect() }
    }
}

/// The keys a stored weight optimizer's state takes under `prefix`.
pub(crate) fn optimizer_keys(prefix: &str) -> [String; 3] {
    ["steps", "first_moment", "second_moment"].map(|name| format!("{prefix}.{name}"))
}

/// The error of a stateless method handed a state: `Ok` for an empty one.
pub(crate) fn expect_empty(
    method: &'static str,
    state: &WeightingState,
) -> Result<(), WeightingError> {
    state.check_keys(method, &[])
}

/// Checks that `key`'s `values` are `len` of them.
pub(crate) fn check_len(
    method: &'static str,
    key: &str,
    values: &[f64],
    len: usize,
) -> Result<(), WeightingError> {
    if values.len() == len {
        return Ok(());
    }
    Err(invalid(
        method,
        format!("the saved state's `{key}` has {} values, expected {len}", values.len()),
    ))
}

/// `v` as a counter, if it is an integer from 0 to 2^53 (not −0, which no counter saves).
fn as_count(method: &'static str, key: &str, v: f64) -> Result<u64, WeightingError> {
    if v.is_sign_positive() && v <= MAX_EXACT_COUNT as f64 && v.fract() == 0.0 {
        Ok(v as u64)
    } else {
        Err(invalid(method, format!("the saved state's `{key}` is not a count ({v})")))
    }
}

fn invalid(method: &'static str, message: String) -> WeightingError {
    WeightingError::Invalid { method, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_in_order_and_values_keep_their_bits() {
        let odd = [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE];
        let mut state = WeightingState::new();
        assert!(state.is_empty());
        state.insert("b", odd.to_vec());
        state.insert("a", vec![]);
        state.insert_count("c", MAX_EXACT_COUNT);
        assert_eq!(state.len(), 3);
        assert_eq!(state.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b", "c"]);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(state.clone().get("b").unwrap()), bits(&odd));
        assert_eq!(state.count("m", "c").unwrap(), MAX_EXACT_COUNT);
        let copy: WeightingState = state.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        assert_eq!(bits(copy.get("b").unwrap()), bits(&odd));
    }

    #[test]
    fn counts_and_f32s_are_checked() {
        let mut state = WeightingState::new();
        for (key, v) in [
            ("half", 1.5),
            ("negative", -1.0),
            ("minus_zero", -0.0),
            ("nan", f64::NAN),
            ("big", 2f64.powi(60)),
        ] {
            state.insert(key, vec![v]);
            let err = state.count("m", key).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("m: the saved state's `{key}` is not a count")),
                "{err}"
            );
        }
        state.insert("two", vec![1.0, 2.0]);
        let err = state.count("m", "two").unwrap_err().to_string();
        assert_eq!(err, "m: the saved state's `two` has 2 values, expected 1");
        let f32s = [0.1f32, f32::NAN, f32::INFINITY, -0.0, f32::MAX];
        state.insert("f32", f32s.iter().map(|&v| f64::from(v)).collect());
        let back = state.f32s("m", "f32").unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&f32s));
        state.insert("f64", vec![0.5, 0.1]);
        let err = state.f32s("m", "f64").unwrap_err().to_string();
        assert_eq!(err, "m: the saved state's `f64` holds 0.1, which is not an f32");
    }

    #[test]
    fn missing_and_unknown_keys_are_named() {
        let mut state = WeightingState::new();
        assert!(expect_empty("ew", &state).is_ok());
        let err = state.required_len("famo", "logits", 3).unwrap_err().to_string();
        assert_eq!(err, "famo: the saved state has no `logits`");
        state.insert("logits", vec![0.0; 2]);
        let err = state.required_len("famo", "logits", 3).unwrap_err().to_string();
        assert_eq!(err, "famo: the saved state's `logits` has 2 values, expected 3");
        assert!(state.check_keys("famo", &["logits"]).is_ok());
        state.insert("targets", vec![]);
        let err = expect_empty("ew", &state).unwrap_err().to_string();
        assert_eq!(
            err,
            "ew: the saved state has keys `logits`, `targets` this method does not keep (saved by another method?)"
        );
    }

    #[test]
    fn a_weight_optimizer_round_trips_and_its_moments_are_checked() {
        let adam = WeightOptimizerState {
            steps: 4,
            first_moment: vec![0.5, -1.0],
            second_moment: vec![0.25, 1.0],
        };
        let mut state = WeightingState::new();
        state.insert_optimizer("adam", &adam);
        let mut keys = optimizer_keys("adam");
        keys.sort();
        assert_eq!(state.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>(), keys);
        assert_eq!(state.optimizer("famo", "adam", 2).unwrap(), adam);
        let err = state.optimizer("famo", "adam", 3).unwrap_err().to_string();
        assert_eq!(err, "famo: the saved state's `adam.first_moment` has 2 values, expected 3");
        state.insert("adam.second_moment", vec![]);
        let err = state.optimizer("famo", "adam", 2).unwrap_err().to_string();
        assert!(
            err.contains("`adam.first_moment` has 2 values and its `adam.second_moment` 0"),
            "{err}"
        );
        let descent = WeightOptimizerState { steps: 2, ..WeightOptimizerState::default() };
        state.insert_optimizer("adam", &descent);
        assert_eq!(state.optimizer("famo", "adam", 5).unwrap(), descent);
    }
}
