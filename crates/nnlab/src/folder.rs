//! Image folders as datasets: one sub-folder of images per class (as torchvision's
//! `ImageFolder`), optionally split into `train/` and `val/` (or `test/`). The files come
//! from a directory, a `.zip` archive or a list the browser hands over; all three go
//! through the same layout rules and the same decoding, which can be spread over frames.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};

use crate::data::Dataset;
use crate::images::{self, Preprocess};

/// File extensions an image folder may hold; other files are ignored (as torchvision's
/// `ImageFolder` does).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "webp"];

/// Most files a folder or archive may list.
pub const MAX_FILES: usize = 200_000;
/// Largest single image file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most bytes the decoded images of one folder may take (as bytes, not floats), and the
/// most an archive may inflate to. Smaller in the browser, whose memory is one wasm heap.
pub const MAX_FOLDER_BYTES: u64 = if cfg!(target_arch = "wasm32") {
    1 << 30
} else {
    8 << 30
};

/// Where a file's bytes are.
#[derive(Clone)]
enum Content {
    Disk(PathBuf),
    Bytes(Arc<[u8]>),
}

/// The files of an image folder: paths below the folder ('/'-separated) and their bytes or
/// where to read them.
#[derive(Clone)]
pub struct FolderFiles {
    /// Names the folder in messages.
    pub name: String,
    files: Vec<(String, Content)>,
}

impl std::fmt::Debug for FolderFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FolderFiles({}, {} files)", self.name, self.files.len())
    }
}

/// True when `path` names a file an image folder may hold (by its extension).
pub fn is_image_name(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, e)| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Hidden files and folders, and the resource forks macOS puts into archives.
fn is_hidden(path: &str) -> bool {
    path.split('/')
        .any(|c| c.starts_with('.') || c == "__MACOSX")
}

impl FolderFiles {
    /// Lists a directory's image files (recursively, hidden ones left out). Nothing is read.
    pub fn from_dir(dir: &Path) -> Result<FolderFiles> {
        ensure!(dir.is_dir(), "{}: not a directory", dir.display());
        let mut files = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), String::new(), 0usize)];
        while let Some((d, rel, depth)) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .with_context(|| format!("cannot read directory {}", d.display()))?;
            for e in entries {
                let e = e.with_context(|| format!("cannot read directory {}", d.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let path = e.path();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if path.is_dir() {
                    // train/<class>/<sub-folder>/<image> is as deep as layouts go.
                    if depth < 4 {
                        stack.push((path, r, depth + 1));
                    }
                } else if is_image_name(&r) {
                    files.push((r, Content::Disk(path)));
                    ensure!(
                        files.len() <= MAX_FILES,
                        "{}: more than {MAX_FILES} images",
                        dir.display()
                    );
                }
            }
        }
        Ok(FolderFiles {
            name: dir.display().to_string(),
            files,
        })
    }

    /// The image files of a `.zip` archive, inflated: at most [`MAX_FOLDER_BYTES`] in all
    /// and [`MAX_FILE_BYTES`] each, whatever the archive declares.
    pub fn from_zip(bytes: &[u8], name: &str) -> Result<FolderFiles> {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .with_context(|| format!("{name}: not a zip archive nnlab can read"))?;
        ensure!(
            z.len() <= MAX_FILES,
            "{name}: {} entries, more than {MAX_FILES}",
            z.len()
        );
        let mut files = Vec::new();
        let mut total = 0u64;
        for i in 0..z.len() {
            let mut f = z
                .by_index(i)
                .with_context(|| format!("{name}: entry {i} is corrupt"))?;
            if !f.is_file() {
                continue;
            }
            // enclosed_name refuses absolute paths and '..' (no path escapes a folder).
            let Some(path) = f.enclosed_name() else {
                continue;
            };
            let path = path.to_string_lossy().replace('\\', "/");
            if !is_image_name(&path) || is_hidden(&path) {
                continue;
            }
            let mut data = Vec::new();
            (&mut f)
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut data)
                .with_context(|| format!("{name}: {path}: corrupt compressed data"))?;
            ensure!(
                data.len() as u64 <= MAX_FILE_BYTES,
                "{name}: {path} inflates to more than {} MiB",
                MAX_FILE_BYTES >> 20
            );
            total += data.len() as u64;
            ensure!(
                total <= MAX_FOLDER_BYTES,
                "{name}: the archive inflates to more than {} MiB",
                MAX_FOLDER_BYTES >> 20
            );
            files.push((path, Content::Bytes(data.into())));
        }
        Ok(FolderFiles {
            name: name.to_string(),
            files,
        })
    }

    /// Files handed over as (path below the folder, bytes), as a browser's folder input
    /// gives them; files that are not images are left out.
    pub fn from_memory(name: &str, list: Vec<(String, Vec<u8>)>) -> Result<FolderFiles> {
        ensure!(
            list.len() <= MAX_FILES,
            "{name}: more than {MAX_FILES} files"
        );
        let files = list
            .into_iter()
            .map(|(p, b)| (p.replace('\\', "/"), b))
            .filter(|(p, _)| is_image_name(p) && !is_hidden(p))
            .map(|(p, b)| (p, Content::Bytes(b.into())))
            .collect();
        Ok(FolderFiles {
            name: name.to_string(),
            files,
        })
    }

    /// Number of image files listed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no image file was found.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn read(&self, i: usize) -> Result<Arc<[u8]>> {
        match &self.files[i].1 {
            Content::Bytes(b) => Ok(Arc::clone(b)),
            Content::Disk(p) => {
                let len = std::fs::metadata(p)
                    .with_context(|| format!("cannot read {}", p.display()))?
                    .len();
                ensure!(
                    len <= MAX_FILE_BYTES,
                    "{} MiB, more than {} MiB",
                    len >> 20,
                    MAX_FILE_BYTES >> 20
                );
                Ok(std::fs::read(p)
                    .with_context(|| format!("cannot read {}", p.display()))?
                    .into())
            }
        }
    }
}

/// How the files fall into classes and splits.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Class names, sorted (labels are their indices).
    pub classes: Vec<String>,
    /// (file index, label, goes to validation), in name order within each class.
    pub items: Vec<(usize, u8, bool)>,
    /// True when `train/` and `val/` (or `test/`) gave the split; else every tenth image
    /// of each class is held out.
    pub explicit_split: bool,
    /// Files outside any class folder: (path, why), listed and skipped.
    pub ignored: Vec<(String, String)>,
}

/// Sorts the files into classes. A common top folder (the folder a zip was made of) is
/// looked through; `train/` with `val/` or `test/` beside it is the split.
pub fn layout(files: &FolderFiles) -> Result<Layout> {
    let name = &files.name;
    let mut paths: Vec<(usize, Vec<&str>)> = files
        .files
        .iter()
        .enumerate()
        .filter(|(_, (p, _))| !is_hidden(p))
        .map(|(i, (p, _))| (i, p.split('/').filter(|c| !c.is_empty()).collect()))
        .collect();
    paths.sort_by(|a, b| a.1.cmp(&b.1));
    ensure!(
        !paths.is_empty(),
        "{name}: no images ({})",
        IMAGE_EXTENSIONS.join(", ")
    );
    // Look through a top folder every file shares, as long as something lies deeper than
    // <top>/<file> (else the top folder is a lone class).
    let mut skip = 0;
    while paths.iter().any(|(_, c)| c.len() >= skip + 3)
        && paths
            .iter()
            .all(|(_, c)| c.len() >= skip + 2 && c[skip] == paths[0].1[skip])
    {
        skip += 1;
    }
    let tops: std::collections::BTreeSet<&str> = paths
        .iter()
        .filter(|(_, c)| c.len() >= skip + 3)
        .map(|(_, c)| c[skip])
        .collect();
    let explicit_split = tops.contains("train") && (tops.contains("val") || tops.contains("test"));
    let val_top = if tops.contains("val") { "val" } else { "test" };
    let mut ignored = Vec::new();
    // (file, class, validation?)
    let mut placed: Vec<(usize, &str, bool)> = Vec::new();
    for (i, c) in &paths {
        let c = &c[skip..];
        let path = files.files[*i].0.clone();
        if explicit_split {
            match (c.first().copied(), c.len()) {
                (Some("train"), n) if n >= 3 => placed.push((*i, c[1], false)),
                (Some(t), n) if t == val_top && n >= 3 => placed.push((*i, c[1], true)),
                _ => ignored.push((path, "not in train/<class>/ or val/<class>/".into())),
            }
        } else if c.len() >= 2 {
            placed.push((*i, c[0], false));
        } else {
            ignored.push((path, "not in a class folder".into()));
        }
    }
    let classes: Vec<String> = placed
        .iter()
        .filter(|p| !p.2)
        .map(|p| p.1.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    ensure!(
        !classes.is_empty(),
        "{name}: no class sub-folders (an image folder holds one sub-folder of images per \
         class)"
    );
    ensure!(
        classes.len() >= 2,
        "{name}: a classifier needs at least two classes (sub-folders), found {classes:?}"
    );
    ensure!(
        classes.len() <= 256,
        "{name}: {} classes, at most 256 are supported",
        classes.len()
    );
    let mut items = Vec::with_capacity(placed.len());
    let mut seen = vec![0usize; classes.len()];
    for (i, class, val) in placed {
        let Ok(label) = classes.binary_search_by(|c| c.as_str().cmp(class)) else {
            ignored.push((
                files.files[i].0.clone(),
                format!("class '{class}' is in {val_top}/ but not in train/"),
            ));
            continue;
        };
        let val = if explicit_split {
            val
        } else {
            // Hold out every tenth image of each class, in name order.
            seen[label] += 1;
            seen[label].is_multiple_of(10)
        };
        items.push((
            i,
            u8::try_from(label).context("more than 256 classes")?,
            val,
        ));
    }
    Ok(Layout {
        classes,
        items,
        explicit_split,
        ignored,
    })
}

/// A decoded image folder: the splits, and what was found on the way.
pub struct FolderData {
    /// Names the folder.
    pub name: String,
    /// Training images.
    pub train: Dataset,
    /// Validation images.
    pub val: Dataset,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Files skipped, with why (not in a class folder, did not decode).
    pub skipped: Vec<(String, String)>,
    /// Whether `train/` and `val/` gave the split.
    pub explicit_split: bool,
}

impl FolderData {
    /// Images per class: (train, val).
    pub fn counts(&self) -> Vec<(usize, usize)> {
        let v = self.val.class_counts();
        self.train.class_counts().into_iter().zip(v).collect()
    }

    /// A warning to show beside the data, if any: no validation images, or a class
    /// without training images.
    pub fn warning(&self) -> Option<String> {
        if let Some((i, _)) = self.counts().iter().enumerate().find(|(_, c)| c.0 == 0) {
            return Some(format!(
                "class '{}' has no training images that decode",
                self.classes[i]
            ));
        }
        self.val.is_empty().then(|| {
            if self.explicit_split {
                "no validation images decode: accuracy cannot be measured".to_string()
            } else {
                "no validation images: with fewer than 10 images per class none is held \
                 out; add a val/ folder"
                    .to_string()
            }
        })
    }

    /// One line on what was loaded.
    pub fn describe(&self) -> String {
        let [c, h, w] = self.train.shape;
        format!(
            "image folder {}: {} classes, {} train / {} val images at {c}x{h}x{w}{}",
            self.name,
            self.classes.len(),
            self.train.len(),
            self.val.len(),
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} files skipped", self.skipped.len())
            }
        )
    }
}

/// An image folder being decoded a few files at a time (so that a page keeps drawing).
pub struct FolderLoad {
    files: Arc<FolderFiles>,
    layout: Layout,
    preprocess: Preprocess,
    next: usize,
    train: Dataset,
    val: Dataset,
    skipped: Vec<(String, String)>,
}

impl FolderLoad {
    /// Sorts out the layout and checks up front that the decoded images fit in memory.
    pub fn new(files: Arc<FolderFiles>, p: Preprocess) -> Result<FolderLoad> {
        let layout = layout(&files)?;
        let per: usize = p.shape.iter().product();
        let need = (layout.items.len() as u64).saturating_mul(per as u64);
        ensure!(
            need <= MAX_FOLDER_BYTES,
            "{}: {} images at {:?} need {} MiB, more than the {} MiB nnlab holds{}",
            files.name,
            layout.items.len(),
            p.shape,
            need >> 20,
            MAX_FOLDER_BYTES >> 20,
            if cfg!(target_arch = "wasm32") {
                " in a browser tab"
            } else {
                ""
            }
        );
        let n = layout.classes.len();
        let set = || Dataset::empty(p.shape, n, p.mean.clone(), p.std.clone());
        Ok(FolderLoad {
            train: set(),
            val: set(),
            skipped: layout.ignored.clone(),
            files,
            layout,
            preprocess: p,
            next: 0,
        })
    }

    /// Decodes up to `n` more files; true when all are done.
    pub fn step(&mut self, n: usize) -> bool {
        let end = self.next.saturating_add(n).min(self.layout.items.len());
        for k in self.next..end {
            let (i, label, val) = self.layout.items[k];
            let path = &self.files.files[i].0;
            let r = self.files.read(i).and_then(|b| {
                let img = images::decode(&b, path)?;
                images::to_pixels(&img, self.preprocess.shape, self.preprocess.invert)
            });
            match r {
                Ok(px) => {
                    let d = if val { &mut self.val } else { &mut self.train };
                    d.pixels.extend_from_slice(&px);
                    d.labels.push(label);
                }
                Err(e) => {
                    // Decoding errors name the file already.
                    let e = format!("{e:#}");
                    let why = e.strip_prefix(&format!("{path}: ")).unwrap_or(&e);
                    self.skipped.push((path.clone(), why.to_string()));
                }
            }
        }
        self.next = end;
        self.done()
    }

    /// True when every file has been tried.
    pub fn done(&self) -> bool {
        self.next >= self.layout.items.len()
    }

    /// (files tried, files in all).
    pub fn progress(&self) -> (usize, usize) {
        (self.next, self.layout.items.len())
    }

    /// Names the folder.
    pub fn name(&self) -> &str {
        &self.files.name
    }

    /// The decoded folder (decoding what is left). An error only when no training image
    /// decodes.
    pub fn finish(mut self) -> Result<FolderData> {
        while !self.step(usize::MAX) {}
        if self.train.is_empty() {
            let first: Vec<String> = self
                .skipped
                .iter()
                .take(3)
                .map(|(p, e)| format!("{p}: {e}"))
                .collect();
            bail!(
                "{}: no training image decodes ({} skipped; {})",
                self.files.name,
                self.skipped.len(),
                first.join("; ")
            );
        }
        Ok(FolderData {
            name: self.files.name.clone(),
            train: self.train,
            val: self.val,
            classes: self.layout.classes,
            skipped: self.skipped,
            explicit_split: self.layout.explicit_split,
        })
    }
}

/// Loads a whole image folder at once (the command line's way).
pub fn load(files: FolderFiles, p: Preprocess) -> Result<FolderData> {
    FolderLoad::new(Arc::new(files), p)?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(v: u8) -> Vec<u8> {
        let img = image::GrayImage::from_pixel(6, 4, image::Luma([v]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    fn memory(list: &[(&str, Vec<u8>)]) -> FolderFiles {
        let v = list
            .iter()
            .map(|(p, b)| (p.to_string(), b.clone()))
            .collect();
        FolderFiles::from_memory("test", v).expect("files")
    }

    fn grey(side: usize) -> Preprocess {
        Preprocess::default_for([1, side, side]).expect("p")
    }

    #[test]
    fn a_folder_splits_every_tenth_image_and_lists_bad_files() {
        let dir = std::env::temp_dir().join(format!("nnlab-imgdir-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        for (class, v) in [("cat", 0u8), ("dog", 255u8)] {
            std::fs::create_dir_all(dir.join(class)).expect("dir");
            for i in 0..10 {
                std::fs::write(dir.join(class).join(format!("{i}.png")), png(v)).expect("w");
            }
        }
        std::fs::write(dir.join("cat").join("notes.txt"), "ignored").expect("w");
        std::fs::write(dir.join("dog").join("broken.jpg"), b"\xff\xd8garbage").expect("w");
        std::fs::write(dir.join("stray.png"), png(9)).expect("w");
        let d = load(FolderFiles::from_dir(&dir).expect("list"), grey(3)).expect("load");
        assert_eq!(d.classes, vec!["cat", "dog"]);
        assert_eq!(d.counts(), vec![(9, 1), (9, 1)]);
        assert_eq!(d.val.labels, vec![0, 1]);
        assert_eq!(d.train.input(0)[0], -1.0);
        assert_eq!(d.val.input(1)[8], 1.0);
        // Pixels are kept as bytes: one per value.
        assert_eq!(d.train.pixels.len(), 18 * 9);
        let skipped: Vec<&str> = d.skipped.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            skipped,
            vec!["stray.png", "dog/broken.jpg"],
            "{:?}",
            d.skipped
        );
        assert!(d.skipped[1].1.contains("cannot decode"), "{:?}", d.skipped);
        assert_eq!(d.warning(), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn layouts_look_through_a_top_folder_and_find_train_and_val() {
        let f = memory(&[
            ("pets/train/cat/a.png", png(0)),
            ("pets/train/dog/b.png", png(0)),
            ("pets/val/dog/c.png", png(0)),
            ("pets/val/cow/d.png", png(0)),
            ("pets/readme.png", png(0)),
            ("__MACOSX/pets/train/cat/._a.png", png(0)),
        ]);
        let l = layout(&f).expect("layout");
        assert!(l.explicit_split);
        assert_eq!(l.classes, vec!["cat", "dog"]);
        let placed: Vec<(usize, u8, bool)> = l.items.clone();
        assert_eq!(placed, vec![(0, 0, false), (1, 1, false), (2, 1, true)]);
        let ignored: Vec<&str> = l.ignored.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(ignored, vec!["pets/readme.png", "pets/val/cow/d.png"]);
        // Without a split, the classes are the first folders below the shared top.
        let f = memory(&[("x/a/1.png", png(0)), ("x/b/2.png", png(0))]);
        let l = layout(&f).expect("layout");
        assert!(!l.explicit_split);
        assert_eq!(l.classes, vec!["a", "b"]);
    }

    #[test]
    fn one_class_no_images_and_nothing_decoding_are_clear_errors() {
        let e = format!(
            "{:#}",
            layout(&memory(&[("a/1.png", png(0))])).expect_err("one")
        );
        assert!(
            e.contains("at least two classes") && e.contains("\"a\""),
            "{e}"
        );
        let e = format!("{:#}", layout(&memory(&[])).expect_err("none"));
        assert!(e.contains("no images"), "{e}");
        let bad = memory(&[("a/1.png", b"junk".to_vec()), ("b/2.png", b"junk".to_vec())]);
        let e = format!("{:#}", load(bad, grey(2)).err().expect("nothing decodes"));
        assert!(
            e.contains("no training image decodes") && e.contains("a/1.png"),
            "{e}"
        );
        // Fewer than ten a class: a warning, not a silent 100%.
        let d = load(memory(&[("a/1.png", png(0)), ("b/2.png", png(1))]), grey(2)).expect("load");
        assert!(
            d.warning()
                .is_some_and(|w| w.contains("no validation images"))
        );
    }

    #[test]
    fn a_folder_too_big_for_memory_is_refused_with_the_figure() {
        let list: Vec<(&str, Vec<u8>)> = vec![("a/1.png", png(0)), ("b/1.png", png(0))];
        let p = Preprocess::default_for([3, 40_000, 40_000]).expect("p");
        let e = format!(
            "{:#}",
            FolderLoad::new(Arc::new(memory(&list)), p)
                .err()
                .expect("big")
        );
        assert!(e.contains("2 images") && e.contains("9155 MiB"), "{e}");
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opt = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            w.start_file(*name, opt).expect("entry");
            w.write_all(bytes).expect("write");
        }
        w.finish().expect("zip").into_inner()
    }

    #[test]
    fn zips_load_like_folders_and_hostile_ones_are_refused() {
        let (a, b) = (png(0), png(255));
        let z = zip_of(&[
            ("set/one/a.png", &a),
            ("set/two/b.png", &b),
            ("../evil/c.png", &a),
            ("set/notes.txt", b"x"),
        ]);
        let d = load(FolderFiles::from_zip(&z, "set.zip").expect("zip"), grey(2)).expect("load");
        assert_eq!(d.classes, vec!["one", "two"]);
        assert_eq!(d.train.len(), 2);
        let e = format!(
            "{:#}",
            FolderFiles::from_zip(b"PK\x03\x04 not really", "x.zip").expect_err("junk")
        );
        assert!(e.contains("x.zip") && e.contains("not a zip"), "{e}");
        // An entry inflating past the per-file limit stops at the limit.
        let zeros = vec![0u8; (MAX_FILE_BYTES + 1) as usize];
        let bomb = zip_of(&[("a/big.png", &zeros)]);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let e = format!(
            "{:#}",
            FolderFiles::from_zip(&bomb, "bomb.zip").expect_err("bomb")
        );
        assert!(e.contains("more than 64 MiB"), "{e}");
    }
}
