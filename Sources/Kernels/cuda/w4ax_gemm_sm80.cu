// W4Ax GEMM, large-M path for Ampere and Ada (sm_80, sm_86, sm_89): the paper's own kernel,
// on the INT4 tensor cores those GPUs have.
//
//   Y[m, n] = sum over K-blocks b of  int32(A_b[m] . W_b[n]) * scale_a[m, b] * scale_w[n, b]
//
// A4 blocks run on `mma.sync.m16n8k64.s4` with no widening at all: weights and activations
// stay 4-bit from HBM to the tensor core. A8 blocks run on `mma.sync.m16n8k32.s8`, the INT4
// weights widened by the fast conversion (nibble into the high half of a byte, x16; the 1/16
// folded into the per-block promotion, exact as a power of two).
//
// Inputs are the small-M path's formats, so one copy of the weights serves both paths and the
// quantize kernels write one activation format on these GPUs:
//  - weights: W4AxWeights' layout [k_block][n_tile][chunk][lane][16 bytes] (w4ax_gemm.cu). It is
//    the paper's interleaved layout in spirit: each lane's mma fragments are 16 contiguous bytes,
//    so a warp reads a 512-byte chunk with one conflict-free LDS.128 per lane (no ldmatrix,
//    no bank conflicts). For the s4 mma a lane's 8-code fragments are unzipped from the words'
//    even (row g) and odd (row g + 8) nibbles: two LOP3, a shift and a PRMT per fragment.
//  - activations: W4AxActivations, row-major [tokens, K4 / 2] (even channel in the low nibble)
//    and [tokens, K8], scales [tokens, blocks].
//
// Operand roles are swapped as in the small-M kernel (Y^T = W . A^T): the 16-row side of the
// mma is N and the 8-column side is tokens. The k index of an mma is bound to channels so that
// each side's fragments are contiguous bytes (any bijection is exact if both sides agree):
//  - s8, k32 step s of a block: lane t's k indices 4t + j and 16 + 4t + j are channels
//    32t + 8s + j and 32t + 8s + 4 + j (the small-M binding);
//  - s4, k64 step c of a block: lane t's k indices 8t + i and 32 + 8t + i are channels
//    32t + 16c + i and 32t + 16c + 8 + i.
//
// Tiling: a CTA owns 128 output channels x 128 tokens; 8 warps as 2 (N) x 4 (tokens), each
// 64 x 32 (4 x 4 mma tiles). K-blocks stream through a 3-stage cp.async ring (25 KiB a stage,
// under the 99 KiB an sm_86/sm_89 block may have). The grid's z splits K when the output tiles
// alone leave SMs idle (W4AxGemm.splitK): partial sums go to a zeroed fp32 workspace with
// atomics and w4ax_split_k_finish (w4ax_gemm.cu) writes bf16.
//
// Hopper runs s4 mma in emulation (~25x slower than int8), so on an H100/H200 this kernel is
// checked for correctness only; its speed there means nothing.
#include "common.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>

constexpr int AM_WARPS = 8, AM_THREADS = AM_WARPS * 32;
constexpr int AM_TILE = 128;  // output channels and tokens per CTA
constexpr int AM_STAGES = 3;
// One stage: weights of 8 n-tiles (8 KiB), activation codes (A8: 128 rows x 128 bytes, the
// larger case), 128 fp16 weight scales, 128 fp32 activation scales.
constexpr int AM_W_BYTES = 8192, AM_A_BYTES = 16384, AM_SW_BYTES = 256, AM_SA_BYTES = 512;
constexpr int AM_STAGE_BYTES = AM_W_BYTES + AM_A_BYTES + AM_SW_BYTES + AM_SA_BYTES;

COMET_DEVICE void mma_s8_k32(int32_t (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

COMET_DEVICE void mma_s4_k64(int32_t (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The 8 codes of one weight row in mma order, from two layout words of 4 channels x 2 rows
// (nibble 2j: row g, 2j + 1: row g + 8). EVEN picks row g, else row g + 8. Result nibble i is
// channel i of x (i < 4) or channel i - 4 of y.
template <bool EVEN>
COMET_DEVICE uint32_t unzip_row(uint32_t x, uint32_t y) {
    // Nibbles 0, 2, 4, 6 (or 1, 3, 5, 7) of v into nibbles 0, 1, 4, 5: bytes 0 and 2 are the pairs.
    const auto pairs = [](uint32_t v) {
        const uint32_t lo = EVEN ? v : v >> 4, hi = EVEN ? v >> 4 : v >> 8;
        return (lo & 0x000F000Fu) | (hi & 0x00F000F0u);
    };
    return __byte_perm(pairs(x), pairs(y), 0x6420);
}

struct AmpereTile {
    const uint8_t* W;  // the weight layout, as bytes
    const __half* scale_w;
    const uint8_t* a4;
    const int8_t* a8;
    const float* scale_a;
    int M, tiles, tile0, m0, blocks, int4_blocks, row4, row8;  // row4/row8: bytes per token row
};

// Queues the copies of K-block kb into one stage; every thread takes a share.
COMET_DEVICE void load_stage(const AmpereTile& T, uint8_t* stage, int kb) {
    uint8_t* sw = stage + AM_W_BYTES + AM_A_BYTES;
    float* sa = reinterpret_cast<float*>(sw + AM_SW_BYTES);
    const int tid = threadIdx.x;
    // Weights: 8 records of 1 KiB, consecutive in memory ([k_block][n_tile] order).
#pragma unroll
    for (int i = tid; i < AM_W_BYTES / 16; i += AM_THREADS) {
        const int tile = T.tile0 + i / 64;
        const bool ok = tile < T.tiles;
        cp_async_16(stage + i * 16, T.W + ((size_t(kb) * T.tiles + (ok ? tile : 0)) * 64 + i % 64) * 16, ok ? 16 : 0);
    }
    if (tid < AM_SW_BYTES / 16) {
        const int tile = T.tile0 + tid / 2;
        const bool ok = tile < T.tiles;
        cp_async_16(sw + tid * 16, T.scale_w + (size_t(kb) * T.tiles + (ok ? tile : 0)) * 16 + (tid % 2) * 8, ok ? 16 : 0);
    }
    if (tid < AM_TILE) {
        const bool ok = T.m0 + tid < T.M;
        cp_async_4(sa + tid, T.scale_a + size_t(ok ? T.m0 + tid : 0) * T.blocks + kb, ok ? 4 : 0);
    }
    uint8_t* a = stage + AM_W_BYTES;
    if (kb >= T.int4_blocks) {
        // A8: row r's 16-byte chunk c at chunk c ^ (r % 8), so that the 8 rows a quarter-warp
        // reads at one chunk index land in different banks.
#pragma unroll
        for (int i = tid; i < AM_TILE * 8; i += AM_THREADS) {
            const int r = i / 8, c = i % 8;
            const bool ok = T.m0 + r < T.M;
            cp_async_16(a + r * 128 + ((c ^ (r % 8)) * 16),
                   T.a8 + size_t(ok ? T.m0 + r : 0) * T.row8 + size_t(kb - T.int4_blocks) * 128 + c * 16, ok ? 16 : 0);
        }
    } else {
        // A4: 64-byte rows; a quarter-warp's 8 LDS.128 cover two rows, conflict-free unswizzled.
#pragma unroll
        for (int i = tid; i < AM_TILE * 4; i += AM_THREADS) {
            const int r = i / 4, c = i % 4;
            const bool ok = T.m0 + r < T.M;
            cp_async_16(a + r * 64 + c * 16, T.a4 + size_t(ok ? T.m0 + r : 0) * T.row4 + size_t(kb) * 64 + c * 16, ok ? 16 : 0);
        }
    }
}

// One K-block of one warp's 64 x 32 tile into int32 partials (fresh per block).
COMET_DEVICE void block_products(const uint8_t* stage, bool is8, int wn, int wm, int lane, int32_t (&part)[4][4][4]) {
    const uint4* w = reinterpret_cast<const uint4*>(stage) + wn * 4 * 64 + lane;  // [n_tile][chunk][lane]
    const uint8_t* a = stage + AM_W_BYTES;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) part[nt][mt][i] = 0;
    if (is8) {
#pragma unroll
        for (int ch = 0; ch < 2; ++ch) {
            uint4 av[4], wv[4];
#pragma unroll
            for (int mt = 0; mt < 4; ++mt) {
                const int r = wm * 32 + mt * 8 + g;  // bytes 32t + 16ch of row r: chunk 2t + ch
                av[mt] = *reinterpret_cast<const uint4*>(a + r * 128 + (((2 * t + ch) ^ (r % 8)) * 16));
            }
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) wv[nt] = w[(nt * 2 + ch) * 32];
#pragma unroll
            for (int half = 0; half < 2; ++half) {  // k32 step s = 2ch + half
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) {
                    const uint32_t w0 = half ? wv[nt].z : wv[nt].x, w1 = half ? wv[nt].w : wv[nt].y;
                    const uint32_t a0 = (w0 << 4) & 0xF0F0F0F0u, a1 = w0 & 0xF0F0F0F0u;
                    const uint32_t a2 = (w1 << 4) & 0xF0F0F0F0u, a3 = w1 & 0xF0F0F0F0u;
#pragma unroll
                    for (int mt = 0; mt < 4; ++mt)
                        mma_s8_k32(part[nt][mt], a0, a1, a2, a3, half ? av[mt].z : av[mt].x, half ? av[mt].w : av[mt].y);
                }
            }
        }
    } else {
        uint4 av[4];  // a lane's 16 bytes at 16t of its token row: both k64 steps
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) av[mt] = *reinterpret_cast<const uint4*>(a + (wm * 32 + mt * 8 + g) * 64 + t * 16);
#pragma unroll
        for (int ch = 0; ch < 2; ++ch) {  // k64 step c = ch
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const uint4 x = w[(nt * 2 + ch) * 32];
                const uint32_t a0 = unzip_row<true>(x.x, x.y), a1 = unzip_row<false>(x.x, x.y);
                const uint32_t a2 = unzip_row<true>(x.z, x.w), a3 = unzip_row<false>(x.z, x.w);
#pragma unroll
                for (int mt = 0; mt < 4; ++mt)
                    mma_s4_k64(part[nt][mt], a0, a1, a2, a3, ch ? av[mt].z : av[mt].x, ch ? av[mt].w : av[mt].y);
            }
        }
    }
}

COMET_DEVICE void w4ax_mma_sync_large_m(const uint8_t* __restrict__ W, const __half* __restrict__ scale_w,
                                        const uint8_t* __restrict__ a4, const int8_t* __restrict__ a8,
                                        const float* __restrict__ scale_a, __nv_bfloat16* __restrict__ Y,
                                        float* __restrict__ partial, int M, int N, int int4_blocks, int int8_blocks,
                                        int blocks_per_split) {
    extern __shared__ __align__(128) uint8_t smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wn = warp & 1, wm = warp >> 1, g = lane >> 2, t = lane & 3;
    const int blocks = int4_blocks + int8_blocks;
    const AmpereTile T{W, scale_w, a4, a8, scale_a, M, (N + 15) / 16, int(blockIdx.x) * 8, int(blockIdx.y) * AM_TILE,
                       blocks, int4_blocks, int4_blocks * 64, int8_blocks * 128};
    const int kb_begin = blockIdx.z * blocks_per_split, kb_end = min(blocks, kb_begin + blocks_per_split);

    float acc[4][4][4];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[nt][mt][i] = 0.f;

#pragma unroll
    for (int s = 0; s < AM_STAGES - 1; ++s) {
        if (kb_begin + s < kb_end) load_stage(T, smem + s * AM_STAGE_BYTES, kb_begin + s);
        cp_async_commit();
    }
    for (int kb = kb_begin; kb < kb_end; ++kb) {
        cp_async_wait<AM_STAGES - 2>();
        __syncthreads();  // stage kb is in; every warp is done with the stage reloaded below
        const int next = kb + AM_STAGES - 1;
        if (next < kb_end) load_stage(T, smem + (next - kb_begin) % AM_STAGES * AM_STAGE_BYTES, next);
        cp_async_commit();

        const uint8_t* stage = smem + (kb - kb_begin) % AM_STAGES * AM_STAGE_BYTES;
        const bool is8 = kb >= int4_blocks;
        int32_t part[4][4][4];
        block_products(stage, is8, wn, wm, lane, part);
        // Promotion to fp32 as the reference: (int32 / 2^s) * (scale_a * scale_w); 1/16 for the
        // widened A8 weights folded into scale_a (exact).
        const __half* sw = reinterpret_cast<const __half*>(stage + AM_W_BYTES + AM_A_BYTES);
        const float* sa = reinterpret_cast<const float*>(stage + AM_W_BYTES + AM_A_BYTES + AM_SW_BYTES);
        const float unwiden = is8 ? 1.f / 16.f : 1.f;
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
            const float s0 = sa[wm * 32 + mt * 8 + 2 * t] * unwiden, s1 = sa[wm * 32 + mt * 8 + 2 * t + 1] * unwiden;
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const float w0 = __half2float(sw[(wn * 4 + nt) * 16 + g]), w1 = __half2float(sw[(wn * 4 + nt) * 16 + g + 8]);
                acc[nt][mt][0] += float(part[nt][mt][0]) * (s0 * w0);
                acc[nt][mt][1] += float(part[nt][mt][1]) * (s1 * w0);
                acc[nt][mt][2] += float(part[nt][mt][2]) * (s0 * w1);
                acc[nt][mt][3] += float(part[nt][mt][3]) * (s1 * w1);
            }
        }
    }
    cp_async_wait<0>();

    // c0, c1: row g, tokens 2t, 2t + 1; c2, c3: row g + 8.
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int n = (T.tile0 + wn * 4 + nt) * 16 + g + (i >= 2 ? 8 : 0);
                const int m = T.m0 + wm * 32 + mt * 8 + 2 * t + (i & 1);
                if (n >= N || m >= M) continue;
                if (partial != nullptr) atomicAdd(partial + size_t(m) * N + n, acc[nt][mt][i]);
                else Y[size_t(m) * N + n] = __float2bfloat16_rn(acc[nt][mt][i]);
            }
}

// 128-channel blocks only (one A8 block row is one 128-byte smem row). partial: null, or the
// zeroed fp32 split-K workspace ([M, N]) when gridDim.z splits K.
extern "C" __global__ void __launch_bounds__(AM_THREADS, 1) w4ax_mma_sync_large_m_bs128(
    const uint8_t* W, const __half* scale_w, const uint8_t* a4, const int8_t* a8, const float* scale_a,
    __nv_bfloat16* Y, float* partial, int M, int N, int int4_blocks, int int8_blocks, int blocks_per_split) {
    begin_dependent_work();
    w4ax_mma_sync_large_m(W, scale_w, a4, a8, scale_a, Y, partial, M, N, int4_blocks, int8_blocks, blocks_per_split);
}
