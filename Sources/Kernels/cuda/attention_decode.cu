// Decode attention over a paged KV cache: one new query token per sequence, grouped-query
// heads, many sequences of different lengths in one launch, split over long contexts
// (flash-decoding) with an exact two-level softmax.
//
// Cache of one layer, paged (vLLM-style block tables; page p of sequence s is
// block_table[s * max_pages + p]):
//   KV4  (DESIGN.md §2): codes  [page][kv_head][P][D/2] bytes, two 4-bit codes per byte (low
//        nibble first); params [page][kv_head][P] half2 (scale, zero): value = code * scale + zero.
//   bf16 (the baseline):  values [page][kv_head][P][D].
// K and V live in separate buffers with the same layout.
//
// decode_attention_*: grid (kv_heads * G / GB, sequences, splits), 128 threads. A CTA takes
// GB query heads that share one KV head, and up to `split_len` tokens (<= 512). Each lane owns
// D/8 dimensions of one token, so a warp reads 4 tokens per step (64 contiguous bytes per
// token for KV4 at D = 128) and the KV bytes are read exactly once per CTA. Scores use
// dot(q, c * s + z) = s * dot(q, c) + z * sum(q); values accumulate p * s * c per dimension
// and p * z once per head. Pass 1 writes scores to shared memory, then one max and one sum per
// head, then pass 2 reads V: no rescaling inside the loop. Each CTA writes its unnormalised
// output and (max, sum); decode_attention_combine merges the splits.
#include "common.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>

constexpr int ATTN_THREADS = 128;
constexpr int ATTN_MAX_SPLIT = 512;

// This lane's slice (D/8 values) of one cached token: loaded raw first, widened later, so
// that a warp can have several tokens' loads in flight before it computes on any of them.
template <int D, bool KV4> struct Slice;

template <int D> struct Slice<D, true> {  // KV4: D/16 bytes of codes and one (scale, zero)
    uint32_t w[D / 64];
    __half2 sz;
    COMET_DEVICE void load(const void* cache, const __half2* params, size_t row, int part) {
        const uint8_t* p = reinterpret_cast<const uint8_t*>(cache) + row * (D / 2) + part * (D / 16);
        if (D == 128) {
            const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
            w[0] = v.x;
            w[D / 64 - 1] = v.y;
        } else {
            w[0] = __ldg(reinterpret_cast<const uint32_t*>(p));
        }
        sz = __ldg(params + row);
    }
    COMET_DEVICE void widen(float (&x)[D / 8], float& scale, float& zero) const {
#pragma unroll
        for (int i = 0; i < D / 8; ++i) x[i] = float((w[i / 8] >> (4 * (i % 8))) & 0xFu);
        const float2 f = __half22float2(sz);
        scale = f.x;
        zero = f.y;
    }
};

template <int D> struct Slice<D, false> {  // bf16: D/4 bytes
    uint4 v[D / 64];
    COMET_DEVICE void load(const void* cache, const __half2*, size_t row, int part) {
        const uint4* p = reinterpret_cast<const uint4*>(reinterpret_cast<const __nv_bfloat16*>(cache) + row * D + part * (D / 8));
#pragma unroll
        for (int i = 0; i < D / 64; ++i) v[i] = __ldg(p + i);
    }
    COMET_DEVICE void widen(float (&x)[D / 8], float& scale, float& zero) const {
#pragma unroll
        for (int i = 0; i < D / 64; ++i) {
            const uint32_t words[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                x[i * 8 + 2 * j] = __uint_as_float(words[j] << 16);
                x[i * 8 + 2 * j + 1] = __uint_as_float(words[j] & 0xFFFF0000u);
            }
        }
        scale = 1.f;
        zero = 0.f;
    }
};

// Tokens in flight per lane: all U slices are loaded before the first is used.
constexpr int ATTN_UNROLL = 4;

// Loads this lane's slices of tokens t, t + 16, ..., t + 16 (U - 1) that are before `end`,
// finding each token's page through the sequence's block-table row.
template <int D, bool KV4>
COMET_DEVICE void load_tokens(Slice<D, KV4> (&slices)[ATTN_UNROLL], const void* cache, const __half2* params,
                              const int32_t* table, int t, int end, int kv_heads, int kvh, int page_size, int part) {
#pragma unroll
    for (int u = 0; u < ATTN_UNROLL; ++u, t += 16) {
        if (t < end) {
            const size_t page = size_t(table[t / page_size]);
            slices[u].load(cache, params, (page * kv_heads + kvh) * page_size + t % page_size, part);
        }
    }
}

template <int D, int GB, bool KV4>
COMET_DEVICE void decode_attention(const __nv_bfloat16* __restrict__ q, const void* __restrict__ k_cache,
                                   const void* __restrict__ v_cache, const __half2* __restrict__ k_params,
                                   const __half2* __restrict__ v_params, const int32_t* __restrict__ block_table,
                                   int max_pages, const int32_t* __restrict__ lengths, int kv_heads, int group,
                                   int page_size, float softmax_scale, int split_len, float* __restrict__ part_out,
                                   float* __restrict__ part_ml) {
    constexpr int DL = D / 8;
    const int subgroups = group / GB;
    const int kvh = blockIdx.x / subgroups, h0 = kvh * group + (blockIdx.x % subgroups) * GB;
    const int s = blockIdx.y, split = blockIdx.z;
    const int sequences = gridDim.y, q_heads = kv_heads * group;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int sub = lane >> 3, part = lane & 7;
    const int length = min(lengths[s], max_pages * page_size);  // never past the block table
    const int start = split * split_len, end = min(length, start + split_len), n = end - start;
    const int32_t* table = block_table + size_t(s) * max_pages;  // this sequence's pages
    // Partial results: [split][sequence][q_head][D] and [split][sequence][q_head][2].
    const size_t slot = (size_t(split) * sequences + s) * q_heads + h0;

    __shared__ float qs[GB][D];
    __shared__ float probs[ATTN_MAX_SPLIT][GB];
    __shared__ float stats[GB][2];
    __shared__ float reduce[ATTN_THREADS / 32][GB][D + 1];

    if (n <= 0) {  // this split is past the sequence's end
        for (int i = threadIdx.x; i < GB * D; i += ATTN_THREADS) part_out[slot * D + i] = 0.f;
        if (threadIdx.x < GB) {
            part_ml[(slot + threadIdx.x) * 2] = negative_infinity();
            part_ml[(slot + threadIdx.x) * 2 + 1] = 0.f;
        }
        return;
    }
    for (int i = threadIdx.x; i < GB * D; i += ATTN_THREADS) {
        qs[i / D][i % D] = __bfloat162float(q[(size_t(s) * q_heads + h0 + i / D) * D + i % D]) * softmax_scale;
    }
    __syncthreads();
    float qr[GB][DL], qsum[GB];
#pragma unroll
    for (int h = 0; h < GB; ++h) {
        qsum[h] = 0.f;
#pragma unroll
        for (int d = 0; d < DL; ++d) {
            qr[h][d] = qs[h][part * DL + d];
            qsum[h] += qr[h][d];
        }
    }

    // Pass 1: scores. Step i of warp w takes tokens start + 16 (U i + u) + 4 w + sub, u < U.
    for (int t0 = start + warp * 4; t0 < end; t0 += 16 * ATTN_UNROLL) {  // uniform per warp: shuffles below
        Slice<D, KV4> slices[ATTN_UNROLL];
        load_tokens(slices, k_cache, k_params, table, t0 + sub, end, kv_heads, kvh, page_size, part);
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; ++u) {
            const int t = t0 + 16 * u + sub;
            float score[GB];
            if (t < end) {
                float x[DL], scale, zero;
                slices[u].widen(x, scale, zero);
#pragma unroll
                for (int h = 0; h < GB; ++h) {
                    float dot = 0.f;
#pragma unroll
                    for (int d = 0; d < DL; ++d) dot += qr[h][d] * x[d];
                    score[h] = scale * dot + zero * qsum[h];
                }
            } else {
#pragma unroll
                for (int h = 0; h < GB; ++h) score[h] = 0.f;
            }
#pragma unroll
            for (int h = 0; h < GB; ++h) {
                score[h] += __shfl_xor_sync(0xffffffffu, score[h], 1);
                score[h] += __shfl_xor_sync(0xffffffffu, score[h], 2);
                score[h] += __shfl_xor_sync(0xffffffffu, score[h], 4);
            }
            if (part == 0 && t < end) {
#pragma unroll
                for (int h = 0; h < GB; ++h) probs[t - start][h] = score[h];
            }
        }
    }
    __syncthreads();

    // Softmax statistics of this split, one warp per head.
    for (int h = warp; h < GB; h += ATTN_THREADS / 32) {
        float m = negative_infinity();
        for (int i = lane; i < n; i += 32) m = fmaxf(m, probs[i][h]);
        m = warp_max(m);
        float l = 0.f;
        for (int i = lane; i < n; i += 32) {
            const float e = expf(probs[i][h] - m);
            probs[i][h] = e;
            l += e;
        }
        l = warp_sum(l);
        if (lane == 0) {
            stats[h][0] = m;
            stats[h][1] = l;
        }
    }
    __syncthreads();

    // Pass 2: values, weighted by the unnormalised probabilities.
    float acc[GB][DL], acc_zero[GB];
#pragma unroll
    for (int h = 0; h < GB; ++h) {
        acc_zero[h] = 0.f;
#pragma unroll
        for (int d = 0; d < DL; ++d) acc[h][d] = 0.f;
    }
    for (int t0 = start + warp * 4; t0 < end; t0 += 16 * ATTN_UNROLL) {  // uniform per warp: shuffles below
        Slice<D, KV4> slices[ATTN_UNROLL];
        load_tokens(slices, v_cache, v_params, table, t0 + sub, end, kv_heads, kvh, page_size, part);
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; ++u) {
            const int t = t0 + 16 * u + sub;
            if (t < end) {
                float x[DL], scale, zero;
                slices[u].widen(x, scale, zero);
#pragma unroll
                for (int h = 0; h < GB; ++h) {
                    const float p = probs[t - start][h];
                    const float ps = p * scale;
                    acc_zero[h] += p * zero;
#pragma unroll
                    for (int d = 0; d < DL; ++d) acc[h][d] += ps * x[d];
                }
            }
        }
    }
    // Sum the 4 tokens of a warp step (lanes 8 and 16 apart), then the 4 warps.
#pragma unroll
    for (int h = 0; h < GB; ++h) {
        acc_zero[h] += __shfl_xor_sync(0xffffffffu, acc_zero[h], 8);
        acc_zero[h] += __shfl_xor_sync(0xffffffffu, acc_zero[h], 16);
#pragma unroll
        for (int d = 0; d < DL; ++d) {
            acc[h][d] += __shfl_xor_sync(0xffffffffu, acc[h][d], 8);
            acc[h][d] += __shfl_xor_sync(0xffffffffu, acc[h][d], 16);
        }
    }
    if (sub == 0) {
#pragma unroll
        for (int h = 0; h < GB; ++h)
#pragma unroll
            for (int d = 0; d < DL; ++d) reduce[warp][h][part * DL + d] = acc[h][d] + acc_zero[h];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < GB * D; i += ATTN_THREADS) {
        const int h = i / D, d = i % D;
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < ATTN_THREADS / 32; ++w) sum += reduce[w][h][d];
        part_out[slot * D + i] = sum;
    }
    if (threadIdx.x < GB) {
        part_ml[(slot + threadIdx.x) * 2] = stats[threadIdx.x][0];
        part_ml[(slot + threadIdx.x) * 2 + 1] = stats[threadIdx.x][1];
    }
}

#define DECODE_ATTENTION(NAME, D, GB, KV4)                                                                  \
    extern "C" __global__ void __launch_bounds__(ATTN_THREADS) NAME(                                        \
        const __nv_bfloat16* q, const void* k_cache, const void* v_cache, const __half2* k_params,           \
        const __half2* v_params, const int32_t* block_table, int max_pages, const int32_t* lengths,          \
        int kv_heads, int group, int page_size, float softmax_scale, int split_len, float* part_out,         \
        float* part_ml) {                                                                                    \
        decode_attention<D, GB, KV4>(q, k_cache, v_cache, k_params, v_params, block_table, max_pages, lengths, \
                                     kv_heads, group, page_size, softmax_scale, split_len, part_out, part_ml); \
    }
DECODE_ATTENTION(decode_attention_kv4_d128_g4, 128, 4, true)
DECODE_ATTENTION(decode_attention_kv4_d128_g3, 128, 3, true)
DECODE_ATTENTION(decode_attention_kv4_d128_g2, 128, 2, true)
DECODE_ATTENTION(decode_attention_kv4_d128_g1, 128, 1, true)
DECODE_ATTENTION(decode_attention_kv4_d64_g4, 64, 4, true)
DECODE_ATTENTION(decode_attention_kv4_d64_g3, 64, 3, true)
DECODE_ATTENTION(decode_attention_kv4_d64_g2, 64, 2, true)
DECODE_ATTENTION(decode_attention_kv4_d64_g1, 64, 1, true)
DECODE_ATTENTION(decode_attention_bf16_d128_g4, 128, 4, false)
DECODE_ATTENTION(decode_attention_bf16_d128_g3, 128, 3, false)
DECODE_ATTENTION(decode_attention_bf16_d128_g2, 128, 2, false)
DECODE_ATTENTION(decode_attention_bf16_d128_g1, 128, 1, false)
DECODE_ATTENTION(decode_attention_bf16_d64_g4, 64, 4, false)
DECODE_ATTENTION(decode_attention_bf16_d64_g3, 64, 3, false)
DECODE_ATTENTION(decode_attention_bf16_d64_g2, 64, 2, false)
DECODE_ATTENTION(decode_attention_bf16_d64_g1, 64, 1, false)

// Merges the splits: out = sum_i e^(m_i - M) o_i / sum_i e^(m_i - M) l_i, per (sequence, head).
// Grid (q_heads, sequences), D threads. A sequence of length 0 gets zeros.
extern "C" __global__ void decode_attention_combine(const float* __restrict__ part_out, const float* __restrict__ part_ml,
                                                   __nv_bfloat16* __restrict__ out, int splits, int D) {
    const int h = blockIdx.x, s = blockIdx.y, q_heads = gridDim.x, sequences = gridDim.y, d = threadIdx.x;
    float m = negative_infinity();
    for (int i = 0; i < splits; ++i) m = fmaxf(m, part_ml[((size_t(i) * sequences + s) * q_heads + h) * 2]);
    float numerator = 0.f, denominator = 0.f;
    if (m != negative_infinity()) {
        for (int i = 0; i < splits; ++i) {
            const size_t slot = (size_t(i) * sequences + s) * q_heads + h;
            const float w = expf(part_ml[slot * 2] - m);  // 0 for empty splits (max -inf)
            numerator += w * part_out[slot * D + d];
            denominator += w * part_ml[slot * 2 + 1];
        }
    }
    out[(size_t(s) * q_heads + h) * D + d] = __float2bfloat16_rn(denominator > 0.f ? numerator / denominator : 0.f);
}
