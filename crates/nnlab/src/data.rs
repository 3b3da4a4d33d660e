//! Datasets: IDX files (MNIST, Fashion-MNIST, KMNIST), raw or gzipped, and batching.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::init::SeedRng;
use gpu_nn::{Gpu, Tensor};

/// Images and labels in host memory, already normalised.
pub struct Dataset {
    /// N * C * H * W values.
    pub images: Vec<f32>,
    /// One class per image.
    pub labels: Vec<u8>,
    /// (C, H, W)
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Uploads images `idx` as one batch [n, C, H, W] plus labels [n].
    pub fn batch(&self, gpu: &Gpu, idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let per: usize = self.shape.iter().product();
        let mut x = Vec::with_capacity(idx.len() * per);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.images[i * per..(i + 1) * per]);
            y.push(f32::from(self.labels[i]));
        }
        let [c, h, w] = self.shape;
        Ok((
            Tensor::from_slice(gpu, &x, &[idx.len(), c, h, w])?,
            Tensor::from_slice(gpu, &y, &[idx.len()])?,
        ))
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

/// Reads a file, gunzipping it when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    gunzip_if_needed(raw, path)
}

/// Gunzips `raw` when it starts with the gzip magic; `path` names it in errors.
fn gunzip_if_needed(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of unsigned bytes with `ndims` dimensions; returns (dims, data).
pub fn parse_idx(bytes: &[u8], ndims: usize, path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let name = path.display();
    ensure!(bytes.len() >= 4, "{name}: too short for an IDX header");
    ensure!(
        bytes[0] == 0 && bytes[1] == 0,
        "{name}: not an IDX file (bad magic {:02x}{:02x})",
        bytes[0],
        bytes[1]
    );
    ensure!(
        bytes[2] == 0x08,
        "{name}: IDX element type 0x{:02x}, expected unsigned bytes (0x08)",
        bytes[2]
    );
    ensure!(
        usize::from(bytes[3]) == ndims,
        "{name}: {} dimensions, expected {ndims}",
        bytes[3]
    );
    let header = 4 + 4 * ndims;
    ensure!(bytes.len() >= header, "{name}: truncated header");
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .with_context(|| format!("{name}: dimensions {dims:?} overflow"))?;
    let have = bytes.len() - header;
    ensure!(
        have == want,
        "{name}: header says {dims:?} = {want} bytes of data, file has {have} (truncated or padded)"
    );
    Ok((dims, bytes[header..].to_vec()))
}

/// Loads an IDX image file and its label file, normalising pixels with (mean, std).
pub fn load_idx_pair(images: &Path, labels: &Path, mean: f32, std: f32) -> Result<Dataset> {
    idx_pair_from_bytes(
        read_maybe_gz(images)?,
        images,
        read_maybe_gz(labels)?,
        labels,
        mean,
        std,
    )
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
    let (idims, pixels) = parse_idx(&gunzip_if_needed(images_bytes, images)?, 3, images)?;
    let (ldims, labels_raw) = parse_idx(&gunzip_if_needed(labels_bytes, labels)?, 1, labels)?;
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
    let images_f = pixels
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - mean) / std)
        .collect();
    Ok(Dataset {
        images: images_f,
        labels: labels_raw,
        shape: [1, idims[1], idims[2]],
        classes: 10,
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

/// The test sets compiled into the binary (see assets/README.md for their licences).
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

    /// Decodes the bundled 10k test set (a few hundred ms; works in the browser).
    pub fn load(self) -> Result<Dataset> {
        let (images, labels): (&[u8], &[u8]) = match self {
            Bundled::Mnist => (
                include_bytes!("../../../assets/mnist/t10k-images-idx3-ubyte.gz"),
                include_bytes!("../../../assets/mnist/t10k-labels-idx1-ubyte.gz"),
            ),
            Bundled::FashionMnist => (
                include_bytes!("../../../assets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
                include_bytes!("../../../assets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
            ),
        };
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
        assert_eq!(d.images[1], 1.0);
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
            let n = d.images.len() as f64;
            let mean = d.images.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = d
                .images
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
