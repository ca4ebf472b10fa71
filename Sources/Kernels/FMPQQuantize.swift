import CUDA
import Quant

/// The fused activation-quantization kernels of fmpq_quantize.cu, writing the W4Ax GEMM's
/// activation format. Each launch quantizes `output.tokens` rows, one block per row.
public struct FMPQQuantize: Sendable {
    /// What produces the row that is quantized: the kernel's name prefix.
    enum Operation: String, Sendable, CaseIterable { case rmsNorm = "rmsnorm_quantize", swiGLU = "swiglu_quantize", permute = "permute_quantize" }
    struct Variant: Hashable, Sendable { let operation: Operation, blockSize: Int }
    let functions: KernelVariants<Variant>
    let maxSharedMemory: Int

    public init(library: KernelLibrary) throws {
        // The opt-in limit covers static and dynamic shared memory together; the kernels'
        // static arrays are under 1 KiB.
        maxSharedMemory = library.context.device.maxSharedMemoryPerBlock - 1024
        let variants = Operation.allCases.flatMap { op in [64, 128].map { Variant(operation: op, blockSize: $0) } }
        functions = try KernelVariants(library: library, source: "fmpq_quantize.cu", keys: variants) {
            "\($0.operation.rawValue)_bs\($0.blockSize)"
        }
        for function in functions.all { try function.setMaxDynamicSharedMemory(maxSharedMemory) }
    }

    /// RMSNorm(x) * gamma, permuted, quantized. x: [tokens, K] bf16; gamma: [K]; permutation: [K].
    public func rmsNorm(
        _ x: DeviceBuffer<BFloat16>, gamma: DeviceBuffer<Float>, eps: Float, permutation: DeviceBuffer<Int32>,
        into output: W4AxActivations, on stream: CUDAStream
    ) throws {
        let layout = output.layout, k = layout.inputChannels
        try require(x.count == output.tokens * k && gamma.count == k && permutation.count == k, "rmsNorm", layout, output.tokens)
        try launch(.rmsNorm, output, rowFloats: k, on: stream,
                   x.pointer, gamma.pointer, permutation.pointer, eps, Int32(k), Int32(layout.int4Blocks), Int32(layout.int8Blocks),
                   output.int4.pointer, output.int8.pointer, output.scales.pointer)
    }

    /// silu(gate) * up, permuted, quantized. gateUp: [tokens, 2F] bf16 (gate first); layout's K is F.
    public func swiGLU(
        _ gateUp: DeviceBuffer<BFloat16>, permutation: DeviceBuffer<Int32>, into output: W4AxActivations, on stream: CUDAStream
    ) throws {
        let layout = output.layout, f = layout.inputChannels
        try require(gateUp.count == output.tokens * 2 * f && permutation.count == f, "swiGLU", layout, output.tokens)
        try launch(.swiGLU, output, rowFloats: f, on: stream,
                   gateUp.pointer, permutation.pointer, Int32(f), Int32(layout.int4Blocks), Int32(layout.int8Blocks),
                   output.int4.pointer, output.int8.pointer, output.scales.pointer)
    }

    /// x permuted, quantized. x: [tokens, K] bf16.
    public func permuted(
        _ x: DeviceBuffer<BFloat16>, permutation: DeviceBuffer<Int32>, into output: W4AxActivations, on stream: CUDAStream
    ) throws {
        let layout = output.layout, k = layout.inputChannels
        try require(x.count == output.tokens * k && permutation.count == k, "permuted", layout, output.tokens)
        try launch(.permute, output, rowFloats: k, on: stream,
                   x.pointer, permutation.pointer, Int32(k), Int32(layout.int4Blocks), Int32(layout.int8Blocks),
                   output.int4.pointer, output.int8.pointer, output.scales.pointer)
    }

    private func launch<each Argument: BitwiseCopyable>(
        _ op: Operation, _ output: W4AxActivations, rowFloats: Int, on stream: CUDAStream, _ arguments: repeat each Argument
    ) throws {
        guard output.tokens > 0 else { return }
        let shared = rowFloats * MemoryLayout<Float>.size
        guard shared <= maxSharedMemory else {
            throw QuantError.shapeMismatch("\(op): a row of \(rowFloats) channels needs \(shared) bytes of shared memory, over \(maxSharedMemory)")
        }
        let function = functions[Variant(operation: op, blockSize: output.layout.blockSize)]
        try function.launch(grid: Dim3(output.tokens), block: Dim3(256), sharedMemoryBytes: shared, on: stream, repeat each arguments)
    }

    private func require(_ condition: Bool, _ op: String, _ layout: FMPQLayout, _ tokens: Int) throws {
        if !condition { throw QuantError.shapeMismatch("\(op): buffers do not match \(tokens) tokens of \(layout)") }
    }
}
