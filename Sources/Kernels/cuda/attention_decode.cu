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

// The cache row of position `offset` of page `page` for KV head `kvh`: [page][kv_head][P] rows.
COMET_DEVICE size_t page_row(int32_t page, int offset, int kv_heads, int kvh, int page_size) {
    return (size_t(page) * kv_heads + kvh) * page_size + offset;
}

// The cache row of token `tok` of a sequence whose block-table row is `table`.
COMET_DEVICE size_t token_row(const int32_t* table, int tok, int kv_heads, int kvh, int page_size) {
    return page_row(table[tok / page_size], tok % page_size, kv_heads, kvh, page_size);
}

// Tokens in flight per lane: all U slices are loaded before the first is used.
constexpr int ATTN_UNROLL = 4;

// Loads this lane's slices of tokens t, t + 16, ..., t + 16 (U - 1) that are before `end`,
// finding each token's page through the sequence's block-table row.
template <int D, bool KV4>
COMET_DEVICE void load_tokens(Slice<D, KV4> (&slices)[ATTN_UNROLL], const void* cache, const __half2* params,
                              const int32_t* table, int t, int end, int kv_heads, int kvh, int page_size, int part) {
#pragma unroll
    for (int u = 0; u < ATTN_UNROLL; ++u, t += 16) {
        if (t < end) slices[u].load(cache, params, token_row(table, t, kv_heads, kvh, page_size), part);
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
        begin_dependent_work();                                                                              \
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
    begin_dependent_work();
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

// ---------------------------------------------------------------------------------------------
// KV4 on tensor cores: decode_attention_kv4_mma_d{64,128}. Same grid, arguments and partial
// outputs as the kernels above (decode_attention_combine merges them), but a CTA takes up to 16
// query heads of one KV head (the whole GQA group), and both products run on mma.sync
// m16n8k16 (fp16 in, fp32 accumulate), so a KV byte costs a few instructions instead of ~45
// per token and head (bench/NOTES.md).
//
// Per warp, blocks of 16 tokens (warp w takes blocks w, w + 4, ...), with an online softmax:
//   S^T[head][token] = Q[head][dim] . K^T[dim][token]   M = 16 heads (rows past the group are
//                                                         zero), N = 8 tokens, K = 16 dims
//   O[head][dim]    += P'[head][token] . V[token][dim]   P' = p * v_scale, N = 8 dims, K = 16 tokens
// The 4-bit codes enter the MMAs as exact fp16 integers 0..15 (lop3 into 0x6400 = 1024 + code,
// minus 1024); the per-token scale and zero are applied outside: score = k_scale * (q . codes)
// + k_zero * sum(q); out += (p v_scale) . codes + p v_zero. Because the dot products sum over
// dims and tokens, which dims a lane feeds at each K index is free as long as Q (resp. P') uses
// the same order: lanes read contiguous bytes of a token row and the fragments follow them.
// The C fragment of S^T is exactly the A fragment of P (the FlashAttention-2 layout).
//
// Prefill (query tiles): the 16 rows of the M tile need not be 16 heads of one token. With
// `tiles` set, CTA y takes (tiles[2y], tiles[2y + 1]) = (first query row, count): `count`
// consecutive query rows of one sequence (one block-table row, the first's), each with its own
// causal length, and M row m is query row first + m / heads, head m % heads. So a GQA group of 4 fills the tile with
// 4 tokens x 4 heads, and every KV byte staged by a warp serves 4 query tokens instead of one.
// This is causal flash attention on tensor cores over the paged KV4 cache, prefix included;
// rows whose causal length ends before a block get -inf scores there (masked per row).

COMET_DEVICE void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The nibbles at bits [s, s + 4) and [s + 16, s + 20) of w as an fp16 pair 1024 + code (exact
// integers): lop3 (a & b) | c puts each code in the mantissa of 0x6400 = 1024.
COMET_DEVICE uint32_t nibble_pair_biased(uint32_t w, int s) {
    uint32_t h;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(h) : "r"(w >> s), "r"(0x000F000Fu), "r"(0x64006400u));
    return h;
}

// The same pair as the codes themselves (1024 subtracted).
COMET_DEVICE uint32_t nibble_pair(uint32_t w, int s) {
    const uint32_t h = nibble_pair_biased(w, s);
    const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&h), __halves2half2(__ushort_as_half(0x6400), __ushort_as_half(0x6400)));
    return *reinterpret_cast<const uint32_t*>(&v);
}

COMET_DEVICE uint32_t pack_half2(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}


// One 16-token block of one KV head staged in shared memory by cp.async (a warp's private ring
// of these is its pipeline): K rows [16][D/2], V rows [16][D/2], K and V (scale, zero) [16].
// Tokens at or past the sequence's end arrive as zeros (codes and params), so they add nothing
// finite-garbage to the sums; their scores are masked to -inf by the caller.
//
// V rows are stored swizzled, row r at r ^ ((r >> VSHIFT) & 1): the V fragment reads of a warp
// touch rows 2t (+1, +8, +9) for t = 0..3, which unswizzled sit in the same banks (rows 128 B
// apart for D = 128, 64 B for D = 64); swizzled, each 128-byte bank line is covered once.
template <int D> struct KV4Stage {
    static constexpr int ROW = D / 2;              // bytes of a token's codes
    static constexpr int CHUNKS_PER_ROW = ROW / 16;
    static constexpr int K = 0, V = 16 * ROW, KP = 32 * ROW, VP = KP + 64, BYTES = VP + 64;
    static constexpr int VSHIFT = D == 128 ? 1 : 2;
    static COMET_DEVICE int v_slot(int r) { return r ^ ((r >> VSHIFT) & 1); }

    // Issues this lane's copies of the block starting at token t0 (a multiple of 16). `first`:
    // the cache row of t0 when `whole` (the page size is a multiple of 16, so the block's rows
    // are consecutive); else each token's row comes from the table.
    static COMET_DEVICE void issue(uint8_t* stage, const uint8_t* k_cache, const uint8_t* v_cache,
                                   const __half2* k_params, const __half2* v_params, const int32_t* table, int t0,
                                   int end, int kv_heads, int kvh, int page_size, bool whole, size_t first, int lane) {
        auto row_of = [&](int r) -> size_t {
            return whole ? first + r : token_row(table, t0 + r, kv_heads, kvh, page_size);
        };
#pragma unroll
        for (int c = lane; c < 16 * CHUNKS_PER_ROW; c += 32) {
            const int r = c / CHUNKS_PER_ROW, part = c % CHUNKS_PER_ROW;
            const bool valid = t0 + r < end;
            const size_t offset = valid ? row_of(r) * ROW + part * 16 : 0;
            cp_async_16(stage + K + r * ROW + part * 16, k_cache + offset, valid ? 16 : 0);
            cp_async_16(stage + V + v_slot(r) * ROW + part * 16, v_cache + offset, valid ? 16 : 0);
        }
        // Params: lanes 0-15 the K (scale, zero) of token lane, lanes 16-31 the V one.
        const int r = lane & 15;
        const bool valid = t0 + r < end;
        const size_t row = valid ? row_of(r) : 0;
        cp_async_4(stage + (lane < 16 ? KP : VP) + 4 * r, (lane < 16 ? k_params : v_params) + row, valid ? 4 : 0);
    }
};

// One 16-token block of a warp, read from its stage into the mma fragments: K rows of tokens
// t0 + g and t0 + 8 + g (this lane's D/8 bytes), V rows of tokens t0 + 2t, + 1, + 8, + 9 (its
// D/16 bytes), and the K and V (scale, zero) of those four tokens.
template <int D> struct KV4Block {
    static constexpr int KWORDS = D / 32, VWORDS = D / 64;
    uint32_t kw[2][KWORDS], vw[4][VWORDS];
    __half2 kp[4], vp[4];

    COMET_DEVICE void read(const uint8_t* stage, int g, int t) {
        using S = KV4Stage<D>;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint8_t* p = stage + S::K + (8 * i + g) * S::ROW + t * (D / 8);
            if constexpr (D == 128) {
                const uint4 v = *reinterpret_cast<const uint4*>(p);
                kw[i][0] = v.x; kw[i][1] = v.y; kw[i][2] = v.z; kw[i][3] = v.w;
            } else {
                const uint2 v = *reinterpret_cast<const uint2*>(p);
                kw[i][0] = v.x; kw[i][1] = v.y;
            }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int r = 2 * t + (i & 1) + 8 * (i >> 1);
            const uint8_t* p = stage + S::V + S::v_slot(r) * S::ROW + g * (D / 16);
            if constexpr (D == 128) {
                const uint2 v = *reinterpret_cast<const uint2*>(p);
                vw[i][0] = v.x; vw[i][1] = v.y;
            } else {
                vw[i][0] = *reinterpret_cast<const uint32_t*>(p);
            }
            kp[i] = reinterpret_cast<const __half2*>(stage + S::KP)[r];
            vp[i] = reinterpret_cast<const __half2*>(stage + S::VP)[r];
        }
    }
};

// O += P' V for one 8-dim tile. Without UPPER (at most 8 heads) rows 8-15 are padding: their
// accumulators are not kept (c holds rows g only; zero in, result dropped), which saves half
// of them in registers.
template <bool UPPER>
COMET_DEVICE void mma_acc(float (&c)[UPPER ? 4 : 2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (UPPER) {
        mma_m16n8k16_f16(c, a, b0, b1);
    } else {
        float d[4] = {c[0], c[1], 0.f, 0.f};
        mma_m16n8k16_f16(d, a, b0, b1);
        c[0] = d[0];
        c[1] = d[1];
    }
}

// One M tile of work: up to 16 query rows (heads of one query row, or query tiles of a
// prefill) of one KV head, over one split of its tokens. Partials of M row m go to slot(m).
struct KV4Item {
    int kvh, h0, row0, rows, split, start, end;
    const int32_t* table;  // the block-table row of the tile's first query row

    COMET_DEVICE int blocks() const { return end > start ? (end - start + 15) / 16 : 0; }
    // Partial results [split][query row][q_head] of M row m.
    COMET_DEVICE size_t slot(int m, int heads, int query_rows, int q_heads) const {
        return (size_t(split) * query_rows + row0 + m / heads) * q_heads + h0 + m % heads;
    }
};

// Item (x, y, z): x picks the KV head (and which 16 heads of a larger group), y the query row
// (decode) or query tile (prefill, see above), z the split of `split_len` tokens.
COMET_DEVICE KV4Item kv4_item(int x, int y, int z, int group, int heads, const int32_t* tiles, const int32_t* lengths,
                              const int32_t* block_table, int max_pages, int page_size, int query_rows, int split_len) {
    const int subgroups = group / heads;
    KV4Item item;
    item.kvh = x / subgroups;
    item.h0 = item.kvh * group + (x % subgroups) * heads;
    // (Read as two int32: the runner stages the list at any 4-byte offset, too loose for int2.)
    const int2 tile = tiles != nullptr ? make_int2(tiles[2 * y], tiles[2 * y + 1]) : make_int2(y, 1);
    item.row0 = tile.x;  // a tile past the rows, or longer than 16 M rows, is cut to fit
    const int count = tile.x >= 0 && tile.x < query_rows ? max(0, min(min(tile.y, 16 / heads), query_rows - tile.x)) : 0;
    item.rows = count * heads;
    int length = 0;  // the longest causal length of the tile's rows
    for (int i = 0; i < count; ++i) length = max(length, lengths[tile.x + i]);
    length = min(length, max_pages * page_size);
    item.split = z;
    item.start = z * split_len;
    item.end = min(length, item.start + split_len);
    item.table = block_table + size_t(tile.x) * max_pages;
    return item;
}

// The Q side of a warp's M tile: fragments of rows g and g + 8, with dims in the lanes' K order
// (chunk 2j takes dims t*D/4 + 8j + {0, 4 | 1, 5}, chunk 2j + 1 dims + {2, 6 | 3, 7}: see
// nibble_pair), sum(q) per row, and each row's causal end within the item. Rows past the
// item's (and rows g + 8 without UPPER) are zero and end with the item.
template <int D> struct KV4Query {
    uint32_t qa[D / 16][4];
    float qsum[2];
    int row_end[2];

    template <bool UPPER>
    COMET_DEVICE void load(const __nv_bfloat16* q, const KV4Item& item, const int32_t* lengths, int heads, int q_heads,
                           float softmax_scale, int g, int t) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int m_row = g + 8 * r;
            const bool live = m_row < item.rows && (UPPER || r == 0);
            const int qrow = item.row0 + m_row / heads;
            row_end[r] = live ? min(item.end, lengths[qrow]) : item.end;
            // This lane's D/4 consecutive values (32 or 64 bytes; rows are D * 2 bytes apart).
            const uint4* src = reinterpret_cast<const uint4*>(q + (size_t(qrow) * q_heads + item.h0 + m_row % heads) * D + t * (D / 4));
            float v[D / 4];
            qsum[r] = 0.f;
#pragma unroll
            for (int i = 0; i < D / 32; ++i) {
                const uint4 w = live ? src[i] : make_uint4(0u, 0u, 0u, 0u);
                const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[j]));
                    v[8 * i + 2 * j] = __half2float(__float2half_rn(f.x * softmax_scale));
                    v[8 * i + 2 * j + 1] = __half2float(__float2half_rn(f.y * softmax_scale));
                    qsum[r] += v[8 * i + 2 * j] + v[8 * i + 2 * j + 1];
                }
            }
#pragma unroll
            for (int j = 0; j < D / 32; ++j) {
                qa[2 * j][r] = pack_half2(v[8 * j + 0], v[8 * j + 4]);
                qa[2 * j][r + 2] = pack_half2(v[8 * j + 1], v[8 * j + 5]);
                qa[2 * j + 1][r] = pack_half2(v[8 * j + 2], v[8 * j + 6]);
                qa[2 * j + 1][r + 2] = pack_half2(v[8 * j + 3], v[8 * j + 7]);
            }
            // sum(q) over all D dims: the four lanes of a row hold a quarter each.
            qsum[r] += __shfl_xor_sync(0xffffffffu, qsum[r], 1);
            qsum[r] += __shfl_xor_sync(0xffffffffu, qsum[r], 2);
        }
    }
};

// A warp's online softmax over the blocks it has added: per row (g, g + 8) the running max m,
// sum l and V-zero term z = sum p * v_zero (parts per lane until reduce_rows), and the O
// accumulators acc[tile][c]: row g + 8 (c >> 1), dim (2t + (c & 1)) * D/8 + tile (rows g + 8
// only with UPPER).
template <int D, bool UPPER> struct KV4Softmax {
    static constexpr int KWORDS = KV4Block<D>::KWORDS;  // 32-bit words of a lane's K slice (D/8 bytes)
    static constexpr int VTILES = D / 8;                // N tiles of O (8 dims each)
    static constexpr int VWORDS = KV4Block<D>::VWORDS;  // words of a lane's V slice (D/16 bytes)
    static constexpr int ROWS = UPPER ? 2 : 1;          // rows of acc per lane: g (and g + 8)
    float acc[VTILES][2 * ROWS];
    float m[2], l[2], z[2];

    COMET_DEVICE void reset() {
#pragma unroll
        for (int i = 0; i < VTILES; ++i)
#pragma unroll
            for (int c = 0; c < 2 * ROWS; ++c) acc[i][c] = 0.f;
        m[0] = m[1] = negative_infinity();
        l[0] = l[1] = z[0] = z[1] = 0.f;
    }

    // Adds the 16-token block t0, staged at `stage` (landed: the caller has waited for it).
    // Reads its fragments first and then lets the warp refill the stage (__syncwarp).
    COMET_DEVICE void add(const KV4Query<D>& query, const uint8_t* stage, int t0, int g, int t) {
        KV4Block<D> block;
        block.read(stage, g, t);
        __syncwarp();  // every lane has its fragments: the stage may be refilled
        const auto& kw = block.kw;
        const auto& vw = block.vw;
        float2 kp[4], vp[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            kp[r] = __half22float2(block.kp[r]);
            vp[r] = __half22float2(block.vp[r]);
        }

        // Scores of the two 8-token tiles: c[0..1] head g, tokens 2t, 2t + 1; c[2..3] head g + 8.
        float sc[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.f;
#pragma unroll
            for (int j = 0; j < KWORDS; ++j) {
                // Codes enter as 1024 + code (exact in fp16; products exact in fp32): q . (1024 + c)
                // = q . c + 1024 sum(q), taken out below with the zero term.
                mma_m16n8k16_f16(sc[i], query.qa[2 * j], nibble_pair_biased(kw[i][j], 0), nibble_pair_biased(kw[i][j], 4));
                mma_m16n8k16_f16(sc[i], query.qa[2 * j + 1], nibble_pair_biased(kw[i][j], 8), nibble_pair_biased(kw[i][j], 12));
            }
        }
        // sc[i][c]: token t0 + 8 i + 2t + (c & 1), head g + 8 (c >> 1); its params are kp[2 i + (c & 1)].
        float block_max[2] = {negative_infinity(), negative_infinity()};
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int tok = t0 + 8 * i + 2 * t + (c & 1);
                const float2 ps = kp[2 * i + (c & 1)];
                sc[i][c] = tok < query.row_end[c >> 1] ? ps.x * sc[i][c] + (ps.y - 1024.f * ps.x) * query.qsum[c >> 1]
                                                       : negative_infinity();
                block_max[c >> 1] = fmaxf(block_max[c >> 1], sc[i][c]);
            }
        float alpha[2];
        bool grew = false;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            block_max[r] = fmaxf(block_max[r], __shfl_xor_sync(0xffffffffu, block_max[r], 1));
            block_max[r] = fmaxf(block_max[r], __shfl_xor_sync(0xffffffffu, block_max[r], 2));
            // -inf while a prefill row has had no token yet (its causal end before this block).
            const float next = fmaxf(m[r], block_max[r]);
            grew |= next > m[r];
            alpha[r] = next == negative_infinity() ? 1.f : __expf(m[r] - next);
            m[r] = next;
            l[r] *= alpha[r];
            z[r] *= alpha[r];
        }
        // The running max settles after a few blocks: rescale the accumulators only when it moved.
        if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
            for (int i = 0; i < VTILES; ++i) {
#pragma unroll
                for (int c = 0; c < 2 * ROWS; ++c) acc[i][c] *= alpha[c >> 1];
            }
        }
        // P' = p * v_scale as the A fragment of O += P' V: a0 = tile 0 (c0, c1), a1 = tile 0 (c2, c3),
        // a2 = tile 1 (c0, c1), a3 = tile 1 (c2, c3). Rows g + 8 are padding without UPPER.
        uint32_t pa[4] = {0u, 0u, 0u, 0u};
        const float base[2] = {m[0] == negative_infinity() ? 0.f : m[0], m[1] == negative_infinity() ? 0.f : m[1]};
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                if (r == 1 && !UPPER) continue;
                float pv[2];
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float p = __expf(sc[i][2 * r + e] - base[r]);  // 0 for masked tokens (ex2.approx: ~2 ulp)
                    l[r] += p;
                    z[r] += p * vp[2 * i + e].y;
                    pv[e] = p * vp[2 * i + e].x;
                }
                pa[2 * i + r] = pack_half2(pv[0], pv[1]);
            }
        // V fragments: b0 = tokens (2t, 2t + 1), b1 = tokens (8 + 2t, 9 + 2t), dim g*D/8 + tile.
#pragma unroll
        for (int j = 0; j < VWORDS; ++j) {
            const uint32_t lo0 = __byte_perm(vw[0][j], vw[1][j], 0x5410), hi0 = __byte_perm(vw[0][j], vw[1][j], 0x7632);
            const uint32_t lo1 = __byte_perm(vw[2][j], vw[3][j], 0x5410), hi1 = __byte_perm(vw[2][j], vw[3][j], 0x7632);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                mma_acc<UPPER>(acc[8 * j + e], pa, nibble_pair(lo0, 4 * e), nibble_pair(lo1, 4 * e));
                mma_acc<UPPER>(acc[8 * j + 4 + e], pa, nibble_pair(hi0, 4 * e), nibble_pair(hi1, 4 * e));
            }
        }
    }

    // After the last block: the lanes of a row (t = 0..3) hold parts of l and z; sum them.
    COMET_DEVICE void reduce_rows() {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
            z[r] += __shfl_xor_sync(0xffffffffu, z[r], 1);
            z[r] += __shfl_xor_sync(0xffffffffu, z[r], 2);
        }
    }
};

// Partials of an item without tokens (or rows): zero output, max -inf, sum 0.
COMET_DEVICE void kv4_empty_partials(const KV4Item& item, int heads, int query_rows, int q_heads, int D, int first,
                                     int stride, float* part_out, float* part_ml) {
    for (int i = first; i < item.rows * D; i += stride) part_out[item.slot(i / D, heads, query_rows, q_heads) * D + i % D] = 0.f;
    for (int m = first; m < item.rows; m += stride) {
        part_ml[item.slot(m, heads, query_rows, q_heads) * 2] = negative_infinity();
        part_ml[item.slot(m, heads, query_rows, q_heads) * 2 + 1] = 0.f;
    }
}

// Grid (columns, query rows or tiles, splits), one item per CTA; its 4 warps take the item's
// blocks in turn (warp w: blocks w, w + 4, ...) and merge in shared memory.
template <int D, bool UPPER, int STAGES>
COMET_DEVICE void decode_attention_kv4_mma(const __nv_bfloat16* __restrict__ q, const uint8_t* __restrict__ k_cache,
                                           const uint8_t* __restrict__ v_cache, const __half2* __restrict__ k_params,
                                           const __half2* __restrict__ v_params, const int32_t* __restrict__ block_table,
                                           int max_pages, const int32_t* __restrict__ lengths, int kv_heads, int group,
                                           int page_size, float softmax_scale, int split_len, float* __restrict__ part_out,
                                           float* __restrict__ part_ml, const int32_t* __restrict__ tiles, int query_rows) {
    constexpr int VTILES = D / 8;
    constexpr int WARPS = ATTN_THREADS / 32;
    const int heads = group < 16 ? group : 16;  // query heads of an item (the launcher: 16 divides larger groups)
    // (The launcher picks UPPER exactly when an item has more than 8 M rows.)
    const int q_heads = kv_heads * group;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const KV4Item item = kv4_item(blockIdx.x, blockIdx.y, blockIdx.z, group, heads, tiles, lengths, block_table, max_pages,
                                  page_size, query_rows, split_len);
    const int rows = item.rows, start = item.start, end = item.end;

    // Dynamic shared memory: the warps' pipeline rings [WARPS][STAGES][KV4Stage], and after the
    // loop (a barrier apart) the cross-warp reduction red[WARPS][16][D + 1] over the same bytes.
    extern __shared__ __align__(16) uint8_t smem[];
    auto red = reinterpret_cast<float (*)[16][D + 1]>(smem);
    uint8_t* ring = smem + warp * STAGES * KV4Stage<D>::BYTES;
    __shared__ float warp_m[WARPS][16], warp_l[WARPS][16], warp_z[WARPS][16], warp_w[WARPS][16], cta_m[16];

    if (item.blocks() == 0) {
        kv4_empty_partials(item, heads, query_rows, q_heads, D, threadIdx.x, ATTN_THREADS, part_out, part_ml);
        return;
    }
    KV4Query<D> query;
    query.template load<UPPER>(q, item, lengths, heads, q_heads, softmax_scale, g, t);
    KV4Softmax<D, UPPER> soft;
    soft.reset();

    // The warp's blocks are t0 = start + 16 (warp + WARPS i), i < blocks; block i + STAGES - 1 is
    // copied while block i is computed (one commit group per block, empty past the end, so the
    // wait below always means "block i has landed"). With pages holding whole 16-token blocks
    // (the usual 16, 32, 64) a block's rows are consecutive and its page index is read one
    // block before its copies are issued, so the issue does not wait on the table.
    const int32_t* table = item.table;
    const bool whole = (page_size & 15) == 0;
    const int step = 16 * WARPS, first_block = start + 16 * warp;
    const int blocks = first_block < end ? (end - first_block + step - 1) / step : 0;
    auto page_of = [&](int i) -> int32_t { return whole && i < blocks ? __ldg(table + (first_block + step * i) / page_size) : 0; };
    auto issue = [&](int i, int32_t page) {
        if (i < blocks) {
            const int tb = first_block + step * i;
            KV4Stage<D>::issue(ring + (i % STAGES) * KV4Stage<D>::BYTES, k_cache, v_cache, k_params, v_params, table, tb,
                               end, kv_heads, item.kvh, page_size, whole,
                               whole ? page_row(page, tb % page_size, kv_heads, item.kvh, page_size) : 0, lane);
        }
        cp_async_commit();
    };
#pragma unroll
    for (int i = 0; i < STAGES - 1; ++i) issue(i, page_of(i));
    int32_t next_page = page_of(STAGES - 1);
    for (int i = 0; i < blocks; ++i) {
        issue(i + STAGES - 1, next_page);
        next_page = page_of(i + STAGES);
        cp_async_wait<STAGES - 1>();
        __syncwarp();
        soft.add(query, ring + (i % STAGES) * KV4Stage<D>::BYTES, first_block + step * i, g, t);
    }
    cp_async_wait<0>();  // (only empty groups remain; the rings become `red` below)
    soft.reduce_rows();

    if (t == 0) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            warp_m[warp][g + 8 * r] = soft.m[r];
            warp_l[warp][g + 8 * r] = soft.l[r];
            warp_z[warp][g + 8 * r] = soft.z[r];
        }
    }
    __syncthreads();
    // Each warp's weight in the CTA's sums, e^(m_w - M) for the CTA's max M (0 for a warp
    // without tokens, m_w = -inf), once per head.
    if (threadIdx.x < 16) {
        const int h = threadIdx.x;
        float top = negative_infinity();
#pragma unroll
        for (int w = 0; w < WARPS; ++w) top = fmaxf(top, warp_m[w][h]);
        cta_m[h] = top;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) warp_w[w][h] = warp_m[w][h] == negative_infinity() ? 0.f : expf(warp_m[w][h] - top);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < KV4Softmax<D, UPPER>::ROWS; ++r) {  // (rows g + 8 are never read without UPPER)
        const float w8 = warp_w[warp][g + 8 * r];
#pragma unroll
        for (int i = 0; i < VTILES; ++i)
#pragma unroll
            for (int e = 0; e < 2; ++e) red[warp][g + 8 * r][(2 * t + e) * (D / 8) + i] = soft.acc[i][2 * r + e] * w8;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < rows * D; i += ATTN_THREADS) {
        const int h = i / D, d = i % D;
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) sum += red[w][h][d] + warp_w[w][h] * warp_z[w][h];
        part_out[item.slot(h, heads, query_rows, q_heads) * D + d] = sum;
    }
    if (threadIdx.x < rows) {
        const int h = threadIdx.x;
        float total = 0.f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) total += warp_w[w][h] * warp_l[w][h];
        part_ml[item.slot(h, heads, query_rows, q_heads) * 2] = cta_m[h];
        part_ml[item.slot(h, heads, query_rows, q_heads) * 2 + 1] = total;
    }
}

// 3 CTAs (12 warps) per SM: at 174 registers ptxas left room for 2 only. Names end in the
// pipeline depth (blocks in flight per warp); the launcher sizes the dynamic shared memory
// (DecodeAttentionKernel.sharedBytes).
#define DECODE_ATTENTION_KV4_MMA(NAME, D, UPPER, STAGES)                                                    \
    extern "C" __global__ void __launch_bounds__(ATTN_THREADS, 3) NAME(                                     \
        const __nv_bfloat16* q, const uint8_t* k_cache, const uint8_t* v_cache, const __half2* k_params,     \
        const __half2* v_params, const int32_t* block_table, int max_pages, const int32_t* lengths,          \
        int kv_heads, int group, int page_size, float softmax_scale, int split_len, float* part_out,         \
        float* part_ml, const int32_t* tiles, int query_rows) {                                              \
        begin_dependent_work();                                                                              \
        decode_attention_kv4_mma<D, UPPER, STAGES>(q, k_cache, v_cache, k_params, v_params, block_table, max_pages, \
                                    lengths, kv_heads, group, page_size, softmax_scale, split_len, part_out, part_ml, \
                                    tiles, query_rows);                                                      \
    }
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d128_h8_s4, 128, false, 4)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d128_h16_s4, 128, true, 4)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d64_h8_s4, 64, false, 4)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d64_h16_s4, 64, true, 4)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d128_h8_s8, 128, false, 8)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d128_h16_s8, 128, true, 8)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d64_h8_s8, 64, false, 8)
DECODE_ATTENTION_KV4_MMA(decode_attention_kv4_mma_d64_h16_s8, 64, true, 8)
