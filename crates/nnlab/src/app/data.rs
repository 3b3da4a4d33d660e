//! The datasets runs train on, shared between runs that chose the same one (and dropped
//! when no run uses it any more).

use std::sync::{Arc, OnceLock, Weak};

use anyhow::{Result, ensure};

use crate::core::gan::to_tanh_range;
use crate::data::{Bundled, Dataset};
use crate::folder::{FolderData, FolderFiles, FolderLoad};
use crate::images::Preprocess;

/// An image folder's files, shared: two choices are the same folder only when they hold
/// the very same files (a folder picked twice is decoded twice).
#[derive(Clone)]
pub struct FolderRef(pub Arc<FolderFiles>);

impl PartialEq for FolderRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FolderRef {}

impl std::fmt::Debug for FolderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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
    /// A directory with the four MNIST-format IDX files or CIFAR-10 batches (native only:
    /// it reads files).
    Dir(std::path::PathBuf),
    /// An image folder (a directory, a `.zip`, or the files of a browser's folder input),
    /// decoded at `shape` (C, H, W).
    Folder {
        /// Its files.
        files: FolderRef,
        /// What each image is converted to.
        shape: [usize; 3],
    },
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
            DataChoice::Folder { files, .. } => files.0.name.clone(),
        }
    }

    /// An image folder's files decoded at `shape`.
    pub fn folder(files: &Arc<FolderFiles>, shape: [usize; 3]) -> Self {
        DataChoice::Folder {
            files: FolderRef(Arc::clone(files)),
            shape,
        }
    }

    /// The `--limit` it has, if any.
    pub fn limit(&self) -> Option<usize> {
        match self {
            DataChoice::Bundled { limit, .. } => *limit,
            DataChoice::Dir(_) | DataChoice::Folder { .. } => None,
        }
    }

    /// What checkpoint metadata says about the data (`train.data`, `train.limit`), as
    /// `nnlab train` writes it, for a model taking `input`; `None` when it names nothing
    /// this build can load.
    pub fn from_meta(name: &str, limit: Option<usize>, input: [usize; 3]) -> Option<Self> {
        if let Some(set) = Bundled::from_name(name) {
            return Some(DataChoice::Bundled { set, limit });
        }
        #[cfg(not(target_arch = "wasm32"))]
        if limit.is_none() && std::path::Path::new(name).is_dir() {
            let dir = std::path::Path::new(name);
            if crate::data::is_idx_or_cifar_dir(dir) {
                return Some(DataChoice::Dir(name.into()));
            }
            let files = FolderFiles::from_dir(dir).ok()?;
            return Some(DataChoice::folder(&Arc::new(files), input));
        }
        let _ = input;
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
            DataChoice::Folder { files, shape } => {
                let n = &files.0.name;
                let short = n.trim_end_matches('/').rsplit('/').next().unwrap_or(n);
                format!("{short} at {}x{}x{}", shape[0], shape[1], shape[2])
            }
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
    /// How the validation images were chosen.
    pub split: String,
    /// Files left out, with why (image folders).
    pub skipped: Vec<(String, String)>,
    /// Something to show beside the data (an image folder without validation images).
    pub warning: Option<String>,
    /// The training images in [-1, 1] for the DCGAN, made when a GAN run first asks.
    gan_train: OnceLock<Dataset>,
}

impl Data {
    /// Loads what `choice` names.
    pub fn load(choice: &DataChoice) -> Result<Self> {
        let (train, val, class_names, mean, std, name, split) = match choice {
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
                let split = "the last 1000 images of the bundled test set".to_string();
                (train, val, names, vec![m], vec![s], name, split)
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
                let split = l.description.clone();
                (l.train, l.val, l.class_names, l.mean, l.std, name, split)
            }
            #[cfg(target_arch = "wasm32")]
            DataChoice::Dir(_) => anyhow::bail!("the browser cannot read directories"),
            DataChoice::Folder { files, shape } => {
                let p = Preprocess::default_for(*shape)?;
                let f = FolderLoad::new(Arc::clone(&files.0), p)?.finish()?;
                return Ok(Self::from_folder(choice, f));
            }
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
            split,
            skipped: Vec::new(),
            warning: None,
            gan_train: OnceLock::new(),
        })
    }

    /// A decoded image folder as the data of `choice`.
    pub fn from_folder(choice: &DataChoice, f: FolderData) -> Self {
        Self {
            choice: choice.clone(),
            name: f.describe(),
            warning: f.warning(),
            split: if f.explicit_split {
                "the val/ (or test/) folder".into()
            } else {
                "every tenth image of each class, in name order".into()
            },
            mean: f.train.mean.clone(),
            std: f.train.std.clone(),
            train: f.train,
            val: f.val,
            class_names: f.classes,
            skipped: f.skipped,
            gan_train: OnceLock::new(),
        }
    }

    /// Training and validation images per class.
    pub fn counts(&self) -> Vec<(usize, usize)> {
        let v = self.val.class_counts();
        self.train.class_counts().into_iter().zip(v).collect()
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
                pixels: self.train.pixels.clone(),
                labels: self.train.labels.clone(),
                ..Dataset::empty(self.train.shape, self.train.classes, vec![], vec![])
            };
            to_tanh_range(&mut d);
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

    /// Makes data decoded elsewhere (an image folder decoded over frames) what `get`
    /// returns for its choice, for as long as someone holds it.
    pub fn adopt(&mut self, d: &Arc<Data>) {
        self.sets.retain(|w| w.strong_count() > 0);
        self.sets.push(Arc::downgrade(d));
    }

    /// Sets held by some run.
    pub fn live(&self) -> usize {
        self.sets.iter().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_choice_is_the_same_only_for_the_exact_same_data() {
        assert_eq!(Bundled::from_name("mnist"), Some(Bundled::Mnist));
        assert_eq!(
            Bundled::from_name("fashion-mnist"),
            Some(Bundled::FashionMnist)
        );
        for near in ["mnist2", "MNIST", " mnist", "fashion", "fashion-mnist/"] {
            assert_eq!(Bundled::from_name(near), None, "{near:?}");
        }
        let dir = |p: &str| DataChoice::Dir(p.into());
        assert_eq!(dir("/data/mnist"), dir("/data/mnist"));
        assert_ne!(dir("/data/mnist"), dir("/data/mnist2"));
        assert_ne!(dir("/data/mnist"), dir("/data/mnist/train"));
        // Two folders with the same name and files are two choices: each is decoded for itself.
        let files = || {
            let list = vec![
                ("a/x.png".to_string(), vec![0u8]),
                ("b/y.png".into(), vec![1]),
            ];
            Arc::new(FolderFiles::from_memory("photos", list).expect("files"))
        };
        let (one, two) = (files(), files());
        let shape = [3, 32, 32];
        assert_eq!(
            DataChoice::folder(&one, shape),
            DataChoice::folder(&one, shape)
        );
        assert_ne!(
            DataChoice::folder(&one, shape),
            DataChoice::folder(&two, shape)
        );
        assert_ne!(
            DataChoice::folder(&one, shape),
            DataChoice::folder(&one, [3, 64, 64])
        );
        assert_ne!(
            DataChoice::bundled(Bundled::Mnist),
            DataChoice::Bundled {
                set: Bundled::Mnist,
                limit: Some(100)
            }
        );
    }
}
