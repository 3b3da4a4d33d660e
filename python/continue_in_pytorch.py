#!/usr/bin/env python3
"""Continue an nnlab training in PyTorch, on as many processes (GPUs) as torchrun gives.

An nnlab checkpoint is a safetensors file: tensors `model.<torchvision name>` (or
`generator.*` for the DCGAN) and JSON metadata under the key "nnlab" (model name, input,
class names, normalisation, optimizer settings). This script builds the matching PyTorch
model (torchvision's for resnet18/34/50, googlenet, vgg11/16, alexnet; a twin with the same
names for mnist-cnn, the CIFAR-style ResNets and their plain twins, and the DCGAN's
generator), loads the weights strictly, optionally checks its outputs against a sample
written by `nnlab export --sample`, and trains with DistributedDataParallel.

    torchrun --nproc_per_node 4 python/continue_in_pytorch.py CHECKPOINT \\
        --data DATA --steps 1000 --out trained.safetensors

DATA: an MNIST-format IDX directory (nnlab's bundled sets are assets/mnist and
assets/fashion-mnist) or an image folder (one sub-folder per class). The result is a state
dict with torchvision's names, which nnlab loads back: `nnlab train --weights trained.safetensors
--model NAME ...`, `nnlab classify --weights ...`, `nnlab export --weights ...`.

Without torchrun it runs as one process. Backend: nccl on CUDA, gloo on the CPU (--cpu).
A DCGAN checkpoint is loaded and checked; its training is not continued here.
"""
import argparse
import gzip
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file, save_file

TOL = 1e-4


class MnistCnn(nn.Module):
    """nnlab's mnist-cnn (PyTorch's MNIST example); ends in log_softmax."""

    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.drop2d = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.drop2d(self.conv2(x)), 2))
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


class Block(nn.Module):
    """torchvision's BasicBlock, optionally without batch norm or without the shortcut."""

    def __init__(self, inp, planes, stride, residual, bn):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.residual = residual
        self.downsample = None
        if residual and (stride != 1 or inp != planes):
            layers = [nn.Conv2d(inp, planes, 1, stride, bias=False)]
            if bn:
                layers.append(nn.BatchNorm2d(planes))
            self.downsample = nn.Sequential(*layers)

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if not self.residual:
            return F.relu(h)
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


class CifarResNet(nn.Module):
    """nnlab's CIFAR-style ResNet (He et al. 2015, 1x1 projection shortcuts) and its plain
    twin; stage widths and depth are read off the weights."""

    def __init__(self, state, residual, classes):
        super().__init__()
        bn = "bn1.weight" in state
        w0 = state["conv1.weight"].shape[0]
        self.conv1 = nn.Conv2d(state["conv1.weight"].shape[1], w0, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0) if bn else nn.Identity()
        inp, stages = w0, []
        for i in range(1, 10):
            blocks = sorted({int(m.group(1)) for k in state
                             if (m := re.match(rf"layer{i}\.(\d+)\.", k))})
            if not blocks:
                break
            width = state[f"layer{i}.0.conv1.weight"].shape[0]
            seq = []
            for b in blocks:
                seq.append(Block(inp, width, 2 if i > 1 and b == 0 else 1, residual, bn))
                inp = width
            stages.append(nn.Sequential(*seq))
        for i, s in enumerate(stages):
            setattr(self, f"layer{i + 1}", s)
        self.stages = len(stages)
        self.fc = nn.Linear(inp, classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            h = getattr(self, f"layer{i + 1}")(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class Generator(nn.Module):
    """nnlab's 28x28 DCGAN generator; widths read off the weights."""

    def __init__(self, state):
        super().__init__()
        latent, c049 = state["fc.weight"].shape[1], state["fc.weight"].shape[0]
        c0, c1 = state["deconv1.weight"].shape[:2]
        c2 = state["deconv2.weight"].shape[1]
        self.c0 = c0
        self.fc = nn.Linear(latent, c049, bias=False)
        self.bn0 = nn.BatchNorm1d(c049)
        self.deconv1 = nn.ConvTranspose2d(c0, c1, 4, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.deconv2 = nn.ConvTranspose2d(c1, c2, 4, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.deconv3 = nn.ConvTranspose2d(c2, 1, 3, 1, 1, bias=True)

    def forward(self, z):
        h = F.relu(self.bn0(self.fc(z))).reshape(-1, self.c0, 7, 7)
        h = F.relu(self.bn1(self.deconv1(h)))
        h = F.relu(self.bn2(self.deconv2(h)))
        return torch.tanh(self.deconv3(h))


def read_checkpoint(path):
    """(metadata dict, {name: tensor}) of an nnlab checkpoint, the section prefix removed."""
    with safe_open(path, "pt") as f:
        meta = json.loads((f.metadata() or {}).get("nnlab", "null") or "null")
    if not meta or meta.get("format") != "nnlab-checkpoint":
        sys.exit(f"{path}: not an nnlab checkpoint (no nnlab metadata)")
    section = "generator." if meta.get("kind") == "gan" else "model."
    tensors = load_file(path)
    state = {k[len(section):]: v for k, v in tensors.items() if k.startswith(section)}
    return meta, state


def build(meta, state):
    """The PyTorch model for a checkpoint, its weights loaded strictly."""
    if meta.get("kind") == "gan":
        model = Generator(state)
    else:
        name = meta["model"]["name"]
        classes = len(meta["model"]["class_names"])
        tv = {"resnet18", "resnet34", "resnet50", "vgg11", "vgg16", "alexnet"}
        if name == "mnist-cnn":
            model = MnistCnn(classes)
        elif re.fullmatch(r"resnet\d+(-plain)?", name) and name not in tv:
            model = CifarResNet(state, not name.endswith("-plain"), classes)
        elif name in tv:
            model = getattr(torchvision.models, name)(num_classes=classes)
        elif name == "googlenet":
            model = torchvision.models.googlenet(num_classes=classes, aux_logits=False,
                                                 init_weights=False, transform_input=False)
        else:
            sys.exit(f"{name}: no PyTorch twin for this model (covered: mnist-cnn, the "
                     "CIFAR-style ResNets, torchvision's layouts, the DCGAN generator)")
    want = model.state_dict()
    loaded = {}
    for k, v in want.items():
        if k not in state:
            if k.endswith("num_batches_tracked"):
                loaded[k] = v
                continue
            sys.exit(f"the checkpoint lacks {k}")
        if tuple(state[k].shape) != tuple(v.shape):
            sys.exit(f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}")
        loaded[k] = state[k].to(v.dtype)
    extra = sorted(set(state) - set(want))
    if extra:
        sys.exit(f"the checkpoint has tensors the model does not: {extra[:5]}")
    model.load_state_dict(loaded, strict=True)
    return model


def check(model, sample_path):
    """Max |torch - nnlab| on a sample from `nnlab export --sample`; fails above TOL."""
    s = load_file(sample_path)
    model.eval()
    with torch.no_grad():
        got = model(s["input"])
    diff = float((got - s["output"]).abs().max())
    print(json.dumps({"check": sample_path, "max_abs_diff": diff}), flush=True)
    if diff > TOL:
        sys.exit(f"the PyTorch model differs from nnlab by {diff:.3g} (> {TOL})")
    return s["input"]


def read_idx(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def dataset(data, spec):
    """A TensorDataset (IDX directory) or an ImageFolder, normalised as nnlab trained."""
    c, h, w = spec["input"]
    mean, std = spec["mean"], spec["std"]
    root = Path(data)
    images = sorted(root.glob("*images-idx3-ubyte*"))
    if images:
        # Training images when the directory has them, else the test split (the bundled sets).
        pick = [p for p in images if p.name.startswith("train")] or images
        img = read_idx(pick[0])
        lab = read_idx(Path(str(pick[0]).replace("images-idx3", "labels-idx1")))
        if img.shape[1:] != (h, w) or c != 1:
            sys.exit(f"{data}: images {img.shape[1:]}, the model takes {c}x{h}x{w}")
        x = (torch.from_numpy(img.astype(np.float32) / 255.0) - mean[0]) / std[0]
        return torch.utils.data.TensorDataset(x.unsqueeze(1), torch.from_numpy(lab.astype(np.int64)))
    t = torchvision.transforms
    tf = t.Compose([t.Resize(min(h, w)), t.CenterCrop((h, w)),
                    t.Grayscale() if c == 1 else t.Lambda(lambda im: im.convert("RGB")),
                    t.ToTensor(), t.Normalize(mean, std)])
    return torchvision.datasets.ImageFolder(data, transform=tf)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", help="IDX directory or image folder (needed with --steps)")
    p.add_argument("--steps", type=int, default=0, help="training steps (0: load and check)")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, help="default: the checkpoint's")
    p.add_argument("--check", help="a sample from `nnlab export --sample` to compare with")
    p.add_argument("--out", help="where to save the trained state dict (.safetensors)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU (gloo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--require-loss-fall", action="store_true",
                   help="fail unless the mean loss of the last quarter of the steps is below "
                        "the first quarter's (tests)")
    a = p.parse_args()

    distributed = "WORLD_SIZE" in os.environ
    cuda = torch.cuda.is_available() and not a.cpu
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(a.seed)

    meta, state = read_checkpoint(a.checkpoint)
    model = build(meta, state)
    sample_input = check(model, a.check) if a.check else None
    if a.steps > 0:
        if meta.get("kind") == "gan":
            sys.exit("continuing a DCGAN's training is not covered; it was loaded and checked")
        if not a.data:
            sys.exit("--steps needs --data")
        spec, opt_meta = meta["model"], meta.get("optimizer", {})
        ds = dataset(a.data, spec)
        sampler = torch.utils.data.distributed.DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=True, seed=a.seed, drop_last=True)
        loader = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, sampler=sampler,
                                             drop_last=True)
        model.to(device).train()
        net = nn.parallel.DistributedDataParallel(model) if distributed else model
        lr = a.lr if a.lr is not None else opt_meta.get("lr", 0.01)
        wd = opt_meta.get("weight_decay", 0.0)
        if opt_meta.get("kind") == "adam":
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
        else:
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=opt_meta.get("momentum", 0.0),
                                  weight_decay=wd)
        loss_fn = F.nll_loss if spec["name"] == "mnist-cnn" else F.cross_entropy
        losses, step, epoch = [], 0, 0
        while step < a.steps:
            sampler.set_epoch(epoch)
            for x, y in loader:
                opt.zero_grad()
                loss = loss_fn(net(x.to(device)), y.to(device))
                loss.backward()
                opt.step()
                mean = loss.detach().clone()
                if distributed:
                    dist.all_reduce(mean)
                    mean /= world
                losses.append(float(mean))
                if rank == 0:
                    print(json.dumps({"step": step, "loss": losses[-1], "processes": world}),
                          flush=True)
                step += 1
                if step == a.steps:
                    break
            epoch += 1
        if a.require_loss_fall:
            q = max(1, len(losses) // 4)
            first, last = sum(losses[:q]) / q, sum(losses[-q:]) / q
            if not (math.isfinite(last) and last < first):
                sys.exit(f"the loss did not fall: {first:.4f} -> {last:.4f}")
        model.cpu()
    if rank == 0 and a.out:
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, a.out, metadata={"source": os.path.basename(a.checkpoint),
                                       "model": meta.get("model", {}).get("name", "dcgan")})
        print(json.dumps({"saved": a.out}), flush=True)
        if sample_input is not None:
            # The trained model's outputs on the check sample's inputs: nnlab can be compared
            # with them after loading the state dict back.
            model.eval()
            with torch.no_grad():
                out = model(sample_input)
            save_file({"input": sample_input, "output": out.contiguous()}, a.out + ".sample")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
