# PyTorch reference for `nnlab bench` on the same CUDA GPU: the same models, batches and
# optimizers, eager mode with torch's defaults (cuDNN may use TF32 for convolutions).
# Run where torch sees a GPU: python3 scripts/torch-bench.py (prints img/s as JSON:
# [train, inference] per model). nnlab's figures: nnlab bench --models
# mnist-cnn,resnet14,dcgan,resnet18 on the same machine.
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

dev = "cuda"
torch.manual_seed(0)


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.drop2d = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.drop2d(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), 1)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet14(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def gen():
    return nn.Sequential(
        nn.Linear(100, 256 * 7 * 7), nn.Unflatten(1, (256, 7, 7)), nn.BatchNorm2d(256), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 3, 1, 1), nn.Tanh())


def disc():
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(6272, 1))


def timed(step, batch, warm=10, steps=50):
    for _ in range(warm):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def classifier(model, shape, batch, ibatch, opt):
    x = torch.randn(batch, *shape, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def train():
        opt.zero_grad()
        out = model(x)
        loss = F.nll_loss(out, y) if isinstance(model, MnistCnn) else F.cross_entropy(out, y)
        loss.backward()
        opt.step()

    model.train()
    tr = timed(train, batch)
    xi = torch.randn(ibatch, *shape, device=dev)
    model.eval()

    def infer():
        with torch.no_grad():
            model(xi)

    return tr, timed(infer, ibatch)


if __name__ == "__main__":
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    m = MnistCnn().to(dev)
    res["mnist-cnn"] = classifier(m, (1, 28, 28), 64, 256, torch.optim.SGD(m.parameters(), 0.01, 0.5))
    r = ResNet14().to(dev)
    res["resnet14"] = classifier(r, (3, 32, 32), 32, 256, torch.optim.SGD(r.parameters(), 0.01, 0.9))
    g, d = gen().to(dev), disc().to(dev)
    og = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.randn(64, 1, 28, 28, device=dev)
    ones, zeros = torch.ones(64, 1, device=dev), torch.zeros(64, 1, device=dev)
    bce = F.binary_cross_entropy_with_logits


    def gan_step():
        z = torch.randn(64, 100, device=dev)
        fake = g(z)
        od.zero_grad()
        (bce(d(real), ones) + bce(d(fake.detach()), zeros)).backward()
        od.step()
        og.zero_grad()
        bce(d(fake), ones).backward()
        og.step()


    def sample():
        with torch.no_grad():
            g(torch.randn(64, 100, device=dev))


    res["dcgan"] = (timed(gan_step, 64), timed(sample, 64))
    r18 = torchvision.models.resnet18().to(dev)
    res["resnet18"] = classifier(r18, (3, 224, 224), 32, 64, torch.optim.SGD(r18.parameters(), 0.01, 0.5))
    print(json.dumps(res, indent=1))
