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
// Block of 384 threads: a producer warpgroup (one thread issues the copies; the group gives
// its registers to the others with setmaxnreg) and two consumer warpgroups, 64 output channels
// each (with 288 threads, some SM sub-partition held three warps and capped every thread at
// 168 registers: spills). The producer keeps STAGES tiles in flight; each consumer, per K-block: widens its
// weights (prefetched one block ahead), issues 4 wgmma k32 steps into int32 accumulators,
// waits, and promotes them to fp32 with the block's scales. The warpgroups synchronise only
// through the stage barriers, so one promotes while the other's wgmma runs.
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

// d[64] (+)= A (64 x 32 s8, registers) . B (32 x 128 s8, shared memory); accumulate = 0 overwrites d.
COMET_DEVICE void wgmma_m64n128k32(int32_t (&d)[64], const uint32_t (&a)[4], uint64_t b_desc, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %68, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %69, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b_desc));
}

COMET_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
COMET_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
COMET_DEVICE void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

// Keeps `r` in its register until here: wgmma reads its register operands asynchronously, so
// the compiler must not reuse them before the wait.
template <typename T> COMET_DEVICE void keep_register(T& r) { asm volatile("" : "+r"(r)::"memory"); }

// One 16-row weight tile's K-block for this lane: two k32 steps per uint4 (W4AxWeights layout).
struct WeightBlock {
    uint4 chunk[2];
    float scale[2];  // rows g and g + 8, with the widening's 1/16 folded in
};

COMET_DEVICE WeightBlock load_weight_block(const uint4* __restrict__ W, const __half* __restrict__ scale_w,
                                           int kb, int tiles, int tile, int lane) {
    WeightBlock w;
    if (tile < tiles) {
        const size_t record = size_t(kb) * tiles + tile;
        w.chunk[0] = __ldg(W + (record * 2 + 0) * 32 + lane);
        w.chunk[1] = __ldg(W + (record * 2 + 1) * 32 + lane);
        w.scale[0] = __half2float(__ldg(scale_w + record * 16 + (lane >> 2))) * (1.f / 16.f);
        w.scale[1] = __half2float(__ldg(scale_w + record * 16 + (lane >> 2) + 8)) * (1.f / 16.f);
    } else {
        w.chunk[0] = w.chunk[1] = make_uint4(0, 0, 0, 0);
        w.scale[0] = w.scale[1] = 0.f;
    }
    return w;
}

COMET_DEVICE void w4ax_large_m(const uint4* __restrict__ W, const __half* __restrict__ scale_w,
                               const int8_t* __restrict__ codes, const float* __restrict__ scale_a,
                               __nv_bfloat16* __restrict__ Y, float* __restrict__ partial, int M, int N, int blocks,
                               int blocks_per_split) {
    extern __shared__ uint8_t shared_raw[];
    // The swizzle is a function of address bits 7-9: tiles start on 1024-byte boundaries.
    uint8_t* shared = reinterpret_cast<uint8_t*>((reinterpret_cast<size_t>(shared_raw) + 1023) & ~size_t(1023));
    int8_t* tile_codes = reinterpret_cast<int8_t*>(shared);                                 // [STAGES][128][128]
    float* tile_scales = reinterpret_cast<float*>(shared + LM_STAGES * LM_TILE_BYTES);      // [STAGES][128]
    uint64_t* full = reinterpret_cast<uint64_t*>(tile_scales + LM_STAGES * LM_TOKENS);      // [STAGES]
    uint64_t* empty = full + LM_STAGES;                                                    // [STAGES]

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
                mbarrier_arrive_expect_tx(&full[s], LM_TILE_BYTES + LM_SCALE_BYTES);
                const size_t image = size_t(m_tile) * blocks + kb;
                bulk_copy(tile_codes + s * LM_TILE_BYTES, codes + image * LM_TILE_BYTES, LM_TILE_BYTES, &full[s]);
                bulk_copy(tile_scales + s * LM_TOKENS, scale_a + image * LM_TOKENS, LM_SCALE_BYTES, &full[s]);
            }
        }
        return;
    }

    // A consumer: warpgroup 1 or 2 owns 64 output channels, its warp `warp % 4` a 16-row tile.
    const int tiles = (N + 15) / 16;
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int tile = blockIdx.x * (LM_CHANNELS / 16) + (warp - 4);
    const int g = lane >> 2, t = lane & 3;

    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;
    int32_t d[64];

    WeightBlock next = load_weight_block(W, scale_w, kb_begin, tiles, tile, lane);
    for (int kb = kb_begin; kb < kb_end; ++kb) {
        const WeightBlock w = next;
        if (kb + 1 < kb_end) next = load_weight_block(W, scale_w, kb + 1, tiles, tile, lane);
        // Widen: step st's registers are rows g / g + 8 of k 4t..4t+3 and 16+4t..16+4t+3.
        uint32_t a[4][4];
#pragma unroll
        for (int st = 0; st < 4; ++st) {
            const uint4 c = w.chunk[st >> 1];
            const uint32_t lo = (st & 1) ? c.z : c.x, hi = (st & 1) ? c.w : c.y;
            a[st][0] = (lo << 4) & 0xF0F0F0F0u;
            a[st][1] = lo & 0xF0F0F0F0u;
            a[st][2] = (hi << 4) & 0xF0F0F0F0u;
            a[st][3] = hi & 0xF0F0F0F0u;
        }
        const int s = (kb - kb_begin) % LM_STAGES;
        mbarrier_wait(&full[s], ((kb - kb_begin) / LM_STAGES) & 1);
        const uint64_t desc = swizzled_tile_descriptor(tile_codes + s * LM_TILE_BYTES);
        wgmma_fence();
#pragma unroll
        for (int st = 0; st < 4; ++st) wgmma_m64n128k32(d, a[st], desc + uint64_t((32 * st) >> 4), st);
        wgmma_commit();
        wgmma_wait_all();
#pragma unroll
        for (int st = 0; st < 4; ++st)
#pragma unroll
            for (int i = 0; i < 4; ++i) keep_register(a[st][i]);
#pragma unroll
        for (int i = 0; i < 64; ++i) keep_register(d[i]);

        // Promotion: d[4j + e] is (row g, token 8j + 2t + e), d[4j + 2 + e] is row g + 8.
        const float* sa = tile_scales + s * LM_TOKENS;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const float2 a2 = *reinterpret_cast<const float2*>(sa + 8 * j + 2 * t);
            acc[4 * j + 0] += float(d[4 * j + 0]) * (a2.x * w.scale[0]);
            acc[4 * j + 1] += float(d[4 * j + 1]) * (a2.y * w.scale[0]);
            acc[4 * j + 2] += float(d[4 * j + 2]) * (a2.x * w.scale[1]);
            acc[4 * j + 3] += float(d[4 * j + 3]) * (a2.y * w.scale[1]);
        }
        // The warp's reads of this stage are done (wgmma waited for, scales consumed): one
        // arrival per warp, not 256 serialised shared-memory atomics.
        __syncwarp();
        if (lane == 0) mbarrier_arrive(&empty[s]);
    }

    const int row = tile * 16 + g;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int token = m_tile * LM_TOKENS + 8 * j + 2 * t + e;
            if (token >= M) continue;
            const size_t at = size_t(token) * N + row;
            if (gridDim.z > 1) {
                if (row < N) atomicAdd(partial + at, acc[4 * j + e]);
                if (row + 8 < N) atomicAdd(partial + at + 8, acc[4 * j + 2 + e]);
            } else {
                if (row < N) Y[at] = __float2bfloat16_rn(acc[4 * j + e]);
                if (row + 8 < N) Y[at + 8] = __float2bfloat16_rn(acc[4 * j + 2 + e]);
            }
        }
    }
}

#endif

// Grid: (ceil(N / 128), ceil(M / 128), K splits); 384 threads; dynamic shared memory as
// W4AxGemm.largeMSharedBytes. With one split Y is written directly; with more, `partial`
// ([M, N] fp32, all zero) receives the sums and w4ax_split_k_finish writes Y.
// Compiled for every target so that one source list serves all; only sm_90a has a body.
extern "C" __global__ void __launch_bounds__(LM_THREADS, 1) w4ax_large_m_bs128(
    const uint4* W, const __half* scale_w, const int8_t* codes, const float* scale_a, __nv_bfloat16* Y, float* partial,
    int M, int N, int blocks, int blocks_per_split) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    w4ax_large_m(W, scale_w, codes, scale_a, Y, partial, M, N, blocks, blocks_per_split);
#else
    __trap();
#endif
}

// Y = bf16(partial), and partial back to zero: the split-K workspace stays zeroed between
// uses, so no memset precedes the next GEMM. Four elements per thread.
extern "C" __global__ void w4ax_split_k_finish(float* partial, __nv_bfloat16* Y, int count) {
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
