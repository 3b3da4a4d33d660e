//! The study views under egui_kittest: each opens on runs and draws what it measured; the
//! degradation race creates its runs.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use nnlab::app::data::DataChoice;
use nnlab::app::run::Run;
use nnlab::app::views::study::StudyTab;
use nnlab::app::{Launch, NnlabApp, wgpu_configuration};
use nnlab::data::Bundled;

fn harness(runs: &[&str], study: StudyTab) -> Harness<'static, NnlabApp> {
    let launch = Launch {
        runs: runs.iter().map(|s| s.to_string()).collect(),
        batch: Some(8),
        val_every: Some(0),
        study: Some(study),
        ..Launch::default()
    };
    let setup = wgpu_configuration().wgpu_setup;
    let mut h = Harness::builder()
        .with_size(egui::vec2(1300.0, 900.0))
        .wgpu_setup(setup)
        .build_eframe(move |cc| NnlabApp::new(cc, launch));
    assert!(h.state().gpu_error.is_none(), "{:?}", h.state().gpu_error);
    // Small validation sets keep the studies' evaluations quick.
    let lab = h.state_mut().lab.as_mut().expect("lab");
    let ids: Vec<u64> = lab.runs.iter().map(|r| r.id).collect();
    for id in ids {
        let mut s = lab.get(id).expect("run").settings.clone();
        s.data = small();
        lab.remove(id).expect("remove");
        lab.add(s).expect("add");
    }
    h.step();
    h
}

fn small() -> DataChoice {
    DataChoice::Bundled {
        set: Bundled::Mnist,
        limit: Some(64),
    }
}

fn runs(app: &NnlabApp) -> &[Run] {
    app.lab().map_or(&[], |l| l.runs.as_slice())
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

fn train(h: &mut Harness<'_, NnlabApp>, steps: u64) {
    h.state_mut()
        .lab
        .as_mut()
        .expect("lab")
        .set_all_running(true);
    run_until(h, 300, "training", |a| {
        runs(a).iter().all(|r| r.steps_back() >= steps)
    });
    h.state_mut()
        .lab
        .as_mut()
        .expect("lab")
        .set_all_running(false);
    run_until(h, 120, "in-flight steps", |a| {
        runs(a).iter().all(|r| !r.busy())
    });
}

#[test]
fn the_degradation_race_creates_four_runs_with_one_seed_and_draws_them() {
    let mut h = harness(&[], StudyTab::Degradation);
    for id in runs(h.state()).iter().map(|r| r.id).collect::<Vec<_>>() {
        h.state_mut().remove_run(id);
    }
    let v = &mut h.state_mut().study.degradation;
    v.width = 0.125;
    v.batch = 8;
    h.step();
    h.get_by_label("Start the race").click();
    h.step();
    let models: Vec<&str> = runs(h.state())
        .iter()
        .map(|r| r.settings.model.as_str())
        .collect();
    assert_eq!(
        models,
        ["resnet20-plain", "resnet20", "resnet56-plain", "resnet56"]
    );
    let rs = runs(h.state());
    assert!(
        rs.iter()
            .all(|r| r.running && r.settings.seed == rs[0].settings.seed)
    );
    assert!(
        rs.iter()
            .all(|r| r.settings.variant.width == 0.125 && r.settings.opt == "sgd")
    );
    run_until(&mut h, 300, "a point of every run", |a| {
        runs(a).iter().all(|r| !r.history.train_acc.is_empty())
    });
    h.state_mut()
        .lab
        .as_mut()
        .expect("lab")
        .set_all_running(false);
    h.step();
    h.get_by_label_contains("error (1 - accuracy)");
}

#[test]
fn gradient_flow_shows_every_runs_layers_after_the_comparison_runs_step() {
    let mut h = harness(&[], StudyTab::Gradients);
    h.state_mut().study.gradients.depth = 20;
    h.step();
    h.get_by_label("Add the comparison runs").click();
    h.step();
    run_until(&mut h, 120, "gradients of every run", |a| {
        let rs: Vec<&Run> = runs(a)
            .iter()
            .filter(|r| r.settings.model.starts_with("resnet20"))
            .collect();
        rs.len() == 5 && rs.iter().all(|r| !r.grad_flow.is_empty())
    });
    let r = runs(h.state())
        .iter()
        .find(|r| r.name.contains("no BN, default init"))
        .expect("run");
    // 19 convs, 2 projection shortcuts in the residual net (none in the plain one), the fc.
    assert_eq!(
        r.grad_flow[0].layers.len(),
        20,
        "{:?}",
        r.grad_flow[0].layers
    );
    h.step();
    h.get_by_label_contains("colour: log10");
}

#[test]
fn the_lesion_board_measures_a_resnet_and_its_plain_twin() {
    let mut h = harness(&["resnet8", "resnet8-plain"], StudyTab::Lesions);
    train(&mut h, 4);
    for name in ["Measure 3: resnet8", "Measure 4: resnet8-plain"] {
        h.get_by_label(name).click();
        h.step();
    }
    run_until(&mut h, 300, "both studies", |a| !a.study.lesions.busy());
    h.step();
    assert!(
        h.query_all_by_label_contains("with one block deleted")
            .count()
            >= 1
    );
    assert!(
        h.query_all_by_label_contains("blocks deleted at random")
            .count()
            >= 1
    );
}

#[test]
fn the_branch_lens_shows_shares_and_ablations() {
    let mut h = harness(&["inception-small"], StudyTab::Branches);
    train(&mut h, 2);
    run_until(&mut h, 120, "branch maps", |a| {
        a.pictures.has("run2/layer:inception3a.branch3")
    });
    h.get_by_label("Ablate each branch").click();
    let t0 = Instant::now();
    while h
        .query_by_label_contains("with one branch zeroed")
        .is_none()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no ablation after 300 s"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.query_all_by_label_contains("branch3 (5x5)").count() >= 1);
}

#[test]
fn the_loss_landscape_computes_a_line_and_a_plane() {
    let mut h = harness(&["resnet8"], StudyTab::Landscape);
    train(&mut h, 2);
    h.state_mut().study.landscape.n = 3;
    h.step();
    h.get_by_label("Compute 2: resnet8").click();
    h.step();
    run_until(&mut h, 300, "the landscape", |a| !a.study.landscape.busy());
    for _ in 0..5 {
        h.step();
    }
    assert!(
        h.query_all_by_label_contains("the plane through the current weights")
            .count()
            >= 1
    );
}

#[test]
fn residual_responses_and_the_block_anatomy_draw_for_a_resnet_and_its_twin() {
    let mut h = harness(&["resnet8", "resnet8-plain"], StudyTab::Response);
    train(&mut h, 2);
    let t0 = Instant::now();
    while h
        .query_by_label_contains("F(x): the residual branch")
        .is_none()
        || h.query_all_by_label_contains("std of each residual branch")
            .count()
            == 0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the response view did not draw"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.query_by_label_contains("shortcut: identity").is_some());
}
