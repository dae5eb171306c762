//! Conv2d, BatchNorm2d (with running statistics), pooling, Flatten, LayerNorm and Dropout
//! against PyTorch 1.13, and dropout behaviour.
//!
//! The expected values come from this script (`/usr/bin/python3`, torch 1.13):
//!
//! ```python
//! import torch
//! import torch.nn as nn
//! def vals(shape, a, b):
//!     # v[i] = sin(a*i + b), computed in f64, rounded to f32, row-major
//!     n = 1
//!     for s in shape: n *= s
//!     i = torch.arange(n, dtype=torch.float64)
//!     return torch.sin(a * i + b).float().reshape(shape)
//! def show(name, t): print(f"const {name}: [f32; {t.numel()}] = [{', '.join(repr(float(v)) for v in t.detach().reshape(-1).tolist())}];")
//! net = nn.Sequential(
//!     nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
//!     nn.Conv2d(4, 3, 2, bias=False), nn.AvgPool2d(2), nn.Flatten(), nn.LayerNorm(3), nn.Linear(3, 3))
//! with torch.no_grad():
//!     net[0].weight.copy_(vals([4, 3, 3, 3], 0.41, 0.2) * 0.3); net[0].bias.copy_(vals([4], 1.3, 0.0) * 0.1)
//!     net[1].weight.copy_(vals([4], 0.7, 1.0) * 0.5 + 1.0); net[1].bias.copy_(vals([4], 0.9, 0.4) * 0.2)
//!     net[4].weight.copy_(vals([3, 4, 2, 2], 0.53, -0.3) * 0.4)
//!     net[7].weight.copy_(vals([3], 0.8, 0.6) * 0.3 + 1.0); net[7].bias.copy_(vals([3], 1.1, 0.2) * 0.1)
//!     net[8].weight.copy_(vals([3, 3], 0.61, 0.1)); net[8].bias.copy_(vals([3], 0.37, 0.5) * 0.1)
//! x = vals([2, 3, 6, 6], 0.29, 0.0) * 2
//! net.train()
//! loss = nn.functional.cross_entropy(net(x), torch.tensor([1, 2]))
//! loss.backward()
//! print(f"const CONV_LOSS: f32 = {loss.item()!r};")
//! for name, p in net.named_parameters():
//!     show("D_" + name.replace(".", "_").upper(), p.grad)
//! show("RUNNING_MEAN", net[1].running_mean); show("RUNNING_VAR", net[1].running_var)
//! net.eval()
//! show("EVAL_LOGITS", net(x))
//! ```

// The values are pasted verbatim from the script's output.
#![allow(clippy::excessive_precision)]

mod common;

use tapestry_autodiff::{Tape, Tensor};
use tapestry_nn::{
    losses, AvgPool2d, BatchNorm2d, Conv2d, Ctx, Dropout, Flatten, LayerNorm, Linear, MaxPool2d,
    Mode, Module, Params, Relu, Sequential,
};

use common::{assert_close, vals};

#[rustfmt::skip]
const CONV_LOSS: f32 = 0.7691909074783325;
#[rustfmt::skip]
const D_0_WEIGHT: [f32; 108] = [-0.012595964595675468, -0.012098103761672974, -0.0034524525981396437, -0.0007696624961681664, -0.0035293675027787685, -0.00011776882456615567, 0.00474033085629344, 0.002705266233533621, -0.006190861109644175, 0.007556977216154337, 0.008817817084491253, 0.000791558064520359, -0.00719061866402626, -0.0050350455567240715, 0.00037395645631477237, -0.000787237542681396, -0.002328631468117237, 0.0027101601008325815, 0.004624389111995697, 0.002796513494104147, 0.002617457415908575, 0.00835477001965046, 0.008840646594762802, -0.00027669305563904345, -0.003909897990524769, -0.00024886574828997254, 0.0033320195507258177, -0.0004908743430860341, 0.0006062485626898706, 0.005949965678155422, 0.0033910463098436594, 0.0029633017256855965, 0.003460814245045185, 0.0005537536344490945, 0.0033547766506671906, -0.0037926454097032547, 0.00218156143091619, 0.002147771418094635, -0.002133418573066592, -0.00502487737685442, -0.006415738724172115, -0.00048310926649719477, 0.003527178196236491, 0.0007810793467797339, 0.0031479226890951395, -0.001810400397516787, -0.0028718591202050447, -0.0036995040718466043, 0.0019095215247943997, 0.0038044038228690624, -0.002951235044747591, -0.004274421837180853, -0.004178671631962061, 0.0004720319411717355, 0.0114592919126153, 0.012271322309970856, 0.009823914617300034, 0.0022305743768811226, -0.0007876493036746979, -0.003166104666888714, -0.0033980607986450195, -0.007328472565859556, -0.008074754849076271, -0.00992293655872345, -0.007124333642423153, -0.004500643815845251, 0.009542160667479038, 0.014819305390119553, 0.013772247359156609, 0.0008659098530188203, 0.0021793274208903313, 0.00048116169637069106, -0.0009919493459165096, -0.0047561246901750565, -0.0050763580948114395, -0.012296244502067566, -0.014844673685729504, -0.011361720971763134, 0.0024846435990184546, 0.005029591266065836, 0.007567199878394604, 0.006640289910137653, -0.0016879674512892962, 0.0003430766810197383, -0.017466364428400993, -0.0202233474701643, -0.018973710015416145, -0.010378999635577202, -0.0013793276157230139, -0.0004145448619965464, 0.008185435086488724, 0.015805592760443687, 0.014701224863529205, 0.014413163997232914, 0.007791412528604269, 0.00820324756205082, -0.012019051238894463, -0.018345585092902184, -0.01766292378306389, -0.01527479849755764, -0.014984791167080402, -0.0158508513122797, 0.002262471243739128, 0.012004476971924305, 0.010320422239601612, 0.02305746078491211, 0.020731404423713684, 0.01904650777578354];
#[rustfmt::skip]
const D_0_BIAS: [f32; 4] = [-9.713403414934874e-09, 2.195884007960558e-08, 5.587935447692871e-09, -3.2014213502407074e-09];
#[rustfmt::skip]
const D_1_WEIGHT: [f32; 4] = [0.06971175223588943, -0.12904350459575653, -0.00425415113568306, 0.10834328085184097];
#[rustfmt::skip]
const D_1_BIAS: [f32; 4] = [0.06522005796432495, -0.09238541126251221, 0.005079299211502075, 0.11792643368244171];
#[rustfmt::skip]
const D_4_WEIGHT: [f32; 48] = [0.008870829828083515, 0.009629808366298676, 0.012245901860296726, 0.014120678417384624, 0.02603859454393387, 0.021913334727287292, 0.021988360211253166, 0.01814456284046173, 0.014867560006678104, 0.018394680693745613, 0.015876153483986855, 0.02150740660727024, 0.013067825697362423, 0.01163000799715519, 0.012054964900016785, 0.00912474375218153, 0.047773394733667374, 0.03830098733305931, 0.040424786508083344, 0.05073590576648712, 0.10435086488723755, 0.10279026627540588, 0.0944112241268158, 0.08448448032140732, 0.06354790925979614, 0.05583629384636879, 0.05486471205949783, 0.06269330531358719, 0.050061412155628204, 0.04932410269975662, 0.052138801664114, 0.044939979910850525, -0.0566440112888813, -0.047930601984262466, -0.052670449018478394, -0.06485631316900253, -0.13038890063762665, -0.12470313161611557, -0.1163991317152977, -0.1026286706328392, -0.078415147960186, -0.0742306262254715, -0.07074056565761566, -0.08420030772686005, -0.06312896311283112, -0.06095385178923607, -0.06419350951910019, -0.05406451225280762];
#[rustfmt::skip]
const D_7_WEIGHT: [f32; 3] = [0.2917711138725281, -0.19910724461078644, -0.14413756132125854];
#[rustfmt::skip]
const D_7_BIAS: [f32; 3] = [0.20362627506256104, 0.25288015604019165, 0.21091918647289276];
#[rustfmt::skip]
const D_8_WEIGHT: [f32; 9] = [0.0912189856171608, -0.03627444803714752, -0.05220853537321091, 0.18685120344161987, -0.11657844483852386, -0.06686803698539734, -0.27807027101516724, 0.15285292267799377, 0.11907660961151123];
#[rustfmt::skip]
const D_8_BIAS: [f32; 3] = [0.0548362210392952, 0.10974302887916565, -0.16457927227020264];
#[rustfmt::skip]
const RUNNING_MEAN: [f32; 4] = [0.09873851388692856, -0.0389305017888546, -0.10080596059560776, 0.02593054808676243];
#[rustfmt::skip]
const RUNNING_VAR: [f32; 4] = [2.504124402999878, 2.4286365509033203, 2.5849432945251465, 2.3512744903564453];
#[rustfmt::skip]
const EVAL_LOGITS: [f32; 6] = [-1.172486662864685, 1.4686299562454224, 0.6013370752334595, -1.1779282093048096, 1.437809705734253, 0.6225778460502625];

fn affine(t: Tensor, scale: f32, shift: f32) -> Tensor {
    t.map(|v| v * scale + shift)
}

struct Net {
    seq: Sequential,
    bn: BatchNorm2d,
}

/// The script's network, with the script's weights, named as PyTorch names it.
fn net(params: &mut Params) -> Net {
    let w0 = affine(vals(&[4, 3, 3, 3], 0.41, 0.2), 0.3, 0.0);
    let b0 = affine(vals(&[4], 1.3, 0.0), 0.1, 0.0);
    let conv0 = Conv2d::from_tensors(params, "0", w0, Some(b0)).unwrap().padding((1, 1));
    let bn = BatchNorm2d::new(params, "1", 4).unwrap();
    params.set(bn.weight(), affine(vals(&[4], 0.7, 1.0), 0.5, 1.0)).unwrap();
    params.set(bn.bias(), affine(vals(&[4], 0.9, 0.4), 0.2, 0.0)).unwrap();
    let w4 = affine(vals(&[3, 4, 2, 2], 0.53, -0.3), 0.4, 0.0);
    let conv4 = Conv2d::from_tensors(params, "4", w4, None).unwrap();
    let ln = LayerNorm::new(params, "7", &[3]).unwrap();
    params.set(ln.weight(), affine(vals(&[3], 0.8, 0.6), 0.3, 1.0)).unwrap();
    params.set(ln.bias(), affine(vals(&[3], 1.1, 0.2), 0.1, 0.0)).unwrap();
    let fc = Linear::from_tensors(
        params,
        "8",
        vals(&[3, 3], 0.61, 0.1),
        Some(affine(vals(&[3], 0.37, 0.5), 0.1, 0.0)),
    )
    .unwrap();
    let seq = Sequential::new()
        .push(conv0)
        .push(bn.clone())
        .push(Relu)
        .push(MaxPool2d::new((2, 2)))
        .push(conv4)
        .push(AvgPool2d::new((2, 2)))
        .push(Flatten)
        .push(ln)
        .push(fc);
    Net { seq, bn }
}

#[test]
fn conv_batchnorm_pool_layernorm_match_pytorch() {
    let mut params = Params::new();
    let net = net(&mut params);
    let x = affine(vals(&[2, 3, 6, 6], 0.29, 0.0), 2.0, 0.0);

    let tape = Tape::new();
    let bound = params.bind(&tape);
    let mut ctx = Ctx::train(&bound).with_buffers(params.buffers_mut());
    let logits = net.seq.forward(tape.constant(x.clone()), &mut ctx);
    let loss = losses::cross_entropy(logits, &[1, 2]);
    assert!((loss.value().item() - CONV_LOSS).abs() < 1e-5, "loss {}", loss.value().item());
    let grads = bound.grads(&tape.backward(loss));
    let expected: [(&str, &[f32]); 9] = [
        ("0.weight", &D_0_WEIGHT),
        ("0.bias", &D_0_BIAS),
        ("1.weight", &D_1_WEIGHT),
        ("1.bias", &D_1_BIAS),
        ("4.weight", &D_4_WEIGHT),
        ("7.weight", &D_7_WEIGHT),
        ("7.bias", &D_7_BIAS),
        ("8.weight", &D_8_WEIGHT),
        ("8.bias", &D_8_BIAS),
    ];
    for (name, want) in expected {
        let id = params.id(name).unwrap();
        assert_close(name, grads.get(id).as_slice(), want, 1e-4, 1e-6);
    }
    assert_eq!(net.seq.params().len(), params.len());

    let [mean, var, count] = net.bn.buffer_ids();
    assert_close("running_mean", params.buffers().get(mean).as_slice(), &RUNNING_MEAN, 1e-5, 1e-7);
    assert_close("running_var", params.buffers().get(var).as_slice(), &RUNNING_VAR, 1e-5, 1e-7);
    assert_eq!(params.buffers().get(count).item(), 1.0);
    assert_eq!(params.buffers().name(count), "1.num_batches_tracked");

    // Eval mode normalises with the running statistics and leaves them alone.
    let tape = Tape::new();
    let bound = params.bind_constant(&tape);
    let mut ctx = Ctx::eval(&bound).with_buffers(params.buffers_mut());
    let logits = net.seq.forward(tape.constant(x), &mut ctx);
    assert_close("eval logits", logits.value().as_slice(), &EVAL_LOGITS, 1e-4, 1e-6);
    assert_eq!(params.buffers().get(count).item(), 1.0);
}

#[test]
#[should_panic(expected = "BatchNorm2d needs the buffers")]
fn batchnorm_without_buffers_panics() {
    let mut params = Params::new();
    let bn = BatchNorm2d::new(&mut params, "bn", 2).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    bn.forward(tape.constant(Tensor::ones(&[2, 2, 2, 2])), &mut Ctx::train(&bound));
}

#[test]
fn dropout_scales_in_train_mode_and_passes_through_in_eval() {
    let mut params = Params::new();
    params.add("unused", Tensor::zeros(&[1])).unwrap();
    let drop = Dropout::new(0.25);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = tape.constant(Tensor::ones(&[10_000]));
    let run = |mode, seed| {
        let mut ctx = Ctx::new(&bound, mode).with_seed(seed);
        drop.forward(x, &mut ctx).value()
    };
    let y = run(Mode::Train, 1);
    assert!(y.as_slice().iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
    let kept = y.as_slice().iter().filter(|&&v| v != 0.0).count() as f64 / 10_000.0;
    assert!((kept - 0.75).abs() < 0.02, "kept fraction {kept}");
    assert_eq!(run(Mode::Train, 1), y, "the seed fixes the mask");
    assert_ne!(run(Mode::Train, 2), y);
    assert_eq!(run(Mode::Eval, 1), Tensor::ones(&[10_000]));
}
