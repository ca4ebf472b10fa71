// W4Ax GEMM, large-M path (prefill), sm_90a: Y[M, N] (bf16) = FMPQ activations x INT4 weights^T
// on the int8 `wgmma` (DESIGN.md §1: Hopper has no INT4 tensor cores; s8 wgmma runs at 1929 TOPS).
//
//   Y[m, n] = sum over 128-channel K-blocks b of  int32(A_b[m] . 16 W_b[n]) * scale_a[m, b] * scale_w[n, b] / 16
//
// Operand roles are those of the small-M kernel (w4ax_gemm.cu): Y^T = W . A^T. The weights are
// wgmma's A operand, read from registers: the INT4 layout of W4AxWeights.swift already is the
// m16n8k32 A fragment, which is also each warp's quarter of a m64nNk32 A fragment, so one
// weight layout serves both kernels. Nibbles are widened to s8 in registers (x16, one shift
// and one AND per 4 weights). The activations are the B operand, 128 tokens wide, read from
// shared memory by wgmma itself.
//
// Activations arrive "tiled" (fmpq_quantize.cu, *_tiled entry points): every K-block of every
// 128-token tile is one contiguous 16 KiB image of the shared-memory tile, int8 codes for A4
// and A8 blocks alike, channels in the weights' within-block order, 16-byte chunks already in
// the 128-byte swizzle wgmma reads. So one bulk copy (cp.async.bulk, no tensor map) per stage
// moves a tile, completing on an mbarrier; its 128 fp32 scales follow in a second copy.
//
// Block of 384 threads: a producer warpgroup (one thread issues the copies) and two consumer
// warpgroups, 64 output channels each. The producer keeps STAGES K-blocks in flight: the
// activation tile, its scales, and the block's weights (8 KiB, already contiguous in the
// weight layout) with their fp16 scales. Each consumer, per K-block: widens its weights from
// shared memory into A fragments, runs the block as two n64 halves (wgmma.m64n64k32, 4 k32
// steps each) and promotes each half's int32 sums to fp32 with the block's scales while the
// other half's MMAs run. The warpgroups synchronise only through the stage barriers.
// Measurements and what limits it: bench/NOTES.md.
#include "common.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>

constexpr int LM_THREADS = 384;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

constexpr int LM_TOKENS = 128;                         // tokens per tile: wgmma N
constexpr int LM_CHANNELS = 128;                       // output channels per block: 2 x wgmma M
constexpr int LM_BLOCK_K = 128;                        // FMPQ K-block
constexpr int LM_STAGES = 6;                           // W4AxGemm.largeMSharedBytes counts them
constexpr int LM_TILE_BYTES = LM_TOKENS * LM_BLOCK_K;  // 16 KiB of int8 codes
constexpr int LM_SCALE_BYTES = LM_TOKENS * 4;
constexpr int LM_WEIGHT_BYTES = LM_CHANNELS / 16 * 1024;  // 8 tiles of 16 rows x 128 INT4 codes
constexpr int LM_CONSUMERS = 256;

COMET_DEVICE uint32_t shared_address(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

COMET_DEVICE void mbarrier_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address(bar)), "r"(count) : "memory");
}

COMET_DEVICE void mbarrier_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_address(bar)) : "memory");
}

COMET_DEVICE void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(bar)), "r"(bytes) : "memory");
}

// Returns once the phase of parity `parity` has completed.
COMET_DEVICE void mbarrier_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done) : "r"(shared_address(bar)), "r"(parity) : "memory");
    } while (!done);
}

// Global -> shared bulk copy of `bytes` (a multiple of 16), counted on `bar`'s transaction count.
COMET_DEVICE void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(shared_address(dst)), "l"(src), "r"(bytes), "r"(shared_address(bar)) : "memory");
}

// wgmma shared-memory descriptor of a K-major tile with 128-byte swizzle: rows of 128 bytes,
// 8-row groups 1024 bytes apart (stride byte offset), leading byte offset unused (1).
COMET_DEVICE uint64_t swizzled_tile_descriptor(const void* tile) {
    return uint64_t((shared_address(tile) & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) |
           (uint64_t(1) << 62);
}

// d[32] (+)= A (64 x 32 s8, registers) . B (32 x 64 s8, shared memory); accumulate = 0 overwrites d.
COMET_DEVICE void wgmma_m64n64k32(int32_t (&d)[32], const uint32_t (&a)[4], uint64_t b_desc, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %36, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %37, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b_desc));
}

COMET_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
COMET_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
COMET_DEVICE void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
COMET_DEVICE void wgmma_wait_one() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }

// Keeps `r` in its register until here: wgmma reads its register operands asynchronously, so
// the compiler must not reuse them before the wait.
template <typename T> COMET_DEVICE void keep_register(T& r) { asm volatile("" : "+r"(r)::"memory"); }

// One 16-row weight tile's K-block for this lane: two k32 steps per uint4 (W4AxWeights layout).
struct WeightBlock {
    uint4 chunk[2];
    float scale[2];  // rows g and g + 8, with the widening's 1/16 folded in
};

// Widens one K-block's INT4 weights into wgmma A fragments: step st's registers are rows g / g + 8
// of k 4t..4t+3 and 16+4t..16+4t+3 (nibble into the high half: x16).
COMET_DEVICE void widen_weights(const WeightBlock& w, uint32_t (&a)[4][4]) {
#pragma unroll
    for (int st = 0; st < 4; ++st) {
        const uint4 c = w.chunk[st >> 1];
        const uint32_t lo = (st & 1) ? c.z : c.x, hi = (st & 1) ? c.w : c.y;
        a[st][0] = (lo << 4) & 0xF0F0F0F0u;
        a[st][1] = lo & 0xF0F0F0F0u;
        a[st][2] = (hi << 4) & 0xF0F0F0F0u;
        a[st][3] = hi & 0xF0F0F0F0u;
    }
}

// One n64 half (tokens 64 h .. 64 h + 63) of a K-block: 4 k32 steps, one commit group.
COMET_DEVICE void issue_half(int32_t (&d)[32], const uint32_t (&a)[4][4], const int8_t* stage_codes, int h) {
    const uint64_t desc = swizzled_tile_descriptor(stage_codes + h * 64 * 128);
    wgmma_fence();
#pragma unroll
    for (int st = 0; st < 4; ++st) wgmma_m64n64k32(d, a[st], desc + uint64_t((32 * st) >> 4), st);
    wgmma_commit();
}

// acc (+)= d promoted with the block's scales; d[4j + e] is (row g, token 64h + 8j + 2t + e),
// d[4j + 2 + e] row g + 8.
COMET_DEVICE void promote_half(float (&acc)[32], int32_t (&d)[32], const float* stage_scales, int h, int t,
                               const float (&sw)[2]) {
#pragma unroll
    for (int i = 0; i < 32; ++i) keep_register(d[i]);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const float2 a2 = *reinterpret_cast<const float2*>(stage_scales + 64 * h + 8 * j + 2 * t);
        acc[4 * j + 0] += float(d[4 * j + 0]) * (a2.x * sw[0]);
        acc[4 * j + 1] += float(d[4 * j + 1]) * (a2.y * sw[0]);
        acc[4 * j + 2] += float(d[4 * j + 2]) * (a2.x * sw[1]);
        acc[4 * j + 3] += float(d[4 * j + 3]) * (a2.y * sw[1]);
    }
}

template <int N> COMET_DEVICE void keep_fragments(uint32_t (&a)[4][N]) {
#pragma unroll
    for (int st = 0; st < 4; ++st)
#pragma unroll
        for (int i = 0; i < N; ++i) keep_register(a[st][i]);
}

COMET_DEVICE void w4ax_large_m(const uint4* __restrict__ W, const __half* __restrict__ scale_w,
                               const int8_t* __restrict__ codes, const float* __restrict__ scale_a,
                               __nv_bfloat16* __restrict__ Y, float* __restrict__ partial, int M, int N, int blocks,
                               int blocks_per_split) {
    extern __shared__ uint8_t shared_raw[];
    // The swizzle is a function of address bits 7-9: tiles start on 1024-byte boundaries.
    uint8_t* shared = reinterpret_cast<uint8_t*>((reinterpret_cast<size_t>(shared_raw) + 1023) & ~size_t(1023));
    int8_t* tile_codes = reinterpret_cast<int8_t*>(shared);                                      // [STAGES][128][128]
    uint4* tile_weights = reinterpret_cast<uint4*>(shared + LM_STAGES * LM_TILE_BYTES);         // [STAGES][8 tiles][1 KiB]
    __half* tile_wscales = reinterpret_cast<__half*>(tile_weights + LM_STAGES * LM_WEIGHT_BYTES / 16);  // [STAGES][8][16]
    float* tile_scales = reinterpret_cast<float*>(tile_wscales + LM_STAGES * LM_CHANNELS);      // [STAGES][128]
    uint64_t* full = reinterpret_cast<uint64_t*>(tile_scales + LM_STAGES * LM_TOKENS);          // [STAGES]
    uint64_t* empty = full + LM_STAGES;                                                        // [STAGES]
    const int tiles = (N + 15) / 16;
    // This block's 16-row weight tiles [tile0, tile0 + own_tiles): contiguous in each K-block's record.
    const int tile0 = blockIdx.x * (LM_CHANNELS / 16);
    const int own_tiles = min(LM_CHANNELS / 16, tiles - tile0);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int m_tile = blockIdx.y;
    // Split-K: this block's K-blocks [kb_begin, kb_end); with more than one split (grid z),
    // fp32 partial sums are added into `partial`, which w4ax_split_k_finish converts.
    const int kb_begin = blockIdx.z * blocks_per_split;
    const int kb_end = min(blocks, kb_begin + blocks_per_split);
    if (threadIdx.x == 0) {
        for (int s = 0; s < LM_STAGES; ++s) {
            mbarrier_init(&full[s], 1);
            mbarrier_init(&empty[s], LM_CONSUMERS / 32);  // one arrival per consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (warp < 4) {  // the producer warpgroup
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (threadIdx.x == 0) {
            for (int kb = kb_begin; kb < kb_end; ++kb) {
                const int s = (kb - kb_begin) % LM_STAGES, use = (kb - kb_begin) / LM_STAGES;
                if (use > 0) mbarrier_wait(&empty[s], (use - 1) & 1);
                // The block's weights too: contiguous, 1 KiB and 16 fp16 scales per 16-row tile.
                const uint32_t weight_bytes = own_tiles * (1024 + 32);
                mbarrier_arrive_expect_tx(&full[s], LM_TILE_BYTES + LM_SCALE_BYTES + weight_bytes);
                const size_t image = size_t(m_tile) * blocks + kb;
                bulk_copy(tile_codes + s * LM_TILE_BYTES, codes + image * LM_TILE_BYTES, LM_TILE_BYTES, &full[s]);
                bulk_copy(tile_scales + s * LM_TOKENS, scale_a + image * LM_TOKENS, LM_SCALE_BYTES, &full[s]);
                const size_t record = size_t(kb) * tiles + tile0;
                bulk_copy(tile_weights + s * (LM_WEIGHT_BYTES / 16), W + record * 64, own_tiles * 1024, &full[s]);
                bulk_copy(tile_wscales + s * LM_CHANNELS, scale_w + record * 16, own_tiles * 32, &full[s]);
            }
        }
        return;
    }

    // A consumer: warpgroup 1 or 2 owns 64 output channels, its warp `warp % 4` a 16-row tile.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int tile = blockIdx.x * (LM_CHANNELS / 16) + (warp - 4);
    const int g = lane >> 2, t = lane & 3;

    // Each K-block as two n64 halves (tokens 0-63, 64-127) with their own int32
    // accumulators and the same weight fragments: a half is promoted while the other
    // half's MMAs run, so a warpgroup overlaps its own tensor and CUDA-core work (waiting
    // for all 128 tokens, then promoting, ran at 0.62x cuBLAS bf16 instead of 0.78x).
    float acc0[32], acc1[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) acc0[i] = acc1[i] = 0.f;
    int32_t d0[32], d1[32];
    uint32_t f[4][4];
    const int local = warp - 4;
    const bool own = local < own_tiles;
    float sw[2];
    // Widens this warp's weights of the K-block in stage s (after its full barrier) into f.
    auto load_fragments = [&](int s) {
        WeightBlock w;
        const uint4* p = tile_weights + s * (LM_WEIGHT_BYTES / 16) + local * 64 + lane;
        const __half* q = tile_wscales + s * LM_CHANNELS + local * 16 + g;
        w.chunk[0] = own ? p[0] : make_uint4(0, 0, 0, 0);
        w.chunk[1] = own ? p[32] : make_uint4(0, 0, 0, 0);
        sw[0] = own ? __half2float(q[0]) * (1.f / 16.f) : 0.f;
        sw[1] = own ? __half2float(q[8]) * (1.f / 16.f) : 0.f;
        widen_weights(w, f);
    };
    mbarrier_wait(&full[0], 0);
    load_fragments(0);
    issue_half(d0, f, tile_codes, 0);
    // One K-block: its first half is in flight in d0 on entry; with a next block, that
    // block's first half is in flight on exit. The control flow has no data-dependent wgmma
    // paths, so ptxas sees which commit group each wait retires (else it serialises them).
    auto step = [&](int kb, bool has_next) {
        const int s = (kb - kb_begin) % LM_STAGES;
        const float* stage_scales = tile_scales + s * LM_TOKENS;
        issue_half(d1, f, tile_codes + s * LM_TILE_BYTES, 1);
        wgmma_wait_one();
        promote_half(acc0, d0, stage_scales, 0, t, sw);
        wgmma_wait_all();
        keep_fragments(f);
        const float sw_block[2] = {sw[0], sw[1]};
        if (has_next) {
            const int s1 = (kb + 1 - kb_begin) % LM_STAGES;
            mbarrier_wait(&full[s1], ((kb + 1 - kb_begin) / LM_STAGES) & 1);
            load_fragments(s1);
            issue_half(d0, f, tile_codes + s1 * LM_TILE_BYTES, 0);
        }
        promote_half(acc1, d1, stage_scales, 1, t, sw_block);
        __syncwarp();
        if (lane == 0) mbarrier_arrive(&empty[s]);
    };
    for (int kb = kb_begin; kb + 1 < kb_end; ++kb) step(kb, true);
    step(kb_end - 1, false);
    const int row = tile * 16 + g;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int token = m_tile * LM_TOKENS + 64 * h + 8 * j + 2 * t + e;
                if (token >= M) continue;
                const float lo = h ? acc1[4 * j + e] : acc0[4 * j + e];
                const float hi = h ? acc1[4 * j + 2 + e] : acc0[4 * j + 2 + e];
                const size_t at = size_t(token) * N + row;
                if (gridDim.z > 1) {
                    if (row < N) atomicAdd(partial + at, lo);
                    if (row + 8 < N) atomicAdd(partial + at + 8, hi);
                } else {
                    if (row < N) Y[at] = __float2bfloat16_rn(lo);
                    if (row + 8 < N) Y[at + 8] = __float2bfloat16_rn(hi);
                }
            }
        }
    }
}

#endif

// Grid: (ceil(N / 128), ceil(M / 128), K splits); 384 threads; dynamic shared memory as
// W4AxGemm.largeMSharedBytes. With one split Y is written directly; with more, `partial`
// ([M, N] fp32, all zero) receives the sums and w4ax_split_k_finish (w4ax_gemm.cu) writes Y.
// Compiled for every target so that one source list serves all; only sm_90a has a body.
extern "C" __global__ void __launch_bounds__(LM_THREADS, 1) w4ax_large_m_bs128(
    const uint4* W, const __half* scale_w, const int8_t* codes, const float* scale_a, __nv_bfloat16* Y, float* partial,
    int M, int N, int blocks, int blocks_per_split) {
    begin_dependent_work();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    w4ax_large_m(W, scale_w, codes, scale_a, Y, partial, M, N, blocks, blocks_per_split);
#else
    __trap();
#endif
}
