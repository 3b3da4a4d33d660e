//! Datasets: IDX files (MNIST, Fashion-MNIST, KMNIST), raw or gzipped, CIFAR-10 binary
//! batches, image folders (in `images`), batching and augmentation (random crop + flip).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::init::SeedRng;
use gpu_nn::{Gpu, Tensor};

/// Images and labels in host memory. Pixels stay bytes (a quarter of the memory of
/// floats): each batch is normalised as it is made.
pub struct Dataset {
    /// N * C * H * W pixel values, 0 to 255.
    pub pixels: Vec<u8>,
    /// One class per image.
    pub labels: Vec<u8>,
    /// (C, H, W)
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Per-channel mean of pixels in [0, 1], subtracted when a batch is made.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the batch is divided by.
    pub std: Vec<f32>,
}

impl Dataset {
    /// An empty set of images of `shape` normalised with (`mean`, `std`).
    pub fn empty(shape: [usize; 3], classes: usize, mean: Vec<f32>, std: Vec<f32>) -> Dataset {
        Dataset {
            pixels: Vec::new(),
            labels: Vec::new(),
            shape,
            classes,
            mean,
            std,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (C * H * W).
    pub fn per_image(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image_pixels(&self, i: usize) -> &[u8] {
        let per = self.per_image();
        &self.pixels[i * per..(i + 1) * per]
    }

    /// Image `i` as the model sees it: normalised [C, H, W] values.
    pub fn input(&self, i: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.per_image());
        self.normalise_into(self.image_pixels(i), &mut out);
        out
    }

    /// Images `idx`, normalised, one after the other.
    pub fn inputs(&self, idx: impl IntoIterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for i in idx {
            self.normalise_into(self.image_pixels(i), &mut out);
        }
        out
    }

    /// Appends one image's pixels, normalised with this set's statistics.
    fn normalise_into(&self, px: &[u8], out: &mut Vec<f32>) {
        let plane = self.shape[1] * self.shape[2];
        out.extend(px.iter().enumerate().map(|(j, &p)| {
            let ch = (j / plane.max(1)) % self.shape[0].max(1);
            let (m, s) = (
                self.mean.get(ch).copied().unwrap_or(0.0),
                self.std.get(ch).copied().unwrap_or(1.0),
            );
            (f32::from(p) / 255.0 - m) / s
        }));
    }

    /// Uploads images `idx` as one batch [n, C, H, W] plus labels [n].
    pub fn batch(&self, gpu: &Gpu, idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let x = self.inputs(idx.iter().copied());
        self.upload(gpu, &x, idx)
    }

    fn upload(&self, gpu: &Gpu, x: &[f32], idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let y: Vec<f32> = idx.iter().map(|&i| f32::from(self.labels[i])).collect();
        let [c, h, w] = self.shape;
        Ok((
            Tensor::from_slice(gpu, x, &[idx.len(), c, h, w])?,
            Tensor::from_slice(gpu, &y, &[idx.len()])?,
        ))
    }

    /// Uploads images `idx` as one batch like [`Dataset::batch`], each randomly cropped
    /// (after padding with black pixels) and flipped horizontally with probability 1/2;
    /// `seed` fixes the choices.
    pub fn batch_augmented(
        &self,
        gpu: &Gpu,
        idx: &[usize],
        aug: &Augment,
        seed: u64,
    ) -> Result<(Tensor, Tensor)> {
        let mut rng = SeedRng::new(seed);
        let mut px = Vec::with_capacity(self.per_image());
        let mut x = Vec::with_capacity(idx.len() * self.per_image());
        for &i in idx {
            px.clear();
            augment_image(self.image_pixels(i), self.shape, aug, &mut rng, &mut px);
            self.normalise_into(&px, &mut x);
        }
        self.upload(gpu, &x, idx)
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        let per = self.per_image();
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * per);
    }

    /// Splits off the last `n` images (all if fewer) as a second set.
    pub fn split_off(&mut self, n: usize) -> Dataset {
        let per = self.per_image();
        let keep = self.len().saturating_sub(n);
        Dataset {
            pixels: self.pixels.split_off(keep * per),
            labels: self.labels.split_off(keep),
            ..Dataset::empty(
                self.shape,
                self.classes,
                self.mean.clone(),
                self.std.clone(),
            )
        }
    }

    /// Images per class, by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            if let Some(n) = c.get_mut(usize::from(l)) {
                *n += 1;
            }
        }
        c
    }

    /// Batches of indices covering the set once, shuffled with `seed` when given.
    pub fn batches(&self, batch: usize, seed: Option<u64>) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(s) = seed {
            SeedRng::new(s).shuffle(&mut order);
        }
        order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
    }
}

/// Training-time augmentation, as torchvision's `RandomCrop(size, padding=pad)` followed by
/// `RandomHorizontalFlip()`; the padding is black, as torchvision pads before normalising.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Zero-padding on each side before the random crop back to the original size.
    pub pad: usize,
    /// Flip horizontally with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// Pad 4 + flip, the CIFAR recipe.
    pub fn crop_flip() -> Augment {
        Augment { pad: 4, flip: true }
    }
}

/// Appends a randomly cropped and flipped copy of one [C, H, W] image to `out`.
pub fn augment_image(
    src: &[u8],
    [c, h, w]: [usize; 3],
    aug: &Augment,
    rng: &mut SeedRng,
    out: &mut Vec<u8>,
) {
    let p = aug.pad;
    // Offsets of the crop in the padded image, in [0, 2p].
    let dy = rng.below(2 * p + 1);
    let dx = rng.below(2 * p + 1);
    let flip = aug.flip && rng.below(2) == 1;
    for ch in 0..c {
        for y in 0..h {
            let sy = (y + dy).checked_sub(p).filter(|&v| v < h);
            for x in 0..w {
                let xo = if flip { w - 1 - x } else { x };
                let sx = (xo + dx).checked_sub(p).filter(|&v| v < w);
                out.push(match (sy, sx) {
                    (Some(sy), Some(sx)) => src[(ch * h + sy) * w + sx],
                    _ => 0,
                });
            }
        }
    }
}

/// Reads a file, gunzipping it when it starts with the gzip magic.
/// Largest IDX payload nnlab reads (1 GiB: over a million 28x28 images); a header that
/// declares more is refused before anything is inflated.
pub const MAX_IDX_BYTES: usize = 1 << 30;
/// Largest CIFAR-10 batch file read (the official ones are 30.7 MB).
const MAX_CIFAR_BYTES: usize = 64 << 20;

/// A reader of `raw`, inflating it when it starts with the gzip magic (every member of a
/// multi-member file: trailing members are data too).
fn maybe_gz(raw: &[u8]) -> Box<dyn Read + '_> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    }
}

/// Reads exactly `want` bytes from `r`, reading at most one byte more to tell a padded
/// file from a good one: a gzip bomb is never inflated beyond what the header declares.
fn read_declared(r: &mut dyn Read, want: usize, what: &str, name: &str) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(want.min(1 << 24));
    r.take(want as u64 + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("{name}: corrupt gzip data"))?;
    ensure!(
        data.len() <= want,
        "{name}: padded: more data than the {want} bytes {what} declares"
    );
    ensure!(
        data.len() == want,
        "{name}: truncated: {what} declares {want} bytes of data, the file has {}",
        data.len()
    );
    Ok(data)
}

/// Reads a file, inflated if gzipped, at most `max` bytes of it.
fn read_maybe_gz(path: &Path, max: usize) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display().to_string();
    let mut data = Vec::new();
    maybe_gz(&raw)
        .take(max as u64 + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("{name}: corrupt gzip data"))?;
    ensure!(data.len() <= max, "{name}: more than {max} bytes");
    Ok(data)
}

/// Parses an IDX file of unsigned bytes with `ndims` dimensions, raw or gzipped; returns
/// (dims, data). The header is read from the stream first, and at most the data it
/// declares (plus one byte) is inflated.
pub fn parse_idx(bytes: &[u8], ndims: usize, path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let name = path.display().to_string();
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let mut r = maybe_gz(bytes);
    let mut head = vec![0u8; 4 + 4 * ndims.min(8)];
    let read_head = |r: &mut dyn Read, buf: &mut [u8], what: &str| -> Result<()> {
        r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof if !gz => anyhow::anyhow!("{name}: {what}"),
            _ => anyhow::anyhow!("{name}: corrupt gzip data ({what}?): {e}"),
        })
    };
    read_head(&mut r, &mut head[..4], "too short for an IDX header")?;
    ensure!(
        head[0] == 0 && head[1] == 0,
        "{name}: not an IDX file (bad magic {:02x}{:02x})",
        head[0],
        head[1]
    );
    ensure!(
        head[2] == 0x08,
        "{name}: IDX element type 0x{:02x}, expected unsigned bytes (0x08)",
        head[2]
    );
    ensure!(
        usize::from(head[3]) == ndims,
        "{name}: {} dimensions, expected {ndims}",
        head[3]
    );
    read_head(&mut r, &mut head[4..], "truncated header")?;
    let dims: Vec<usize> = head[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .with_context(|| {
            format!(
                "{name}: header declares {dims:?}, more than the {MAX_IDX_BYTES} bytes nnlab reads"
            )
        })?;
    let data = read_declared(&mut r, want, &format!("the header ({dims:?})"), &name)?;
    Ok((dims, data))
}

/// Loads an IDX image file and its label file, normalising pixels with (mean, std).
pub fn load_idx_pair(images: &Path, labels: &Path, mean: f32, std: f32) -> Result<Dataset> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    idx_pair_from_bytes(read(images)?, images, read(labels)?, labels, mean, std)
}

/// Builds a dataset from the bytes of an IDX image file and its label file (either may be
/// gzipped); the paths only name them in errors.
pub fn idx_pair_from_bytes(
    images_bytes: Vec<u8>,
    images: &Path,
    labels_bytes: Vec<u8>,
    labels: &Path,
    mean: f32,
    std: f32,
) -> Result<Dataset> {
    let (idims, pixels) = parse_idx(&images_bytes, 3, images)?;
    let (ldims, labels_raw) = parse_idx(&labels_bytes, 1, labels)?;
    ensure!(
        idims[0] == ldims[0],
        "{} has {} images but {} has {} labels",
        images.display(),
        idims[0],
        labels.display(),
        ldims[0]
    );
    ensure!(idims[0] > 0, "{}: no images", images.display());
    if let Some(bad) = labels_raw.iter().find(|&&l| l > 9) {
        bail!("{}: label {bad} out of range 0..=9", labels.display());
    }
    Ok(Dataset {
        pixels,
        labels: labels_raw,
        ..Dataset::empty([1, idims[1], idims[2]], 10, vec![mean], vec![std])
    })
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: no {stem} or {stem}.gz", dir.display())
}

/// Loads the train and test splits of an MNIST-format directory (the four standard files,
/// raw or .gz). MNIST's normalisation (mean 0.1307, std 0.3081) is used.
pub fn load_mnist_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let (m, s) = (0.1307, 0.3081);
    let train = load_idx_pair(
        &find(dir, "train-images-idx3-ubyte")?,
        &find(dir, "train-labels-idx1-ubyte")?,
        m,
        s,
    )?;
    let test = load_idx_pair(
        &find(dir, "t10k-images-idx3-ubyte")?,
        &find(dir, "t10k-labels-idx1-ubyte")?,
        m,
        s,
    )?;
    Ok((train, test))
}

/// CIFAR-10 per-channel normalisation (mean, std) of pixels in [0, 1].
pub const CIFAR_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// See [`CIFAR_MEAN`].
pub const CIFAR_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// CIFAR-10 class names, in label order.
pub const CIFAR_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Bytes of one CIFAR-10 record: a label byte, then 32x32 red, green and blue planes.
const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// Parses one CIFAR-10 binary batch into (labels, pixels); `path` names it in errors.
pub fn parse_cifar_batch(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let name = path.display();
    ensure!(!bytes.is_empty(), "{name}: empty file");
    ensure!(
        bytes.len().is_multiple_of(CIFAR_RECORD),
        "{name}: {} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records \
         (truncated, or not a CIFAR-10 binary batch)",
        bytes.len()
    );
    let mut labels = Vec::with_capacity(bytes.len() / CIFAR_RECORD);
    let mut pixels = Vec::with_capacity(bytes.len() / CIFAR_RECORD * (CIFAR_RECORD - 1));
    for (i, r) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
        ensure!(
            r[0] <= 9,
            "{name}: record {i} has label {}, expected 0..=9 (not a CIFAR-10 binary batch?)",
            r[0]
        );
        labels.push(r[0]);
        pixels.extend_from_slice(&r[1..]);
    }
    Ok((labels, pixels))
}

/// Normalises CIFAR-10 pixels (RGB planes, bytes) with [`CIFAR_MEAN`] / [`CIFAR_STD`].
fn cifar_dataset(labels: Vec<u8>, pixels: Vec<u8>) -> Dataset {
    Dataset {
        pixels,
        labels,
        ..Dataset::empty([3, 32, 32], 10, CIFAR_MEAN.to_vec(), CIFAR_STD.to_vec())
    }
}

/// True when `dir` holds MNIST-format IDX files or CIFAR-10 batches (not an image folder).
pub fn is_idx_or_cifar_dir(dir: &Path) -> bool {
    find(dir, "train-images-idx3-ubyte").is_ok() || is_cifar_dir(dir)
}

/// True when `dir` (or its `cifar-10-batches-bin` sub-folder) holds CIFAR-10 binary batches.
pub fn is_cifar_dir(dir: &Path) -> bool {
    cifar_root(dir).is_some()
}

fn cifar_root(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join("data_batch_1.bin").is_file() || d.join("test_batch.bin").is_file())
}

/// Loads CIFAR-10's binary version: `data_batch_1.bin` .. `data_batch_5.bin` (those present,
/// in order, with no gaps) for training and `test_batch.bin` for testing, from `dir` or its
/// `cifar-10-batches-bin` sub-folder.
pub fn load_cifar_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let root = cifar_root(dir).with_context(|| {
        format!(
            "{}: no CIFAR-10 binary batches (data_batch_1.bin, test_batch.bin)",
            dir.display()
        )
    })?;
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for i in 1..=5 {
        let p = root.join(format!("data_batch_{i}.bin"));
        if !p.is_file() {
            ensure!(i > 1, "{}: missing", p.display());
            break;
        }
        let (l, px) = parse_cifar_batch(&read_maybe_gz(&p, MAX_CIFAR_BYTES)?, &p)?;
        labels.extend(l);
        pixels.extend(px);
    }
    let tp = root.join("test_batch.bin");
    ensure!(tp.is_file(), "{}: missing", tp.display());
    let (tl, tpx) = parse_cifar_batch(&read_maybe_gz(&tp, MAX_CIFAR_BYTES)?, &tp)?;
    Ok((cifar_dataset(labels, pixels), cifar_dataset(tl, tpx)))
}

/// A training and a validation set with what is needed to use them again (class names,
/// normalisation), as `--data` resolves them.
pub struct Loaded {
    /// Training images.
    pub train: Dataset,
    /// Validation (or test) images.
    pub val: Dataset,
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// Per-channel mean used to normalise pixels in [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// One line saying what was loaded (printed before training).
    pub description: String,
}

/// Resolves `--data`: a bundled set's name (`mnist`, `fashion-mnist`: the quick demo split
/// of the bundled 10k test set), or a directory holding the four MNIST-format IDX files,
/// CIFAR-10 binary batches, or an image folder. Image folders are converted to
/// `folder_input` (C, H, W), which is then required.
pub fn load_data(spec: &str, folder_input: Option<[usize; 3]>) -> Result<Loaded> {
    if let Some(b) = Bundled::from_name(spec) {
        let (train, val) = b.demo_split()?;
        let (m, s) = b.normalisation();
        return Ok(Loaded {
            train,
            val,
            class_names: b.class_names().iter().map(|s| s.to_string()).collect(),
            mean: vec![m],
            std: vec![s],
            description: format!(
                "bundled {} test set, demo split: first {} images to train, last {} to \
                 validate (not the official split; scripts/fetch-data gets the full set)",
                b.name(),
                Bundled::DEMO_TRAIN,
                Bundled::DEMO_VAL
            ),
        });
    }
    let dir = Path::new(spec);
    ensure!(
        dir.is_dir(),
        "--data {spec}: not a bundled set ({}) nor a directory",
        Bundled::ALL.map(Bundled::name).join(", ")
    );
    if find(dir, "train-images-idx3-ubyte").is_ok() {
        let (mut train, mut val) = load_mnist_dir(dir)?;
        // Recognise the official sets by their test labels (the bundled copies), so that
        // Fashion-MNIST gets its class names and statistics.
        let known = Bundled::ALL
            .into_iter()
            .find(|b| b.test_labels().is_ok_and(|l| l == val.labels));
        let (names, mean, std, what) = match known {
            Some(b) => {
                let (m, s) = b.normalisation();
                let names = b.class_names().iter().map(|s| s.to_string()).collect();
                (names, m, s, b.name())
            }
            None => (
                (0..10).map(|i| i.to_string()).collect(),
                0.1307,
                0.3081,
                "IDX files",
            ),
        };
        for set in [&mut train, &mut val] {
            set.mean = vec![mean];
            set.std = vec![std];
        }
        return Ok(Loaded {
            train,
            val,
            class_names: names,
            mean: vec![mean],
            std: vec![std],
            description: format!("{what} in {spec}: train / t10k"),
        });
    }
    if is_cifar_dir(dir) {
        let (train, val) = load_cifar_dir(dir)?;
        return Ok(Loaded {
            train,
            val,
            class_names: CIFAR_CLASSES.iter().map(|s| s.to_string()).collect(),
            mean: CIFAR_MEAN.to_vec(),
            std: CIFAR_STD.to_vec(),
            description: format!("CIFAR-10 binary batches in {spec}"),
        });
    }
    let shape = folder_input.with_context(|| {
        format!("{spec}: neither IDX files nor CIFAR-10 batches, and this model has no image-folder input size")
    })?;
    let p = crate::images::Preprocess::default_for(shape)?;
    let f = crate::folder::load(crate::folder::FolderFiles::from_dir(dir)?, p.clone())?;
    let mut description = f.describe();
    for (path, why) in &f.skipped {
        description += &format!("\n  skipped {path}: {why}");
    }
    if let Some(w) = f.warning() {
        description += &format!("\n  warning: {w}");
    }
    Ok(Loaded {
        description,
        train: f.train,
        val: f.val,
        class_names: f.classes,
        mean: p.mean,
        std: p.std,
    })
}

/// The bundled test sets: compiled into the native binary, files next to the web page (see
/// assets/README.md for their licences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bundled {
    /// MNIST digits, 10k test images (CC BY-SA 3.0, LeCun and Cortes).
    Mnist,
    /// Fashion-MNIST, 10k test images (MIT, Zalando Research).
    FashionMnist,
}

impl Bundled {
    /// Every bundled set.
    pub const ALL: [Bundled; 2] = [Bundled::Mnist, Bundled::FashionMnist];

    /// Short name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bundled::Mnist => "mnist",
            Bundled::FashionMnist => "fashion-mnist",
        }
    }

    /// Looks a set up by its command-line name.
    pub fn from_name(name: &str) -> Option<Bundled> {
        Bundled::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Class names, in label order.
    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            Bundled::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Bundled::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }

    /// Normalisation (mean, std) of the set's pixels in [0, 1].
    pub fn normalisation(self) -> (f32, f32) {
        match self {
            Bundled::Mnist => (0.1307, 0.3081),
            Bundled::FashionMnist => (0.2860, 0.3530),
        }
    }

    /// Images of the bundled 10k test set used for training in the quick demo; the other
    /// [`Bundled::DEMO_VAL`] are held out for validation.
    pub const DEMO_TRAIN: usize = 9_000;
    /// Images held out for validation in the quick demo (the last 1000).
    pub const DEMO_VAL: usize = 1_000;

    /// The quick demo split of the bundled test set: the first 9000 images to train on, the
    /// last 1000 to validate on. Not the official split: for real results use the full
    /// training set (`scripts/fetch-data`).
    pub fn demo_split(self) -> Result<(Dataset, Dataset)> {
        let mut train = self.load()?;
        let val = train.split_off(Self::DEMO_VAL);
        Ok((train, val))
    }

    /// The labels of the bundled test set (cheap: no images decoded).
    pub fn test_labels(self) -> Result<Vec<u8>> {
        let (_, bytes) = crate::bundled::files(self)?;
        let p = Path::new("bundled").join(self.name());
        Ok(parse_idx(&bytes, 1, &p)?.1)
    }

    /// Decodes the bundled 10k test set (a few hundred ms; in the browser once the page has
    /// fetched its files).
    pub fn load(self) -> Result<Dataset> {
        let (images, labels) = crate::bundled::files(self)?;
        let (mean, std) = self.normalisation();
        let dir = Path::new("bundled").join(self.name());
        idx_pair_from_bytes(
            images.to_vec(),
            &dir.join("t10k-images-idx3-ubyte.gz"),
            labels.to_vec(),
            &dir.join("t10k-labels-idx1-ubyte.gz"),
            mean,
            std,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_idx_and_rejects_bad_files_naming_them() {
        let p = Path::new("x.idx");
        let (dims, data) = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), 2, p).expect("valid");
        assert_eq!(dims, vec![2, 3]);
        assert_eq!(data, vec![1, 2, 3, 4, 5, 6]);
        let truncated = idx(&[2, 3], &[1, 2, 3]);
        let e = parse_idx(&truncated, 2, p)
            .expect_err("truncated")
            .to_string();
        assert!(e.contains("x.idx") && e.contains("truncated"), "{e}");
        let mut bad_magic = idx(&[1], &[0]);
        bad_magic[0] = 7;
        assert!(
            parse_idx(&bad_magic, 1, p)
                .expect_err("magic")
                .to_string()
                .contains("magic")
        );
        let e = parse_idx(&idx(&[1], &[0]), 3, p)
            .expect_err("dims")
            .to_string();
        assert!(e.contains("expected 3"), "{e}");
    }

    #[test]
    fn loads_gzipped_pairs_and_checks_lengths() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("nnlab-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let imgs = idx(&[2, 2, 2], &[0, 255, 0, 255, 255, 0, 255, 0]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&imgs).expect("gzip");
        std::fs::write(dir.join("i.gz"), gz.finish().expect("gzip")).expect("write");
        std::fs::write(dir.join("l"), idx(&[2], &[3, 7])).expect("write");
        std::fs::write(dir.join("l3"), idx(&[3], &[3, 7, 1])).expect("write");
        let d = load_idx_pair(&dir.join("i.gz"), &dir.join("l"), 0.0, 1.0).expect("load");
        assert_eq!(d.len(), 2);
        assert_eq!(d.labels, vec![3, 7]);
        assert_eq!(d.input(0)[1], 1.0);
        let e = load_idx_pair(&dir.join("i.gz"), &dir.join("l3"), 0.0, 1.0)
            .err()
            .expect("length mismatch");
        assert!(e.to_string().contains("2 images") && e.to_string().contains("3 labels"));
        std::fs::write(dir.join("bad.gz"), [0x1f, 0x8b, 1, 2, 3]).expect("write");
        let e = load_idx_pair(&dir.join("bad.gz"), &dir.join("l"), 0.0, 1.0)
            .err()
            .expect("bad gzip");
        assert!(format!("{e:#}").contains("corrupt gzip"), "{e:#}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Resident memory of this process, in bytes (Linux).
    fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_inflating_it() {
        use std::io::Write;
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        };
        // A valid 1x28x28 IDX file, then 4 GiB of zeros in 64 further gzip members of 64 MiB
        // each (compressed once): a few MB on disk.
        let mut file = gz(&idx(&[1, 28, 28], &[0; 784]));
        let zeros = gz(&vec![0u8; 64 << 20]);
        for _ in 0..64 {
            file.extend_from_slice(&zeros);
        }
        assert!(file.len() < 8 << 20, "{} bytes", file.len());
        let before = resident_bytes();
        let t0 = std::time::Instant::now();
        let e = parse_idx(&file, 3, Path::new("bomb.gz")).expect_err("a padded file");
        let took = t0.elapsed();
        let e = format!("{e:#}");
        assert!(e.contains("bomb.gz") && e.contains("padded"), "{e}");
        assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
        if let (Some(a), Some(b)) = (before, resident_bytes()) {
            assert!(
                b.saturating_sub(a) < 100 << 20,
                "memory grew by {} bytes",
                b - a
            );
        }
        // A header declaring more than nnlab reads is refused before any data.
        let huge = gz(&idx(&[1 << 20, 1 << 10, 1 << 10], &[]));
        let e = format!(
            "{:#}",
            parse_idx(&huge, 3, Path::new("huge.gz")).expect_err("huge")
        );
        assert!(e.contains("huge.gz") && e.contains("more than"), "{e}");
    }

    #[test]
    fn augmentation_crops_with_fill_and_flips_deterministically() {
        // One 1x2x3 image: values 1..=6.
        let src: Vec<u8> = (1..=6).collect();
        let none = Augment {
            pad: 0,
            flip: false,
        };
        let mut out = Vec::new();
        augment_image(&src, [1, 2, 3], &none, &mut SeedRng::new(1), &mut out);
        assert_eq!(out, src, "pad 0 without flip is the identity");
        let aug = Augment { pad: 1, flip: true };
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let mut a = Vec::new();
            let mut b = Vec::new();
            augment_image(&src, [1, 2, 3], &aug, &mut SeedRng::new(seed), &mut a);
            augment_image(&src, [1, 2, 3], &aug, &mut SeedRng::new(seed), &mut b);
            assert_eq!(a, b, "same seed, same crop");
            assert_eq!(a.len(), 6);
            // Every value is the fill or a source pixel, and each row keeps its order
            // or its mirrored order.
            assert!(a.iter().all(|v| *v == 0 || src.contains(v)), "{a:?}");
            seen.insert(a.clone());
        }
        // 3 x 3 offsets x 2 flips = 18 distinct outputs; all appear in 200 draws.
        assert_eq!(seen.len(), 18, "{seen:?}");
        assert!(seen.contains(&vec![3, 2, 1, 6, 5, 4]), "plain flip occurs");
    }

    fn cifar_record(label: u8, v: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(v, 3072));
        r
    }

    #[test]
    fn loads_cifar_batches_and_rejects_bad_ones() {
        let dir = std::env::temp_dir().join(format!("nnlab-cifar-{}", std::process::id()));
        let root = dir.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&root).expect("tmp dir");
        let mut b1 = cifar_record(3, 255);
        b1.extend(cifar_record(9, 0));
        std::fs::write(root.join("data_batch_1.bin"), &b1).expect("write");
        std::fs::write(root.join("data_batch_2.bin"), cifar_record(1, 0)).expect("write");
        std::fs::write(root.join("test_batch.bin"), cifar_record(0, 0)).expect("write");
        assert!(is_cifar_dir(&dir));
        let (train, test) = load_cifar_dir(&dir).expect("load");
        assert_eq!(train.labels, vec![3, 9, 1]);
        assert_eq!(test.len(), 1);
        assert_eq!(train.shape, [3, 32, 32]);
        // First image is white: (1 - mean) / std per channel.
        let want = (1.0 - CIFAR_MEAN[2]) / CIFAR_STD[2];
        assert!((train.input(0)[2 * 1024] - want).abs() < 1e-6);
        // Truncated batch.
        std::fs::write(root.join("data_batch_2.bin"), &b1[..4000]).expect("write");
        let e = format!("{:#}", load_cifar_dir(&dir).err().expect("truncated"));
        assert!(
            e.contains("data_batch_2.bin") && e.contains("4000 bytes"),
            "{e}"
        );
        // Label out of range.
        std::fs::write(root.join("data_batch_2.bin"), cifar_record(12, 0)).expect("write");
        let e = format!("{:#}", load_cifar_dir(&dir).err().expect("label"));
        assert!(
            e.contains("data_batch_2.bin") && e.contains("label 12"),
            "{e}"
        );
        // Missing test batch.
        std::fs::write(root.join("data_batch_2.bin"), cifar_record(1, 0)).expect("write");
        std::fs::remove_file(root.join("test_batch.bin")).expect("rm");
        let e = format!("{:#}", load_cifar_dir(&dir).err().expect("no test"));
        assert!(e.contains("test_batch.bin") && e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn load_data_recognises_fashion_mnist_dirs_and_rejects_unknown_specs() {
        let dir = std::env::temp_dir().join(format!("nnlab-fm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        // Fashion-MNIST's real test labels with tiny 1x2 images; any IDX training pair.
        let labels = Bundled::FashionMnist.test_labels().expect("labels");
        let n = labels.len() as u32;
        let px: Vec<u8> = (0..n).flat_map(|_| [0u8, 255]).collect();
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx(&[n, 1, 2], &px)).expect("w");
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(&[n], &labels)).expect("w");
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(&[1, 1, 2], &[0, 255]),
        )
        .expect("w");
        std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[1], &[4])).expect("w");
        let spec = dir.to_str().expect("utf-8");
        let d = load_data(spec, None).expect("load");
        assert_eq!(d.class_names[9], "Ankle boot");
        let (m, s) = Bundled::FashionMnist.normalisation();
        assert_eq!(d.mean, vec![m]);
        // Pixels carry Fashion-MNIST's normalisation, not MNIST's.
        assert!(
            (d.train.input(0)[1] - (1.0 - m) / s).abs() < 1e-5,
            "{:?}",
            d.train.input(0)
        );
        assert!((d.val.input(0)[0] + m / s).abs() < 1e-5);
        // Other labels: digits and MNIST's statistics.
        let mut other = labels.clone();
        other[0] = (other[0] + 1) % 10;
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(&[n], &other)).expect("w");
        let d = load_data(spec, None).expect("load");
        assert_eq!(d.class_names[9], "9");
        assert_eq!(d.mean, vec![0.1307]);
        std::fs::remove_dir_all(&dir).ok();
        let e = format!(
            "{:#}",
            load_data("/no/such/dir", None).err().expect("missing")
        );
        assert!(
            e.contains("/no/such/dir") && e.contains("not a bundled set"),
            "{e}"
        );
    }

    #[test]
    fn bundled_test_sets_decode_with_ten_thousand_labelled_images() {
        for b in Bundled::ALL {
            let d = b.load().expect("bundled set");
            assert_eq!(d.len(), 10_000, "{b:?}");
            assert_eq!(d.shape, [1, 28, 28]);
            // Every class occurs (about 1000 each in both test sets).
            let mut counts = [0usize; 10];
            for &l in &d.labels {
                counts[usize::from(l)] += 1;
            }
            assert!(counts.iter().all(|&c| c > 800), "{b:?}: {counts:?}");
            // Normalised with the set's own statistics: mean about 0, std about 1.
            let x = d.inputs(0..d.len());
            let n = x.len() as f64;
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            assert!(
                mean.abs() < 0.05 && (var.sqrt() - 1.0).abs() < 0.05,
                "{b:?}: {mean} {var}"
            );
            assert_eq!(Bundled::from_name(b.name()), Some(b));
        }
    }
}
