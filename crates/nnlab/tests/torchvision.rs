//! torchvision weights: loading by name into ResNet-18 and GoogLeNet gives torchvision's
//! eval-mode logits, bad files list what is wrong, and fine-tuning replaces only `fc`.
//! Fixtures: tests/parity/gen_torchvision.py (which says how they were made).
//!
//! Tolerance: |ours - torch| <= 1e-5 + 1e-4 * max|torch logit|. Both sides compute in f32
//! but sum in different orders (tiled GPU kernels vs. oneDNN) through 20+ layers; the
//! worst errors measured on lavapipe (printed by each test) were 2.1e-6 on logits up to 6.2
//! (narrow ResNet-18), 9e-7 (ResNet-18) and 1e-7 (GoogLeNet): 30x inside.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use gpu_nn::Gpu;
use gpu_nn::models::{GoogLeNet, ResNet, ResNetConfig};
use gpu_nn::nn::{self, Ctx, HostState, HostTensor, Module};
use nnlab::checkpoint::{Checkpoint, read_safetensors};
use nnlab::weights::load_bytes as load_weights_bytes;

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)")
}

fn fixture(name: &str) -> (PathBuf, Vec<u8>) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/parity/fixtures")
        .join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, bytes)
}

fn io(name: &str) -> (HostTensor, HostTensor, BTreeMap<String, String>) {
    let (_, bytes) = fixture(name);
    let (mut t, meta) = read_safetensors(&bytes, name).expect("fixture");
    let x = t.remove("x").expect("x");
    let y = t.remove("logits").expect("logits");
    (x, y, meta.into_iter().collect())
}

fn logits(gpu: &Gpu, net: &dyn Module, x: &HostTensor) -> Vec<f32> {
    let _g = gpu_nn::no_grad();
    let xt = gpu_nn::Tensor::from_slice(gpu, &x.data, &x.shape).expect("upload");
    net.forward(&xt, &mut Ctx::eval())
        .expect("forward")
        .to_vec_blocking()
        .expect("read")
}

fn assert_logits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let tol = 1e-5 + 1e-4 * scale;
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{what}: max |error| {err:.3e} (max |logit| {scale:.3e}, tolerance {tol:.3e})");
    assert!(err <= tol, "{what}: max error {err} > {tol}");
}

fn narrow_resnet18(gpu: &Gpu, classes: usize) -> ResNet {
    let cfg = ResNetConfig {
        widths: vec![8, 16, 32, 64],
        ..ResNetConfig::resnet18(classes)
    };
    ResNet::new(gpu, cfg, 5).expect("resnet")
}

#[test]
fn narrow_resnet18_from_torchvision_matches_its_logits() {
    let gpu = gpu();
    let (_, bytes) = fixture("tv_resnet18_w8.safetensors");
    let (x, want, _) = io("tv_resnet18_w8_io.safetensors");
    let net = narrow_resnet18(&gpu, 10);
    load_weights_bytes(&net, &bytes, "tv_resnet18_w8", None).expect("strict load");
    assert_logits(
        &logits(&gpu, &net, &x),
        &want.data,
        "resnet18 (widths 8-64)",
    );

    // Fine-tuning: a 3-class head; everything else comes from the file and is frozen.
    let ft = narrow_resnet18(&gpu, 3);
    load_weights_bytes(&ft, &bytes, "tv_resnet18_w8", Some("fc.")).expect("finetune load");
    nnlab::core::spec::freeze_backbone(&ft, "fc.").expect("freeze");
    let (file, _) = read_safetensors(&bytes, "w").expect("read");
    let state = nn::read_state_blocking(&ft).expect("state");
    assert_eq!(
        state["layer3.1.bn2.running_var"].data,
        file["layer3.1.bn2.running_var"].data
    );
    assert_eq!(state["fc.weight"].shape, vec![3, 64]);
    let trainable: Vec<Vec<usize>> = nn::parameters(&ft)
        .iter()
        .map(|t| t.shape().to_vec())
        .collect();
    assert_eq!(trainable, vec![vec![3, 64], vec![3]], "only fc trains");
}

#[test]
fn weights_that_do_not_fit_list_every_problem_and_load_nothing() {
    let gpu = gpu();
    let (_, bytes) = fixture("tv_resnet18_w8.safetensors");
    // Full-width ResNet-18: every conv is the wrong shape.
    let full = ResNet::new(&gpu, ResNetConfig::resnet18(10), 1).expect("resnet");
    let before = nn::read_state_blocking(&full).expect("state");
    let e = format!(
        "{:#}",
        load_weights_bytes(&full, &bytes, "w8.safetensors", None).expect_err("widths")
    );
    assert!(
        e.contains("w8.safetensors")
            && e.contains(
                "shape mismatch for conv1.weight: model [64, 3, 7, 7], file [8, 3, 7, 7]"
            )
            && e.contains("layer4.1.conv2.weight"),
        "{e}"
    );
    assert_eq!(before, nn::read_state_blocking(&full).expect("state"));
    // A key missing and one too many.
    let (mut file, _) = read_safetensors(&bytes, "w").expect("read");
    let v = file.remove("layer2.0.downsample.1.weight").expect("key");
    file.insert("layer2.0.extra.weight".into(), v);
    let bytes = Checkpoint {
        meta: serde_json::json!({}),
        tensors: file,
    }
    .to_bytes()
    .expect("ser");
    let e = format!(
        "{:#}",
        load_weights_bytes(&narrow_resnet18(&gpu, 10), &bytes, "edited", None).expect_err("keys")
    );
    assert!(
        e.contains("missing keys: layer2.0.downsample.1.weight")
            && e.contains("unexpected keys: layer2.0.extra.weight"),
        "{e}"
    );
}

/// The state the generator script sets by formula (see `formula` there).
fn formula_state(meta: &BTreeMap<String, String>) -> HostState {
    let list: Vec<(String, Vec<usize>)> =
        serde_json::from_str(meta.get("state").expect("state list")).expect("json");
    let mut out = HostState::new();
    for (k, (name, shape)) in list.into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("num_batches_tracked") {
            vec![0.0]
        } else {
            (0..n as u64)
                .map(|i| {
                    let h = (i * 2_654_435_761 + k as u64 * 40_503) % (1u64 << 32);
                    let u = h as f64 / 2f64.powi(32);
                    let v = if shape.len() >= 2 {
                        let fan_in: usize = shape[1..].iter().product();
                        (2.0 * u - 1.0) * (6.0 / fan_in as f64).sqrt()
                    } else if name.ends_with(".running_var") || name.ends_with(".weight") {
                        0.75 + 0.5 * u
                    } else {
                        0.1 * (2.0 * u - 1.0)
                    };
                    v as f32
                })
                .collect()
        };
        out.insert(name, HostTensor { shape, data });
    }
    out
}

fn formula_bytes(meta: &BTreeMap<String, String>) -> Vec<u8> {
    Checkpoint {
        meta: serde_json::json!({}),
        tensors: formula_state(meta),
    }
    .to_bytes()
    .expect("ser")
}

#[test]
fn full_size_resnet18_and_googlenet_match_torchvision() {
    let gpu = gpu();
    let (x, want, meta) = io("tv_resnet18_formula_io.safetensors");
    let net = ResNet::new(&gpu, ResNetConfig::resnet18(1000), 1).expect("resnet18");
    load_weights_bytes(&net, &formula_bytes(&meta), "resnet18", None).expect("load");
    assert_logits(&logits(&gpu, &net, &x), &want.data, "resnet18 (full size)");
    drop(net);

    let (x, want, meta) = io("tv_googlenet_formula_io.safetensors");
    let net = GoogLeNet::new(&gpu, 1000, 1).expect("googlenet");
    let bytes = formula_bytes(&meta);
    load_weights_bytes(&net, &bytes, "googlenet", None).expect("load");
    assert_logits(&logits(&gpu, &net, &x), &want.data, "googlenet (full size)");
    drop(net);
    // Fine-tuning GoogLeNet for 5 classes: only its new fc trains.
    let ft = GoogLeNet::new(&gpu, 5, 1).expect("googlenet");
    load_weights_bytes(&ft, &bytes, "googlenet", Some("fc.")).expect("finetune load");
    nnlab::core::spec::freeze_backbone(&ft, "fc.").expect("freeze");
    let trainable: Vec<Vec<usize>> = nn::parameters(&ft)
        .iter()
        .map(|t| t.shape().to_vec())
        .collect();
    assert_eq!(trainable, vec![vec![5, 1024], vec![5]]);
}

/// `nnlab classify --weights F` with 1000-class weights labels with ImageNet's class names,
/// each at its index in torchvision's order.
#[test]
fn thousand_class_weights_are_labelled_with_imagenet_names() {
    let dir = std::env::temp_dir().join(format!("nnlab-in1k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (_, _, meta) = io("tv_resnet18_formula_io.safetensors");
    let weights = dir.join("resnet18.safetensors");
    std::fs::write(&weights, formula_bytes(&meta)).expect("weights");
    let img = dir.join("photo.png");
    image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
    })
    .save(&img)
    .expect("png");
    let o = Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args(["classify", "--weights"])
        .arg(&weights)
        .args([
            "--model",
            "resnet18",
            "--image-size",
            "32",
            "--top-k",
            "5",
            "--json",
        ])
        .arg(&img)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run nnlab");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let names: Vec<&str> = include_str!("../../../assets/imagenet-classes.txt")
        .lines()
        .collect();
    assert_eq!(names.len(), 1000);
    assert_eq!((names[0], names[999]), ("tench", "toilet tissue"));
    let top = v["results"][0]["top"].as_array().expect("top 5");
    assert_eq!(top.len(), 5);
    for t in top {
        let i = t["index"].as_u64().expect("index") as usize;
        assert_eq!(t["class"].as_str(), Some(names[i]), "{t}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `nnlab train --model resnet18 --weights F --finetune --data DIR` on an image folder,
/// then `classify` with the result.
#[test]
fn cli_finetunes_resnet18_on_an_image_folder() {
    let dir = std::env::temp_dir().join(format!("nnlab-ft-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let (_, _, meta) = io("tv_resnet18_formula_io.safetensors");
    let weights = dir.join("resnet18.safetensors");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(&weights, formula_bytes(&meta)).expect("weights");
    let data = dir.join("data");
    for (class, rgb) in [("red", [220u8, 20, 20]), ("blue", [20, 20, 220])] {
        std::fs::create_dir_all(data.join(class)).expect("dir");
        for i in 0..3u8 {
            let img = image::RgbImage::from_fn(40 + u32::from(i), 36, |x, _| {
                image::Rgb(rgb.map(|c| c.saturating_add((x % 7) as u8)))
            });
            let ext = if i == 0 { "jpg" } else { "png" };
            img.save(data.join(class).join(format!("{i}.{ext}")))
                .expect("save");
        }
    }
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_nnlab"))
            .args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .expect("run");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.success(), out, err)
    };
    let ck = dir.join("ck");
    let (ok, out, err) = run(&[
        "train",
        "--model",
        "resnet18",
        "--weights",
        weights.to_str().expect("utf-8"),
        "--finetune",
        "--data",
        data.to_str().expect("utf-8"),
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "3",
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--checkpoint-dir",
        ck.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{out}\n{err}");
    // 512 * 2 + 2 parameters of the new fc train; the 11.2M of the backbone do not.
    assert!(
        out.contains("(1026 trainable)") && out.contains("2 classes"),
        "{out}"
    );
    let last = ck.join("last.safetensors");
    let probe = data.join("red").join("1.png");
    let (ok, out, err) = run(&[
        "classify",
        probe.to_str().expect("utf-8"),
        "--checkpoint",
        last.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["classes"], serde_json::json!(["blue", "red"]));
    // classify straight from torchvision weights: 1000 numbered classes.
    let (ok, out, err) = run(&[
        "classify",
        probe.to_str().expect("utf-8"),
        "--weights",
        weights.to_str().expect("utf-8"),
        "--model",
        "resnet18",
        "--image-size",
        "32",
        "--json",
    ]);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["results"][0]["logits"].as_array().expect("logits").len(),
        1000
    );
    assert_eq!(
        v["classes"][999], "toilet tissue",
        "1000 classes get ImageNet's names"
    );
    // Weights for another architecture: a clear error, nothing trains.
    let (ok, _, err) = run(&[
        "train",
        "--model",
        "resnet20",
        "--weights",
        weights.to_str().expect("utf-8"),
        "--finetune",
        "--data",
        data.to_str().expect("utf-8"),
    ]);
    assert!(
        !ok && err.contains("resnet18.safetensors") && err.contains("do not fit"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Fine-tuning at 224x224 on a device whose bindings hold a training batch but not the
/// whole validation set in one batch: the checkpoint is written and validation runs in
/// batches that fit (`GPU_NN_MAX_BINDING_BYTES` caps the binding size, as on a smaller GPU).
#[test]
fn finetuning_at_224_validates_in_batches_that_fit_and_saves() {
    let dir = std::env::temp_dir().join(format!("nnlab-ft224-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let (_, _, meta) = io("tv_resnet18_formula_io.safetensors");
    let weights = dir.join("resnet18.safetensors");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(&weights, formula_bytes(&meta)).expect("weights");
    let data = dir.join("data");
    for (split, n) in [("train", 2u8), ("val", 3)] {
        for (class, rgb) in [("red", [220u8, 20, 20]), ("blue", [20, 20, 220])] {
            let d = data.join(split).join(class);
            std::fs::create_dir_all(&d).expect("dir");
            for i in 0..n {
                let img = image::RgbImage::from_pixel(224, 224, image::Rgb(rgb));
                img.save(d.join(format!("{i}.png"))).expect("save");
            }
        }
    }
    let ck = dir.join("ck");
    // conv1's output is 3.2 MB per 224x224 image: 4 training images fit in 16 MiB, the 6
    // validation images in one batch do not.
    let o = Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args([
            "train",
            "--model",
            "resnet18",
            "--weights",
            weights.to_str().expect("utf-8"),
            "--finetune",
            "--data",
            data.to_str().expect("utf-8"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--checkpoint-dir",
            ck.to_str().expect("utf-8"),
        ])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("GPU_NN_MAX_BINDING_BYTES", (16u64 << 20).to_string())
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("val acc") && out.contains("saved"), "{out}");
    assert!(ck.join("last.safetensors").is_file());
    std::fs::remove_dir_all(&dir).ok();
}

/// With ImageNet-sized weights `nnlab classify` names torch's top five classes, in order,
/// for the fixture picture (`tv_resnet18_top5.*`, made by gen_torchvision.py from
/// torchvision's preprocessing, model and category names).
#[test]
fn classify_with_1000_class_weights_names_torchs_top5() {
    let dir = std::env::temp_dir().join(format!("nnlab-top5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (_, _, meta) = io("tv_resnet18_formula_io.safetensors");
    let weights = dir.join("resnet18.safetensors");
    std::fs::write(&weights, formula_bytes(&meta)).expect("weights");
    let (picture, _) = fixture("tv_resnet18_top5.png");
    let want: serde_json::Value =
        serde_json::from_slice(&fixture("tv_resnet18_top5.json").1).expect("json");
    let o = Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args(["classify", picture.to_str().expect("utf-8"), "--weights"])
        .arg(&weights)
        .args(["--model", "resnet18", "--top-k", "5", "--json"])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let got: Vec<&str> = v["results"][0]["top"]
        .as_array()
        .expect("top")
        .iter()
        .filter_map(|t| t["class"].as_str())
        .collect();
    let names: Vec<&str> = want["top5"]
        .as_array()
        .expect("top5")
        .iter()
        .filter_map(|t| t["class"].as_str())
        .collect();
    assert_eq!(names.len(), 5);
    assert_eq!(got, names, "nnlab's top five against torch's");
    let logits = v["results"][0]["logits"].as_array().expect("logits");
    for t in want["top5"].as_array().expect("top5") {
        let i = t["index"].as_u64().expect("index") as usize;
        let (ours, theirs) = (
            logits[i].as_f64().expect("f"),
            t["logit"].as_f64().expect("f"),
        );
        assert!(
            (ours - theirs).abs() <= 1e-5 + 1e-4 * theirs.abs(),
            "class {i}: {ours} vs {theirs}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
