//! The app's UI logic under egui_kittest, rendered with wgpu (lavapipe on machines without a
//! GPU): the engine runs on the harness's wgpu device, as it does on eframe's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use nnlab::app::session::ModelKind;
use nnlab::app::{Launch, NnlabApp, wgpu_configuration};

/// A dropped file with bytes in memory (what the native integration reads from disk).
#[derive(Debug)]
struct MemFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl egui::DroppedFile for MemFile {
    fn path(&self) -> &Path {
        &self.path
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        Ok(self.bytes.clone())
    }
}

fn harness(batch: usize) -> Harness<'static, NnlabApp> {
    harness_with(Launch {
        model: Some(ModelKind::MnistCnn),
        batch: Some(batch),
        ..Launch::default()
    })
}

fn harness_with(launch: Launch) -> Harness<'static, NnlabApp> {
    let setup = wgpu_configuration().wgpu_setup;
    let h = Harness::builder()
        .with_size(egui::vec2(1100.0, 760.0))
        .wgpu_setup(setup)
        .build_eframe(move |cc| NnlabApp::new(cc, launch));
    assert!(
        h.state().gpu_error.is_none(),
        "no engine: {:?}",
        h.state().gpu_error
    );
    assert!(
        h.state().session.is_some(),
        "no session: {:?}",
        h.state().error
    );
    h
}

/// Runs frames until `done` holds; fails the test after `secs` seconds.
fn run_until(
    h: &mut Harness<'_, NnlabApp>,
    secs: u64,
    what: &str,
    done: impl Fn(&NnlabApp) -> bool,
) {
    let t0 = Instant::now();
    while !done(h.state()) {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what} (error: {:?})",
            h.state().error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn train_points(app: &NnlabApp) -> usize {
    app.session
        .as_ref()
        .map_or(0, |s| s.history.train_loss.len())
}

#[test]
fn start_grows_the_curve_and_pause_stops_it() {
    let mut h = harness(16);
    assert_eq!(train_points(h.state()), 0);
    h.get_by_label("Start").click();
    h.step();
    assert!(h.state().running, "Start did not start training");
    run_until(&mut h, 120, "5 loss points", |a| train_points(a) >= 5);
    let s = h.state().session.as_ref().expect("session");
    assert!(
        s.history
            .train_loss
            .iter()
            .all(|p| p[1].is_finite() && p[1] > 0.0)
    );
    // Points arrive in step order, one per step.
    let steps: Vec<f64> = s.history.train_loss.iter().map(|p| p[0]).collect();
    assert!(steps.windows(2).all(|w| w[1] == w[0] + 1.0), "{steps:?}");
    h.get_by_label("Pause").click();
    h.step();
    assert!(!h.state().running);
    // In-flight steps still land, then nothing more is submitted.
    run_until(&mut h, 60, "in-flight steps", |a| {
        a.session.as_ref().is_some_and(|s| s.in_flight() == 0)
    });
    let n = train_points(h.state());
    for _ in 0..20 {
        h.step();
    }
    assert_eq!(train_points(h.state()), n, "steps ran while paused");
    // The step counter is on screen.
    h.get_by_label_contains(&format!("step {n} "));
    // Five steps in one burst: one readback brings back a point for each of them.
    let s = h.state_mut().session.as_mut().expect("session");
    assert!(s.burst() >= 1, "idle, yet no step may be submitted");
    s.step_many(0.0, 5).expect("burst");
    assert_eq!(s.in_flight(), 1, "a burst is one readback");
    let cpu = h
        .state()
        .gpu()
        .is_some_and(|g| g.adapter_info().device_type == gpu_nn::wgpu::DeviceType::Cpu);
    if cpu {
        // A CPU adapter waits for the burst before the next one.
        assert_eq!(h.state().session.as_ref().map(|s| s.burst()), Some(0));
    }
    run_until(&mut h, 60, "the burst", |a| {
        a.session.as_ref().is_some_and(|s| s.in_flight() == 0)
    });
    let s = h.state().session.as_ref().expect("session");
    let tail: Vec<f64> = s.history.train_loss[n..].iter().map(|p| p[0]).collect();
    let want: Vec<f64> = (n + 1..=n + 5).map(|i| i as f64).collect();
    assert_eq!(tail, want);
    assert!(
        s.history.train_loss[n..]
            .iter()
            .all(|p| p[1].is_finite() && p[1] > 0.0)
    );
}

/// First-layer filters as they are now on the GPU.
fn filters(app: &NnlabApp) -> Vec<f32> {
    app.session
        .as_ref()
        .and_then(|s| s.first_conv_weight())
        .expect("a conv layer")
        .to_vec_blocking()
        .expect("filters read back")
}

/// Presses Step once and waits until a fresh inspection (after that step) is back.
fn step_and_inspect(h: &mut Harness<'_, NnlabApp>) -> Vec<f32> {
    let before = h.state().session.as_ref().map_or(0, |s| s.steps());
    h.get_by_label("Step").click();
    h.step();
    let want = before + 1;
    run_until(h, 60, "the step's loss", |a| {
        a.session.as_ref().is_some_and(|s| s.last_step_done >= want)
    });
    // A manual step refreshes the feature maps (and filters) with the new weights.
    run_until(h, 60, "an inspection after the step", |a| {
        a.features.as_ref().is_some_and(|f| f.step >= want)
    });
    filters(h.state())
}

#[test]
fn the_learning_rate_takes_effect_at_the_next_step() {
    let mut h = harness(8);
    run_until(&mut h, 60, "first feature maps", |a| a.features.is_some());
    // The maps and filters reach egui as the engine's own textures, one per layer.
    h.step();
    let f = h.state().features.as_ref().expect("features");
    let want = f.layers.len() + usize::from(f.filters.is_some());
    assert!(want >= 5, "only {want} pictures for the MnistCnn");
    assert_eq!(h.state().native_pictures(), want);
    // lr 0: the weights must not move.
    h.state_mut().settings.lr = 0.0;
    h.state_mut().settings.momentum = 0.0;
    let w0 = filters(h.state());
    let w1 = step_and_inspect(&mut h);
    assert_eq!(w0, w1, "weights changed with learning rate 0");
    assert_eq!(h.state_mut().session.as_mut().expect("session").lr(), 0.0);
    // A large lr: the very next step moves them.
    h.state_mut().settings.lr = 0.5;
    let w2 = step_and_inspect(&mut h);
    let moved = w1
        .iter()
        .zip(&w2)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved > 1e-4,
        "weights moved only {moved} with learning rate 0.5"
    );
    assert_eq!(h.state_mut().session.as_mut().expect("session").lr(), 0.5);
}

fn drop_file(h: &mut Harness<'_, NnlabApp>, name: &str, bytes: Vec<u8>) {
    h.input_mut().dropped_files.push(Arc::new(MemFile {
        path: PathBuf::from(name),
        bytes,
    }));
    h.step();
}

#[test]
fn a_dropped_image_gets_a_top3_prediction() {
    let mut h = harness(8);
    // A white "1" on black, drawn as a vertical bar.
    let img = image::GrayImage::from_fn(64, 64, |x, y| {
        image::Luma([if (28..36).contains(&x) && (8..56).contains(&y) {
            255
        } else {
            0
        }])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode png");
    drop_file(&mut h, "one.png", png);
    assert!(
        h.state().drop_error().is_none(),
        "{:?}",
        h.state().drop_error()
    );
    run_until(&mut h, 60, "a prediction", |a| {
        a.drop_prediction().is_some()
    });
    let top = h.state().drop_prediction().expect("prediction").to_vec();
    assert_eq!(top.len(), 3);
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "{top:?}");
    let sum: f32 = top.iter().map(|t| t.1).sum();
    assert!(sum > 0.0 && sum <= 1.0 + 1e-4, "{top:?}");
    h.step();
    // The UI shows the file and the classes with percentages.
    h.get_by_label_contains("one.png (64x64");
    h.get_by_label_contains(&format!("{}: ", top[0].0));
}

#[test]
fn the_gan_tab_trains_and_shows_samples_drawn_on_the_gpu() {
    let mut h = harness(8);
    h.get_by_label("GAN").click();
    h.step();
    h.get_by_label("Start GAN").click();
    h.step();
    run_until(&mut h, 120, "GAN samples", |a| a.has_picture("gan:samples"));
    run_until(&mut h, 120, "GAN losses", |a| a.gan_losses() >= 2);
    h.get_by_label("Pause GAN").click();
    h.step();
    h.get_by_label("Reset GAN").click();
    h.step();
    assert!(
        !h.state().has_picture("gan:samples"),
        "samples outlived Reset"
    );
    assert_eq!(h.state().gan_losses(), 0);
}

#[test]
fn launching_on_the_gan_tab_with_autostart_trains_the_gan_only() {
    // What the page's `?autostart&tab=gan` and NNLAB_AUTOSTART=1 NNLAB_TAB=gan do.
    let mut h = harness_with(Launch {
        autostart: true,
        gan: true,
        batch: Some(8),
        ..Launch::default()
    });
    h.step();
    // The GAN tab is open: its pause button is there.
    h.get_by_label("Pause GAN");
    run_until(&mut h, 120, "GAN losses", |a| a.gan_losses() >= 2);
    assert_eq!(train_points(h.state()), 0, "the classifier trained too");
}

#[test]
fn a_dropped_garbage_file_shows_a_message_and_the_app_keeps_running() {
    let mut h = harness(8);
    drop_file(&mut h, "notes.txt", b"this is not an image".to_vec());
    let e = h
        .state()
        .drop_error()
        .expect("an error message")
        .to_string();
    assert!(e.contains("notes.txt") && e.contains("not an image"), "{e}");
    h.step();
    h.get_by_label_contains("not an image");
    // Training still works afterwards.
    h.get_by_label("Start").click();
    run_until(&mut h, 120, "a loss point", |a| train_points(a) >= 1);
    assert!(h.state().error.is_none(), "{:?}", h.state().error);
}
