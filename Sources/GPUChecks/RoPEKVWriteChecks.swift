import CPUBackend
import CPUReference
import CUDA
import Kernels
import Model
import Quant

/// rope_kv_write.cu against the CPU backend's RotaryEmbedding followed by Quant.KV4: the same
/// fp32 tables and the same operation order, so q, the KV4 codes and their (scale, zero), and
/// the bf16 cache must all match bit for bit. With key rotation the reference applies
/// `BlockHadamard.transform` to k (and to q, then 1/d) after RoPE, in the same butterfly order.
enum RoPEKVWriteChecks {
    static let all = [kv4, bf16]

    struct Case: CustomStringConvertible {
        var tokens: Int, qHeads: Int, kvHeads: Int, headDim: Int, convention: RoPEConvention, base: Double, rotateKeys = false
        var description: String {
            "\(tokens) tokens heads \(qHeads)/\(kvHeads) d\(headDim) \(convention) base \(Int(base))\(rotateKeys ? " keys rotated" : "")"
        }
    }

    static let cases = [
        Case(tokens: 5, qHeads: 9, kvHeads: 3, headDim: 64, convention: .adjacentPairs, base: 100_000),  // SmolLM2
        Case(tokens: 7, qHeads: 32, kvHeads: 8, headDim: 128, convention: .adjacentPairs, base: 500_000),
        Case(tokens: 3, qHeads: 4, kvHeads: 2, headDim: 128, convention: .halves, base: 10_000),
        Case(tokens: 4, qHeads: 2, kvHeads: 1, headDim: 64, convention: .halves, base: 10_000),
        Case(tokens: 6, qHeads: 9, kvHeads: 3, headDim: 64, convention: .adjacentPairs, base: 100_000, rotateKeys: true),
        Case(tokens: 5, qHeads: 32, kvHeads: 8, headDim: 128, convention: .adjacentPairs, base: 500_000, rotateKeys: true),
        Case(tokens: 3, qHeads: 4, kvHeads: 2, headDim: 128, convention: .halves, base: 10_000, rotateKeys: true),
    ]

    static let kv4 = GPUCheck("rope_kv_write.kv4") { env in try run(.kv4, &env) }
    static let bf16 = GPUCheck("rope_kv_write.bf16") { env in try run(.bf16, &env) }

    static func run(_ format: PagedKVCache.Format, _ env: inout GPUCheckEnvironment) throws -> String {
        let kernel = try RoPEKVWrite(library: env.library)
        for c in cases { try check(kernel, format, c, &env) }
        return cases.map(\.description).joined(separator: "; ")
    }

    static func check(_ kernel: RoPEKVWrite, _ format: PagedKVCache.Format, _ c: Case, _ env: inout GPUCheckEnvironment) throws {
        let d = c.headDim, pairs = d / 2, maxPositions = 5000, pageSize = 16, pages = 8
        let config = ModelConfig(
            vocabularySize: 16, dim: c.qHeads * d, layerCount: 1, headCount: c.qHeads, kvHeadCount: c.kvHeads, headDim: d,
            ffnDim: 16, ropeBase: c.base, ropeConvention: c.convention, contextLength: maxPositions)
        let rope = try RotaryEmbedding(config: config)
        var cosTable = [Float](repeating: 0, count: maxPositions * pairs), sinTable = cosTable
        cosTable.withUnsafeMutableBufferPointer { cp in
            sinTable.withUnsafeMutableBufferPointer { sp in
                rope.fillTables(firstPosition: 0, tokens: maxPositions, cos: cp.baseAddress!, sin: sp.baseAddress!)
            }
        }
        let heads = c.qHeads + 2 * c.kvHeads
        let qkv = (0..<c.tokens * heads * d).map { _ in BFloat16(Float.random(in: -3...3, using: &env.random)) }
        let positions = (0..<c.tokens).map { _ in Int32.random(in: 0..<Int32(maxPositions), using: &env.random) }
        var allSlots = Array(0..<Int32(pages * pageSize))
        allSlots.shuffle(using: &env.random)
        let slots = Array(allSlots.prefix(c.tokens))

        // The reference: rotate q and k rows with the CPU backend, then quantize k and v.
        let cache = try PagedKVCache(format: format, pages: pages, pageSize: pageSize, kvHeads: c.kvHeads, headDim: d, context: env.context)
        let rowBytes = format == .kv4 ? d / 2 : 2 * d
        var expectedQ: [BFloat16] = []
        var expectedK = [UInt8](repeating: 0, count: cache.k.count), expectedV = expectedK
        var expectedKP = [UInt32](repeating: 0, count: cache.kParams.count), expectedVP = expectedKP
        for t in 0..<c.tokens {
            var row = qkv[t * heads * d..<(t + 1) * heads * d].map(\.float)
            let p = Int(positions[t]) * pairs
            row.withUnsafeMutableBufferPointer { x in
                cosTable.withUnsafeBufferPointer { cp in
                    sinTable.withUnsafeBufferPointer { sp in
                        rope.apply(x.baseAddress!, rowStride: heads * d, tokens: 1, heads: c.qHeads + c.kvHeads,
                                   cos: cp.baseAddress! + p, sin: sp.baseAddress! + p)
                    }
                }
            }
            if c.rotateKeys {
                row.withUnsafeMutableBufferPointer { x in
                    for h in 0..<(c.qHeads + c.kvHeads) {
                        BlockHadamard.transform(x.baseAddress! + h * d, count: d)
                        if h < c.qHeads { for i in h * d..<(h + 1) * d { x[i] *= 1 / Float(d) } }
                    }
                }
            }
            expectedQ += row[0..<c.qHeads * d].map(BFloat16.init)
            for h in 0..<2 * c.kvHeads {
                let isV = h >= c.kvHeads, kvh = h % c.kvHeads
                let values = Array(row[(c.qHeads + h) * d..<(c.qHeads + h + 1) * d])
                let slot = Int(slots[t]), cacheRow = ((slot / pageSize) * c.kvHeads + kvh) * pageSize + slot % pageSize
                var bytes = [UInt8](repeating: 0, count: rowBytes)
                if format == .kv4 {
                    let (scale, zero) = values.withUnsafeBufferPointer { v in bytes.withUnsafeMutableBufferPointer { KV4.quantize(v, into: $0) } }
                    let word = UInt32(scale.bitPattern) | UInt32(zero.bitPattern) << 16
                    if isV { expectedVP[cacheRow] = word } else { expectedKP[cacheRow] = word }
                } else {
                    for i in 0..<d {
                        let b = BFloat16(values[i]).bits
                        bytes[2 * i] = UInt8(truncatingIfNeeded: b)
                        bytes[2 * i + 1] = UInt8(truncatingIfNeeded: b >> 8)
                    }
                }
                if isV {
                    expectedV.replaceSubrange(cacheRow * rowBytes..<(cacheRow + 1) * rowBytes, with: bytes)
                } else {
                    expectedK.replaceSubrange(cacheRow * rowBytes..<(cacheRow + 1) * rowBytes, with: bytes)
                }
            }
        }

        func upload<T: BitwiseCopyable>(_ values: [T]) throws -> DeviceBuffer<T> {
            let buffer = try env.context.allocate(T.self, count: values.count)
            try buffer.copy(from: values)
            return buffer
        }
        // Rows the kernel must not touch start as zeros, like the expectation.
        for buffer in [cache.k, cache.v] { try buffer.fill(byte: 0, on: env.stream) }
        for buffer in [cache.kParams, cache.vParams] { try buffer.fill(byte: 0, on: env.stream) }
        let qOut = try env.context.allocate(BFloat16.self, count: c.tokens * c.qHeads * d)
        try qOut.fill(byte: 0xFF, on: env.stream)
        try kernel(qkv: upload(qkv), positions: upload(positions), slots: upload(slots), cos: upload(cosTable), sin: upload(sinTable),
                   adjacentPairs: c.convention == .adjacentPairs, qHeads: c.qHeads, rotateKeys: c.rotateKeys, cache: cache, qOut: qOut,
                   on: env.stream)
        try env.stream.synchronize()
        try expectEqual(try qOut.toArray().map(\.bits), expectedQ.map(\.bits), "\(format) \(c): rotated q")
        try expectEqual(try cache.k.toArray(), expectedK, "\(format) \(c): K cache")
        try expectEqual(try cache.v.toArray(), expectedV, "\(format) \(c): V cache")
        if format == .kv4 {
            try expectEqual(try cache.kParams.toArray(), expectedKP, "\(format) \(c): K scale and zero")
            try expectEqual(try cache.vParams.toArray(), expectedVP, "\(format) \(c): V scale and zero")
        }
    }
}
