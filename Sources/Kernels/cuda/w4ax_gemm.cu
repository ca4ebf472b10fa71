// W4Ax GEMM, small-M path (decode): Y[M, N] (bf16) = FMPQ activations [M, K] x INT4 weights [N, K]^T.
//
//   Y[m, n] = sum over K-blocks b of  int32(A_b[m] . W_b[n]) * scale_a[m, b] * scale_w[n, b]
//
// K is FMPQ's padded K: `int4_blocks` A4 blocks (two codes per byte) then `int8_blocks` A8
// blocks (DESIGN.md §2). Hopper has no INT4 tensor cores, so every product runs on the int8
// `mma.sync.m16n8k32`: INT4 codes are widened by placing each nibble in the high half of a
// byte (x16; one shift and one AND per 4 weights), and the 1/16 (or 1/256 for A4 x W4) is
// folded into the per-block fp32 promotion, which is exact because it is a power of two.
//
// Operand roles are swapped (Y^T = W . A^T) so that the 16-row side of the mma is N and the
// 8-column side is the few tokens of a decode step: no tensor-core work is wasted at M = 1..8.
//
// Work split: a block of 8 warps owns NT n-tiles of 16 output channels and 8*MT tokens; its
// warps take K-blocks round-robin and reduce through shared memory at the end, so the whole
// grid streams the weights once, N/(16 NT) blocks wide, with no atomics and no second kernel.
// (Blocks of 4 warps exist at M <= 8 for benchmarks, `SmallMTuning`; on an H100 they never won.)
// Weight scales are fp16 in the tile layout [k_block][n_tile][16 rows].
//
// Channel order inside a K-block: the mma's k index (step s, half h, lane t, byte j) is bound
// to channel c = (BS/4) t + 8 s + 4 h + j of the block, so that each lane's activation codes
// for a whole block are contiguous (one or two 16-byte loads instead of 2 * BS/32 small ones).
// Any bijection works as long as A and W agree: the activations stay in plain channel order
// and the weight packing (W4AxWeights.swift) applies the binding.
//
// Weight layout (made once at load time by W4AxWeights.swift):
//   [k_block][n_tile][chunk = 2 k32 steps][lane][16 bytes]
// K-block outermost, so that the blocks running at one moment (consecutive n-tiles, warps at
// the same phase) read neighbouring addresses: DRAM pages stay open (see bench/NOTES.md, copy).
// The 16 bytes of a lane are two k32 steps of two 32-bit words; word h of step s holds nibble
// 2j = W[g][c] and nibble 2j + 1 = W[g + 8][c] for c bound to (s, h, t, j) as above
// (g = lane / 4, t = lane % 4; PTX ISA "mma.m16n8k32" fragments).
#include "common.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>


// Four A4 codes (16 bits, code j in nibble j) -> four int8 lanes holding 16 * code.
COMET_DEVICE uint32_t widen_a4(uint32_t v) {
    const uint32_t y = __byte_perm(v, 0, 0x1100);  // bytes [c0c1, c0c1, c2c3, c2c3]
    return ((y << 4) & 0x00F000F0u) | (y & 0xF000F000u);
}

// Component i (0..3) of a uint4; i is a compile-time constant after unrolling.
COMET_DEVICE uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

COMET_DEVICE void mma_s8_16x8x32(int32_t (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                 uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Where a block's lane reads: the fixed part of the addressing, shared by every K-block group.
struct W4AxLane {
    const uint4* W;
    const __half* scale_w;
    const uint8_t* a4;
    const int8_t* a8;
    const float* scale_a;
    int M, tiles, tile0, m0, blocks, int4_blocks, k4, k8, g, t, lane;
};

// The registers of one group of G K-blocks: weights, activation codes and scales. Loading
// and computing are separate so that the next group's loads fly while this one computes.
template <int BS, int MT, int NT, int G>
struct W4AxGroup {
    static constexpr int CHUNKS = BS / 64, STEPS = BS / 32;
    uint4 wv[G][NT][CHUNKS];
    uint4 av[G][MT][BS / 64];  // this lane's codes of each block: BS/4 bytes (A8) or BS/8 (A4)
    float swv[G][NT][2], sav[G][MT][2];

    COMET_DEVICE void load(const W4AxLane& L, int kb0) {
#pragma unroll
        for (int j = 0; j < G; ++j) {
            const int kb = kb0 + j;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const bool ok = kb < L.blocks && L.tile0 + nt < L.tiles;
                const size_t record = ok ? size_t(kb) * L.tiles + L.tile0 + nt : 0;
#pragma unroll
                for (int c = 0; c < CHUNKS; ++c) wv[j][nt][c] = ok ? __ldg(L.W + (record * CHUNKS + c) * 32 + L.lane) : make_uint4(0, 0, 0, 0);
                swv[j][nt][0] = ok ? __half2float(__ldg(L.scale_w + record * 16 + L.g)) : 0.f;
                swv[j][nt][1] = ok ? __half2float(__ldg(L.scale_w + record * 16 + L.g + 8)) : 0.f;
            }
            const float unwiden = kb >= L.int4_blocks ? 1.f / 16.f : 1.f / 256.f;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int token = L.m0 + mt * 8 + 2 * L.t + e;
                    sav[j][mt][e] = kb < L.blocks && token < L.M ? __ldg(L.scale_a + size_t(token) * L.blocks + kb) * unwiden : 0.f;
                }
                const int token = L.m0 + mt * 8 + L.g;
#pragma unroll
                for (int v = 0; v < BS / 64; ++v) av[j][mt][v] = make_uint4(0, 0, 0, 0);
                if (kb < L.blocks && token < L.M) {
                    if (kb >= L.int4_blocks) {
                        const uint4* p = reinterpret_cast<const uint4*>(
                            L.a8 + size_t(token) * L.k8 + (kb - L.int4_blocks) * BS + (BS / 4) * L.t);
#pragma unroll
                        for (int v = 0; v < BS / 64; ++v) av[j][mt][v] = __ldg(p + v);
                    } else {
                        const uint8_t* p = L.a4 + size_t(token) * (L.k4 / 2) + kb * (BS / 2) + (BS / 8) * L.t;
                        if (BS == 128) {
                            av[j][mt][0] = __ldg(reinterpret_cast<const uint4*>(p));
                        } else {
                            const uint2 h = __ldg(reinterpret_cast<const uint2*>(p));
                            av[j][mt][0] = make_uint4(h.x, h.y, 0, 0);
                        }
                    }
                }
            }
        }
    }

    COMET_DEVICE void compute(const W4AxLane& L, int kb0, float (&acc)[NT][MT][4]) const {
#pragma unroll
        for (int j = 0; j < G; ++j) {
            const int kb = kb0 + j;
            if (kb >= L.blocks) break;
            const bool is8 = kb >= L.int4_blocks;
            int32_t part[NT][MT][4];
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int i = 0; i < 4; ++i) part[nt][mt][i] = 0;
#pragma unroll
            for (int s = 0; s < STEPS; ++s) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    uint32_t b0, b1;
                    if (is8) {  // words 2s and 2s + 1 of the lane's BS/4 bytes
                        b0 = word(av[j][mt][s / 2], (2 * s) % 4);
                        b1 = word(av[j][mt][s / 2], (2 * s + 1) % 4);
                    } else {    // halfwords 2s and 2s + 1 of the lane's BS/8 bytes
                        const uint32_t w = word(av[j][mt][0], s);
                        b0 = widen_a4(w & 0xFFFFu);
                        b1 = widen_a4(w >> 16);
                    }
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        const uint32_t w0 = (s & 1) ? wv[j][nt][s / 2].z : wv[j][nt][s / 2].x;
                        const uint32_t w1 = (s & 1) ? wv[j][nt][s / 2].w : wv[j][nt][s / 2].y;
                        mma_s8_16x8x32(part[nt][mt], (w0 << 4) & 0xF0F0F0F0u, w0 & 0xF0F0F0F0u,
                                       (w1 << 4) & 0xF0F0F0F0u, w1 & 0xF0F0F0F0u, b0, b1);
                    }
                }
            }
            // Per-block promotion to fp32, as the reference: (int32 / 2^s) * (scale_a * scale_w),
            // with 1/2^s folded into scale_a (exact: a power of two).
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int i = 0; i < 4; ++i)
                        acc[nt][mt][i] += float(part[nt][mt][i]) * (sav[j][mt][i & 1] * swv[j][nt][i >> 1]);
        }
    }
};

template <int BS, int MT, int NT, int G, bool PIPELINED, int WARPS>
COMET_DEVICE void w4ax_small_m(const uint4* __restrict__ W, const __half* __restrict__ scale_w,
                               const uint8_t* __restrict__ a4, const int8_t* __restrict__ a8,
                               const float* __restrict__ scale_a, __nv_bfloat16* __restrict__ Y,
                               int M, int N, int int4_blocks, int int8_blocks) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int tiles = (N + 15) / 16;
    const int tile0 = blockIdx.x * NT;  // this block's first n-tile; it owns NT of them
    const int m0 = blockIdx.z * 8 * MT;
    const int blocks = int4_blocks + int8_blocks;
    const W4AxLane L{W, scale_w, a4, a8, scale_a, M, tiles, tile0, m0, blocks, int4_blocks,
                     int4_blocks * BS, int8_blocks * BS, lane >> 2, lane & 3, lane};

    float acc[NT][MT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[nt][mt][i] = 0.f;

    // Each warp takes groups of G consecutive K-blocks, WARPS * G apart. PIPELINED: two
    // register sets alternate, so while one group computes the next group's loads are in
    // flight (ncu at M = 1: one set left the loads idle during each compute phase, 2.05 TB/s
    // on 70B down). With more tokens the second set costs occupancy more than it gains.
    constexpr int STRIDE = WARPS * G;
    W4AxGroup<BS, MT, NT, G> first;
    int kb0 = warp * G;
    if (PIPELINED) {
        W4AxGroup<BS, MT, NT, G> second;
        if (kb0 < blocks) first.load(L, kb0);
        for (; kb0 < blocks; kb0 += 2 * STRIDE) {
            if (kb0 + STRIDE < blocks) second.load(L, kb0 + STRIDE);
            first.compute(L, kb0, acc);
            if (kb0 + STRIDE >= blocks) break;
            if (kb0 + 2 * STRIDE < blocks) first.load(L, kb0 + 2 * STRIDE);
            second.compute(L, kb0 + STRIDE, acc);
        }
    } else {
        for (; kb0 < blocks; kb0 += STRIDE) {
            first.load(L, kb0);
            first.compute(L, kb0, acc);
        }
    }

    // Reduce the warps' partial sums; [warp][slot][lane] keeps the stores conflict-free.
    __shared__ float partial[WARPS][NT * MT * 4][32];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) partial[warp][(nt * MT + mt) * 4 + i][lane] = acc[nt][mt][i];
    __syncthreads();
    for (int idx = threadIdx.x; idx < NT * MT * 4 * 32; idx += WARPS * 32) {
        const int slot = idx / 32, l = idx % 32;
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) sum += partial[w][slot][l];
        const int nt = slot / (MT * 4), mt = slot / 4 % MT, i = slot % 4;
        const int row = (tile0 + nt) * 16 + (l >> 2) + (i >= 2 ? 8 : 0);
        const int token = m0 + mt * 8 + 2 * (l & 3) + (i & 1);
        if (row < N && token < M) Y[size_t(token) * N + row] = __float2bfloat16_rn(sum);
    }
}

// Asks L2 for the weights (and their scales) of each warp's first GROUPS groups of G K-blocks,
// as w4ax_small_m will load them. The weights are written once at load time, never by the
// kernels just before, so this runs before begin_dependent_work: launched as a dependent, the
// GEMM starts pulling its weights from HBM while the kernel that quantizes its activations
// finishes (prefetch_l2 is safe regardless). One lane per 128-byte line.
template <int BS, int NT, int G, int GROUPS, int WARPS>
COMET_DEVICE void w4ax_prefetch_first_groups(const uint4* W, const __half* scale_w, int N, int blocks) {
    constexpr int CHUNKS = BS / 64;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int tiles = (N + 15) / 16, tile0 = blockIdx.x * NT;
    if (blockIdx.z != 0 || lane % 8 != 0) return;  // the m-tiles along z share the weights
#pragma unroll
    for (int group = 0; group < GROUPS; ++group)
#pragma unroll
        for (int j = 0; j < G; ++j) {
            const int kb = warp * G + group * WARPS * G + j;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                if (kb >= blocks || tile0 + nt >= tiles) continue;
                const size_t record = size_t(kb) * tiles + tile0 + nt;
#pragma unroll
                for (int c = 0; c < CHUNKS; ++c) prefetch_l2(W + (record * CHUNKS + c) * 32 + lane);
                if (lane == 0) prefetch_l2(scale_w + record * 16);
            }
        }
}

// One entry point per (block size, m-tiles, n-tiles per warp, warps per block); the launcher
// picks MT from M and NT from N, and 8 warps unless a benchmark fixes them. G (K-blocks in
// flight per warp) trades registers for memory parallelism.
#define W4AX_SMALL_M(BS, MT, NT, G, PIPELINED, WARPS)                                                 \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) w4ax_small_m_bs##BS##_mt##MT##_nt##NT##_w##WARPS( \
        const uint4* W, const __half* scale_w, const uint8_t* a4, const int8_t* a8,                 \
        const float* scale_a, __nv_bfloat16* Y, int M, int N, int int4_blocks, int int8_blocks) {    \
        w4ax_prefetch_first_groups<BS, NT, G, PIPELINED ? 2 : 1, WARPS>(W, scale_w, N, int4_blocks + int8_blocks); \
        begin_dependent_work();                                                                      \
        w4ax_small_m<BS, MT, NT, G, PIPELINED, WARPS>(W, scale_w, a4, a8, scale_a, Y, M, N, int4_blocks, \
                                                       int8_blocks);                                  \
    }
// G x NT KiB of weights per register set (at BS = 128); measured on the H200 (bench/NOTES.md).
// Blocks of 4 warps at M <= 8 only: a tile's K loop over half the warps, twice the blocks per SM.
W4AX_SMALL_M(128, 1, 1, 2, true, 8)
W4AX_SMALL_M(128, 2, 1, 2, false, 8)
W4AX_SMALL_M(128, 4, 1, 1, false, 8)
W4AX_SMALL_M(128, 1, 2, 1, true, 8)
W4AX_SMALL_M(128, 2, 2, 2, false, 8)
W4AX_SMALL_M(128, 4, 2, 1, false, 8)
W4AX_SMALL_M(64, 1, 1, 4, true, 8)
W4AX_SMALL_M(64, 2, 1, 4, false, 8)
W4AX_SMALL_M(64, 4, 1, 2, false, 8)
W4AX_SMALL_M(64, 1, 2, 2, true, 8)
W4AX_SMALL_M(64, 2, 2, 4, false, 8)
W4AX_SMALL_M(64, 4, 2, 2, false, 8)
W4AX_SMALL_M(128, 1, 1, 2, true, 4)
W4AX_SMALL_M(128, 1, 2, 1, true, 4)
W4AX_SMALL_M(64, 1, 1, 4, true, 4)
W4AX_SMALL_M(64, 1, 2, 2, true, 4)

// The split-K epilogue of both large-M kernels (w4ax_gemm_sm90.cu, w4ax_gemm_sm80.cu), here
// because this file is loaded on every GPU.
// Y = bf16(partial), and partial back to zero: the split-K workspace stays zeroed between
// uses, so no memset precedes the next GEMM. Four elements per thread.
extern "C" __global__ void w4ax_split_k_finish(float* partial, __nv_bfloat16* Y, int count) {
    begin_dependent_work();
    const int i = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i + 4 <= count) {
        const float4 v = *reinterpret_cast<const float4*>(partial + i);
        *reinterpret_cast<float4*>(partial + i) = make_float4(0.f, 0.f, 0.f, 0.f);
        reinterpret_cast<__nv_bfloat162*>(Y + i)[0] = __floats2bfloat162_rn(v.x, v.y);
        reinterpret_cast<__nv_bfloat162*>(Y + i)[1] = __floats2bfloat162_rn(v.z, v.w);
    } else {
        for (int k = i; k < count; ++k) {
            Y[k] = __float2bfloat16_rn(partial[k]);
            partial[k] = 0.f;
        }
    }
}
