import CUDA
import Quant

/// Where a quantize kernel writes: the small-M GEMM's packed format (`W4AxActivations`) or
/// the large-M GEMM's tiled one (`W4AxTiledActivations`).
public protocol FMPQQuantizeOutput: Sendable {
    var layout: FMPQLayout { get }
    var tokens: Int { get }
    var quantizeTarget: FMPQQuantizeTarget { get }
}

/// The kernel arguments of an output: which entry points, how many rows, three buffers.
public struct FMPQQuantizeTarget: Sendable {
    let tiled: Bool
    /// Rows written: the tokens, or the tokens padded to whole tiles.
    let rows: Int
    let first: DevicePointer, second: DevicePointer, scales: DevicePointer
}

extension W4AxActivations: FMPQQuantizeOutput {
    public var quantizeTarget: FMPQQuantizeTarget {
        FMPQQuantizeTarget(tiled: false, rows: tokens, first: int4.pointer, second: int8.pointer, scales: scales.pointer)
    }
}

extension W4AxTiledActivations: FMPQQuantizeOutput {
    public var quantizeTarget: FMPQQuantizeTarget {
        FMPQQuantizeTarget(tiled: true, rows: paddedTokens, first: codes.pointer, second: codes.pointer, scales: scales.pointer)
    }
}

/// The fused activation-quantization kernels of fmpq_quantize.cu, writing either W4Ax GEMM
/// activation format. Each launch quantizes `output.tokens` rows, each over `splits` blocks.
public struct FMPQQuantize: Sendable {
    /// What produces the row that is quantized: the kernel's name prefix.
    enum Operation: String, Sendable, CaseIterable { case rmsNorm = "rmsnorm_quantize", swiGLU = "swiglu_quantize", permute = "permute_quantize" }
    struct Variant: Hashable, Sendable { let operation: Operation, tiled: Bool, blockSize: Int }
    let functions: KernelVariants<Variant>
    let multiprocessors: Int
    /// Blocks a launch aims for (8 per SM): rows are split into that many blocks where there are
    /// fewer rows than SMs (decode), each block taking every splits-th K-block of its row.
    var targetBlocks: Int { 8 * multiprocessors }
    /// Dynamic shared memory a block may have: a staged row (one block per row) must fit.
    let maxSharedMemory: Int

    public init(library: KernelLibrary) throws {
        multiprocessors = library.context.device.multiprocessorCount
        // The opt-in limit covers static and dynamic shared memory together; the kernels'
        // static arrays are under 1 KiB.
        maxSharedMemory = library.context.device.maxSharedMemoryPerBlock - 1024
        let variants = Operation.allCases.flatMap { op in
            [Variant(operation: op, tiled: false, blockSize: 64), Variant(operation: op, tiled: false, blockSize: 128),
             Variant(operation: op, tiled: true, blockSize: 128)]
        }
        functions = try KernelVariants(library: library, source: "fmpq_quantize.cu", keys: variants) {
            "\($0.operation.rawValue)_\($0.tiled ? "tiled" : "packed")_bs\($0.blockSize)"
        }
        for function in functions.all { try function.setMaxDynamicSharedMemory(maxSharedMemory) }
    }

    /// RMSNorm(x) * gamma, permuted, quantized; with `residual`, of x + added, the sum also
    /// written to the residual's `sum`. x: [tokens, K] bf16; gamma: [K]; permutation: [K].
    public func rmsNorm(
        _ x: DeviceBuffer<BFloat16>, gamma: DeviceBuffer<Float>, eps: Float, permutation: DeviceBuffer<Int32>,
        adding residual: FusedResidualAdd? = nil, into output: some FMPQQuantizeOutput, on stream: CUDAStream
    ) throws {
        let layout = output.layout, k = layout.inputChannels
        try require(x.count == output.tokens * k && gamma.count == k && permutation.count == k, "rmsNorm", layout, output.tokens)
        let add = try FusedResidualAdd.kernelPointers(residual, for: x)
        try launch(.rmsNorm, output, on: stream,
                   x.pointer, add.added, add.sum, gamma.pointer, permutation.pointer, eps, Int32(k), Int32(layout.int4Blocks), Int32(layout.int8Blocks))
    }

    /// silu(gate) * up, permuted, quantized. gateUp: [tokens, 2F] bf16 (gate first); layout's K is F.
    public func swiGLU(
        _ gateUp: DeviceBuffer<BFloat16>, permutation: DeviceBuffer<Int32>, into output: some FMPQQuantizeOutput, on stream: CUDAStream
    ) throws {
        let layout = output.layout, f = layout.inputChannels
        try require(gateUp.count == output.tokens * 2 * f && permutation.count == f, "swiGLU", layout, output.tokens)
        try launch(.swiGLU, output, on: stream,
                   gateUp.pointer, permutation.pointer, Int32(f), Int32(layout.int4Blocks), Int32(layout.int8Blocks))
    }

    /// x permuted, quantized. x: [tokens, K] bf16.
    public func permuted(
        _ x: DeviceBuffer<BFloat16>, permutation: DeviceBuffer<Int32>, into output: some FMPQQuantizeOutput, on stream: CUDAStream
    ) throws {
        let layout = output.layout, k = layout.inputChannels
        try require(x.count == output.tokens * k && permutation.count == k, "permuted", layout, output.tokens)
        try launch(.permute, output, on: stream,
                   x.pointer, permutation.pointer, Int32(k), Int32(layout.int4Blocks), Int32(layout.int8Blocks))
    }

    /// Launches `op` with `arguments` followed by (tokens, the output's three buffers, the A4
    /// clip, the blocks that may be rotated).
    private func launch<each Argument: BitwiseCopyable>(
        _ op: Operation, _ output: some FMPQQuantizeOutput, on stream: CUDAStream, _ arguments: repeat each Argument
    ) throws {
        guard output.tokens > 0 else { return }
        let target = output.quantizeTarget
        let function = functions[Variant(operation: op, tiled: target.tiled, blockSize: output.layout.blockSize)]
        let (splits, shared) = plan(rows: target.rows, layout: output.layout)
        try function.launch(
            grid: Dim3(target.rows, splits), block: Dim3(256), sharedMemoryBytes: shared, on: stream,
            repeat each arguments, Int32(output.tokens), target.first, target.second, target.scales, output.layout.int4Clip,
            Int32(output.layout.rotationBlocks), Int32(shared > 0 ? 1 : 0))
    }

    /// Blocks per row and the staged row's bytes (0: values gathered from global memory). At
    /// least one row per SM: one block per row, staged where it fits. Fewer: enough blocks per
    /// row for `targetBlocks` in all, at most one K-block per warp (8 per block).
    func plan(rows: Int, layout: FMPQLayout) -> (splits: Int, sharedBytes: Int) {
        let rowBytes = layout.inputChannels * MemoryLayout<Float>.size
        if rows >= multiprocessors { return (1, rowBytes <= maxSharedMemory ? rowBytes : 0) }
        return (max(1, min((layout.blockCount + 7) / 8, (targetBlocks + rows - 1) / rows)), 0)
    }

    private func require(_ condition: Bool, _ op: String, _ layout: FMPQLayout, _ tokens: Int) throws {
        if !condition { throw QuantError.shapeMismatch("\(op): buffers do not match \(tokens) tokens of \(layout)") }
    }
}
