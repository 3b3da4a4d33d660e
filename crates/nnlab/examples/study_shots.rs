//! Renders the study views for the README: each view on runs trained for a while, drawn
//! by the app itself through egui_kittest's wgpu renderer.
//!
//! `cargo run --release -p nnlab --example study_shots -- docs [steps]`

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
    for _ in 0..30 {
        h.step();
    }
    let path = out.join(name);
    h.render().expect("render").save(&path).expect("save");
    println!("wrote {}", path.display());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map_or("docs", String::as_str));
    let steps: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);

    // Gradient flow at initialisation: the comparison runs of depth 56.
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
    shot(&mut h, StudyTab::Gradients, &out, "study-gradients.png");

    // The degradation race, thinner on a CPU driver.
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
    shot(&mut h, StudyTab::Degradation, &out, "study-degradation.png");

    // A trained ResNet-20 and its plain twin: responses, lesions, landscapes.
    let mut h = harness(&["resnet20", "resnet20-plain"], 32);
    h.state_mut().tab = Tab::Study;
    h.state_mut().study.tab = StudyTab::Response;
    train(&mut h, steps);
    wait(&mut h, 600, |a| a.study.response.anatomy_ready());
    shot(&mut h, StudyTab::Response, &out, "study-response.png");
    h.state_mut().study.tab = StudyTab::Lesions;
    h.step();
    h.get_by_label("Measure 1: resnet20").click();
    h.step();
    h.get_by_label("Measure 2: resnet20-plain").click();
    h.step();
    wait(&mut h, 7200, |a| !a.study.lesions.busy());
    shot(&mut h, StudyTab::Lesions, &out, "study-lesions.png");
    h.state_mut().study.tab = StudyTab::Landscape;
    h.step();
    h.get_by_label("Compute 1: resnet20").click();
    h.step();
    h.get_by_label("Compute 2: resnet20-plain").click();
    h.step();
    wait(&mut h, 7200, |a| !a.study.landscape.busy());
    shot(&mut h, StudyTab::Landscape, &out, "study-landscape.png");

    // The branch lens on a trained small Inception net with true 5x5 branches.
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
    shot(&mut h, StudyTab::Branches, &out, "study-branches.png");
}
