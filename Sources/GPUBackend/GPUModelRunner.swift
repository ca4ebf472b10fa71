import CPUBackend
import CUDA
import Engine
import Kernels
import Model
import Quant
import Sampling

/// Sizes of a `GPUModelRunner`: the KV cache and the largest step.
public struct GPURunnerOptions: Sendable, Equatable {
    /// Tokens per KV block (page).
    public var kvBlockSize = 16
    /// KV blocks; nil sizes the cache from the memory left after weights and scratch.
    public var kvBlocks: Int?
    /// Share of the free device memory the KV cache may take when `kvBlocks` is nil.
    public var memoryFraction = 0.9
    /// The most tokens one step runs (prefill chunks and decode tokens together).
    public var maxStepTokens = 2048
    /// The most sequences one step runs.
    public var maxStepSequences = 256
    /// Positions per sequence; nil takes the model's context length.
    public var contextLength: Int?
    /// Whether prefill rows go to KV4 attention in query tiles (several tokens of a sequence per
    /// CTA, each staged KV byte serving all of them); off, every row is its own CTA as in decode.
    /// Same results either way (`gpu_runner.fmpq` runs both).
    public var prefillQueryTiles: Bool

    /// On: `gpu_runner.fmpq` passes both ways (H100, 2026-12-07, bench/results/check-gpu-h100-8b7ee9e.txt),
    /// and tiles are 1.4-2.8x faster per prefill launch (bench/NOTES.md). `--disable-prefill-query-tiles`
    /// turns them off.
    public static let defaultPrefillQueryTiles = true

    public init(kvBlockSize: Int = 16, kvBlocks: Int? = nil, memoryFraction: Double = 0.9, maxStepTokens: Int = 2048,
                maxStepSequences: Int = 256, contextLength: Int? = nil, prefillQueryTiles: Bool = defaultPrefillQueryTiles) {
        self.prefillQueryTiles = prefillQueryTiles
        self.kvBlockSize = kvBlockSize
        self.kvBlocks = kvBlocks
        self.memoryFraction = memoryFraction
        self.maxStepTokens = maxStepTokens
        self.maxStepSequences = maxStepSequences
        self.contextLength = contextLength
    }
}

/// Runs a llama-architecture model on one GPU for the engine: FMPQ W4Ax linears (or bf16 ones,
/// the baseline) and a paged KV4 (or bf16) cache.
///
/// One step, all sequences together (tokens of every sequence are rows of one batch):
///
///     x = embed(ids)                                               x: [T, dim] bf16
///     per layer:  qkv = W4Ax(quant(perm(rmsnorm(x))))              fused norm + permute + quantize
///                 q, cache[slots] = rope(qkv)                      K/V quantized to KV4 on write
///                 x += Wo · attention(q, cache)                    causal over each sequence's blocks
///                 x += Wdown · quant(perm(swiglu(Wgu · quant(perm(rmsnorm(x))))))
///     logits = lm_head(rmsnorm(x[last token of each sequence]))    fp32 on the host
///
/// NOTES: attention has one query row per token, each with its own causal length (position + 1)
/// over its sequence's block table, so prefill attends to cached prefixes for free. On KV4, with
/// `usesPrefillQueryTiles`, the tensor-core kernel takes a prefill's rows in query tiles (`DecodeAttentionKernel.QueryTiles`:
/// 16 / group consecutive tokens per CTA, 4 for Llama-3's group of 4), so each KV byte it stages
/// serves that many query tokens; decode rows are tiles of one, the decode kernel as it was.
public final class GPUModelRunner: ModelRunner {
    public let config: ModelConfig
    public let kvBlockSize: Int
    public let kvBlockCount: Int
    public let maxStepTokens: Int
    public let maxStepSequences: Int
    public let contextLength: Int
    public let weights: GPUModelWeights
    public let context: CUDAContext
    let stream: CUDAStream

    /// One paged cache per layer.
    let caches: [PagedKVCache]
    /// Block-table width: the blocks of the longest sequence.
    let maxBlocksPerSequence: Int

    let quantize: FMPQQuantize, gemm: W4AxGemm, rope: RoPEKVWrite, attention: DecodeAttentionKernel, ops: LayerOps
    let blas: CuBLASLt
    let blasWorkspace: DeviceBuffer<UInt8>
    /// The large-M W4Ax GEMM's split-K sums (kept zeroed by the GEMM itself).
    let splitKWorkspace: DeviceBuffer<Float>
    /// cuBLASLt plans by (m, n, k, fp32 output): bf16 linears and the LM head.
    private var plans: [[Int]: CuBLASLt.Matmul] = [:]

    /// [contextLength, headDim / 2] fp32 RoPE tables.
    let cosTable: DeviceBuffer<Float>, sinTable: DeviceBuffer<Float>
    let scratch: Scratch
    /// Query rows per attention launch (bounds the split-K workspace).
    static let attentionRowsPerLaunch = 256

    /// Host staging of a step's integer inputs, uploaded with one copy; see `stage`.
    let staging: PinnedBuffer<Int32>
    let stagingDevice: DeviceBuffer<Int32>
    let logitsHost: PinnedBuffer<Float>
    let tokensHost: PinnedBuffer<Int32>
    /// Sampling on the GPU, on the rank that computes logits.
    let deviceSampler: DeviceSampler?
    let argmax: ArgmaxKernel
    let streamHold: StreamHoldKernel
    /// Set while `profile(_:)` runs a step: every launch is followed by a labelled event.
    private var profiler: StepProfiler?
    /// Per-token causal lengths of the current step (host copy, for the attention launch bounds).
    private var tokenLengths: [Int32] = []
    /// Per attention launch of the current step: its query tiles in the staged tile list, or nil
    /// when every tile is one row (decode: the plain per-row launch).
    private var launchTiles: [Range<Int>?] = []

    /// Under tensor parallelism: this runner is rank `rank` of `group`, its weights that rank's
    /// share (`config` is the shard's), and o and down are summed over the ranks.
    public struct Rank: Sendable {
        public let group: NCCLGroup
        public let rank: Int
        public init(group: NCCLGroup, rank: Int) {
            self.group = group
            self.rank = rank
        }
    }
    public let tensorParallelRank: Rank?
    /// Whether this runner computes the LM head (every rank would compute the same logits; only
    /// rank 0 does).
    var producesLogits: Bool { (tensorParallelRank?.rank ?? 0) == 0 }

    public init(
        weights: GPUModelWeights, options: GPURunnerOptions = GPURunnerOptions(), library: KernelLibrary, blas: CuBLASLt,
        tensorParallelRank: Rank? = nil
    ) throws {
        let config = weights.config
        self.config = config
        self.weights = weights
        self.tensorParallelRank = tensorParallelRank
        context = library.context
        stream = try context.makeStream()
        contextLength = min(options.contextLength ?? config.contextLength, config.contextLength)
        guard options.kvBlockSize > 0, options.maxStepTokens > 0, options.maxStepSequences > 0, contextLength > 0 else {
            throw GPUBackendError.unsupported("runner options \(options)")
        }
        kvBlockSize = options.kvBlockSize
        maxStepTokens = options.maxStepTokens
        maxStepSequences = min(options.maxStepSequences, options.maxStepTokens)
        usesPrefillQueryTiles = options.prefillQueryTiles
        maxBlocksPerSequence = (contextLength + kvBlockSize - 1) / kvBlockSize

        quantize = try FMPQQuantize(library: library)
        gemm = try W4AxGemm(library: library)
        rope = try RoPEKVWrite(library: library)
        attention = try DecodeAttentionKernel(library: library)
        ops = try LayerOps(library: library)
        argmax = try ArgmaxKernel(library: library)
        streamHold = try StreamHoldKernel(library: library)
        self.blas = blas
        blasWorkspace = try context.allocate(UInt8.self, count: CuBLASLt.Matmul.workspaceBytes)
        splitKWorkspace = try gemm.makeSplitKWorkspace(context: context, stream: stream)

        let rotary = try RotaryEmbedding(config: config, frequencyFactors: weights.ropeFrequencyFactors)
        let half = config.headDim / 2, positions = contextLength
        var cosHost = [Float](repeating: 0, count: positions * half), sinHost = cosHost
        cosHost.withUnsafeMutableBufferPointer { c in
            sinHost.withUnsafeMutableBufferPointer { s in
                rotary.fillTables(firstPosition: 0, tokens: positions, cos: c.baseAddress!, sin: s.baseAddress!)
            }
        }
        cosTable = try context.allocate(Float.self, count: cosHost.count)
        sinTable = try context.allocate(Float.self, count: sinHost.count)
        try cosTable.copy(from: cosHost)
        try sinTable.copy(from: sinHost)

        // Only the rank that computes the LM head needs room for logits (128 MiB at 256 x 128K).
        let logitRows = (tensorParallelRank?.rank ?? 0) == 0 ? maxStepSequences : 1
        scratch = try Scratch(weights: weights, tokens: maxStepTokens, logitRows: logitRows,
                              contextLength: contextLength, context: context)
        let stagingCount = 7 * maxStepTokens + maxStepTokens * maxBlocksPerSequence
        staging = try context.allocatePinned(Int32.self, count: stagingCount)
        stagingDevice = try context.allocate(Int32.self, count: stagingCount)
        logitsHost = try context.allocatePinned(Float.self, count: logitRows * config.vocabularySize)
        tokensHost = try context.allocatePinned(Int32.self, count: logitRows)
        deviceSampler = (tensorParallelRank?.rank ?? 0) == 0 ? try DeviceSampler(library: library, maxRows: logitRows) : nil

        // The KV cache takes what is left.
        let bytesPerBlock = config.layerCount * config.kvHeadCount * kvBlockSize
            * PagedKVCache.bytesPerTokenHead(format: weights.kvFormat, headDim: config.headDim)
        if let blocks = options.kvBlocks {
            kvBlockCount = blocks
        } else {
            let free = try context.memoryInfo().free
            kvBlockCount = Int(Double(free) * options.memoryFraction) / bytesPerBlock - 1
        }
        guard kvBlockCount > 0 else {
            throw GPUBackendError.outOfMemory("no room for a KV block of \(bytesPerBlock) bytes after \(weights.bytes >> 20) MiB of weights")
        }
        // One page more than the engine sees: the spare block that graph padding rows write to.
        let (format, pages, pageSize, context) = (weights.kvFormat, kvBlockCount + 1, kvBlockSize, context)
        caches = try (0..<config.layerCount).map { _ in
            try PagedKVCache(format: format, pages: pages, pageSize: pageSize, kvHeads: config.kvHeadCount,
                             headDim: config.headDim, context: context)
        }
    }

    /// Sets every byte of the KV cache to `byte` (benchmarks: decode at a context length without
    /// running its prefill; the values never change the speed).
    public func fillKVCache(byte: UInt8) throws {
        for cache in caches {
            for buffer in [cache.k, cache.v] { try buffer.fill(byte: byte, on: stream) }
            for params in [cache.kParams, cache.vParams] { try params.fill(byte: byte, on: stream) }
        }
        try stream.synchronize()
    }

    // MARK: - A step

    public func execute(_ step: [StepSequence], logits: inout [Float]) throws {
        let rows = try forward(step)
        let vocab = config.vocabularySize
        guard rows > 0, producesLogits else { return try stream.synchronize() }
        let out = scratch.logits.prefix(rows * vocab)
        try context.copy(bytes: out.byteCount, from: out.pointer, toHost: UnsafeMutableRawPointer(logitsHost.baseAddress), on: stream)
        try stream.synchronize()
        if logits.count != rows * vocab { logits = [Float](repeating: 0, count: rows * vocab) }
        logits.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: logitsHost.baseAddress, count: rows * vocab) }
    }

    /// The greedy token of each row, picked on the GPU (`argmax_rows`): S ids cross to the host
    /// instead of S x vocab logits.
    public func executeGreedy(_ step: [StepSequence], tokens: inout [Int32]) throws {
        let rows = try forward(step)
        guard rows > 0, producesLogits else {
            tokens = []
            return try stream.synchronize()
        }
        let picked = scratch.tokens.prefix(rows)
        try argmax(scratch.logits.prefix(rows * config.vocabularySize), vocab: config.vocabularySize, into: picked, on: stream)
        try context.copy(bytes: rows * 4, from: picked.pointer, toHost: UnsafeMutableRawPointer(tokensHost.baseAddress), on: stream)
        try stream.synchronize()
        tokens = Array(UnsafeBufferPointer(start: tokensHost.baseAddress, count: rows))
    }

    /// Runs one greedy step eagerly (no graph), with an event after every kernel, and says where
    /// its GPU time went (`StepProfile`). The step's KV writes happen as in any step.
    public func profile(_ step: [StepSequence]) throws -> StepProfile {
        let (tokens, logitRows) = try stage(step, checked: step.count)
        let profiler = StepProfiler(context: context)
        // Long enough for the host to queue a step of a few thousand launches behind it.
        try streamHold.hold(milliseconds: 250, on: stream)
        try profiler.mark("start", on: stream)
        self.profiler = profiler
        defer { self.profiler = nil }
        try enqueue(tokens: tokens, logitRows: logitRows, maxLength: nil)
        if logitRows > 0, producesLogits {
            try argmax(scratch.logits.prefix(logitRows * config.vocabularySize), vocab: config.vocabularySize,
                       into: scratch.tokens.prefix(logitRows), on: stream)
            try mark("argmax")
        }
        return try profiler.finish()
    }

    /// Marks the end of `label`'s launches while a step is profiled (nothing otherwise).
    @inline(__always) private func mark(_ label: String) throws {
        if let profiler { try profiler.mark(label, on: stream) }
    }

    /// `mark` for a linear's kernels: "\(kind).\(part)", built only while profiling.
    @inline(__always) private func mark(_ slot: LinearSlot, _ part: String) throws {
        if let profiler { try profiler.mark("\(slot.kindName).\(part)", on: stream) }
    }

    /// Whether sampled (non-greedy) steps are sampled on the GPU (DeviceSampler); off, the engine
    /// copies the logits and samples with each request's CPU `Sampler`. GPU check `sampling.device`;
    /// 6.6 ms against 66.6 ms per step at 256 rows of 128K on an H100 (bench/NOTES.md).
    public var usesDeviceSampling = true
    public var samplesOnDevice: Bool { usesDeviceSampling && deviceSampler != nil }

    /// Samples each row on the GPU (DeviceSampler): parameters up, tokens down, no logits copy.
    public func executeSampled(_ step: [StepSequence], rows: [SamplingRow], tokens: inout [SampledToken]) throws {
        guard let deviceSampler else {
            throw CUDAError.invalidArgument("this rank computes no logits: sample on rank 0")
        }
        let n = try forward(step)
        guard n == rows.count else {
            throw CUDAError.invalidArgument("\(rows.count) sampling rows for a step of \(n) rows with logits")
        }
        tokens = try deviceSampler.sample(scratch.logits.prefix(n * config.vocabularySize), vocab: config.vocabularySize, rows: rows, on: stream)
    }

    /// Whether prefill rows go to attention in query tiles (`GPURunnerOptions.prefillQueryTiles`).
    public var usesPrefillQueryTiles: Bool

    /// Runs decode steps (one token per sequence, all with logits) as CUDA graphs, one per batch
    /// bucket: a step of B sequences is padded to the next bucket with dummy rows that write to a
    /// spare KV block, and replays the captured launches (hundreds per step) in one call.
    public var usesGraphs = true
    /// Batch sizes with a graph; larger decode steps, and prefill, run eagerly.
    static let graphBuckets = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512]
    /// A graph per batch bucket and context-length bucket: attention's split over the context is
    /// fixed at capture, and sized for the whole context it would launch CTAs for positions no
    /// sequence has yet (at 8K context and 1K-token sequences, 7 of 8 of them).
    struct GraphKey: Hashable { let sequences: Int, length: Int }
    /// Length buckets: powers of two from 256, the last one the context length.
    static func lengthBucket(_ length: Int, contextLength: Int) -> Int {
        var bucket = 256
        while bucket < length { bucket *= 2 }
        return min(bucket, contextLength)
    }
    private var graphs: [GraphKey: CUDAGraphExec] = [:]
    /// Buckets that ran once eagerly (cuBLASLt plans made, kernels loaded): the next one is captured.
    private var warmedBuckets: Set<GraphKey> = []

    /// Queues the whole step up to the fp32 logits of the rows that need them (in `scratch.logits`,
    /// the first rows in step order); returns that row count.
    private func forward(_ step: [StepSequence]) throws -> Int {
        if usesGraphs, step.allSatisfy({ $0.tokens.count == 1 && $0.needsLogits }),
           let bucket = Self.graphBuckets.first(where: { $0 >= step.count }), bucket <= maxStepSequences {
            let dummy = StepSequence(tokens: [0], firstPosition: 0, blockTable: [Int32(kvBlockCount)], needsLogits: true)
            _ = try stage(step + Array(repeating: dummy, count: bucket - step.count), checked: step.count)
            let longest = step.reduce(1) { max($0, $1.firstPosition + 1) }
            let key = GraphKey(sequences: bucket, length: Self.lengthBucket(longest, contextLength: contextLength))
            if let graph = graphs[key] {
                try graph.launch(on: stream)
            } else if warmedBuckets.contains(key) {
                try stream.beginCapture()
                do {
                    try enqueue(tokens: bucket, logitRows: bucket, maxLength: key.length)
                } catch {
                    _ = try? stream.endCapture()
                    throw error
                }
                let graph = try stream.endCapture().instantiate()
                graphs[key] = graph
                try graph.launch(on: stream)
            } else {
                try enqueue(tokens: bucket, logitRows: bucket, maxLength: key.length)
                warmedBuckets.insert(key)
            }
            return step.count
        }
        let (tokens, logitRows) = try stage(step, checked: step.count)
        try enqueue(tokens: tokens, logitRows: logitRows, maxLength: nil)
        return logitRows
    }

    /// Queues every kernel of a staged step. `maxLength` bounds the causal lengths for attention's
    /// split (nil: the step's own longest; graphs pass the context length, valid for any step).
    private func enqueue(tokens: Int, logitRows: Int, maxLength: Int?) throws {
        let c = config, s = scratch
        let qDim = c.headCount * c.headDim, qkvDim = qDim + 2 * c.kvHeadCount * c.headDim
        let eps = Float(c.rmsNormEpsilon)
        let ids = stagingDevice.slice(0, count: tokens)
        let positions = stagingDevice.slice(tokens, count: tokens)
        let slots = stagingDevice.slice(2 * tokens, count: tokens)
        let lengths = stagingDevice.slice(3 * tokens, count: tokens)
        let rows = stagingDevice.slice(4 * tokens, count: logitRows)
        let tables = stagingDevice.slice(4 * tokens + logitRows, count: tokens * maxBlocksPerSequence)
        let tileList = stagingDevice.slice(4 * tokens + logitRows + tokens * maxBlocksPerSequence, count: 2 * tokens)

        // The residual stream alternates between two buffers: each residual add is fused into the
        // RMSNorm after it, which reads x + projected and writes the sum to the other buffer.
        var x = s.residual.prefix(tokens * c.dim), spare = s.residualSpare.prefix(tokens * c.dim)
        let projected = s.projected.prefix(tokens * c.dim)
        var pendingAdd = false
        func pendingResidual() -> FusedResidualAdd? { pendingAdd ? FusedResidualAdd(added: projected, sum: spare) : nil }
        func norm(_ gamma: DeviceBuffer<Float>) -> LinearInput { .rmsNorm(x, gamma, eps, pendingResidual()) }
        func addConsumed() {
            if pendingAdd { swap(&x, &spare) }
            pendingAdd = false
        }
        let qkv = s.qkv.prefix(tokens * qkvDim), q = s.q.prefix(tokens * qDim), attended = s.attended.prefix(tokens * qDim)
        let gateUp = s.gateUp.prefix(tokens * 2 * c.ffnDim)

        try ops.embeddingGather(table: weights.embedding, ids: ids, dim: c.dim, into: x, on: stream)
        try mark("embedding")
        for (l, layer) in weights.layers.enumerated() {
            try linear(layer.qkv, .qkv, norm(layer.attentionNorm), tokens: tokens, into: qkv)
            addConsumed()
            if let bias = layer.qkvBias {
                try ops.biasAdd(qkv, bias: bias, on: stream)
                try mark("qkv.bias")
            }
            try rope(qkv: qkv, positions: positions, slots: slots, cos: cosTable, sin: sinTable,
                     adjacentPairs: c.ropeConvention == .adjacentPairs, qHeads: c.headCount, rotateKeys: weights.rotatesKeys,
                     cache: caches[l], qOut: q, on: stream)
            try mark("rope_kv_write")
            try attend(q, cache: caches[l], tables: tables, lengths: lengths, tileList: tileList, tokens: tokens,
                       maxLength: maxLength, into: attended)
            try mark("attention")
            try linear(layer.attentionOutput, .attentionOutput, .plain(attended), tokens: tokens, into: projected)
            try sumOverRanks(projected)
            pendingAdd = true
            try linear(layer.gateUp, .gateUp, norm(layer.ffnNorm), tokens: tokens, into: gateUp)
            addConsumed()
            try linear(layer.down, .down, .swiGLU(gateUp), tokens: tokens, into: projected)
            try sumOverRanks(projected)
            pendingAdd = true
        }
        guard logitRows > 0, producesLogits else { return }
        let normed = s.headInput.prefix(logitRows * c.dim), out = s.logits.prefix(logitRows * c.vocabularySize)
        // The last residual add only matters for the rows that get logits: fused into their norm.
        try ops.rmsNorm(x, rows: rows, gamma: weights.outputNorm, eps: eps,
                        adding: pendingResidual(), into: normed, on: stream)
        try mark("final_norm")
        try plan(m: logitRows, n: c.vocabularySize, k: c.dim, float32Output: true)
            .run(algorithm: 0, x: normed.pointer, w: weights.lmHead.pointer, y: out.pointer, workspace: blasWorkspace.pointer, on: stream)
        try mark("lm_head")
    }

    /// Under tensor parallelism, sums a row-parallel linear's partial output over the ranks, in
    /// place (bf16, as NCCL reduces it: the partials are rounded to bf16 once more than at TP=1).
    private func sumOverRanks(_ partial: DeviceBuffer<BFloat16>) throws {
        guard let tp = tensorParallelRank else { return }
        try tp.group.allReduceSum(partial.pointer, count: partial.count, type: .bfloat16, rank: tp.rank, on: stream)
        try mark("all_reduce")
    }

    /// Checks the step and writes its integer inputs into `staging`, then uploads them:
    /// [ids T][positions T][slots T][causal lengths T][logit rows S][block tables T x maxBlocks]
    /// [attention query tiles, up to 2T].
    /// Returns T and S (the rows that need logits). Only the first `checked` sequences are checked
    /// against the cache (the rest are the runner's own padding rows on the spare block).
    private func stage(_ step: [StepSequence], checked: Int) throws -> (tokens: Int, logitRows: Int) {
        guard !step.isEmpty, step.count <= max(maxStepSequences, Self.graphBuckets.first { $0 >= maxStepSequences } ?? 0) else {
            throw GPUBackendError.badStep("\(step.count) sequences (1 to \(maxStepSequences))")
        }
        let tokens = step.reduce(0) { $0 + $1.tokens.count }
        guard tokens <= maxStepTokens else { throw GPUBackendError.badStep("\(tokens) tokens, over the step limit \(maxStepTokens)") }
        let logitRows = step.reduce(0) { $0 + ($1.needsLogits ? 1 : 0) }
        let width = maxBlocksPerSequence, vocab = Int32(config.vocabularySize)
        let p = staging.baseAddress
        let tables = p + 4 * tokens + logitRows
        if tokenLengths.count < tokens { tokenLengths = [Int32](repeating: 0, count: maxStepTokens) }
        var t = 0, row = 0
        for (index, sequence) in step.enumerated() {
            let n = sequence.tokens.count, first = sequence.firstPosition
            guard n > 0, first >= 0, first + n <= contextLength else {
                throw GPUBackendError.badStep("\(n) tokens at position \(first) (context \(contextLength))")
            }
            let blocksNeeded = (first + n + kvBlockSize - 1) / kvBlockSize
            guard sequence.blockTable.count >= blocksNeeded, sequence.blockTable.count <= width else {
                throw GPUBackendError.badStep("a block table of \(sequence.blockTable.count) blocks for \(first + n) positions")
            }
            for block in sequence.blockTable.prefix(blocksNeeded) where index < checked && (block < 0 || Int(block) >= kvBlockCount) {
                throw GPUBackendError.badStep("KV block \(block) is not in 0..<\(kvBlockCount)")
            }
            let tableStart = t
            for (i, id) in sequence.tokens.enumerated() {
                guard id >= 0, id < vocab else { throw GPUBackendError.badStep("token id \(id) is not in 0..<\(vocab)") }
                let position = first + i
                p[t] = id
                p[tokens + t] = Int32(position)
                p[2 * tokens + t] = sequence.blockTable[position / kvBlockSize] * Int32(kvBlockSize) + Int32(position % kvBlockSize)
                p[3 * tokens + t] = Int32(position + 1)
                tokenLengths[t] = Int32(position + 1)
                // Every token of the sequence reads the same table (padding entries are never read).
                let rowBase = tables + t * width
                if t == tableStart {
                    sequence.blockTable.withUnsafeBufferPointer { rowBase.update(from: $0.baseAddress!, count: $0.count) }
                    (rowBase + sequence.blockTable.count).update(repeating: 0, count: width - sequence.blockTable.count)
                } else {
                    rowBase.update(from: tables + tableStart * width, count: width)
                }
                t += 1
            }
            if sequence.needsLogits {
                p[4 * tokens + row] = Int32(t - 1)
                row += 1
            }
        }
        let tiles = stageQueryTiles(step, tokens: tokens, into: tables + tokens * width)
        let count = 4 * tokens + logitRows + tokens * width + 2 * tiles
        try context.copy(bytes: count * 4, fromHost: UnsafeRawPointer(p), to: stagingDevice.pointer, on: stream)
        return (tokens, logitRows)
    }

    /// Writes the attention query tiles of each launch window (`attentionRowsPerLaunch` rows; tile
    /// rows relative to the window) at `out` and records them in `launchTiles`. Returns the tiles.
    private func stageQueryTiles(_ step: [StepSequence], tokens: Int, into out: UnsafeMutablePointer<Int32>) -> Int {
        launchTiles.removeAll(keepingCapacity: true)
        guard usesPrefillQueryTiles else {
            launchTiles.append(contentsOf: repeatElement(nil, count: (tokens + Self.attentionRowsPerLaunch - 1) / Self.attentionRowsPerLaunch))
            return 0
        }
        let rowsPerTile = DecodeAttentionKernel.queryRowsPerTile(
            format: caches[0].format, qHeads: config.headCount, kvHeads: config.kvHeadCount)
        return DecodeAttentionKernel.appendLaunchTiles(
            segments: step.lazy.map(\.tokens.count), window: Self.attentionRowsPerLaunch, rowsPerTile: rowsPerTile,
            into: out, launches: &launchTiles)
    }

    /// Causal attention of each token's query over its sequence's cached positions 0...position,
    /// in launches of at most `attentionRowsPerLaunch` query rows.
    private func attend(
        _ q: DeviceBuffer<BFloat16>, cache: PagedKVCache, tables: DeviceBuffer<Int32>, lengths: DeviceBuffer<Int32>,
        tileList: DeviceBuffer<Int32>, tokens: Int, maxLength: Int?, into out: DeviceBuffer<BFloat16>
    ) throws {
        let c = config, qDim = c.headCount * c.headDim, width = maxBlocksPerSequence
        var start = 0
        while start < tokens {
            let n = min(Self.attentionRowsPerLaunch, tokens - start)
            var longest = Int32(maxLength ?? 1)
            if maxLength == nil { for i in start..<(start + n) { longest = max(longest, tokenLengths[i]) } }
            let tiles = launchTiles[start / Self.attentionRowsPerLaunch].map {
                DecodeAttentionKernel.QueryTiles(tiles: tileList.slice(2 * $0.lowerBound, count: 2 * $0.count), count: $0.count)
            }
            try attention(
                q: q.slice(start * qDim, count: n * qDim), cache: cache, blockTable: tables.slice(start * width, count: n * width),
                maxPages: width, lengths: lengths.slice(start, count: n), maxLength: Int(longest), qHeads: c.headCount,
                softmaxScale: 1 / Float(c.headDim).squareRoot(), queryTiles: tiles, workspace: scratch.attentionWorkspace,
                into: out.slice(start * qDim, count: n * qDim), on: stream)
            start += n
        }
    }

    /// What feeds a linear: the FMPQ kernels fuse it with the permutation and quantization.
    enum LinearInput {
        /// RMSNorm(x) * gamma, or of x + added with the residual add fused.
        case rmsNorm(DeviceBuffer<BFloat16>, DeviceBuffer<Float>, Float, FusedResidualAdd?)
        case swiGLU(DeviceBuffer<BFloat16>)
        case plain(DeviceBuffer<BFloat16>)
    }

    /// `slot` names the linear in a profiled step's labels ("qkv.input": the kernel that makes its
    /// input, for FMPQ fused with the quantization; "qkv.gemm").
    private func linear(_ linear: GPULinear, _ slot: LinearSlot, _ input: LinearInput, tokens: Int, into y: DeviceBuffer<BFloat16>) throws {
        let s = scratch
        switch linear {
        case let .w4ax(w, permutation):
            let layout = w.layout
            if gemm.prefersTiled(tokens: tokens, layout: layout) {
                let a = try W4AxTiledActivations(
                    layout: layout, tokens: tokens, codes: s.int8.prefix(W4AxTiledActivations.codeCount(layout, tokens: tokens)),
                    scales: s.blockScales.prefix(W4AxTiledActivations.scaleCount(layout, tokens: tokens)))
                try quantizeInput(input, permutation: permutation, into: a)
                try mark(slot, "input")
                try gemm(a, w, into: y, workspace: splitKWorkspace, on: stream)
                try mark(slot, "gemm")
            } else {
                let a = try W4AxActivations(
                    layout: layout, tokens: tokens, int4: s.int4.prefix(tokens * layout.int4Channels / 2),
                    int8: s.int8.prefix(tokens * layout.int8Channels), scales: s.blockScales.prefix(tokens * layout.blockCount))
                try quantizeInput(input, permutation: permutation, into: a)
                try mark(slot, "input")
                try gemm(a, w, into: y, workspace: splitKWorkspace, on: stream)
                try mark(slot, "gemm")
            }
        case let .bf16(w, outputs, inputs):
            let x: DeviceBuffer<BFloat16>
            switch input {
            case let .rmsNorm(residual, gamma, eps, add):
                x = s.normed.prefix(tokens * inputs)
                try ops.rmsNorm(residual, rows: s.identityRows.prefix(tokens), gamma: gamma, eps: eps, adding: add, into: x, on: stream)
            case let .swiGLU(gateUp):
                x = s.hidden.prefix(tokens * inputs)
                try ops.swiGLU(gateUp, hidden: inputs, into: x, on: stream)
            case let .plain(input): x = input
            }
            try mark(slot, "input")
            try plan(m: tokens, n: outputs, k: inputs, float32Output: false)
                .run(algorithm: 0, x: x.pointer, w: w.pointer, y: y.pointer, workspace: blasWorkspace.pointer, on: stream)
            try mark(slot, "gemm")
        }
    }

    /// The FMPQ kernel that produces a linear's input, fused with its permutation and quantization.
    private func quantizeInput(_ input: LinearInput, permutation: DeviceBuffer<Int32>, into a: some FMPQQuantizeOutput) throws {
        switch input {
        case let .rmsNorm(x, gamma, eps, add):
            try quantize.rmsNorm(x, gamma: gamma, eps: eps, permutation: permutation, adding: add, into: a, on: stream)
        case let .swiGLU(gateUp): try quantize.swiGLU(gateUp, permutation: permutation, into: a, on: stream)
        case let .plain(x): try quantize.permuted(x, permutation: permutation, into: a, on: stream)
        }
    }

    private func plan(m: Int, n: Int, k: Int, float32Output: Bool) throws -> CuBLASLt.Matmul {
        let key = [m, n, k, float32Output ? 1 : 0]
        if let plan = plans[key] { return plan }
        let plan = try CuBLASLt.Matmul(blas, m: m, n: n, k: k, inputType: .bf16, float32Output: float32Output)
        plans[key] = plan
        return plan
    }
}

/// The activations of the largest step, allocated once.
struct Scratch {
    /// [T, dim] the residual stream, and its other buffer (residual adds are fused into the next
    /// RMSNorm, which writes the sum out of place).
    let residual: DeviceBuffer<BFloat16>, residualSpare: DeviceBuffer<BFloat16>
    /// [T, dim] o and down outputs before the residual add.
    let projected: DeviceBuffer<BFloat16>
    /// [T, (heads + 2 kvHeads) * headDim]
    let qkv: DeviceBuffer<BFloat16>
    /// [T, heads * headDim] rotated queries, and attention outputs.
    let q: DeviceBuffer<BFloat16>, attended: DeviceBuffer<BFloat16>
    /// [T, 2 ffn]
    let gateUp: DeviceBuffer<BFloat16>
    /// FMPQ activations of any linear: int4 [T, K/2], int8 [T, K], scales [T, K / 128 blocks]
    /// for the widest input.
    let int4: DeviceBuffer<UInt8>, int8: DeviceBuffer<Int8>, blockScales: DeviceBuffer<Float>
    /// bf16 linears' inputs: [T, max(dim, heads*headDim)] normed, [T, ffn] SwiGLU.
    let normed: DeviceBuffer<BFloat16>, hidden: DeviceBuffer<BFloat16>
    /// 0, 1, ..., T - 1 (RMSNorm of every row).
    let identityRows: DeviceBuffer<Int32>
    /// [S, dim] LM head input; [S, vocab] fp32 logits; [S] greedy tokens (S = `logitRows`).
    let headInput: DeviceBuffer<BFloat16>, logits: DeviceBuffer<Float>, tokens: DeviceBuffer<Int32>
    let attentionWorkspace: DeviceBuffer<Float>

    init(weights: GPUModelWeights, tokens t: Int, logitRows: Int, contextLength: Int, context: CUDAContext) throws {
        let c = weights.config
        let qDim = c.headCount * c.headDim, kvDim = c.kvHeadCount * c.headDim
        residual = try context.allocate(BFloat16.self, count: t * c.dim)
        residualSpare = try context.allocate(BFloat16.self, count: t * c.dim)
        projected = try context.allocate(BFloat16.self, count: t * c.dim)
        qkv = try context.allocate(BFloat16.self, count: t * (qDim + 2 * kvDim))
        q = try context.allocate(BFloat16.self, count: t * qDim)
        attended = try context.allocate(BFloat16.self, count: t * qDim)
        gateUp = try context.allocate(BFloat16.self, count: t * 2 * c.ffnDim)
        let widest = max(c.dim, qDim, c.ffnDim)
        let padded = (widest + 63) / 64 * 64  // block size 64 or 128: both pad at most to this
        let paddedAny = (widest + 127) / 128 * 128
        // int8 and blockScales also hold the large-M GEMM's tiled activations (rows padded to
        // whole 128-token tiles).
        let tiledRows = W4AxTiledActivations.tiles(tokens: t) * W4AxTiledActivations.tileTokens
        int4 = try context.allocate(UInt8.self, count: t * max(padded, paddedAny) / 2)
        int8 = try context.allocate(Int8.self, count: tiledRows * max(padded, paddedAny))
        blockScales = try context.allocate(Float.self, count: tiledRows * (widest + 63) / 64)
        if weights.isQuantized {
            normed = try context.allocate(BFloat16.self, count: 1)
            hidden = try context.allocate(BFloat16.self, count: 1)
        } else {
            normed = try context.allocate(BFloat16.self, count: t * max(c.dim, qDim))
            hidden = try context.allocate(BFloat16.self, count: t * c.ffnDim)
        }
        identityRows = try context.allocate(Int32.self, count: t)
        try identityRows.copy(from: (0..<Int32(t)).map { $0 })
        headInput = try context.allocate(BFloat16.self, count: logitRows * c.dim)
        logits = try context.allocate(Float.self, count: logitRows * c.vocabularySize)
        tokens = try context.allocate(Int32.self, count: logitRows)
        attentionWorkspace = try context.allocate(Float.self, count: DecodeAttentionKernel.workspaceCount(
            sequences: min(t, GPUModelRunner.attentionRowsPerLaunch), qHeads: c.headCount, headDim: c.headDim, maxLength: contextLength))
    }
}
