#!/usr/bin/env python3
"""Writes Tests/CPUBackendTests/Fixtures/smollm2_logits.json: an independent fp32 numpy forward pass of
SmolLM2-135M-Instruct.Q4_1.gguf (weights dequantized by the `gguf` package) on a few fixed prompts, and,
when `xllamacpp` (llama.cpp's CPU build) is installed, llama.cpp's greedy tokens for the same prompts.

For each prompt it records the token ids (HF `tokenizers` built from the GGUF vocab, as in
make_golden_tokenizer.py), and for the last position's logits: the top 20 (id, logit), 64 logits at
seeded fixed ids, the L2 norm, sum and sum of absolute values of all of them; then the greedy
continuation of GREEDY_STEPS tokens (argmax, numpy) and llama.cpp's (top_k 1, temperature 0).

The numpy model follows the GGUF llama conventions from first principles, not comet's code: row-major
[out, in] weights, RMSNorm, adjacent-pair RoPE (channels 2i, 2i+1), grouped-query attention with the
causal mask, SwiGLU, the LM head tied to the token embedding when output.weight is absent.

Usage: scripts/make_golden_logits.py [ASSETS_DIR]   (default $COMET_ASSETS or ~/.cache/comet/assets)
Needs: gguf, numpy, tokenizers (scripts/requirements-test.txt); optionally xllamacpp.
"""
import json
import os
import random
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden_tokenizer import smollm2_tokenizer  # noqa: E402

ASSETS = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "COMET_ASSETS", os.path.expanduser("~/.cache/comet/assets"))
GGUF = os.path.join(ASSETS, "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CPUBackendTests", "Fixtures",
                   "smollm2_logits.json")
GREEDY_STEPS = 16
PROMPTS = [
    "The capital of France is",
    "In the beginning God created the heavens and the earth. Now the earth was",
    "def fibonacci(n):\n",
    "<|im_start|>user\nWhat is the tallest mountain on Earth?<|im_end|>\n<|im_start|>assistant\n",
]


class NumpyLlama:
    """The llama forward pass in float32, recomputed from scratch for every call (no KV cache)."""

    def __init__(self, reader: GGUFReader):
        f = reader.fields
        def scalar(key):
            return f[key].contents()
        self.layers = int(scalar("llama.block_count"))
        self.heads = int(scalar("llama.attention.head_count"))
        self.kv_heads = int(scalar("llama.attention.head_count_kv"))
        self.dim = int(scalar("llama.embedding_length"))
        self.head_dim = self.dim // self.heads
        self.eps = np.float32(scalar("llama.attention.layer_norm_rms_epsilon"))
        self.base = float(scalar("llama.rope.freq_base"))
        self.w = {}
        for t in reader.tensors:
            # GGML shape [in, out] (in contiguous) is numpy [out, in]; vectors stay 1-D.
            values = dequantize(t.data, t.tensor_type).astype(np.float32)
            self.w[t.name] = values.reshape([int(d) for d in reversed(t.shape)] if len(t.shape) > 1 else [-1])
        self.output = self.w.get("output.weight", self.w["token_embd.weight"])

    def rms_norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x):
        # x: [tokens, heads, head_dim]; pairs (2i, 2i+1) rotate by position * base^(-2i / head_dim).
        n, d = x.shape[0], self.head_dim
        freqs = self.base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        angles = np.arange(n, dtype=np.float64)[:, None] * freqs[None, :]
        cos, sin = np.cos(angles).astype(np.float32)[:, None, :], np.sin(angles).astype(np.float32)[:, None, :]
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    def logits(self, ids):
        """Logits of every position: [tokens, vocab]."""
        n, hd = len(ids), self.head_dim
        x = self.w["token_embd.weight"][ids]
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), k=1)
        for i in range(self.layers):
            p = f"blk.{i}."
            h = self.rms_norm(x, self.w[p + "attn_norm.weight"])
            q = self.rope((h @ self.w[p + "attn_q.weight"].T).reshape(n, self.heads, hd))
            k = self.rope((h @ self.w[p + "attn_k.weight"].T).reshape(n, self.kv_heads, hd))
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(n, self.kv_heads, hd)
            group = self.heads // self.kv_heads
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)   # head j uses kv head j // group
            scores = np.einsum("qhd,khd->hqk", q, k) / np.float32(np.sqrt(hd)) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            attn = np.einsum("hqk,khd->qhd", scores, v).reshape(n, self.heads * hd)
            x = x + attn @ self.w[p + "attn_output.weight"].T
            h = self.rms_norm(x, self.w[p + "ffn_norm.weight"])
            gate, up = h @ self.w[p + "ffn_gate.weight"].T, h @ self.w[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ self.w[p + "ffn_down.weight"].T
        return self.rms_norm(x, self.w["output_norm.weight"]) @ self.output.T


def llama_cpp_greedy(prompts_ids):
    """llama.cpp's greedy continuation of each prompt with, per step, the logprob margin between its
    first and second choice; None when xllamacpp is not installed. The KV cache is f32 so that the only
    difference from fp32 is llama.cpp's own arithmetic (Q4_1 weights times Q8_1-quantized activations)."""
    try:
        import xllamacpp
    except ImportError:
        print("xllamacpp not installed: no llama.cpp tokens recorded")
        return None
    params = xllamacpp.CommonParams()
    params.model.path = GGUF
    params.n_ctx = 512
    params.n_parallel = 1
    params.cpuparams.n_threads = 2
    params.cache_type_k = xllamacpp.ggml_type.GGML_TYPE_F32
    params.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_F32
    server = xllamacpp.Server(params)
    out = []
    for ids in prompts_ids:
        reply = server.handle_completions({
            "prompt": ids, "n_predict": GREEDY_STEPS, "temperature": 0.0, "top_k": 1, "samplers": ["top_k"],
            "n_probs": 2, "cache_prompt": False, "ignore_eos": True})
        steps = reply["choices"][0]["logprobs"]["content"]
        out.append({
            "tokens": [int(s["id"]) for s in steps],
            "margins": [float(s["top_logprobs"][0]["logprob"] - s["top_logprobs"][1]["logprob"]) for s in steps],
        })
    return out


def main() -> None:
    reader = GGUFReader(GGUF)
    tokenizer = smollm2_tokenizer(reader)
    model = NumpyLlama(reader)
    vocab = model.output.shape[0]
    fixed_ids = sorted(random.Random(11).sample(range(vocab), 64))

    cases = []
    for text in PROMPTS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        last = model.logits(ids)[-1].astype(np.float64)
        top = np.argsort(-last, kind="stable")[:20]
        greedy, margins, context = [], [], list(ids)
        for _ in range(GREEDY_STEPS):
            step = model.logits(context)[-1]
            first, second = np.argsort(-step, kind="stable")[:2]
            greedy.append(int(first))
            margins.append(float(step[first] - step[second]))
            context.append(int(first))
        cases.append({
            "text": text,
            "ids": ids,
            "top": [[int(i), float(last[i])] for i in top],
            "fixed": [[i, float(last[i])] for i in fixed_ids],
            "norm": float(np.sqrt((last * last).sum())),
            "sum": float(last.sum()),
            "absSum": float(np.abs(last).sum()),
            "greedy": greedy,
            # Logit gap between the first and second choice at each greedy step: how far from a tie.
            "greedyMargins": margins,
        })
        print(f"{text!r}: {len(ids)} tokens, greedy {tokenizer.decode(greedy)!r}")

    llama = llama_cpp_greedy([c["ids"] for c in cases])
    for case, theirs in zip(cases, llama or []):
        case["llamaCpp"] = theirs
        agree = next((i for i, (a, b) in enumerate(zip(case["greedy"], theirs["tokens"])) if a != b), GREEDY_STEPS)
        print(f"llama.cpp agrees with numpy on {agree} of {GREEDY_STEPS} greedy tokens: "
              f"{tokenizer.decode(theirs['tokens'])!r}, min margin {min(theirs['margins']):.3f}")

    golden = {"oracle": "numpy fp32 forward of the gguf-dequantized weights; llama.cpp greedy via xllamacpp",
              "greedySteps": GREEDY_STEPS, "cases": cases}
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    size = os.path.getsize(OUT)
    assert size < 1 << 20, f"{OUT} is {size} bytes, over 1 MB"
    print(f"wrote {OUT} ({size} bytes)")


if __name__ == "__main__":
    main()
