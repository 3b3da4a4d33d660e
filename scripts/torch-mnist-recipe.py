# The MnistCnn recipes of issue 3 in PyTorch on full MNIST: SGD (lr 0.01, momentum 0.5) and
# Adam (1e-3), batch 64, 2 epochs, seeds 1-3; prints the test accuracy after each epoch.
# The reference for nnlab's 2-epoch accuracies (`nnlab train --model mnist-cnn --data DIR
# --epochs 2 ...`). Usage: python3 scripts/torch-mnist-recipe.py DIR, where DIR holds the
# four MNIST IDX files, raw or .gz (scripts/fetch-data puts them in data/mnist). Needs a GPU.
import gzip
import importlib.util
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

_spec = importlib.util.spec_from_file_location(
    "torch_bench", pathlib.Path(__file__).with_name("torch-bench.py"))
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
MnistCnn = _bench.MnistCnn

d = sys.argv[1]


def idx(name):
    """An IDX file of DIR, raw or gzipped, as [count, values] uint8."""
    path = pathlib.Path(d, name)
    raw = path.read_bytes() if path.exists() else gzip.open(f"{path}.gz").read()
    n = int.from_bytes(raw[4:8], "big")
    off = 16 if raw[3] == 3 else 8
    return np.frombuffer(raw, np.uint8, offset=off).reshape(n, -1)


xtr = torch.tensor(idx("train-images-idx3-ubyte"), dtype=torch.float32).view(-1, 1, 28, 28) / 255
ytr = torch.tensor(idx("train-labels-idx1-ubyte")).long().view(-1)
xte = torch.tensor(idx("t10k-images-idx3-ubyte"), dtype=torch.float32).view(-1, 1, 28, 28) / 255
yte = torch.tensor(idx("t10k-labels-idx1-ubyte")).long().view(-1)
norm = lambda x: ((x - 0.1307) / 0.3081).cuda()
xtr, xte, ytr, yte = norm(xtr), norm(xte), ytr.cuda(), yte.cuda()
out = {}
for opt_name in ["sgd", "adam"]:
    for seed in [1, 2, 3]:
        torch.manual_seed(seed)
        m = MnistCnn().cuda()
        opt = (torch.optim.SGD(m.parameters(), 0.01, 0.5) if opt_name == "sgd"
               else torch.optim.Adam(m.parameters(), 1e-3))
        accs = []
        for ep in range(2):
            m.train()
            perm = torch.randperm(60000, device="cuda")
            for i in range(0, 60000, 64):
                b = perm[i:i + 64]
                opt.zero_grad()
                F.nll_loss(m(xtr[b]), ytr[b]).backward()
                opt.step()
            m.eval()
            with torch.no_grad():
                accs.append((m(xte).argmax(1) == yte).float().mean().item())
        out[f"{opt_name}-seed{seed}"] = accs
        print(opt_name, seed, accs, flush=True)
print(json.dumps(out))
