import CUDA
import Quant

/// The W4Ax GEMM: Y[M, N] (bf16) = activations [M, K] x weights [N, K]^T. Three kernels share
/// the weight layout:
///  - w4ax_gemm.cu: small M (decode), int8 mma.sync, packed activations; every GPU;
///  - w4ax_gemm_sm90.cu: large M on Hopper (sm_90a), wgmma, tiled activations;
///  - w4ax_gemm_sm80.cu: large M on Ampere and Ada (sm_8x), INT4 and INT8 mma.sync, packed
///    activations: the paper's kernel, for the GPUs with INT4 tensor cores.
public struct W4AxGemm: Sendable {
    struct Variant: Hashable, Sendable { let blockSize: Int, mTiles: Int, nTiles: Int, warps: Int }
    let functions: KernelVariants<Variant>
    /// The small-M kernel's shape, fixed for benchmarks (nil: by shape, `nTiles(forTiles:)`, 8 warps).
    public var smallM = SmallMTuning()
    let multiprocessors: Int
    /// The large-M kernel, where the GPU has wgmma (sm_90a).
    let largeM: KernelFunction?
    /// The large-M kernel on packed activations (INT4 tensor cores), on sm_8x or when forced.
    let mmaSyncLargeM: KernelFunction?
    /// Both large-M kernels' split-K epilogue.
    let splitKFinish: KernelFunction
    public var hasLargeMKernel: Bool { largeM != nil }

    /// Shared memory of the mma.sync large-M kernel: 3 stages of 8 KiB of weights, 16 KiB of
    /// activation codes, 256 bytes of weight and 512 of activation scales (w4ax_gemm_sm80.cu).
    static let mmaSyncLargeMSharedBytes = 3 * (8192 + 16384 + 256 + 512)

    /// Shared memory of the large-M kernel: 6 stages of a 16 KiB code tile, 512 bytes of
    /// activation scales, 8 KiB of weights and 256 bytes of their scales; 12 mbarriers; 1 KiB to
    /// align the tiles for the swizzle.
    static let largeMSharedBytes = 6 * (W4AxTiledActivations.tileBytes + 512 + 8192 + 256) + 12 * 8 + 1024

    /// `forceMmaSync` loads the sm_8x large-M kernel on any GPU: Hopper runs its INT4 mma in
    /// emulation, so there it serves the correctness check only.
    public init(library: KernelLibrary, forceMmaSync: Bool = false) throws {
        let variants = [64, 128].flatMap { bs in
            [1, 2, 4].flatMap { mt in
                [1, 2].flatMap { nt in (mt == 1 ? [4, 8] : [8]).map { Variant(blockSize: bs, mTiles: mt, nTiles: nt, warps: $0) } }
            }
        }
        functions = try KernelVariants(library: library, source: "w4ax_gemm.cu", keys: variants) {
            "w4ax_small_m_bs\($0.blockSize)_mt\($0.mTiles)_nt\($0.nTiles)_w\($0.warps)"
        }
        multiprocessors = library.context.device.multiprocessorCount
        if library.arch == "sm_90a" {
            let function = try library.function("w4ax_large_m_bs128", in: "w4ax_gemm_sm90.cu")
            try function.setMaxDynamicSharedMemory(Self.largeMSharedBytes)
            largeM = function
        } else {
            largeM = nil
        }
        if forceMmaSync || library.arch.hasPrefix("sm_8") {
            let function = try library.function("w4ax_mma_sync_large_m_bs128", in: "w4ax_gemm_sm80.cu")
            try function.setMaxDynamicSharedMemory(Self.mmaSyncLargeMSharedBytes)
            mmaSyncLargeM = function
        } else {
            mmaSyncLargeM = nil
        }
        splitKFinish = try library.function("w4ax_split_k_finish", in: "w4ax_gemm.cu")
    }

    /// Whether `tokens` rows of `layout` should take the large-M kernel (tiled activations).
    /// Up to 32 tokens the small-M kernel streams the weights faster than 128-token tiles that
    /// are mostly padding; at 48 the large-M one wins on every Llama-3-8B shape (bench/NOTES.md).
    public func prefersTiled(tokens: Int, layout: FMPQLayout) -> Bool {
        largeM != nil && W4AxTiledActivations.supports(layout) && tokens >= Self.largeMThreshold
    }

    public static let largeMThreshold = 33

    /// K splits for the large-M kernel. One block runs per SM and a tile's K loop is serial, so
    /// with fewer tiles than SMs some SMs idle (8B qkv at M = 256: 96 tiles for 132 SMs). The
    /// split count minimises waves x K-blocks per split, the fewest splits on a tie (each split
    /// adds fp32 atomics and the finishing pass).
    public func splitK(outputs: Int, tokens: Int, blocks: Int) -> Int {
        let tiles = (outputs + 127) / 128 * W4AxTiledActivations.tiles(tokens: tokens)
        guard tiles < multiprocessors else { return 1 }
        func cost(_ splits: Int) -> Int { (tiles * splits + multiprocessors - 1) / multiprocessors * ((blocks + splits - 1) / splits) }
        var best = 1
        for splits in 2...max(2, min(16, blocks)) where splits <= blocks && cost(splits) < cost(best) { best = splits }
        return best
    }

    /// A zeroed fp32 workspace for split-K sums, large enough for any call: K is split only when
    /// the output tiles are fewer than the SMs, so tokens x outputs < SMs x 128 x 128. The GEMM
    /// leaves it zeroed again, so one workspace serves every call on a stream.
    public func makeSplitKWorkspace(context: CUDAContext, stream: CUDAStream) throws -> DeviceBuffer<Float> {
        let workspace = try context.allocate(Float.self, count: multiprocessors * 128 * 128)
        try workspace.fill(byte: 0, on: stream)
        return workspace
    }

    /// n-tiles per warp: 2 (activation work shared by two tiles) when that still leaves every
    /// SM a block, else 1. On an H100 at M = 1 (bench/results/h100-2026-12-07e.md, call 2):
    /// 8B qkv (384 tiles) 11.7 -> 8.7 us with 2; down (256 tiles, K 14336) 16.9 us with 1, 17.5 with 2.
    func nTiles(forTiles tiles: Int) -> Int { tiles >= 2 * multiprocessors ? 2 : 1 }

    /// 8-token m-tiles per block: the fewest that cover M, up to 4 (32 tokens); larger M is
    /// covered by more blocks along the grid's z.
    static func mTiles(forTokens m: Int) -> Int { m <= 8 ? 1 : m <= 16 ? 2 : 4 }

    /// The GEMM on packed activations: the small-M kernel, or from `largeMThreshold` tokens the
    /// mma.sync large-M kernel where it is loaded. `workspace` (from `makeSplitKWorkspace`)
    /// enables the latter's split-K.
    public func callAsFunction(
        _ a: W4AxActivations, _ w: W4AxWeights, into y: DeviceBuffer<BFloat16>, workspace: DeviceBuffer<Float>? = nil,
        on stream: CUDAStream
    ) throws {
        guard a.layout == w.layout else {
            throw QuantError.shapeMismatch("activation layout \(a.layout) differs from weight layout \(w.layout)")
        }
        try launch(a, packed: w.packed, scales: w.scales, outputs: w.outputs, into: y, workspace: workspace, on: stream)
    }

    /// Whether `tokens` rows of `layout` in packed activations take the mma.sync large-M kernel.
    /// The 33-token threshold is the Hopper kernels' crossover (prefersTiled), not measured on sm_8x.
    public func prefersMmaSyncLargeM(tokens: Int, layout: FMPQLayout) -> Bool {
        mmaSyncLargeM != nil && layout.blockSize == 128 && tokens >= Self.largeMThreshold
    }

    /// The launch itself, on raw weight buffers in W4AxWeights' layout (benchmarks time
    /// random weights this way without a host copy); sizes are checked against `a.layout`.
    public func launch(
        _ a: W4AxActivations, packed: DeviceBuffer<UInt8>, scales: DeviceBuffer<Float16>, outputs: Int,
        into y: DeviceBuffer<BFloat16>, workspace: DeviceBuffer<Float>? = nil, on stream: CUDAStream
    ) throws {
        let tiles = (outputs + 15) / 16
        guard packed.count >= tiles * 16 * a.layout.paddedChannels / 2, scales.count == tiles * 16 * a.layout.blockCount else {
            throw QuantError.shapeMismatch("weights of \(packed.count) bytes and \(scales.count) scales for \(outputs) x \(a.layout.paddedChannels)")
        }
        guard a.tokens > 0, y.count == a.tokens * outputs else {
            throw QuantError.shapeMismatch("output of \(y.count) elements for \(a.tokens) x \(outputs)")
        }
        if let mmaSyncLargeM, prefersMmaSyncLargeM(tokens: a.tokens, layout: a.layout) {
            let blocks = a.layout.blockCount
            let (splits, perSplit, partial) = splitPlan(outputs: outputs, tokens: a.tokens, blocks: blocks, workspace: workspace)
            try mmaSyncLargeM.launch(
                grid: Dim3((outputs + 127) / 128, W4AxTiledActivations.tiles(tokens: a.tokens), splits), block: Dim3(256),
                sharedMemoryBytes: Self.mmaSyncLargeMSharedBytes, on: stream,
                packed.pointer, scales.pointer, a.int4.pointer, a.int8.pointer, a.scales.pointer, y.pointer,
                partial?.pointer ?? 0, Int32(a.tokens), Int32(outputs),
                Int32(a.layout.int4Blocks), Int32(a.layout.int8Blocks), Int32(perSplit))
            if let partial { try finishSplitK(partial, into: y, on: stream) }
            return
        }
        let mt = Self.mTiles(forTokens: a.tokens), nt = smallM.nTiles ?? nTiles(forTiles: tiles)
        let warps = mt == 1 ? smallM.warps ?? 8 : 8
        let function = functions[Variant(blockSize: a.layout.blockSize, mTiles: mt, nTiles: nt, warps: warps)]
        let grid = Dim3((tiles + nt - 1) / nt, 1, (a.tokens + 8 * mt - 1) / (8 * mt))
        try function.launch(
            grid: grid, block: Dim3(32 * warps), on: stream,
            packed.pointer, scales.pointer, a.int4.pointer, a.int8.pointer, a.scales.pointer, y.pointer,
            Int32(a.tokens), Int32(outputs), Int32(a.layout.int4Blocks), Int32(a.layout.int8Blocks))
    }
}

extension W4AxGemm {
    /// Fixed choices of the small-M kernel: n-tiles per block (1 or 2) and warps per block (8, or
    /// 4, which exists up to 8 tokens only; more tokens take 8).
    public struct SmallMTuning: Sendable {
        public var nTiles: Int?
        public var warps: Int?
        public init(nTiles: Int? = nil, warps: Int? = nil) throws {
            guard nTiles.map({ [1, 2].contains($0) }) ?? true, warps.map({ [4, 8].contains($0) }) ?? true else {
                throw CUDAError.invalidArgument("small-M GEMM: \(nTiles ?? 0) n-tiles (1 or 2), \(warps ?? 0) warps (4 or 8)")
            }
            self.nTiles = nTiles
            self.warps = warps
        }
        public init() {}
    }

    /// The large-M GEMM. `workspace` (from `makeSplitKWorkspace`, at least tokens x outputs)
    /// enables split-K where the output tiles alone leave SMs idle; without it K is not split.
    public func callAsFunction(
        _ a: W4AxTiledActivations, _ w: W4AxWeights, into y: DeviceBuffer<BFloat16>, workspace: DeviceBuffer<Float>? = nil,
        on stream: CUDAStream
    ) throws {
        guard a.layout == w.layout else {
            throw QuantError.shapeMismatch("activation layout \(a.layout) differs from weight layout \(w.layout)")
        }
        try launch(a, packed: w.packed, scales: w.scales, outputs: w.outputs, into: y, workspace: workspace, on: stream)
    }

    /// The large-M launch on raw weight buffers in W4AxWeights' layout.
    public func launch(
        _ a: W4AxTiledActivations, packed: DeviceBuffer<UInt8>, scales: DeviceBuffer<Float16>, outputs: Int,
        into y: DeviceBuffer<BFloat16>, workspace: DeviceBuffer<Float>? = nil, on stream: CUDAStream
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
        let blocks = a.layout.blockCount
        let (splits, perSplit, partial) = splitPlan(outputs: outputs, tokens: a.tokens, blocks: blocks, workspace: workspace)
        try largeM.launch(
            grid: Dim3((outputs + 127) / 128, a.tiles, splits), block: Dim3(384),
            sharedMemoryBytes: Self.largeMSharedBytes, on: stream,
            packed.pointer, scales.pointer, a.codes.pointer, a.scales.pointer, y.pointer, partial?.pointer ?? y.pointer,
            Int32(a.tokens), Int32(outputs), Int32(blocks), Int32(perSplit))
        if let partial { try finishSplitK(partial, into: y, on: stream) }
    }

    /// A large-M launch's K split: grid z, K-blocks per split, and the workspace when split
    /// (none, so one split, without a workspace large enough).
    private func splitPlan(outputs: Int, tokens: Int, blocks: Int, workspace: DeviceBuffer<Float>?)
        -> (splits: Int, perSplit: Int, partial: DeviceBuffer<Float>?)
    {
        var splits = splitK(outputs: outputs, tokens: tokens, blocks: blocks)
        if (workspace?.count ?? 0) < tokens * outputs { splits = 1 }
        let perSplit = (blocks + splits - 1) / splits
        splits = (blocks + perSplit - 1) / perSplit
        return (splits, perSplit, splits > 1 ? workspace : nil)
    }

    /// Y = bf16(partial sums), leaving the workspace zeroed for the next call.
    private func finishSplitK(_ partial: DeviceBuffer<Float>, into y: DeviceBuffer<BFloat16>, on stream: CUDAStream) throws {
        let elements = y.count
        try splitKFinish.launch(
            grid: Dim3((elements + 1023) / 1024), block: Dim3(256), on: stream, partial.pointer, y.pointer, Int32(elements))
    }
}
