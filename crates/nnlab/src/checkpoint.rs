//! Checkpoints and weight files: named f32 tensors in one `.safetensors` file, with nnlab's
//! metadata as JSON under the header key `"nnlab"`.
//!
//! A checkpoint is read completely and checked before anything is handed to a model, so a
//! corrupt or foreign file loads nothing. Writing goes to a temporary file in the same
//! directory, then a rename: a crash mid-write never leaves a half-written checkpoint under
//! the real name. Parsing works on bytes (the browser build needs no file system).

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::nn::{HostState, HostTensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Header key under which nnlab stores its JSON metadata.
pub const META_KEY: &str = "nnlab";
/// Value of `"format"` in the metadata of a checkpoint nnlab wrote.
pub const FORMAT: &str = "nnlab-checkpoint";
/// Version of the metadata layout.
pub const VERSION: u64 = 1;
/// Longest metadata read (a checkpoint's is a few KB; class names and history included).
pub const MAX_META: usize = 16 << 20;

/// The largest safetensors header read: the metadata and one entry per tensor.
pub const MAX_HEADER: u64 = MAX_META as u64 + (4 << 20);

/// Tensors plus metadata, in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// nnlab's metadata (model config, optimizer settings, progress), a JSON object.
    pub meta: serde_json::Value,
    /// Every tensor, by name (`model.conv1.weight`, `optim.0.exp_avg`, ...).
    pub tensors: HostState,
}

impl Checkpoint {
    /// Serialises to safetensors bytes (all tensors as F32, little-endian). Non-finite
    /// values are refused.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.ensure_finite()?;
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone(), f32_bytes(&t.data)))
            .collect();
        let mut views = Vec::with_capacity(raw.len());
        for (k, shape, bytes) in &raw {
            let v = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .with_context(|| format!("tensor {k}: shape {shape:?} does not fit its data"))?;
            views.push((k.as_str(), v));
        }
        let mut header = HashMap::new();
        header.insert(META_KEY.to_string(), self.meta.to_string());
        Ok(safetensors::serialize(views, Some(header))?)
    }

    /// Parses safetensors bytes written by [`Checkpoint::to_bytes`]; `name` names the source
    /// in errors. Errors if the file is not safetensors, lacks nnlab metadata, or holds a
    /// tensor that is not F32.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint> {
        let (tensors, header) = read_safetensors(bytes, name)?;
        let meta_str = header
            .get(META_KEY)
            .with_context(|| format!("{name}: not an nnlab checkpoint (no \"{META_KEY}\" metadata; for torchvision weights use --weights)"))?;
        ensure!(
            meta_str.len() <= MAX_META,
            "{name}: {} bytes of metadata, more than the {MAX_META} nnlab reads",
            meta_str.len()
        );
        let meta: serde_json::Value = serde_json::from_str(meta_str)
            .with_context(|| format!("{name}: corrupt nnlab metadata"))?;
        ensure!(
            meta.get("format").and_then(|f| f.as_str()) == Some(FORMAT),
            "{name}: metadata does not say format \"{FORMAT}\""
        );
        let version = meta.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        ensure!(
            version == VERSION,
            "{name}: checkpoint version {version}, this nnlab reads version {VERSION}"
        );
        Ok(Checkpoint { meta, tensors })
    }

    /// Errors, naming the tensor, if any value is NaN or infinite: a diverged run is never
    /// written, and such a file is never loaded.
    pub fn ensure_finite(&self) -> Result<()> {
        ensure_finite(&self.tensors, "the weights")
    }

    /// The tensors whose names start with `prefix.`, with the prefix removed.
    pub fn section(&self, prefix: &str) -> HostState {
        let p = format!("{prefix}.");
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone())))
            .collect()
    }

    /// Adds `state` under `prefix.`.
    pub fn insert_section(&mut self, prefix: &str, state: HostState) {
        for (k, v) in state {
            self.tensors.insert(format!("{prefix}.{k}"), v);
        }
    }

    /// Writes the checkpoint to `path` atomically: a temporary file in the same directory,
    /// flushed to disk, then renamed over `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Reads and checks a checkpoint file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Checkpoint::from_bytes(&bytes, &path.display().to_string())
    }

    /// A metadata field as a string, or an error naming the field.
    pub fn meta_str(&self, path: &[&str]) -> Result<&str> {
        self.meta_field(path)?
            .as_str()
            .with_context(|| format!("checkpoint metadata: {} is not a string", path.join(".")))
    }

    /// A metadata field as an unsigned integer, or an error naming the field.
    pub fn meta_u64(&self, path: &[&str]) -> Result<u64> {
        self.meta_field(path)?.as_u64().with_context(|| {
            format!(
                "checkpoint metadata: {} is not a non-negative integer",
                path.join(".")
            )
        })
    }

    /// A metadata field as a number, or an error naming the field.
    pub fn meta_f64(&self, path: &[&str]) -> Result<f64> {
        self.meta_field(path)?
            .as_f64()
            .with_context(|| format!("checkpoint metadata: {} is not a number", path.join(".")))
    }

    /// A metadata field, or an error naming it.
    pub fn meta_field(&self, path: &[&str]) -> Result<&serde_json::Value> {
        let mut v = &self.meta;
        for k in path {
            v = v
                .get(k)
                .with_context(|| format!("checkpoint metadata lacks {}", path.join(".")))?;
        }
        Ok(v)
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Whether safetensors `bytes` carry nnlab's metadata (a checkpoint) or not (torchvision
/// weights); `None` when they are not safetensors. Reads only the header.
pub fn has_nnlab_metadata(bytes: &[u8]) -> Option<bool> {
    let (_, m) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    Some(
        m.metadata()
            .as_ref()
            .is_some_and(|h| h.contains_key(META_KEY)),
    )
}

/// Errors naming the first tensor of `state` that holds NaN or an infinity.
pub fn ensure_finite(state: &HostState, what: &str) -> Result<()> {
    for (name, t) in state {
        if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
            bail!("{what}: tensor {name} holds {v}, not a finite number");
        }
    }
    Ok(())
}

/// Reads every tensor of a safetensors file as f32 (converting F16, BF16, F64 and integer
/// types, as torch exports hold `num_batches_tracked` as I64) plus the header metadata.
/// `name` names the source in errors.
pub fn read_safetensors(bytes: &[u8], name: &str) -> Result<(HostState, HashMap<String, String>)> {
    // The header's length comes first: a header too big for any nnlab checkpoint (millions
    // of class names, say) is refused before it is parsed.
    if let Some(len) = bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) {
        ensure!(
            len <= MAX_HEADER,
            "{name}: not a valid safetensors file: its header declares {len} bytes, more \
             than the {MAX_HEADER} nnlab reads"
        );
    }
    let st = SafeTensors::deserialize(bytes)
        .with_context(|| format!("{name}: not a valid safetensors file"))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .with_context(|| format!("{name}: not a valid safetensors file"))?;
    let mut out = HostState::new();
    for (k, v) in st.iter() {
        let data = to_f32(v.dtype(), v.data()).with_context(|| format!("{name}: tensor {k}"))?;
        out.insert(
            k.to_string(),
            HostTensor {
                shape: v.shape().to_vec(),
                data,
            },
        );
    }
    ensure_finite(&out, name)?;
    Ok((out, header.metadata().clone().unwrap_or_default()))
}

fn to_f32(dtype: Dtype, b: &[u8]) -> Result<Vec<f32>> {
    fn chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }
    Ok(match dtype {
        Dtype::F32 => chunks::<4>(b).map(f32::from_le_bytes).collect(),
        Dtype::F64 => chunks::<8>(b)
            .map(|a| f64::from_le_bytes(a) as f32)
            .collect(),
        Dtype::F16 => chunks::<2>(b)
            .map(|a| f16_to_f32(u16::from_le_bytes(a)))
            .collect(),
        Dtype::BF16 => chunks::<2>(b)
            .map(|a| f32::from_bits(u32::from(u16::from_le_bytes(a)) << 16))
            .collect(),
        Dtype::I64 => chunks::<8>(b)
            .map(|a| i64::from_le_bytes(a) as f32)
            .collect(),
        Dtype::I32 => chunks::<4>(b)
            .map(|a| i32::from_le_bytes(a) as f32)
            .collect(),
        Dtype::U8 => b.iter().map(|&x| f32::from(x)).collect(),
        other => bail!("dtype {other:?} is not supported (F32, F16, BF16, F64, I64, I32, U8 are)"),
    })
}

/// IEEE half to single precision (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal half: value = man * 2^-24.
        (0, m) => return sign_mul(sign) * (m as f32) * 2f32.powi(-24),
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn sign_mul(sign: u32) -> f32 {
    if sign == 0 { 1.0 } else { -1.0 }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers see the old file or the new one, never a partial one.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot flush {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut tensors = HostState::new();
        tensors.insert(
            "model.w".into(),
            HostTensor {
                shape: vec![2, 2],
                data: vec![1.0, -2.5, 3.25, 0.0],
            },
        );
        tensors.insert(
            "optim.step".into(),
            HostTensor {
                shape: vec![1],
                data: vec![7.0],
            },
        );
        Checkpoint {
            meta: serde_json::json!({"format": FORMAT, "version": VERSION, "x": 1}),
            tensors,
        }
    }

    #[test]
    fn round_trips_bytes_and_files_atomically() {
        let c = sample();
        let back = Checkpoint::from_bytes(&c.to_bytes().expect("ser"), "mem").expect("de");
        assert_eq!(back, c);
        assert_eq!(back.section("model").len(), 1);
        let dir = std::env::temp_dir().join(format!("nnlab-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("a.safetensors");
        c.save(&p).expect("save");
        assert_eq!(Checkpoint::load(&p).expect("load"), c);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corrupt_or_foreign_files_are_clear_errors() {
        let bytes = sample().to_bytes().expect("ser");
        let e = format!(
            "{:#}",
            Checkpoint::from_bytes(&bytes[..bytes.len() - 3], "cut.safetensors")
                .expect_err("truncated")
        );
        assert!(
            e.contains("cut.safetensors") && e.contains("not a valid"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Checkpoint::from_bytes(b"hello", "junk").expect_err("junk")
        );
        assert!(e.contains("junk"), "{e}");
        // A plain safetensors file without nnlab metadata (e.g. torchvision weights).
        let plain = safetensors::serialize(
            [(
                "w",
                TensorView::new(Dtype::F32, vec![1], &[0, 0, 128, 63]).expect("view"),
            )],
            None,
        )
        .expect("ser");
        let e = format!(
            "{:#}",
            Checkpoint::from_bytes(&plain, "tv.safetensors").expect_err("foreign")
        );
        assert!(e.contains("not an nnlab checkpoint"), "{e}");
        let (s, _) = read_safetensors(&plain, "tv").expect("plain read");
        assert_eq!(s["w"].data, vec![1.0]);
    }

    #[test]
    fn non_finite_weights_are_never_written_nor_loaded() {
        let mut c = sample();
        if let Some(t) = c.tensors.get_mut("model.w") {
            t.data[1] = f32::NAN;
        }
        let e = format!("{:#}", c.to_bytes().expect_err("NaN written"));
        assert!(e.contains("model.w") && e.contains("NaN"), "{e}");
        // A file holding an infinity (written by someone else) is refused, naming it.
        let inf = f32::INFINITY.to_le_bytes();
        let one = 1f32.to_le_bytes();
        let bytes: Vec<u8> = [one, inf].concat();
        let view = TensorView::new(Dtype::F32, vec![2], &bytes).expect("view");
        let mut header = HashMap::new();
        header.insert(META_KEY.to_string(), sample().meta.to_string());
        let file = safetensors::serialize([("model.b", view)], Some(header)).expect("ser");
        let e = format!(
            "{:#}",
            Checkpoint::from_bytes(&file, "bad.safetensors").expect_err("inf loaded")
        );
        assert!(
            e.contains("bad.safetensors") && e.contains("model.b") && e.contains("inf"),
            "{e}"
        );
    }

    #[test]
    fn converts_torch_dtypes() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(
            to_f32(Dtype::I64, &5i64.to_le_bytes()).expect("i64"),
            vec![5.0]
        );
        assert_eq!(
            to_f32(Dtype::BF16, &0x3f80u16.to_le_bytes()).expect("bf16"),
            vec![1.0]
        );
    }
}
