//! Optimizer updates against PyTorch 1.13 over several steps.
//!
//! The expected values come from this script (`/usr/bin/python3`, torch 1.13); each row is
//! `(lr used for the step, parameter after the step)`:
//!
//! ```python
//! import torch
//! def f32s(t): return ", ".join(repr(float(v)) for v in t.detach().reshape(-1).tolist())
//! P0 = torch.tensor([[0.5, -1.0, 2.0], [0.25, 3.0, -0.75]])
//! def grad(p, k):
//!     # g = p * c_k + d_k, elementwise, in f32
//!     i = torch.arange(6, dtype=torch.float64).reshape(2, 3)
//!     c = torch.cos(0.5 * i + 0.3 * k).float()
//!     d = torch.sin(1.3 * i + 0.7 * k).float()
//!     return p.detach() * c + d
//! def run(name, make_opt, steps=5, sched=None):
//!     p = torch.nn.Parameter(P0.clone())
//!     opt = make_opt([p])
//!     s = sched(opt) if sched else None
//!     print(f"// {name}")
//!     for k in range(steps):
//!         lr = opt.param_groups[0]["lr"]
//!         p.grad = grad(p, k)
//!         opt.step()
//!         if s: s.step()
//!         print(f"    ({lr!r}, [{f32s(p)}]),")
//! run("sgd_nesterov", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
//! run("sgd_dampening", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.1))
//! run("adam", lambda ps: torch.optim.Adam(ps, lr=0.01, foreach=False))
//! run("adam_l2", lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, foreach=False))
//! run("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, foreach=False))
//! from torch.optim.lr_scheduler import LinearLR, CosineAnnealingLR, SequentialLR, StepLR
//! run("sgd_warmup_cosine", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), steps=10,
//!     sched=lambda o: SequentialLR(o, [LinearLR(o, start_factor=0.1, total_iters=3),
//!                                      CosineAnnealingLR(o, T_max=5, eta_min=0.001)], milestones=[3]))
//! run("adam_step_lr", lambda ps: torch.optim.Adam(ps, lr=0.01, foreach=False), steps=7,
//!     sched=lambda o: StepLR(o, step_size=3, gamma=0.5))
//! ```

// The values are pasted verbatim from the script's output.
#![allow(clippy::excessive_precision)]

mod common;

use tapestry_autodiff::Tensor;
use tapestry_nn::optim::{
    Adam, AdamConfig, AdamW, Cosine, LrSchedule, Optimizer, Sgd, SgdConfig, StepDecay, Warmup,
};
use tapestry_nn::{ParamGrads, Params};

use common::assert_close;

const P0: [f32; 6] = [0.5, -1.0, 2.0, 0.25, 3.0, -0.75];

/// The golden script's gradient: `g = p * c_k + d_k` in f32.
fn grad(p: &Tensor, k: usize) -> Tensor {
    let g = p
        .as_slice()
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let c = (0.5 * i as f64 + 0.3 * k as f64).cos() as f32;
            let d = (1.3 * i as f64 + 0.7 * k as f64).sin() as f32;
            p * c + d
        })
        .collect();
    Tensor::from_vec(p.shape(), g).unwrap()
}

/// Runs `opt` from P0 with an optional schedule, checking the lr and the parameter after every
/// step against `expected`.
fn check(
    name: &str,
    opt: &mut dyn Optimizer,
    schedule: Option<&dyn LrSchedule>,
    expected: &[(f64, [f32; 6])],
) {
    let mut params = Params::new();
    let id = params.add("p", Tensor::from_vec(&[2, 3], P0.to_vec()).unwrap()).unwrap();
    for (k, (lr, after)) in expected.iter().enumerate() {
        if let Some(s) = schedule {
            opt.set_lr(s.lr(opt.steps()));
        }
        assert!(
            (opt.lr() - lr).abs() <= 1e-9 * lr.abs(),
            "{name} step {k}: lr {} vs {lr}",
            opt.lr()
        );
        let mut grads = ParamGrads::zeros(&params);
        grads.set(id, grad(params.get(id), k)).unwrap();
        opt.step(&mut params, &grads);
        assert_close(&format!("{name} step {k}"), params.get(id).as_slice(), after, 2e-6, 1e-6);
    }
    assert_eq!(opt.steps(), expected.len() as u64);
}

#[test]
fn sgd_momentum_nesterov_weight_decay() {
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
        ..Default::default()
    };
    check(
        "sgd_nesterov",
        &mut Sgd::with_config(config).unwrap(),
        None,
        &[
            (
                0.1,
                [
                    0.40404999256134033,
                    -1.0144354104995728,
                    1.6929398775100708,
                    0.3768405616283417,
                    3.399360179901123,
                    -0.9036107659339905,
                ],
            ),
            (
                0.1,
                [
                    0.16663524508476257,
                    -1.0571433305740356,
                    1.5027470588684082,
                    0.6352675557136536,
                    4.0645246505737305,
                    -1.2799439430236816,
                ],
            ),
            (
                0.1,
                [
                    -0.16763721406459808,
                    -1.066351056098938,
                    1.5089318752288818,
                    0.9889122843742371,
                    5.023566246032715,
                    -1.9017467498779297,
                ],
            ),
            (
                0.1,
                [
                    -0.5111566185951233,
                    -0.995266318321228,
                    1.723593831062317,
                    1.3937574625015259,
                    6.360574245452881,
                    -2.7427783012390137,
                ],
            ),
            (
                0.1,
                [
                    -0.7796489596366882,
                    -0.8385614156723022,
                    2.1205248832702637,
                    1.828072428703308,
                    8.212336540222168,
                    -3.7302515506744385,
                ],
            ),
        ],
    );
}

#[test]
fn sgd_momentum_dampening() {
    let config = SgdConfig { lr: 0.05, momentum: 0.8, dampening: 0.1, ..Default::default() };
    check(
        "sgd_dampening",
        &mut Sgd::with_config(config).unwrap(),
        None,
        &[
            (
                0.05,
                [
                    0.4749999940395355,
                    -1.0042988061904907,
                    1.9201947450637817,
                    0.28350409865379333,
                    3.1065948009490967,
                    -0.7907989025115967,
                ],
            ),
            (
                0.05,
                [
                    0.40558987855911255,
                    -1.0171695947647095,
                    1.8403347730636597,
                    0.3579220473766327,
                    3.3018383979797363,
                    -0.8926829695701599,
                ],
            ),
            (
                0.05,
                [
                    0.29065290093421936,
                    -1.0259361267089844,
                    1.8129210472106934,
                    0.46303972601890564,
                    3.5713326930999756,
                    -1.0592786073684692,
                ],
            ),
            (
                0.05,
                [
                    0.15172863006591797,
                    -1.0136030912399292,
                    1.8623610734939575,
                    0.5750725269317627,
                    3.9047012329101562,
                    -1.2716878652572632,
                ],
            ),
            (
                0.05,
                [
                    0.023040639236569405,
                    -0.9727910161018372,
                    1.986007571220398,
                    0.6698763370513916,
                    4.302286624908447,
                    -1.4957489967346191,
                ],
            ),
        ],
    );
}

#[test]
fn adam_defaults() {
    check(
        "adam",
        &mut Adam::new(0.01),
        None,
        &[
            (
                0.01,
                [
                    0.49000000953674316,
                    -1.0099999904632568,
                    1.9900000095367432,
                    0.25999999046325684,
                    3.009999990463257,
                    -0.7599999904632568,
                ],
            ),
            (
                0.01,
                [
                    0.48046621680259705,
                    -1.0194495916366577,
                    1.9817758798599243,
                    0.2698751389980316,
                    3.0200135707855225,
                    -0.7697318196296692,
                ],
            ),
            (
                0.01,
                [
                    0.4708005487918854,
                    -1.0256727933883667,
                    1.978928804397583,
                    0.27982234954833984,
                    3.030024766921997,
                    -0.7795549631118774,
                ],
            ),
            (
                0.01,
                [
                    0.46100518107414246,
                    -1.022892951965332,
                    1.9810724258422852,
                    0.2893194556236267,
                    3.0399956703186035,
                    -0.7894473671913147,
                ],
            ),
            (
                0.01,
                [
                    0.4517105519771576,
                    -1.0170822143554688,
                    1.985875129699707,
                    0.29684481024742126,
                    3.0499324798583984,
                    -0.7989590167999268,
                ],
            ),
        ],
    );
}

#[test]
fn adam_l2_betas_eps() {
    let config = AdamConfig { lr: 0.02, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.1 };
    check(
        "adam_l2",
        &mut Adam::with_config(config).unwrap(),
        None,
        &[
            (
                0.02,
                [
                    0.4800000488758087,
                    -0.9800014495849609,
                    1.9800000190734863,
                    0.26999998092651367,
                    3.0199999809265137,
                    -0.7699999809265137,
                ],
            ),
            (
                0.02,
                [
                    0.4604327082633972,
                    -0.9942235946655273,
                    1.963231086730957,
                    0.289969801902771,
                    3.0400948524475098,
                    -0.7896926403045654,
                ],
            ),
            (
                0.02,
                [
                    0.4404486119747162,
                    -0.991908073425293,
                    1.9561346769332886,
                    0.3100782334804535,
                    3.0601701736450195,
                    -0.8097600340843201,
                ],
            ),
            (
                0.02,
                [
                    0.4203472137451172,
                    -0.978600800037384,
                    1.9597176313400269,
                    0.32878047227859497,
                    3.0800704956054688,
                    -0.8298887610435486,
                ],
            ),
            (
                0.02,
                [
                    0.4018913507461548,
                    -0.9618044495582581,
                    1.969681978225708,
                    0.342292457818985,
                    3.0998356342315674,
                    -0.8486484885215759,
                ],
            ),
        ],
    );
}

#[test]
fn adamw_decoupled_decay() {
    let config = AdamConfig { lr: 0.01, weight_decay: 0.1, ..AdamConfig::adamw() };
    check(
        "adamw",
        &mut AdamW::with_config(config).unwrap(),
        None,
        &[
            (
                0.01,
                [
                    0.4895000159740448,
                    -1.0090000629425049,
                    1.9880000352859497,
                    0.25975000858306885,
                    3.006999969482422,
                    -0.7592499852180481,
                ],
            ),
            (
                0.01,
                [
                    0.4794762134552002,
                    -1.0174367427825928,
                    1.9777897596359253,
                    0.26936545968055725,
                    3.0140066146850586,
                    -0.7682230472564697,
                ],
            ),
            (
                0.01,
                [
                    0.46933066844940186,
                    -1.022672414779663,
                    1.9729658365249634,
                    0.2790433168411255,
                    3.021003246307373,
                    -0.777278482913971,
                ],
            ),
            (
                0.01,
                [
                    0.4590657949447632,
                    -1.0188913345336914,
                    1.9731340408325195,
                    0.28826043009757996,
                    3.0279510021209717,
                    -0.7863936424255371,
                ],
            ),
            (
                0.01,
                [
                    0.44931259751319885,
                    -1.0120713710784912,
                    1.975959062576294,
                    0.29549309611320496,
                    3.034856081008911,
                    -0.7951170802116394,
                ],
            ),
        ],
    );
}

#[test]
fn sgd_with_warmup_then_cosine() {
    let config = SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() };
    let schedule = Warmup::new(3, 0.1, Cosine::new(0.1, 5, 0.001));
    check(
        "sgd_warmup_cosine",
        &mut Sgd::with_config(config).unwrap(),
        Some(&schedule),
        &[
            (
                0.010000000000000002,
                [
                    0.4950000047683716,
                    -1.0008597373962402,
                    1.9840389490127563,
                    0.2567008137702942,
                    3.0213189125061035,
                    -0.7581597566604614,
                ],
            ),
            (
                0.04,
                [
                    0.4323156177997589,
                    -1.012434482574463,
                    1.911659836769104,
                    0.3229043185710907,
                    3.1935434341430664,
                    -0.8478558659553528,
                ],
            ),
            (
                0.07,
                [
                    0.239629864692688,
                    -1.0284348726272583,
                    1.854546308517456,
                    0.49684473872184753,
                    3.634545087814331,
                    -1.118351697921753,
                ],
            ),
            (
                0.1,
                [
                    -0.10932553559541702,
                    -1.0059726238250732,
                    1.9410624504089355,
                    0.7850610017776489,
                    4.46940279006958,
                    -1.6476938724517822,
                ],
            ),
            (
                0.0905463412215599,
                [
                    -0.4204401969909668,
                    -0.9253118634223938,
                    2.184969663619995,
                    1.0475411415100098,
                    5.464157581329346,
                    -2.216862916946411,
                ],
            ),
            (
                0.06579634122155989,
                [
                    -0.598870038986206,
                    -0.8323521614074707,
                    2.4716436862945557,
                    1.2283042669296265,
                    6.40777587890625,
                    -2.6486425399780273,
                ],
            ),
            (
                0.035203658778440096,
                [
                    -0.6588976979255676,
                    -0.7822742462158203,
                    2.67427659034729,
                    1.3239039182662964,
                    7.0397138595581055,
                    -2.8602540493011475,
                ],
            ),
            (
                0.010453658778440105,
                [
                    -0.6681473851203918,
                    -0.7750294804573059,
                    2.7465572357177734,
                    1.355749487876892,
                    7.257437229156494,
                    -2.910551071166992,
                ],
            ),
            (
                0.001,
                [
                    -0.6688051223754883,
                    -0.7757366895675659,
                    2.7544949054718018,
                    1.3595505952835083,
                    7.279393196105957,
                    -2.913888931274414,
                ],
            ),
            (
                0.010453658778440102,
                [
                    -0.6814901232719421,
                    -0.8006042838096619,
                    2.8483572006225586,
                    1.4095960855484009,
                    7.496057510375977,
                    -2.9334404468536377,
                ],
            ),
        ],
    );
}

#[test]
fn adam_with_step_decay() {
    let schedule = StepDecay::new(0.01, 3, 0.5);
    check(
        "adam_step_lr",
        &mut Adam::new(0.01),
        Some(&schedule),
        &[
            (
                0.01,
                [
                    0.49000000953674316,
                    -1.0099999904632568,
                    1.9900000095367432,
                    0.25999999046325684,
                    3.009999990463257,
                    -0.7599999904632568,
                ],
            ),
            (
                0.01,
                [
                    0.48046621680259705,
                    -1.0194495916366577,
                    1.9817758798599243,
                    0.2698751389980316,
                    3.0200135707855225,
                    -0.7697318196296692,
                ],
            ),
            (
                0.01,
                [
                    0.4708005487918854,
                    -1.0256727933883667,
                    1.978928804397583,
                    0.27982234954833984,
                    3.030024766921997,
                    -0.7795549631118774,
                ],
            ),
            (
                0.005,
                [
                    0.4659028649330139,
                    -1.0242829322814941,
                    1.980000615119934,
                    0.2845709025859833,
                    3.0350100994110107,
                    -0.7845011949539185,
                ],
            ),
            (
                0.005,
                [
                    0.46125420928001404,
                    -1.0213775634765625,
                    1.982401728630066,
                    0.2883256673812866,
                    3.039977788925171,
                    -0.7892549633979797,
                ],
            ),
            (
                0.005,
                [
                    0.457656592130661,
                    -1.0178390741348267,
                    1.9854888916015625,
                    0.2904539108276367,
                    3.044952154159546,
                    -0.793327271938324,
                ],
            ),
            (
                0.0025,
                [
                    0.4567185342311859,
                    -1.0162603855133057,
                    1.9872007369995117,
                    0.2908637523651123,
                    3.0474514961242676,
                    -0.7948005795478821,
                ],
            ),
        ],
    );
}

#[test]
fn invalid_configurations_are_rejected() {
    let nesterov_without_momentum = SgdConfig { nesterov: true, ..Default::default() };
    assert!(Sgd::with_config(nesterov_without_momentum).is_err());
    assert!(Adam::with_config(AdamConfig { beta1: 1.0, ..AdamConfig::adam() }).is_err());
    assert!(AdamW::with_config(AdamConfig { lr: f64::NAN, ..AdamConfig::adamw() }).is_err());
}
