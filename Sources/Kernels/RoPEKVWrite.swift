import CUDA
import Quant

/// rope_kv_write.cu: RoPE on q and k of the new tokens, then k and v into the paged cache.
public struct RoPEKVWrite: Sendable {
    let functions: [String: KernelFunction]

    public init(library: KernelLibrary) throws {
        var functions: [String: KernelFunction] = [:]
        for format in ["kv4", "bf16"] {
            for d in [64, 128] {
                for pairing in ["adjacent", "half"] {
                    let name = "rope_kv_write_\(format)_d\(d)_\(pairing)"
                    functions[name] = try library.function(name, in: "rope_kv_write.cu")
                }
            }
        }
        self.functions = functions
    }

    /// - Parameters:
    ///   - qkv: [tokens, (qHeads + 2 kvHeads) * headDim] bf16: q heads, k heads, v heads.
    ///   - positions: [tokens] positions, each below the tables' rows.
    ///   - slots: [tokens] cache slots, page * pageSize + offset.
    ///   - cos, sin: [positions, headDim / 2] fp32.
    ///   - adjacentPairs: GGUF's (2i, 2i + 1) pairing; false for rotate-half (i, i + d/2).
    ///   - qOut: [tokens, qHeads, headDim] bf16.
    public func callAsFunction(
        qkv: DeviceBuffer<BFloat16>, positions: DeviceBuffer<Int32>, slots: DeviceBuffer<Int32>,
        cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>, adjacentPairs: Bool, qHeads: Int,
        cache: PagedKVCache, qOut: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        let tokens = positions.count, d = cache.headDim
        guard tokens > 0, slots.count == tokens, qkv.count == tokens * (qHeads + 2 * cache.kvHeads) * d,
              qOut.count == tokens * qHeads * d, cos.count == sin.count, cos.count % (d / 2) == 0
        else {
            throw CUDAError.invalidArgument(
                "rope_kv_write: qkv \(qkv.count), q_out \(qOut.count), \(slots.count) slots, tables \(cos.count)/\(sin.count) for \(tokens) tokens of \(qHeads)+2x\(cache.kvHeads) heads x \(d)")
        }
        let name = "rope_kv_write_\(cache.format.rawValue)_d\(d)_\(adjacentPairs ? "adjacent" : "half")"
        try functions[name]!.launch(
            grid: Dim3(tokens), block: Dim3(256), on: stream,
            qkv.pointer, positions.pointer, slots.pointer, cos.pointer, sin.pointer, Int32(qHeads), Int32(cache.kvHeads),
            Int32(cache.pageSize), qOut.pointer, cache.k.pointer, cache.v.pointer, cache.kParams.pointer, cache.vParams.pointer)
    }
}
