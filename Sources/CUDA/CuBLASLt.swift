/// cuBLASLt, loaded with dlopen, for the vendor baselines that benchmarks print beside our
/// kernels (bf16 and FP8 e4m3 GEMMs). comet's own path never calls it.
public final class CuBLASLt: @unchecked Sendable {
    typealias Status = Int32
    private let library: DynamicLibrary
    private let handle: OpaquePointer
    private let cublasLtCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Status
    private let cublasLtDestroy: @convention(c) (OpaquePointer?) -> Status
    fileprivate let cublasLtMatmulDescCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, Int32) -> Status
    fileprivate let cublasLtMatmulDescDestroy: @convention(c) (OpaquePointer?) -> Status
    fileprivate let cublasLtMatmulDescSetAttribute: @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer, Int) -> Status
    fileprivate let cublasLtMatrixLayoutCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, UInt64, UInt64, Int64) -> Status
    fileprivate let cublasLtMatrixLayoutDestroy: @convention(c) (OpaquePointer?) -> Status
    fileprivate let cublasLtMatmulPreferenceCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Status
    fileprivate let cublasLtMatmulPreferenceDestroy: @convention(c) (OpaquePointer?) -> Status
    fileprivate let cublasLtMatmulPreferenceSetAttribute: @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer, Int) -> Status
    fileprivate let cublasLtMatmulAlgoGetHeuristic: @convention(c) (
        OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?,
        Int32, UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>
    ) -> Status
    fileprivate let cublasLtMatmul: @convention(c) (
        OpaquePointer?, OpaquePointer?, UnsafeRawPointer, DevicePointer, OpaquePointer?, DevicePointer, OpaquePointer?,
        UnsafeRawPointer, DevicePointer, OpaquePointer?, DevicePointer, OpaquePointer?, UnsafeRawPointer?,
        DevicePointer, Int, OpaquePointer?
    ) -> Status

    /// Loads cuBLASLt and makes a handle for the GPU of `context` (the current one when nil).
    /// A handle serves one GPU: cuBLASLt sets up its kernels (their shared memory limits) on the
    /// device that was current when the handle was made, so each GPU of a tensor-parallel group
    /// needs its own (one handle on another GPU's streams fails with CUBLAS_STATUS 13 on the
    /// first kernel that needs more than 48 KiB of shared memory).
    public static func load(search: LibrarySearch, context: CUDAContext? = nil) throws -> CuBLASLt {
        let library = try search.open(
            sonames: ["libcublasLt.so.13", "libcublasLt.so.12"], wheelFolders: ["cu13/lib", "cublas/lib"],
            name: "cuBLASLt (libcublasLt.so)")
        try context?.bind()
        return try CuBLASLt(library: library)
    }

    private init(library l: DynamicLibrary) throws {
        library = l
        cublasLtCreate = try l.function("cublasLtCreate")
        cublasLtDestroy = try l.function("cublasLtDestroy")
        cublasLtMatmulDescCreate = try l.function("cublasLtMatmulDescCreate")
        cublasLtMatmulDescDestroy = try l.function("cublasLtMatmulDescDestroy")
        cublasLtMatmulDescSetAttribute = try l.function("cublasLtMatmulDescSetAttribute")
        cublasLtMatrixLayoutCreate = try l.function("cublasLtMatrixLayoutCreate")
        cublasLtMatrixLayoutDestroy = try l.function("cublasLtMatrixLayoutDestroy")
        cublasLtMatmulPreferenceCreate = try l.function("cublasLtMatmulPreferenceCreate")
        cublasLtMatmulPreferenceDestroy = try l.function("cublasLtMatmulPreferenceDestroy")
        cublasLtMatmulPreferenceSetAttribute = try l.function("cublasLtMatmulPreferenceSetAttribute")
        cublasLtMatmulAlgoGetHeuristic = try l.function("cublasLtMatmulAlgoGetHeuristic")
        cublasLtMatmul = try l.function("cublasLtMatmul")
        var h: OpaquePointer?
        let status = cublasLtCreate(&h)
        guard status == 0, let h else { throw CuBLASLt.error(status, "cublasLtCreate") }
        handle = h
    }

    deinit { _ = cublasLtDestroy(handle) }

    static func error(_ status: Status, _ call: String) -> CUDAError {
        .invalidArgument("\(call) failed: CUBLAS_STATUS \(status)")
    }

    fileprivate func check(_ status: Status, _ call: String) throws {
        if status != 0 { throw CuBLASLt.error(status, call) }
    }

    /// Input types of a baseline GEMM.
    public enum InputType: Sendable {
        case bf16
        /// FP8 e4m3 with fp32 accumulation in cuBLASLt's fast mode (its fastest FP8 GEMM).
        case fp8e4m3

        var cudaType: Int32 { self == .bf16 ? 14 : 28 }  // CUDA_R_16BF, CUDA_R_8F_E4M3
        public var bytes: Int { self == .bf16 ? 2 : 1 }
    }

    /// A planned Y[M, N] (bf16) = X[M, K] . W[N, K]^T, all row-major, with the candidate
    /// algorithms cuBLASLt's heuristic proposes (benchmarks time each and keep the fastest).
    public final class Matmul: @unchecked Sendable {
        let lt: CuBLASLt
        public let m: Int, n: Int, k: Int
        public let inputType: InputType
        private var descriptor: OpaquePointer?
        private var layouts: [OpaquePointer?] = [nil, nil, nil]
        /// cublasLtMatmulHeuristicResult_t entries: 64-byte algo, workspace size, status, waves, reserved.
        private var heuristics: [UInt8]
        public let algorithmCount: Int
        static let heuristicSize = 96
        public static let workspaceBytes = 32 << 20

        /// Column-major view: Y^T[N, M] = op_T(W as K x N) . X^T (K x M), the "TN" form FP8 requires.
        /// - Parameter float32Output: Y in fp32 instead of bf16 (logits of an LM head).
        public init(_ lt: CuBLASLt, m: Int, n: Int, k: Int, inputType: InputType, float32Output: Bool = false) throws {
            self.lt = lt
            self.m = m
            self.n = n
            self.k = k
            self.inputType = inputType
            try lt.check(lt.cublasLtMatmulDescCreate(&descriptor, 68, 0), "cublasLtMatmulDescCreate")  // COMPUTE_32F, scale fp32
            var transpose: Int32 = 1, keep: Int32 = 0
            try lt.check(lt.cublasLtMatmulDescSetAttribute(descriptor, 3, &transpose, 4), "set TRANSA")
            try lt.check(lt.cublasLtMatmulDescSetAttribute(descriptor, 4, &keep, 4), "set TRANSB")
            if inputType == .fp8e4m3 {
                var fast: Int8 = 1
                try lt.check(lt.cublasLtMatmulDescSetAttribute(descriptor, 25, &fast, 1), "set FAST_ACCUM")
            }
            try lt.check(lt.cublasLtMatrixLayoutCreate(&layouts[0], inputType.cudaType, UInt64(k), UInt64(n), Int64(k)), "layout W")
            try lt.check(lt.cublasLtMatrixLayoutCreate(&layouts[1], inputType.cudaType, UInt64(k), UInt64(m), Int64(k)), "layout X")
            try lt.check(lt.cublasLtMatrixLayoutCreate(&layouts[2], float32Output ? 0 : 14, UInt64(n), UInt64(m), Int64(n)), "layout Y")
            var preference: OpaquePointer?
            try lt.check(lt.cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate")
            defer { _ = lt.cublasLtMatmulPreferenceDestroy(preference) }
            var workspace = UInt64(Self.workspaceBytes)
            try lt.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, 1, &workspace, 8), "set MAX_WORKSPACE_BYTES")
            let requested = 8
            var results = [UInt8](repeating: 0, count: requested * Self.heuristicSize)
            var returned: Int32 = 0
            let (desc, w, x, y) = (descriptor, layouts[0], layouts[1], layouts[2])
            let status = results.withUnsafeMutableBytes { buffer in
                lt.cublasLtMatmulAlgoGetHeuristic(lt.handle, desc, w, x, y, y, preference, Int32(requested), buffer.baseAddress!, &returned)
            }
            heuristics = results
            try lt.check(status, "cublasLtMatmulAlgoGetHeuristic")
            guard returned > 0 else { throw CuBLASLt.error(15, "cublasLtMatmulAlgoGetHeuristic (no algorithm for \(m)x\(n)x\(k))") }
            algorithmCount = Int(returned)
        }

        deinit {
            for layout in layouts { _ = lt.cublasLtMatrixLayoutDestroy(layout) }
            _ = lt.cublasLtMatmulDescDestroy(descriptor)
        }

        /// Queues Y = X . W^T with candidate algorithm `algorithm` on `stream`.
        public func run(
            algorithm: Int, x: DevicePointer, w: DevicePointer, y: DevicePointer, workspace: DevicePointer, on stream: CUDAStream
        ) throws {
            precondition((0..<algorithmCount).contains(algorithm))
            var alpha: Float = 1, beta: Float = 0
            try heuristics.withUnsafeBytes { buffer in
                try lt.check(
                    lt.cublasLtMatmul(
                        lt.handle, descriptor, &alpha, w, layouts[0], x, layouts[1], &beta, y, layouts[2], y, layouts[2],
                        buffer.baseAddress! + algorithm * Self.heuristicSize, workspace, Self.workspaceBytes, stream.handle),
                    "cublasLtMatmul")
            }
        }
    }
}
