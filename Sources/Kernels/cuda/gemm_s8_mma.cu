// A small int8 tensor-core GEMM on `mma.sync.m16n8k32.s8` (sm_80 and later): proves the
// JIT path end to end and is the exact-integer baseline for the W4Ax kernels.
//   C[m, n] = sum_k A[m, k] * B[n, k]      A: [M, K] int8, B: [N, K] int8, C: [M, N] int32
// K must be a multiple of 32 (checked by the launcher); M and N are arbitrary.
#include "common.cuh"

// Four consecutive int8 of row `row` starting at column `col`, or zeros past the edge.
COMET_DEVICE uint32_t load4(const int8_t* m, int rows, int K, int row, int col) {
    return row < rows ? *reinterpret_cast<const uint32_t*>(m + int64_t(row) * K + col) : 0u;
}

// One warp computes one 16x8 tile of C; a block of 4 warps covers 16 rows x 32 columns.
// Operands are read straight from global memory into the mma fragment layout
// (PTX ISA, "Matrix Fragments for mma.m16n8k32"): lane = 4 * group + t,
//   A regs: rows {g, g+8} x cols {4t..4t+3, 16+4t..16+4t+3};  B regs: col g, rows 4t.., 16+4t..
//   C regs: rows {g, g+8} x cols {2t, 2t+1}.
extern "C" __global__ void __launch_bounds__(128)
gemm_s8_mma(const int8_t* __restrict__ A, const int8_t* __restrict__ B, int32_t* __restrict__ C,
            int M, int N, int K) {
    begin_dependent_work();
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.y * 16;
    const int col0 = (blockIdx.x * 4 + warp) * 8;
    if (col0 >= N) return;

    int32_t acc[4] = {0, 0, 0, 0};
    for (int k = 0; k < K; k += 32) {
        uint32_t a0 = load4(A, M, K, row0 + g, k + 4 * t);
        uint32_t a1 = load4(A, M, K, row0 + g + 8, k + 4 * t);
        uint32_t a2 = load4(A, M, K, row0 + g, k + 16 + 4 * t);
        uint32_t a3 = load4(A, M, K, row0 + g + 8, k + 16 + 4 * t);
        uint32_t b0 = load4(B, N, K, col0 + g, k + 4 * t);
        uint32_t b1 = load4(B, N, K, col0 + g, k + 16 + 4 * t);
        asm volatile(
            "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+r"(acc[0]), "+r"(acc[1]), "+r"(acc[2]), "+r"(acc[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int row = row0 + g + (i >= 2 ? 8 : 0);
        const int col = col0 + 2 * t + (i & 1);
        if (row < M && col < N) C[int64_t(row) * N + col] = acc[i];
    }
}
