//! Own data in the app, under egui_kittest on the harness's wgpu device (lavapipe without a
//! GPU): an image folder dropped on the window (a directory natively, a `.zip` anywhere) is
//! decoded over frames and shown before anything trains (classes, counts, the files
//! skipped); a run trains on it; a photo dropped then is classified at that run's input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use nnlab::app::run::RunSettings;
use nnlab::app::{Launch, NnlabApp, wgpu_configuration};

#[derive(Debug)]
struct Dropped {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.path
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        Ok(self.bytes.clone())
    }
}

fn harness() -> Harness<'static, NnlabApp> {
    let setup = wgpu_configuration().wgpu_setup;
    let h = Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .wgpu_setup(setup)
        .build_eframe(|cc| NnlabApp::new(cc, Launch::default()));
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
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what} ({:?}, form: {:?})",
            h.state().error,
            h.state().runs_panel.form_error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn drop_file(h: &mut Harness<'_, NnlabApp>, path: PathBuf, bytes: Vec<u8>) {
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped { path, bytes }));
    h.step();
}

fn png(w: u32, h: u32, rgb: [u8; 3], seed: u32) -> Vec<u8> {
    // A coloured image with a little texture, so that no two files are alike.
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = ((x * 7 + y * 13 + seed * 31) % 40) as u8;
        image::Rgb(rgb.map(|c| c.saturating_sub(n)))
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// `red/` and `blue/` with twelve images each, a file that does not decode, and an image
/// outside any class folder.
fn write_folder(dir: &Path) {
    std::fs::remove_dir_all(dir).ok();
    for (class, rgb) in [("red", [230, 30, 30]), ("blue", [30, 30, 230])] {
        std::fs::create_dir_all(dir.join(class)).expect("dir");
        for i in 0..12 {
            std::fs::write(
                dir.join(class).join(format!("{i:02}.png")),
                png(40, 30, rgb, i),
            )
            .expect("write");
        }
    }
    std::fs::write(dir.join("blue").join("broken.png"), b"\x89PNG not really").expect("w");
    std::fs::write(dir.join("notes.png"), png(8, 8, [0, 0, 0], 0)).expect("w");
}

fn decoded(a: &NnlabApp) -> bool {
    a.runs_panel
        .folder
        .as_ref()
        .is_some_and(|f| f.data.is_some() || f.error.is_some())
}

#[test]
fn a_dropped_folder_is_shown_then_trained_on_and_classifies_a_photo() {
    let dir = std::env::temp_dir().join(format!("nnlab-own-data-{}", std::process::id()));
    write_folder(&dir);
    let mut h = harness();
    let mut form = RunSettings::for_model("resnet20");
    form.variant.width = 0.25;
    form.batch = 8;
    h.state_mut().runs_panel.form = form;
    drop_file(&mut h, dir.clone(), Vec::new());
    run_until(&mut h, 60, "the folder to decode", decoded);
    let f = h.state().runs_panel.folder.as_ref().expect("folder");
    assert!(f.error.is_none(), "{:?}", f.error);
    let d = f.data.clone().expect("data");
    assert_eq!(d.class_names, vec!["blue", "red"]);
    assert_eq!(d.counts(), vec![(11, 1), (11, 1)]);
    assert_eq!(d.train.shape, [3, 32, 32]);
    // Kept as bytes, converted per batch.
    assert_eq!(d.train.pixels.len(), 22 * 3 * 32 * 32);
    for _ in 0..5 {
        h.step();
    }
    // What was found, before training: classes, counts, input size, the skipped files.
    h.get_by_label_contains("2 classes · 22 train / 2 val images · the model sees 3x32x32");
    h.get_by_label("2 files skipped").click();
    for _ in 0..5 {
        h.step();
    }
    h.get_by_label_contains("blue/broken.png: ");
    h.get_by_label_contains("notes.png: not in a class folder");
    h.get_by_label("Add run").click();
    h.step();
    let lab = h.state().lab().expect("lab");
    assert_eq!(lab.runs.len(), 2, "{:?}", h.state().runs_panel.form_error);
    let r = &lab.runs[1];
    assert_eq!(r.data.class_names, vec!["blue", "red"]);
    assert!(
        Arc::ptr_eq(&r.data, &d),
        "the run trains on the decoded folder"
    );
    h.state_mut().lab.as_mut().expect("lab").runs[1].running = true;
    run_until(&mut h, 240, "training on the folder", |a| {
        a.lab()
            .is_some_and(|l| l.runs[1].history.train_loss.len() >= 3)
    });
    let r = &h.state().lab().expect("lab").runs[1];
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.last_loss().is_some_and(f32::is_finite));
    // A photo dropped now is classified by this run, at its input, with its classes.
    h.state_mut().selected = Some(r.id);
    drop_file(&mut h, "probe.png".into(), png(50, 40, [230, 30, 30], 99));
    run_until(&mut h, 60, "a prediction", |a| a.classify.top3.is_some());
    let (id, top) = h.state().classify.top3.clone().expect("top");
    assert_eq!(id, h.state().lab().expect("lab").runs[1].id);
    let names: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
    assert!(
        names.contains(&"red") && names.contains(&"blue"),
        "{names:?}"
    );
    h.step();
    h.get_by_label_contains("probe.png (50x40");
    std::fs::remove_dir_all(&dir).ok();
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        w.start_file(name.as_str(), opt).expect("entry");
        w.write_all(bytes).expect("write");
    }
    w.finish().expect("zip").into_inner()
}

#[test]
fn a_dropped_zip_is_a_folder_and_one_class_is_a_clear_message() {
    let mut h = harness();
    let mut entries = Vec::new();
    for i in 0..3 {
        entries.push((
            format!("shapes/train/a/{i}.png"),
            png(20, 20, [200, 200, 200], i),
        ));
        entries.push((
            format!("shapes/train/b/{i}.png"),
            png(20, 20, [20, 20, 20], i),
        ));
    }
    entries.push(("shapes/val/a/v.png".into(), png(20, 20, [200, 200, 200], 7)));
    drop_file(&mut h, "shapes.zip".into(), zip_of(&entries));
    run_until(&mut h, 60, "the zip to decode", decoded);
    let f = h.state().runs_panel.folder.as_ref().expect("folder");
    let d = f.data.clone().expect("data");
    // The form's model (the MNIST CNN) takes grey 28x28: the folder is converted so.
    assert_eq!(d.train.shape, [1, 28, 28]);
    assert_eq!(d.counts(), vec![(3, 1), (3, 0)]);
    for _ in 0..5 {
        h.step();
    }
    h.get_by_label_contains("validation: the val/ (or test/) folder");
    // The MNIST CNN takes the folder's two classes.
    h.get_by_label("Add run").click();
    h.step();
    let lab = h.state().lab().expect("lab");
    assert_eq!(lab.runs.len(), 2, "{:?}", h.state().runs_panel.form_error);
    assert_eq!(lab.runs[1].data.class_names, vec!["a", "b"]);
    // One class: said in the form, and Add run is not offered.
    let one: Vec<(String, Vec<u8>)> = entries
        .into_iter()
        .filter(|e| e.0.contains("/a/"))
        .collect();
    drop_file(&mut h, "one.zip".into(), zip_of(&one));
    run_until(&mut h, 60, "the second zip", decoded);
    for _ in 0..5 {
        h.step();
    }
    h.get_by_label_contains("a classifier needs at least two classes");
    let runs = h.state().lab().expect("lab").runs.len();
    h.get_by_label("Add run").click();
    h.step();
    assert_eq!(h.state().lab().expect("lab").runs.len(), runs);
}

/// A state dict as torchvision's `save_file(model.state_dict())` writes it: safetensors
/// without nnlab's metadata.
fn state_dict_bytes(state: &gpu_nn::nn::HostState) -> Vec<u8> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = state
        .iter()
        .map(|(k, t)| {
            let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (k.clone(), t.shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw
        .iter()
        .map(|(k, s, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("view");
            (k.clone(), v)
        })
        .collect();
    safetensors::serialize(views, None).expect("serialize")
}

#[test]
fn dropped_torchvision_weights_fine_tune_a_resnet18_on_a_folder_with_the_backbone_frozen() {
    let dir = std::env::temp_dir().join(format!("nnlab-finetune-{}", std::process::id()));
    write_folder(&dir);
    let mut h = harness();
    // ImageNet weights stand-in: a torchvision-named ResNet-18 with 1000 classes.
    let gpu = h.state().gpu().expect("gpu").clone();
    let info = nnlab::registry::find("resnet18").expect("resnet18");
    let tv = info.build(&gpu, [3, 32, 32], 1000, 3).expect("build");
    let file = gpu_nn::nn::read_state_blocking(tv.as_ref()).expect("state");
    drop(tv);
    let mut form = RunSettings::for_model("resnet18");
    form.batch = 4;
    h.state_mut().runs_panel.form = form;
    h.state_mut().runs_panel.folder_side = Some(32);
    drop_file(
        &mut h,
        "resnet18.safetensors".into(),
        state_dict_bytes(&file),
    );
    let form = &h.state().runs_panel.form;
    assert!(
        form.weights.is_some() && form.finetune,
        "weights for the form"
    );
    assert_eq!(
        h.state().lab().expect("lab").runs.len(),
        1,
        "not a run of its own"
    );
    drop_file(&mut h, dir.clone(), Vec::new());
    run_until(&mut h, 60, "the folder to decode", decoded);
    for _ in 0..5 {
        h.step();
    }
    h.get_by_label_contains("Weights: resnet18.safetensors");
    h.get_by_label("Add run").click();
    h.step();
    let lab = h.state().lab().expect("lab");
    assert_eq!(lab.runs.len(), 2, "{:?}", h.state().runs_panel.form_error);
    let c = lab.runs[1].classifier().expect("classifier");
    // Only the new head trains: 512 * 2 + 2 parameters.
    let trainable: usize = gpu_nn::nn::parameters(c.net.as_ref())
        .iter()
        .map(|t| t.shape().iter().product::<usize>())
        .sum();
    assert_eq!(trainable, 1026);
    let before = gpu_nn::nn::read_state_blocking(c.net.as_ref()).expect("state");
    assert_eq!(
        before["layer3.1.conv2.weight"],
        file["layer3.1.conv2.weight"]
    );
    assert_eq!(before["fc.weight"].shape, vec![2, 512]);
    h.state_mut().lab.as_mut().expect("lab").runs[1].running = true;
    run_until(&mut h, 300, "fine-tuning steps", |a| {
        a.lab()
            .is_some_and(|l| l.runs[1].history.train_loss.len() >= 12)
    });
    h.state_mut().lab.as_mut().expect("lab").runs[1].running = false;
    run_until(&mut h, 60, "steps in flight", |a| {
        a.lab().is_some_and(|l| !l.runs[1].busy())
    });
    let r = &h.state().lab().expect("lab").runs[1];
    assert!(r.error.is_none(), "{:?}", r.error);
    let after =
        gpu_nn::nn::read_state_blocking(r.classifier().expect("c").net.as_ref()).expect("state");
    // The backbone's weights are bit-identical and the head has moved. Batch norm's
    // running statistics follow the new images, as in PyTorch's train mode.
    let buffer = |k: &str| k.contains("running_") || k.ends_with("num_batches_tracked");
    for (k, t) in &before {
        if k.starts_with("fc.") {
            assert_ne!(&after[k], t, "{k} did not train");
        } else if !buffer(k) {
            assert_eq!(&after[k], t, "{k} changed");
        }
    }
    assert_ne!(after["bn1.running_mean"], before["bn1.running_mean"]);
    let losses: Vec<f32> = r
        .history
        .train_loss
        .points()
        .iter()
        .map(|p| p.value)
        .collect();
    let first: f32 = losses[..4].iter().sum();
    let last: f32 = losses[losses.len() - 4..].iter().sum();
    assert!(last < first, "the head fits the folder: {losses:?}");
    std::fs::remove_dir_all(&dir).ok();
}
