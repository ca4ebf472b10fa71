// Device-to-device copy at memory bandwidth: the ceiling every memory-bound kernel is
// measured against (DESIGN.md §1: 4.28 TB/s read + write on the H200).
#include "common.cuh"

// Block size of copy_bytes; the launcher (CopyKernel.swift) uses the same value.
constexpr int COPY_THREADS = 128;

// Copies `bytes` bytes. Both pointers must be 16-byte aligned (cuMemAlloc gives 256).
// NOTES: one 16-byte vector per thread in a grid of ceil(vectors / 128) short-lived blocks.
// On the H200 this beat every persistent grid-stride variant we tried (4.28 vs at most
// 3.98 TB/s for 1-8 vectors per thread, 128-1024 threads, 1-256 blocks per SM, with and
// without streaming cache hints; bench/NOTES.md): the block scheduler then walks memory in
// address order across all SMs, which keeps DRAM pages open. The last (bytes % 16) bytes
// are copied one per thread by block 0.
extern "C" __global__ void __launch_bounds__(COPY_THREADS)
copy_bytes(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, uint64_t bytes) {
    begin_dependent_work();
    const uint64_t vectors = bytes / 16;
    const uint64_t i = uint64_t(blockIdx.x) * COPY_THREADS + threadIdx.x;
    if (i < vectors) {
        reinterpret_cast<uint4*>(dst)[i] = __ldg(reinterpret_cast<const uint4*>(src) + i);
    }
    const uint64_t tail = vectors * 16 + threadIdx.x;
    if (blockIdx.x == 0 && tail < bytes) dst[tail] = src[tail];
}

// Keeps the stream busy for `nanoseconds` (the GPU's global timer): a profiler queues it first so
// that the host has queued a whole step before the GPU starts it, and the events between the
// step's kernels then time the GPU alone, not the host's launch rate.
extern "C" __global__ void hold_stream(uint64_t nanoseconds) {
    begin_dependent_work();
    uint64_t start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < nanoseconds);
}
