/// Symmetric round-to-nearest quantization of one group of values, bit-exactly as the GPU
/// kernels do it: scale = (absmax * clip) / qmax (fp32 product, IEEE division; clip 1 leaves
/// absmax exact), q = rint(x / scale) (ties to even), clamped to [-qmax, qmax]. An all-zero
/// group gets scale 0 and all-zero codes.
public enum SymmetricQuantizer {
    /// Largest code: 7 for INT4, 127 for INT8. (-8 and -128 are never produced, so the
    /// grid is symmetric and negation is exact.)
    public static func qmax(bits: Int) -> Int { (1 << (bits - 1)) - 1 }

    public static func scale(absmax: Float, bits: Int, clip: Float = 1) -> Float {
        absmax * clip / Float(qmax(bits: bits))
    }

    public static func code(_ x: Float, scale: Float, bits: Int) -> Int8 {
        guard scale > 0 else { return 0 }
        let limit = Float(qmax(bits: bits))
        return Int8(min(max((x / scale).rounded(.toNearestOrEven), -limit), limit))
    }

    /// Quantizes `values` in place into `codes` and returns the scale.
    public static func quantize(
        _ values: UnsafeBufferPointer<Float>, bits: Int, clip: Float = 1, into codes: UnsafeMutableBufferPointer<Int8>
    ) -> Float {
        var absmax: Float = 0
        for v in values { absmax = max(absmax, abs(v)) }
        let s = scale(absmax: absmax, bits: bits, clip: clip)
        for i in values.indices { codes[i] = code(values[i], scale: s, bits: bits) }
        return s
    }
}

/// Two 4-bit two's-complement codes per byte: element 2i in the low nibble, 2i+1 in the high.
public enum Nibbles {
    public static func pack(low: Int8, high: Int8) -> UInt8 {
        UInt8(bitPattern: low) & 0x0F | (UInt8(bitPattern: high) & 0x0F) << 4
    }

    public static func low(_ byte: UInt8) -> Int8 { Int8(bitPattern: byte << 4) >> 4 }
    public static func high(_ byte: UInt8) -> Int8 { Int8(bitPattern: byte) >> 4 }
}
