import CUDA
import Quant

/// The W4Ax GEMM of w4ax_gemm.cu: Y[M, N] (bf16) = activations [M, K] x weights [N, K]^T,
/// picking the entry point for the block size and the number of tokens.
public struct W4AxGemm: Sendable {
    /// Keyed by "bs\(blockSize)_mt\(mTiles)".
    let functions: [String: KernelFunction]

    public init(library: KernelLibrary) throws {
        var functions: [String: KernelFunction] = [:]
        for bs in [64, 128] {
            for mt in [1, 2, 4] {
                functions["bs\(bs)_mt\(mt)"] = try library.function("w4ax_small_m_bs\(bs)_mt\(mt)", in: "w4ax_gemm.cu")
            }
        }
        self.functions = functions
    }

    /// 8-token m-tiles per block: the fewest that cover M, up to 4 (32 tokens); larger M is
    /// covered by more blocks along the grid's z.
    static func mTiles(forTokens m: Int) -> Int { m <= 8 ? 1 : m <= 16 ? 2 : 4 }

    public func callAsFunction(
        _ a: W4AxActivations, _ w: W4AxWeights, into y: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        guard a.layout == w.layout else {
            throw QuantError.shapeMismatch("activation layout \(a.layout) differs from weight layout \(w.layout)")
        }
        guard a.tokens > 0, y.count == a.tokens * w.outputs else {
            throw QuantError.shapeMismatch("output of \(y.count) elements for \(a.tokens) x \(w.outputs)")
        }
        let mt = Self.mTiles(forTokens: a.tokens)
        let function = functions["bs\(a.layout.blockSize)_mt\(mt)"]!
        let grid = Dim3(w.paddedOutputs / 16, 1, (a.tokens + 8 * mt - 1) / (8 * mt))
        try function.launch(
            grid: grid, block: Dim3(256), on: stream,
            w.packed.pointer, w.scales.pointer, a.int4.pointer, a.int8.pointer, a.scales.pointer, y.pointer,
            Int32(a.tokens), Int32(w.outputs), Int32(a.layout.int4Blocks), Int32(a.layout.int8Blocks))
    }
}
