import CUDA
import Quant

/// rope_kv_write.cu: RoPE on q and k of the new tokens, then k and v into the paged cache.
public struct RoPEKVWrite: Sendable {
    struct Variant: Hashable, Sendable { let format: PagedKVCache.Format, headDim: Int, adjacentPairs: Bool }
    let functions: KernelVariants<Variant>

    public init(library: KernelLibrary) throws {
        let variants = [PagedKVCache.Format.kv4, .bf16].flatMap { format in
            [64, 128].flatMap { d in [true, false].map { Variant(format: format, headDim: d, adjacentPairs: $0) } }
        }
        functions = try KernelVariants(library: library, source: "rope_kv_write.cu", keys: variants) {
            "rope_kv_write_\($0.format.rawValue)_d\($0.headDim)_\($0.adjacentPairs ? "adjacent" : "half")"
        }
    }

    /// - Parameters:
    ///   - qkv: [tokens, (qHeads + 2 kvHeads) * headDim] bf16: q heads, k heads, v heads.
    ///   - positions: [tokens] positions, each below the tables' rows.
    ///   - slots: [tokens] cache slots, page * pageSize + offset.
    ///   - cos, sin: [positions, headDim / 2] fp32.
    ///   - adjacentPairs: GGUF's (2i, 2i + 1) pairing; false for rotate-half (i, i + d/2).
    ///   - rotateKeys: after RoPE, k <- H·k and q <- H·q / headDim (`KVCacheSettings.keyRotation`).
    ///   - qOut: [tokens, qHeads, headDim] bf16.
    public func callAsFunction(
        qkv: DeviceBuffer<BFloat16>, positions: DeviceBuffer<Int32>, slots: DeviceBuffer<Int32>,
        cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>, adjacentPairs: Bool, qHeads: Int, rotateKeys: Bool = false,
        cache: PagedKVCache, qOut: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        let tokens = positions.count, d = cache.headDim
        guard tokens > 0, slots.count == tokens, qkv.count == tokens * (qHeads + 2 * cache.kvHeads) * d,
              qOut.count == tokens * qHeads * d, cos.count == sin.count, cos.count % (d / 2) == 0
        else {
            throw CUDAError.invalidArgument(
                "rope_kv_write: qkv \(qkv.count), q_out \(qOut.count), \(slots.count) slots, tables \(cos.count)/\(sin.count) for \(tokens) tokens of \(qHeads)+2x\(cache.kvHeads) heads x \(d)")
        }
        try functions[Variant(format: cache.format, headDim: d, adjacentPairs: adjacentPairs)].launch(
            grid: Dim3(tokens, (qHeads + 2 * cache.kvHeads + 7) / 8), block: Dim3(256), on: stream,
            qkv.pointer, positions.pointer, slots.pointer, cos.pointer, sin.pointer, Int32(qHeads), Int32(cache.kvHeads),
            Int32(cache.pageSize), Int32(rotateKeys ? 1 : 0), qOut.pointer, cache.k.pointer, cache.v.pointer, cache.kParams.pointer, cache.vParams.pointer)
    }
}
