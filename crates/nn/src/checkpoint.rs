//! Checkpoints: safetensors files with PyTorch-style names.
//!
//! A checkpoint holds every parameter and buffer under its own name (`trunk.0.weight`,
//! `trunk.1.running_mean`, ...), so `safetensors.torch.load_file` opens it and the keys match
//! the equivalent PyTorch module's `state_dict()`. Optimizer state, if saved, sits beside them
//! as `optimizer.{parameter name}.{slot}` (for example `optimizer.trunk.0.weight.exp_avg`), with
//! the kind, step count, learning rate and hyperparameters in the header metadata; in Python,
//! drop the keys starting with `optimizer.` before `load_state_dict`.
//!
//! Writes are atomic: the bytes go to a temporary file in the same directory, which is flushed
//! to disk and then renamed over the target, so a crash leaves either the old file or the new
//! one. The same contents give the same bytes (the metadata is written in key order). The
//! metadata carries a checksum (64-bit FNV-1a over names, dtypes, shapes, data and the other
//! metadata); a truncated or corrupted file, or one with `tapestry.` keys but no checksum, is
//! rejected with [`NnError::Corrupt`] naming the file. Loading checks every name, shape and
//! dtype first and reports all differences at once ([`NnError::Mismatch`]), then that every
//! value is finite ([`NnError::NonFinite`]); nothing is changed unless everything fits.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::{Dtype, SafeTensors};
use tapestry_autodiff::Tensor;

use crate::error::{MismatchReport, NnError};
use crate::optim::{Optimizer, OptimizerState};
use crate::params::{BufferDtype, Params, OPTIMIZER_PREFIX};

/// The prefix of the metadata keys this crate writes (besides the optimizer's).
const RESERVED_PREFIX: &str = "tapestry.";
/// Metadata key of the format version.
const FORMAT_KEY: &str = "tapestry.format";
/// Metadata key of the checksum.
const CHECKSUM_KEY: &str = "tapestry.checksum";
const OPT_KIND: &str = "optimizer.kind";
const OPT_STEP: &str = "optimizer.step";
const OPT_LR: &str = "optimizer.lr";
const OPT_HYPER: &str = "optimizer.hyper";

/// The element data of one stored tensor.
#[derive(Clone, Debug, PartialEq)]
enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Data {
    fn dtype(&self) -> Dtype {
        match self {
            Data::F32(_) => Dtype::F32,
            Data::I64(_) => Dtype::I64,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn to_f32(&self) -> Vec<f32> {
        match self {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// One stored tensor.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    shape: Vec<usize>,
    data: Data,
}

impl safetensors::View for &Stored {
    fn dtype(&self) -> Dtype {
        self.data.dtype()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.data.bytes().into()
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.data.dtype().size()
    }
}

/// The contents of a checkpoint file: named tensors and string metadata.
///
/// [`save`] and [`load`] cover the usual case; this type is for inspecting a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    tensors: BTreeMap<String, Stored>,
    metadata: BTreeMap<String, String>,
}

/// 64-bit FNV-1a, fed incrementally.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn dtype_name(dtype: Dtype) -> String {
    format!("{dtype:?}")
}

impl Checkpoint {
    /// The checksum over every tensor's name, dtype, shape and data, then every metadata entry
    /// but the checksum itself, each in name order.
    fn checksum(&self) -> String {
        let mut h = Fnv::new();
        for (name, t) in &self.tensors {
            h.feed(name.as_bytes());
            h.feed(&[0]);
            h.feed(dtype_name(t.data.dtype()).as_bytes());
            for &d in &t.shape {
                h.feed(&(d as u64).to_le_bytes());
            }
            h.feed(&t.data.bytes());
        }
        for (key, value) in self.metadata.iter().filter(|(k, _)| k.as_str() != CHECKSUM_KEY) {
            h.feed(key.as_bytes());
            h.feed(&[0]);
            h.feed(value.as_bytes());
            h.feed(&[0]);
        }
        format!("{:016x}", h.0)
    }

    /// Collects the parameters and buffers of `params`, the state of `optimizer` and `metadata`.
    fn collect(
        params: &Params,
        optimizer: Option<&dyn Optimizer>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, NnError> {
        let mut tensors = BTreeMap::new();
        for (_, name, value) in params.iter() {
            let stored = Stored { shape: value.shape().to_vec(), data: Data::F32(value.to_vec()) };
            tensors.insert(name.to_string(), stored);
        }
        let buffers = params.buffers();
        for id in buffers.ids() {
            let value = buffers.get(id);
            let data = match buffers.dtype(id) {
                BufferDtype::F32 => Data::F32(value.to_vec()),
                BufferDtype::I64 => Data::I64(value.as_slice().iter().map(|&v| v as i64).collect()),
            };
            tensors.insert(
                buffers.name(id).to_string(),
                Stored { shape: value.shape().to_vec(), data },
            );
        }
        let mut meta = BTreeMap::new();
        for (key, value) in metadata {
            if key.starts_with("tapestry.") || key.starts_with(OPTIMIZER_PREFIX) {
                return Err(NnError::InvalidName {
                    name: key.clone(),
                    reason: "metadata keys starting with `tapestry.` or `optimizer.` are reserved",
                });
            }
            meta.insert(key.clone(), value.clone());
        }
        if let Some(opt) = optimizer {
            let state = opt.state();
            meta.insert(OPT_KIND.into(), state.kind.clone());
            meta.insert(OPT_STEP.into(), state.step.to_string());
            meta.insert(OPT_LR.into(), format!("{:?}", state.lr));
            let hyper = serde_json::to_string(&state.hyper).expect("a map of numbers serialises");
            meta.insert(OPT_HYPER.into(), hyper);
            for (slot, id, tensor) in &state.slots {
                let name = format!("{OPTIMIZER_PREFIX}{}.{slot}", params.name(*id));
                let stored =
                    Stored { shape: tensor.shape().to_vec(), data: Data::F32(tensor.to_vec()) };
                tensors.insert(name, stored);
            }
        }
        meta.insert(FORMAT_KEY.into(), "1".into());
        let mut checkpoint = Checkpoint { tensors, metadata: meta };
        let checksum = checkpoint.checksum();
        checkpoint.metadata.insert(CHECKSUM_KEY.into(), checksum);
        Ok(checkpoint)
    }

    /// The file's bytes in safetensors format, the same bytes for the same contents.
    ///
    /// `safetensors::serialize` writes the metadata from a `HashMap`, in an order that changes
    /// from run to run; so the tensors are serialised alone and the metadata, in key order, is
    /// put into the header afterwards.
    fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let bare = safetensors::serialize(self.tensors.iter().map(|(k, v)| (k.as_str(), v)), &None)
            .map_err(|e| e.to_string())?;
        let n = u64::from_le_bytes(bare[..8].try_into().expect("8 bytes")) as usize;
        let tensors: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&bare[8..8 + n]).map_err(|e| e.to_string())?;
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!(self.metadata));
        header.extend(tensors);
        let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        // Padded with spaces to a multiple of 8 bytes, as safetensors does.
        text.resize(text.len().div_ceil(8) * 8, b' ');
        let mut bytes = Vec::with_capacity(8 + text.len() + bare.len() - 8 - n);
        bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&text);
        bytes.extend_from_slice(&bare[8 + n..]);
        Ok(bytes)
    }

    /// Parses and verifies the bytes of a checkpoint file.
    fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, NnError> {
        let corrupt = |reason: String| NnError::Corrupt { path: path.to_path_buf(), reason };
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("unreadable safetensors header ({e:?})")))?;
        let metadata: BTreeMap<String, String> =
            header.metadata().clone().unwrap_or_default().into_iter().collect();
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("invalid safetensors data ({e:?})")))?;
        let mut tensors = BTreeMap::new();
        let mut unsupported = Vec::new();
        for (name, view) in file.tensors() {
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => Data::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => Data::I64(
                    raw.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                other => {
                    unsupported.push(format!("`{name}` has dtype {other:?}"));
                    continue;
                }
            };
            tensors.insert(name, Stored { shape: view.shape().to_vec(), data });
        }
        let checkpoint = Checkpoint { tensors, metadata };
        // In name order, whatever order the file lists them in.
        unsupported.sort();
        if !unsupported.is_empty() {
            return Err(NnError::Mismatch {
                path: path.to_path_buf(),
                report: Box::new(MismatchReport {
                    other: vec![format!(
                        "unsupported dtypes (only F32 and I64 are read): {}",
                        unsupported.join(", ")
                    )],
                    ..MismatchReport::default()
                }),
            });
        }
        match checkpoint.metadata.get(CHECKSUM_KEY) {
            Some(expected) => {
                let actual = checkpoint.checksum();
                if &actual != expected {
                    return Err(corrupt(format!(
                        "checksum mismatch (header says {expected}, data gives {actual})"
                    )));
                }
            }
            // A file this crate wrote always carries its checksum: one without it (a damaged
            // key name, say) is not trusted. Files from elsewhere have no `tapestry.` key.
            None if checkpoint.metadata.keys().any(|k| k.starts_with(RESERVED_PREFIX)) => {
                return Err(corrupt(format!(
                    "no checksum (`{CHECKSUM_KEY}`), although the header has the keys of a \
                     tapestry checkpoint, so nothing can be verified"
                )));
            }
            None => {}
        }
        Ok(checkpoint)
    }

    /// Reads and verifies a checkpoint file.
    ///
    /// Errors with [`NnError::Io`] if the file cannot be read, and [`NnError::Corrupt`] if it is
    /// not a valid safetensors file, its checksum does not match, or it has `tapestry.` keys but
    /// no checksum (files without any `tapestry.` key, for example written by Python, are
    /// accepted as they are).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, NnError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|source| NnError::Io {
            op: "cannot read checkpoint",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// The header metadata, including the reserved `tapestry.*` and `optimizer.*` keys.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The user metadata given to [`save`] (without the reserved keys).
    pub fn user_metadata(&self) -> BTreeMap<String, String> {
        self.metadata
            .iter()
            .filter(|(k, _)| !k.starts_with("tapestry.") && !k.starts_with(OPTIMIZER_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// The safetensors dtype name of tensor `name` (`"F32"`, `"I64"`).
    pub fn dtype(&self, name: &str) -> Option<String> {
        self.tensors.get(name).map(|t| dtype_name(t.data.dtype()))
    }

    /// Tensor `name` as f32 (integer tensors are converted).
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        let t = self.tensors.get(name)?;
        Some(Tensor::from_vec(&t.shape, t.data.to_f32()).expect("shape checked by safetensors"))
    }

    /// The saved optimizer state, if any, mapped onto the parameters of `params` by name.
    fn optimizer_state(
        &self,
        params: &Params,
        report: &mut MismatchReport,
    ) -> Option<OptimizerState> {
        let Some(kind) = self.metadata.get(OPT_KIND) else {
            report.other.push("the checkpoint holds no optimizer state".into());
            return None;
        };
        let step = self.metadata.get(OPT_STEP).and_then(|s| s.parse().ok());
        let lr = self.metadata.get(OPT_LR).and_then(|s| s.parse().ok());
        let hyper = self.metadata.get(OPT_HYPER).and_then(|s| serde_json::from_str(s).ok());
        let (Some(step), Some(lr), Some(hyper)) = (step, lr, hyper) else {
            report.other.push("optimizer metadata (step, lr, hyper) is incomplete".into());
            return None;
        };
        let mut slots = Vec::new();
        for (name, stored) in &self.tensors {
            let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) else { continue };
            let Some((param, slot)) = rest.rsplit_once('.') else {
                report.unexpected.push(name.clone());
                continue;
            };
            let Some(id) = params.id(param) else {
                report.unexpected.push(name.clone());
                continue;
            };
            if stored.data.dtype() != Dtype::F32 {
                report.dtypes.push((name.clone(), "F32".into(), dtype_name(stored.data.dtype())));
            } else if stored.shape != params.shape(id) {
                report.shapes.push((name.clone(), params.shape(id).to_vec(), stored.shape.clone()));
            } else {
                let tensor =
                    Tensor::from_vec(&stored.shape, stored.data.to_f32()).expect("checked");
                slots.push((slot.to_string(), id, tensor));
            }
        }
        Some(OptimizerState { kind: kind.clone(), step, lr, hyper, slots })
    }

    /// Copies the checkpoint into `params` (and `optimizer`), after checking that every name,
    /// shape and dtype fits and that every value is finite. On any difference nothing is changed
    /// and the error lists them all ([`NnError::Mismatch`]); a NaN or infinite value is
    /// [`NnError::NonFinite`], naming the first tensor that holds one.
    ///
    /// `path` is only used in error messages.
    pub fn restore(
        &self,
        path: &Path,
        params: &mut Params,
        optimizer: Option<&mut dyn Optimizer>,
    ) -> Result<(), NnError> {
        let mut report = MismatchReport::default();
        let mut param_values = Vec::new();
        for (id, name, value) in params.iter() {
            match self.tensors.get(name) {
                None => report.missing.push(name.to_string()),
                Some(t) if t.data.dtype() != Dtype::F32 => {
                    report.dtypes.push((name.into(), "F32".into(), dtype_name(t.data.dtype())))
                }
                Some(t) if t.shape != value.shape() => {
                    report.shapes.push((name.into(), value.shape().to_vec(), t.shape.clone()))
                }
                Some(t) => param_values.push((id, t)),
            }
        }
        let mut buffer_values = Vec::new();
        let buffers = params.buffers();
        for id in buffers.ids() {
            let (name, value) = (buffers.name(id), buffers.get(id));
            let want = match buffers.dtype(id) {
                BufferDtype::F32 => Dtype::F32,
                BufferDtype::I64 => Dtype::I64,
            };
            match self.tensors.get(name) {
                None => report.missing.push(name.to_string()),
                Some(t) if t.data.dtype() != want => {
                    report.dtypes.push((name.into(), dtype_name(want), dtype_name(t.data.dtype())))
                }
                Some(t) if t.shape != value.shape() => {
                    report.shapes.push((name.into(), value.shape().to_vec(), t.shape.clone()))
                }
                Some(t) => buffer_values.push((id, t)),
            }
        }
        for name in self.tensors.keys() {
            let known = params.id(name).is_some() || params.buffer_id(name).is_some();
            if !known && !name.starts_with(OPTIMIZER_PREFIX) {
                report.unexpected.push(name.clone());
            }
        }
        let opt_state = optimizer.as_ref().and_then(|_| self.optimizer_state(params, &mut report));
        if let (Some(opt), Some(state)) = (optimizer.as_ref(), opt_state.as_ref()) {
            if opt.kind() != state.kind {
                report.other.push(format!(
                    "optimizer state of `{}`, loading into `{}`",
                    state.kind,
                    opt.kind()
                ));
            }
        }
        if !report.is_empty() {
            return Err(NnError::Mismatch { path: path.to_path_buf(), report: Box::new(report) });
        }
        // Values from outside are checked like names and shapes: a NaN in a hidden layer turns
        // into plausible outputs after a ReLU, so it has to be caught here.
        let buffers = params.buffers();
        let stored = param_values
            .iter()
            .map(|(id, t)| (params.name(*id).to_string(), t.data.to_f32()))
            .chain(
                buffer_values
                    .iter()
                    .map(|(id, t)| (buffers.name(*id).to_string(), t.data.to_f32())),
            );
        let slots = opt_state.iter().flat_map(|state| &state.slots).map(|(slot, id, tensor)| {
            (format!("{OPTIMIZER_PREFIX}{}.{slot}", params.name(*id)), tensor.to_vec())
        });
        for (name, values) in stored.chain(slots) {
            let count = values.iter().filter(|v| !v.is_finite()).count();
            if count > 0 {
                return Err(NnError::NonFinite {
                    path: path.to_path_buf(),
                    name,
                    count,
                    numel: values.len(),
                });
            }
        }
        if let (Some(opt), Some(state)) = (optimizer, opt_state) {
            opt.load_state(params, &state).map_err(|e| NnError::Mismatch {
                path: path.to_path_buf(),
                report: Box::new(MismatchReport {
                    other: vec![e.to_string()],
                    ..Default::default()
                }),
            })?;
        }
        for (id, t) in param_values {
            let value = Tensor::from_vec(&t.shape, t.data.to_f32()).expect("checked");
            params.set(id, value).expect("shape checked");
        }
        for (id, t) in buffer_values {
            let value = Tensor::from_vec(&t.shape, t.data.to_f32()).expect("checked");
            params.buffers_mut().set(id, value).expect("shape checked");
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path` (and the directory flushed, on Unix).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |op, source| NnError::Io { op, path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        NnError::Invalid(format!("checkpoint path `{}` names no file", path.display()))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io("cannot create temporary file for checkpoint", e))?;
        file.write_all(bytes).map_err(|e| io("cannot write checkpoint", e))?;
        file.sync_all().map_err(|e| io("cannot flush checkpoint", e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| io("cannot move checkpoint into place", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    #[cfg(unix)]
    if let Ok(d) = File::open(&dir) {
        // Makes the rename itself durable; a failure here does not undo the write.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves the parameters and buffers of `params`, the state of `optimizer` (if given) and the
/// user `metadata` (for example `step`, `epoch`) to `path`, atomically.
///
/// Errors if a metadata key is reserved (`tapestry.*`, `optimizer.*`) or the file cannot be
/// written; the previous file at `path` is then left as it was.
///
/// # Panics
/// If the optimizer's state refers to parameters that are not in `params`.
pub fn save(
    path: impl AsRef<Path>,
    params: &Params,
    optimizer: Option<&dyn Optimizer>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), NnError> {
    let path = path.as_ref();
    let checkpoint = Checkpoint::collect(params, optimizer, metadata)?;
    let bytes = checkpoint
        .to_bytes()
        .map_err(|reason| NnError::Invalid(format!("cannot serialise checkpoint: {reason}")))?;
    write_atomic(path, &bytes)
}

/// Loads `path` into `params` (and `optimizer`, if given) and returns the user metadata.
///
/// Errors with [`NnError::Corrupt`] for a truncated or corrupted file, with
/// [`NnError::Mismatch`] listing every missing or unexpected name, shape and dtype difference
/// (and a missing or different optimizer state), and with [`NnError::NonFinite`] for a NaN or
/// infinite value; nothing is changed then.
pub fn load(
    path: impl AsRef<Path>,
    params: &mut Params,
    optimizer: Option<&mut dyn Optimizer>,
) -> Result<BTreeMap<String, String>, NnError> {
    let path = path.as_ref();
    let checkpoint = Checkpoint::read(path)?;
    checkpoint.restore(path, params, optimizer)?;
    Ok(checkpoint.user_metadata())
}
