#!/usr/bin/env python3
"""Two samples (safetensors with `input` and `output`, from `nnlab export --sample` or
python/continue_in_pytorch.py) hold the same inputs and outputs within 1e-4.

Usage: same_outputs.py A B
"""
import sys

import numpy as np
from safetensors.numpy import load_file

a, b = (load_file(p) for p in sys.argv[1:3])
assert np.array_equal(a["input"], b["input"]), "the samples' inputs differ"
diff = float(np.max(np.abs(a["output"] - b["output"])))
assert diff <= 1e-4, f"outputs differ by {diff:.3g}"
print(f"same outputs: max |difference| {diff:.2e} over {a['output'].size} values")
