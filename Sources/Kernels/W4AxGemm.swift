import CUDA
import Quant

/// The W4Ax GEMM: Y[M, N] (bf16) = activations [M, K] x weights [N, K]^T. Two kernels share
/// the weight layout: w4ax_gemm.cu (small M, mma.sync, packed activations; entry point picked
/// by block size and tokens) and w4ax_gemm_sm90.cu (large M, wgmma, tiled activations; sm_90a).
public struct W4AxGemm: Sendable {
    struct Variant: Hashable, Sendable { let blockSize: Int, mTiles: Int, nTiles: Int }
    let functions: KernelVariants<Variant>
    let multiprocessors: Int
    /// The large-M kernel, where the GPU has wgmma (sm_90a).
    let largeM: KernelFunction?

    /// Shared memory of the large-M kernel: 6 stages of a 16 KiB code tile and 512 bytes of
    /// scales, 12 mbarriers, and 1 KiB to align the tiles for the swizzle.
    static let largeMSharedBytes = 6 * (W4AxTiledActivations.tileBytes + 512) + 12 * 8 + 1024

    public init(library: KernelLibrary) throws {
        let variants = [64, 128].flatMap { bs in [1, 2, 4].flatMap { mt in [1, 2].map { Variant(blockSize: bs, mTiles: mt, nTiles: $0) } } }
        functions = try KernelVariants(library: library, source: "w4ax_gemm.cu", keys: variants) {
            "w4ax_small_m_bs\($0.blockSize)_mt\($0.mTiles)_nt\($0.nTiles)"
        }
        multiprocessors = library.context.device.multiprocessorCount
        if library.arch == "sm_90a" {
            let function = try library.function("w4ax_large_m_bs128", in: "w4ax_gemm_sm90.cu")
            try function.setMaxDynamicSharedMemory(Self.largeMSharedBytes)
            largeM = function
        } else {
            largeM = nil
        }
    }

    /// Whether `tokens` rows of `layout` should take the large-M kernel (tiled activations).
    /// Below 64 tokens the small-M kernel streams the weights faster than 128-token tiles
    /// that are mostly padding.
    public func prefersTiled(tokens: Int, layout: FMPQLayout) -> Bool {
        largeM != nil && W4AxTiledActivations.supports(layout) && tokens >= Self.largeMThreshold
    }

    public static let largeMThreshold = 64

    /// n-tiles per warp: 2 (activation work shared by two tiles) when that still leaves at
    /// least two blocks per SM, else 1.
    func nTiles(forTiles tiles: Int) -> Int { tiles >= 4 * multiprocessors ? 2 : 1 }

    /// 8-token m-tiles per block: the fewest that cover M, up to 4 (32 tokens); larger M is
    /// covered by more blocks along the grid's z.
    static func mTiles(forTokens m: Int) -> Int { m <= 8 ? 1 : m <= 16 ? 2 : 4 }

    public func callAsFunction(
        _ a: W4AxActivations, _ w: W4AxWeights, into y: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        guard a.layout == w.layout else {
            throw QuantError.shapeMismatch("activation layout \(a.layout) differs from weight layout \(w.layout)")
        }
        try launch(a, packed: w.packed, scales: w.scales, outputs: w.outputs, into: y, on: stream)
    }

    /// The launch itself, on raw weight buffers in W4AxWeights' layout (benchmarks time
    /// random weights this way without a host copy); sizes are checked against `a.layout`.
    public func launch(
        _ a: W4AxActivations, packed: DeviceBuffer<UInt8>, scales: DeviceBuffer<Float16>, outputs: Int,
        into y: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        let tiles = (outputs + 15) / 16
        guard packed.count >= tiles * 16 * a.layout.paddedChannels / 2, scales.count == tiles * 16 * a.layout.blockCount else {
            throw QuantError.shapeMismatch("weights of \(packed.count) bytes and \(scales.count) scales for \(outputs) x \(a.layout.paddedChannels)")
        }
        guard a.tokens > 0, y.count == a.tokens * outputs else {
            throw QuantError.shapeMismatch("output of \(y.count) elements for \(a.tokens) x \(outputs)")
        }
        let mt = Self.mTiles(forTokens: a.tokens), nt = nTiles(forTiles: tiles)
        let function = functions[Variant(blockSize: a.layout.blockSize, mTiles: mt, nTiles: nt)]
        let grid = Dim3((tiles + nt - 1) / nt, 1, (a.tokens + 8 * mt - 1) / (8 * mt))
        try function.launch(
            grid: grid, block: Dim3(256), on: stream,
            packed.pointer, scales.pointer, a.int4.pointer, a.int8.pointer, a.scales.pointer, y.pointer,
            Int32(a.tokens), Int32(outputs), Int32(a.layout.int4Blocks), Int32(a.layout.int8Blocks))
    }
}

extension W4AxGemm {
    public func callAsFunction(
        _ a: W4AxTiledActivations, _ w: W4AxWeights, into y: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        guard a.layout == w.layout else {
            throw QuantError.shapeMismatch("activation layout \(a.layout) differs from weight layout \(w.layout)")
        }
        try launch(a, packed: w.packed, scales: w.scales, outputs: w.outputs, into: y, on: stream)
    }

    /// The large-M launch on raw weight buffers in W4AxWeights' layout.
    public func launch(
        _ a: W4AxTiledActivations, packed: DeviceBuffer<UInt8>, scales: DeviceBuffer<Float16>, outputs: Int,
        into y: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        guard let largeM else {
            throw CUDAError.invalidArgument("the large-M W4Ax kernel needs wgmma (sm_90a); this GPU is not one")
        }
        let tiles = (outputs + 15) / 16
        guard packed.count >= tiles * 16 * a.layout.paddedChannels / 2, scales.count == tiles * 16 * a.layout.blockCount else {
            throw QuantError.shapeMismatch("weights of \(packed.count) bytes and \(scales.count) scales for \(outputs) x \(a.layout.paddedChannels)")
        }
        guard y.count == a.tokens * outputs else {
            throw QuantError.shapeMismatch("output of \(y.count) elements for \(a.tokens) x \(outputs)")
        }
        try largeM.launch(
            grid: Dim3((outputs + 127) / 128, a.tiles), block: Dim3(288), sharedMemoryBytes: Self.largeMSharedBytes, on: stream,
            packed.pointer, scales.pointer, a.codes.pointer, a.scales.pointer, y.pointer,
            Int32(a.tokens), Int32(outputs), Int32(a.layout.blockCount))
    }
}
