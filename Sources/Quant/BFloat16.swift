/// bfloat16 storage (the top 16 bits of an fp32), as GPU kernels read and write it.
public struct BFloat16: BitwiseCopyable, Sendable, Equatable, CustomStringConvertible {
    public var bits: UInt16

    public init(bits: UInt16) { self.bits = bits }

    /// Round to nearest, ties to even, as `__float2bfloat16_rn`; NaN stays NaN.
    public init(_ value: Float) {
        let x = value.bitPattern
        if value.isNaN {
            bits = UInt16(truncatingIfNeeded: x >> 16) | 0x40
        } else {
            bits = UInt16(truncatingIfNeeded: (x &+ 0x7FFF &+ ((x >> 16) & 1)) >> 16)
        }
    }

    public var float: Float { Float(bitPattern: UInt32(bits) << 16) }
    public var description: String { "\(float)" }
}
