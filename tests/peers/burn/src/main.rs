//! Burn 0.22.1 reference for nnlab's issue-3 speed targets: CIFAR-style ResNet-14 (batch 32)
//! and MnistCnn (batch 64) training with SGD on random data, on wgpu (lavapipe here).
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use std::time::Instant;

fn conv(i: usize, o: usize, k: usize, s: usize, p: usize, d: &Device) -> Conv2d {
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(d)
}

#[derive(Module, Debug)]
struct Basic {
    c1: Conv2d,
    b1: BatchNorm,
    c2: Conv2d,
    b2: BatchNorm,
    down: Option<Conv2d>,
    dbn: Option<BatchNorm>,
    relu: Relu,
}

impl Basic {
    fn new(i: usize, o: usize, s: usize, d: &Device) -> Self {
        let proj = s != 1 || i != o;
        Self {
            c1: conv(i, o, 3, s, 1, d),
            b1: BatchNormConfig::new(o).init(d),
            c2: conv(o, o, 3, 1, 1, d),
            b2: BatchNormConfig::new(o).init(d),
            down: proj.then(|| conv(i, o, 1, s, 0, d)),
            dbn: proj.then(|| BatchNormConfig::new(o).init(d)),
            relu: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self
            .relu
            .forward(self.b1.forward(self.c1.forward(x.clone())));
        let y = self.b2.forward(self.c2.forward(y));
        let id = match (&self.down, &self.dbn) {
            (Some(c), Some(b)) => b.forward(c.forward(x)),
            _ => x,
        };
        self.relu.forward(y + id)
    }
}

#[derive(Module, Debug)]
struct ResNet14 {
    stem: Conv2d,
    bn: BatchNorm,
    blocks: Vec<Basic>,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
    relu: Relu,
}

impl ResNet14 {
    fn new(d: &Device) -> Self {
        let mut blocks = vec![];
        let mut inp = 16;
        for (si, w) in [16, 32, 64].into_iter().enumerate() {
            for bi in 0..2 {
                let s = if si > 0 && bi == 0 { 2 } else { 1 };
                blocks.push(Basic::new(inp, w, s, d));
                inp = w;
            }
        }
        Self {
            stem: conv(3, 16, 3, 1, 1, d),
            bn: BatchNormConfig::new(16).init(d),
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(64, 10).init(d),
            relu: Relu::new(),
        }
    }
    fn fc_weight_sum(&self) -> Tensor<1> {
        self.fc.weight.val().sum()
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.relu.forward(self.bn.forward(self.stem.forward(x)));
        for b in &self.blocks {
            x = b.forward(x);
        }
        self.fc.forward(self.pool.forward(x).flatten(1, 3))
    }
}

#[derive(Module, Debug)]
struct MnistCnn {
    c1: Conv2d,
    c2: Conv2d,
    drop2d: Dropout,
    pool: MaxPool2d,
    f1: Linear,
    f2: Linear,
    drop: Dropout,
    relu: Relu,
}

impl MnistCnn {
    fn new(d: &Device) -> Self {
        Self {
            c1: Conv2dConfig::new([1, 10], [5, 5]).init(d),
            c2: Conv2dConfig::new([10, 20], [5, 5]).init(d),
            drop2d: DropoutConfig::new(0.5).init(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            f1: LinearConfig::new(320, 50).init(d),
            f2: LinearConfig::new(50, 10).init(d),
            drop: DropoutConfig::new(0.5).init(),
            relu: Relu::new(),
        }
    }
    fn fc_weight_sum(&self) -> Tensor<1> {
        self.f2.weight.val().sum()
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.pool.forward(self.c1.forward(x)));
        let x = self
            .relu
            .forward(self.pool.forward(self.drop2d.forward(self.c2.forward(x))));
        let x = self
            .drop
            .forward(self.relu.forward(self.f1.forward(x.flatten(1, 3))));
        self.f2.forward(x)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("resnet14");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let base = if std::env::var("BURN_VULKAN").is_ok() {
        Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)
    } else {
        Device::default()
    };
    eprintln!("device: {base:?}");
    let device = base.autodiff();
    let (batch, shape) = match which {
        "mnist-cnn" => (64, [64, 1, 28, 28]),
        _ => (32, [32, 3, 32, 32]),
    };
    let x = Tensor::<4>::random(shape, Distribution::Default, &device);
    let y = Tensor::<1, Int>::from_ints(
        (0..batch)
            .map(|i| (i * 7 % 10) as i32)
            .collect::<Vec<_>>()
            .as_slice(),
        &device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut opt = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.5)))
        .init();
    macro_rules! run {
        ($model:expr) => {{
            let mut model = $model;
            let mut rates = vec![];
            for round in 0..(steps + 1) {
                // Round 0 warms up (autotune, pipelines); each later round times 5 steps and
                // ends with a readback so that the GPU work is counted.
                let t = Instant::now();
                let n = if round == 0 { 3 } else { 5 };
                for _ in 0..n {
                    let logits = model.forward(x.clone());
                    let loss = loss_fn.forward(logits, y.clone());
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = opt.step(0.01, model, grads);
                }
                let _sync: f32 = model.fc_weight_sum().into_scalar::<f32>();
                let dt = t.elapsed().as_secs_f64();
                eprintln!(
                    "round {round}: {:.1} img/s ({dt:.1} s)",
                    (n * batch) as f64 / dt
                );
                if round >= 1 {
                    rates.push((n * batch) as f64 / dt);
                }
            }
            rates
        }};
    }
    let rates = match which {
        "mnist-cnn" => run!(MnistCnn::new(&device)),
        _ => run!(ResNet14::new(&device)),
    };
    let mut s = rates.clone();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "burn {which} b{batch}: median {:.1} img/s, all {:?}",
        s[s.len() / 2],
        rates
            .iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
}
