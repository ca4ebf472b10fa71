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
            // Rotate caches so that small ones are not served from the L2.
            let bytes = batch * length * kvHeads * (format == .kv4 ? 2 * (headDim / 2 + 4) : 4 * headDim)
            let copies = max(1, min(8, (3 * context.device.l2CacheBytes + bytes - 1) / bytes))
            var caches: [PagedKVCache] = []
            for _ in 0..<copies {
                let cache = try PagedKVCache(
                    format: format, pages: batch * pagesPerSequence, pageSize: pageSize, kvHeads: kvHeads, headDim: headDim, context: context)
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
