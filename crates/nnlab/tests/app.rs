//! The app's UI logic under egui_kittest, rendered with wgpu (lavapipe on machines without a
//! GPU): the engine runs on the harness's wgpu device, as it does on eframe's.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use nnlab::app::recovery::Recovery;
use nnlab::app::run::Run;
use nnlab::app::views::Tab;
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

/// One MNIST CNN run at `batch`, not started.
fn harness(batch: usize) -> Harness<'static, NnlabApp> {
    harness_with(Launch {
        runs: vec!["mnist-cnn".into()],
        batch: Some(batch),
        ..Launch::default()
    })
}

fn harness_with(launch: Launch) -> Harness<'static, NnlabApp> {
    let setup = wgpu_configuration().wgpu_setup;
    let h = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .wgpu_setup(setup)
        .build_eframe(move |cc| NnlabApp::new(cc, launch));
    assert!(
        h.state().gpu_error.is_none(),
        "no engine: {:?}",
        h.state().gpu_error
    );
    assert!(h.state().error.is_none(), "{:?}", h.state().error);
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
        let errors: Vec<_> = runs(h.state())
            .iter()
            .filter_map(|r| r.error.clone())
            .collect();
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what} (errors: {:?} {errors:?})",
            h.state().error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn runs(app: &NnlabApp) -> &[Run] {
    app.lab().map_or(&[], |l| l.runs.as_slice())
}

fn run(app: &NnlabApp, i: usize) -> &Run {
    &runs(app)[i]
}

fn run_mut<'a>(h: &'a mut Harness<'_, NnlabApp>, i: usize) -> &'a mut Run {
    &mut h.state_mut().lab.as_mut().expect("lab").runs[i]
}

fn points(app: &NnlabApp, i: usize) -> usize {
    runs(app).get(i).map_or(0, |r| r.history.train_loss.len())
}

fn settle(h: &mut Harness<'_, NnlabApp>) {
    run_until(h, 120, "in-flight work", |a| {
        runs(a).iter().all(|r| !r.busy())
    });
}

#[test]
fn start_grows_the_curve_and_pause_stops_it() {
    let mut h = harness(16);
    assert_eq!(points(h.state(), 0), 0);
    h.get_by_label("Start").click();
    h.step();
    assert!(run(h.state(), 0).running, "Start did not start training");
    run_until(&mut h, 120, "5 loss points", |a| points(a, 0) >= 5);
    let r = run(h.state(), 0);
    let pts = r.history.train_loss.points();
    assert!(pts.iter().all(|p| p.value.is_finite() && p.value > 0.0));
    // Points arrive in step order, one per step, counting images too.
    assert!(
        pts.windows(2).all(|w| w[1].step == w[0].step + 1),
        "{pts:?}"
    );
    assert!(pts.iter().all(|p| p.images == 16 * p.step), "{pts:?}");
    h.get_by_label("Pause").click();
    h.step();
    assert!(!run(h.state(), 0).running);
    // In-flight steps still land, then nothing more is submitted.
    settle(&mut h);
    let n = points(h.state(), 0);
    for _ in 0..20 {
        h.step();
    }
    assert_eq!(points(h.state(), 0), n, "steps ran while paused");
    // The step counter is on screen.
    h.get_by_label_contains(&format!("step {n} "));
    // Five steps in one burst: one readback brings back a point for each of them.
    let r = run_mut(&mut h, 0);
    r.submit(0.0, 5).expect("burst");
    assert_eq!(r.in_flight(), 1, "a burst is one readback");
    settle(&mut h);
    let r = run(h.state(), 0);
    let tail: Vec<u64> = r.history.train_loss.points()[n..]
        .iter()
        .map(|p| p.step)
        .collect();
    let want: Vec<u64> = (n as u64 + 1..=n as u64 + 5).collect();
    assert_eq!(tail, want);
}

#[test]
fn two_runs_train_side_by_side_and_pausing_one_stops_only_it() {
    let mut h = harness(8);
    // A second run from the form: open it, then Add run.
    h.get_by_label("New run").click();
    // Let the section finish opening before clicking inside it.
    for _ in 0..10 {
        h.step();
    }
    h.get_by_label("Add run").click();
    h.step();
    assert_eq!(
        runs(h.state()).len(),
        2,
        "{:?}",
        h.state().runs_panel.form_error
    );
    h.get_by_label("Start all").click();
    h.step();
    run_until(&mut h, 180, "both curves to grow", |a| {
        points(a, 0) >= 3 && points(a, 1) >= 3
    });
    // Pause the first run only.
    h.get_all_by_label("Pause")
        .next()
        .expect("a Pause button per running run")
        .click();
    h.step();
    assert!(!run(h.state(), 0).running && run(h.state(), 1).running);
    run_until(&mut h, 60, "the first run's steps to land", |a| {
        !run(a, 0).busy()
    });
    let (a0, b0) = (points(h.state(), 0), points(h.state(), 1));
    run_until(&mut h, 180, "the second run to go on", |a| {
        points(a, 1) >= b0 + 3
    });
    assert_eq!(points(h.state(), 0), a0, "the paused run trained");
    // Each run shows its own rate.
    h.get_all_by_label_contains("img/s")
        .nth(1)
        .expect("a status line per run");
}

#[test]
fn duplicate_with_one_change_creates_that_run() {
    let mut h = harness(8);
    h.get_by_label("Duplicate").click();
    h.step();
    // The form now holds run 1's settings; change the learning rate and add.
    let form = &h.state().runs_panel.form;
    assert_eq!(form, &run(h.state(), 0).settings);
    h.state_mut().runs_panel.form.lr = 0.05;
    // Let the form finish opening before clicking inside it.
    for _ in 0..10 {
        h.step();
    }
    h.get_by_label("Add run").click();
    h.step();
    let rs = runs(h.state());
    assert_eq!(rs.len(), 2);
    let (a, b) = (&rs[0].settings, &rs[1].settings);
    assert_eq!(b.lr, 0.05);
    assert_eq!(b.difference(a), vec!["lr 0.05".to_string()]);
    assert!(rs[1].name.contains("lr 0.05"), "{}", rs[1].name);
    // Its optimizer really runs at the new rate.
    assert_eq!(rs[1].classifier().map(|c| c.lr()), Some(0.05));
}

/// First-layer filters of run `i` as they are now on the GPU.
fn filters(app: &NnlabApp, i: usize) -> Vec<f32> {
    run(app, i)
        .classifier()
        .and_then(|c| c.first_conv_weight())
        .expect("a conv layer")
        .to_vec_blocking()
        .expect("filters read back")
}

/// Presses Step once and waits until a fresh inspection (after that step) is back.
fn step_and_inspect(h: &mut Harness<'_, NnlabApp>) -> Vec<f32> {
    let want = run(h.state(), 0).steps() + 1;
    h.get_by_label("Step").click();
    h.step();
    run_until(h, 60, "the step's loss", |a| run(a, 0).steps_back() >= want);
    // A manual step refreshes the feature maps (and filters) with the new weights.
    run_until(h, 60, "an inspection after the step", |a| {
        a.features
            .latest
            .as_ref()
            .is_some_and(|(_, f)| f.step >= want)
    });
    filters(h.state(), 0)
}

#[test]
fn the_learning_rate_takes_effect_at_the_next_step() {
    let mut h = harness(8);
    run_until(&mut h, 60, "first feature maps", |a| {
        a.features.latest.is_some()
    });
    // The maps and filters reach egui as the engine's own textures, one per layer.
    h.step();
    let (_, f) = h.state().features.latest.as_ref().expect("features");
    let want = f.layers.len() + usize::from(f.filters.is_some());
    assert!(want >= 5, "only {want} pictures for the MnistCnn");
    assert_eq!(h.state().pictures.len(), want);
    // lr 0: the weights must not move.
    run_mut(&mut h, 0).settings.lr = 0.0;
    run_mut(&mut h, 0).settings.momentum = 0.0;
    let w0 = filters(h.state(), 0);
    let w1 = step_and_inspect(&mut h);
    assert_eq!(w0, w1, "weights changed with learning rate 0");
    // A large lr: the very next step moves them.
    run_mut(&mut h, 0).settings.lr = 0.5;
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
    assert_eq!(run(h.state(), 0).classifier().map(|c| c.lr()), Some(0.5));
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
        h.state().classify.error.is_none(),
        "{:?}",
        h.state().classify.error
    );
    assert_eq!(h.state().tab, Tab::Classify);
    run_until(&mut h, 60, "a prediction", |a| a.classify.top3.is_some());
    let (_, top) = h.state().classify.top3.clone().expect("prediction");
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
fn a_gan_run_trains_and_shows_samples_drawn_on_the_gpu() {
    // What the page's `?autostart&tab=gan` and NNLAB_AUTOSTART=1 NNLAB_TAB=gan do.
    let mut h = harness_with(Launch {
        autostart: true,
        tab: Some(Tab::Gan),
        batch: Some(8),
        ..Launch::default()
    });
    h.step();
    assert_eq!(run(h.state(), 0).settings.model, "dcgan");
    run_until(&mut h, 120, "GAN losses", |a| points(a, 0) >= 2);
    run_until(&mut h, 120, "GAN samples", |a| {
        a.pictures.has("run1/gan:samples")
    });
    h.get_by_label("Pause").click();
    h.step();
    h.get_by_label("Remove").click();
    h.step();
    assert!(
        !h.state().pictures.has("run1/gan:samples"),
        "samples outlived the run"
    );
    assert!(runs(h.state()).is_empty());
}

#[test]
fn a_dropped_garbage_file_shows_a_message_and_the_app_keeps_running() {
    let mut h = harness(8);
    drop_file(&mut h, "notes.txt", b"this is not an image".to_vec());
    let e = h.state().classify.error.clone().expect("an error message");
    assert!(e.contains("notes.txt") && e.contains("not an image"), "{e}");
    h.step();
    h.get_by_label_contains("not an image");
    // Training still works afterwards.
    run_mut(&mut h, 0).running = true;
    run_until(&mut h, 120, "a loss point", |a| points(a, 0) >= 1);
    assert!(
        run(h.state(), 0).error.is_none(),
        "{:?}",
        run(h.state(), 0).error
    );
}

#[test]
fn a_diverging_run_stops_with_the_message_and_the_others_go_on() {
    let mut h = harness_with(Launch {
        runs: vec!["mnist-cnn".into(), "mnist-cnn".into()],
        batch: Some(8),
        ..Launch::default()
    });
    run_mut(&mut h, 0).settings.lr = 1e30;
    h.state_mut()
        .lab
        .as_mut()
        .expect("lab")
        .set_all_running(true);
    run_until(&mut h, 180, "the first run to diverge", |a| {
        run(a, 0).error.is_some()
    });
    let e = run(h.state(), 0).error.clone().unwrap_or_default();
    assert!(e.contains("diverged") && e.contains("learning rate"), "{e}");
    assert!(!run(h.state(), 0).running);
    let b = points(h.state(), 1);
    run_until(&mut h, 180, "the second run to go on", |a| {
        points(a, 1) > b + 2
    });
    h.step();
    h.get_by_label_contains("diverged");
}

#[test]
fn the_default_run_learns_visibly_within_a_hundred_steps() {
    // What a newcomer gets: the app's own default run, Start pressed.
    let mut h = harness_with(Launch::default());
    assert_eq!(run(h.state(), 0).settings.model, "mnist-cnn");
    h.get_by_label("Start").click();
    run_until(&mut h, 300, "100 steps", |a| points(a, 0) >= 100);
    let v: Vec<f32> = run(h.state(), 0)
        .history
        .train_loss
        .points()
        .iter()
        .map(|p| p.value)
        .collect();
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&v[..10]), mean(&v[90..100]));
    println!("default run: loss {first:.3} over steps 1-10, {last:.3} over steps 91-100");
    assert!(last < 0.8 * first, "loss {first} -> {last}");
}

#[test]
fn reset_starts_over_from_the_same_initial_weights() {
    let mut h = harness(8);
    let w0 = filters(h.state(), 0);
    run_mut(&mut h, 0).running = true;
    run_until(&mut h, 120, "3 steps", |a| points(a, 0) >= 3);
    run_mut(&mut h, 0).running = false;
    settle(&mut h);
    assert_ne!(
        filters(h.state(), 0),
        w0,
        "training did not move the weights"
    );
    h.get_by_label("Reset").click();
    h.step();
    let r = run(h.state(), 0);
    assert_eq!((r.steps(), points(h.state(), 0)), (0, 0));
    assert_eq!(r.id, 1, "a reset run keeps its identity");
    // Same settings and seed: the same initial weights.
    assert_eq!(filters(h.state(), 0), w0);
}

#[test]
fn a_diverging_gan_run_stops_with_the_message() {
    let mut h = harness_with(Launch {
        runs: vec!["dcgan".into()],
        batch: Some(8),
        ..Launch::default()
    });
    // Poison the generator: its samples, and so both losses, become NaN.
    if let nnlab::app::run::Trainee::Gan(g) = run(h.state(), 0).trainee() {
        for t in gpu_nn::nn::parameters(&g.g) {
            t.write(&vec![f32::NAN; t.numel()]).expect("write");
        }
    } else {
        panic!("not a GAN run");
    }
    run_mut(&mut h, 0).running = true;
    run_until(&mut h, 120, "the run to stop", |a| {
        run(a, 0).error.is_some()
    });
    let e = run(h.state(), 0).error.clone().unwrap_or_default();
    assert!(e.contains("GAN losses") && e.contains("diverged"), "{e}");
    assert!(!run(h.state(), 0).running);
    assert_eq!(points(h.state(), 0), 0, "a NaN point reached the curves");
}

#[test]
fn of_twenty_images_dropped_at_once_only_the_last_is_decoded() {
    let mut h = harness(8);
    let img = image::GrayImage::from_pixel(32, 32, image::Luma([0]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode png");
    for i in 0..20 {
        h.input_mut().dropped_files.push(Arc::new(MemFile {
            path: PathBuf::from(format!("img{i}.png")),
            bytes: png.clone(),
        }));
    }
    h.step();
    assert_eq!(h.state().classify.decoded, 1);
    run_until(&mut h, 60, "a prediction", |a| a.classify.top3.is_some());
    h.step();
    h.get_by_label_contains("img19.png (32x32");
}

/// A dropped file on disk that must not be read.
#[derive(Debug)]
struct UnreadFile(PathBuf);

impl egui::DroppedFile for UnreadFile {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        panic!("{} was read", self.0.display())
    }
}

#[test]
fn a_dropped_file_too_big_to_open_is_refused_unread() {
    let mut h = harness(8);
    let path = std::env::temp_dir().join(format!("nnlab-huge-{}.png", std::process::id()));
    // Sparse: 300 MiB on paper, nothing on disk.
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(300 << 20).expect("set_len");
    h.input_mut()
        .dropped_files
        .push(Arc::new(UnreadFile(path.clone())));
    h.step();
    std::fs::remove_file(&path).ok();
    let e = h.state().error.clone().unwrap_or_default();
    assert!(e.contains("300 MiB is more than nnlab opens"), "{e}");
    assert_eq!(h.state().classify.decoded, 0);
}

/// An app built by `build` on a new device of the harness's setup.
fn harness_from(
    build: impl FnOnce(&mut eframe::CreationContext<'_>) -> NnlabApp,
) -> Harness<'static, NnlabApp> {
    Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .wgpu_setup(wgpu_configuration().wgpu_setup)
        .build_eframe(build)
}

#[test]
fn a_lost_device_hands_every_run_to_a_new_device_that_continues_it() {
    let handed: Rc<RefCell<Option<Recovery>>> = Rc::default();
    let slot = Rc::clone(&handed);
    let launch = Launch {
        runs: vec!["mnist-cnn".into(), "dcgan".into()],
        batch: Some(8),
        autostart: true,
        ..Launch::default()
    };
    let mut h = harness_from(move |cc| {
        NnlabApp::new(cc, launch).with_restart(Box::new(move |r| *slot.borrow_mut() = Some(r)))
    });
    h.state_mut().lab.as_mut().expect("lab").recovery.every_s = 0.2;
    let point = |a: &NnlabApp, i: usize| a.lab().and_then(|l| l.recovery.step_of(run(a, i).id));
    run_until(&mut h, 120, "a recovery point of each run", |a| {
        (0..2).all(|i| point(a, i).is_some_and(|s| s >= 2))
    });
    h.state().gpu().expect("gpu").device().destroy();
    run_until(&mut h, 60, "the runs handed on", |_| {
        handed.borrow().is_some()
    });
    assert!(runs(h.state()).is_empty());
    let e = h.state().error.clone().unwrap_or_default();
    assert!(e.contains("was lost") && e.contains("new device"), "{e}");
    let recovery = handed.borrow_mut().take().expect("recovery");
    assert_eq!(recovery.len(), 2);
    drop(h);

    let mut h = harness_from(move |cc| NnlabApp::restarted(cc, recovery));
    let e = h.state().error.clone().unwrap_or_default();
    assert!(
        e.contains("continue on a new device") && e.contains("run 1 from step"),
        "{e}"
    );
    let at: Vec<u64> = runs(h.state()).iter().map(Run::steps).collect();
    assert_eq!(runs(h.state()).len(), 2);
    for (r, (id, name)) in runs(h.state()).iter().zip([(1, "mnist-cnn"), (2, "dcgan")]) {
        assert_eq!((r.id, r.settings.model.as_str()), (id, name));
        assert!(r.running, "run {id} was running");
        assert!(r.steps() >= 2, "run {id} starts from its point");
        // Its curve goes up to the point, not past it.
        let last = r.history.train_loss.points().last().map(|p| p.step);
        assert!(last.is_some_and(|s| s <= r.steps()), "{last:?}");
    }
    run_until(&mut h, 120, "steps past the recovery points", |a| {
        runs(a)
            .iter()
            .zip(&at)
            .all(|(r, s)| r.steps_back() >= s + 2)
    });
    assert!(runs(h.state()).iter().all(|r| r.error.is_none()));
}

#[test]
fn without_a_restart_a_lost_device_keeps_the_runs_and_says_how_to_go_on() {
    let mut h = harness_with(Launch {
        runs: vec!["mnist-cnn".into(), "mnist-cnn".into()],
        batch: Some(8),
        autostart: true,
        ..Launch::default()
    });
    run_until(&mut h, 120, "training", |a| points(a, 0) >= 1);
    h.state().gpu().expect("gpu").device().destroy();
    run_until(&mut h, 60, "the message", |a| {
        a.error.as_deref().is_some_and(|e| e.contains("was lost"))
    });
    assert_eq!(h.state().recovery.as_ref().map(Recovery::len), Some(2));
    h.step();
    h.get_by_label_contains("device was lost");
}

#[test]
fn clicking_a_confusion_cell_lists_exactly_that_cells_images() {
    let mut h = harness(32);
    h.state_mut().tab = Tab::Mistakes;
    run_mut(&mut h, 0).running = true;
    run_until(&mut h, 120, "20 steps", |a| run(a, 0).steps_back() >= 20);
    run_mut(&mut h, 0).running = false;
    settle(&mut h);
    h.get_by_label("Validate now").click();
    run_until(&mut h, 120, "a validation", |a| {
        run(a, 0).last_val.as_ref().is_some_and(|v| v.step >= 20)
    });
    // The most crowded mistake (or, failing one, the biggest cell).
    let (t, p, n) = {
        let r = run(h.state(), 0);
        let v = r.last_val.as_ref().expect("validated");
        let m = &v.confusion;
        assert_eq!(m.total() as usize, r.data.val.len());
        let cells = (0..m.classes).flat_map(|t| (0..m.classes).map(move |p| (t, p)));
        cells
            .map(|(t, p)| (t, p, m.counts[t * m.classes + p]))
            .max_by_key(|&(t, p, n)| (t != p && n > 0, n))
            .expect("cells")
    };
    h.get_by_label(&format!("true {t}, predicted {p}: {n} images"))
        .click();
    run_until(&mut h, 60, "the cell's probabilities", |a| {
        !a.confusion.shown.is_empty() && a.confusion.shown.iter().all(|(_, top)| top.is_some())
    });
    let app = h.state();
    let r = run(app, 0);
    let v = r.last_val.as_ref().expect("validated");
    // A recount from the labels and predictions: exactly that cell's images, in order.
    let want: Vec<usize> = (0..r.data.val.len())
        .filter(|&i| usize::from(r.data.val.labels[i]) == t && v.predicted[i] as usize == p)
        .take(nnlab::app::views::confusion::MAX_SHOWN)
        .collect();
    let got: Vec<usize> = app.confusion.shown.iter().map(|(i, _)| *i).collect();
    assert_eq!(got, want);
    assert_eq!(app.confusion.in_cell as u64, n);
    // Each image's top class is the predicted one (the same weights, in eval mode).
    for (i, top) in &app.confusion.shown {
        let top = top.as_ref().expect("top-3");
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].0, p, "image {i}: {top:?}");
        assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1);
    }
}

#[test]
fn a_validation_image_opens_its_grad_cam_and_randomised_weights_change_it() {
    let mut h = harness(32);
    h.state_mut().tab = Tab::Mistakes;
    run_mut(&mut h, 0).running = true;
    run_until(&mut h, 120, "30 steps", |a| run(a, 0).steps_back() >= 30);
    run_mut(&mut h, 0).running = false;
    settle(&mut h);
    h.get_by_label("Validate now").click();
    run_until(&mut h, 120, "a validation", |a| {
        run(a, 0).last_val.as_ref().is_some_and(|v| v.step >= 30)
    });
    let (t, n) = {
        let m = &run(h.state(), 0)
            .last_val
            .as_ref()
            .expect("validated")
            .confusion;
        (0..m.classes)
            .map(|t| (t, m.counts[t * m.classes + t]))
            .max_by_key(|&(_, n)| n)
            .expect("classes")
    };
    h.get_by_label(&format!("true {t}, predicted {t}: {n} images"))
        .click();
    run_until(&mut h, 60, "the cell's images", |a| {
        !a.confusion.shown.is_empty()
    });
    let i = h.state().confusion.shown[0].0;
    h.get_by_label(&format!("validation image {i}")).click();
    run_until(&mut h, 60, "a Grad-CAM map", |a| {
        a.confusion.saliency.latest().is_some() && !a.confusion.saliency.busy()
    });
    let (class, map, size) = {
        let (c, m, s) = h.state().confusion.saliency.latest().expect("map");
        (c, m.to_vec(), s)
    };
    // mnist-cnn's last stage is conv2 (8x8 maps), explained for the predicted class.
    assert_eq!((class, size), (t, (8, 8)));
    assert!(map.iter().all(|v| v.is_finite() && *v >= 0.0) && map.iter().any(|v| *v > 0.0));
    h.get_by_label("randomise weights").click();
    run_until(&mut h, 60, "the randomised map", |a| {
        !a.confusion.saliency.busy()
            && a.confusion
                .saliency
                .latest()
                .is_some_and(|(_, m, _)| m != map.as_slice())
    });
    let (c2, _, s2) = h.state().confusion.saliency.latest().expect("map");
    assert_eq!(
        (c2, s2),
        (t, size),
        "the twin explains the trained model's class"
    );
    // Removing the run lets the twin (and its GPU memory) go.
    assert!(h.state().confusion.saliency.has_twin());
    let id = run(h.state(), 0).id;
    h.state_mut().remove_run(id);
    h.step();
    assert!(!h.state().confusion.saliency.has_twin());
    assert!(h.state().confusion.saliency.latest().is_none());
}

#[test]
fn the_model_graph_opens_for_every_model_a_run_can_train_here() {
    // Every registry classifier that takes MNIST's 28x28 images, side by side.
    let models: Vec<String> = nnlab::registry::classifiers()
        .filter(|m| m.accepts([1, 28, 28]))
        .map(|m| m.name.to_string())
        .collect();
    assert!(models.len() >= 15, "{models:?}");
    let mut h = harness_with(Launch {
        runs: models.clone(),
        batch: Some(4),
        ..Launch::default()
    });
    h.state_mut().tab = Tab::Model;
    let frames = |h: &mut Harness<'_, NnlabApp>| {
        for _ in 0..3 {
            h.step();
        }
    };
    for (i, model) in models.iter().enumerate() {
        let id = run(h.state(), i).id;
        h.state_mut().selected = Some(id);
        frames(&mut h);
        h.get_by_label("Expand all").click();
        frames(&mut h);
        assert!(h.state().error.is_none(), "{model}: {:?}", h.state().error);
        // The first layer is drawn as a node, and clicking it selects it (through
        // accesskit: nodes inside the zoomable scene may lie outside the window).
        h.get_by_label("node conv1").click_accesskit();
        frames(&mut h);
        assert_eq!(
            h.state().graph.selected.as_deref(),
            Some("conv1"),
            "{model}"
        );
    }
}
