#!/usr/bin/env python3
"""Generates the PyTorch parity fixtures checked by crates/gpu-nn/tests/kernels/parity.rs.

Each case is one small safetensors file: inputs, outputs and gradients (w.r.t. a random
upstream gradient `gy`, so every element of every gradient is exercised). Options of each
case are in the file's metadata and repeated in the Rust test, which checks they agree.

Usage (needs torch and safetensors; CI does not: the fixtures are committed):
    python3 -m venv v && v/bin/pip install torch safetensors
    v/bin/python tests/parity/gen_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
torch.manual_seed(0)
torch.use_deterministic_algorithms(True)


def rnd(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def save(name, tensors, **meta):
    os.makedirs(OUT, exist_ok=True)
    t = {k: v.detach().contiguous().float() for k, v in tensors.items()}
    save_file(t, os.path.join(OUT, f"{name}.safetensors"),
              metadata={"opts": json.dumps(meta), "torch": torch.__version__})


def grads(y, inputs, gy=None):
    gy = rnd(*y.shape) if gy is None else gy
    gs = torch.autograd.grad(y, inputs, gy)
    return gy, gs


def leaf(t):
    return t.clone().requires_grad_(True)


# --- conv2d: odd shapes, non-square kernel, stride, padding, dilation, groups
x, w, b = leaf(rnd(3, 4, 13, 11)), leaf(rnd(6, 2, 3, 2)), leaf(rnd(6))
opts = dict(stride=[2, 1], padding=[1, 1], dilation=[2, 1], groups=2)
y = F.conv2d(x, w, b, **opts)
gy, (gx, gw, gb) = grads(y, [x, w, b])
save("conv2d", dict(x=x, w=w, b=b, y=y, gy=gy, gx=gx, gw=gw, gb=gb), **opts)

# --- conv_transpose2d
x, w, b = leaf(rnd(2, 4, 5, 6)), leaf(rnd(4, 3, 3, 2)), leaf(rnd(6))
opts = dict(stride=[2, 2], padding=[1, 0], output_padding=[1, 1], dilation=[1, 1], groups=2)
y = F.conv_transpose2d(x, w, b, stride=opts["stride"], padding=opts["padding"],
                       output_padding=opts["output_padding"], groups=2,
                       dilation=opts["dilation"])
gy, (gx, gw, gb) = grads(y, [x, w, b])
save("conv_transpose2d", dict(x=x, w=w, b=b, y=y, gy=gy, gx=gx, gw=gw, gb=gb), **opts)

# --- pooling
x = leaf(rnd(3, 5, 13, 11))
opts = dict(kernel=[3, 2], stride=[2, 2], padding=[1, 1], dilation=[1, 1], ceil_mode=True)
y = F.max_pool2d(x, opts["kernel"], opts["stride"], opts["padding"], opts["dilation"],
                 ceil_mode=True)
gy, (gx,) = grads(y, [x])
save("max_pool2d", dict(x=x, y=y, gy=gy, gx=gx), **opts)

x = leaf(rnd(3, 5, 13, 11))
opts = dict(kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=True, count_include_pad=False)
y = F.avg_pool2d(x, opts["kernel"], opts["stride"], opts["padding"], ceil_mode=True,
                 count_include_pad=False)
gy, (gx,) = grads(y, [x])
save("avg_pool2d", dict(x=x, y=y, gy=gy, gx=gx), **opts)

x = leaf(rnd(3, 5, 13, 11))
y = F.adaptive_avg_pool2d(x, (5, 4))
gy, (gx,) = grads(y, [x])
save("adaptive_avg_pool2d", dict(x=x, y=y, gy=gy, gx=gx), out=[5, 4])

# --- batch norm, training (running stats updated) and eval
x, w, b = leaf(rnd(3, 5, 7, 6)), leaf(rnd(5)), leaf(rnd(5))
rm, rv = rnd(5) * 0.1, torch.rand(5) + 0.5
rm0, rv0 = rm.clone(), rv.clone()
y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
gy, (gx, gw, gb) = grads(y, [x, w, b])
save("batch_norm_train", dict(x=x, w=w, b=b, rm0=rm0, rv0=rv0, rm=rm, rv=rv, y=y, gy=gy,
                              gx=gx, gw=gw, gb=gb), momentum=0.1, eps=1e-5)
x = leaf(rnd(6, 5))
y = F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5)
gy, (gx, gw, gb) = grads(y, [x, w, b])
save("batch_norm_eval", dict(x=x, w=w, b=b, rm=rm, rv=rv, y=y, gy=gy, gx=gx, gw=gw, gb=gb),
     eps=1e-5)

# --- linear
x, w, b = leaf(rnd(7, 29)), leaf(rnd(13, 29)), leaf(rnd(13))
y = F.linear(x, w, b)
gy, (gx, gw, gb) = grads(y, [x, w, b])
save("linear", dict(x=x, w=w, b=b, y=y, gy=gy, gx=gx, gw=gw, gb=gb))

# --- activations
x = leaf(rnd(3, 5, 7) * 3)
for name, f in [("relu", F.relu), ("leaky_relu", lambda t: F.leaky_relu(t, 0.2)),
                ("sigmoid", torch.sigmoid), ("tanh", torch.tanh)]:
    y = f(x)
    gy, (gx,) = grads(y, [x])
    save(name, dict(x=x, y=y, gy=gy, gx=gx))

# --- losses
logits = leaf(rnd(7, 13) * 4)
target = torch.randint(0, 13, (7,))
y = F.log_softmax(logits, dim=1)
gy, (gx,) = grads(y, [logits])
save("log_softmax", dict(x=logits, y=y, gy=gy, gx=gx))
loss = F.cross_entropy(logits, target)
(gx,) = torch.autograd.grad(loss, [logits])
save("cross_entropy", dict(x=logits, target=target.float(), loss=loss.reshape(1), gx=gx))
z = leaf(rnd(5, 3) * 4)
t = torch.rand(5, 3)
loss = F.binary_cross_entropy_with_logits(z, t)
(gx,) = torch.autograd.grad(loss, [z])
save("bce_with_logits", dict(x=z, target=t, loss=loss.reshape(1), gx=gx))

# --- channel concat
a, b2, c = leaf(rnd(3, 5, 4, 3)), leaf(rnd(3, 1, 4, 3)), leaf(rnd(3, 7, 4, 3))
y = torch.cat([a, b2, c], dim=1)
gy, (ga, gb2, gc) = grads(y, [a, b2, c])
save("cat", dict(a=a, b=b2, c=c, y=y, gy=gy, ga=ga, gb=gb2, gc=gc))


# --- graphs
def conv_bn_relu_case():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(8)
    x = rnd(4, 3, 9, 9)
    y = F.relu(bn(conv(x)))
    gy = rnd(*y.shape)
    y.backward(gy)
    save("conv_bn_relu", {"x": x, "conv.weight": conv.weight, "bn.weight": bn.weight,
                          "bn.bias": bn.bias, "y": y, "gy": gy,
                          "grad.conv.weight": conv.weight.grad, "grad.bn.weight": bn.weight.grad,
                          "grad.bn.bias": bn.bias.grad, "bn.running_mean": bn.running_mean,
                          "bn.running_var": bn.running_var})


class BasicBlock(torch.nn.Module):
    """torchvision's BasicBlock with a 1x1 projection shortcut (stride 2)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class BasicConv2d(torch.nn.Module):
    """torchvision.models.googlenet.BasicConv2d: conv (no bias) + BN (eps 1e-3) + ReLU."""

    def __init__(self, i, o, k, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(i, o, k, padding=padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(o, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(torch.nn.Module):
    """torchvision's GoogLeNet Inception module, same names (branch2.1.conv.weight)."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()

        def bc(i, o, k, p=0):
            return BasicConv2d(i, o, k, p)
        self.branch1 = bc(cin, c1, 1)
        self.branch2 = torch.nn.Sequential(bc(cin, c3r, 1), bc(c3r, c3, 3, 1))
        self.branch3 = torch.nn.Sequential(bc(cin, c5r, 1), bc(c5r, c5, 3, 1))
        self.branch4 = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                           bc(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def module_case(name, m, x):
    m.train()
    y = m(x)
    gy = rnd(*y.shape)
    y.backward(gy)
    t = {"x": x, "y": y, "gy": gy}
    for k, v in m.state_dict(keep_vars=True).items():
        if k.endswith("num_batches_tracked"):
            continue
        t[k] = v
        if isinstance(v, torch.nn.Parameter):
            t["grad." + k] = v.grad
    # Parameters as they were before the step: the running stats above are after it.
    save(name, t)


def initial_state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()
            if not k.endswith("num_batches_tracked")}


conv_bn_relu_case()
torch.manual_seed(2)
blk = BasicBlock(4, 8, 2)
init = initial_state(blk)
module_case("basic_block", blk, rnd(2, 4, 9, 9))
save("basic_block_init", init)
torch.manual_seed(3)
inc = Inception(6, 4, 3, 5, 2, 3, 2)
init = initial_state(inc)
module_case("inception", inc, rnd(2, 6, 7, 7))
save("inception_init", init)


def optim_case(name, make_opt):
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x, target = rnd(4, 6), torch.tensor([0, 2, 1, 2])
    t = {"x": x, "target": target.float()}
    t.update({"init." + k: v.detach().clone() for k, v in net.state_dict().items()})
    opt = make_opt(net.parameters())
    for step in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), target)
        loss.backward()
        opt.step()
        t[f"loss.{step}"] = loss.detach().reshape(1)
        t.update({f"step{step}.{k}": v.detach().clone() for k, v in net.state_dict().items()})
    save(name, t)


optim_case("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4))
optim_case("adam", lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                                              weight_decay=1e-4))
print("fixtures written to", OUT)
