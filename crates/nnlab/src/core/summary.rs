//! A model's layer table, like torchinfo: each layer's output shape, parameters and
//! multiply-accumulates per image, from one eval-mode forward pass of a single image whose
//! every layer output is captured (shapes only are used; nothing is read back).

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use gpu_nn::nn::{Ctx, Entry, Module};
use gpu_nn::{Gpu, Tensor};

/// One layer (or group of layers) of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Dotted path (`layer1.0.conv1`).
    pub path: String,
    /// Nesting depth (0 for top-level layers).
    pub depth: usize,
    /// What it is: `Conv2d 3x3`, `Linear`, `BatchNorm`, or `group` for a container.
    pub kind: String,
    /// Output shape for one image, batch dimension left out.
    pub output: Vec<usize>,
    /// Parameters (trainable or frozen; buffers left out) of the layer and what it holds.
    pub params: u64,
    /// Multiply-accumulates per image of its convolutions and linear layers (torchvision's
    /// and fvcore's convention: batch norm, activations and pooling count nothing).
    pub macs: u64,
}

/// The table and its totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Layers in execution order, each group before what it holds.
    pub layers: Vec<Layer>,
    /// Every parameter of the model.
    pub params: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Bytes of every layer output (f32) for one image: activation memory grows with it.
    pub activation_bytes: u64,
}

/// Summarises `net` for (C, H, W) images.
pub fn summarise(gpu: &Gpu, net: &dyn Module, input: [usize; 3]) -> Result<Summary> {
    let [c, h, w] = input;
    ensure!(c * h * w > 0, "the input shape {input:?} is empty");
    // Each parameter by the layer that owns it.
    let mut owned: BTreeMap<String, Vec<Vec<usize>>> = BTreeMap::new();
    let mut total = 0u64;
    net.visit("", &mut |name, e| {
        if let Entry::Param(p) = e {
            let shape = p.tensor().shape().to_vec();
            total += shape.iter().product::<usize>() as u64;
            let layer = name.rsplit_once('.').map_or("", |(l, _)| l).to_string();
            owned.entry(layer).or_default().push(shape);
        }
    });
    let x = Tensor::zeros(gpu, &[1, c, h, w])?;
    let caps = {
        let _g = gpu_nn::no_grad();
        let mut ctx = Ctx::eval().capturing();
        net.forward(&x, &mut ctx)?;
        ctx.take_captures()
    };
    // The captures come children first; a group is placed before its first child.
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (path, _)) in caps.iter().enumerate() {
        let mut p = path.as_str();
        loop {
            first.entry(p).or_insert(i);
            match p.rsplit_once('.') {
                Some((parent, _)) => p = parent,
                None => break,
            }
        }
    }
    let is_group = |path: &str| {
        let prefix = format!("{path}.");
        caps.iter().any(|(p, _)| p.starts_with(&prefix))
    };
    let mut layers: Vec<(usize, Layer)> = Vec::new();
    for (path, out) in &caps {
        let output = out.shape().get(1..).unwrap_or(&[]).to_vec();
        let spatial: usize = output.get(1..).map_or(1, |s| s.iter().product());
        let own = owned.get(path.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let weight = own.iter().find(|s| s.len() >= 2);
        let (kind, macs) = if is_group(path) {
            ("group".to_string(), 0)
        } else {
            match weight.map(Vec::as_slice) {
                Some([o, i, kh, kw]) => {
                    // Every output pixel of every output channel: its (I/g)·kh·kw taps.
                    (
                        format!("Conv2d {kh}x{kw}"),
                        (o * i * kh * kw * spatial) as u64,
                    )
                }
                Some([o, i]) => ("Linear".to_string(), (o * i) as u64),
                _ if own.len() == 2 && own.iter().all(|s| s.len() == 1) => {
                    ("BatchNorm".to_string(), 0)
                }
                _ => ("layer".to_string(), 0),
            }
        };
        layers.push((
            first.get(path.as_str()).copied().unwrap_or(0),
            Layer {
                depth: path.matches('.').count(),
                path: path.clone(),
                kind,
                output,
                params: 0,
                macs,
            },
        ));
    }
    // Groups sum what they hold.
    let sums: Vec<(u64, u64)> = layers
        .iter()
        .map(|(_, l)| {
            let prefix = format!("{}.", l.path);
            let inside = |p: &str| p == l.path || p.starts_with(&prefix);
            let params = owned
                .iter()
                .filter(|(p, _)| inside(p))
                .flat_map(|(_, s)| s)
                .map(|s| s.iter().product::<usize>() as u64)
                .sum();
            let macs = if l.kind == "group" {
                layers
                    .iter()
                    .filter(|(_, m)| m.kind != "group" && inside(&m.path))
                    .map(|(_, m)| m.macs)
                    .sum()
            } else {
                l.macs
            };
            (params, macs)
        })
        .collect();
    for ((_, l), (p, m)) in layers.iter_mut().zip(sums) {
        l.params = p;
        l.macs = m;
    }
    let activation_bytes = layers
        .iter()
        .filter(|(_, l)| l.kind != "group")
        .map(|(_, l)| 4 * l.output.iter().product::<usize>() as u64)
        .sum();
    let macs = layers
        .iter()
        .filter(|(_, l)| l.kind != "group")
        .map(|(_, l)| l.macs)
        .sum();
    layers.sort_by_key(|(first, l)| (*first, l.depth));
    Ok(Summary {
        layers: layers.into_iter().map(|(_, l)| l).collect(),
        params: total,
        macs,
        activation_bytes,
    })
}

/// 11689512 as "11,689,512".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
