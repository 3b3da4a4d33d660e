#!/usr/bin/env python3
"""Generates the torchvision-weights parity fixtures checked by
crates/nnlab/tests/torchvision.rs.

Two kinds of fixture, both from torchvision's own model classes in eval mode:

1. `tv_resnet18_w8.safetensors`: a reduced-width ResNet-18 (torchvision's `ResNet` with
   `BasicBlock`, layers [2, 2, 2, 2], stage widths 8/16/32/64 instead of 64/128/256/512,
   10 classes), randomly initialised by torchvision (batch-norm parameters and running
   statistics randomised too, so eval-mode batch norm is exercised), saved exactly as a
   torchvision state dict is saved (`num_batches_tracked` as int64).
   `tv_resnet18_w8_io.safetensors` holds two 3x64x64 inputs and their logits.
   Full width would be 45 MB: too big to commit.

2. Full-size torchvision `resnet18()` and `googlenet(aux_logits=False, init_weights=True)`
   (1000 classes) whose parameters are set by a formula both sides can compute (a
   multiplicative hash of the element index, see `formula`), so that no weight file needs
   committing: `tv_{name}_formula_io.safetensors` holds the inputs (2x3x32x32), logits, and
   in its metadata the state dict's names and shapes in order. The Rust test builds the same
   values, writes them as a safetensors file and loads it by name into its model.

3. `tv_resnet18_top5.png` and `tv_resnet18_top5.json`: a 224x224 colour picture through
   torchvision's ImageNet preprocessing (at 224x224 Resize(256) + CenterCrop(224) would
   resample it, so the picture is classified as it is: ToTensor + Normalize) and the
   formula-weights resnet18: the top-5 class indices, torchvision's names for them and
   their logits. `nnlab classify` must name the same five, in order.

Usage (needs torch, torchvision, safetensors; CI does not: the fixtures are committed):
    scripts/python-env   # or: python3 -m venv v && v/bin/pip install -r python/requirements.txt
    target/pyenv/bin/python tests/parity/gen_torchvision.py [--top5-only]
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock, ResNet

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
torch.manual_seed(0)


class NarrowResNet(ResNet):
    """torchvision's ResNet with custom stage widths; every parameter name is unchanged."""

    def __init__(self, widths, layers, num_classes):
        super().__init__(BasicBlock, layers, num_classes=num_classes)
        # Rebuild the layers at the new widths with torchvision's own helpers.
        self.inplanes = widths[0]
        self.conv1 = torch.nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3,
                                     bias=False)
        self.bn1 = torch.nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
        self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
        self.fc = torch.nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def randomise_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c) + 0.5
            m.bias.data = torch.randn(c) * 0.1
            m.running_mean = torch.randn(c) * 0.1
            m.running_var = torch.rand(c) + 0.5
            m.num_batches_tracked = torch.tensor(3, dtype=torch.long)


def formula(k, shape, name):
    """Deterministic values of the k-th tensor (state-dict names sorted bytewise):
    u = ((i * 2654435761 + k * 40503) mod 2^32) / 2^32 for element i, then
    weights of rank >= 2: (2u - 1) * sqrt(6 / fan_in)   (He-uniform: activations keep scale)
    1-d `*.weight` (batch-norm scales) and `*.running_var`: 0.75 + 0.5u; every other 1-d
    tensor: 0.1 (2u - 1).
    All in float64, rounded once to float32; the Rust test computes the same."""
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(k * 40503)) % np.uint64(2**32)
    u = h.astype(np.float64) / 2.0**32
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = (2.0 * u - 1.0) * np.sqrt(6.0 / fan_in)
    elif name.endswith(".running_var") or name.endswith(".weight"):
        # 1-d weights are batch-norm scales (conv and linear weights have rank >= 2).
        v = 0.75 + 0.5 * u
    else:
        v = 0.1 * (2.0 * u - 1.0)
    return torch.from_numpy(v.astype(np.float32)).reshape(shape)


def set_formula(model):
    """Sets every parameter and buffer by `formula`; returns the state's (name, shape)s."""
    sd = model.state_dict()
    names = sorted(sd.keys())
    shapes = []
    with torch.no_grad():
        for k, n in enumerate(names):
            t = sd[n]
            if n.endswith("num_batches_tracked"):
                shapes.append([n, list(t.shape)])
                continue
            t.copy_(formula(k, list(t.shape), n))
            shapes.append([n, list(t.shape)])
    return shapes


def formula_fixture(name, model, x):
    shapes = set_formula(model)
    with torch.no_grad():
        model.eval()
        y = model(x)
    save_file({"x": x.contiguous(), "logits": y.contiguous()},
              os.path.join(OUT, f"tv_{name}_formula_io.safetensors"),
              metadata={"state": json.dumps(shapes), "torch": torch.__version__,
                        "torchvision": torchvision.__version__})
    print(name, "logits", y.shape, float(y.abs().max()))


def top5_fixture():
    from PIL import Image
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    model = torchvision.models.resnet18()
    set_formula(model)
    model.eval()
    h = w = 224
    yy, xx = np.mgrid[0:h, 0:w]
    # The first of a family of pictures whose top six logits are well apart, so that f32
    # summation order cannot swap two of the five.
    for p in range(1, 100):
        img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1),
                        (np.sin(xx / (3.0 + p)) * np.cos(yy / 13.0) * 127 + 128)],
                       -1).astype(np.uint8)
        x = ((torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 - mean) / std)[None]
        with torch.no_grad():
            y = model(x)[0]
        top = torch.topk(y, 6)
        gaps = (top.values[:-1] - top.values[1:]).tolist()
        if min(gaps) > 2e-3:
            break
    else:
        raise SystemExit("no picture with distinct top-5 logits")
    Image.fromarray(img).save(os.path.join(OUT, "tv_resnet18_top5.png"))
    names = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    doc = {"top5": [{"index": int(i), "class": names[int(i)], "logit": float(v)}
                    for v, i in zip(top.values[:5], top.indices[:5])],
           "gaps": gaps, "torch": torch.__version__, "torchvision": torchvision.__version__}
    with open(os.path.join(OUT, "tv_resnet18_top5.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print("top5", [t["class"] for t in doc["top5"]], "gaps", gaps)


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--top5-only" in sys.argv:
        top5_fixture()
        return
    # 1. Reduced-width ResNet-18, torchvision random init, file as torch saves it.
    m = NarrowResNet([8, 16, 32, 64], [2, 2, 2, 2], num_classes=10)
    randomise_bn(m)
    m.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = m(x)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(sd, os.path.join(OUT, "tv_resnet18_w8.safetensors"))
    save_file({"x": x, "logits": y.contiguous()},
              os.path.join(OUT, "tv_resnet18_w8_io.safetensors"),
              metadata={"torch": torch.__version__, "torchvision": torchvision.__version__})
    print("resnet18_w8", sum(p.numel() for p in m.parameters()), "params")

    # 2. Full-size models with formula weights (nothing big to commit).
    x = torch.randn(2, 3, 32, 32)
    formula_fixture("resnet18", torchvision.models.resnet18(), x)
    g = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
                                     transform_input=False)
    formula_fixture("googlenet", g, x)
    # 3. Top-5 labels of a picture.
    top5_fixture()


if __name__ == "__main__":
    main()
