// Sweep of copy-kernel variants against cudaMemcpyDeviceToDevice, to pick the design of
// Sources/Kernels/cuda/copy.cu. nvcc -O3 -gencode=arch=compute_90a,code=sm_90a copy_variants.cu
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>

template <int UNROLL, bool STREAMING>
__global__ void grid_stride(const uint4* __restrict__ s, uint4* __restrict__ d, uint64_t n) {
    const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
    uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + (UNROLL - 1) * stride < n; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) v[u] = STREAMING ? __ldcs(s + i + u * stride) : __ldg(s + i + u * stride);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) { if (STREAMING) __stcs(d + i + u * stride, v[u]); else d[i + u * stride] = v[u]; }
    }
    for (; i < n; i += stride) d[i] = s[i];
}

// Each block walks its own contiguous chunk, UNROLL * blockDim vectors per step.
template <int UNROLL>
__global__ void block_chunk(const uint4* __restrict__ s, uint4* __restrict__ d, uint64_t n) {
    const uint64_t per_block = (n + gridDim.x - 1) / gridDim.x;
    const uint64_t begin = blockIdx.x * per_block;
    const uint64_t end = min(n, begin + per_block);
    uint64_t i = begin + threadIdx.x;
    for (; i + (UNROLL - 1) * blockDim.x < end; i += UNROLL * blockDim.x) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) v[u] = __ldg(s + i + u * blockDim.x);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) d[i + u * blockDim.x] = v[u];
    }
    for (; i < end; i += blockDim.x) d[i] = s[i];
}

// Non-persistent: block b copies the contiguous tile [b * UNROLL * blockDim, ...).
template <int UNROLL>
__global__ void tile(const uint4* __restrict__ s, uint4* __restrict__ d, uint64_t n) {
    const uint64_t base = uint64_t(blockIdx.x) * UNROLL * blockDim.x + threadIdx.x;
    uint4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) if (base + u * blockDim.x < n) v[u] = __ldg(s + base + u * blockDim.x);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) if (base + u * blockDim.x < n) d[base + u * blockDim.x] = v[u];
}

int main() {
    const uint64_t bytes = 2ull << 30, n = bytes / 16;
    uint4 *s, *d;
    cudaMalloc(&s, bytes); cudaMalloc(&d, bytes);
    cudaMemset(s, 0x5a, bytes);
    int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    auto time = [&](const char* name, auto launch) {
        for (int w = 0; w < 3; ++w) launch();
        std::vector<float> t;
        for (int r = 0; r < 20; ++r) { cudaEventRecord(a); launch(); cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); t.push_back(ms); }
        std::sort(t.begin(), t.end());
        printf("%-44s %.3f TB/s  (%.4f ms) %s\n", name, 2.0 * bytes / (t[10] * 1e-3) / 1e12, t[10], cudaGetErrorString(cudaGetLastError()));
    };
    time("cudaMemcpy D2D", [&] { cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice); });
    for (int bps : {2}) for (int threads : {256}) {
        if (bps * threads > 2048) continue;
        char name[128];
        int grid = sms * bps;
        snprintf(name, 128, "grid u4 ldcs  %dx%d", bps, threads); time(name, [&] { grid_stride<4, true><<<grid, threads>>>(s, d, n); });
        snprintf(name, 128, "grid u4 plain %dx%d", bps, threads); time(name, [&] { grid_stride<4, false><<<grid, threads>>>(s, d, n); });
        snprintf(name, 128, "grid u8 plain %dx%d", bps, threads); time(name, [&] { grid_stride<8, false><<<grid, threads>>>(s, d, n); });
        snprintf(name, 128, "chunk u4 %dx%d", bps, threads); time(name, [&] { block_chunk<4><<<grid, threads>>>(s, d, n); });
        snprintf(name, 128, "chunk u8 %dx%d", bps, threads); time(name, [&] { block_chunk<8><<<grid, threads>>>(s, d, n); });
    }
    for (int mult : {16, 64, 256}) {
        char name[128];
        snprintf(name, 128, "grid u1 plain %dxSM x256", mult); time(name, [&] { grid_stride<1, false><<<sms * mult, 256>>>(s, d, n); });
        snprintf(name, 128, "chunk u4 %dxSM x256", mult); time(name, [&] { block_chunk<4><<<sms * mult, 256>>>(s, d, n); });
    }
    char name[128];
    for (int threads : {128, 256, 512}) {
        snprintf(name, 128, "tile u1 x%d", threads); time(name, [&] { tile<1><<<(n + threads - 1) / threads, threads>>>(s, d, n); });
        snprintf(name, 128, "tile u2 x%d", threads); time(name, [&] { tile<2><<<(n + 2 * threads - 1) / (2 * threads), threads>>>(s, d, n); });
        snprintf(name, 128, "tile u4 x%d", threads); time(name, [&] { tile<4><<<(n + 4 * threads - 1) / (4 * threads), threads>>>(s, d, n); });
        snprintf(name, 128, "tile u8 x%d", threads); time(name, [&] { tile<8><<<(n + 8 * threads - 1) / (8 * threads), threads>>>(s, d, n); });
    }
    snprintf(name, 128, "one vector per thread (n/256 blocks)"); time(name, [&] { grid_stride<1, false><<<(n + 255) / 256, 256>>>(s, d, n); });
    return 0;
}
