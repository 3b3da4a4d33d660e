//! The model registry: every network nnlab trains, by name, with its input, a builder, a
//! line for the UI and its parameter count. The CLI, the app and `bench` all look models up
//! here, so a model added once is everywhere.

use anyhow::{Context, Result, bail, ensure};
use gpu_nn::Gpu;
use gpu_nn::models::{
    AlexNet, ConvInit, Discriminator, Generator, GoogLeNet, MnistCnn, ResNet, ResNetConfig, Vgg,
};
use gpu_nn::nn::Module;

/// What a model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// 1x28x28 grey images only (the MNIST CNN, the DCGAN's images).
    Mnist,
    /// Small images of any channel count, 28x28 or 32x32 and up (CIFAR-style networks).
    Small,
    /// torchvision's ImageNet input, 3x224x224 (smaller squares work down to 64x64 or so).
    ImageNet,
}

impl Input {
    /// The input a model of this kind gets by default: 1x28x28, 3x32x32 or 3x224x224.
    pub fn default_shape(self) -> [usize; 3] {
        match self {
            Input::Mnist => [1, 28, 28],
            Input::Small => [3, 32, 32],
            Input::ImageNet => [3, 224, 224],
        }
    }

    /// The input an image folder is converted to: the default, with channels and side
    /// `size` as asked where the model allows.
    pub fn folder_shape(self, size: Option<usize>) -> [usize; 3] {
        let [c, h, _] = self.default_shape();
        let s = match self {
            Input::Mnist => h,
            _ => size.unwrap_or(h),
        };
        [c, s, s]
    }

    /// Whether images of `shape` (C, H, W), at least `min_side` pixels a side, suit this
    /// kind of model.
    fn accepts(self, shape: [usize; 3], min_side: usize) -> bool {
        let big = shape[1] >= min_side && shape[2] >= min_side;
        match self {
            Input::Mnist => shape == [1, 28, 28],
            Input::Small => big,
            Input::ImageNet => shape[0] == 3 && big,
        }
    }

    /// How the input is shown to people.
    pub fn describe(self) -> &'static str {
        match self {
            Input::Mnist => "1x28x28",
            Input::Small => "Cx32x32",
            Input::ImageNet => "3x224x224",
        }
    }
}

/// Options of the CIFAR-style ResNets and their plain twins for the teaching views: batch
/// norm or none, He or PyTorch's default initialisation, a width multiplier. Other models
/// take the default only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    /// Batch norm after every conv (as the paper); without it gradients can vanish.
    pub batch_norm: bool,
    /// He initialisation (torchvision's); false: PyTorch's layer default.
    pub he_init: bool,
    /// Channel width multiplier (1 = 16/32/64 channels).
    pub width: f32,
}

impl Default for Variant {
    fn default() -> Self {
        Self {
            batch_norm: true,
            he_init: true,
            width: 1.0,
        }
    }
}

impl Variant {
    /// True for the default (the registry's parameter count holds).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// As checkpoint metadata.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"batch_norm": self.batch_norm, "he_init": self.he_init,
                           "width": self.width})
    }

    /// From checkpoint metadata (absent fields: the default).
    pub fn from_json(v: Option<&serde_json::Value>) -> Result<Variant> {
        let d = Variant::default();
        let Some(v) = v else { return Ok(d) };
        let b = |k: &str, d: bool| v.get(k).and_then(|x| x.as_bool()).unwrap_or(d);
        let width = v
            .get("width")
            .and_then(|x| x.as_f64())
            .map_or(d.width, |w| w as f32);
        ensure!(
            width.is_finite() && (0.05..=8.0).contains(&width),
            "checkpoint metadata: model width {width} out of range"
        );
        Ok(Variant {
            batch_norm: b("batch_norm", d.batch_norm),
            he_init: b("he_init", d.he_init),
            width,
        })
    }

    /// A few words for names and legends: "no BN, default init, width 0.25".
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if !self.batch_norm {
            v.push("no BN".to_string());
        }
        if !self.he_init {
            v.push("default init".to_string());
        }
        if self.width != 1.0 {
            v.push(format!("width {}", self.width));
        }
        v.join(", ")
    }
}

/// How a registry model is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// PyTorch's MNIST example CNN.
    MnistCnn,
    /// CIFAR-style ResNet of depth 6n+2, or its plain twin.
    Cifar {
        /// 6n+2.
        depth: usize,
        /// False: no shortcuts.
        residual: bool,
    },
    /// A small GoogLeNet for small images.
    GoogLeNetSmall,
    /// The same with true 5x5 third branches.
    InceptionSmall,
    /// VGG-11 at 1/8 width for small images.
    Vgg11Small,
    /// torchvision's resnet18.
    ResNet18,
    /// torchvision's resnet34.
    ResNet34,
    /// torchvision's resnet50.
    ResNet50,
    /// torchvision's googlenet (no auxiliary heads).
    GoogLeNet,
    /// torchvision's vgg11.
    Vgg11,
    /// torchvision's vgg16.
    Vgg16,
    /// torchvision's alexnet.
    AlexNet,
    /// The 28x28 DCGAN (generator + discriminator).
    Dcgan,
}

/// One entry of the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// The name the CLI, the app and checkpoints use.
    pub name: &'static str,
    /// What it is built from.
    pub arch: Arch,
    /// What it takes.
    pub input: Input,
    /// One line for lists and the UI.
    pub description: &'static str,
    /// Parameters at the default input with [`ModelInfo::default_classes`] classes (for the
    /// DCGAN: generator plus discriminator at width 1). Checked against the built model by
    /// the tests, and against torchvision's counts for its layouts.
    pub params: usize,
}

/// Every model nnlab has, in menu order.
pub const MODELS: &[ModelInfo] = &[
    m(
        "mnist-cnn",
        Arch::MnistCnn,
        Input::Mnist,
        "PyTorch's MNIST example: two convs, two linear layers, dropout",
        21_840,
    ),
    cifar(
        "resnet8",
        8,
        true,
        "ResNet-8 (He et al. 2015): 3 stages of 1 basic block",
        78_042,
    ),
    cifar(
        "resnet8-plain",
        8,
        false,
        "ResNet-8 without shortcuts (the plain twin)",
        75_290,
    ),
    cifar(
        "resnet14",
        14,
        true,
        "ResNet-14: 3 stages of 2 basic blocks",
        175_258,
    ),
    cifar(
        "resnet14-plain",
        14,
        false,
        "ResNet-14 without shortcuts",
        172_506,
    ),
    cifar(
        "resnet20",
        20,
        true,
        "ResNet-20 (0.27M parameters): 3 stages of 3 blocks",
        272_474,
    ),
    cifar(
        "resnet20-plain",
        20,
        false,
        "ResNet-20 without shortcuts",
        269_722,
    ),
    cifar(
        "resnet32",
        32,
        true,
        "ResNet-32: 3 stages of 5 blocks",
        466_906,
    ),
    cifar(
        "resnet32-plain",
        32,
        false,
        "ResNet-32 without shortcuts",
        464_154,
    ),
    cifar(
        "resnet44",
        44,
        true,
        "ResNet-44: 3 stages of 7 blocks",
        661_338,
    ),
    cifar(
        "resnet44-plain",
        44,
        false,
        "ResNet-44 without shortcuts",
        658_586,
    ),
    cifar(
        "resnet56",
        56,
        true,
        "ResNet-56: 3 stages of 9 blocks",
        855_770,
    ),
    cifar(
        "resnet56-plain",
        56,
        false,
        "ResNet-56 without shortcuts (degrades: He et al. Fig. 6)",
        853_018,
    ),
    cifar(
        "resnet110",
        110,
        true,
        "ResNet-110: 3 stages of 18 blocks",
        1_730_714,
    ),
    cifar(
        "resnet110-plain",
        110,
        false,
        "ResNet-110 without shortcuts",
        1_727_962,
    ),
    m(
        "googlenet-small",
        Arch::GoogLeNetSmall,
        Input::Small,
        "A small GoogLeNet: Inception modules (1x1, 3x3, 5x5 and pool branches, concatenated)",
        76_306,
    ),
    m(
        "inception-small",
        Arch::InceptionSmall,
        Input::Small,
        "googlenet-small with true 5x5 branches (torchvision's \"5x5\" is a 3x3): branches of 1, 3, 5 and pooled 3 pixels",
        83_986,
    ),
    m(
        "vgg11-small",
        Arch::Vgg11Small,
        Input::Small,
        "VGG-11 at 1/8 width for 32x32 images: a plain stack of 3x3 convs",
        229_562,
    ),
    m(
        "resnet18",
        Arch::ResNet18,
        Input::ImageNet,
        "torchvision resnet18: the transfer-learning backbone",
        11_689_512,
    ),
    m(
        "resnet34",
        Arch::ResNet34,
        Input::ImageNet,
        "torchvision resnet34",
        21_797_672,
    ),
    m(
        "resnet50",
        Arch::ResNet50,
        Input::ImageNet,
        "torchvision resnet50: bottleneck blocks",
        25_557_032,
    ),
    m(
        "googlenet",
        Arch::GoogLeNet,
        Input::ImageNet,
        "torchvision googlenet (Inception v1, without the auxiliary heads)",
        6_624_904,
    ),
    m(
        "vgg11",
        Arch::Vgg11,
        Input::ImageNet,
        "torchvision vgg11",
        132_863_336,
    ),
    m(
        "vgg16",
        Arch::Vgg16,
        Input::ImageNet,
        "torchvision vgg16",
        138_357_544,
    ),
    m(
        "alexnet",
        Arch::AlexNet,
        Input::ImageNet,
        "torchvision alexnet (Krizhevsky et al. 2012), adaptive pooling to 6x6",
        61_100_840,
    ),
    m(
        "dcgan",
        Arch::Dcgan,
        Input::Mnist,
        "DCGAN for 28x28 images (Radford et al. 2015): generator and discriminator",
        2_074_498,
    ),
];

const fn m(
    name: &'static str,
    arch: Arch,
    input: Input,
    description: &'static str,
    params: usize,
) -> ModelInfo {
    ModelInfo {
        name,
        arch,
        input,
        description,
        params,
    }
}

const fn cifar(
    name: &'static str,
    depth: usize,
    residual: bool,
    description: &'static str,
    params: usize,
) -> ModelInfo {
    m(
        name,
        Arch::Cifar { depth, residual },
        Input::Small,
        description,
        params,
    )
}

/// The 1000 ImageNet classes in torchvision's order (torchvision, BSD-3-Clause).
const IMAGENET_CLASSES: &str = include_str!("../../../assets/imagenet-classes.txt");

/// Names for the classes of weights without any: ImageNet's for 1000 classes (torchvision's
/// pretrained weights), else `class 0`, `class 1`, ...
pub fn class_names_for(classes: usize) -> Vec<String> {
    let imagenet: Vec<&str> = IMAGENET_CLASSES.lines().collect();
    if classes == imagenet.len() {
        imagenet.into_iter().map(str::to_string).collect()
    } else {
        (0..classes).map(|i| format!("class {i}")).collect()
    }
}

/// Which torchvision layout of the registry a state dict is, from its keys and shapes
/// (name -> shape): a dropped weights file picks its model. `None` when none fits.
pub fn model_for_weights(
    keys: &std::collections::BTreeMap<String, Vec<usize>>,
) -> Option<&'static str> {
    let has = |k: &str| keys.contains_key(k);
    if has("inception3a.branch1.conv.weight") {
        return Some("googlenet");
    }
    if has("layer4.0.conv3.weight") {
        return Some("resnet50");
    }
    if has("layer3.5.conv1.weight") {
        return Some("resnet34");
    }
    if has("layer4.1.conv2.weight") {
        return Some("resnet18");
    }
    if has("classifier.6.weight") {
        // VGG and AlexNet differ in their number of convolutions.
        let convs = keys
            .iter()
            .filter(|(k, s)| k.starts_with("features.") && s.len() == 4)
            .count();
        return match convs {
            5 => Some("alexnet"),
            8 => Some("vgg11"),
            13 => Some("vgg16"),
            _ => None,
        };
    }
    None
}

/// Looks a model up by name; the error lists the names there are.
pub fn find(name: &str) -> Result<&'static ModelInfo> {
    MODELS.iter().find(|m| m.name == name).with_context(|| {
        format!(
            "unknown model '{name}' (known: {})",
            MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The classifiers (every model but the DCGAN).
pub fn classifiers() -> impl Iterator<Item = &'static ModelInfo> {
    MODELS.iter().filter(|m| m.is_classifier())
}

impl ModelInfo {
    /// False for the DCGAN.
    pub fn is_classifier(&self) -> bool {
        self.arch != Arch::Dcgan
    }

    /// Classes the parameter count is stated for: 1000 for torchvision's layouts, else 10.
    pub fn default_classes(&self) -> usize {
        if self.input == Input::ImageNet {
            1000
        } else {
            10
        }
    }

    /// The smallest image side the model takes: its poolings must leave a pixel.
    pub fn min_side(&self) -> usize {
        match self.arch {
            // Five 2x2 poolings.
            Arch::Vgg11Small => 32,
            _ if self.input == Input::ImageNet => 32,
            _ => 8,
        }
    }

    /// Whether images of `shape` (C, H, W) suit this model.
    pub fn accepts(&self, shape: [usize; 3]) -> bool {
        self.input.accepts(shape, self.min_side())
    }

    /// True where the layout (names and shapes) is torchvision's, so its weights load.
    pub fn torchvision(&self) -> bool {
        self.input == Input::ImageNet
    }

    /// The classifier head's parameter prefix: what fine-tuning replaces and trains.
    pub fn head(&self) -> &'static str {
        match self.arch {
            Arch::MnistCnn => "fc2.",
            Arch::Vgg11 | Arch::Vgg16 | Arch::Vgg11Small | Arch::AlexNet => "classifier.6.",
            _ => "fc.",
        }
    }

    /// Builds the classifier for (C, H, W) inputs and `classes` outputs, initialised from
    /// `seed` as its torchvision counterpart is.
    pub fn build(
        &self,
        gpu: &Gpu,
        shape: [usize; 3],
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>> {
        self.build_variant(gpu, shape, classes, seed, Variant::default())
    }

    /// Whether the model takes variants other than the default.
    pub fn has_variants(&self) -> bool {
        matches!(self.arch, Arch::Cifar { .. })
    }

    /// [`ModelInfo::build`] with a [`Variant`] (CIFAR-style ResNets only).
    pub fn build_variant(
        &self,
        gpu: &Gpu,
        shape: [usize; 3],
        classes: usize,
        seed: u64,
        variant: Variant,
    ) -> Result<Box<dyn Module>> {
        ensure!(
            variant.is_default() || self.has_variants(),
            "{} has no variants ({}): only the CIFAR-style ResNets do",
            self.name,
            variant.describe()
        );
        ensure!(classes > 0, "a classifier needs at least one class");
        ensure!(
            self.accepts(shape),
            "{} takes {} images (at least {}x{}), the data has {}x{}x{}",
            self.name,
            self.input.describe(),
            self.min_side(),
            self.min_side(),
            shape[0],
            shape[1],
            shape[2]
        );
        let c = shape[0];
        Ok(match self.arch {
            Arch::MnistCnn => Box::new(MnistCnn::with_classes(gpu, classes, seed)?),
            Arch::Cifar { depth, residual } => {
                let mut cfg = ResNetConfig::cifar(depth, c, classes)?.width(variant.width);
                cfg.residual = residual;
                cfg.batch_norm = variant.batch_norm;
                cfg.init = if variant.he_init {
                    ConvInit::He
                } else {
                    ConvInit::PyTorchDefault
                };
                Box::new(ResNet::new(gpu, cfg, seed)?)
            }
            Arch::GoogLeNetSmall => Box::new(GoogLeNet::small(gpu, c, classes, seed)?),
            Arch::InceptionSmall => Box::new(GoogLeNet::small_with(gpu, c, classes, seed, 5)?),
            Arch::Vgg11Small => Box::new(Vgg::vgg11_small(gpu, c, classes, seed)?),
            Arch::ResNet18 => Box::new(ResNet::new(gpu, ResNetConfig::resnet18(classes), seed)?),
            Arch::ResNet34 => Box::new(ResNet::new(gpu, ResNetConfig::resnet34(classes), seed)?),
            Arch::ResNet50 => Box::new(ResNet::new(gpu, ResNetConfig::resnet50(classes), seed)?),
            Arch::GoogLeNet => Box::new(GoogLeNet::new(gpu, classes, seed)?),
            Arch::Vgg11 => Box::new(Vgg::vgg11(gpu, classes, seed)?),
            Arch::Vgg16 => Box::new(Vgg::vgg16(gpu, classes, seed)?),
            Arch::AlexNet => Box::new(AlexNet::new(gpu, c, classes, seed)?),
            Arch::Dcgan => bail!("dcgan is a GAN, not a classifier: use `nnlab gan`"),
        })
    }

    /// Builds the DCGAN's generator and discriminator at `width` (1 = the paper's).
    pub fn build_gan(
        &self,
        gpu: &Gpu,
        width: f32,
        seed: u64,
    ) -> Result<(Generator, Discriminator)> {
        ensure!(self.arch == Arch::Dcgan, "{} is not a GAN", self.name);
        ensure!(
            width.is_finite() && width > 0.0 && width <= 4.0,
            "the DCGAN's width must be in (0, 4], got {width}"
        );
        Ok((
            Generator::new(gpu, width, seed)?,
            Discriminator::new(gpu, width, seed.wrapping_add(1))?,
        ))
    }
}
