//! The lab end to end: memory comes back when runs are removed, and checkpoints move
//! between the app and the command line (`nnlab eval`, `nnlab train --resume`, `nnlab
//! export`) exactly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use nnlab::app::data::DataChoice;
use nnlab::app::files::Format;
use nnlab::app::run::{Run, RunSettings};
use nnlab::app::views::Tab;
use nnlab::app::{Launch, NnlabApp, wgpu_configuration};
use nnlab::data::Bundled;

fn harness(launch: Launch) -> Harness<'static, NnlabApp> {
    let setup = wgpu_configuration().wgpu_setup;
    let h = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .wgpu_setup(setup)
        .build_eframe(move |cc| NnlabApp::new(cc, launch));
    assert!(h.state().gpu_error.is_none(), "{:?}", h.state().gpu_error);
    h
}

fn run_until(
    h: &mut Harness<'_, NnlabApp>,
    secs: u64,
    what: &str,
    done: impl Fn(&NnlabApp) -> bool,
) {
    let t0 = Instant::now();
    while !done(h.state()) {
        let errors: Vec<_> = runs(h.state())
            .iter()
            .filter_map(|r| r.error.clone())
            .collect();
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what} ({:?} {errors:?})",
            h.state().error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn runs(app: &NnlabApp) -> &[Run] {
    app.lab().map_or(&[], |l| l.runs.as_slice())
}

fn by_id(app: &NnlabApp, id: u64) -> &Run {
    app.lab().and_then(|l| l.get(id)).expect("the run")
}

/// Submits `n` steps of run `id` one at a time and waits for their results.
fn steps(h: &mut Harness<'_, NnlabApp>, id: u64, n: u64) {
    let want = by_id(h.state(), id).steps() + n;
    while by_id(h.state(), id).steps() < want {
        let r = h
            .state_mut()
            .lab
            .as_mut()
            .and_then(|l| l.get_mut(id))
            .expect("run");
        if r.can_step() {
            r.submit(0.0, 1).expect("step");
        }
        h.step();
    }
    run_until(h, 300, "the steps' results", |a| {
        let r = by_id(a, id);
        r.steps_back() >= want && !r.busy()
    });
}

fn pool_bytes(app: &NnlabApp) -> u64 {
    app.gpu().expect("gpu").pool_stats().allocated_bytes
}

/// Shows run `id` in the feature maps (or, for a GAN, its samples) and waits until the
/// pictures are registered with egui.
fn show(h: &mut Harness<'_, NnlabApp>, id: u64) {
    let gan = by_id(h.state(), id).is_gan();
    h.state_mut().selected = Some(id);
    h.state_mut().tab = if gan { Tab::Gan } else { Tab::Curves };
    let key = if gan {
        format!("run{id}/gan:samples")
    } else {
        format!("run{id}/filters")
    };
    run_until(h, 120, "the run's pictures", |a| a.pictures.has(&key));
}

#[test]
fn twenty_runs_added_and_removed_give_their_memory_back() {
    let small = DataChoice::Bundled {
        set: Bundled::Mnist,
        limit: Some(64),
    };
    let mut h = harness(Launch {
        runs: vec!["mnist-cnn".into()],
        batch: Some(16),
        val_every: Some(0),
        ..Launch::default()
    });
    let first = runs(h.state())[0].id;
    steps(&mut h, first, 2);
    show(&mut h, first);
    let (bytes0, pics0) = (pool_bytes(h.state()), h.state().pictures.len());
    let models = [
        "resnet8",
        "googlenet-small",
        "dcgan",
        "resnet8-plain",
        "mnist-cnn",
    ];
    let mut peak = bytes0;
    for i in 0..20 {
        let mut s = RunSettings::for_model(models[i % models.len()]);
        s.batch = [8, 16, 32][i % 3];
        s.data = small.clone();
        s.val_every = 0;
        let id = h
            .state_mut()
            .lab
            .as_mut()
            .expect("lab")
            .add(s)
            .expect("a run");
        steps(&mut h, id, 2);
        show(&mut h, id);
        peak = peak.max(pool_bytes(h.state()));
        h.state_mut().remove_run(id);
        h.step();
    }
    assert_eq!(runs(h.state()).len(), 1);
    // The first run trains on and is shown again: its own working set comes back.
    show(&mut h, first);
    steps(&mut h, first, 2);
    show(&mut h, first);
    h.step();
    let (bytes1, pics1) = (pool_bytes(h.state()), h.state().pictures.len());
    println!(
        "pool {bytes0} -> {bytes1} bytes (peak {peak}), pictures {pics0} -> {pics1}, \
         datasets held {}",
        h.state().lab().map_or(0, |l| l.datasets())
    );
    assert!(
        peak > bytes0 * 2,
        "the other runs should have needed more memory"
    );
    assert!(
        bytes1 as f64 <= bytes0 as f64 * 1.1,
        "pool grew from {bytes0} to {bytes1} bytes"
    );
    assert!(
        pics1 as f64 <= pics0 as f64 * 1.1,
        "registered pictures grew from {pics0} to {pics1}"
    );
    // Removed runs' data is released too: only the first run's set is held.
    assert_eq!(h.state().lab().map(|l| l.datasets()), Some(1));
}

fn nnlab(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args(args)
        .output()
        .expect("run nnlab");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nnlab {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnlab-lab-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn an_app_checkpoint_evaluates_on_the_command_line_to_the_accuracy_the_app_showed() {
    let mut h = harness(Launch {
        runs: vec!["mnist-cnn".into()],
        batch: Some(32),
        val_every: Some(0),
        ..Launch::default()
    });
    let id = runs(h.state())[0].id;
    steps(&mut h, id, 4);
    h.state_mut()
        .lab
        .as_mut()
        .and_then(|l| l.get_mut(id))
        .expect("run")
        .start_validation()
        .expect("validation");
    run_until(&mut h, 120, "the validation", |a| {
        !by_id(a, id).history.val_acc.is_empty()
    });
    let shown = by_id(h.state(), id)
        .history
        .val_acc
        .last()
        .expect("val acc");
    let dir = tmp("eval");
    let path = dir.join("app.safetensors");
    let app = h.state_mut();
    let lab = app.lab.as_ref().expect("lab");
    app.files
        .save_to(lab, id, path.clone(), Format::Checkpoint)
        .expect("save");
    run_until(&mut h, 60, "the checkpoint", |a| !a.files.saving());
    assert!(
        h.state()
            .files
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("saved")),
        "{:?}",
        h.state().files.message
    );
    let out = nnlab(&[
        "eval",
        "--checkpoint",
        s(&path),
        "--data",
        "mnist",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("eval JSON");
    assert_eq!(v["images"], 1000);
    let acc = v["accuracy"].as_f64().expect("accuracy");
    println!("app {shown}, nnlab eval {acc}");
    assert!(
        (acc - f64::from(shown)).abs() < 1e-6,
        "app {shown}, eval {acc}"
    );
    // The app's ONNX export of the run is the command line's export of its checkpoint.
    let app_onnx = dir.join("app.onnx");
    let app = h.state_mut();
    let lab = app.lab.as_ref().expect("lab");
    app.files
        .save_to(lab, id, app_onnx.clone(), Format::Onnx)
        .expect("export");
    run_until(&mut h, 60, "the ONNX export", |a| !a.files.saving());
    let cli_onnx = dir.join("cli.onnx");
    nnlab(&["export", "--checkpoint", s(&path), "--onnx", s(&cli_onnx)]);
    let (a, b) = (
        std::fs::read(&app_onnx).expect("the app's ONNX file"),
        std::fs::read(&cli_onnx).expect("the CLI's ONNX file"),
    );
    assert!(a.len() > 80_000, "{} bytes", a.len());
    assert!(a == b, "the app's export differs from the CLI's");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_cli_checkpoint_continues_in_the_app_as_the_cli_continues() {
    let dir = tmp("resume");
    let ck = dir.join("ck");
    let metrics = dir.join("m.json");
    let base = [
        "train",
        "--data",
        "mnist",
        "--limit",
        "96",
        "--checkpoint-dir",
        s(&ck),
        "--metrics",
        s(&metrics),
    ];
    nnlab(
        &[
            &base[..],
            &["--epochs", "1", "--batch-size", "16", "--seed", "3"],
        ]
        .concat(),
    );
    let bytes = std::fs::read(ck.join("last.safetensors")).expect("checkpoint");
    // The command line goes on for a second epoch (6 steps of 16 images)...
    nnlab(&[&base[..], &["--epochs", "2", "--resume"]].concat());
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).expect("metrics")).expect("json");
    let cli_loss = rows[1]["train_loss"].as_f64().expect("epoch 2 loss");

    // ... and so does the app, from the epoch-1 checkpoint.
    let mut h = harness(Launch {
        runs: vec![],
        ..Launch::default()
    });
    h.state_mut().load_checkpoint("last.safetensors", &bytes);
    assert!(h.state().error.is_none(), "{:?}", h.state().error);
    let id = h.state().selected.expect("the loaded run is selected");
    let r = by_id(h.state(), id);
    assert_eq!(r.steps(), 6);
    assert_eq!(r.settings.batch, 16);
    assert_eq!(r.settings.seed, 3);
    assert_eq!(r.data.train.len(), 96);
    steps(&mut h, id, 6);
    let pts = by_id(h.state(), id).history.train_loss.points().to_vec();
    assert_eq!(
        pts.iter().map(|p| p.step).collect::<Vec<_>>(),
        (7..=12).collect::<Vec<_>>()
    );
    let app_loss = pts.iter().map(|p| f64::from(p.value)).sum::<f64>() / 6.0;
    println!("epoch 2 loss: nnlab train {cli_loss}, app {app_loss}");
    assert!(
        (app_loss - cli_loss).abs() < 1e-6,
        "the app continued differently: {app_loss} vs {cli_loss}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
