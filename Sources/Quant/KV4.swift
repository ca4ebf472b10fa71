/// The KV4 cache format (DESIGN.md §2, QServe's choice): each (token, head) vector of
/// head_dim channels is asymmetric UINT4 with an fp16 scale and an fp16 zero (the minimum):
///
///     value ~= code * scale + zero,   code in 0...15
///
/// scale = fp16((max - min) / 15), zero = fp16(min); codes are computed against the rounded
/// fp16 scale and zero, so dequantization uses exactly what is stored. Codes pack two per byte,
/// low nibble first.
public enum KV4 {
    /// Quantizes `x` (head_dim values) into `codes` (head_dim / 2 bytes); returns (scale, zero).
    public static func quantize(_ x: UnsafeBufferPointer<Float>, into codes: UnsafeMutableBufferPointer<UInt8>) -> (scale: Float16, zero: Float16) {
        precondition(x.count % 2 == 0 && codes.count == x.count / 2, "KV4.quantize: head_dim must be even, codes head_dim / 2")
        var low = Float.infinity, high = -Float.infinity
        for v in x { low = min(low, v); high = max(high, v) }
        let scale = Float16((high - low) / 15), zero = Float16(low)
        let s = Float(scale), z = Float(zero)
        for i in 0..<codes.count {
            codes[i] = code(x[2 * i], s, z) | code(x[2 * i + 1], s, z) << 4
        }
        return (scale, zero)
    }

    static func code(_ v: Float, _ scale: Float, _ zero: Float) -> UInt8 {
        guard scale > 0 else { return 0 }
        return UInt8(min(max(((v - zero) / scale).rounded(.toNearestOrEven), 0), 15))
    }

    /// The values `codes` stand for.
    public static func dequantize(_ codes: UnsafeBufferPointer<UInt8>, scale: Float16, zero: Float16, into x: UnsafeMutableBufferPointer<Float>) {
        let s = Float(scale), z = Float(zero)
        for i in 0..<codes.count {
            x[2 * i] = Float(codes[i] & 0x0F) * s + z
            x[2 * i + 1] = Float(codes[i] >> 4) * s + z
        }
    }
}
