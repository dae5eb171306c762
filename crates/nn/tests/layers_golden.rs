//! Layer outputs and gradients against PyTorch 1.13.
//!
//! The expected values come from this script (`/usr/bin/python3`, torch 1.13):
//!
//! ```python
//! import torch
//! import torch.nn.functional as F
//! def vals(shape, a, b):
//!     # v[i] = sin(a*i + b), computed in f64, rounded to f32, row-major
//!     n = 1
//!     for s in shape: n *= s
//!     i = torch.arange(n, dtype=torch.float64)
//!     return torch.sin(a * i + b).float().reshape(shape)
//! def show(name, t): print(f"const {name}: [f32; {t.numel()}] = [{', '.join(repr(float(v)) for v in t.detach().reshape(-1).tolist())}];")
//! # 1. Linear alone, loss = sum(y * r)
//! x = vals([3, 4], 0.7, 0.2).requires_grad_()
//! w = vals([5, 4], 0.37, 0.1).mul(0.5).requires_grad_()
//! b = vals([5], 1.1, 0.3).mul(0.1).requires_grad_()
//! r = vals([3, 5], 0.9, -0.4)
//! y = F.linear(x, w, b)
//! (y * r).sum().backward()
//! show("LIN_Y", y); show("LIN_DW", w.grad); show("LIN_DB", b.grad); show("LIN_DX", x.grad)
//! # 2. MLP: fc1 -> tanh -> fc2 -> leaky_relu(0.1) -> fc3 -> cross_entropy
//! x = vals([4, 3], 0.55, 0.0) * 2
//! w1 = vals([6, 3], 0.31, 0.5).requires_grad_(); b1 = vals([6], 0.8, 0.1).mul(0.2).requires_grad_()
//! w2 = vals([5, 6], 0.23, -0.7).requires_grad_(); b2 = vals([5], 0.6, 0.9).mul(0.2).requires_grad_()
//! w3 = vals([3, 5], 0.47, 0.33).requires_grad_(); b3 = vals([3], 1.7, -0.2).mul(0.2).requires_grad_()
//! h = F.leaky_relu(F.linear(torch.tanh(F.linear(x, w1, b1)), w2, b2), 0.1)
//! logits = F.linear(h, w3, b3)
//! loss = F.cross_entropy(logits, torch.tensor([0, 2, 1, 2]))
//! loss.backward()
//! print(f"const MLP_LOSS: f32 = {loss.item()!r};")
//! for n, t in [("MLP_DW1", w1), ("MLP_DB1", b1), ("MLP_DW2", w2), ("MLP_DB2", b2), ("MLP_DW3", w3), ("MLP_DB3", b3)]:
//!     show(n, t.grad)
//! # 3. sigmoid, softplus, relu with mse
//! x = vals([2, 4], 0.9, 0.4) * 3
//! w = vals([4, 4], 0.29, 0.0).requires_grad_()
//! z = F.linear(x, w)
//! out = torch.sigmoid(z) + F.softplus(z) + torch.relu(z)
//! loss = F.mse_loss(out, vals([2, 4], 0.5, 1.0))
//! loss.backward()
//! print(f"const ACT_LOSS: f32 = {loss.item()!r};")
//! show("ACT_OUT", out); show("ACT_DW", w.grad)
//! ```

// The values are pasted verbatim from the script's output.
#![allow(clippy::excessive_precision)]

mod common;

use tapestry_autodiff::Tape;
use tapestry_nn::{losses, Ctx, LeakyRelu, Linear, Module, Params, Sequential, Tanh};

use common::{assert_close, scaled, vals};

#[rustfmt::skip]
const LIN_Y: [f32; 15] = [0.9378576278686523, 1.090387225151062, -0.668594479560852, -1.1681921482086182, 0.42463040351867676, -0.8707869648933411, -0.627405047416687, 0.8285400867462158, 0.8210952281951904, -0.7117602825164795, 0.8178855180740356, 0.4747154712677002, -0.6602702140808105, -0.5510109663009644, 0.5282278656959534];
#[rustfmt::skip]
const LIN_DW: [f32; 20] = [-0.5340432524681091, 0.2864943742752075, 0.9722893238067627, 1.2008013725280762, -0.005160879343748093, 0.8674531579017639, 1.3320904970169067, 1.1702247858047485, 0.5276271104812622, 0.7919406890869141, 0.6837921142578125, 0.2540454864501953, 0.661117434501648, 0.11710323393344879, -0.48198655247688293, -0.8543905019760132, 0.29428723454475403, -0.6463555097579956, -1.283007264137268, -1.316240668296814];
#[rustfmt::skip]
const LIN_DB: [f32; 5] = [-0.4732983708381653, -0.5546498894691467, -0.2162533402442932, 0.2857993245124817, 0.571564793586731];
#[rustfmt::skip]
const LIN_DX: [f32; 12] = [-0.09931055456399918, -0.3743491470813751, -0.5987213850021362, -0.7420594692230225, -0.9074578285217285, -0.7670975923538208, -0.5229142904281616, -0.2079569697380066, 0.48188716173171997, 0.6977511048316956, 0.8191776871681213, 0.829732358455658];
#[rustfmt::skip]
const MLP_LOSS: f32 = 2.243269681930542;
#[rustfmt::skip]
const MLP_DW1: [f32; 18] = [0.005017189309000969, 0.00771469809114933, 0.00813674833625555, -0.00011105131125077605, 0.0016442760825157166, 0.0029146233573555946, -0.008361943066120148, 0.08679987490177155, 0.15636001527309418, -0.149601012468338, -0.09949886053800583, -0.0200494471937418, -0.00267353979870677, -0.0014502726262435317, 0.00020075403153896332, -0.01167646236717701, -0.0053151389583945274, 0.002613888354972005];
#[rustfmt::skip]
const MLP_DB1: [f32; 6] = [-0.0003667887067422271, -0.0012935083359479904, -0.0657506138086319, 0.06245844438672066, 0.0009823160944506526, 0.004575989209115505];
#[rustfmt::skip]
const MLP_DW2: [f32; 30] = [-0.25069835782051086, -0.25558629631996155, -0.2502182424068451, 0.22063814103603363, 0.25549957156181335, 0.2549574077129364, -0.43207722902297974, -0.4377514719963074, -0.38421982526779175, 0.3971273601055145, 0.43796056509017944, 0.43151092529296875, 0.2262176275253296, 0.2274954617023468, 0.23649464547634125, -0.19986945390701294, -0.2273722141981125, -0.228884756565094, 0.12914660573005676, 0.12993188202381134, 0.14116615056991577, -0.11232929676771164, -0.12981875240802765, -0.13149619102478027, -0.36239150166511536, -0.36367276310920715, -0.26277729868888855, 0.35439833998680115, 0.3643016517162323, 0.35191747546195984];
#[rustfmt::skip]
const MLP_DB2: [f32; 5] = [0.31449753046035767, 0.5033708214759827, 0.3382582664489746, 0.2333577275276184, 0.37329137325286865];
#[rustfmt::skip]
const MLP_DW3: [f32; 15] = [0.8279445171356201, 0.3574710786342621, 0.375886470079422, 0.23528580367565155, 0.446071982383728, -0.36146315932273865, -0.18735694885253906, 0.033388521522283554, 0.030591187998652458, -0.1731090396642685, -0.46648138761520386, -0.17011412978172302, -0.40927499532699585, -0.26587697863578796, -0.27296292781829834];
#[rustfmt::skip]
const MLP_DB3: [f32; 3] = [0.6422956585884094, -0.17231398820877075, -0.46998167037963867];
#[rustfmt::skip]
const ACT_LOSS: f32 = 33.94403839111328;
#[rustfmt::skip]
const ACT_OUT: [f32; 8] = [5.507175445556641, 13.88668155670166, 6.791416168212891, 0.03174658864736557, 0.7470643520355225, 0.010019877925515175, 0.05631197988986969, 5.919816493988037];
#[rustfmt::skip]
const ACT_DW: [f32; 16] = [2.520418167114258, 6.46291971206665, 5.514411926269531, 0.3927076756954193, 7.526874542236328, 18.62654685974121, 15.630017280578613, 0.8050039410591125, 3.405744791030884, 8.456941604614258, 7.108092784881592, 0.3799815773963928, -7.81075382232666, -10.145735740661621, -4.802626132965088, 4.175014495849609];

#[test]
fn linear_output_and_gradients() {
    let mut params = Params::new();
    let fc = Linear::from_tensors(
        &mut params,
        "fc",
        scaled(vals(&[5, 4], 0.37, 0.1), 0.5),
        Some(scaled(vals(&[5], 1.1, 0.3), 0.1)),
    )
    .unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = tape.leaf(vals(&[3, 4], 0.7, 0.2));
    let y = fc.forward(x, &mut Ctx::train(&bound));
    let loss = y.mul(tape.constant(vals(&[3, 5], 0.9, -0.4))).sum_all();
    let grads = tape.backward(loss);
    let param_grads = bound.grads(&grads);
    assert_close("y", y.value().as_slice(), &LIN_Y, 1e-5, 1e-6);
    assert_close("dW", param_grads.get(fc.weight()).as_slice(), &LIN_DW, 1e-5, 1e-6);
    assert_close("db", param_grads.get(fc.bias().unwrap()).as_slice(), &LIN_DB, 1e-5, 1e-6);
    assert_close("dx", grads.wrt(x).as_slice(), &LIN_DX, 1e-5, 1e-6);
}

#[test]
fn mlp_with_tanh_leaky_relu_and_cross_entropy() {
    let mut params = Params::new();
    let layer = |params: &mut Params, name: &str, w, b| {
        Linear::from_tensors(params, name, w, Some(b)).unwrap()
    };
    let fc1 =
        layer(&mut params, "fc1", vals(&[6, 3], 0.31, 0.5), scaled(vals(&[6], 0.8, 0.1), 0.2));
    let fc2 =
        layer(&mut params, "fc2", vals(&[5, 6], 0.23, -0.7), scaled(vals(&[5], 0.6, 0.9), 0.2));
    let fc3 =
        layer(&mut params, "fc3", vals(&[3, 5], 0.47, 0.33), scaled(vals(&[3], 1.7, -0.2), 0.2));
    let ids = [fc1.params(), fc2.params(), fc3.params()].concat();
    let net = Sequential::new()
        .push(fc1)
        .push(Tanh)
        .push(fc2)
        .push(LeakyRelu { negative_slope: 0.1 })
        .push(fc3);
    assert_eq!(net.params(), ids);

    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = tape.constant(scaled(vals(&[4, 3], 0.55, 0.0), 2.0));
    let logits = net.forward(x, &mut Ctx::train(&bound));
    let loss = losses::cross_entropy(logits, &[0, 2, 1, 2]);
    assert!((loss.value().item() - MLP_LOSS).abs() < 1e-5, "loss {}", loss.value().item());
    let grads = bound.grads(&tape.backward(loss));
    let expected: [&[f32]; 6] = [&MLP_DW1, &MLP_DB1, &MLP_DW2, &MLP_DB2, &MLP_DW3, &MLP_DB3];
    for (id, want) in ids.iter().zip(expected) {
        assert_close(params.name(*id), grads.get(*id).as_slice(), want, 1e-4, 1e-6);
    }
}

#[test]
fn sigmoid_softplus_relu_with_mse() {
    let mut params = Params::new();
    let w = params.add("w", vals(&[4, 4], 0.29, 0.0)).unwrap();
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let x = tape.constant(scaled(vals(&[2, 4], 0.9, 0.4), 3.0));
    let z = x.linear(bound.var(w), None);
    use tapestry_nn::functional::{relu, sigmoid, softplus};
    let out = sigmoid(z).add(softplus(z)).add(relu(z));
    let loss = losses::mse_loss(out, tape.constant(vals(&[2, 4], 0.5, 1.0)));
    assert_close("out", out.value().as_slice(), &ACT_OUT, 1e-5, 1e-6);
    assert!((loss.value().item() - ACT_LOSS).abs() < 1e-4 * ACT_LOSS);
    let grads = bound.grads(&tape.backward(loss));
    assert_close("dW", grads.get(w).as_slice(), &ACT_DW, 1e-5, 1e-5);
}
