//! Checkpoints: round trip, corruption, mismatches, atomic replacement, bit-identical resume.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapestry_autodiff::{Tape, Tensor};
use tapestry_nn::checkpoint::{self, Checkpoint};
use tapestry_nn::optim::{clip_grad_norm, Adam, Cosine, LrSchedule, Optimizer, Sgd, Warmup};
use tapestry_nn::{losses, BufferDtype, Ctx, Linear, Module, NnError, Params, Relu, Sequential};

use common::vals;

/// A small two-task model: trunk `trunk.0` (4→8), ReLU, `trunk.2` (8→8); heads `heads.cls`
/// (8→3) and `heads.reg` (8→1); plus two buffers, one stored as I64.
struct Model {
    trunk: Sequential,
    cls: Linear,
    reg: Linear,
}

fn model(params: &mut Params, seed: u64) -> Model {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let trunk = Sequential::new()
        .push(Linear::new(params, "trunk.0", 4, 8, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(params, "trunk.2", 8, 8, &mut rng).unwrap());
    let cls = Linear::new(params, "heads.cls", 8, 3, &mut rng).unwrap();
    let reg = Linear::new(params, "heads.reg", 8, 1, &mut rng).unwrap();
    params
        .add_buffer("stats.running_mean", Tensor::full(&[8], seed as f32), BufferDtype::F32)
        .unwrap();
    params.add_buffer("stats.num_batches_tracked", Tensor::scalar(0.0), BufferDtype::I64).unwrap();
    Model { trunk, cls, reg }
}

/// One training step on batch `step` (data derived from the step number).
fn train_step(m: &Model, params: &mut Params, opt: &mut dyn Optimizer, schedule: &dyn LrSchedule) {
    let step = opt.steps();
    let x = vals(&[6, 4], 0.37, step as f64);
    let targets: Vec<usize> = (0..6).map(|i| (i + step as usize) % 3).collect();
    let y = vals(&[6, 1], 0.91, 0.5 * step as f64);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound).with_seed(step);
    let z = m.trunk.forward(tape.constant(x), &mut ctx);
    let loss_cls = losses::cross_entropy(m.cls.forward(z, &mut ctx), &targets);
    let loss_reg = losses::mse_loss(m.reg.forward(z, &mut ctx), tape.constant(y));
    let mut grads = bound.grads(&tape.backward(loss_cls.add(loss_reg)));
    clip_grad_norm(&mut grads, 0.5);
    opt.set_lr(schedule.lr(step));
    opt.step(params, &grads);
    let counter = params.buffer_id("stats.num_batches_tracked").unwrap();
    params.buffers_mut().update(counter, |c| c[0] += 1.0);
}

fn bits(params: &Params) -> Vec<u32> {
    let mut out: Vec<u32> =
        params.iter().flat_map(|(_, _, v)| v.to_vec()).map(f32::to_bits).collect();
    for id in params.buffers().ids() {
        out.extend(params.buffers().get(id).as_slice().iter().map(|v| v.to_bits()));
    }
    out
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn schedule() -> Warmup<Cosine> {
    Warmup::new(3, 0.2, Cosine::new(0.02, 20, 1e-4))
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    let (n, k) = (12, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");

    let mut params = Params::new();
    let m = model(&mut params, 1);
    let mut opt = Adam::new(0.02);
    for _ in 0..n {
        train_step(&m, &mut params, &mut opt, &schedule());
    }

    let mut params_a = Params::new();
    let m_a = model(&mut params_a, 1);
    let mut opt_a = Adam::new(0.02);
    for _ in 0..k {
        train_step(&m_a, &mut params_a, &mut opt_a, &schedule());
    }
    checkpoint::save(&path, &params_a, Some(&opt_a), &meta(&[("step", "5")])).unwrap();
    drop((params_a, opt_a));

    // Fresh objects, built from another seed so that every value must come from the file.
    let mut params_b = Params::new();
    let m_b = model(&mut params_b, 99);
    let mut opt_b = Adam::new(0.5);
    let user = checkpoint::load(&path, &mut params_b, Some(&mut opt_b)).unwrap();
    assert_eq!(user, meta(&[("step", "5")]));
    assert_eq!(opt_b.steps(), k);
    for _ in k..n {
        train_step(&m_b, &mut params_b, &mut opt_b, &schedule());
    }
    assert_eq!(bits(&params), bits(&params_b));
    assert_eq!(opt.state(), opt_b.state());
    let counter = params_b.buffer_id("stats.num_batches_tracked").unwrap();
    assert_eq!(params_b.buffers().get(counter).item(), n as f32);
}

#[test]
fn round_trip_keeps_names_dtypes_values_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut params = Params::new();
    let m = model(&mut params, 7);
    let mut opt = Sgd::with_config(tapestry_nn::optim::SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    })
    .unwrap();
    train_step(&m, &mut params, &mut opt, &tapestry_nn::optim::Constant(0.1));
    checkpoint::save(&path, &params, Some(&opt), &meta(&[("epoch", "3"), ("step", "1")])).unwrap();

    let file = Checkpoint::read(&path).unwrap();
    assert!(file.names().contains(&"trunk.0.weight"));
    assert!(file.names().contains(&"optimizer.trunk.0.weight.momentum_buffer"));
    assert_eq!(file.shape("heads.cls.weight"), Some(&[3usize, 8][..]));
    assert_eq!(file.dtype("stats.num_batches_tracked").as_deref(), Some("I64"));
    assert_eq!(file.dtype("stats.running_mean").as_deref(), Some("F32"));
    assert_eq!(file.metadata()["optimizer.kind"], "sgd");
    assert_eq!(file.metadata()["optimizer.step"], "1");
    assert_eq!(file.user_metadata(), meta(&[("epoch", "3"), ("step", "1")]));
    assert_eq!(file.tensor("stats.num_batches_tracked").unwrap().item(), 1.0);

    // Load the model alone (optimizer state in the file is then ignored).
    let mut fresh = Params::new();
    model(&mut fresh, 8);
    assert_ne!(bits(&params), bits(&fresh));
    checkpoint::load(&path, &mut fresh, None).unwrap();
    assert_eq!(bits(&params), bits(&fresh));

    // And the optimizer too.
    let mut sgd = Sgd::new(1.0);
    checkpoint::load(&path, &mut fresh, Some(&mut sgd)).unwrap();
    assert_eq!(sgd.state(), opt.state());
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["model.safetensors"], "no temporary file is left behind");
}

fn saved_model(dir: &Path) -> (std::path::PathBuf, Params) {
    let path = dir.join("ckpt.safetensors");
    let mut params = Params::new();
    model(&mut params, 3);
    checkpoint::save(&path, &params, None, &BTreeMap::new()).unwrap();
    (path, params)
}

fn expect_corrupt(path: &Path) -> String {
    let mut params = Params::new();
    model(&mut params, 4);
    let before = bits(&params);
    let err = checkpoint::load(path, &mut params, None).unwrap_err();
    assert!(matches!(err, NnError::Corrupt { .. }), "expected Corrupt, got {err}");
    assert_eq!(bits(&params), before, "a failed load changes nothing");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "the error names the file: {msg}");
    msg
}

#[test]
fn truncated_files_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());
    let bytes = fs::read(&path).unwrap();
    for cut in [0, 4, 8, 50, bytes.len() / 2, bytes.len() - 1] {
        let bad = dir.path().join(format!("cut{cut}.safetensors"));
        fs::write(&bad, &bytes[..cut]).unwrap();
        expect_corrupt(&bad);
    }
}

#[test]
fn corrupted_data_and_header_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());
    let bytes = fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // A flipped bit in the data, in the first and last tensors, and a changed character in the
    // header (inside a tensor name and inside the JSON structure).
    let name_at = 8 + String::from_utf8_lossy(&bytes[8..8 + header_len]).find("trunk.0").unwrap();
    for (at, xor) in [(8 + header_len, 0x01), (bytes.len() - 1, 0x80), (name_at, 0x20), (8, 0xff)] {
        let mut bad = bytes.clone();
        bad[at] ^= xor;
        let file = dir.path().join(format!("flip{at}.safetensors"));
        fs::write(&file, &bad).unwrap();
        let msg = expect_corrupt(&file);
        if at >= 8 + header_len {
            assert!(msg.contains("checksum mismatch"), "{msg}");
        }
    }
    // A changed metadata value (same length, so the file stays valid safetensors).
    let mut params = Params::new();
    model(&mut params, 4);
    let tagged = dir.path().join("tagged.safetensors");
    checkpoint::save(&tagged, &params, None, &meta(&[("epoch", "3")])).unwrap();
    let text = fs::read(&tagged).unwrap();
    let at = text.windows(11).position(|w| w == br#""epoch":"3""#).unwrap() + 9;
    let mut bad = text.clone();
    bad[at] = b'4';
    fs::write(&tagged, &bad).unwrap();
    assert!(expect_corrupt(&tagged).contains("checksum mismatch"));

    // The good file still loads.
    let mut params = Params::new();
    model(&mut params, 4);
    checkpoint::load(&path, &mut params, None).unwrap();
}

#[test]
fn a_failed_or_interrupted_save_leaves_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (path, saved) = saved_model(dir.path());
    let good = fs::read(&path).unwrap();

    // A reserved metadata key: nothing is written.
    let mut params = Params::new();
    model(&mut params, 5);
    let err = checkpoint::save(&path, &params, None, &meta(&[("tapestry.checksum", "0")]));
    assert!(matches!(err, Err(NnError::InvalidName { .. })));
    assert_eq!(fs::read(&path).unwrap(), good);

    // A crash mid-write leaves at most a partial temporary file beside the checkpoint; the
    // checkpoint itself is the old one and loads.
    fs::write(dir.path().join(".ckpt.safetensors.tmp-1-0"), &good[..good.len() / 3]).unwrap();
    let mut loaded = Params::new();
    model(&mut loaded, 6);
    checkpoint::load(&path, &mut loaded, None).unwrap();
    assert_eq!(bits(&loaded), bits(&saved));

    // The target cannot be replaced (it is a non-empty directory): an error, and no temporary
    // file is left behind.
    let blocked = dir.path().join("blocked");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("keep"), b"x").unwrap();
    let err = checkpoint::save(&blocked, &params, None, &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, NnError::Io { .. }), "{err}");
    assert!(err.to_string().contains("blocked"), "{err}");
    let leftovers = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".blocked"))
        .count();
    assert_eq!(leftovers, 0);

    // A successful save replaces the file as a whole.
    checkpoint::save(&path, &params, None, &BTreeMap::new()).unwrap();
    let mut reloaded = Params::new();
    model(&mut reloaded, 6);
    checkpoint::load(&path, &mut reloaded, None).unwrap();
    assert_eq!(bits(&reloaded), bits(&params));
}

#[test]
fn mismatches_are_reported_exactly_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());

    // Another model: trunk.2 is 8→6 (so heads take 6 inputs), an extra layer, no heads.reg,
    // and the counter stored as F32.
    let mut params = Params::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    Linear::new(&mut params, "trunk.0", 4, 8, &mut rng).unwrap();
    Linear::new(&mut params, "trunk.2", 8, 6, &mut rng).unwrap();
    Linear::new(&mut params, "heads.cls", 6, 3, &mut rng).unwrap();
    Linear::new(&mut params, "heads.extra", 6, 2, &mut rng).unwrap();
    params.add_buffer("stats.running_mean", Tensor::zeros(&[8]), BufferDtype::F32).unwrap();
    params.add_buffer("stats.num_batches_tracked", Tensor::scalar(0.0), BufferDtype::F32).unwrap();
    let before = bits(&params);

    let err = checkpoint::load(&path, &mut params, None).unwrap_err();
    let NnError::Mismatch { report, .. } = &err else { panic!("expected Mismatch, got {err}") };
    assert_eq!(report.missing, ["heads.extra.weight", "heads.extra.bias"]);
    assert_eq!(report.unexpected, ["heads.reg.bias", "heads.reg.weight"]);
    assert_eq!(
        report.shapes,
        [
            ("trunk.2.weight".to_string(), vec![6, 8], vec![8, 8]),
            ("trunk.2.bias".to_string(), vec![6], vec![8]),
            ("heads.cls.weight".to_string(), vec![3, 6], vec![3, 8]),
        ]
    );
    assert_eq!(
        report.dtypes,
        [("stats.num_batches_tracked".to_string(), "F32".to_string(), "I64".to_string())]
    );
    let msg = err.to_string();
    assert!(msg.contains("missing in checkpoint: heads.extra.weight, heads.extra.bias"), "{msg}");
    assert!(msg.contains("shape of `trunk.2.weight`: model [6, 8] vs checkpoint [8, 8]"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(bits(&params), before);
}

#[test]
fn optimizer_state_must_exist_and_be_of_the_same_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());
    let mut params = Params::new();
    let m = model(&mut params, 3);
    let err = checkpoint::load(&path, &mut params, Some(&mut Adam::new(0.1))).unwrap_err();
    assert!(err.to_string().contains("holds no optimizer state"), "{err}");

    let mut adam = Adam::new(0.01);
    train_step(&m, &mut params, &mut adam, &tapestry_nn::optim::Constant(0.01));
    checkpoint::save(&path, &params, Some(&adam), &BTreeMap::new()).unwrap();
    let mut sgd = Sgd::new(0.1);
    let err = checkpoint::load(&path, &mut params, Some(&mut sgd)).unwrap_err();
    assert!(err.to_string().contains("optimizer state of `adam`, loading into `sgd`"), "{err}");
    assert_eq!(sgd.steps(), 0);
}

/// A trunk with BatchNorm (running statistics in buffers) and Dropout (masks from the step's
/// seed), trained with AdamW on a schedule.
fn bn_model(params: &mut Params, seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Sequential::new()
        .push(Linear::new(params, "trunk.0", 4, 16, &mut rng).unwrap())
        .push(tapestry_nn::BatchNorm2d::new(params, "trunk.1", 16).unwrap())
        .push(Relu)
        .push(tapestry_nn::Dropout::new(0.3))
        .push(Linear::new(params, "head", 16, 2, &mut rng).unwrap())
}

fn bn_step(net: &Sequential, params: &mut Params, opt: &mut dyn Optimizer) {
    let step = opt.steps();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound).with_buffers(params.buffers_mut()).with_seed(1000 + step);
    let out = net.forward(tape.constant(vals(&[8, 4], 0.53, step as f64)), &mut ctx);
    let loss = losses::mse_loss(out, tape.constant(vals(&[8, 2], 0.21, 0.1 * step as f64)));
    let grads = bound.grads(&tape.backward(loss));
    opt.set_lr(schedule().lr(step));
    opt.step(params, &grads);
}

#[test]
fn resume_with_batchnorm_and_dropout_is_bit_identical() {
    let (n, k) = (9, 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bn.safetensors");
    let mut params = Params::new();
    let net = bn_model(&mut params, 1);
    let mut opt = tapestry_nn::optim::AdamW::new(0.01);
    for _ in 0..n {
        bn_step(&net, &mut params, &mut opt);
    }

    let mut params_a = Params::new();
    let net_a = bn_model(&mut params_a, 1);
    let mut opt_a = tapestry_nn::optim::AdamW::new(0.01);
    for _ in 0..k {
        bn_step(&net_a, &mut params_a, &mut opt_a);
    }
    checkpoint::save(&path, &params_a, Some(&opt_a), &BTreeMap::new()).unwrap();

    let mut params_b = Params::new();
    let net_b = bn_model(&mut params_b, 2);
    let mut opt_b = tapestry_nn::optim::AdamW::new(0.3);
    checkpoint::load(&path, &mut params_b, Some(&mut opt_b)).unwrap();
    for _ in k..n {
        bn_step(&net_b, &mut params_b, &mut opt_b);
    }
    assert_eq!(bits(&params), bits(&params_b));
    let count = params_b.buffer_id("trunk.1.num_batches_tracked").unwrap();
    assert_eq!(params_b.buffers().get(count).item(), n as f32);
    assert_eq!(opt.state(), opt_b.state());
}

/// The header of a checkpoint file as JSON, and the data after it.
fn split_file(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// A checkpoint file from a header and data (the header padded with spaces, as safetensors
/// does).
fn join_file(header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) -> Vec<u8> {
    let mut text = serde_json::to_vec(header).unwrap();
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

#[test]
fn identical_saves_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = Params::new();
    let m = model(&mut params, 5);
    let mut opt = Adam::new(0.01);
    train_step(&m, &mut params, &mut opt, &tapestry_nn::optim::Constant(0.01));
    let metadata = meta(&[("epoch", "1"), ("step", "1"), ("method", "ew"), ("model", "mlp")]);
    let files: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let path = dir.path().join(format!("c{i}.safetensors"));
            checkpoint::save(&path, &params, Some(&opt), &metadata).unwrap();
            fs::read(&path).unwrap()
        })
        .collect();
    assert!(files.iter().all(|f| f == &files[0]), "the bytes differ between identical saves");
}

#[test]
fn a_checkpoint_of_this_program_without_its_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());
    let bytes = fs::read(&path).unwrap();
    let (header, data) = split_file(&bytes);
    let meta = header["__metadata__"].as_object().unwrap().clone();
    assert!(meta.contains_key("tapestry.checksum") && meta.contains_key("tapestry.format"));

    // One changed byte in the checksum's key name, and one in the data.
    let mut bad = bytes.clone();
    let at = bad.windows(17).position(|w| w == b"tapestry.checksum").unwrap() + 16;
    bad[at] = b'M';
    let last = bad.len() - 1;
    bad[last] ^= 0x20;
    let file = dir.path().join("renamed.safetensors");
    fs::write(&file, &bad).unwrap();
    let msg = expect_corrupt(&file);
    assert!(msg.contains("no checksum"), "{msg}");

    // The checksum removed altogether.
    let mut stripped = header.clone();
    stripped["__metadata__"].as_object_mut().unwrap().remove("tapestry.checksum");
    let file = dir.path().join("stripped.safetensors");
    fs::write(&file, join_file(&stripped, &data)).unwrap();
    assert!(expect_corrupt(&file).contains("no checksum"));

    // A file from elsewhere (no `tapestry.` key at all) is read as it is.
    let mut foreign = header.clone();
    foreign.remove("__metadata__");
    let file = dir.path().join("foreign.safetensors");
    fs::write(&file, join_file(&foreign, &data)).unwrap();
    let mut params = Params::new();
    model(&mut params, 4);
    checkpoint::load(&file, &mut params, None).unwrap();
}

#[test]
fn non_finite_values_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value, numel) in
        [("trunk.2.weight", f32::NAN, 64), ("stats.running_mean", f32::INFINITY, 8)]
    {
        let mut params = Params::new();
        model(&mut params, 3);
        match params.id(name) {
            Some(id) => params.update(id, |v| v[1] = value),
            None => {
                let id = params.buffer_id(name).unwrap();
                params.buffers_mut().update(id, |b| b[1] = value)
            }
        }
        let path = dir.path().join("bad.safetensors");
        checkpoint::save(&path, &params, None, &BTreeMap::new()).unwrap();

        let mut fresh = Params::new();
        model(&mut fresh, 4);
        let before = bits(&fresh);
        let err = checkpoint::load(&path, &mut fresh, None).unwrap_err();
        assert!(matches!(err, NnError::NonFinite { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{name}`")) && msg.contains(&format!("1 of {numel}")),
            "{msg}"
        );
        assert_eq!(bits(&fresh), before, "a refused load changes nothing");
    }
}

#[test]
fn four_dimensional_weights_round_trip() {
    // Conv weights [c_out, c_in, kh, kw] (and a bias) keep their shape and every bit.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.safetensors");
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut params = Params::new();
    let shapes: [&[usize]; 3] = [&[4, 3, 3, 3], &[2, 4, 1, 5], &[4]];
    for (i, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| rand::Rng::gen_range(&mut rng, -1.0f32..1.0)).collect();
        params
            .add(format!("trunk.conv{i}.weight"), Tensor::from_vec(shape, values).unwrap())
            .unwrap();
    }
    checkpoint::save(&path, &params, None, &BTreeMap::new()).unwrap();
    let file = Checkpoint::read(&path).unwrap();
    for (i, shape) in shapes.iter().enumerate() {
        assert_eq!(file.shape(&format!("trunk.conv{i}.weight")), Some(*shape));
    }
    let mut fresh = Params::new();
    for (i, shape) in shapes.iter().enumerate() {
        fresh.add(format!("trunk.conv{i}.weight"), Tensor::zeros(shape)).unwrap();
    }
    checkpoint::load(&path, &mut fresh, None).unwrap();
    assert_eq!(bits(&fresh), bits(&params));
    // A model whose kernel is laid out differently (same size, other shape) does not load.
    let mut other = Params::new();
    other.add("trunk.conv0.weight", Tensor::zeros(&[4, 3, 9])).unwrap();
    other.add("trunk.conv1.weight", Tensor::zeros(&[2, 4, 1, 5])).unwrap();
    other.add("trunk.conv2.weight", Tensor::zeros(&[4])).unwrap();
    let err = checkpoint::load(&path, &mut other, None).unwrap_err().to_string();
    assert!(
        err.contains("shape of `trunk.conv0.weight`: model [4, 3, 9] vs checkpoint [4, 3, 3, 3]"),
        "{err}"
    );
}

#[test]
fn unsupported_dtypes_are_named() {
    // A file written by another program with half-precision and 8-bit tensors: only F32 and
    // I64 are read, and the error names every other tensor with its dtype.
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.safetensors");
    let (f32s, f16s, u8s) = ([0u8; 16], [0u8; 8], [0u8; 3]);
    let views = vec![
        ("w", TensorView::new(Dtype::F32, vec![4], &f32s).unwrap()),
        ("half", TensorView::new(Dtype::F16, vec![2, 2], &f16s).unwrap()),
        ("bytes", TensorView::new(Dtype::U8, vec![3], &u8s).unwrap()),
    ];
    safetensors::serialize_to_file(views, &None, &path).unwrap();
    let err = Checkpoint::read(&path).unwrap_err();
    assert!(matches!(err, NnError::Mismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("unsupported dtypes (only F32 and I64 are read): `bytes` has dtype U8, `half` has dtype F16"),
        "{msg}"
    );
    let mut params = Params::new();
    params.add("w", Tensor::zeros(&[4])).unwrap();
    assert!(matches!(checkpoint::load(&path, &mut params, None), Err(NnError::Mismatch { .. })));
}
