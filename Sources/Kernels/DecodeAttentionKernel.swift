import CUDA
import Quant

/// attention_decode.cu: one query token per sequence against its paged KV cache, GQA, split
/// over long contexts and merged exactly; with `QueryTiles`, causal prefill attention too.
public struct DecodeAttentionKernel: Sendable {
    struct Variant: Hashable, Sendable { let format: PagedKVCache.Format, headDim: Int, headsPerCTA: Int }
    let functions: KernelVariants<Variant>
    /// KV4 on tensor cores, by head dimension, heads per CTA (8: up to 8, 16: 9 to 16: the
    /// whole GQA group, up to 16 heads, per CTA) and pipeline depth (16-token blocks in flight
    /// per warp).
    struct TensorCoreVariant: Hashable, Sendable { let headDim: Int, heads: Int, stages: Int }
    let tensorCoreKV4: KernelVariants<TensorCoreVariant>
    let combine: KernelFunction
    let multiprocessors: Int
    public var tuning: Tuning
    /// Tokens per CTA of the CUDA-core kernels: at most `ATTN_MAX_SPLIT` of the kernel, at least 64.
    static let splitLengths = [512, 256, 128, 64]
    /// Tokens per CTA of the tensor-core kernel, which keeps no per-token state: longer splits
    /// pay its prologue (Q fragments, pipeline fill) and epilogue (4-warp merge, partials) less often.
    static let tensorCoreSplitLengths = [4096, 2048, 1024, 512, 256, 128, 64]
    static let tensorCoreStages = [4, 8]
    /// CTAs of the tensor-core kernel resident per SM (its launch bounds; shared memory allows it).
    static let tensorCoreCTAsPerSM = 3

    /// The tensor-core kernel's choices, fixed for benchmarks: pipeline depth (4 or 8) and tokens
    /// per CTA (a multiple of 16, at least 64; nil: by the cost model of `splitLength`). Since the
    /// kernel stopped spilling, 4 stages beat 8 at every B >= 16 shape of `bench attention`, by
    /// 2-10% on an H100 (bench/results/h100-2026-12-07e.md, call 3b).
    public struct Tuning: Sendable {
        public var stages: Int
        public var splitLength: Int?
        public init(stages: Int = 4, splitLength: Int? = nil) {
            self.stages = stages
            self.splitLength = splitLength
        }
    }

    /// Dynamic shared memory of the tensor-core kernel: each warp's ring of `stages` staged
    /// blocks (16 tokens' K and V codes, 16 * D bytes, and their (scale, zero) pairs, 128
    /// bytes: KV4Stage::BYTES), reused after the loop for the warps' [16][D + 1] fp32 partials.
    static func tensorCoreSharedBytes(headDim d: Int, stages: Int) -> Int {
        max(4 * stages * (16 * d + 128), 4 * 16 * (d + 1) * 4)
    }

    public init(library: KernelLibrary, tuning: Tuning = Tuning()) throws {
        guard Self.tensorCoreStages.contains(tuning.stages),
              tuning.splitLength.map({ $0 >= 64 && $0 % 16 == 0 }) ?? true
        else {
            throw CUDAError.invalidArgument(
                "decode attention: \(tuning.stages) stages (4 or 8), split \(tuning.splitLength ?? 0) (a multiple of 16, at least 64)")
        }
        self.tuning = tuning
        let variants = [PagedKVCache.Format.kv4, .bf16].flatMap { format in
            [64, 128].flatMap { d in (1...4).map { Variant(format: format, headDim: d, headsPerCTA: $0) } }
        }
        functions = try KernelVariants(library: library, source: "attention_decode.cu", keys: variants) {
            "decode_attention_\($0.format.rawValue)_d\($0.headDim)_g\($0.headsPerCTA)"
        }
        let tensorCoreVariants = [64, 128].flatMap { d in
            [8, 16].flatMap { h in Self.tensorCoreStages.map { TensorCoreVariant(headDim: d, heads: h, stages: $0) } }
        }
        tensorCoreKV4 = try KernelVariants(library: library, source: "attention_decode.cu", keys: tensorCoreVariants) {
            "decode_attention_kv4_mma_d\($0.headDim)_h\($0.heads)_s\($0.stages)"
        }
        for variant in tensorCoreVariants {
            let function = tensorCoreKV4[variant]
            try function.setMaxDynamicSharedMemory(Self.tensorCoreSharedBytes(headDim: variant.headDim, stages: variant.stages))
            try function.setPreferredSharedMemoryCarveout(percent: 100)
        }
        combine = try library.function("decode_attention_combine", in: "attention_decode.cu")
        multiprocessors = library.context.device.multiprocessorCount
    }

    /// Query heads per CTA: the largest of 4, 3, 2, 1 that divides the group (CUDA-core kernels).
    static func headsPerCTA(group: Int) -> Int { [4, 3, 2, 1].first { group % $0 == 0 }! }

    /// Whether KV4 runs on the tensor-core kernel: groups of up to 16 heads, or multiples of 16.
    static func usesTensorCores(format: PagedKVCache.Format, group: Int) -> Bool {
        format == .kv4 && (group <= 16 || group % 16 == 0)
    }

    /// Tokens per CTA. CUDA-core kernels: the longest split that still gives every SM two CTAs.
    /// Tensor-core kernel: the split with the least waves x (split + 64), 64 tokens standing for
    /// a CTA's fixed cost, the longest on a tie: long splits waste the last wave, short ones
    /// repeat the fixed cost.
    func splitLength(sequences: Int, ctasPerSequence: Int, maxLength: Int, tensorCores: Bool) -> Int {
        guard tensorCores else {
            return Self.splitLengths.first { sequences * ctasPerSequence * ((maxLength + $0 - 1) / $0) >= 2 * multiprocessors }
                ?? Self.splitLengths.last!
        }
        if let fixed = tuning.splitLength { return fixed }
        let slots = Self.tensorCoreCTAsPerSM * multiprocessors
        func cost(_ split: Int) -> Int {
            let ctas = sequences * ctasPerSequence * ((maxLength + split - 1) / split)
            return (ctas + slots - 1) / slots * (min(split, maxLength) + 64)
        }
        return Self.tensorCoreSplitLengths.min { cost($0) < cost($1) }!
    }

    /// Consecutive query rows of one sequence that the KV4 tensor-core kernel takes in one CTA
    /// (prefill: 16 M rows = rowsPerTile tokens x the CTA's heads); 1 where it cannot (bf16
    /// caches, groups over 16).
    public static func queryRowsPerTile(format: PagedKVCache.Format, qHeads: Int, kvHeads: Int) -> Int {
        let group = qHeads / kvHeads
        return usesTensorCores(format: format, group: group) ? max(1, 16 / min(group, 16)) : 1
    }

    /// The query tiles of a prefill launch, as the kernel reads them: pairs (first row, count)
    /// in `tiles` ([2 * count] Int32). Build them with `appendQueryTiles`.
    public struct QueryTiles {
        public var tiles: DeviceBuffer<Int32>
        public var count: Int
        public init(tiles: DeviceBuffer<Int32>, count: Int) {
            self.tiles = tiles
            self.count = count
        }
    }

    /// Writes the tiles of query rows `rows` (consecutive positions of one sequence, sharing its
    /// block-table row) at `out[2 * index...]`: runs of at most `rowsPerTile` rows. Returns the
    /// index after the last tile written.
    public static func appendQueryTiles(rows: Range<Int>, rowsPerTile: Int, into out: UnsafeMutablePointer<Int32>, at index: Int) -> Int {
        var index = index, first = rows.lowerBound
        while first < rows.upperBound {
            let count = min(rowsPerTile, rows.upperBound - first)
            out[2 * index] = Int32(first)
            out[2 * index + 1] = Int32(count)
            index += 1
            first += count
        }
        return index
    }

    /// The query tiles of a whole step, cut into launches of `window` rows: `segments` are the
    /// step's sequences' row counts in order (summing to the step's rows). Writes every launch's
    /// tiles at `out` (rows relative to the launch's first row) and appends to `launches` each
    /// launch's tile range, or nil where every tile is a single row (decode: no tiles needed).
    /// Returns the tiles written.
    public static func appendLaunchTiles(
        segments: some Sequence<Int>, window: Int, rowsPerTile: Int, into out: UnsafeMutablePointer<Int32>,
        launches: inout [Range<Int>?]
    ) -> Int {
        var tiles = 0, start = 0, windowFirst = 0, multiRow = false
        func closeWindow() {
            launches.append(multiRow ? windowFirst..<tiles : nil)
            windowFirst = tiles
            multiRow = false
        }
        var first = 0
        for rows in segments {
            var lower = first
            let last = first + rows
            while lower < last {  // the sequence, cut at window edges
                let upper = min(last, start + window)
                multiRow = multiRow || (upper - lower > 1 && rowsPerTile > 1)
                tiles = appendQueryTiles(rows: (lower - start)..<(upper - start), rowsPerTile: rowsPerTile, into: out, at: tiles)
                lower = upper
                if lower == start + window {
                    closeWindow()
                    start += window
                }
            }
            first = last
        }
        if first > start { closeWindow() }
        return tiles
    }

    /// Floats of workspace a call with these sizes may need.
    public static func workspaceCount(sequences: Int, qHeads: Int, headDim: Int, maxLength: Int) -> Int {
        let splits = max(1, (maxLength + splitLengths.last! - 1) / splitLengths.last!)
        return splits * sequences * qHeads * (headDim + 2)
    }

    /// - Parameters:
    ///   - q: [sequences, qHeads, headDim] bf16.
    ///   - blockTable: [sequences, maxPages] page ids; lengths: [sequences] tokens cached.
    ///   - maxLength: an upper bound of `lengths` (known to the scheduler), to size the splits.
    ///   - queryTiles: for prefill, groups of consecutive rows of one sequence (rows are then
    ///     query tokens; each tile's rows read its first row's block table) that one CTA takes
    ///     together on the KV4 tensor-core kernel. Other kernels ignore it (the result is the same).
    ///   - out: [sequences, qHeads, headDim] bf16.
    public func callAsFunction(
        q: DeviceBuffer<BFloat16>, cache: PagedKVCache, blockTable: DeviceBuffer<Int32>, maxPages: Int,
        lengths: DeviceBuffer<Int32>, maxLength: Int, qHeads: Int, softmaxScale: Float, queryTiles: QueryTiles? = nil,
        workspace: DeviceBuffer<Float>, into out: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        let sequences = lengths.count, d = cache.headDim
        guard sequences > 0, qHeads % cache.kvHeads == 0, q.count == sequences * qHeads * d, out.count == q.count,
              blockTable.count == sequences * maxPages, maxLength <= maxPages * cache.pageSize
        else {
            throw CUDAError.invalidArgument(
                "decode attention: q \(q.count), out \(out.count), table \(blockTable.count) for \(sequences) sequences x \(qHeads) heads x \(d), \(maxPages) pages")
        }
        let group = qHeads / cache.kvHeads
        let tensorCores = Self.usesTensorCores(format: cache.format, group: group)
        let perCTA = tensorCores ? min(group, 16) : Self.headsPerCTA(group: group)
        let ctasPerSequence = cache.kvHeads * group / perCTA
        let tiles = tensorCores ? queryTiles : nil
        if let tiles, !(1...sequences).contains(tiles.count) || tiles.tiles.count < 2 * tiles.count {
            throw CUDAError.invalidArgument("decode attention: \(tiles.count) query tiles in \(tiles.tiles.count) values for \(sequences) rows")
        }
        let ctaRows = tiles?.count ?? sequences
        let split = splitLength(sequences: ctaRows, ctasPerSequence: ctasPerSequence, maxLength: maxLength, tensorCores: tensorCores)
        let splits = max(1, (maxLength + split - 1) / split)
        let partials = splits * sequences * qHeads
        guard workspace.count >= partials * (d + 2) else {
            throw CUDAError.invalidArgument("decode attention: workspace of \(workspace.count) floats, need \(partials * (d + 2))")
        }
        let partOut = workspace.pointer, partML = workspace.pointer(at: partials * d)
        if tensorCores {
            // The kernel reads each lane's Q slice in 16-byte loads.
            guard q.pointer % 16 == 0 else {
                throw CUDAError.invalidArgument("decode attention: q at \(q.pointer) is not 16-byte aligned")
            }
            // M rows in use per CTA: its heads, times the rows of a tile when tiled.
            let mRows = perCTA * (tiles == nil ? 1 : Self.queryRowsPerTile(format: cache.format, qHeads: qHeads, kvHeads: cache.kvHeads))
            let function = tensorCoreKV4[TensorCoreVariant(headDim: d, heads: mRows > 8 ? 16 : 8, stages: tuning.stages)]
            try function.launch(
                grid: Dim3(ctasPerSequence, ctaRows, splits), block: Dim3(128),
                sharedMemoryBytes: Self.tensorCoreSharedBytes(headDim: d, stages: tuning.stages), on: stream,
                q.pointer, cache.k.pointer, cache.v.pointer, cache.kParams.pointer, cache.vParams.pointer,
                blockTable.pointer, Int32(maxPages), lengths.pointer, Int32(cache.kvHeads), Int32(group),
                Int32(cache.pageSize), softmaxScale, Int32(split), partOut, partML, tiles?.tiles.pointer ?? DevicePointer(0),
                Int32(sequences))
        } else {
            try functions[Variant(format: cache.format, headDim: d, headsPerCTA: perCTA)].launch(
                grid: Dim3(ctasPerSequence, sequences, splits), block: Dim3(128), on: stream,
                q.pointer, cache.k.pointer, cache.v.pointer, cache.kParams.pointer, cache.vParams.pointer,
                blockTable.pointer, Int32(maxPages), lengths.pointer, Int32(cache.kvHeads), Int32(group),
                Int32(cache.pageSize), softmaxScale, Int32(split), partOut, partML)
        }
        try combine.launch(
            grid: Dim3(qHeads, sequences), block: Dim3(d), on: stream, partOut, partML, out.pointer, Int32(splits), Int32(d))
    }
}
