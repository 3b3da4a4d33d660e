"""Writes fixtures/torchvision_layouts.json: for every torchvision model in nnlab's registry,
its parameter count and the name and shape of every state-dict entry. The registry test
checks nnlab's models against it, so torchvision weights load into each of them.

    python3 -m venv v && v/bin/pip install torch torchvision
    v/bin/python tests/parity/gen_layouts.py
"""

import json
import pathlib

import torchvision.models as tvm

MODELS = {
    "resnet18": lambda: tvm.resnet18(),
    "resnet34": lambda: tvm.resnet34(),
    "resnet50": lambda: tvm.resnet50(),
    "googlenet": lambda: tvm.googlenet(aux_logits=False, init_weights=False),
    "vgg11": lambda: tvm.vgg11(),
    "vgg16": lambda: tvm.vgg16(),
    "alexnet": lambda: tvm.alexnet(),
}

out = {}
for name, make in MODELS.items():
    m = make()
    out[name] = {
        "parameters": sum(p.numel() for p in m.parameters()),
        "state": [[k, list(v.shape)] for k, v in m.state_dict().items()],
    }
    print(name, out[name]["parameters"], len(out[name]["state"]))

path = pathlib.Path(__file__).parent / "fixtures" / "torchvision_layouts.json"
path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
print("wrote", path)
