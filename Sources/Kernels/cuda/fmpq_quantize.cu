// FMPQ activation quantization, fused with what produces the activation (DESIGN.md §2):
//   rmsnorm_quantize: RMSNorm(x) * gamma, permuted, quantized     (inputs of qkv and gate_up)
//   swiglu_quantize:  silu(gate) * up, permuted, quantized        (input of down)
//   permute_quantize: x permuted, quantized                       (input of o)
// Output is the W4Ax GEMM's activation format: per token, `int4_blocks` A4 blocks (two codes
// per byte, low nibble first) then `int8_blocks` A8 blocks, and one fp32 scale per
// (token, block). Position p of the permuted order takes channel perm[p]; positions past K
// are zero padding. Quantization is exactly Quant.SymmetricQuantizer's: scale = absmax / qmax,
// code = rint(v / scale) clamped to [-qmax, qmax], IEEE division (no fast math).
//
// One block of 256 threads per token. The token's row is staged in shared memory (fp32) so
// that the permutation's gathers are cheap; each warp then quantizes whole K-blocks, one
// BS/32-value slice per lane, with a warp-shuffle absmax. The paper measured 0.7% of run
// time for this fused permutation.
#include "common.cuh"
#include <cuda_bf16.h>

constexpr int QUANT_THREADS = 256;

// Quantizes token t's permuted values, value(p) for p in [0, blocks * BS), into the FMPQ layout.
template <int BS, typename Value>
COMET_DEVICE void quantize_row(const Value& value, int t, int int4_blocks, int int8_blocks,
                               uint8_t* __restrict__ a4, int8_t* __restrict__ a8, float* __restrict__ scale_a) {
    constexpr int PER = BS / 32;  // values per lane
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int blocks = int4_blocks + int8_blocks;
    const int k4 = int4_blocks * BS, k8 = int8_blocks * BS;
    for (int b = warp; b < blocks; b += QUANT_THREADS / 32) {
        float v[PER];
        float absmax = 0.f;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            v[i] = value(b * BS + lane * PER + i);
            absmax = fmaxf(absmax, fabsf(v[i]));
        }
        absmax = warp_max(absmax);
        const bool is8 = b >= int4_blocks;
        const float qmax = is8 ? 127.f : 7.f;
        const float scale = absmax / qmax;
        uint32_t packed = 0;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const int q = scale > 0.f ? int(fminf(fmaxf(rintf(v[i] / scale), -qmax), qmax)) : 0;
            packed |= is8 ? (uint32_t(q) & 0xFFu) << (8 * i) : (uint32_t(q) & 0xFu) << (4 * i);
        }
        if (is8) {
            int8_t* dst = a8 + size_t(t) * k8 + (b - int4_blocks) * BS + lane * PER;
            if (PER == 4) *reinterpret_cast<uint32_t*>(dst) = packed;
            else *reinterpret_cast<uint16_t*>(dst) = uint16_t(packed);
        } else {
            uint8_t* dst = a4 + size_t(t) * (k4 / 2) + (b * BS + lane * PER) / 2;
            if (PER == 4) *reinterpret_cast<uint16_t*>(dst) = uint16_t(packed);
            else *dst = uint8_t(packed);
        }
        if (lane == 0) scale_a[size_t(t) * blocks + b] = scale;
    }
}

// Sum over the block's threads; every thread gets the total. `scratch` holds one float per warp.
COMET_DEVICE float block_sum(float v, float* scratch) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < QUANT_THREADS / 32; ++w) total += scratch[w];
    return total;
}

template <int BS>
COMET_DEVICE void rmsnorm_quantize(const __nv_bfloat16* __restrict__ x, const float* __restrict__ gamma,
                                   const int32_t* __restrict__ perm, float eps, int K, int int4_blocks,
                                   int int8_blocks, uint8_t* a4, int8_t* a8, float* scale_a) {
    extern __shared__ float row[];  // [K]
    __shared__ float scratch[QUANT_THREADS / 32];
    const int t = blockIdx.x;
    float squares = 0.f;
    for (int k = threadIdx.x; k < K; k += QUANT_THREADS) {
        const float v = __bfloat162float(x[size_t(t) * K + k]);
        row[k] = v;
        squares += v * v;
    }
    const float inv = 1.f / sqrtf(block_sum(squares, scratch) / float(K) + eps);
    __syncthreads();
    quantize_row<BS>([&](int p) { return p < K ? row[perm[p]] * inv * gamma[perm[p]] : 0.f; },
                     t, int4_blocks, int8_blocks, a4, a8, scale_a);
}

template <int BS>
COMET_DEVICE void swiglu_quantize(const __nv_bfloat16* __restrict__ gate_up, const int32_t* __restrict__ perm,
                                  int F, int int4_blocks, int int8_blocks, uint8_t* a4, int8_t* a8, float* scale_a) {
    extern __shared__ float row[];  // [F]
    const int t = blockIdx.x;
    for (int k = threadIdx.x; k < F; k += QUANT_THREADS) {
        const float gate = __bfloat162float(gate_up[size_t(t) * 2 * F + k]);
        const float up = __bfloat162float(gate_up[size_t(t) * 2 * F + F + k]);
        row[k] = gate / (1.f + expf(-gate)) * up;
    }
    __syncthreads();
    quantize_row<BS>([&](int p) { return p < F ? row[perm[p]] : 0.f; }, t, int4_blocks, int8_blocks, a4, a8, scale_a);
}

template <int BS>
COMET_DEVICE void permute_quantize(const __nv_bfloat16* __restrict__ x, const int32_t* __restrict__ perm,
                                   int K, int int4_blocks, int int8_blocks, uint8_t* a4, int8_t* a8, float* scale_a) {
    extern __shared__ float row[];  // [K]
    const int t = blockIdx.x;
    for (int k = threadIdx.x; k < K; k += QUANT_THREADS) row[k] = __bfloat162float(x[size_t(t) * K + k]);
    __syncthreads();
    quantize_row<BS>([&](int p) { return p < K ? row[perm[p]] : 0.f; }, t, int4_blocks, int8_blocks, a4, a8, scale_a);
}

#define FMPQ_QUANTIZE_ENTRIES(BS)                                                                             \
    extern "C" __global__ void __launch_bounds__(QUANT_THREADS) rmsnorm_quantize_bs##BS(                    \
        const __nv_bfloat16* x, const float* gamma, const int32_t* perm, float eps, int K, int int4_blocks,  \
        int int8_blocks, uint8_t* a4, int8_t* a8, float* scale_a) {                                          \
        rmsnorm_quantize<BS>(x, gamma, perm, eps, K, int4_blocks, int8_blocks, a4, a8, scale_a);             \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(QUANT_THREADS) swiglu_quantize_bs##BS(                     \
        const __nv_bfloat16* gate_up, const int32_t* perm, int F, int int4_blocks, int int8_blocks,         \
        uint8_t* a4, int8_t* a8, float* scale_a) {                                                           \
        swiglu_quantize<BS>(gate_up, perm, F, int4_blocks, int8_blocks, a4, a8, scale_a);                    \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(QUANT_THREADS) permute_quantize_bs##BS(                    \
        const __nv_bfloat16* x, const int32_t* perm, int K, int int4_blocks, int int8_blocks, uint8_t* a4,  \
        int8_t* a8, float* scale_a) {                                                                        \
        permute_quantize<BS>(x, perm, K, int4_blocks, int8_blocks, a4, a8, scale_a);                         \
    }
FMPQ_QUANTIZE_ENTRIES(128)
FMPQ_QUANTIZE_ENTRIES(64)
