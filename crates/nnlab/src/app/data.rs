//! The datasets runs train on, shared between runs that chose the same one (and dropped
//! when no run uses it any more).

use std::sync::{Arc, OnceLock, Weak};

use anyhow::{Result, ensure};

use crate::core::gan::to_tanh_range;
use crate::data::{Bundled, Dataset};

/// Which data a run trains on. Compared exactly: two runs share data only when they chose
/// the very same set (and limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataChoice {
    /// A bundled 10k test set, demo split 9k train / 1k validation; `limit` keeps the
    /// first images of each split (as `nnlab train --limit`).
    Bundled {
        /// Which set.
        set: Bundled,
        /// Images kept per split.
        limit: Option<usize>,
    },
    /// A directory with the four MNIST-format IDX files (native only: it reads files).
    Dir(std::path::PathBuf),
}

impl DataChoice {
    /// A bundled set, whole.
    pub fn bundled(set: Bundled) -> Self {
        DataChoice::Bundled { set, limit: None }
    }

    /// What `nnlab train --data` calls it (stored in checkpoints).
    pub fn cli_name(&self) -> String {
        match self {
            DataChoice::Bundled { set, .. } => set.name().to_string(),
            DataChoice::Dir(p) => p.display().to_string(),
        }
    }

    /// The `--limit` it has, if any.
    pub fn limit(&self) -> Option<usize> {
        match self {
            DataChoice::Bundled { limit, .. } => *limit,
            DataChoice::Dir(_) => None,
        }
    }

    /// What checkpoint metadata says about the data (`train.data`, `train.limit`), as
    /// `nnlab train` writes it; `None` when it names nothing this build can load.
    pub fn from_meta(name: &str, limit: Option<usize>) -> Option<Self> {
        if let Some(set) = Bundled::from_name(name) {
            return Some(DataChoice::Bundled { set, limit });
        }
        #[cfg(not(target_arch = "wasm32"))]
        if limit.is_none() && std::path::Path::new(name).is_dir() {
            return Some(DataChoice::Dir(name.into()));
        }
        None
    }

    /// Short label for the UI.
    pub fn label(&self) -> String {
        match self {
            DataChoice::Bundled { set, limit: None } => set.name().to_string(),
            DataChoice::Bundled {
                set,
                limit: Some(n),
            } => format!("{} (first {n})", set.name()),
            DataChoice::Dir(p) => p
                .file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
        }
    }
}

/// A training and a validation set with what the UI needs to describe them.
pub struct Data {
    /// What was chosen.
    pub choice: DataChoice,
    /// Shown in the UI.
    pub name: String,
    /// Training images.
    pub train: Dataset,
    /// Validation images.
    pub val: Dataset,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Per-channel mean the images were normalised with; dropped images get the same.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// The training images in [-1, 1] for the DCGAN, made when a GAN run first asks.
    gan_train: OnceLock<Dataset>,
}

impl Data {
    /// Loads what `choice` names.
    pub fn load(choice: &DataChoice) -> Result<Self> {
        let (train, val, class_names, mean, std, name) = match choice {
            DataChoice::Bundled { set, limit } => {
                let (mut train, mut val) = set.demo_split()?;
                if let Some(n) = limit {
                    ensure!(*n > 0, "a data limit must be positive");
                    train.truncate(*n);
                    val.truncate(*n);
                }
                let (m, s) = set.normalisation();
                let name = format!(
                    "{} (bundled, {} train / {} val)",
                    set.name(),
                    train.len(),
                    val.len()
                );
                let names = set.class_names().iter().map(|s| s.to_string()).collect();
                (train, val, names, vec![m], vec![s], name)
            }
            #[cfg(not(target_arch = "wasm32"))]
            DataChoice::Dir(dir) => {
                let l = crate::data::load_data(&dir.display().to_string(), None)?;
                let name = format!(
                    "{} ({} train / {} val)",
                    dir.display(),
                    l.train.len(),
                    l.val.len()
                );
                (l.train, l.val, l.class_names, l.mean, l.std, name)
            }
            #[cfg(target_arch = "wasm32")]
            DataChoice::Dir(_) => anyhow::bail!("the browser cannot read directories"),
        };
        ensure!(!train.is_empty(), "{name}: no training images");
        Ok(Self {
            choice: choice.clone(),
            name,
            train,
            val,
            class_names,
            mean,
            std,
            gan_train: OnceLock::new(),
        })
    }

    /// The training images rescaled to [-1, 1] (the generator's tanh range); grey only.
    pub fn gan_train(&self) -> Result<&Dataset> {
        ensure!(
            self.train.shape == [1, 28, 28],
            "the DCGAN makes 1x28x28 grey images; {} has {:?}",
            self.name,
            self.train.shape
        );
        Ok(self.gan_train.get_or_init(|| {
            let mut d = Dataset {
                images: self.train.images.clone(),
                labels: self.train.labels.clone(),
                shape: self.train.shape,
                classes: self.train.classes,
            };
            to_tanh_range(&mut d, self.mean[0], self.std[0]);
            d
        }))
    }
}

/// The data runs use, by exact choice; an entry lives as long as a run holds it.
#[derive(Default)]
pub struct DataCache {
    sets: Vec<Weak<Data>>,
}

impl DataCache {
    /// The data for `choice`: shared with any run that already uses it, else loaded.
    pub fn get(&mut self, choice: &DataChoice) -> Result<Arc<Data>> {
        self.sets.retain(|w| w.strong_count() > 0);
        if let Some(d) = self
            .sets
            .iter()
            .filter_map(Weak::upgrade)
            .find(|d| d.choice == *choice)
        {
            return Ok(d);
        }
        let d = Arc::new(Data::load(choice)?);
        self.sets.push(Arc::downgrade(&d));
        Ok(d)
    }

    /// Sets held by some run.
    pub fn live(&self) -> usize {
        self.sets.iter().filter(|w| w.strong_count() > 0).count()
    }
}
