// FMPQ activation quantization, fused with what produces the activation (DESIGN.md §2):
//   rmsnorm_quantize: RMSNorm(x) * gamma, permuted, quantized     (inputs of qkv and gate_up)
//   swiglu_quantize:  silu(gate) * up, permuted, quantized        (input of down)
//   permute_quantize: x permuted, quantized                       (input of o)
// Output is the W4Ax GEMM's activation format: per token, `int4_blocks` A4 blocks (two codes
// per byte, low nibble first) then `int8_blocks` A8 blocks, and one fp32 scale per
// (token, block). Position p of the permuted order takes channel perm[p]; positions past K
// are zero padding. Quantization is exactly Quant.SymmetricQuantizer's: scale = (absmax * clip)
// / qmax with clip = a4_clip for A4 blocks (FMPQLayout.int4Clip) and 1 for A8, code =
// rint(v / scale) clamped to [-qmax, qmax], fp32 product and IEEE division (no fast math).
// Blocks below rotated_blocks (FMPQLayout.rotationBlocks: 0, the A4 blocks or all) and wholly
// inside K are first Walsh-Hadamard transformed
// (Quant.BlockHadamard: unnormalized, butterflies of stride 1, 2, 4, ... each (a, b) -> (a + b,
// a - b), in that order, so the fp32 results are bit-identical to the reference).
//
// Blocks of 256 threads: grid (rows, splits). Block (t, c) quantizes K-blocks c, c + splits, ...
// of token t, one K-block per warp at a time, one BS/32-value slice per lane, with a
// warp-shuffle absmax. Two ways to feed the permutation's gathers (`stage_row`):
//  - few rows (decode), split over blocks: each value is computed where it is gathered
//    (x[perm[p]], from L1/L2), and RMSNorm's sum of squares is taken over the whole row by every
//    block of the token (the same order in each, so every block has the same scale). One block
//    per token had left a decode token's down_proj input (112 K-blocks) to one SM: 34 us of a
//    6 ms step on an H100 (`bench decode --profile`).
//  - many rows (at least one per SM), one block each: the row's inputs are computed once into
//    shared memory (fp32) and gathered from there; gathering 2-byte values from global memory
//    made SwiGLU's input (two 28 KiB rows per token) 1.3x slower at 256 tokens.
// The paper measured 0.7% of run time for this fused permutation.
#include "common.cuh"
#include <cuda_bf16.h>

constexpr int QUANT_THREADS = 256;

// Where quantize_row puts a token's codes and scales.
//
// Packed: the small-M GEMM's format. Per token, A4 blocks two codes per byte (low nibble
// first), then A8 blocks, and scales [token][block].
struct PackedActivations {
    uint8_t* a4;
    int8_t* a8;
    float* scale_a;
    int int4_blocks, blocks, k4, k8;

    template <int PER>
    COMET_DEVICE void store(int t, int b, int lane, const int (&q)[PER], float scale) const {
        uint32_t packed = 0;
        if (b >= int4_blocks) {
#pragma unroll
            for (int i = 0; i < PER; ++i) packed |= (uint32_t(q[i]) & 0xFFu) << (8 * i);
            int8_t* dst = a8 + size_t(t) * k8 + (b - int4_blocks) * (PER * 32) + lane * PER;
            if (PER == 4) *reinterpret_cast<uint32_t*>(dst) = packed;
            else *reinterpret_cast<uint16_t*>(dst) = uint16_t(packed);
        } else {
#pragma unroll
            for (int i = 0; i < PER; ++i) packed |= (uint32_t(q[i]) & 0xFu) << (4 * i);
            uint8_t* dst = a4 + size_t(t) * (k4 / 2) + (b * PER * 32 + lane * PER) / 2;
            if (PER == 4) *reinterpret_cast<uint16_t*>(dst) = uint16_t(packed);
            else *dst = uint8_t(packed);
        }
        if (lane == 0) scale_a[size_t(t) * blocks + b] = scale;
    }
};

// Tiled: the large-M GEMM's format (w4ax_gemm_sm90.cu, block size 128 only). Every (128-token
// tile, K-block) is a 16 KiB image of the GEMM's shared-memory tile: row r = token, 128 int8
// codes (A4 blocks too), 16-byte chunk c stored at chunk c ^ (r % 8) (the 128-byte swizzle).
// Inside a row, byte p = 32s + 16h + 4u + j holds channel 32u + 8s + 4h + j: the channel the
// weight layout binds to k index 16h + 4u + j of k32 step s (w4ax_gemm.cu). Scales are
// [tile][block][128 tokens]. Rows past the last token are written as zeros.
struct TiledActivations {
    int8_t* codes;
    float* scale_a;
    int blocks;

    template <int PER>
    COMET_DEVICE void store(int t, int b, int lane, const int (&q)[PER], float scale) const {
        static_assert(PER == 4, "the tiled format is for 128-channel blocks");
        uint32_t packed = 0;
#pragma unroll
        for (int i = 0; i < PER; ++i) packed |= (uint32_t(q[i]) & 0xFFu) << (8 * i);
        const int row = t & 127;
        const size_t image = size_t(t >> 7) * blocks + b;
        // This lane's channels 4 lane .. 4 lane + 3: u = lane / 8, s = lane / 2 % 4, h = lane % 2.
        const int p = 32 * ((lane >> 1) & 3) + 16 * (lane & 1) + 4 * (lane >> 3);
        const int chunk = (p >> 4) ^ (row & 7);
        *reinterpret_cast<uint32_t*>(codes + image * 16384 + row * 128 + chunk * 16 + (p & 15)) = packed;
        if (lane == 0) scale_a[image * 128 + row] = scale;
    }
};

// Quantizes token t's permuted values, value(p) for p in [0, blocks * BS), through `out`; blocks
// below rotated_blocks and wholly inside the K real channels are rotated first.
template <int BS, typename Value, typename Output>
COMET_DEVICE void quantize_row(const Value& value, int t, int K, int int4_blocks, int int8_blocks, float a4_clip, int rotated_blocks,
                               const Output& out) {
    constexpr int PER = BS / 32;  // values per lane
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int blocks = int4_blocks + int8_blocks;
    for (int b = blockIdx.y + warp * gridDim.y; b < blocks; b += gridDim.y * (QUANT_THREADS / 32)) {
        float v[PER];
#pragma unroll
        for (int i = 0; i < PER; ++i) v[i] = value(b * BS + lane * PER + i);
        if (b < rotated_blocks && (b + 1) * BS <= K) block_hadamard<PER>(v, lane);
        float absmax = 0.f;
#pragma unroll
        for (int i = 0; i < PER; ++i) absmax = fmaxf(absmax, fabsf(v[i]));
        absmax = warp_max(absmax);
        const float qmax = b >= int4_blocks ? 127.f : 7.f;
        const float scale = __fdiv_rn(__fmul_rn(absmax, b >= int4_blocks ? 1.f : a4_clip), qmax);
        int q[PER];
#pragma unroll
        for (int i = 0; i < PER; ++i) q[i] = scale > 0.f ? int(fminf(fmaxf(rintf(v[i] / scale), -qmax), qmax)) : 0;
        out.template store<PER>(t, b, lane, q, scale);
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

// Channel k of a row, input(k), as the permutation's gathers read it: with stage_row the row is
// first computed once into shared memory (the block then reads staged[k]), else input(k) is
// computed where it is gathered. Call from every thread (it synchronizes when staging). Padding
// tokens read token 0's row; the callers quantize zeros for them.
template <typename Input>
COMET_DEVICE auto staged_or_gathered(const Input& input, float* staged, int stage_row, int K) {
    if (stage_row) {
        for_strided_batched(threadIdx.x, K, QUANT_THREADS, input, [&](int k, float v) { staged[k] = v; });
        __syncthreads();
    }
    return [=](int k) { return stage_row ? staged[k] : input(k); };
}

// The three producers. Blocks (t, *) quantize token t; tokens past `tokens` (the tiled format's
// padding rows) are quantized as zeros.
// RMSNorm's input is x, or with `added` the residual add that precedes the norm, fused:
// h = bf16(x + added), the fp32 sum rounded once as rmsnorm_rows rounds it, written to `sum_out`
// (the residual stream's other buffer: blocks (t, *) all read x while block (t, 0) writes h).
template <int BS, typename Output>
COMET_DEVICE void rmsnorm_quantize(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ added,
                                   __nv_bfloat16* __restrict__ sum_out, const float* __restrict__ gamma,
                                   const int32_t* __restrict__ perm, float eps, int K, int int4_blocks,
                                   int int8_blocks, int tokens, float a4_clip, int rotated_blocks, int stage_row,
                                   const Output& out) {
    extern __shared__ float staged[];  // [K] with stage_row
    __shared__ float scratch[QUANT_THREADS / 32];
    const int t = blockIdx.x;
    const bool real = t < tokens;
    const size_t offset = size_t(real ? t : 0) * K;
    const __nv_bfloat16* row = x + offset;
    const __nv_bfloat16* added_row = added ? added + offset : nullptr;
    __nv_bfloat16* sum_row = sum_out && real && blockIdx.y == 0 ? sum_out + offset : nullptr;
    const auto input = [&](int k) {
        const float v = __bfloat162float(row[k]);
        return added_row ? __bfloat162float(__float2bfloat16_rn(v + __bfloat162float(added_row[k]))) : v;
    };
    float squares = 0.f;
    for_strided_batched(threadIdx.x, K, QUANT_THREADS, [&](int k) { return real ? input(k) : 0.f; }, [&](int k, float v) {
        if (sum_row) sum_row[k] = __float2bfloat16_rn(v);
        if (stage_row) staged[k] = v;
        squares += v * v;
    });
    const float inv = 1.f / sqrtf(block_sum(squares, scratch) / float(K) + eps);  // block_sum synchronizes
    quantize_row<BS>([&](int p) {
        if (p >= K || !real) return 0.f;
        const int k = perm[p];
        return (stage_row ? staged[k] : input(k)) * inv * gamma[k];
    }, t, K, int4_blocks, int8_blocks, a4_clip, rotated_blocks, out);
}

template <int BS, typename Output>
COMET_DEVICE void swiglu_quantize(const __nv_bfloat16* __restrict__ gate_up, const int32_t* __restrict__ perm,
                                  int F, int int4_blocks, int int8_blocks, int tokens, float a4_clip, int rotated_blocks,
                                  int stage_row, const Output& out) {
    extern __shared__ float staged[];  // [F] with stage_row
    const int t = blockIdx.x;
    const bool real = t < tokens;
    const __nv_bfloat16* row = gate_up + size_t(real ? t : 0) * 2 * F;
    const auto input = [&](int k) {
        const float gate = __bfloat162float(row[k]), up = __bfloat162float(row[F + k]);
        return gate / (1.f + expf(-gate)) * up;
    };
    const auto value = staged_or_gathered(input, staged, stage_row, F);
    quantize_row<BS>([&](int p) { return p < F && real ? value(perm[p]) : 0.f; },
                     t, F, int4_blocks, int8_blocks, a4_clip, rotated_blocks, out);
}

template <int BS, typename Output>
COMET_DEVICE void permute_quantize(const __nv_bfloat16* __restrict__ x, const int32_t* __restrict__ perm,
                                   int K, int int4_blocks, int int8_blocks, int tokens, float a4_clip, int rotated_blocks,
                                   int stage_row, const Output& out) {
    extern __shared__ float staged[];  // [K] with stage_row
    const int t = blockIdx.x;
    const bool real = t < tokens;
    const __nv_bfloat16* row = x + size_t(real ? t : 0) * K;
    const auto value = staged_or_gathered([&](int k) { return __bfloat162float(row[k]); }, staged, stage_row, K);
    quantize_row<BS>([&](int p) { return p < K && real ? value(perm[p]) : 0.f; },
                     t, K, int4_blocks, int8_blocks, a4_clip, rotated_blocks, out);
}

// Entry points. Packed: (a4, a8, scales), blocks (token, *). Tiled: (codes, unused, scales),
// blocks (row of the padded tiles, *); with stage_row, K floats of dynamic shared memory. Both
// take the same arguments so the launcher is one.
#define FMPQ_OUTPUT_packed(BS) \
    PackedActivations{a4, a8, scale_a, int4_blocks, int4_blocks + int8_blocks, int4_blocks * BS, int8_blocks * BS}
#define FMPQ_OUTPUT_tiled(BS) TiledActivations{reinterpret_cast<int8_t*>(a4), scale_a, int4_blocks + int8_blocks}

#define FMPQ_QUANTIZE_ENTRIES(BS, FORMAT)                                                                     \
    extern "C" __global__ void __launch_bounds__(QUANT_THREADS) rmsnorm_quantize_##FORMAT##_bs##BS(         \
        const __nv_bfloat16* x, const __nv_bfloat16* added, __nv_bfloat16* sum_out, const float* gamma,     \
        const int32_t* perm, float eps, int K, int int4_blocks,                                              \
        int int8_blocks, int tokens, uint8_t* a4, int8_t* a8, float* scale_a, float a4_clip, int rotated_blocks, int stage_row) {\
        begin_dependent_work();                                                                                                  \
        rmsnorm_quantize<BS>(x, added, sum_out, gamma, perm, eps, K, int4_blocks, int8_blocks, tokens, a4_clip, rotated_blocks, stage_row, FMPQ_OUTPUT_##FORMAT(BS)); \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(QUANT_THREADS) swiglu_quantize_##FORMAT##_bs##BS(          \
        const __nv_bfloat16* gate_up, const int32_t* perm, int F, int int4_blocks, int int8_blocks,         \
        int tokens, uint8_t* a4, int8_t* a8, float* scale_a, float a4_clip, int rotated_blocks, int stage_row) {                 \
        begin_dependent_work();                                                                                                  \
        swiglu_quantize<BS>(gate_up, perm, F, int4_blocks, int8_blocks, tokens, a4_clip, rotated_blocks, stage_row, FMPQ_OUTPUT_##FORMAT(BS)); \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(QUANT_THREADS) permute_quantize_##FORMAT##_bs##BS(         \
        const __nv_bfloat16* x, const int32_t* perm, int K, int int4_blocks, int int8_blocks, int tokens,   \
        uint8_t* a4, int8_t* a8, float* scale_a, float a4_clip, int rotated_blocks, int stage_row) {                             \
        begin_dependent_work();                                                                                                  \
        permute_quantize<BS>(x, perm, K, int4_blocks, int8_blocks, tokens, a4_clip, rotated_blocks, stage_row, FMPQ_OUTPUT_##FORMAT(BS)); \
    }
FMPQ_QUANTIZE_ENTRIES(128, packed)
FMPQ_QUANTIZE_ENTRIES(64, packed)
FMPQ_QUANTIZE_ENTRIES(128, tiled)
