#!/usr/bin/env python3
"""Writes Tests/CPUBackendTests/Fixtures/llama3_rope.json: the RoPE inverse frequencies of Llama 3.1-style
`rope_scaling` (rope_type "llama3"), computed by a transcription of Hugging Face transformers'
`_compute_llama3_parameters` (modeling_rope_utils.py) with numpy in float64 in place of torch.

Each case holds the config.json fields and the scaled inverse frequencies (one per rotated channel pair);
the Swift test builds a ModelConfig from the same fields and compares RotaryEmbedding.frequencies.
Usage: scripts/make_golden_llama3_rope.py    (needs numpy)
"""
import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CPUBackendTests", "Fixtures",
                   "llama3_rope.json")


def compute_llama3_parameters(base, dim, factor, low_freq_factor, high_freq_factor, old_context_len):
    """transformers' _compute_llama3_parameters, line by line (torch.where -> np.where)."""
    inv_freq = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float64) / dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    # wavelen < high_freq_wavelen: do nothing; wavelen > low_freq_wavelen: divide by factor
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # otherwise: interpolate between the two, using a smooth factor
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    inv_freq_llama = np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    return inv_freq_llama


CASES = [
    # Llama 3.1 8B / 70B: head_dim 128.
    {"name": "llama3.1-8b", "rope_theta": 500000.0, "head_dim": 128,
     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}},
    # Llama 3.2 1B: head_dim 64, factor 32.
    {"name": "llama3.2-1b", "rope_theta": 500000.0, "head_dim": 64,
     "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}},
    # A small head and base, so that all three bands (kept, blended, divided) have several pairs.
    {"name": "small", "rope_theta": 10000.0, "head_dim": 32,
     "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 8.0,
                      "original_max_position_embeddings": 256}},
]


def main() -> None:
    for case in CASES:
        s = case["rope_scaling"]
        inv = compute_llama3_parameters(case["rope_theta"], case["head_dim"], s["factor"], s["low_freq_factor"],
                                        s["high_freq_factor"], s["original_max_position_embeddings"])
        case["inv_freq"] = [float(x) for x in inv]
        base = 1.0 / (case["rope_theta"] ** (np.arange(0, case["head_dim"], 2) / case["head_dim"]))
        ratio = base / inv
        case["bands"] = {"kept": int(np.sum(np.isclose(ratio, 1))), "divided": int(np.sum(np.isclose(ratio, s["factor"])))}
    with open(OUT, "w") as f:
        json.dump({"oracle": "transformers _compute_llama3_parameters transcribed to numpy float64", "cases": CASES}, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")
    for c in CASES:
        print(c["name"], c["bands"], len(c["inv_freq"]))


if __name__ == "__main__":
    main()
