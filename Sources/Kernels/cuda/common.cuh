// Shared by every comet kernel. NVRTC offers no C library headers, so the fixed-width
// types are spelled here.
#pragma once

typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;

#define COMET_DEVICE __device__ __forceinline__

// Programmatic dependent launch (sm_90+; KernelFunction.dependentLaunch). Every comet kernel
// calls this first, before any return and before touching memory that another kernel writes or
// reads (EmbeddedSourcesTests checks each `__global__` body). The wait blocks until the previous
// grid has completed and its writes are visible; because every kernel waits, a grid completes
// only after all grids before it, so a kernel may read what any earlier kernel wrote. No kernel
// triggers its dependents early (griddepcontrol.launch_dependents): the next kernel is launched
// as this grid's blocks exit, which hides the launch gap. An early trigger at the start won 3%
// more at B = 1 but lost 4-13% at B = 16-256 (likely: the next grid's blocks, waiting, held SM
// slots that this grid's later blocks needed; H100, bench/results/h100-2026-12-07e.md). Without a dependent
// launch (or before sm_90) the wait is a no-op.
COMET_DEVICE void begin_dependent_work() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Asks L2 for the line holding `p` without waiting. Safe before begin_dependent_work: L2 is
// the GPU's point of coherence, so a line another kernel is still writing is never stale
// there; the real loads come after the wait.
COMET_DEVICE void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

// Ceiling division for grid sizes and loop bounds.
COMET_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// -infinity (NVRTC has no math.h, hence no INFINITY).
COMET_DEVICE float negative_infinity() { return __int_as_float(0xff800000); }

// cp.async: 16 bytes global -> shared, the bytes past `src_bytes` (0..16) zero-filled; and 4
// bytes (the .ca form: .cg takes only 16). Completion is tracked per thread in commit groups;
// shared by every kernel that stages global memory through shared memory.
COMET_DEVICE void cp_async_16(void* smem, const void* gmem, int src_bytes) {
    const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
COMET_DEVICE void cp_async_4(void* smem, const void* gmem, int src_bytes) {
    const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
COMET_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int PENDING> COMET_DEVICE void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory"); }

// Reductions across the 32 lanes of a warp; every lane gets the result.
COMET_DEVICE float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

COMET_DEVICE float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Calls use(k, load(k)) for k = first, first + stride, ... below end, in that order, with the
// loads of 8 such k issued before any use. With a store in `use`, a plain loop keeps one load in
// flight at a time (the compiler cannot move the next load above a store that may alias it):
// a 4096-wide row read by 256 threads became 16 round trips to L2 (the fused residual add of
// fmpq_quantize.cu, +5 us a call at one token on an H100).
template <typename Load, typename Use>
COMET_DEVICE void for_strided_batched(int first, int end, int stride, const Load& load, const Use& use) {
    constexpr int BATCH = 8;
    for (int k0 = first; k0 < end; k0 += BATCH * stride) {
        float v[BATCH];
#pragma unroll
        for (int i = 0; i < BATCH; ++i) v[i] = k0 + i * stride < end ? load(k0 + i * stride) : 0.f;
#pragma unroll
        for (int i = 0; i < BATCH; ++i)
            if (k0 + i * stride < end) use(k0 + i * stride, v[i]);
    }
}

// The Walsh-Hadamard transform of fmpq_quantize.cu's rotated blocks and rope_kv_write.cu's keys
// (Quant.BlockHadamard: the same butterfly order, so the results are bit-identical).
// x <- H x over a warp's block of PER * 32 values, lane holding positions PER lane .. PER lane +
// PER - 1: the strides below PER inside a lane, the rest across lanes (partner lane ^ (h / PER);
// the lower position of a pair keeps a + b, the upper takes a - b, a being the lower's value).
template <int PER>
COMET_DEVICE void block_hadamard(float (&v)[PER], int lane) {
#pragma unroll
    for (int h = 1; h < PER; h *= 2) {
#pragma unroll
        for (int j = 0; j < PER; ++j) {
            if (j & h) continue;
            const float a = v[j], b = v[j + h];
            v[j] = __fadd_rn(a, b);
            v[j + h] = __fsub_rn(a, b);
        }
    }
#pragma unroll
    for (int mask = 1; mask < 32; mask *= 2) {
        const bool upper = lane & mask;
#pragma unroll
        for (int j = 0; j < PER; ++j) {
            const float other = __shfl_xor_sync(0xffffffffu, v[j], mask);
            v[j] = upper ? __fsub_rn(other, v[j]) : __fadd_rn(v[j], other);
        }
    }
}
