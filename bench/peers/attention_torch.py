#!/usr/bin/env python3
"""The peer of `comet bench attention`: PyTorch's bf16 decode attention, timed in the same run.

For each (B, L) of our JSON rows it times torch.nn.functional.scaled_dot_product_attention on one
query token per sequence against a contiguous bf16 K/V cache ([B, kv_heads, L, D], GQA through
enable_gqa, so K/V are read once, not expanded), with CUDA events after warm-up and caches rotated
so that none is served from the L2. It prints, per row: ours (paged KV4), PyTorch bf16, their
KV bytes per second and the ratio, and writes the joined rows as JSON.

Usage (on the GPU machine):
    dist/comet bench attention --json ours.json
    python3 bench/peers/attention_torch.py ours.json --json joined.json
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F


def time_sdpa(batch, length, q_heads, kv_heads, d, iterations=20):
    bytes_kv = 2 * batch * kv_heads * length * d * 2
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    copies = max(1, min(8, (3 * l2 + bytes_kv - 1) // bytes_kv))  # as ours (AttentionBenchmark)
    free, _ = torch.cuda.mem_get_info()
    copies = max(1, min(copies, int(0.8 * free) // max(1, bytes_kv)))
    gen = torch.Generator(device="cuda").manual_seed(torch.seed() & 0xFFFFFFFF)
    q = torch.randn(batch, q_heads, 1, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    caches = [(torch.randn(batch, kv_heads, length, d, device="cuda", dtype=torch.bfloat16, generator=gen),
               torch.randn(batch, kv_heads, length, d, device="cuda", dtype=torch.bfloat16, generator=gen))
              for _ in range(copies)]
    scale = d ** -0.5

    def call(i):
        k, v = caches[i % copies]
        return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=q_heads != kv_heads)

    for i in range(3):
        call(i)
    torch.cuda.synchronize()
    times = []
    for i in range(iterations):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(i)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e3)
    times.sort()
    del caches
    torch.cuda.empty_cache()
    return times[len(times) // 2], bytes_kv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ours", help="JSON rows of `comet bench attention --json`")
    parser.add_argument("--json", help="write the joined rows here")
    args = parser.parse_args()
    try:
        rows = json.load(open(args.ours))
    except (OSError, ValueError) as error:
        sys.exit(f"error: cannot read {args.ours}: {error}")
    torch.backends.cuda.enable_flash_sdp(True)
    device = torch.cuda.get_device_name(0)
    print(f"decode attention on {device}: comet paged KV4 vs PyTorch {torch.__version__} SDPA on a contiguous bf16 cache;"
          " microseconds per call, median of 20")
    print(f"{'B':<6}{'L':<7}{'heads':<8}{'kv4 us':<10}{'TB/s':<8}{'torch us':<10}{'TB/s':<8}speedup")
    joined = []
    for r in rows:
        us, kv_bytes = time_sdpa(r["batch"], r["length"], r["qHeads"], r["kvHeads"], r["headDim"])
        ours_tbps = r["kv4Bytes"] / r["kv4"] / 1e6
        torch_tbps = kv_bytes / us / 1e6
        row = dict(r, torch=us, torchBytes=kv_bytes, torchSpeedup=us / r["kv4"])
        joined.append(row)
        print(f"{r['batch']:<6}{r['length']:<7}{str(r['qHeads']) + '/' + str(r['kvHeads']):<8}{r['kv4']:<10.1f}"
              f"{ours_tbps:<8.2f}{us:<10.1f}{torch_tbps:<8.2f}{us / r['kv4']:.2f}x", flush=True)
    if args.json:
        json.dump(joined, open(args.json, "w"), indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
