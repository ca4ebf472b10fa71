// The small element-wise and row kernels of a transformer layer that are not fused into the
// FMPQ quantize kernels: embedding gather, RMSNorm to bf16 with the residual add before it
// fused (final norm before the LM head, and every norm of the bf16 baseline), SwiGLU to bf16 (bf16 baseline) and the
// q/k/v bias (Qwen2). All bf16 in and out, fp32 arithmetic, round-to-nearest on store.
//
// Rows are at most a few thousand channels: one block of 256 threads per row (SwiGLU: one thread
// per element), 8 bf16 (16 bytes) per vector access; every row length here is a multiple of 8
// (the launchers check).
#include "common.cuh"
#include <cuda_bf16.h>

constexpr int LAYER_THREADS = 256;

struct alignas(16) BF16x8 { __nv_bfloat162 v[4]; };

// out[t, :] = table[ids[t], :]; table: [vocab, dim].
extern "C" __global__ void __launch_bounds__(LAYER_THREADS)
embedding_gather(const __nv_bfloat16* __restrict__ table, const int32_t* __restrict__ ids, int dim,
                 __nv_bfloat16* __restrict__ out) {
    begin_dependent_work();
    const int t = blockIdx.x;
    const BF16x8* src = reinterpret_cast<const BF16x8*>(table + size_t(ids[t]) * dim);
    BF16x8* dst = reinterpret_cast<BF16x8*>(out + size_t(t) * dim);
    for (int i = threadIdx.x; i < dim / 8; i += LAYER_THREADS) dst[i] = src[i];
}

// out[r, :] = h / rms(h) * gamma, rms = sqrt(mean(h^2) + eps), for h = x[rows[r], :].
// `rows` picks which tokens get normed (the LM head needs only each sequence's last token).
// With `added`, the residual add before the norm is fused: h = bf16(x + added) (the fp32 sum
// rounded once), also written to sum_out[rows[r], :], the residual stream's other buffer.
extern "C" __global__ void __launch_bounds__(LAYER_THREADS)
rmsnorm_rows(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ added,
             __nv_bfloat16* __restrict__ sum_out, const int32_t* __restrict__ rows, const float* __restrict__ gamma,
             float eps, int dim, __nv_bfloat16* __restrict__ out) {
    begin_dependent_work();
    __shared__ float partial[LAYER_THREADS / 32];
    const int r = blockIdx.x;
    const size_t offset = size_t(rows[r]) * dim;
    const __nv_bfloat16* row = x + offset;
    const auto input = [&](int k) {
        const float v = __bfloat162float(row[k]);
        return added ? __bfloat162float(__float2bfloat16_rn(v + __bfloat162float(added[offset + k]))) : v;
    };
    float squares = 0.f;
    for_strided_batched(threadIdx.x, dim, LAYER_THREADS, input, [&](int k, float v) {
        if (sum_out) sum_out[offset + k] = __float2bfloat16_rn(v);
        squares += v * v;
    });
    squares = warp_sum(squares);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = squares;
    __syncthreads();
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < LAYER_THREADS / 32; ++w) total += partial[w];
    const float inverse = 1.f / sqrtf(total / float(dim) + eps);
    for_strided_batched(threadIdx.x, dim, LAYER_THREADS, [&](int k) { return input(k) * inverse * gamma[k]; },
                        [&](int k, float v) { out[size_t(r) * dim + k] = __float2bfloat16_rn(v); });
}

// out[t, f] = silu(gu[t, f]) * gu[t, F + f]; gu: [tokens, 2F] (gate, then up). One thread per
// output element: one block per token had left a decode token's 14,336 channels to one SM
// (28 us a layer of the bf16 baseline's B = 1 step on an H100).
extern "C" __global__ void __launch_bounds__(LAYER_THREADS)
swiglu_rows(const __nv_bfloat16* __restrict__ gu, int F, int64_t count, __nv_bfloat16* __restrict__ out) {
    begin_dependent_work();
    const int64_t i = int64_t(blockIdx.x) * LAYER_THREADS + threadIdx.x;
    if (i >= count) return;
    const int64_t t = i / F, f = i % F;
    const float g = __bfloat162float(gu[t * 2 * F + f]);
    const float u = __bfloat162float(gu[t * 2 * F + F + f]);
    out[i] = __float2bfloat16_rn(g / (1.f + expf(-g)) * u);
}

// y[t, j] += bias[j]; y: [tokens, width].
extern "C" __global__ void __launch_bounds__(LAYER_THREADS)
bias_add(__nv_bfloat16* __restrict__ y, const float* __restrict__ bias, int width) {
    begin_dependent_work();
    const int t = blockIdx.x;
    for (int j = threadIdx.x; j < width; j += LAYER_THREADS) {
        __nv_bfloat16* p = y + size_t(t) * width + j;
        *p = __float2bfloat16_rn(__bfloat162float(*p) + bias[j]);
    }
}
