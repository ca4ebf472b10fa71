#!/usr/bin/env python3
"""Exports SmolLM2-135M-Instruct.Q4_1.gguf as a Hugging Face model folder, for the test that checks the
HF loading path gives the same logits and greedy tokens as the GGUF path (CPUBackendTests).

Writes $COMET_ASSETS/smollm2-hf/ (or the folder given as the first argument):
  config.json                     LlamaForCausalLM, from the GGUF metadata
  model-00001-of-00002.safetensors   embeddings and layers 0-14, F32
  model-00002-of-00002.safetensors   layers 15-29 and the final norm, F32
  model.safetensors.index.json    weight_map of both shards
  tokenizer.json                  HF `tokenizers` from the GGUF vocab/merges (as make_golden_tokenizer.py)
  tokenizer_config.json           bos/eos tokens, add_bos_token, the GGUF's chat template

Weights are the `gguf` package's dequantization in float32 (exactly the GGUF path's fp32 weights), in HF
naming and layout: numpy [out, in], and q/k rows un-permuted. llama.cpp's converter permutes HF's
rotate-half q/k rows for adjacent-pair RoPE with
    w.reshape(n_head, 2, head_dim // 2, dim).swapaxes(1, 2)
so HF order is recovered by the inverse, w.reshape(n_head, head_dim // 2, 2, dim).swapaxes(1, 2).
The safetensors files are written by hand (the format is an 8-byte header length, a JSON header, the data).

Idempotent: a folder whose stamp matches this script's version is kept. Usage:
  scripts/make_hf_fixture.py [OUT_DIR]     (needs gguf, numpy, tokenizers: scripts/requirements-test.txt)
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden_tokenizer import smollm2_tokenizer  # noqa: E402

VERSION = "1"
ASSETS = os.environ.get("COMET_ASSETS", os.path.expanduser("~/.cache/comet/assets"))
GGUF = os.path.join(ASSETS, "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ASSETS, "smollm2-hf")
STAMP = ".comet-fixture-version"

LAYER_NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, layer, part, kind = gguf_name.split(".")
    return f"model.layers.{layer}.{LAYER_NAMES[part]}.{kind}"


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of llama.cpp's permute: adjacent-pair rows back to rotate-half order."""
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def write_safetensors(path: str, tensors: list) -> int:
    """tensors: [(name, float32 array)]. Returns the data size."""
    header, offset = {}, 0
    for name, array in tensors:
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, array in tensors:
            f.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return offset


def main() -> None:
    stamp = os.path.join(OUT, STAMP)
    if os.path.exists(stamp) and open(stamp).read().strip() == VERSION:
        print(f"have {OUT}")
        return
    reader = GGUFReader(GGUF)
    fields = reader.fields
    def scalar(key):
        return fields[key].contents()
    heads, kv_heads = int(scalar("llama.attention.head_count")), int(scalar("llama.attention.head_count_kv"))
    layers = int(scalar("llama.block_count"))
    names = {t.name for t in reader.tensors}

    weights = {}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        array = values.reshape([int(d) for d in reversed(t.shape)] if len(t.shape) > 1 else [-1])
        if t.name.endswith("attn_q.weight"):
            array = unpermute(array, heads)
        elif t.name.endswith("attn_k.weight"):
            array = unpermute(array, kv_heads)
        weights[hf_name(t.name)] = array

    tmp = OUT + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    half = layers // 2
    def in_first(name):
        return name == "model.embed_tokens.weight" or (name.startswith("model.layers.") and int(name.split(".")[2]) < half)
    shards = [("model-00001-of-00002.safetensors", [n for n in weights if in_first(n)]),
              ("model-00002-of-00002.safetensors", [n for n in weights if not in_first(n)])]
    weight_map, total = {}, 0
    for file_name, shard_names in shards:
        total += write_safetensors(os.path.join(tmp, file_name), [(n, weights[n]) for n in shard_names])
        weight_map.update({n: file_name for n in shard_names})
    dump(os.path.join(tmp, "model.safetensors.index.json"),
         {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})

    tokens = fields["tokenizer.ggml.tokens"].contents()
    bos, eos = int(scalar("tokenizer.ggml.bos_token_id")), int(scalar("tokenizer.ggml.eos_token_id"))
    dim = int(scalar("llama.embedding_length"))
    dump(os.path.join(tmp, "config.json"), {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": len(tokens), "hidden_size": dim,
        "intermediate_size": int(scalar("llama.feed_forward_length")), "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "silu",
        "max_position_embeddings": int(scalar("llama.context_length")),
        "rms_norm_eps": float(scalar("llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(scalar("llama.rope.freq_base")), "rope_scaling": None,
        "tie_word_embeddings": "output.weight" not in names, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "float32"})
    smollm2_tokenizer(reader).save(os.path.join(tmp, "tokenizer.json"))
    add_bos = fields.get("tokenizer.ggml.add_bos_token")
    dump(os.path.join(tmp, "tokenizer_config.json"), {
        "add_bos_token": bool(add_bos.contents()) if add_bos else False,
        "bos_token": tokens[bos], "eos_token": tokens[eos],
        "chat_template": scalar("tokenizer.chat_template")})

    with open(os.path.join(tmp, STAMP), "w") as f:
        f.write(VERSION + "\n")
    shutil.rmtree(OUT, ignore_errors=True)
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({total} bytes of weights in 2 shards)")


def dump(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
