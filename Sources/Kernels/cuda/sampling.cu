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
    begin_dependent_work();
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

// ---------------------------------------------------------------------------------------------
// Sampling with the full SamplingParameters on the GPU: the logits never leave it.
//
// apply_penalties: repetition / frequency / presence penalties on the tokens of each row's penalty
// window, in place, one thread per (row, token, count) entry (the host aggregates the counts, so a
// (row, token) pair appears once). The same fp32 operations as Sampling.Sampler.applyPenalties.
//
// sample_rows: one block per row, the order of SamplingParameters: temperature 0 is the argmax
// (ties to the smaller id, NaN never wins); else t = logit * (1 / temperature), top-k, top-p over
// the top-k mass, min-p relative to the most likely token, and a draw of the rest in proportion to
// exp(t - max). The filters are thresholds on t found by radix selection (four 8-bit passes over an
// order-preserving key, histograms weighted by count for top-k and by mass for top-p), so no sort:
// ties at a threshold are all kept (the CPU Sampler keeps the smaller ids up to k). The draw walks
// the vocabulary in id order: a uniform u in [0, 1) from the request's own generator, scaled by
// the kept mass, is located by a block-wide prefix sum of per-thread chunks. Masses are summed in
// fp64, as the CPU does. Also written: the token's log-probability under the penalized logits
// (log-softmax before temperature and filters, as OpenAI and vLLM report it).

constexpr int SAMPLE_THREADS = 1024, SAMPLE_WARPS = SAMPLE_THREADS / 32;

extern "C" __global__ void apply_penalties(float* __restrict__ logits, int vocab, const int32_t* __restrict__ entries,
                                           const float* __restrict__ penalties, int count) {
    begin_dependent_work();
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= count) return;
    const int row = entries[3 * e], token = entries[3 * e + 1], occurrences = entries[3 * e + 2];
    if (token < 0 || token >= vocab) return;
    const float repetition = penalties[3 * row], frequency = penalties[3 * row + 1], presence = penalties[3 * row + 2];
    float* p = logits + size_t(row) * vocab + token;
    float logit = *p;
    if (repetition != 1.f) logit = logit > 0.f ? logit / repetition : logit * repetition;
    *p = logit - (frequency * float(occurrences) + presence);
}

// An order-preserving unsigned key of a float: larger float, larger key; NaN gets 0, below -inf.
COMET_DEVICE uint32_t order_key(float v) {
    if (v != v) return 0u;
    const uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Every thread gets the block's sum (T: float or double) or max; `scratch` holds SAMPLE_WARPS values.
template <typename T>
COMET_DEVICE T block_sum(T v, T* scratch) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    T total = 0;
#pragma unroll
    for (int w = 0; w < SAMPLE_WARPS; ++w) total += scratch[w];
    __syncthreads();
    return total;
}

COMET_DEVICE float block_max(float v, float* scratch) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float best = negative_infinity();
#pragma unroll
    for (int w = 0; w < SAMPLE_WARPS; ++w) best = fmaxf(best, scratch[w]);
    __syncthreads();
    return best;
}

struct SampleShared {
    double hist[256];
    double dsum[SAMPLE_WARPS];
    float fsum[SAMPLE_WARPS];
    float fbest[SAMPLE_WARPS];
    int ibest[SAMPLE_WARPS];
    uint32_t chosen;
    int token;
};

// The largest key v with weight(keys >= v among keys >= lower) >= target, by four radix passes.
// Weight: 1 per element (COUNT, top-k) or exp(t - m) (top-p). If the whole set weighs less than
// the target (k above the candidate count, or p x Z rounding), every element of the set is kept.
template <bool COUNT>
COMET_DEVICE uint32_t select_threshold(const float* row, int vocab, float inv_t, float m, uint32_t lower, double target,
                                       SampleShared& sh) {
    uint32_t prefix = 0;
    double above = 0;  // weight of the elements whose decided key bits exceed the prefix
    for (int shift = 24; shift >= 0; shift -= 8) {
        const uint32_t high_mask = shift == 24 ? 0u : ~((1u << (shift + 8)) - 1u);
        for (int b = threadIdx.x; b < 256; b += SAMPLE_THREADS) sh.hist[b] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
            const float t = row[i] * inv_t;
            const uint32_t k = order_key(t);
            if (k < lower || (k & high_mask) != prefix) continue;
            atomicAdd(&sh.hist[(k >> shift) & 255u], COUNT ? 1.0 : double(expf(t - m)));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int bin = -1, lowest = -1;
            for (int b = 255; b >= 0; --b) {
                if (sh.hist[b] == 0) continue;
                lowest = b;
                if (above + sh.hist[b] >= target) { bin = b; break; }
                above += sh.hist[b];
            }
            // Short of the target: keep everything still in the set (its lowest bin, and below).
            if (bin < 0) bin = lowest < 0 ? 0 : lowest;
            sh.chosen = uint32_t(bin);
            sh.dsum[0] = above;
        }
        __syncthreads();
        prefix |= sh.chosen << shift;
        above = sh.dsum[0];
        __syncthreads();
    }
    return prefix;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
sample_rows(const float* __restrict__ logits, int vocab, const float* __restrict__ params, const int32_t* __restrict__ top_ks,
            int32_t* __restrict__ out_tokens, float* __restrict__ out_logprobs) {
    begin_dependent_work();
    __shared__ SampleShared sh;
    const float* row = logits + size_t(blockIdx.x) * vocab;
    const float temperature = params[4 * blockIdx.x], top_p = params[4 * blockIdx.x + 1];
    const float min_p = params[4 * blockIdx.x + 2], uniform = params[4 * blockIdx.x + 3];
    const int top_k = top_ks[blockIdx.x];

    // The max, and the log-sum-exp of the penalized logits for the log-probability.
    float mw = negative_infinity();
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) mw = fmaxf(mw, row[i]);  // fmaxf drops NaN
    mw = block_max(mw, sh.fbest);
    double z = 0;
    if (mw > negative_infinity())
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS)
            if (row[i] == row[i]) z += double(expf(row[i] - mw));
    z = block_sum(z, sh.dsum);
    const float log_sum_exp = mw + float(log(z));

    if (threadIdx.x == 0) sh.token = -1;
    __syncthreads();
    if (temperature == 0.f || mw == negative_infinity()) {
        // Greedy (or every token banned: the argmax, index 0 for a row of -inf/NaN, as the CPU).
        float best = negative_infinity();
        int index = 0x7fffffff;
        for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) keep_better(best, index, row[i], i);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) keep_better(best, index, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
        if ((threadIdx.x & 31) == 0) { sh.fbest[threadIdx.x >> 5] = best; sh.ibest[threadIdx.x >> 5] = index; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < SAMPLE_WARPS; ++w) keep_better(best, index, sh.fbest[w], sh.ibest[w]);
            sh.token = index == 0x7fffffff ? 0 : index;
        }
        __syncthreads();
    } else {
        const float inv_t = 1.f / temperature;
        const float m = mw * inv_t;  // rounding is monotone: the max of t
        uint32_t lower = order_key(negative_infinity()) + 1;  // -inf is never drawn
        if (top_k > 0) lower = select_threshold<true>(row, vocab, inv_t, m, lower, double(top_k), sh);
        if (top_p < 1.f) {
            double zk = 0;
            for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
                const float t = row[i] * inv_t;
                if (order_key(t) >= lower) zk += double(expf(t - m));
            }
            zk = block_sum(zk, sh.dsum);
            lower = select_threshold<false>(row, vocab, inv_t, m, lower, double(top_p) * zk, sh);
        }
        // Kept: key >= lower and exp(t - m) >= min_p. Each thread sums its own contiguous chunk,
        // so that a prefix sum over threads orders the mass by id.
        const int chunk = (vocab + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
        const int begin = min(vocab, int(threadIdx.x) * chunk), end = min(vocab, begin + chunk);
        double mine = 0;
        int last = -1;
        for (int i = begin; i < end; ++i) {
            const float t = row[i] * inv_t, e = expf(t - m);
            if (order_key(t) >= lower && e >= min_p) { mine += double(e); last = i; }
        }
        // Scan of the chunk sums over the block: thread j's interval of the kept mass is
        // [offset + exclusive_j, offset + inclusive_j), and the next thread's starts at exactly
        // that end (the same values, shuffled), so the intervals tile [0, total) in id order.
        double inclusive = mine;
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const double other = __shfl_up_sync(0xffffffffu, inclusive, o);
            if (lane >= o) inclusive += other;
        }
        double exclusive = __shfl_up_sync(0xffffffffu, inclusive, 1);
        if (lane == 0) exclusive = 0;
        if (lane == 31) sh.dsum[warp] = inclusive;
        // The last kept id overall: the fallback when rounding leaves the target past the mass.
        int last_all = last;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) last_all = max(last_all, __shfl_xor_sync(0xffffffffu, last_all, o));
        if (lane == 0) sh.ibest[warp] = last_all;
        __syncthreads();
        double offset = 0, total = 0;
        for (int w = 0; w < SAMPLE_WARPS; ++w) {
            if (w == warp) offset = total;
            total += sh.dsum[w];
        }
        for (int w = 0; w < SAMPLE_WARPS; ++w) last_all = max(last_all, sh.ibest[w]);
        const double target = double(uniform) * total;
        const double begin_mass = offset + exclusive, end_mass = offset + inclusive;
        if (mine > 0 && begin_mass <= target && target < end_mass) {
            double run = begin_mass;
            int pick = last;  // rounding inside the chunk: its last kept id
            for (int i = begin; i < end; ++i) {
                const float t = row[i] * inv_t, e = expf(t - m);
                if (order_key(t) >= lower && e >= min_p) {
                    run += double(e);
                    if (target < run) { pick = i; break; }
                }
            }
            sh.token = pick;  // one thread's interval holds the target
        }
        __syncthreads();
        if (threadIdx.x == 0 && sh.token < 0) sh.token = last_all < 0 ? 0 : last_all;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const int token = sh.token;
        out_tokens[blockIdx.x] = token;
        out_logprobs[blockIdx.x] = row[token] - log_sum_exp;
    }
}
