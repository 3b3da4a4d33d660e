//! The headless subcommands, one module each: their arguments (clap) and what they do.
//! `main.rs` only dispatches. Native only: these block on the GPU and the file system.

mod bench;
mod classify;
mod eval;
mod explain;
mod export;
mod gan;
mod info;
mod models;
mod plot;
mod study;
mod study_plot;
mod summary;
mod train;

pub use bench::{BenchArgs, bench};
pub use classify::{ClassifyArgs, classify};
pub use eval::{EvalArgs, eval};
pub use explain::{ExplainArgs, explain_images};
pub use export::{ExportArgs, export};
pub use gan::{GanArgs, gan};
pub use info::info;
pub use models::{ModelsArgs, models};
pub use study::{StudyArgs, study};
pub use summary::{SummaryArgs, summary};
pub use train::{TrainArgs, train};

use std::path::Path;

use anyhow::{Context, Result, ensure};
use gpu_nn::Gpu;
use gpu_nn::nn::{self, Module};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::Checkpoint;
use crate::core::ModelSpec;
use crate::data::{self, Loaded};

/// File name of the latest checkpoint in a `--checkpoint-dir`.
pub const LAST: &str = "last.safetensors";

fn gpu() -> Result<Gpu> {
    pollster::block_on(Gpu::new()).context("no usable GPU")
}

fn bar(total: usize, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix);
    pb
}

/// Fails now, naming the path, if files cannot be created in `dir` (before any work that
/// would be lost when the first write fails).
fn ensure_writable_dir(dir: &Path, flag: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{flag} {}: cannot create the directory", dir.display()))?;
    let probe = dir.join(format!(".nnlab-write-test{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("{flag} {}: cannot write there", dir.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// [`ensure_writable_dir`] for the directory a file `path` goes into.
fn ensure_writable_file(path: &Path, flag: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    ensure!(
        !path.is_dir(),
        "{flag} {}: is a directory, not a file",
        path.display()
    );
    ensure_writable_dir(dir, flag)
}

/// Refuses the `(flag, given)` settings a resumed run takes from its checkpoint: a flag
/// given with `--resume` must not be dropped silently.
fn refuse_with_resume(flags: &[(&str, bool)]) -> Result<()> {
    let given: Vec<&str> = flags
        .iter()
        .filter_map(|&(flag, given)| given.then_some(flag))
        .collect();
    ensure!(
        given.is_empty(),
        "--resume takes the run's settings from its checkpoint; {} would be ignored (drop \
         {}, or start a new run in another --checkpoint-dir)",
        given.join(", "),
        if given.len() == 1 { "it" } else { "them" }
    );
    Ok(())
}

fn load_train_data(spec: &str, input: [usize; 3], limit: Option<usize>) -> Result<Loaded> {
    let mut d = data::load_data(spec, Some(input))?;
    if let Some(n) = limit {
        ensure!(n > 0, "--limit must be positive");
        d.train.truncate(n);
        d.val.truncate(n);
    }
    Ok(d)
}

/// Checks that `d` fits a model spec (input shape, classes) and takes the spec's
/// normalisation.
fn fit_data(d: &mut Loaded, spec: &ModelSpec) -> Result<()> {
    ensure!(
        d.train.shape == spec.input,
        "the data's images are {:?}, the model takes {:?}",
        d.train.shape,
        spec.input
    );
    ensure!(
        d.class_names == spec.class_names,
        "the data's classes {:?} are not the model's {:?}",
        d.class_names,
        spec.class_names
    );
    // Pixels are bytes: taking the model's normalisation is setting its statistics.
    for set in [&mut d.train, &mut d.val] {
        set.mean = spec.mean.clone();
        set.std = spec.std.clone();
    }
    d.mean = spec.mean.clone();
    d.std = spec.std.clone();
    Ok(())
}

/// Loads a checkpoint's classifier for inference (eval, classify, the GAN judge).
fn load_classifier(gpu: &Gpu, path: &Path) -> Result<(Box<dyn Module>, ModelSpec)> {
    let c = Checkpoint::load(path)?;
    let what = || path.display().to_string();
    let kind = c.meta_str(&["kind"]).with_context(what)?;
    ensure!(
        kind == "classifier",
        "{}: this checkpoint holds a {kind}, not a classifier",
        what()
    );
    let spec = ModelSpec::from_json(c.meta_field(&["model"])?).with_context(what)?;
    let net = spec
        .info()?
        .build_variant(gpu, spec.input, spec.classes(), 0, spec.variant)
        .with_context(what)?;
    nn::load_state(net.as_ref(), &c.section("model"), true)
        .with_context(|| format!("{}: checkpoint does not fit its model", what()))?;
    Ok((net, spec))
}
