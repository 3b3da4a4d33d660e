//! The `nnlab` binary as a user runs it, on tiny data: train with checkpoints and metrics,
//! resume, eval, classify (including a corrupt file), the GAN, and bad arguments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run nnlab")
}

fn ok(args: &[&str]) -> String {
    let o = nnlab(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "nnlab {args:?} failed:\n{out}\n{err}");
    out
}

/// Runs a command that must fail; returns its stderr, which must be one line.
fn fails(args: &[&str]) -> String {
    let o = nnlab(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "nnlab {args:?} should fail");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnlab-cli-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn train_resume_eval_classify() {
    let dir = tmp("train");
    let ck = dir.join("ck");
    let metrics = dir.join("m.csv");
    let base = [
        "train",
        "--data",
        "mnist",
        "--limit",
        "32",
        "--checkpoint-dir",
        s(&ck),
        "--metrics",
        s(&metrics),
    ];
    let out = ok(&[&base[..], &["--epochs", "1", "--batch-size", "16"]].concat());
    assert!(
        out.contains("demo split") && out.contains("epoch 1:"),
        "{out}"
    );
    let last = ck.join("last.safetensors");
    assert!(last.is_file());
    let csv = std::fs::read_to_string(&metrics).expect("metrics");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("epoch,step,train_loss"), "{csv}");

    // A setting the checkpoint holds is not silently dropped on resume: it is refused.
    let e = fails(&[&base[..], &["--epochs", "2", "--resume", "--lr", "1e30"]].concat());
    assert!(e.contains("--lr") && e.contains("--resume"), "{e}");

    // Resume to 2 epochs: continues from step 2, the metrics file keeps epoch 1.
    let out = ok(&[&base[..], &["--epochs", "2", "--resume"]].concat());
    assert!(
        out.contains("resuming mnist-cnn") && out.contains("step 2"),
        "{out}"
    );
    assert!(
        out.contains("epoch 2:") && !out.contains("epoch 1:"),
        "{out}"
    );
    let csv = std::fs::read_to_string(&metrics).expect("metrics");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.lines().nth(2).expect("row").starts_with("2,4,"),
        "{csv}"
    );

    // A third epoch with a mid-epoch checkpoint after each step.
    let out = ok(&[
        &base[..],
        &["--epochs", "3", "--resume", "--save-every", "1"],
    ]
    .concat());
    assert!(
        out.contains("at step 5") && out.contains("epoch 3:"),
        "{out}"
    );
    let out = ok(&[
        "eval",
        "--checkpoint",
        s(&last),
        "--data",
        "mnist",
        "--limit",
        "20",
        "--json",
        "--confusion",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("eval JSON");
    // The matrix holds every image once, and its diagonal is the accuracy.
    let rows: Vec<Vec<u64>> =
        serde_json::from_value(v["confusion"]["counts"].clone()).expect("confusion counts");
    let total: u64 = rows.iter().flatten().sum();
    let trace: u64 = (0..rows.len()).map(|i| rows[i][i]).sum();
    assert_eq!((rows.len(), total), (10, 20), "{v}");
    assert_eq!(
        trace as f64 / 20.0,
        v["accuracy"].as_f64().expect("accuracy"),
        "{v}"
    );
    let text = ok(&[
        "eval",
        "--checkpoint",
        s(&last),
        "--data",
        "mnist",
        "--limit",
        "20",
        "--confusion",
    ]);
    assert!(
        text.contains("predicted") && text.matches('%').count() >= 11,
        "{text}"
    );
    let e = fails(&["eval", "--checkpoint", s(&last), "--data", "fashion-mnist"]);
    assert!(e.contains("are not the model's"), "{e}");
    assert_eq!(v["images"], 20);
    let acc = v["accuracy"].as_f64().expect("accuracy");
    assert!(
        (0.0..=1.0).contains(&acc) && v["loss"].as_f64().is_some(),
        "{v}"
    );

    // A 40x30 colour PNG: converted to 28x28 grey like the training data.
    let png = dir.join("digit.png");
    let img = image::RgbImage::from_fn(40, 30, |x, _| {
        let v = if (18..22).contains(&x) { 255 } else { 0 };
        image::Rgb([v, v, v])
    });
    img.save(&png).expect("png");
    let out = ok(&[
        "classify",
        s(&png),
        "--checkpoint",
        s(&last),
        "--top-k",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("classify JSON");
    let r = &v["results"][0];
    assert_eq!(r["top"].as_array().expect("top").len(), 2);
    assert_eq!(r["logits"].as_array().expect("logits").len(), 10);
    let p: f64 = r["probabilities"]
        .as_array()
        .expect("probs")
        .iter()
        .map(|x| x.as_f64().expect("f"))
        .sum();
    assert!((p - 1.0).abs() < 1e-4, "{p}");
    let out = ok(&["classify", s(&png), "--checkpoint", s(&last)]);
    assert!(out.contains("digit.png: ") && out.contains('%'), "{out}");

    // Grad-CAM as a PNG overlay, the 28x28 input enlarged to 224x224.
    let cams = dir.join("cams");
    let out = ok(&[
        "explain",
        s(&png),
        "--checkpoint",
        s(&last),
        "--class",
        "3",
        "--out",
        s(&cams),
    ]);
    assert!(out.contains("class 3 at conv2"), "{out}");
    let cam = image::open(cams.join("digit-gradcam.png")).expect("overlay");
    assert_eq!((cam.width(), cam.height()), (224, 224));
    let e = fails(&[
        "explain",
        s(&png),
        "--checkpoint",
        s(&last),
        "--layer",
        "fc9",
        "--out",
        s(&cams),
    ]);
    assert!(e.contains("fc9") && e.contains("conv1, conv2"), "{e}");

    // A corrupt image fails the command, naming the file; nothing is printed.
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let o = nnlab(&["classify", s(&png), s(&bad), "--checkpoint", s(&last)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && o.stdout.is_empty());
    assert!(
        err.contains("broken.png") && err.contains("cannot decode"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Not a checkpoint at all.
    let e = fails(&["eval", "--checkpoint", s(&bad), "--data", "mnist"]);
    assert!(
        e.contains("broken.png") && e.contains("not a valid safetensors"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cosine_schedule_anneals_per_epoch_and_is_in_the_metrics() {
    let dir = tmp("cosine");
    let metrics = dir.join("m.json");
    let out = ok(&[
        "train",
        "--data",
        "mnist",
        "--limit",
        "16",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--lr",
        "0.02",
        "--cosine",
        "--metrics",
        s(&metrics),
    ]);
    assert!(out.contains("epoch 2:"), "{out}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).expect("metrics")).expect("json");
    let lr: Vec<f64> = (0..2)
        .map(|i| rows[i]["lr"].as_f64().expect("lr"))
        .collect();
    // T_max = 2 epochs: 0.02, then 0.02 * (1 + cos(pi / 2)) / 2.
    assert!(
        (lr[0] - 0.02).abs() < 1e-7 && (lr[1] - 0.01).abs() < 1e-7,
        "{lr:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gan_trains_checkpoints_and_writes_a_grid() {
    let dir = tmp("gan");
    let ck = dir.join("ck");
    let grid = dir.join("grid.png");
    let out = ok(&[
        "gan",
        "--limit",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--width",
        "0.25",
        "--checkpoint-dir",
        s(&ck),
    ]);
    assert!(out.contains("epoch 1: D loss"), "{out}");
    let last = ck.join("last.safetensors");
    ok(&[
        "gan",
        "--checkpoint",
        s(&last),
        "--out",
        s(&grid),
        "--samples",
        "6",
    ]);
    let img = image::open(&grid).expect("grid PNG").to_luma8();
    // A (barely trained) classifier judges the samples.
    let cls = dir.join("cls");
    ok(&[
        "train",
        "--data",
        "mnist",
        "--limit",
        "16",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--checkpoint-dir",
        s(&cls),
    ]);
    let out = ok(&[
        "gan",
        "--checkpoint",
        s(&last),
        "--out",
        s(&grid),
        "--samples",
        "6",
        "--judge",
        s(&cls.join("last.safetensors")),
    ]);
    assert!(
        out.contains("judge mnist-cnn: ") && out.contains("/6 samples"),
        "{out}"
    );
    // 3 columns x 2 rows of 28x28 with 2-pixel borders.
    assert_eq!(img.dimensions(), (3 * 30 + 2, 2 * 30 + 2));
    // Resuming takes width, batch and seed from the checkpoint: giving them is an error.
    let e = fails(&[
        "gan",
        "--resume",
        "--checkpoint-dir",
        s(&ck),
        "--epochs",
        "2",
        "--width",
        "1",
        "--seed",
        "3",
    ]);
    assert!(
        e.contains("--width, --seed would be ignored") && e.trim().lines().count() == 1,
        "{e}"
    );
    // A GAN checkpoint is not a classifier.
    let e = fails(&["eval", "--checkpoint", s(&last), "--data", "mnist"]);
    assert!(e.contains("gan, not a classifier"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_arguments_exit_non_zero_with_one_clear_line() {
    for sub in ["train", "eval", "classify", "gan", "bench", "info"] {
        let out = ok(&[sub, "--help"]);
        assert!(out.contains("Usage"), "{sub}: {out}");
    }
    let e = fails(&["train", "--data", "mnist", "--bogus"]);
    assert!(e.contains("--bogus"), "{e}");
    let e = fails(&["train", "--data", "/no/such/dir"]);
    assert!(
        e.contains("/no/such/dir") && e.trim().lines().count() == 1,
        "{e}"
    );
    let e = fails(&["train", "--data", "mnist", "--model", "nope"]);
    assert!(e.contains("unknown model 'nope'"), "{e}");
    let e = fails(&["train", "--data", "mnist", "--metrics", "m.txt"]);
    assert!(e.contains(".csv or .json"), "{e}");
    let e = fails(&["train", "--data", "mnist", "--resume"]);
    assert!(e.contains("--checkpoint-dir"), "{e}");
    let e = fails(&[
        "train",
        "--data",
        "mnist",
        "--checkpoint-dir",
        "x",
        "--save-every",
        "0",
    ]);
    assert!(e.contains("--save-every"), "{e}");
    let e = fails(&[
        "eval",
        "--checkpoint",
        "/no/such.safetensors",
        "--data",
        "mnist",
    ]);
    assert!(e.contains("cannot read /no/such.safetensors"), "{e}");
    let e = fails(&["classify", "--checkpoint", "x.safetensors"]);
    assert!(e.contains("IMAGES"), "{e}");
    let e = fails(&["classify", "a.png"]);
    assert!(e.contains("--checkpoint"), "{e}");
    let e = fails(&["classify", "a.png", "--weights", "w.safetensors"]);
    assert!(e.contains("--model"), "{e}");
    let e = fails(&["gan", "--checkpoint", "/no/such.safetensors"]);
    assert!(e.contains("--out"), "{e}");
}

#[test]
fn bench_reports_throughput_and_with_profile_where_the_time_goes() {
    let args = [
        "bench",
        "--models",
        "mnist-cnn",
        "--warmup",
        "1",
        "--steps",
        "2",
        "--json",
        "--profile",
    ];
    let out = ok(&args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("bench prints JSON");
    assert!(v["adapter"].as_str().is_some_and(|a| !a.is_empty()), "{v}");
    let r = &v["results"][0];
    assert_eq!(r["model"], "mnist-cnn");
    for key in ["train_img_per_s", "infer_img_per_s"] {
        assert!(r[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {r}");
    }
    let kernels = r["train_kernels"].as_array().expect("kernel table");
    // MnistCnn's step runs its convolutions forward and backward, on any device.
    let entries: Vec<&str> = kernels.iter().filter_map(|k| k["entry"].as_str()).collect();
    assert!(entries.iter().any(|e| e.starts_with("conv")), "{entries:?}");
    let share: f64 = kernels.iter().filter_map(|k| k["share"].as_f64()).sum();
    assert!(
        share > 0.5 && share <= 1.0 + 1e-9,
        "top kernels' share {share}"
    );
    // The plain table names the adapter and no kernels.
    let table = ok(&[
        "bench",
        "--models",
        "mnist-cnn",
        "--warmup",
        "0",
        "--steps",
        "1",
    ]);
    assert!(
        table.contains("adapter:") && table.contains("mnist-cnn"),
        "{table}"
    );
    assert!(!table.contains("ms/step"), "{table}");
}

#[test]
fn a_diverging_run_exits_with_the_message_and_keeps_the_good_checkpoint() {
    let dir = tmp("diverge");
    let ck = dir.join("ck");
    let base = [
        "train",
        "--data",
        "mnist",
        "--limit",
        "64",
        "--batch-size",
        "16",
        "--checkpoint-dir",
        s(&ck),
        "--epochs",
        "1",
    ];
    ok(&base);
    let last = ck.join("last.safetensors");
    let good = std::fs::read(&last).expect("checkpoint");
    // A fresh run into the same directory with an absurd learning rate: the weights blow
    // up at the first step, the second step's loss is NaN.
    let e = fails(&[&base[..], &["--lr", "1e30"]].concat());
    assert!(
        e.contains("diverged") && e.contains("lower learning rate"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert_eq!(
        std::fs::read(&last).expect("checkpoint"),
        good,
        "overwritten"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_lost_device_exits_non_zero_saying_so_and_keeps_the_last_checkpoint() {
    let dir = tmp("lost");
    let ck = dir.join("ck");
    let base = [
        "train",
        "--data",
        "mnist",
        "--limit",
        "64",
        "--checkpoint-dir",
        s(&ck),
    ];
    ok(&[&base[..], &["--epochs", "1", "--batch-size", "16"]].concat());
    let last = ck.join("last.safetensors");
    let good = std::fs::read(&last).expect("checkpoint");
    // Resumed for two more epochs, the device is destroyed before the first.
    let o = Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args([&base[..], &["--epochs", "3", "--resume"]].concat())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("NNLAB_LOSE_DEVICE_AFTER", "4")
        .output()
        .expect("run nnlab");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("device was lost"), "{err}");
    assert_eq!(
        std::fs::read(&last).expect("checkpoint"),
        good,
        "overwritten"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unwritable_output_paths_fail_at_once_naming_them() {
    let dir = tmp("unwritable");
    // A path under a regular file cannot be created, whoever runs the test (root included).
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").expect("file");
    let under = file.join("sub");
    let (metrics, grid) = (under.join("m.csv"), under.join("g.png"));
    let onnx = under.join("m.onnx");
    let cases: [(&[&str], &str); 4] = [
        (
            &["train", "--data", "mnist", "--checkpoint-dir", s(&under)],
            "--checkpoint-dir",
        ),
        (
            &["train", "--data", "mnist", "--metrics", s(&metrics)],
            "--metrics",
        ),
        (&["gan", "--out", s(&grid)], "--out"),
        (
            &["export", "--model", "mnist-cnn", "--onnx", s(&onnx)],
            "--onnx",
        ),
    ];
    for (args, flag) in cases {
        let t0 = std::time::Instant::now();
        let e = fails(args);
        let took = t0.elapsed();
        assert!(e.contains(flag) && e.contains("a-file/sub"), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(
            took < std::time::Duration::from_secs(2),
            "{flag}: took {took:?}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn study_prints_every_study_as_json_and_plots_it() {
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&ok(args)).expect("study JSON")
    };
    let g = json(&[
        "study",
        "gradients",
        "--model",
        "resnet20-plain",
        "--no-batch-norm",
        "--default-init",
        "--batch-size",
        "8",
    ]);
    let layers = g["runs"][0]["layers"].as_array().expect("layers");
    // 19 convs and the fc; no projection shortcuts in a plain net.
    assert_eq!(layers.len(), 20, "{g}");
    assert!(
        layers
            .iter()
            .all(|l| l["grad_norm"].as_f64().is_some_and(|v| v > 0.0))
    );
    let dir = tmp("study");
    for model in ["resnet8", "googlenet-small"] {
        let ck = dir.join(model);
        ok(&[
            "train",
            "--model",
            model,
            "--data",
            "mnist",
            "--limit",
            "64",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--checkpoint-dir",
            s(&ck),
        ]);
        let last = ck.join("last.safetensors");
        let study = if model == "resnet8" {
            "lesion"
        } else {
            "branches"
        };
        let v = json(&[
            "study",
            study,
            "--checkpoint",
            s(&last),
            "--data",
            "mnist",
            "--limit",
            "64",
        ]);
        let acc = v["accuracy"].as_f64().expect("accuracy");
        // The baseline is what `nnlab eval` reports.
        let e: serde_json::Value = serde_json::from_str(&ok(&[
            "eval",
            "--checkpoint",
            s(&last),
            "--data",
            "mnist",
            "--limit",
            "64",
            "--json",
        ]))
        .expect("eval");
        assert_eq!(Some(acc), e["accuracy"].as_f64(), "{v}");
        if study == "lesion" {
            let blocks = v["blocks"].as_array().expect("blocks");
            assert_eq!(blocks.len(), 3, "{v}");
            assert!(
                blocks.iter().all(|b| b["accuracy"].as_f64().is_some()),
                "{v}"
            );
        } else {
            for m in v["modules"].as_array().expect("modules") {
                let total: f64 = m["branches"]
                    .as_array()
                    .expect("branches")
                    .iter()
                    .map(|b| b["energy_share"].as_f64().expect("share"))
                    .sum();
                assert!((total - 1.0).abs() < 1e-4, "{m}");
                for b in m["branches"].as_array().expect("branches") {
                    // Per class as overall: a change within [-1, 1] for each of ten classes.
                    let d = b["per_class_delta"].as_array().expect("per class");
                    assert_eq!(d.len(), 10, "{b}");
                    assert!(
                        d.iter().all(|x| x.as_f64().is_none_or(|x| x.abs() <= 1.0)),
                        "{b}"
                    );
                }
            }
        }
    }
    // Response and landscape of the trained ResNet-8, each with its plot.
    let r8 = dir.join("resnet8").join("last.safetensors");
    let plot = dir.join("response.png");
    let v = json(&[
        "study",
        "--plot",
        s(&plot),
        "response",
        "--checkpoint",
        s(&r8),
        "--data",
        "mnist",
        "--batch-size",
        "8",
    ]);
    assert_eq!(
        v["runs"][0]["blocks"].as_array().map(Vec::len),
        Some(3),
        "{v}"
    );
    assert!(image::open(&plot).is_ok_and(|i| i.width() == 900));
    let plot = dir.join("landscape.png");
    let v = json(&[
        "study",
        "--plot",
        s(&plot),
        "landscape",
        "--checkpoint",
        s(&r8),
        "--checkpoint",
        s(&r8),
        "--data",
        "mnist",
        "--batch-size",
        "8",
        "--grid",
        "3",
        "--line",
        "3",
    ]);
    let grid = v["runs"][1]["grid"].as_array().expect("grid");
    assert_eq!(grid.len(), 9, "{v}");
    assert!(
        grid.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)),
        "{v}"
    );
    // A chart and one map per checkpoint.
    assert!(image::open(&plot).is_ok_and(|i| i.width() == 3 * 900));
    // The race of four runs, briefly.
    let v = json(&[
        "study",
        "degradation",
        "--shallow",
        "8",
        "--deep",
        "14",
        "--width",
        "0.25",
        "--epochs",
        "1",
        "--limit",
        "32",
        "--batch-size",
        "16",
    ]);
    let runs: Vec<&str> = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["model"].as_str())
        .collect();
    assert_eq!(
        runs,
        ["resnet8-plain", "resnet8", "resnet14-plain", "resnet14"]
    );
    let e = fails(&["study", "gradients", "--model", "mnist-cnn"]);
    assert!(e.contains("CIFAR-style"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
