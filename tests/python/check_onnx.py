#!/usr/bin/env python3
"""Checks ONNX files written by `nnlab export --sample`: each passes onnx's full checker,
declares a symbolic batch and the shape of every edge, carries nnlab's metadata, and
onnxruntime (CPU) computes nnlab's outputs on the sample's inputs within 1e-4.

Usage: check_onnx.py MODEL.onnx SAMPLE.safetensors [MODEL.onnx SAMPLE.safetensors ...]
Prints one line per model; exits non-zero on the first failure.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

TOL = 1e-4


def check(model_path, sample_path):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8, model.ir_version
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    meta = {p.key: p.value for p in model.metadata_props}
    assert "model" in meta, meta
    g = model.graph
    (inp,) = g.input
    (out,) = g.output
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N", inp
    assert out.type.tensor_type.shape.dim[0].dim_param == "N", out
    # Netron shows every edge's shape: every node output is typed.
    typed = {v.name for v in g.value_info} | {out.name}
    untyped = [o for n in g.node for o in n.output if o not in typed]
    assert not untyped, f"edges without value_info: {untyped[:5]}"
    # Initializers keep the model's (torchvision's) names.
    names = {t.name for t in g.initializer}
    sample = load_file(sample_path)
    x, want = sample["input"], sample["output"]
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {inp.name: x})
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = float(np.max(np.abs(want)))
    assert scale > 1e-2, f"{model_path}: outputs of at most {scale:.3g} would check nothing"
    diff = float(np.max(np.abs(got - want)))
    assert diff <= TOL, f"{model_path}: onnxruntime differs from nnlab by {diff:.3g} > {TOL}"
    ops = sorted({n.op_type for n in g.node})
    print(f"{meta['model']:<18} nodes {len(g.node):>4}  initializers {len(names):>4}  "
          f"batch {x.shape[0]}  max |out| {scale:.3g}  max |ort - nnlab| {diff:.2e}  ops {','.join(ops)}")


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        sys.exit(__doc__)
    for m, s in zip(argv[0::2], argv[1::2]):
        check(m, s)


if __name__ == "__main__":
    main(sys.argv[1:])
