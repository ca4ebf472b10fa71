#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/smollm2_dequant.json: for a few tensors of SmolLM2-135M-Instruct.Q4_1.gguf
(one per stored type: Q8_0, Q4_1, F32), the `gguf` package's dequantized values: the first 64, 64 at
seeded random positions, the float64 sum and the absolute maximum of all elements.

Usage: scripts/make_golden_gguf.py [ASSETS_DIR]   (default $COMET_ASSETS or ~/.cache/comet/assets)
"""
import json
import os
import random
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ASSETS = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "COMET_ASSETS", os.path.expanduser("~/.cache/comet/assets"))
GGUF = os.path.join(ASSETS, "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ModelTests", "Fixtures",
                   "smollm2_dequant.json")
TENSORS = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.29.attn_v.weight",
           "blk.0.attn_norm.weight", "output_norm.weight"]


def main() -> None:
    reader = GGUFReader(GGUF)
    by_name = {t.name: t for t in reader.tensors}
    rng = random.Random(7)
    golden = []
    for name in TENSORS:
        t = by_name[name]
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        assert values.size == int(np.prod(t.shape))
        positions = sorted(rng.randrange(values.size) for _ in range(64))
        golden.append({
            "name": name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in t.shape],  # GGML order: shape[0] is contiguous
            "first": [float(v) for v in values[:64]],
            "sampled": [[p, float(values[p])] for p in positions],
            "sum": float(values.astype(np.float64).sum()),
            "absmax": float(np.abs(values).max()),
        })
    with open(OUT, "w") as f:
        json.dump({"oracle": "gguf.quants.dequantize", "tensors": golden}, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
