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
    static let all = [kv4, bf16]

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
        DecodeAttentionKernel.Tuning(stages: 4), DecodeAttentionKernel.Tuning(stages: 8, splitLength: 64),
        DecodeAttentionKernel.Tuning(stages: 8, splitLength: 4096),
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

    static func check(_ attention: DecodeAttentionKernel, _ format: PagedKVCache.Format, _ c: Case, _ env: inout GPUCheckEnvironment) throws {
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
        let q = (0..<sequences * c.qHeads * d).map { _ in BFloat16(Float.random(in: -1...1, using: &env.random)) }
        let scale = 1 / Float(d).squareRoot()
        let expected = DecodeAttention.reference(
            q: q.map(\.float), keys: keys, values: values, qHeads: c.qHeads, kvHeads: c.kvHeads, headDim: d, scale: scale)

        let dq = try env.context.allocate(BFloat16.self, count: q.count)
        try dq.copy(from: q)
        let dTable = try env.context.allocate(Int32.self, count: table.count)
        try dTable.copy(from: table)
        let dLengths = try env.context.allocate(Int32.self, count: sequences)
        try dLengths.copy(from: c.lengths.map { Int32($0) })
        let workspace = try env.context.allocate(
            Float.self, count: DecodeAttentionKernel.workspaceCount(sequences: sequences, qHeads: c.qHeads, headDim: d, maxLength: maxLength))
        let out = try env.context.allocate(BFloat16.self, count: q.count)
        try out.fill(byte: 0xFF, on: env.stream)  // NaN
        try attention(q: dq, cache: cache, blockTable: dTable, maxPages: maxPages, lengths: dLengths, maxLength: maxLength,
                      qHeads: c.qHeads, softmaxScale: scale, workspace: workspace, into: out, on: env.stream)
        try env.stream.synchronize()
        let got = try out.toArray()
        let vmax = values.flatMap { $0 }.map(abs).max() ?? 0
        for i in got.indices {
            let g = got[i].float, e = expected[i]
            guard g.isFinite, abs(g - e) <= abs(e) / 256 + 2e-3 * vmax else {
                let s = i / (c.qHeads * d), h = i / d % c.qHeads
                throw CheckFailure("\(format) \(c) stages \(attention.tuning.stages) split \(attention.tuning.splitLength.map(String.init) ?? "auto"): out[seq \(s), head \(h), dim \(i % d)] = \(g), expected \(e)")
            }
        }
    }
}
