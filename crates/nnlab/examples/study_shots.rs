//! Renders the study views and the mistakes view for the README: each on runs trained for a
//! while, drawn by the app itself through egui_kittest's wgpu renderer.
//!
//! `cargo run --release -p nnlab --example study_shots -- docs [steps] [shot...]`, shots
//! among mistakes, graph, gradients, degradation, resnets (response, lesions, landscape),
//! branches, folder (an image folder dropped, trained on, a photo classified); all when none
//! is named.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use nnlab::app::views::Tab;
use nnlab::app::views::study::StudyTab;
use nnlab::app::{Launch, NnlabApp, wgpu_configuration};

fn harness(runs: &[&str], batch: usize) -> Harness<'static, NnlabApp> {
    let launch = Launch {
        runs: runs.iter().map(|s| s.to_string()).collect(),
        batch: Some(batch),
        ..Launch::default()
    };
    let setup = wgpu_configuration().wgpu_setup;
    Harness::builder()
        .with_size(egui::vec2(1400.0, 950.0))
        .wgpu_setup(setup)
        .build_eframe(move |cc| NnlabApp::new(cc, launch))
}

fn wait(h: &mut Harness<'_, NnlabApp>, secs: u64, done: impl Fn(&NnlabApp) -> bool) {
    let t0 = Instant::now();
    while !done(h.state()) && t0.elapsed() < Duration::from_secs(secs) {
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn train(h: &mut Harness<'_, NnlabApp>, steps: u64) {
    h.state_mut()
        .lab
        .as_mut()
        .expect("lab")
        .set_all_running(true);
    wait(h, 7200, |a| {
        a.lab()
            .is_some_and(|l| l.runs.iter().all(|r| r.steps_back() >= steps))
    });
    h.state_mut()
        .lab
        .as_mut()
        .expect("lab")
        .set_all_running(false);
    wait(h, 600, |a| {
        a.lab().is_some_and(|l| l.runs.iter().all(|r| !r.busy()))
    });
}

fn shot(h: &mut Harness<'_, NnlabApp>, tab: StudyTab, out: &Path, name: &str) {
    h.state_mut().tab = Tab::Study;
    h.state_mut().study.tab = tab;
    save(h, out, name);
}

fn save(h: &mut Harness<'_, NnlabApp>, out: &Path, name: &str) {
    for _ in 0..30 {
        h.step();
    }
    let path = out.join(name);
    h.render().expect("render").save(&path).expect("save");
    println!("wrote {}", path.display());
}

/// The confusion matrix of a trained MNIST CNN, its most crowded mistake and the Grad-CAM
/// of that cell's first image.
fn mistakes(out: &Path, steps: u64) {
    let mut h = harness(&["mnist-cnn"], 64);
    h.state_mut().tab = Tab::Mistakes;
    train(&mut h, steps);
    h.get_by_label("Validate now").click();
    wait(&mut h, 600, |a| {
        a.lab()
            .and_then(|l| l.runs.first())
            .is_some_and(|r| r.last_val.is_some())
    });
    let cell = h
        .state()
        .lab()
        .and_then(|l| l.runs.first())
        .and_then(|r| r.last_val.as_ref())
        .map(|v| {
            let m = &v.confusion;
            let (mut best, mut n) = ((0, 0), 0);
            for t in 0..m.classes {
                for p in (0..m.classes).filter(|&p| p != t) {
                    if m.counts[t * m.classes + p] > n {
                        (best, n) = ((t, p), m.counts[t * m.classes + p]);
                    }
                }
            }
            (best, n)
        });
    let Some(((t, p), n)) = cell else { return };
    h.get_by_label(&format!("true {t}, predicted {p}: {n} images"))
        .click();
    wait(&mut h, 120, |a| !a.confusion.shown.is_empty());
    let i = h.state().confusion.shown[0].0;
    h.get_by_label(&format!("validation image {i}")).click();
    wait(&mut h, 120, |a| {
        a.confusion.saliency.latest().is_some() && !a.confusion.saliency.busy()
    });
    save(&mut h, out, "mistakes.png");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map_or("docs", String::as_str));
    let steps: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let only: Vec<&str> = args.iter().skip(3).map(String::as_str).collect();
    let wanted = |name: &str| only.is_empty() || only.contains(&name);

    if wanted("mistakes") {
        mistakes(&out, steps * 3);
    }
    if wanted("graph") {
        graph(&out);
    }
    if wanted("gradients") {
        gradients(&out);
    }
    if wanted("degradation") {
        degradation(&out, steps);
    }
    if wanted("resnets") {
        resnets(&out, steps);
    }
    if wanted("branches") {
        branches(&out, steps);
    }
    if wanted("folder") {
        folder(&out, steps);
    }
}

#[derive(Debug)]
struct Dropped(PathBuf, Vec<u8>);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        Ok(self.1.clone())
    }
}

/// A picture of a disc or a square in some colour, at some place and size.
fn shape_png(disc: bool, k: u32) -> Vec<u8> {
    let (cx, cy, r) = (
        20.0 + (k * 7 % 24) as f32,
        20.0 + (k * 11 % 24) as f32,
        9.0 + (k % 5) as f32,
    );
    let fg = [
        (k * 53 % 200) as u8 + 40,
        (k * 97 % 200) as u8 + 40,
        (k * 31 % 200) as u8 + 40,
    ];
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let inside = if disc {
            dx * dx + dy * dy < r * r
        } else {
            dx.abs() < r && dy.abs() < r
        };
        image::Rgb(if inside { fg } else { [235, 235, 230] })
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// An image folder of discs and squares dropped on the window: what was found, a ResNet-20
/// trained on it, and a new picture classified by it.
fn folder(out: &Path, steps: u64) {
    let dir = std::env::temp_dir().join("nnlab-shapes");
    std::fs::remove_dir_all(&dir).ok();
    for (class, disc) in [("discs", true), ("squares", false)] {
        std::fs::create_dir_all(dir.join(class)).expect("dir");
        for k in 0..40 {
            let f = dir.join(class).join(format!("{k:02}.png"));
            std::fs::write(f, shape_png(disc, k)).expect("write");
        }
    }
    std::fs::write(dir.join("squares").join("scan.jpg"), b"\xff\xd8 cut short").expect("w");
    let mut h = harness(&[], 16);
    let mut form = nnlab::app::run::RunSettings::for_model("resnet20");
    form.variant.width = 0.25;
    form.batch = 16;
    h.state_mut().runs_panel.form = form;
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(dir.clone(), Vec::new())));
    wait(&mut h, 120, |a| {
        a.runs_panel
            .folder
            .as_ref()
            .is_some_and(|f| f.data.is_some())
    });
    for _ in 0..10 {
        h.step();
    }
    h.get_by_label("1 file skipped").click();
    for _ in 0..10 {
        h.step();
    }
    h.get_by_label("Add run").click();
    h.step();
    let id = h.state().lab().and_then(|l| l.runs.last()).map(|r| r.id);
    h.state_mut().selected = id;
    train(&mut h, steps);
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(
            "new-disc.png".into(),
            shape_png(true, 77),
        )));
    wait(&mut h, 120, |a| a.classify.top3.is_some());
    save(&mut h, out, "own-data.png");
}

/// The model graph of a ResNet-20 with one residual block and its projection opened.
fn graph(out: &Path) {
    let mut h = harness(&["resnet20"], 32);
    h.state_mut().tab = Tab::Model;
    train(&mut h, 20);
    for node in ["node layer2.0", "node layer2.0.conv1"] {
        h.get_by_label(node).click_accesskit();
        for _ in 0..5 {
            h.step();
        }
    }
    save(&mut h, out, "model-graph.png");
    let mut h = harness(&["inception-small"], 32);
    h.state_mut().tab = Tab::Model;
    train(&mut h, 5);
    h.get_by_label("node inception3a").click_accesskit();
    for _ in 0..5 {
        h.step();
    }
    save(&mut h, out, "model-graph-inception.png");
}

/// Gradient flow at initialisation: the comparison runs of depth 56.
fn gradients(out: &Path) {
    let mut h = harness(&[], 32);
    let first = h.state().lab().and_then(|l| l.runs.first()).map(|r| r.id);
    if let Some(id) = first {
        h.state_mut().remove_run(id);
    }
    h.state_mut().tab = Tab::Study;
    h.state_mut().study.tab = StudyTab::Gradients;
    h.step();
    h.get_by_label("Add the comparison runs").click();
    h.step();
    wait(&mut h, 600, |a| {
        a.lab()
            .is_some_and(|l| l.runs.iter().all(|r| !r.grad_flow.is_empty()))
    });
    shot(&mut h, StudyTab::Gradients, out, "study-gradients.png");
}

/// The degradation race, thinner on a CPU driver.
fn degradation(out: &Path, steps: u64) {
    let mut h = harness(&[], 32);
    h.state_mut().tab = Tab::Study;
    h.state_mut().study.degradation.batch = 32;
    h.step();
    h.get_by_label("Start the race").click();
    h.step();
    let first = h.state().lab().and_then(|l| l.runs.first()).map(|r| r.id);
    if let Some(id) = first {
        h.state_mut().remove_run(id);
    }
    train(&mut h, steps);
    shot(&mut h, StudyTab::Degradation, out, "study-degradation.png");
}

/// A trained ResNet-20 and its plain twin: responses, lesions, landscapes.
fn resnets(out: &Path, steps: u64) {
    let mut h = harness(&["resnet20", "resnet20-plain"], 32);
    h.state_mut().tab = Tab::Study;
    h.state_mut().study.tab = StudyTab::Response;
    train(&mut h, steps);
    wait(&mut h, 600, |a| a.study.response.anatomy_ready());
    shot(&mut h, StudyTab::Response, out, "study-response.png");
    h.state_mut().study.tab = StudyTab::Lesions;
    h.step();
    h.get_by_label("Measure 1: resnet20").click();
    h.step();
    h.get_by_label("Measure 2: resnet20-plain").click();
    h.step();
    wait(&mut h, 7200, |a| !a.study.lesions.busy());
    shot(&mut h, StudyTab::Lesions, out, "study-lesions.png");
    h.state_mut().study.tab = StudyTab::Landscape;
    h.step();
    h.get_by_label("Compute 1: resnet20").click();
    h.step();
    h.get_by_label("Compute 2: resnet20-plain").click();
    h.step();
    wait(&mut h, 7200, |a| !a.study.landscape.busy());
    shot(&mut h, StudyTab::Landscape, out, "study-landscape.png");
}

/// The branch lens on a trained small Inception net with true 5x5 branches.
fn branches(out: &Path, steps: u64) {
    let mut h = harness(&["inception-small"], 32);
    h.state_mut().tab = Tab::Study;
    h.state_mut().study.tab = StudyTab::Branches;
    train(&mut h, steps);
    h.get_by_label("Ablate each branch").click();
    let t0 = Instant::now();
    while h
        .query_by_label_contains("with one branch zeroed")
        .is_none()
        && t0.elapsed() < Duration::from_secs(3600)
    {
        h.step();
    }
    shot(&mut h, StudyTab::Branches, out, "study-branches.png");
}
