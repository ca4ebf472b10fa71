// Device-to-device copy at memory bandwidth: the ceiling every memory-bound kernel is
// measured against (DESIGN.md §1: 4.28 TB/s read + write on the H200).
#include "common.cuh"

// Copies `bytes` bytes. Both pointers must be 16-byte aligned (cuMemAlloc gives 256).
// NOTES: each thread moves UNROLL 16-byte vectors per iteration, all loads issued before the
// first store, so enough bytes are in flight to cover HBM latency with a grid of a few
// blocks per SM. The last (bytes % 16) bytes are copied one at a time by block 0.
extern "C" __global__ void __launch_bounds__(256)
copy_bytes(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, uint64_t bytes) {
    constexpr int UNROLL = 4;
    const uint64_t vectors = bytes / 16;
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
    uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + (UNROLL - 1) * stride < vectors; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) v[u] = __ldcs(s + i + u * stride);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) __stcs(d + i + u * stride, v[u]);
    }
    for (; i < vectors; i += stride) d[i] = s[i];
    if (blockIdx.x == 0) {
        for (uint64_t b = vectors * 16 + threadIdx.x; b < bytes; b += blockDim.x) dst[b] = src[b];
    }
}
