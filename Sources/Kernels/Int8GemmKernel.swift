import CUDA

/// `gemm_s8_mma` of gemm_s8_mma.cu: C[M, N] (int32) = A[M, K] (int8) * B[N, K]^T (int8),
/// exact, on int8 tensor cores.
public struct Int8GemmKernel: Sendable {
    let function: KernelFunction

    public init(library: KernelLibrary) throws {
        function = try library.function("gemm_s8_mma", in: "gemm_s8_mma.cu")
    }

    public func callAsFunction(
        a: DeviceBuffer<Int8>, b: DeviceBuffer<Int8>, c: DeviceBuffer<Int32>,
        m: Int, n: Int, k: Int, on stream: CUDAStream
    ) throws {
        guard m > 0, n > 0, k > 0, k % 32 == 0 else {
            throw CUDAError.invalidArgument("gemm_s8_mma: need M, N > 0 and K a positive multiple of 32, got M=\(m) N=\(n) K=\(k)")
        }
        guard a.count == m * k, b.count == n * k, c.count == m * n else {
            throw CUDAError.invalidArgument(
                "gemm_s8_mma: buffers of \(a.count), \(b.count), \(c.count) elements do not fit M=\(m) N=\(n) K=\(k)")
        }
        guard m <= Int(Int32.max), n <= Int(Int32.max), k <= Int(Int32.max), (m + 15) / 16 < 1 << 16 else {
            throw CUDAError.invalidArgument("gemm_s8_mma: shape M=\(m) N=\(n) K=\(k) too large")
        }
        try function.launch(
            grid: Dim3((n + 31) / 32, (m + 15) / 16), block: Dim3(128), on: stream,
            a.pointer, b.pointer, c.pointer, Int32(m), Int32(n), Int32(k))
    }
}
