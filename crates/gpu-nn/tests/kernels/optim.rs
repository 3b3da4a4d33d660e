use gpu_nn::optim::cpu::{self, AdamState};
use gpu_nn::optim::{
    Adam, AdamConfig, CosineAnnealingLr, HostEntry, Optimizer, Sgd, SgdConfig, StepLr,
};
use gpu_nn::{Gpu, Grads, Tensor};

use crate::common::*;

// Parameters lie in +-[0.5, 1.5] and updates are a few percent of them, so the final
// p + (-lr) * d has no cancellation: GPU and CPU differ only by FMA contraction and sqrt
// rounding, a few ulp. Hence rtol 1e-6 (about 8 ulp) with atol 0 for parameters. Optimizer
// state (moments, momentum buffers) can cancel (m + w * (g - m)), so it also gets an atol of
// 1e-7, about one ulp at the state's magnitude.
const RTOL: f32 = 1e-6;

const SHAPES: [&[usize]; 3] = [&[3, 5], &[7], &[2, 3, 3]];

fn init_params(gpu: &Gpu, seed: u64) -> (Vec<Vec<f32>>, Vec<Tensor>) {
    let mut rng = Rng::new(seed);
    let vals: Vec<Vec<f32>> = SHAPES
        .iter()
        .map(|s| rng.vec_away_from_zero(s.iter().product(), 0.5))
        .collect();
    let ts = vals
        .iter()
        .zip(SHAPES)
        .map(|(v, s)| Tensor::parameter(gpu, v, s).expect("param"))
        .collect();
    (vals, ts)
}

/// Gradients for `step` (the same on every run): nonzero, |g| >= 0.1.
fn grad_values(step: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(100 + step);
    SHAPES
        .iter()
        .map(|s| rng.vec_away_from_zero(s.iter().product(), 0.1))
        .collect()
}

/// A `Grads` holding exactly `g[k]` for each `(param, g)` (backward of a scale by 1.0).
fn grads_of(pairs: &[(&Tensor, &[f32])]) -> Grads {
    let mut all = Grads::default();
    for (p, g) in pairs {
        let y = p.scale(1.0).expect("scale");
        let r = Tensor::from_slice(p.gpu(), g, p.shape()).expect("upload");
        all.accumulate(y.backward_with(&r).expect("backward"))
            .expect("accumulate");
    }
    all
}

fn all_grads(ts: &[Tensor], step: u64) -> (Vec<Vec<f32>>, Grads) {
    let g = grad_values(step);
    let pairs: Vec<(&Tensor, &[f32])> = ts.iter().zip(&g).map(|(t, v)| (t, v.as_slice())).collect();
    let grads = grads_of(&pairs);
    (g, grads)
}

fn host(state: Vec<(String, Tensor)>) -> Vec<HostEntry> {
    state
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), read(&t)))
        .collect()
}

fn entry<'a>(state: &'a [HostEntry], name: &str) -> &'a [f32] {
    &state
        .iter()
        .find(|e| e.0 == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
        .2
}

#[test]
fn sgd_matches_cpu_for_three_steps() {
    let configs = [
        (
            "plain",
            SgdConfig {
                lr: 0.05,
                ..SgdConfig::default()
            },
        ),
        (
            "momentum+dampening+wd",
            SgdConfig {
                lr: 0.02,
                momentum: 0.9,
                dampening: 0.1,
                weight_decay: 0.01,
                nesterov: false,
            },
        ),
        (
            "nesterov+wd",
            SgdConfig {
                lr: 0.02,
                momentum: 0.8,
                dampening: 0.0,
                weight_decay: 1e-3,
                nesterov: true,
            },
        ),
    ];
    for (what, cfg) in configs {
        let (mut want, ts) = init_params(&gpu(), 31);
        let mut opt = Sgd::new(ts.clone(), cfg).expect("sgd");
        let mut bufs: Vec<Option<Vec<f32>>> = vec![None; ts.len()];
        for step in 0..3 {
            let (g, grads) = all_grads(&ts, step);
            opt.step(&grads).expect("step");
            for k in 0..ts.len() {
                cpu::sgd_step(&mut want[k], &g[k], &mut bufs[k], &cfg);
                assert_close(
                    &read(&ts[k]),
                    &want[k],
                    0.0,
                    RTOL,
                    &format!("{what} step {step} p{k}"),
                );
            }
        }
        let state = host(opt.state().expect("state"));
        for (k, b) in bufs.iter().enumerate() {
            match b {
                Some(b) => assert_close(
                    entry(&state, &format!("{k}.momentum_buffer")),
                    b,
                    1e-7,
                    RTOL,
                    &format!("{what} buf {k}"),
                ),
                None => assert!(!state.iter().any(|e| e.0.starts_with(&format!("{k}.")))),
            }
        }
        assert_eq!(entry(&state, "step"), &[3.0]);
    }
}

#[test]
fn adam_matches_cpu_for_three_steps() {
    let base = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    let configs = [
        ("adam", base),
        (
            "adam+l2",
            AdamConfig {
                weight_decay: 0.1,
                ..base
            },
        ),
        (
            "adamw",
            AdamConfig {
                weight_decay: 0.1,
                decoupled_weight_decay: true,
                ..base
            },
        ),
        // beta1 < 0.5 takes torch.lerp's other formula.
        (
            "adam beta1=0.3",
            AdamConfig {
                betas: (0.3, 0.99),
                eps: 1e-6,
                ..base
            },
        ),
    ];
    for (what, cfg) in configs {
        let (mut want, ts) = init_params(&gpu(), 32);
        let mut opt = Adam::new(ts.clone(), cfg).expect("adam");
        let mut st: Vec<AdamState> = vec![AdamState::default(); ts.len()];
        for step in 0..3 {
            let (g, grads) = all_grads(&ts, step);
            opt.step(&grads).expect("step");
            for k in 0..ts.len() {
                cpu::adam_step(&mut want[k], &g[k], &mut st[k], &cfg);
                assert_close(
                    &read(&ts[k]),
                    &want[k],
                    0.0,
                    RTOL,
                    &format!("{what} step {step} p{k}"),
                );
            }
        }
        let state = host(opt.state().expect("state"));
        for (k, s) in st.iter().enumerate() {
            let m = entry(&state, &format!("{k}.exp_avg"));
            assert_close(m, &s.exp_avg, 1e-7, RTOL, &format!("{what} exp_avg {k}"));
            let v = entry(&state, &format!("{k}.exp_avg_sq"));
            assert_close(
                v,
                &s.exp_avg_sq,
                1e-9,
                RTOL,
                &format!("{what} exp_avg_sq {k}"),
            );
            assert_eq!(entry(&state, &format!("{k}.step")), &[3.0]);
        }
    }
}

/// Values worked out by hand from torch's update rules (independent of the CPU reference).
#[test]
fn updates_match_hand_computed_values() {
    let run = |opt: &mut dyn Optimizer, p: &Tensor, steps: usize| -> Vec<f32> {
        let mut out = Vec::new();
        for _ in 0..steps {
            opt.step(&grads_of(&[(p, &[1.0])])).expect("step");
            out.push(read(p)[0]);
        }
        out
    };
    let sgd = |cfg: SgdConfig, steps| {
        let p = param(&[1.0], &[1]);
        let mut opt = Sgd::new(vec![p.clone()], cfg).expect("sgd");
        run(&mut opt, &p, steps)
    };
    let c = SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    };
    // d = 1 + 0.5 * 1 = 1.5; p = 1 - 0.15.
    assert_close(
        &sgd(
            SgdConfig {
                weight_decay: 0.5,
                ..c
            },
            1,
        ),
        &[0.85],
        0.0,
        1e-6,
        "sgd wd",
    );
    // buf 1, 1.8, 2.52 (0.9 buf + 0.9 g; no dampening on step 1); p 0.9, 0.72, 0.468.
    let m = SgdConfig {
        momentum: 0.9,
        dampening: 0.1,
        ..c
    };
    assert_close(&sgd(m, 3), &[0.9, 0.72, 0.468], 0.0, 1e-6, "sgd momentum");
    // buf 1, 1.9; d = 1 + 0.9 buf = 1.9, 2.71; p 0.81, 0.539.
    let n = SgdConfig {
        momentum: 0.9,
        nesterov: true,
        ..c
    };
    assert_close(&sgd(n, 2), &[0.81, 0.539], 0.0, 1e-6, "sgd nesterov");

    // Adam's first step is -lr * g / (|g| + eps) = -lr for g = 1 (eps 1e-8 is below f32
    // resolution here); with L2 decay g = 1.5 gives the same first step, but the second
    // gradient is 1 + 0.5 * 0.9 = 1.45: m = 0.28, v = 0.00435025, bc1 = 0.19,
    // bc2 = 0.001999, p = 0.9 - 0.1 * (0.28 / 0.19) / sqrt(0.00435025 / 0.001999)
    // = 0.80010271 (worked in f64). AdamW first scales p by 1 - lr * wd = 0.95.
    let adam = |cfg: AdamConfig| {
        let p = param(&[1.0], &[1]);
        let mut opt = Adam::new(vec![p.clone()], cfg).expect("adam");
        run(&mut opt, &p, 2)
    };
    let a = AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    };
    // Constant gradients keep m_hat = g, v_hat = g^2: every step moves by -lr.
    assert_close(&adam(a), &[0.9, 0.8], 0.0, 1e-6, "adam");
    assert_close(
        &adam(AdamConfig {
            weight_decay: 0.5,
            ..a
        }),
        &[0.9, 0.800_102_7],
        0.0,
        1e-6,
        "adam l2",
    );
    let w = AdamConfig {
        weight_decay: 0.5,
        decoupled_weight_decay: true,
        ..a
    };
    // 1 * 0.95 - 0.1 = 0.85; 0.85 * 0.95 - 0.1 = 0.7075.
    assert_close(&adam(w), &[0.85, 0.7075], 0.0, 1e-6, "adamw");
}

#[test]
fn frozen_parameters_are_never_updated() {
    let (vals, ts) = init_params(&gpu(), 33);
    let mut opt = Adam::new(
        ts.clone(),
        AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        },
    )
    .expect("adam");
    opt.set_frozen(&ts[1], true).expect("freeze");
    let (_, grads) = all_grads(&ts, 0);
    opt.step(&grads).expect("step");
    assert_eq!(read(&ts[1]), vals[1], "frozen parameter changed");
    assert_ne!(read(&ts[0]), vals[0], "unfrozen parameter did not change");
    let state = host(opt.state().expect("state"));
    assert!(
        !state.iter().any(|e| e.0.starts_with("1.")),
        "frozen parameter got state"
    );

    opt.set_frozen(&ts[1], false).expect("unfreeze");
    opt.step(&grads).expect("step");
    assert_ne!(read(&ts[1]), vals[1], "unfrozen parameter did not change");

    let stranger = param(&[1.0], &[1]);
    let e = opt
        .set_frozen(&stranger, true)
        .expect_err("not a parameter")
        .to_string();
    assert!(e.contains("not a parameter"), "{e}");
}

#[test]
fn parameters_without_gradients_are_skipped_with_one_dispatch_per_update() {
    // A device of its own: the dispatch counter is per device and other tests run in parallel.
    let gpu = fresh_gpu();
    let (vals, ts) = init_params(&gpu, 34);
    let cfg = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(ts.clone(), cfg).expect("adam");
    let g = grad_values(0);
    // Step 1: only parameters 0 and 2 have gradients.
    let grads = grads_of(&[(&ts[0], &g[0]), (&ts[2], &g[2])]);
    let before = gpu.dispatch_count();
    opt.step(&grads).expect("step");
    assert_eq!(
        gpu.dispatch_count() - before,
        2,
        "one dispatch per parameter with a gradient"
    );
    assert_eq!(read(&ts[1]), vals[1], "parameter without gradient changed");
    // Step 2: parameter 1 gets its first gradient; its bias correction uses t = 1, as in
    // torch where the step count is per parameter.
    let g2 = grad_values(1);
    let grads = grads_of(&[(&ts[1], &g2[1])]);
    let before = gpu.dispatch_count();
    opt.step(&grads).expect("step");
    assert_eq!(gpu.dispatch_count() - before, 1);
    let mut want = vals[1].clone();
    cpu::adam_step(&mut want, &g2[1], &mut AdamState::default(), &cfg);
    assert_close(
        &read(&ts[1]),
        &want,
        0.0,
        RTOL,
        "first update at optimizer step 2",
    );
    let state = host(opt.state().expect("state"));
    assert_eq!(entry(&state, "0.step"), &[1.0]);
    assert_eq!(entry(&state, "1.step"), &[1.0]);
    assert_eq!(entry(&state, "step"), &[2.0]);

    // SGD with momentum: also one dispatch each, on the first step too.
    let mut sgd = Sgd::new(
        ts.clone(),
        SgdConfig {
            momentum: 0.9,
            ..SgdConfig::default()
        },
    )
    .expect("sgd");
    let grads = grads_of(&[(&ts[0], &g[0]), (&ts[1], &g[1]), (&ts[2], &g[2])]);
    let before = gpu.dispatch_count();
    sgd.step(&grads).expect("step");
    assert_eq!(gpu.dispatch_count() - before, 3);
}

#[test]
fn state_round_trips_and_bad_state_is_refused() {
    for adam in [true, false] {
        let make = |ts: Vec<Tensor>| -> Box<dyn Optimizer> {
            if adam {
                Box::new(
                    Adam::new(
                        ts,
                        AdamConfig {
                            lr: 0.01,
                            ..AdamConfig::default()
                        },
                    )
                    .expect("adam"),
                )
            } else {
                let c = SgdConfig {
                    lr: 0.01,
                    momentum: 0.9,
                    dampening: 0.2,
                    ..SgdConfig::default()
                };
                Box::new(Sgd::new(ts, c).expect("sgd"))
            }
        };
        let (_, ts) = init_params(&gpu(), 35);
        let mut a = make(ts.clone());
        for step in 0..2 {
            a.step(&all_grads(&ts, step).1).expect("step");
        }
        let saved = host(a.state().expect("state"));
        let mut names: Vec<&str> = saved.iter().map(|e| e.0.as_str()).collect();
        names.sort_unstable();
        let want: &[&str] = if adam {
            &[
                "0.exp_avg",
                "0.exp_avg_sq",
                "0.step",
                "1.exp_avg",
                "1.exp_avg_sq",
                "1.step",
                "2.exp_avg",
                "2.exp_avg_sq",
                "2.step",
                "step",
            ]
        } else {
            &[
                "0.momentum_buffer",
                "1.momentum_buffer",
                "2.momentum_buffer",
                "step",
            ]
        };
        assert_eq!(names, want);

        // A second optimizer over copies of the parameters, restored from the host data.
        let copies: Vec<Tensor> = ts
            .iter()
            .map(|t| Tensor::parameter(&gpu(), &read(t), t.shape()).expect("copy"))
            .collect();
        let mut b = make(copies.clone());
        b.load_state(&saved).expect("load");
        assert_eq!(b.steps(), 2);
        let g = grad_values(2);
        a.step(&all_grads(&ts, 2).1).expect("step a");
        let pairs: Vec<(&Tensor, &[f32])> = copies
            .iter()
            .zip(&g)
            .map(|(t, v)| (t, v.as_slice()))
            .collect();
        b.step(&grads_of(&pairs)).expect("step b");
        for k in 0..ts.len() {
            // Same kernels on the same device and the same inputs: identical bits.
            assert_eq!(
                read(&ts[k]),
                read(&copies[k]),
                "adam={adam} param {k} after restore"
            );
        }

        // Refusals, each leaving the state as it was.
        let key = if adam { "exp_avg" } else { "momentum_buffer" };
        let mut extra = saved.clone();
        extra.push((format!("3.{key}"), vec![2, 3, 3], vec![0.0; 18]));
        let mut wrong_shape = saved.clone();
        let i = wrong_shape
            .iter()
            .position(|e| e.0 == format!("0.{key}"))
            .expect("entry");
        wrong_shape[i].1 = vec![5, 3];
        let missing_step: Vec<HostEntry> =
            saved.iter().filter(|e| e.0 != "step").cloned().collect();
        let mut unknown = saved.clone();
        unknown.push(("0.bogus".into(), vec![1], vec![0.0]));
        let mut dup = saved.clone();
        dup.push(saved[0].clone());
        let mut cases = vec![
            (extra, "parameter 3, but this optimizer has 3 parameters"),
            (wrong_shape, "has shape [5, 3], expected [3, 5]"),
            (missing_step, "'step' is missing"),
            (unknown, "unknown entry '0.bogus'"),
            (dup, "appears twice"),
        ];
        if adam {
            let incomplete: Vec<HostEntry> = saved
                .iter()
                .filter(|e| e.0 != "1.exp_avg_sq")
                .cloned()
                .collect();
            cases.push((incomplete, "parameter 1 has entries"));
        }
        for (bad, msg) in cases {
            let e = b.load_state(&bad).expect_err(msg).to_string();
            assert!(
                e.contains("load_state") && e.contains(msg),
                "want '{msg}' in: {e}"
            );
            assert_eq!(b.steps(), 3, "a refused load must not change the state");
        }
    }
}

#[test]
fn bad_configs_are_refused() {
    let p = param(&[1.0], &[1]);
    let bad_sgd = [
        SgdConfig {
            lr: -1.0,
            ..SgdConfig::default()
        },
        SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        },
        SgdConfig {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..SgdConfig::default()
        },
        SgdConfig {
            weight_decay: f32::NAN,
            ..SgdConfig::default()
        },
    ];
    for c in bad_sgd {
        assert!(Sgd::new(vec![p.clone()], c).is_err(), "{c:?}");
    }
    let bad_adam = [
        AdamConfig {
            betas: (1.0, 0.999),
            ..AdamConfig::default()
        },
        AdamConfig {
            betas: (0.9, -0.1),
            ..AdamConfig::default()
        },
        AdamConfig {
            eps: -1e-8,
            ..AdamConfig::default()
        },
    ];
    for c in bad_adam {
        assert!(Adam::new(vec![p.clone()], c).is_err(), "{c:?}");
    }
    let e = Adam::new(vec![p.clone(), p.clone()], AdamConfig::default())
        .err()
        .expect("duplicate parameter")
        .to_string();
    assert!(e.contains("more than once"), "{e}");
    let mut opt = Sgd::new(vec![p], SgdConfig::default()).expect("sgd");
    opt.set_lr(0.5);
    assert_eq!(opt.lr(), 0.5);
}

#[test]
fn lr_schedules_match_torch() {
    // torch.optim.lr_scheduler.StepLR(opt(lr=0.1), step_size=3, gamma=0.1), epochs 0..=7.
    let s = StepLr {
        step_size: 3,
        gamma: 0.1,
    };
    let got: Vec<f32> = (0..8).map(|e| s.lr(0.1, e)).collect();
    assert_close(
        &got,
        &[0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001],
        0.0,
        1e-6,
        "StepLR",
    );
    // CosineAnnealingLR(opt(lr=0.1), T_max=10, eta_min=0.001), closed form
    // 0.001 + 0.099 * (1 + cos(pi * e / 10)) / 2: e=2 -> cos(0.2 pi) = 0.80901699.
    let c = CosineAnnealingLr {
        t_max: 10,
        eta_min: 0.001,
    };
    let got: Vec<f32> = [0, 2, 5, 10, 15].iter().map(|&e| c.lr(0.1, e)).collect();
    let want = [0.1, 0.090_546_34, 0.0505, 0.001, 0.0505];
    assert_close(&got, &want, 0.0, 1e-6, "CosineAnnealingLR");
}

#[test]
fn sgd_momentum_can_change_between_steps() {
    // The app's momentum slider: 0.9, then 0.5, then 0 (plain SGD), as torch does when
    // param_groups[0]["momentum"] is edited between steps.
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let (mut want, ts) = init_params(&gpu(), 47);
    let mut opt = Sgd::new(ts.clone(), cfg).expect("sgd");
    let mut bufs: Vec<Option<Vec<f32>>> = vec![None; ts.len()];
    for (step, m) in [0.9f32, 0.5, 0.0].into_iter().enumerate() {
        opt.set_momentum(m).expect("valid momentum");
        assert_eq!(opt.config().momentum, m);
        let c = SgdConfig { momentum: m, ..cfg };
        let (g, grads) = all_grads(&ts, step as u64);
        opt.step(&grads).expect("step");
        for k in 0..ts.len() {
            cpu::sgd_step(&mut want[k], &g[k], &mut bufs[k], &c);
            assert_close(
                &read(&ts[k]),
                &want[k],
                0.0,
                RTOL,
                &format!("momentum {m} p{k}"),
            );
        }
    }
    assert!(opt.set_momentum(-0.1).is_err());
    assert!(opt.set_momentum(f32::NAN).is_err());
    assert_eq!(
        opt.config().momentum,
        0.0,
        "a refused value changed the momentum"
    );
    let mut nesterov = Sgd::new(
        ts,
        SgdConfig {
            momentum: 0.9,
            nesterov: true,
            ..cfg
        },
    )
    .expect("sgd");
    assert!(nesterov.set_momentum(0.0).is_err());
}
