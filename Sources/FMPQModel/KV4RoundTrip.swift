import Quant

/// KV4 as the cache applies it, on the CPU forward pass's K or V rows: each (token, head) vector
/// of head_dim channels quantized to asymmetric UINT4 (`KV4`) and dequantized in place, so the
/// attention reads exactly what a KV4 cache would hold.
///
/// `rotated`: the cache holds H·k (`KVCacheSettings.keyRotation`) and the queries are H·q / d, so
/// q·k is unchanged; here that is the round trip H·(dequantized H·k) / d, the same product.
struct KV4RoundTrip {
    let kvHeads: Int
    let headDim: Int
    private var codes: [UInt8]

    init(kvHeads: Int, headDim: Int) {
        self.kvHeads = kvHeads
        self.headDim = headDim
        codes = [UInt8](repeating: 0, count: headDim / 2)
    }

    /// rows: [tokens, kvHeads * headDim], `rowStride` apart.
    mutating func apply(_ rows: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, rotated: Bool = false) {
        let (heads, headDim) = (kvHeads, self.headDim)
        let inverse = 1 / Float(headDim)
        codes.withUnsafeMutableBufferPointer { codes in
            for t in 0..<tokens {
                for h in 0..<heads {
                    let start = rows + t * rowStride + h * headDim
                    let vector = UnsafeMutableBufferPointer(start: start, count: headDim)
                    if rotated { BlockHadamard.transform(start, count: headDim) }
                    let (scale, zero) = KV4.quantize(UnsafeBufferPointer(vector), into: codes)
                    KV4.dequantize(UnsafeBufferPointer(codes), scale: scale, zero: zero, into: vector)
                    if rotated {
                        BlockHadamard.transform(start, count: headDim)
                        for i in vector.indices { vector[i] *= inverse }
                    }
                }
            }
        }
    }
}
