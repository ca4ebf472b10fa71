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

// Ceiling division for grid sizes and loop bounds.
COMET_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// -infinity (NVRTC has no math.h, hence no INFINITY).
COMET_DEVICE float negative_infinity() { return __int_as_float(0xff800000); }

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
