// Sampling on the GPU. argmax_rows: the greedy token of each row of logits, so that a greedy step
// copies S token ids to the host instead of S x vocab logits (at B = 256 and a 128k vocabulary,
// 131 MB per step). Ties go to the smallest index and NaN never wins, as Sampling.Sampler.argmax.
#include "common.cuh"

constexpr int ARGMAX_THREADS = 1024;

// The better of two (value, index) candidates: larger value, then smaller index.
COMET_DEVICE void keep_better(float& value, int& index, float other_value, int other_index) {
    if (other_value > value || (other_value == value && other_index < index)) {
        value = other_value;
        index = other_index;
    }
}

// out[r] = argmax_j logits[r, j]; logits: [rows, vocab] fp32. One block per row.
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
argmax_rows(const float* __restrict__ logits, int vocab, int32_t* __restrict__ out) {
    __shared__ float values[ARGMAX_THREADS / 32];
    __shared__ int indices[ARGMAX_THREADS / 32];
    const float* row = logits + size_t(blockIdx.x) * vocab;
    float best = negative_infinity();
    int index = 0x7fffffff;
    for (int j = threadIdx.x; j < vocab; j += ARGMAX_THREADS) keep_better(best, index, row[j], j);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, best, o);
        const int other_index = __shfl_xor_sync(0xffffffffu, index, o);
        keep_better(best, index, other, other_index);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        values[warp] = best;
        indices[warp] = index;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / 32; ++w) keep_better(best, index, values[w], indices[w]);
        // A row of NaN and -inf only: index 0, as the CPU's first element.
        out[blockIdx.x] = index == 0x7fffffff ? 0 : index;
    }
}
