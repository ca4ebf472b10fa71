import CPUReference
import CUDA
import Kernels
import Quant

/// `comet bench attention`: decode attention over a paged KV4 cache against the same kernel
/// over a bf16 cache (the baseline), same shapes, same run.
public struct AttentionBenchmark {
    public struct Row: Sendable, Codable {
        public let batch: Int, length: Int, qHeads: Int, kvHeads: Int, headDim: Int
        /// Microseconds per call (attention and split merge).
        public let kv4: Double, bf16: Double
        /// KV bytes each variant must read, per call.
        public let kv4Bytes: Int, bf16Bytes: Int
        public var kv4TBps: Double { Double(kv4Bytes) / kv4 / 1e6 }
        public var bf16TBps: Double { Double(bf16Bytes) / bf16 / 1e6 }
        public var speedup: Double { bf16 / kv4 }
    }

    public let library: KernelLibrary
    public let pageSize: Int
    /// The KV4 kernel's pipeline depth and split (nil: chosen per shape).
    public let tuning: DecodeAttentionKernel.Tuning

    public init(library: KernelLibrary, pageSize: Int = 64, tuning: DecodeAttentionKernel.Tuning = .init()) {
        self.library = library
        self.pageSize = pageSize
        self.tuning = tuning
    }

    public func run(batch: Int, length: Int, qHeads: Int = 32, kvHeads: Int = 8, headDim: Int = 128) throws -> Row {
        let context = library.context
        let stream = try context.makeStream()
        let attention = try DecodeAttentionKernel(library: library, tuning: tuning)
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let pagesPerSequence = (length + pageSize - 1) / pageSize
        let q = try context.allocate(BFloat16.self, count: batch * qHeads * headDim)
        try fillRandom(q, on: stream) { n in (0..<n).map { _ in BFloat16(Float.random(in: -1...1, using: &random)) } }
        let table = try context.allocate(Int32.self, count: batch * pagesPerSequence)
        try table.copy(from: (0..<Int32(batch * pagesPerSequence)).map { $0 })
        let lengths = try context.allocate(Int32.self, count: batch)
        try lengths.copy(from: [Int32](repeating: Int32(length), count: batch))
        let workspace = try context.allocate(
            Float.self, count: DecodeAttentionKernel.workspaceCount(sequences: batch, qHeads: qHeads, headDim: headDim, maxLength: length))
        let out = try context.allocate(BFloat16.self, count: q.count)

        var times: [PagedKVCache.Format: Double] = [:]
        for format in [PagedKVCache.Format.kv4, .bf16] {
            let caches = try randomCaches(format, tokens: batch * length, pages: batch * pagesPerSequence, kvHeads: kvHeads,
                                          headDim: headDim, random: &random, on: stream)
            let copies = caches.count
            times[format] = try microsecondsPerCall(on: stream) { i in
                try attention(q: q, cache: caches[i % copies], blockTable: table, maxPages: pagesPerSequence, lengths: lengths,
                              maxLength: length, qHeads: qHeads, softmaxScale: 1 / Float(headDim).squareRoot(),
                              workspace: workspace, into: out, on: stream)
            }
        }
        let tokens = batch * length * kvHeads
        return Row(batch: batch, length: length, qHeads: qHeads, kvHeads: kvHeads, headDim: headDim,
                   kv4: times[.kv4]!, bf16: times[.bf16]!, kv4Bytes: tokens * 2 * (headDim / 2 + 4), bf16Bytes: tokens * 4 * headDim)
    }

    /// Copies of a cache of `pages` pages of random K and V, enough of them (up to 8) that rotating
    /// through them keeps small caches from being served from the L2.
    func randomCaches(
        _ format: PagedKVCache.Format, tokens: Int, pages: Int, kvHeads: Int, headDim: Int, random: inout SplitMix64, on stream: CUDAStream
    ) throws -> [PagedKVCache] {
        let context = library.context
        let bytes = tokens * kvHeads * (format == .kv4 ? 2 * (headDim / 2 + 4) : 4 * headDim)
        let copies = max(1, min(8, (3 * context.device.l2CacheBytes + bytes - 1) / bytes))
        var caches: [PagedKVCache] = []
        for _ in 0..<copies {
            let cache = try PagedKVCache(format: format, pages: pages, pageSize: pageSize, kvHeads: kvHeads, headDim: headDim, context: context)
            if format == .kv4 {
                for buffer in [cache.k, cache.v] { try fillRandom(buffer, on: stream) { random.bytes($0) } }
                for params in [cache.kParams, cache.vParams] {
                    try fillRandom(params, on: stream) { n in
                        (0..<n).map { _ in
                            UInt32(Float16(Float.random(in: 0.01...0.1, using: &random)).bitPattern)
                                | UInt32(Float16(Float.random(in: -0.8 ... -0.2, using: &random)).bitPattern) << 16
                        }
                    }
                }
            } else {
                for buffer in [cache.k, cache.v] {
                    try fillRandom(buffer, on: stream) { randomBF16Bytes($0, using: &random) }
                }
            }
            caches.append(cache)
        }
        return caches
    }

    /// One prefill launch: `chunk` new tokens of one sequence after `prefix` cached ones, each query
    /// row causal over its positions, as the GPU runner launches them (up to 256 rows at a time).
    public struct PrefillRow: Sendable, Codable {
        public let prefix: Int, chunk: Int, qHeads: Int, kvHeads: Int, headDim: Int
        /// Microseconds per launch: KV4 in query tiles (the runner's path), KV4 one row per CTA
        /// (the path before query tiles), and bf16 KV one row per CTA (the baseline's kernel).
        public let kv4Tiled: Double, kv4PerRow: Double, bf16: Double
        public var tileGain: Double { kv4PerRow / kv4Tiled }
        public var speedup: Double { bf16 / kv4Tiled }
    }

    public func runPrefill(prefix: Int, chunk: Int, qHeads: Int = 32, kvHeads: Int = 8, headDim: Int = 128) throws -> PrefillRow {
        let context = library.context
        let stream = try context.makeStream()
        let attention = try DecodeAttentionKernel(library: library, tuning: tuning)
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let length = prefix + chunk, pages = (length + pageSize - 1) / pageSize
        let q = try context.allocate(BFloat16.self, count: chunk * qHeads * headDim)
        try fillRandom(q, on: stream) { n in (0..<n).map { _ in BFloat16(Float.random(in: -1...1, using: &random)) } }
        let table = try context.allocate(Int32.self, count: chunk * pages)
        try table.copy(from: (0..<chunk).flatMap { _ in (0..<Int32(pages)).map { $0 } })
        let lengths = try context.allocate(Int32.self, count: chunk)
        try lengths.copy(from: (0..<chunk).map { Int32(prefix + $0 + 1) })
        let rowsPerTile = DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: qHeads, kvHeads: kvHeads)
        var tileHost = [Int32](repeating: 0, count: 2 * chunk)
        let tileCount = tileHost.withUnsafeMutableBufferPointer {
            DecodeAttentionKernel.appendQueryTiles(rows: 0..<chunk, rowsPerTile: rowsPerTile, into: $0.baseAddress!, at: 0)
        }
        let tiles = try context.allocate(Int32.self, count: 2 * tileCount)
        try tiles.copy(from: Array(tileHost[..<(2 * tileCount)]))
        let workspace = try context.allocate(
            Float.self, count: DecodeAttentionKernel.workspaceCount(sequences: chunk, qHeads: qHeads, headDim: headDim, maxLength: length))
        let out = try context.allocate(BFloat16.self, count: q.count)
        func time(_ format: PagedKVCache.Format, tiled: Bool) throws -> Double {
            let caches = try randomCaches(format, tokens: length, pages: pages, kvHeads: kvHeads, headDim: headDim, random: &random, on: stream)
            return try microsecondsPerCall(on: stream) { i in
                try attention(q: q, cache: caches[i % caches.count], blockTable: table, maxPages: pages, lengths: lengths,
                              maxLength: length, qHeads: qHeads, softmaxScale: 1 / Float(headDim).squareRoot(),
                              queryTiles: tiled ? .init(tiles: tiles, count: tileCount) : nil, workspace: workspace, into: out, on: stream)
            }
        }
        return PrefillRow(prefix: prefix, chunk: chunk, qHeads: qHeads, kvHeads: kvHeads, headDim: headDim,
                          kv4Tiled: try time(.kv4, tiled: true), kv4PerRow: try time(.kv4, tiled: false), bf16: try time(.bf16, tiled: false))
    }

    public static func prefillTable(_ rows: [PrefillRow], device: String) -> String {
        var lines = ["prefill attention on \(device): one launch of C query rows after P cached tokens (causal, paged); microseconds per launch"]
        lines.append(padded("P", 7) + padded("C", 6) + padded("heads", 9) + padded("kv4 tiled", 11) + padded("kv4 per-row", 13)
            + padded("bf16 per-row", 14) + padded("tiles gain", 12) + "vs bf16")
        for r in rows {
            lines.append(padded("\(r.prefix)", 7) + padded("\(r.chunk)", 6) + padded("\(r.qHeads)/\(r.kvHeads)", 9)
                + padded(fixed(r.kv4Tiled, 1), 11) + padded(fixed(r.kv4PerRow, 1), 13) + padded(fixed(r.bf16, 1), 14)
                + padded(fixed(r.tileGain, 2) + "x", 12) + fixed(r.speedup, 2) + "x")
        }
        return lines.joined(separator: "\n")
    }

    public static func table(_ rows: [Row], device: String) -> String {
        var lines = ["decode attention on \(device): paged KV4 (4-bit codes + fp16 scale/zero per token-head) vs the same kernel on a bf16 cache; microseconds per call"]
        lines.append(padded("B", 6) + padded("L", 7) + padded("heads", 8) + padded("kv4 us", 10) + padded("TB/s", 8)
            + padded("bf16 us", 10) + padded("TB/s", 8) + "speedup")
        for r in rows {
            lines.append(padded("\(r.batch)", 6) + padded("\(r.length)", 7) + padded("\(r.qHeads)/\(r.kvHeads)", 8)
                + padded(fixed(r.kv4, 1), 10) + padded(fixed(r.kv4TBps, 2), 8) + padded(fixed(r.bf16, 1), 10)
                + padded(fixed(r.bf16TBps, 2), 8) + fixed(r.speedup, 2) + "x")
        }
        return lines.joined(separator: "\n")
    }
}
