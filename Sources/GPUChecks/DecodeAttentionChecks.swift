import CPUReference
import CUDA
import Kernels
import Quant

/// attention_decode.cu (KV4 and bf16 caches) against CPUReference.DecodeAttention on the
/// values the cache holds (dequantized KV4, or bf16-rounded).
///
/// Tolerance: |gpu - ref| <= 2^-8 |ref| + 2e-3 max|V|: bf16 output rounding, plus fp32 sums
/// and expf against the Double reference (errors well under 1e-4 relative of the largest
/// value the output averages).
enum DecodeAttentionChecks {
    static let all = [kv4, bf16, prefillKV4]

    struct Case: CustomStringConvertible {
        var lengths: [Int], qHeads: Int, kvHeads: Int, headDim: Int, pageSize: Int
        var description: String { "lengths \(lengths) heads \(qHeads)/\(kvHeads) d\(headDim) page \(pageSize)" }
    }

    static let cases = [
        Case(lengths: [1], qHeads: 4, kvHeads: 1, headDim: 128, pageSize: 16),
        Case(lengths: [37, 300, 5], qHeads: 32, kvHeads: 8, headDim: 128, pageSize: 16),   // Llama-3 heads
        Case(lengths: [2049, 0, 700], qHeads: 9, kvHeads: 3, headDim: 64, pageSize: 64),   // SmolLM2 heads, an empty sequence
        Case(lengths: [1500, 64], qHeads: 16, kvHeads: 2, headDim: 128, pageSize: 64),    // group 8: two CTAs per KV head
        Case(lengths: [4100], qHeads: 2, kvHeads: 2, headDim: 64, pageSize: 32),          // no grouping, many splits
        // Pages that do not hold whole 16-token blocks: each token's row from the table.
        Case(lengths: [333, 17], qHeads: 32, kvHeads: 8, headDim: 128, pageSize: 8),
        Case(lengths: [999], qHeads: 12, kvHeads: 1, headDim: 64, pageSize: 24),          // group 12: the 16-head variant
    ]

    /// The KV4 tensor-core kernel's pipeline depths, with the shortest and longest splits.
    static let kv4Tunings = [
        DecodeAttentionKernel.Tuning(stages: 4), DecodeAttentionKernel.Tuning(stages: 8),
        DecodeAttentionKernel.Tuning(stages: 4, splitLength: 64), DecodeAttentionKernel.Tuning(stages: 8, splitLength: 64),
        DecodeAttentionKernel.Tuning(stages: 4, splitLength: 4096),
    ]

    static let kv4 = GPUCheck("decode_attention.kv4") { env in try run(.kv4, &env) }
    static let bf16 = GPUCheck("decode_attention.bf16") { env in try run(.bf16, &env) }

    static func run(_ format: PagedKVCache.Format, _ env: inout GPUCheckEnvironment) throws -> String {
        for tuning in format == .kv4 ? kv4Tunings : [DecodeAttentionKernel.Tuning()] {
            let attention = try DecodeAttentionKernel(library: env.library, tuning: tuning)
            for c in cases { try check(attention, format, c, &env) }
        }
        let tunings = format == .kv4 ? "; stages/split " + kv4Tunings.map { "\($0.stages)/\($0.splitLength.map(String.init) ?? "auto")" }.joined(separator: ", ") : ""
        return cases.map(\.description).joined(separator: "; ") + tunings
    }

    /// A cache filled with random K and V for sequences of `c.lengths` tokens on shuffled pages.
    struct FilledCache {
        var cache: PagedKVCache
        /// [sequences, maxPages]
        var table: [Int32]
        var maxPages: Int
        /// Per sequence, [length, kvHeads, headDim]: the values the cache holds.
        var keys: [[Float]], values: [[Float]]
    }

    static func check(_ attention: DecodeAttentionKernel, _ format: PagedKVCache.Format, _ c: Case, _ env: inout GPUCheckEnvironment) throws {
        let d = c.headDim, sequences = c.lengths.count
        let filled = try fill(format, c, &env)
        let maxLength = c.lengths.max()!
        let q = (0..<sequences * c.qHeads * d).map { _ in BFloat16(Float.random(in: -1...1, using: &env.random)) }
        let scale = 1 / Float(d).squareRoot()
        let expected = DecodeAttention.reference(
            q: q.map(\.float), keys: filled.keys, values: filled.values, qHeads: c.qHeads, kvHeads: c.kvHeads, headDim: d, scale: scale)
        let got = try launch(attention, filled, q: q, table: filled.table, lengths: c.lengths, maxLength: maxLength,
                             qHeads: c.qHeads, scale: scale, tiles: nil, &env)
        try compare(got, expected, values: filled.values, qHeads: c.qHeads, headDim: d) {
            "\(format) \(c) stages \(attention.tuning.stages) split \(attention.tuning.splitLength.map(String.init) ?? "auto"): \($0)"
        }
    }

    /// Runs the kernel on `q` ([rows, qHeads, headDim]) with one block-table row and causal length per row.
    static func launch(
        _ attention: DecodeAttentionKernel, _ filled: FilledCache, q: [BFloat16], table: [Int32], lengths: [Int], maxLength: Int,
        qHeads: Int, scale: Float, tiles: [Int32]?, _ env: inout GPUCheckEnvironment
    ) throws -> [BFloat16] {
        let rows = lengths.count, d = filled.cache.headDim
        let dq = try env.context.allocate(BFloat16.self, count: q.count)
        try dq.copy(from: q)
        let dTable = try env.context.allocate(Int32.self, count: table.count)
        try dTable.copy(from: table)
        let dLengths = try env.context.allocate(Int32.self, count: rows)
        try dLengths.copy(from: lengths.map { Int32($0) })
        var queryTiles: DecodeAttentionKernel.QueryTiles?
        if let tiles {
            let dTiles = try env.context.allocate(Int32.self, count: tiles.count)
            try dTiles.copy(from: tiles)
            queryTiles = DecodeAttentionKernel.QueryTiles(tiles: dTiles, count: tiles.count / 2)
        }
        let workspace = try env.context.allocate(
            Float.self, count: DecodeAttentionKernel.workspaceCount(sequences: rows, qHeads: qHeads, headDim: d, maxLength: maxLength))
        let out = try env.context.allocate(BFloat16.self, count: q.count)
        try out.fill(byte: 0xFF, on: env.stream)  // NaN
        try attention(q: dq, cache: filled.cache, blockTable: dTable, maxPages: filled.maxPages, lengths: dLengths, maxLength: maxLength,
                      qHeads: qHeads, softmaxScale: scale, queryTiles: queryTiles, workspace: workspace, into: out, on: env.stream)
        try env.stream.synchronize()
        return try out.toArray()
    }

    static func compare(
        _ got: [BFloat16], _ expected: [Float], values: [[Float]], qHeads: Int, headDim d: Int, _ context: (String) -> String
    ) throws {
        let vmax = values.flatMap { $0 }.map(abs).max() ?? 0
        for i in got.indices {
            let g = got[i].float, e = expected[i]
            guard g.isFinite, abs(g - e) <= abs(e) / 256 + 2e-3 * vmax else {
                throw CheckFailure(context("out[row \(i / (qHeads * d)), head \(i / d % qHeads), dim \(i % d)] = \(g), expected \(e)"))
            }
        }
    }

    static func fill(_ format: PagedKVCache.Format, _ c: Case, _ env: inout GPUCheckEnvironment) throws -> FilledCache {
        let d = c.headDim, sequences = c.lengths.count
        let maxLength = c.lengths.max()!, maxPages = max(1, (maxLength + c.pageSize - 1) / c.pageSize)
        let pages = c.lengths.reduce(0) { $0 + ($1 + c.pageSize - 1) / c.pageSize } + 3  // a few unused
        let cache = try PagedKVCache(format: format, pages: pages, pageSize: c.pageSize, kvHeads: c.kvHeads, headDim: d, context: env.context)
        // Pages are handed out in a shuffled order, so the block table's indirection is exercised.
        var free = Array(0..<Int32(pages))
        free.shuffle(using: &env.random)
        var table = [Int32](repeating: -1, count: sequences * maxPages)
        let rowBytes = format == .kv4 ? d / 2 : 2 * d
        var kBytes = [UInt8](repeating: 0, count: cache.k.count), vBytes = kBytes
        var kParams = [UInt32](repeating: 0, count: cache.kParams.count), vParams = kParams
        var keys: [[Float]] = [], values: [[Float]] = []
        for (s, length) in c.lengths.enumerated() {
            for p in 0..<(length + c.pageSize - 1) / c.pageSize { table[s * maxPages + p] = free.removeLast() }
            var sk = [Float](repeating: 0, count: length * c.kvHeads * d), sv = sk
            for t in 0..<length {
                for h in 0..<c.kvHeads {
                    let row = (Int(table[s * maxPages + t / c.pageSize]) * c.kvHeads + h) * c.pageSize + t % c.pageSize
                    let base = (t * c.kvHeads + h) * d
                    for target in 0..<2 {  // 0: K, 1: V (offset so their means differ)
                        let x = (0..<d).map { _ in Float.random(in: -2...2, using: &env.random) + (target == 0 ? 0.5 : -0.25) }
                        var stored = [Float](repeating: 0, count: d)
                        if format == .kv4 {
                            var codes = [UInt8](repeating: 0, count: d / 2)
                            let (scale, zero) = x.withUnsafeBufferPointer { xs in codes.withUnsafeMutableBufferPointer { KV4.quantize(xs, into: $0) } }
                            codes.withUnsafeBufferPointer { cs in stored.withUnsafeMutableBufferPointer { KV4.dequantize(cs, scale: scale, zero: zero, into: $0) } }
                            let word = UInt32(scale.bitPattern) | UInt32(zero.bitPattern) << 16
                            if target == 0 {
                                kBytes.replaceSubrange(row * rowBytes..<(row + 1) * rowBytes, with: codes)
                                kParams[row] = word
                            } else {
                                vBytes.replaceSubrange(row * rowBytes..<(row + 1) * rowBytes, with: codes)
                                vParams[row] = word
                            }
                        } else {
                            var bytes = [UInt8](repeating: 0, count: rowBytes)
                            for i in 0..<d {
                                let b = BFloat16(x[i])
                                stored[i] = b.float
                                bytes[2 * i] = UInt8(truncatingIfNeeded: b.bits)
                                bytes[2 * i + 1] = UInt8(truncatingIfNeeded: b.bits >> 8)
                            }
                            if target == 0 { kBytes.replaceSubrange(row * rowBytes..<(row + 1) * rowBytes, with: bytes) }
                            else { vBytes.replaceSubrange(row * rowBytes..<(row + 1) * rowBytes, with: bytes) }
                        }
                        if target == 0 { sk.replaceSubrange(base..<base + d, with: stored) } else { sv.replaceSubrange(base..<base + d, with: stored) }
                    }
                }
            }
            keys.append(sk)
            values.append(sv)
        }
        try cache.k.copy(from: kBytes)
        try cache.v.copy(from: vBytes)
        try cache.kParams.copy(from: kParams)
        try cache.vParams.copy(from: vParams)
        return FilledCache(cache: cache, table: table, maxPages: maxPages, keys: keys, values: values)
    }

    /// Prefill: `new` query tokens per sequence after `prefix` cached ones, each row causal over
    /// positions 0...its own, taken in query tiles (several tokens x the GQA group per CTA).
    struct PrefillCase: CustomStringConvertible {
        var segments: [(prefix: Int, new: Int)], qHeads: Int, kvHeads: Int, headDim: Int, pageSize: Int
        var description: String {
            "prefill \(segments.map { "\($0.prefix)+\($0.new)" }) heads \(qHeads)/\(kvHeads) d\(headDim) page \(pageSize)"
        }
    }

    static let prefillCases = [
        PrefillCase(segments: [(0, 37), (300, 100), (5, 1)], qHeads: 32, kvHeads: 8, headDim: 128, pageSize: 16),  // 4 tokens a tile
        PrefillCase(segments: [(0, 200), (700, 33)], qHeads: 9, kvHeads: 3, headDim: 64, pageSize: 64),   // group 3: 5 tokens a tile
        PrefillCase(segments: [(4000, 20)], qHeads: 2, kvHeads: 2, headDim: 64, pageSize: 32),            // no grouping: 16 a tile, splits
        PrefillCase(segments: [(60, 70)], qHeads: 16, kvHeads: 2, headDim: 128, pageSize: 64),            // group 8: 2 a tile
        PrefillCase(segments: [(17, 50), (0, 3)], qHeads: 32, kvHeads: 8, headDim: 128, pageSize: 8),     // pages of 8 tokens
    ]

    static let prefillKV4 = GPUCheck("decode_attention.prefill_kv4") { env in
        for tuning in kv4Tunings {
            let attention = try DecodeAttentionKernel(library: env.library, tuning: tuning)
            for c in prefillCases { try checkPrefill(attention, c, &env) }
        }
        return prefillCases.map(\.description).joined(separator: "; ")
    }

    static func checkPrefill(_ attention: DecodeAttentionKernel, _ c: PrefillCase, _ env: inout GPUCheckEnvironment) throws {
        let d = c.headDim
        let filled = try fill(.kv4, Case(lengths: c.segments.map { $0.prefix + $0.new }, qHeads: c.qHeads, kvHeads: c.kvHeads,
                                         headDim: d, pageSize: c.pageSize), &env)
        let rowsPerTile = DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: c.qHeads, kvHeads: c.kvHeads)
        let rows = c.segments.reduce(0) { $0 + $1.new }
        var table: [Int32] = [], lengths: [Int] = [], tiles = [Int32](repeating: 0, count: 2 * rows), tileCount = 0
        for (s, segment) in c.segments.enumerated() {
            let first = lengths.count
            for position in segment.prefix..<(segment.prefix + segment.new) {
                table += filled.table[s * filled.maxPages..<(s + 1) * filled.maxPages]
                lengths.append(position + 1)
            }
            tileCount = tiles.withUnsafeMutableBufferPointer {
                DecodeAttentionKernel.appendQueryTiles(rows: first..<lengths.count, rowsPerTile: rowsPerTile, into: $0.baseAddress!, at: tileCount)
            }
        }
        let q = (0..<rows * c.qHeads * d).map { _ in BFloat16(Float.random(in: -1...1, using: &env.random)) }
        let scale = 1 / Float(d).squareRoot()
        var expected: [Float] = []
        var row = 0
        for (s, segment) in c.segments.enumerated() {
            for position in segment.prefix..<(segment.prefix + segment.new) {
                let visible = (position + 1) * c.kvHeads * d, qRow = q[row * c.qHeads * d..<(row + 1) * c.qHeads * d]
                expected += DecodeAttention.reference(
                    q: qRow.map(\.float), keys: [Array(filled.keys[s][..<visible])], values: [Array(filled.values[s][..<visible])],
                    qHeads: c.qHeads, kvHeads: c.kvHeads, headDim: d, scale: scale)
                row += 1
            }
        }
        let got = try launch(attention, filled, q: q, table: table, lengths: lengths, maxLength: lengths.max()!, qHeads: c.qHeads,
                             scale: scale, tiles: Array(tiles[..<(2 * tileCount)]), &env)
        try compare(got, expected, values: filled.values, qHeads: c.qHeads, headDim: d) {
            "\(c) (\(tileCount) tiles of up to \(rowsPerTile)) stages \(attention.tuning.stages) split \(attention.tuning.splitLength.map(String.init) ?? "auto"): \($0)"
        }
    }
}
