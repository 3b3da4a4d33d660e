//! Hostile files: arbitrary bytes and mutations of valid files never panic the parsers
//! (IDX, CIFAR-10 batches, checkpoints, torchvision weights, dropped images); each either
//! loads or returns an error naming the source. Sizes are bounded by what the file
//! declares and by the caps (`MAX_IDX_BYTES`, `images::MAX_SIDE` and `MAX_ALLOC`), which the
//! parsers check before allocating.

use std::path::Path;

use gpu_nn::Gpu;
use proptest::prelude::*;

use nnlab::checkpoint::Checkpoint;
use nnlab::data::{MAX_IDX_BYTES, parse_cifar_batch, parse_idx};

fn valid_idx() -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, 3];
    for d in [2u32, 3, 4] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..24).map(|i| i as u8));
    v
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn valid_checkpoint() -> Vec<u8> {
    let mut tensors = gpu_nn::nn::HostState::new();
    tensors.insert(
        "model.w".into(),
        gpu_nn::nn::HostTensor {
            shape: vec![2, 3],
            data: vec![0.5; 6],
        },
    );
    Checkpoint {
        meta: serde_json::json!({"format": nnlab::checkpoint::FORMAT,
            "version": nnlab::checkpoint::VERSION, "kind": "classifier"}),
        tensors,
    }
    .to_bytes()
    .expect("checkpoint")
}

fn valid_png() -> Vec<u8> {
    let img = image::GrayImage::from_fn(9, 7, |x, y| image::Luma([(x * 20 + y) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// A valid file with bytes flipped, a cut, or junk appended.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    (
        proptest::collection::vec((0..n, any::<u8>()), 0..6),
        0..=n,
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(move |(flips, cut, tail)| {
            let mut v = valid.clone();
            for (i, b) in flips {
                v[i] ^= b;
            }
            v.truncate(cut.max(1));
            v.extend(tail);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn idx_files_load_within_what_they_declare_or_fail_naming_the_file(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            mutated(valid_idx()),
            mutated(gz(&valid_idx())),
        ]
    ) {
        match parse_idx(&bytes, 3, Path::new("x.idx")) {
            Ok((dims, data)) => {
                prop_assert_eq!(data.len(), dims.iter().product::<usize>());
                prop_assert!(data.len() <= MAX_IDX_BYTES);
            }
            Err(e) => { let m = format!("{e:#}"); prop_assert!(m.contains("x.idx"), "{}", m) },
        }
    }

    #[test]
    fn cifar_batches_parse_or_fail_naming_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..7000)
    ) {
        match parse_cifar_batch(&bytes, Path::new("b.bin")) {
            Ok((labels, pixels)) => prop_assert_eq!(pixels.len(), labels.len() * 3072),
            Err(e) => { let m = format!("{e:#}"); prop_assert!(m.contains("b.bin"), "{}", m) },
        }
    }

    #[test]
    fn checkpoints_load_or_fail_naming_the_file(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            mutated(valid_checkpoint()),
        ]
    ) {
        if let Err(e) = Checkpoint::from_bytes(&bytes, "c.safetensors") {
            { let m = format!("{e:#}"); prop_assert!(m.contains("c.safetensors"), "{}", m) };
        }
    }

    #[test]
    fn dropped_images_prepare_or_fail_naming_the_file(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            mutated(valid_png()),
        ]
    ) {
        match nnlab::app::dropped::prepare(&bytes, "d.png", &nnlab::app::dropped::Target {
            shape: [1, 28, 28],
            mean: vec![0.5],
            std: vec![0.5],
            digits: true,
        }) {
            Ok(p) => prop_assert_eq!(p.input.len(), 28 * 28),
            Err(e) => { let m = format!("{e:#}"); prop_assert!(m.contains("d.png"), "{}", m) },
        }
    }
}

/// torchvision weights with mutated bytes into a real model: an error naming the file, or
/// a load that fits; never a panic, never a half-loaded model.
#[test]
fn mutated_torchvision_weights_load_whole_or_not_at_all() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)");
    let net = nnlab::registry::find("mnist-cnn")
        .and_then(|m| m.build(&gpu, [1, 28, 28], 10, 1))
        .expect("model");
    let state = gpu_nn::nn::read_state_blocking(net.as_ref()).expect("state");
    let good = Checkpoint {
        meta: serde_json::json!({}),
        tensors: state.clone(),
    }
    .to_bytes()
    .expect("bytes");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    runner
        .run(&mutated(good), |bytes| {
            match nnlab::weights::load_bytes(net.as_ref(), &bytes, "w.safetensors", None) {
                // Flipped bits in the values still fit: put the original weights back.
                Ok(()) => {
                    gpu_nn::nn::load_state(net.as_ref(), &state, true).expect("restore");
                }
                Err(e) => {
                    {
                        let m = format!("{e:#}");
                        prop_assert!(m.contains("w.safetensors"), "{}", m)
                    };
                    // Nothing was written: the model still holds what it held.
                    let now = gpu_nn::nn::read_state_blocking(net.as_ref()).expect("state");
                    prop_assert!(now == state);
                }
            }
            Ok(())
        })
        .expect("property");
}

/// Metadata declaring absurd sizes is refused before anything is built from it.
#[test]
fn crafted_checkpoint_metadata_is_refused_before_it_is_used() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe on CI)");
    let names: Vec<String> = (0..200_000).map(|i| i.to_string()).collect();
    let meta = serde_json::json!({
        "format": nnlab::checkpoint::FORMAT, "version": nnlab::checkpoint::VERSION,
        "kind": "classifier",
        "model": {"name": "mnist-cnn", "input": [1, 28, 28], "class_names": names,
                  "mean": [0.5], "std": [0.5]},
        "optimizer": {"kind": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
        "train": {"batch_size": 8, "seed": 1, "augment": false},
        "progress": {"epoch": 0, "batch": 0, "step": 0},
    });
    let c = Checkpoint {
        meta,
        tensors: Default::default(),
    };
    let bytes = c.to_bytes().expect("bytes");
    let c = Checkpoint::from_bytes(&bytes, "many.safetensors").expect("parses");
    let e = format!(
        "{:#}",
        nnlab::core::Classifier::from_checkpoint(&gpu, &c)
            .err()
            .expect("refused")
    );
    assert!(e.contains("200000 classes"), "{e}");
    // An input of absurd size is refused the same way.
    let mut big = c.clone();
    big.meta["model"]["class_names"] = serde_json::json!(["a", "b"]);
    big.meta["model"]["input"] = serde_json::json!([1, 100_000, 100_000]);
    let e = format!(
        "{:#}",
        nnlab::core::Classifier::from_checkpoint(&gpu, &big)
            .err()
            .expect("refused")
    );
    assert!(e.contains("input"), "{e}");
    // 25 million class names make a header of hundreds of MB: refused on its declared
    // length, before any of it is parsed.
    let mut huge = 250_000_000u64.to_le_bytes().to_vec();
    huge.extend_from_slice(br#"{"__metadata__":{"nnlab":"{\"model\":{\"class_names\":[\"0\","#);
    let e = format!(
        "{:#}",
        Checkpoint::from_bytes(&huge, "huge.safetensors").expect_err("refused")
    );
    assert!(
        e.contains("huge.safetensors") && e.contains("header declares 250000000 bytes"),
        "{e}"
    );
    // Metadata over the cap, in a header under it, is refused by its own check.
    let mut long = c.clone();
    long.meta["note"] = serde_json::json!("x".repeat(nnlab::checkpoint::MAX_META));
    let bytes = long.to_bytes().expect("bytes");
    let e = format!(
        "{:#}",
        Checkpoint::from_bytes(&bytes, "long.safetensors").expect_err("refused")
    );
    assert!(e.contains("bytes of metadata, more than"), "{e}");
}
