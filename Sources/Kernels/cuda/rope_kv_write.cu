// RoPE on the new tokens' q and k, then k and v written into the paged cache (KV4 or bf16),
// in one pass over the fused qkv projection's output (DESIGN.md §2, issue 6).
//
//   qkv:   [tokens, (q_heads + 2 kv_heads) * D] bf16: q heads, then k heads, then v heads
//   q_out: [tokens, q_heads, D] bf16, rotated
//   cache: attention_decode.cu's layout; token i goes to row (slot / P, kv_head, slot % P)
//   cos/sin: [positions, D / 2] fp32 tables made once by the host (in Double, as the CPU
//            backend's RotaryEmbedding makes them), so the GPU rotates with the very same factors.
//
// Blocks (token, group of 8 heads), one warp per head; a lane holds D/32 consecutive channels.
// (One block per token left a decode token's 48 heads to one SM, 6 in turn per warp: 9 us a layer
// on an H100, `bench decode --profile`.) Adjacent-
// pair RoPE (GGUF) pairs channels inside a lane; rotate-half pairs lane l with lane l + 16.
// Products are rounded one by one (__fmul_rn) so that no FMA contraction makes the GPU differ
// from the reference. KV4: per (token, head) min and max by warp shuffles; scale and zero
// rounded to fp16 first, codes = rint((x - zero) / scale) clamped to 0..15 (Quant.KV4).
//
// rotate_keys (KVCacheSettings.keyRotation): after RoPE, k <- H k before KV4 and q <- H q / D
// (H the D x D Sylvester Hadamard matrix, block_hadamard; 1/D is exact), so q.k is unchanged
// and the cache's per-(token, head) scale no longer follows K's few outlier channels.
#include "common.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>

constexpr int ROPE_THREADS = 256;

template <int D, bool ADJACENT, bool KV4>
COMET_DEVICE void rope_kv_write(const __nv_bfloat16* __restrict__ qkv, const int32_t* __restrict__ positions,
                                const int32_t* __restrict__ slots, const float* __restrict__ cos_table,
                                const float* __restrict__ sin_table, int q_heads, int kv_heads, int page_size, int rotate_keys,
                                __nv_bfloat16* __restrict__ q_out, void* __restrict__ k_cache, void* __restrict__ v_cache,
                                __half2* __restrict__ k_params, __half2* __restrict__ v_params) {
    constexpr int PER = D / 32;
    const int token = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int heads = q_heads + 2 * kv_heads;
    const float* cos_row = cos_table + size_t(positions[token]) * (D / 2);
    const float* sin_row = sin_table + size_t(positions[token]) * (D / 2);
    const int slot = slots[token];
    for (int head = blockIdx.y * (ROPE_THREADS / 32) + warp; head < heads; head += gridDim.y * (ROPE_THREADS / 32)) {
        float x[PER];
        const __nv_bfloat16* src = qkv + (size_t(token) * heads + head) * D + lane * PER;
#pragma unroll
        for (int i = 0; i < PER; ++i) x[i] = __bfloat162float(src[i]);
        const bool is_v = head >= q_heads + kv_heads;
        if (!is_v) {  // rotate q and k
            if (ADJACENT) {
#pragma unroll
                for (int i = 0; i < PER; i += 2) {
                    const int pair = (lane * PER + i) / 2;
                    const float c = cos_row[pair], s = sin_row[pair], x0 = x[i], x1 = x[i + 1];
                    x[i] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
                    x[i + 1] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
                }
            } else {
                const bool low = lane < 16;
#pragma unroll
                for (int i = 0; i < PER; ++i) {
                    const float partner = __shfl_xor_sync(0xffffffffu, x[i], 16);
                    const int pair = (lane & 15) * PER + i;
                    const float c = cos_row[pair], s = sin_row[pair];
                    x[i] = low ? __fsub_rn(__fmul_rn(x[i], c), __fmul_rn(partner, s))
                               : __fadd_rn(__fmul_rn(partner, s), __fmul_rn(x[i], c));
                }
            }
        }
        if (rotate_keys && !is_v) {  // warp-uniform: one head per warp
            block_hadamard<PER>(x, lane);
            if (head < q_heads) {
#pragma unroll
                for (int i = 0; i < PER; ++i) x[i] = __fmul_rn(x[i], 1.f / D);
            }
        }
        if (head < q_heads) {
            __nv_bfloat16* dst = q_out + (size_t(token) * q_heads + head) * D + lane * PER;
#pragma unroll
            for (int i = 0; i < PER; ++i) dst[i] = __float2bfloat16_rn(x[i]);
            continue;
        }
        const int kvh = head - q_heads - (is_v ? kv_heads : 0);
        const size_t row = (size_t(slot / page_size) * kv_heads + kvh) * page_size + slot % page_size;
        void* cache = is_v ? v_cache : k_cache;
        if (KV4) {
            float low = x[0], high = x[0];
#pragma unroll
            for (int i = 1; i < PER; ++i) { low = fminf(low, x[i]); high = fmaxf(high, x[i]); }
            low = -warp_max(-low);
            high = warp_max(high);
            const __half scale_h = __float2half_rn((high - low) / 15.f), zero_h = __float2half_rn(low);
            const float scale = __half2float(scale_h), zero = __half2float(zero_h);
            uint32_t packed = 0;
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                const int q = scale > 0.f ? int(fminf(fmaxf(rintf((x[i] - zero) / scale), 0.f), 15.f)) : 0;
                packed |= uint32_t(q) << (4 * i);
            }
            uint8_t* dst = reinterpret_cast<uint8_t*>(cache) + row * (D / 2) + lane * (PER / 2);
            if (PER == 4) *reinterpret_cast<uint16_t*>(dst) = uint16_t(packed);
            else *dst = uint8_t(packed);
            if (lane == 0) (is_v ? v_params : k_params)[row] = __halves2half2(scale_h, zero_h);
        } else {
            __nv_bfloat16* dst = reinterpret_cast<__nv_bfloat16*>(cache) + row * D + lane * PER;
#pragma unroll
            for (int i = 0; i < PER; ++i) dst[i] = __float2bfloat16_rn(x[i]);
        }
    }
}

#define ROPE_KV_WRITE(NAME, D, ADJACENT, KV4)                                                               \
    extern "C" __global__ void __launch_bounds__(ROPE_THREADS) NAME(                                        \
        const __nv_bfloat16* qkv, const int32_t* positions, const int32_t* slots, const float* cos_table,    \
        const float* sin_table, int q_heads, int kv_heads, int page_size, int rotate_keys,                   \
        __nv_bfloat16* q_out, void* k_cache, void* v_cache, __half2* k_params, __half2* v_params) {          \
        begin_dependent_work();                                                                              \
        rope_kv_write<D, ADJACENT, KV4>(qkv, positions, slots, cos_table, sin_table, q_heads, kv_heads,     \
                                        page_size, rotate_keys, q_out, k_cache, v_cache, k_params, v_params); \
    }
ROPE_KV_WRITE(rope_kv_write_kv4_d128_adjacent, 128, true, true)
ROPE_KV_WRITE(rope_kv_write_kv4_d128_half, 128, false, true)
ROPE_KV_WRITE(rope_kv_write_kv4_d64_adjacent, 64, true, true)
ROPE_KV_WRITE(rope_kv_write_kv4_d64_half, 64, false, true)
ROPE_KV_WRITE(rope_kv_write_bf16_d128_adjacent, 128, true, false)
ROPE_KV_WRITE(rope_kv_write_bf16_d128_half, 128, false, false)
ROPE_KV_WRITE(rope_kv_write_bf16_d64_adjacent, 64, true, false)
ROPE_KV_WRITE(rope_kv_write_bf16_d64_half, 64, false, false)
